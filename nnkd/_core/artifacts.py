"""What every on-disk artifact (index, student) shares: JSON metadata with a format name and
version, and the SHA-256 of every data file, checked before anything is read. No pickle."""

from __future__ import annotations

import hashlib
import importlib
import json
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

#: A metadata file larger than this was not written by nnkd.
MAX_METADATA_BYTES = 1 << 22


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


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_metadata(directory: Path, name: str, meta: dict, files: list[str]) -> None:
    """Write ``meta`` plus the SHA-256 of each of ``files`` (in ``directory``) as JSON."""
    meta = {**meta, "files": {f: sha256_file(directory / f) for f in files}}
    (directory / name).write_text(json.dumps(meta, indent=2, sort_keys=True))


def read_metadata(directory: Path, name: str, fmt: str, fmt_version: int, what: str) -> dict:
    """Read and check ``directory/name``: format, version, and every listed file's checksum.

    Raises
    ------
    FileNotFoundError
        The metadata or a listed file is missing.
    ValueError
        Not JSON, too large, another format or version, a file outside ``directory``, or a
        checksum mismatch.
    """
    meta_path = Path(directory) / name
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path} not found; is {directory} a saved nnkd {what}?")
    if meta_path.stat().st_size > MAX_METADATA_BYTES:
        raise ValueError(f"{meta_path} is larger than {MAX_METADATA_BYTES} bytes; not an nnkd {what}.")
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{meta_path} is not valid JSON: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != fmt:
        raise ValueError(f"{meta_path} is not an nnkd {what} (format field "
                         f"{meta.get('format') if isinstance(meta, dict) else None!r}).")
    if meta.get("format_version") != fmt_version:
        raise ValueError(f"{meta_path} has format_version {meta.get('format_version')!r}; this nnkd reads "
                         f"version {fmt_version}. Re-save the {what} with a matching nnkd.")
    files = meta.get("files")
    if not isinstance(files, dict) or not files:
        raise ValueError(f"{meta_path} lists no files.")
    for file_name, digest in files.items():
        if Path(file_name).name != file_name:
            raise ValueError(f"{meta_path} names file {file_name!r} outside the {what} directory.")
        file = Path(directory) / file_name
        if not file.is_file():
            raise FileNotFoundError(f"{file} is missing (listed in {meta_path}).")
        if sha256_file(file) != digest:
            raise ValueError(f"checksum mismatch for {file}: the file was modified or corrupted after saving.")
    return meta
