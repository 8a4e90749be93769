"""What every on-disk artifact (index, student) shares: a signed manifest, strict reading,
atomic writing. Nothing is ever unpickled.

An artifact is a directory. Format 2 (this nnkd writes it) keeps ``manifest.json``
beside the data::

    {"format": "nnkd.manifest", "version": 2,
     "files": {"student.json": "<sha256>", "arrays.npz": "<sha256>", "index/...": "<sha256>"},
     "signature": "<hex HMAC-SHA256 of the canonical JSON of format, version and files>"}

The manifest covers every file, the metadata JSON included, so editing any byte of the
artifact (or the metadata) is detected; with a key (``key=``, ``key_file=`` or the
``NNKD_ARTIFACT_KEY`` environment variable) the HMAC also makes the manifest itself
tamper-proof, and loading refuses unsigned or wrongly signed artifacts before any file is
parsed. A SHA-256 alone only catches accidents: whoever can edit a file can edit its checksum.
FAISS and NMSLIB parse their native files in C++ without checks, so a native index from a
source you do not trust must only be loaded signed.

Reading checks, in this order and before anything large is allocated: the signature, every
path (inside the directory, no symlinks), every file's size and checksum, the metadata's
schema (the caller's), then each array's declared dtype and shape against its byte size
(:func:`read_npz`). Writing goes to a temporary directory beside the target, is fsynced and
renamed into place, so an interruption never destroys the previous artifact.

Format 1 artifacts (checksums inside the metadata, no manifest) still load unsigned.
"""

from __future__ import annotations

import ctypes
import hashlib
import hmac
import importlib
import json
import math
import os
import shutil
import struct
import tempfile
import zipfile
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path, PurePosixPath

import numpy as np

MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT = "nnkd.manifest"
MANIFEST_VERSION = 2
KEY_ENV = "NNKD_ARTIFACT_KEY"
#: A metadata or manifest file larger than this was not written by nnkd.
MAX_METADATA_BYTES = 1 << 22
#: Most files an artifact may list.
MAX_FILES = 64
#: Largest artifact read (all files together, and all arrays decompressed together):
#: ``NNKD_MAX_ARTIFACT_BYTES`` overrides it.
DEFAULT_MAX_ARTIFACT_BYTES = 8 << 30
_HEX = frozenset("0123456789abcdef")


def package_version(name: str) -> str | None:
    """Installed version of distribution ``name``, or ``None``."""
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def import_optional(module: str, pip_name: str, purpose: str, hint: str = "or pip install 'nnkd[ann,bench]'"):
    """Import ``module`` or raise an ``ImportError`` saying which pip package provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"{purpose} needs the {pip_name} package: pip install {pip_name} ({hint}).") from exc


def max_artifact_bytes() -> int:
    """The read limit (``NNKD_MAX_ARTIFACT_BYTES`` or :data:`DEFAULT_MAX_ARTIFACT_BYTES`)."""
    text = os.environ.get("NNKD_MAX_ARTIFACT_BYTES")
    if text is None:
        return DEFAULT_MAX_ARTIFACT_BYTES
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"NNKD_MAX_ARTIFACT_BYTES={text!r} must be a positive integer.") from None
    if value < 1:
        raise ValueError(f"NNKD_MAX_ARTIFACT_BYTES={text!r} must be a positive integer.")
    return value


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def is_number(v) -> bool:
    """A finite JSON number (``bool`` is not one)."""
    return type(v) in (int, float) and math.isfinite(v)


def scalars_param(v) -> bool:
    """an object of JSON scalars"""
    return isinstance(v, dict) and all(isinstance(k, str) and (v[k] is None or type(v[k]) in (str, bool)
                                                               or is_number(v[k])) for k in v)


def json_snippet(value) -> str:
    """A short JSON rendering of ``value`` for error messages."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# -- keys and signatures ---------------------------------------------------------------------
def resolve_key(key=None, key_file=None) -> bytes | None:
    """The signing key: ``key`` (str or bytes), else the contents of ``key_file``, else the
    ``NNKD_ARTIFACT_KEY`` environment variable, else ``None`` (artifacts unsigned)."""
    if key is not None and key_file is not None:
        raise ValueError("pass key or key_file, not both.")
    if key_file is not None:
        path = Path(key_file)
        if not path.is_file():
            raise FileNotFoundError(f"key file {path} not found.")
        key = path.read_bytes().rstrip(b"\r\n")
    elif key is None:
        key = os.environ.get(KEY_ENV)
        if key is None:
            return None
    if isinstance(key, str):
        key = key.encode()
    if not isinstance(key, bytes):
        raise TypeError(f"key must be str or bytes; got {type(key).__name__}.")
    if len(key) < 16:
        raise ValueError(f"the artifact key has {len(key)} bytes; use at least 16 (32 random bytes is usual).")
    return key


def _signed_bytes(files: dict) -> bytes:
    return json.dumps({"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "files": files},
                      sort_keys=True, separators=(",", ":")).encode()


def _signature(key: bytes, files: dict) -> str:
    return hmac.new(key, _signed_bytes(files), hashlib.sha256).hexdigest()


# -- reading ---------------------------------------------------------------------------------
def _read_json(path: Path, what: str, allow_infinite: tuple[str, ...] = ()) -> dict:
    """A JSON object from ``path``. NaN and infinities are refused (they are not JSON), except
    an infinite top-level field named in ``allow_infinite`` (format-1 metadata wrote an
    infinite ``bound`` that way)."""
    data = _read_small(path, what)
    try:
        value = json.loads(data, parse_constant=float)
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ValueError(f"{path} is not valid JSON: {str(exc)[:200]}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path} must hold a JSON object; got {type(value).__name__}.")
    bad = _nonfinite(value, "")
    if bad is not None and not (bad.lstrip(".") in allow_infinite and math.isinf(_lookup(value, bad))
                                and _nonfinite({k: v for k, v in value.items() if k != bad.lstrip(".")}, "") is None):
        raise ValueError(f"{path}: {bad.lstrip('.') or 'a value'} is NaN or infinite, which is not JSON.")
    return value


def _nonfinite(value, where: str) -> str | None:
    """Path of the first NaN or infinite number inside ``value``, or ``None``."""
    if isinstance(value, float) and not math.isfinite(value):
        return where
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found = _nonfinite(item, f"{where}.{key}")
        if found is not None:
            return found
    return None


def _lookup(value: dict, where: str):
    return value[where.lstrip(".")]


def _read_small(path: Path, what: str) -> bytes:
    if path.is_symlink() or not path.is_file():
        raise FileNotFoundError(f"{path} not found (or not a regular file); is {path.parent} a saved nnkd {what}?")
    if path.stat().st_size > MAX_METADATA_BYTES:
        raise ValueError(f"{path} is larger than {MAX_METADATA_BYTES} bytes; not an nnkd {what}.")
    return path.read_bytes()


def _check_relative(directory: Path, name) -> Path:
    """``directory / name`` for a manifest entry: a relative POSIX path with no ``..``,
    reached without following a symlink."""
    if not isinstance(name, str) or not name or "\\" in name or "\x00" in name:
        raise ValueError(f"manifest entry {name!r} is not a file name.")
    parts = PurePosixPath(name).parts
    if PurePosixPath(name).is_absolute() or any(p in ("", ".", "..") for p in parts) or len(parts) > 4:
        raise ValueError(f"manifest entry {name!r} points outside the artifact directory.")
    path = directory
    for part in parts:
        path = path / part
        if path.is_symlink():
            raise ValueError(f"{path} is a symbolic link; artifacts never follow links.")
    return path


def read_manifest(directory, what: str, *, key=None, key_file=None) -> tuple[dict | None, bool]:
    """Verify ``directory/manifest.json``: signature (when a key is configured), then every
    listed file's path, size and SHA-256. Returns the ``files`` mapping (``None`` for a
    format-1 artifact, which has no manifest and is refused when a key is configured) and
    whether the signature was verified with a key."""
    directory = Path(directory)
    if directory.is_symlink() or not directory.is_dir():
        raise FileNotFoundError(f"{directory} is not a directory; is it a saved nnkd {what}?")
    secret = resolve_key(key, key_file)
    path = directory / MANIFEST_FILE
    if not path.exists() and not path.is_symlink():
        if secret is not None:
            raise ValueError(f"{directory} is unsigned (an nnkd format-1 {what}, without a manifest) and a key is "
                             f"configured; re-save it with this nnkd and the key.")
        return None, False
    manifest = _read_json(path, what)
    if manifest.get("format") != MANIFEST_FORMAT:
        raise ValueError(f"{path} is not an nnkd manifest (format {manifest.get('format')!r}).")
    ver = manifest.get("version")
    if type(ver) is not int or ver != MANIFEST_VERSION:
        raise ValueError(f"{path} has version {ver!r}; this nnkd reads version {MANIFEST_VERSION}. Re-save the "
                         f"{what} with a matching nnkd.")
    files = manifest.get("files")
    if (not isinstance(files, dict) or not files or len(files) > MAX_FILES
            or any(not isinstance(v, str) or len(v) != 64 or not set(v) <= _HEX for v in files.values())):
        raise ValueError(f"{path}: 'files' must map 1 to {MAX_FILES} file names to hex SHA-256 digests.")
    unknown = sorted(set(manifest) - {"format", "version", "files", "signature"})
    if unknown:
        raise ValueError(f"{path} has unknown field(s) {unknown}.")
    signature = manifest.get("signature")
    if secret is not None:
        if signature is None:
            raise ValueError(f"{directory} is not signed and a key is configured ({KEY_ENV} or --key-file); "
                             "refusing to load it.")
        if not isinstance(signature, str) or not hmac.compare_digest(signature, _signature(secret, files)):
            raise ValueError(f"{directory}: the signature does not match the key; the artifact was modified or "
                             "signed with another key.")
    elif signature is not None and not (isinstance(signature, str) and len(signature) == 64
                                        and set(signature) <= _HEX):
        raise ValueError(f"{path}: 'signature' must be a hex HMAC-SHA256.")
    limit, total = max_artifact_bytes(), 0
    for name, digest in files.items():
        file = _check_relative(directory, name)
        if not file.is_file():
            raise FileNotFoundError(f"{file} is missing (listed in {path}).")
        total += file.stat().st_size
        if total > limit:
            raise ValueError(f"{directory} holds more than {limit} bytes (NNKD_MAX_ARTIFACT_BYTES); refusing to read it.")
        if not hmac.compare_digest(sha256_file(file), digest):
            raise ValueError(f"checksum mismatch for {file}: the file was modified or corrupted after saving.")
    return files, secret is not None


def read_metadata(directory, name: str, fmt: str, versions: tuple[int, ...], what: str, *, key=None,
                  key_file=None) -> dict:
    """The verified metadata JSON ``directory/name`` of an artifact (see :func:`read_manifest`).

    Format-1 artifacts carry their checksums in the metadata (``"files"``); they are checked
    the same way. Returns the metadata with ``"files"`` set to every verified file and
    ``"signed"`` to whether a key verified its signature.

    Raises
    ------
    FileNotFoundError
        The directory, the metadata or a listed file is missing.
    ValueError
        Anything else wrong: signature, paths, sizes, checksums, format or version.
    """
    directory = Path(directory)
    files, signed = read_manifest(directory, what, key=key, key_file=key_file)
    meta_path = directory / name
    if files is not None and name not in files:
        raise ValueError(f"{directory / MANIFEST_FILE} does not cover {name}.")
    meta = _read_json(meta_path, what, allow_infinite=("bound",) if files is None else ())
    if meta.get("format") != fmt:
        raise ValueError(f"{meta_path} is not an nnkd {what} (format field {meta.get('format')!r}).")
    ver = meta.get("format_version")
    if type(ver) is not int or ver not in versions:
        raise ValueError(f"{meta_path} has format_version {ver!r}; this nnkd reads versions {list(versions)}. "
                         f"Re-save the {what} with a matching nnkd.")
    if files is None:                            # format 1: checksums inside the metadata
        legacy = meta.get("files")
        if ver != 1 or not isinstance(legacy, dict) or not legacy or len(legacy) > MAX_FILES:
            raise ValueError(f"{meta_path} lists no files and {directory} has no {MANIFEST_FILE}.")
        for file_name, digest in legacy.items():
            file = _check_relative(directory, file_name)
            if "/" in file_name:
                raise ValueError(f"{meta_path} names file {file_name!r} outside the {what} directory.")
            if not file.is_file():
                raise FileNotFoundError(f"{file} is missing (listed in {meta_path}).")
            if not isinstance(digest, str) or sha256_file(file) != digest:
                raise ValueError(f"checksum mismatch for {file}: the file was modified or corrupted after saving.")
        files = {**legacy, name: sha256_file(meta_path)}
    elif ver == 1:
        raise ValueError(f"{meta_path}: format_version 1 metadata inside a format-2 manifest.")
    return {**meta, "files": files, "signed": signed}


def trust_native_files(trust: bool | None) -> bool:
    """Whether unsigned native index files may be parsed: ``trust``, else the
    ``NNKD_TRUST_NATIVE=1`` environment variable."""
    if trust is not None:
        return bool(trust)
    return os.environ.get("NNKD_TRUST_NATIVE", "") == "1"


_NPY_DTYPES = {"float": (np.float16, np.float32, np.float64), "int": (np.int64, np.int32),
               "quantized": (np.int8, np.float32)}
#: What zipfile raises on a damaged archive (a byte flip in the directory can give any of them).
_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, NotImplementedError, RuntimeError,
               UnicodeDecodeError, OverflowError, struct.error)


def read_npz(path, expected: dict[str, tuple[str, tuple]], *, budget: int | None = None) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` written by ``np.savez``, read strictly.

    ``expected`` maps each allowed array name to ``(kind, shape)`` with kind ``"float"``,
    ``"int"`` or ``"quantized"`` (int8 codes, or float32) and the shape the metadata declares. Each member's ``.npy`` header is checked
    (dtype, no objects, C order, the declared shape, a byte size that matches the member)
    before its data is read, and all members together may not exceed ``budget`` bytes
    decompressed (:func:`max_artifact_bytes`), so a hostile archive is a ``ValueError``,
    never a ``MemoryError``, a zip bomb or an unpickling.
    """
    path = Path(path)
    budget = max_artifact_bytes() if budget is None else budget
    out: dict[str, np.ndarray] = {}
    try:
        archive = zipfile.ZipFile(path)
    except _ZIP_ERRORS as exc:                   # a corrupted central directory raises any of these
        raise ValueError(f"{path} is not a readable .npz archive: {type(exc).__name__}: {exc}") from None
    with archive:
        infos = archive.infolist()
        if len(infos) > len(expected):
            raise ValueError(f"{path} holds {len(infos)} members; at most {len(expected)} are expected.")
        for info in infos:
            name = info.filename[:-4] if info.filename.endswith(".npy") else None
            if name not in expected or name in out:
                raise ValueError(f"{path}: unexpected member {info.filename!r}; expected {sorted(expected)}.")
            kind, shape = expected[name]
            count = math.prod(shape)
            if info.file_size > budget:
                raise ValueError(f"{path}: member {info.filename!r} inflates to {info.file_size} bytes, beyond the "
                                 f"limit of {budget} (NNKD_MAX_ARTIFACT_BYTES).")
            budget -= info.file_size
            try:
                with archive.open(info) as f:
                    major, minor = np.lib.format.read_magic(f)
                    header = (np.lib.format.read_array_header_1_0 if (major, minor) == (1, 0)
                              else np.lib.format.read_array_header_2_0)
                    got_shape, fortran, dtype = header(f, max_header_size=10_000)
                    if dtype.hasobject or dtype.type not in _NPY_DTYPES[kind] or fortran:
                        raise ValueError(f"{path}: array {name!r} has dtype {dtype} (fortran order {fortran}); "
                                         f"expected a C-order {kind} array.")
                    if tuple(got_shape) != tuple(shape):
                        raise ValueError(f"{path}: array {name!r} has shape {tuple(got_shape)}; the metadata "
                                         f"declares {tuple(shape)}.")
                    nbytes = count * dtype.itemsize
                    if info.file_size - f.tell() != nbytes:
                        raise ValueError(f"{path}: array {name!r} declares {nbytes} bytes of data but the member "
                                         f"holds {info.file_size - f.tell()}.")
                    data = f.read(nbytes)
                    if len(data) != nbytes or f.read(1):
                        raise ValueError(f"{path}: array {name!r} is truncated.")
            except (*_ZIP_ERRORS, SyntaxError) as exc:
                raise ValueError(f"{path}: array {name!r} cannot be read: {exc}") from None
            except ValueError as exc:
                if str(exc).startswith(str(path)):
                    raise
                raise ValueError(f"{path}: array {name!r} has a bad header: {exc}") from None
            out[name] = np.frombuffer(data, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="), copy=True)
    missing = sorted(set(expected) - set(out))
    if missing:
        raise ValueError(f"{path} lacks the array(s) {missing} its metadata declares.")
    return out


def check_shapes(shapes, allowed: dict[str, str], where: str) -> dict[str, tuple]:
    """Validated ``{"name": [dims...]}`` from metadata: known names, non-negative int
    dims, at most :func:`max_artifact_bytes` elements in all."""
    if not isinstance(shapes, dict):
        raise ValueError(f"{where}: 'shapes' must be an object mapping array names to shapes.")
    out, total = {}, 0
    for name, shape in shapes.items():
        if name not in allowed:
            raise ValueError(f"{where}: unknown array {name!r} in 'shapes'; this kind has {sorted(allowed)}.")
        if (not isinstance(shape, list) or not 1 <= len(shape) <= 2
                or any(type(d) is not int or d < 0 for d in shape)):
            raise ValueError(f"{where}: the shape of {name!r} must be a list of 1 or 2 non-negative integers; "
                             f"got {json.dumps(shape)[:60]}.")
        total += math.prod(shape)
        if total > max_artifact_bytes():
            raise ValueError(f"{where}: the declared arrays hold more than {max_artifact_bytes()} elements.")
        out[name] = tuple(shape)
    return out


# -- writing ---------------------------------------------------------------------------------
def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _walk_files(directory: Path) -> list[str]:
    names = []
    for root, dirs, files in os.walk(directory):
        for entry in (*dirs, *files):
            if (Path(root) / entry).is_symlink():
                raise ValueError(f"{Path(root) / entry} is a symbolic link; artifacts hold regular files only.")
        for file in files:
            names.append((Path(root) / file).relative_to(directory).as_posix())
    return sorted(n for n in names if n != MANIFEST_FILE)


_RENAME_EXCHANGE = 2


def _exchange(a: Path, b: Path) -> bool:
    """Swap two directory entries atomically (Linux ``renameat2(RENAME_EXCHANGE)``); False
    where the system has no such call."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd = -100
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (22, 38, 95):                       # EINVAL, ENOSYS, EOPNOTSUPP: fall back
        return False
    raise OSError(err, os.strerror(err), str(b))


def _replace_directory(new: Path, target: Path) -> None:
    """Put ``new`` at ``target``; a previous ``target`` stays whole until the swap."""
    if not target.exists():
        os.rename(new, target)
    elif _exchange(new, target):
        shutil.rmtree(new)                        # the previous artifact, now at the temporary name
    else:
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        os.rmdir(old)
        os.rename(target, old)
        os.rename(new, target)
        shutil.rmtree(old)
    _fsync(target.parent)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:                      # someone else's process: alive
        return True
    return True


def _remove_stale_temporaries(target: Path) -> None:
    """Remove the temporary directories of saves to ``target`` whose process has died (a
    ``kill -9`` mid-save leaves one behind; its name carries the writer's pid)."""
    prefix = f".{target.name}."
    for entry in target.parent.iterdir():
        rest = entry.name[len(prefix):]
        if not entry.name.startswith(prefix) or not rest.endswith(".tmp") or entry.is_symlink():
            continue
        pid = rest.split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)) and entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)


def write_artifact(target, write_files: Callable[[Path], None], what: str, metadata_name: str, *, key=None,
                   key_file=None) -> Path:
    """Write an artifact atomically: ``write_files(tmp)`` fills a fresh temporary directory
    beside ``target``; the manifest (signed when a key is configured) is added, every file
    and directory is fsynced, and the directory is renamed to ``target``.

    Refuses a ``target`` that is a symbolic link, a file, or a non-empty directory that is
    not an nnkd artifact (so a mistyped path never replaces someone's data).

    Returns
    -------
    target : Path
    """
    target = Path(target)
    if target.is_symlink():
        raise ValueError(f"{target} is a symbolic link; save to a real directory path.")
    if target.exists():
        if not target.is_dir():
            raise ValueError(f"{target} exists and is not a directory.")
        entries = {p.name for p in target.iterdir()}
        if entries and MANIFEST_FILE not in entries and metadata_name not in entries:
            raise ValueError(f"{target} is a non-empty directory that is not an nnkd {what}; refusing to replace it.")
    secret = resolve_key(key, key_file)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp", dir=target.parent))
    try:
        write_files(tmp)
        files = {name: sha256_file(tmp / name) for name in _walk_files(tmp)}
        manifest = {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "files": files}
        if secret is not None:
            manifest["signature"] = _signature(secret, files)
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        for root, _, names in os.walk(tmp):
            for name in names:
                _fsync(Path(root) / name)
            _fsync(Path(root))
        _replace_directory(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def write_json(path: Path, value: dict) -> None:
    """Write ``value`` as JSON, refusing NaN and infinity (they are not JSON)."""
    path.write_text(json.dumps(value, indent=2, sort_keys=True, allow_nan=False))
