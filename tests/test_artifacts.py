"""Artifacts under attack and under faults: every file and the metadata covered by the manifest,
signatures, strict validation before allocation, atomic saves, and a C core that cannot crash."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from _artifacts import edit_json, rewrite_manifest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.testing import assert_array_equal

from nnkd import greedy_permutation
from nnkd._core.artifacts import MANIFEST_FILE, sha256_file
from nnkd.cli import main
from nnkd.index import load_index, make_index
from nnkd.student import (
    ProjectionStudent,
    PrototypeStudent,
    TreeStudent,
    load_student,
)

KEY = "a-test-key-of-32-bytes-0123456789"


def _knn(rng, n=40, d=4, **kw) -> PrototypeStudent:
    P = rng.normal(size=(n, d)).astype(np.float32)
    owner = np.arange(n)
    return PrototypeStudent(classes=np.array(["a", "b", "c"]), prototypes=P,
                            label_vectors=rng.dirichlet(np.ones(3), size=n).astype(np.float32),
                            support=np.arange(n), cell_indptr=np.arange(n + 1), cell_indices=owner, **kw)


def _rbf(rng) -> ProjectionStudent:
    return ProjectionStudent(classes=np.arange(2), prototypes=rng.normal(size=(6, 3)), label_vectors=rng.normal(size=(6, 2)),
                             projection=rng.normal(size=(3, 5)), gamma=0.5)


def _tree() -> TreeStudent:
    return TreeStudent(classes=np.arange(2), depth=2, gate_weights=np.ones((3, 2)), gate_biases=np.zeros(3),
                       gate_betas=np.ones(3), leaf_distributions=np.full((4, 2), 0.5))


@pytest.fixture
def saved(rng, tmp_path) -> Path:
    return _knn(rng).save(tmp_path / "student")


# -- the manifest covers everything ------------------------------------------------------------------
def test_editing_the_metadata_is_detected(saved, rng):
    X = rng.normal(size=(5, 4))
    meta = json.loads((saved / "student.json").read_text())
    (saved / "student.json").write_text(json.dumps({**meta, "n_neighbors": 3}))
    with pytest.raises(ValueError, match="checksum mismatch for .*student.json"):
        load_student(saved)
    assert _knn(np.random.default_rng(0)).predict(X).shape == (5,)


def test_every_listed_file_and_the_metadata_are_in_the_manifest(saved):
    manifest = json.loads((saved / MANIFEST_FILE).read_text())
    assert set(manifest["files"]) == {"student.json", "arrays.npz"}
    assert all(sha256_file(saved / n) == h for n, h in manifest["files"].items())


# -- signatures --------------------------------------------------------------------------------------
def test_signed_students_load_with_the_key_only(rng, tmp_path, monkeypatch):
    s = _knn(rng)
    signed = s.save(tmp_path / "signed", key=KEY)
    unsigned = s.save(tmp_path / "unsigned")
    assert_array_equal(load_student(signed, key=KEY).predict(s.prototypes), s.predict(s.prototypes))
    with pytest.raises(ValueError, match="signature does not match"):
        load_student(signed, key=KEY + "x")
    with pytest.raises(ValueError, match="not signed and a key is configured"):
        load_student(unsigned, key=KEY)
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    assert load_student(signed, key_file=key_file).kind == "knn"
    monkeypatch.setenv("NNKD_ARTIFACT_KEY", KEY)
    assert load_student(signed).kind == "knn"
    with pytest.raises(ValueError, match="not signed"):
        load_student(unsigned)
    # An attacker edits the metadata and rewrites the checksums: the signature no longer holds.
    edit_json(signed, "student.json", lambda m: {**m, "n_neighbors": 3})
    with pytest.raises(ValueError, match="not signed|signature"):
        load_student(signed)
    with pytest.raises(ValueError, match="at least 16"):
        load_student(unsigned, key="short")


@pytest.mark.parametrize("spec", ["faiss:HNSW32", "nmslib:hnsw"])
def test_a_signed_native_index_is_refused_before_its_parser_runs(rng, tmp_path, spec):
    pytest.importorskip(spec.split(":")[0])
    X = rng.normal(size=(300, 8)).astype(np.float32)
    path = make_index(spec).fit(X).save(tmp_path / "idx", key=KEY)
    native = next(p for p in path.iterdir() if p.name not in ("index.json", MANIFEST_FILE))
    data = bytearray(native.read_bytes())
    data[len(data) // 3: len(data) // 3 + 64] = b"\xff" * 64
    native.write_bytes(bytes(data))
    rewrite_manifest(path)                   # the checksum updated, as the reported attack did
    with pytest.raises(ValueError, match="not signed"):
        load_index(path, key=KEY)


def test_student_with_an_approximate_index_is_signed_throughout(rng, tmp_path):
    pytest.importorskip("faiss")
    s = _knn(rng, index="faiss:HNSW16")
    path = s.save(tmp_path / "s", key=KEY)
    assert json.loads((path / "index" / MANIFEST_FILE).read_text())["signature"]
    assert_array_equal(load_student(path, key=KEY).predict(s.prototypes), s.predict(s.prototypes))
    native = path / "index" / "index.faiss"
    native.write_bytes(native.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(ValueError, match="checksum mismatch"):
        load_student(path, key=KEY)


# -- format 1 still loads ------------------------------------------------------------------------------
def _write_v1(directory: Path, student: PrototypeStudent) -> None:
    """The format-1 layout of nnkd 0.1: checksums inside student.json, no manifest."""
    directory.mkdir()
    arrays = {k: getattr(student, k) for k in student.ARRAYS}
    np.savez(directory / "arrays.npz", **arrays)
    meta = {"format": "nnkd.student", "format_version": 1, "kind": "knn", "space": "input", "metric": "euclidean",
            "n_neighbors": 1, "kernel": "uniform", "gamma": None, "index": "exact", "bound": float("inf"),
            "classes": {"dtype": "str", "values": ["a", "b", "c"]}, "dtype": "float32",
            "shapes": {k: list(v.shape) for k, v in arrays.items()}, "meta": {},
            "files": {"arrays.npz": sha256_file(directory / "arrays.npz")}}
    (directory / "student.json").write_text(json.dumps(meta))


def test_format_1_students_load_unsigned_and_are_refused_with_a_key(rng, tmp_path):
    s = _knn(rng)
    _write_v1(tmp_path / "v1", s)
    loaded = load_student(tmp_path / "v1")
    assert_array_equal(loaded.predict(s.prototypes), s.predict(s.prototypes))
    assert loaded.bound == 1.0                               # an infinite bound is the trivial bound
    with pytest.raises(ValueError, match="format-1 .* re-save it"):
        load_student(tmp_path / "v1", key=KEY)


# -- the loader's gaps, one by one -----------------------------------------------------------------------
_META_CASES = [
    (lambda m: {k: v for k, v in m.items() if k != "kind"}, "unknown student kind"),
    (lambda m: {k: v for k, v in m.items() if k != "shapes"}, "missing 'shapes'"),
    (lambda m: {**m, "format_version": True}, "format_version"),
    (lambda m: {**m, "n_neighbors": 1e308}, "'n_neighbors' must be an integer"),
    (lambda m: {**m, "kernel": "magic"}, "'kernel' must be one of"),
    (lambda m: {**m, "classes": {"dtype": "int", "values": [True, 2, 3]}}, "'classes' values"),
    (lambda m: {**m, "shapes": {**m["shapes"], "prototypes": [10**12]}}, "elements|shape"),
    (lambda m: {**m, "shapes": {**m["shapes"], "prototypes": [10**12, 4]}}, "elements|shape"),
    (lambda m: {**m, "shapes": {**m["shapes"], "evil": [1]}}, "unknown array 'evil'"),
    (lambda m: {**m, "bound": -1}, "'bound' must be"),
    (lambda m: {**m, "index": 3}, "'index' must be"),
    (lambda m: {**m, "meta": []}, "'meta' must be an object"),
]


@pytest.mark.parametrize("change, match", _META_CASES)
def test_metadata_outside_the_schema_is_one_clear_error(saved, change, match):
    edit_json(saved, "student.json", change)
    with pytest.raises(ValueError, match=match):
        load_student(saved)


def test_tree_depth_1e308_is_refused_at_once(tmp_path):
    path = _tree().save(tmp_path / "t")
    edit_json(path, "student.json", lambda m: {**m, "depth": 1e308})
    start = time.perf_counter()
    with pytest.raises(ValueError, match="'depth' must be an integer in \\[1, 16\\]"):
        load_student(path)
    assert time.perf_counter() - start < 10


def test_non_json_numbers_in_metadata_are_refused(tmp_path, rng):
    path = _rbf(rng).save(tmp_path / "r")
    text = (path / "student.json").read_text()
    (path / "student.json").write_text(text.replace('"gamma": 0.5', '"gamma": Infinity'))
    rewrite_manifest(path)
    with pytest.raises(ValueError, match="gamma is NaN or infinite"):
        load_student(path)


def _replace_array(path: Path, name: str, value: np.ndarray, shape=None) -> None:
    """Rewrite one array of arrays.npz (and the declared shape), then the manifest."""
    with np.load(path / "arrays.npz") as data:
        arrays = {k: data[k] for k in data.files}
    arrays[name] = value
    np.savez(path / "arrays.npz", **arrays)
    meta = json.loads((path / "student.json").read_text())
    meta["shapes"][name] = list(value.shape if shape is None else shape)
    (path / "student.json").write_text(json.dumps(meta))
    rewrite_manifest(path)


@pytest.mark.parametrize("name, value, match", [
    ("label_vectors", "nan", "label_vectors contains NaN"),
    ("cell_indices", "negative", "cell_indices must be non-negative"),
    ("cell_indptr", "float", "expected a C-order int array"),
    ("prototypes", "object", "dtype object|cannot be read|bad header"),
])
def test_bad_array_values_are_refused(saved, name, value, match):
    with np.load(saved / "arrays.npz") as data:
        arr = data[name].copy()
    if value == "nan":
        arr[0, 0] = np.nan
    elif value == "negative":
        arr[0] = -5
    elif value == "float":
        arr = arr.astype(np.float64)
    elif value == "object":
        arr = np.array([{"x": 1}] * len(arr), dtype=object)
        with np.load(saved / "arrays.npz") as data:
            arrays = {k: data[k] for k in data.files}
        arrays[name] = arr
        np.savez(saved / "arrays.npz", **arrays)
        rewrite_manifest(saved)
        with pytest.raises(ValueError, match=match):
            load_student(saved)
        return
    _replace_array(saved, name, arr)
    with pytest.raises(ValueError, match=match):
        load_student(saved)


def test_int8_students_store_codes_scales_offsets_and_round_trip_exactly(rng, tmp_path):
    # columns of very different range, one far from zero (an offset symmetric codes would waste)
    P = rng.normal(size=(40, 4)) * np.array([1.0, 100.0, 0.01, 5.0]) + np.array([0.0, 0.0, 0.0, 500.0])
    knn = _knn(rng)
    knn8 = PrototypeStudent(classes=knn.classes, prototypes=P, label_vectors=knn.label_vectors, dtype="int8")
    path = knn8.save(tmp_path / "s")
    with np.load(path / "arrays.npz") as data:
        codes, scales, offsets = data["prototypes"], data["prototypes__scale"], data["prototypes__offset"]
        assert codes.dtype == np.int8 and scales.shape == offsets.shape == (4,) and np.abs(codes).max() <= 127
        # the stored values are codes x per-column scales + offsets, each within half a step
        # of the input: 255 levels over each column's own range, offset or not
        assert_array_equal(((codes.astype(np.float32) * scales).astype(np.float32) + offsets).astype(np.float32),
                           knn8.prototypes)
        span = P.max(axis=0) - P.min(axis=0)
        assert np.all(np.abs(knn8.prototypes - P) <= span / 254 * (0.5 + 1e-3) + 1e-4 * np.abs(P))
    loaded = load_student(path)
    assert_array_equal(loaded.prototypes, knn8.prototypes) and loaded.dtype == "int8"
    X = rng.normal(size=(30, 4))
    assert_array_equal(loaded.predict_proba(X), knn8.predict_proba(X))
    # saved again, the loaded student writes the very same codes
    again = load_student(loaded.save(tmp_path / "again"))
    assert_array_equal(again.prototypes, knn8.prototypes)
    # honest size: 1 byte per parameter plus a float32 scale and offset per column of each matrix
    assert knn8.size_bytes == 40 * 4 + 8 * 4 + 40 * 3 + 8 * 3


def test_int8_tree_vectors_stay_float32(tmp_path):
    tree = TreeStudent(classes=np.arange(2), depth=2, gate_weights=np.ones((3, 2)), gate_biases=np.full(3, 1e-3),
                       gate_betas=np.ones(3), leaf_distributions=np.full((4, 2), 0.5), input_mean=np.zeros(2),
                       input_scale=np.array([1e-6, 1e3]), dtype="int8")
    assert_array_equal(tree.input_scale, np.array([1e-6, 1e3], dtype=np.float32))
    loaded = load_student(tree.save(tmp_path / "t"))
    assert_array_equal(loaded.input_scale, tree.input_scale)


@pytest.mark.parametrize("edit, match", [
    (lambda a: {**a, "prototypes": np.full_like(a["prototypes"], -128)}, r"\[-127, 127\]"),
    (lambda a: {**a, "prototypes__scale": -a["prototypes__scale"]}, "finite positive"),
    (lambda a: {**a, "prototypes__scale": a["prototypes__scale"][:2]}, "shape|scales"),
    (lambda a: {**a, "prototypes__offset": np.full_like(a["prototypes__offset"], np.inf)}, "finite numbers"),
    (lambda a: {**a, "prototypes__offset": np.full_like(a["prototypes__offset"], 3e38),
                "prototypes__scale": np.full_like(a["prototypes__scale"], 3e36)}, "overflow"),
    (lambda a: {k: v for k, v in a.items() if k != "prototypes__scale"}, "needs 'prototypes__scale'"),
    (lambda a: {**a, "prototypes": a["prototypes"].astype(np.float32)}, "is not int8 codes"),
    (lambda a: {**a, "support__scale": np.ones(1, np.float32)}, "unknown array|unexpected"),
])
def test_bad_int8_arrays_are_refused(rng, tmp_path, edit, match):
    path = _knn(rng, dtype="int8").save(tmp_path / "s")
    with np.load(path / "arrays.npz") as data:
        arrays = edit({k: data[k] for k in data.files})
    np.savez(path / "arrays.npz", **arrays)
    meta = json.loads((path / "student.json").read_text())
    meta["shapes"] = {k: list(v.shape) for k, v in arrays.items()}
    (path / "student.json").write_text(json.dumps(meta))
    rewrite_manifest(path)
    with pytest.raises(ValueError, match=match):
        load_student(path)


def test_nan_projection_and_infinite_gamma_are_refused(rng, tmp_path):
    path = _rbf(rng).save(tmp_path / "r")
    with np.load(path / "arrays.npz") as data:
        W = data["projection"].copy()
    W[1, 2] = np.nan
    _replace_array(path, "projection", W)
    with pytest.raises(ValueError, match="projection contains NaN"):
        load_student(path)


def test_an_npy_header_declaring_a_huge_shape_is_not_a_memory_error(saved):
    # Craft a member whose header claims (10**12,) floats: the declared size cannot match the member.
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": (10**12,)})
    buf.write(b"\0" * 64)
    with np.load(saved / "arrays.npz") as data:
        arrays = {k: data[k] for k in data.files}
    with zipfile.ZipFile(saved / "arrays.npz", "w") as z:
        for k, v in arrays.items():
            if k == "support":
                z.writestr("support.npy", buf.getvalue())
            else:
                with z.open(f"{k}.npy", "w") as f:
                    np.lib.format.write_array(f, v)
    meta = json.loads((saved / "student.json").read_text())
    meta["shapes"]["support"] = [10**12]
    (saved / "student.json").write_text(json.dumps(meta))
    rewrite_manifest(saved)
    with pytest.raises(ValueError, match="elements|declares|shape"):
        load_student(saved)


def test_a_zip_bomb_is_refused(saved, monkeypatch):
    big = np.zeros((4_000_000, 4), dtype=np.float32)        # 64 MB that deflates to ~60 kB
    with np.load(saved / "arrays.npz") as data:
        arrays = {k: data[k] for k in data.files}
    arrays["prototypes"] = big
    np.savez_compressed(saved / "arrays.npz", **arrays)
    assert (saved / "arrays.npz").stat().st_size < 1_000_000
    edit_json(saved, "student.json", lambda m: {**m, "shapes": {**m["shapes"], "prototypes": [4_000_000, 4]}})
    monkeypatch.setenv("NNKD_MAX_ARTIFACT_BYTES", str(20 << 20))      # 16M elements pass, 64 MB do not
    with pytest.raises(ValueError, match="inflates to .* beyond the limit"):
        load_student(saved)


def test_a_damaged_zip_directory_is_a_value_error(saved):
    # Found by the fuzzer: one byte of the central directory made zipfile raise
    # NotImplementedError ("zip file version 6.4"), not BadZipFile.
    blob = bytearray((saved / "arrays.npz").read_bytes())
    directory = blob.rfind(b"PK\x01\x02")
    blob[directory + 6] = 64                         # "version needed to extract"
    (saved / "arrays.npz").write_bytes(bytes(blob))
    rewrite_manifest(saved)
    with pytest.raises(ValueError, match="not a readable .npz archive|cannot be read"):
        load_student(saved)


def test_serve_prints_one_line_for_a_bad_artifact(saved, capsys):
    edit_json(saved, "student.json", lambda m: {k: v for k, v in m.items() if k != "kind"})
    assert main(["serve", str(saved), "--port", "0"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("nnkd: error:") and "unknown student kind" in err


# -- fuzzing the loader -------------------------------------------------------------------------------------
#: NNKD_FUZZ_EXAMPLES=5000 for a long local run; the suite keeps it to seconds.
FUZZ_EXAMPLES = int(os.environ.get("NNKD_FUZZ_EXAMPLES", "60"))


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_artifacts_load_or_raise_a_clear_error(tmp_path_factory, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 3)))
    which = data.draw(st.sampled_from(["knn", "rbf", "tree"]))
    student = {"knn": _knn(rng, n=8), "rbf": _rbf(rng), "tree": _tree()}[which]
    path = student.save(tmp_path_factory.mktemp("fuzz") / "s")
    name = data.draw(st.sampled_from(["student.json", "arrays.npz"]))
    blob = bytearray((path / name).read_bytes())
    for _ in range(data.draw(st.integers(1, 8))):
        pos = data.draw(st.integers(0, len(blob) - 1))
        blob[pos] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        blob = blob[:data.draw(st.integers(0, len(blob)))]
    (path / name).write_bytes(bytes(blob))
    rewrite_manifest(path)                               # past the checksums: the parsers must hold
    try:
        loaded = load_student(path)
    except (ValueError, FileNotFoundError):
        return
    loaded.predict(loaded.example_inputs(3, rng))


@settings(max_examples=4 * FUZZ_EXAMPLES, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=200).map(str.encode))
def test_fuzzed_request_bodies_are_4xx_or_parse(body):
    from nnkd.serve._requests import RequestError, decode_json, parse_instances

    try:
        payload = decode_json(body)
        parse_instances(payload.get("instances"), 3, 10)
    except RequestError as exc:
        assert 400 <= exc.status < 500


# -- atomic saves -----------------------------------------------------------------------------------
def test_a_failed_save_leaves_the_previous_student(rng, saved, monkeypatch):
    before = {p.name: p.read_bytes() for p in saved.iterdir()}

    def explode(*args, **kwargs):
        raise OSError(27, "File too large")          # EFBIG midway through writing the arrays

    monkeypatch.setattr(np, "savez", explode)
    with pytest.raises(OSError, match="too large"):
        _knn(rng, n=12).save(saved)
    assert {p.name: p.read_bytes() for p in saved.iterdir()} == before
    assert not [p for p in saved.parent.iterdir() if p.name.startswith(".student.")]     # no leftovers
    assert load_student(saved).n_prototypes == 40


def test_save_under_a_file_size_limit_keeps_the_previous_student(saved, tmp_path):
    code = textwrap.dedent(f"""
        import resource, numpy as np
        from nnkd.student import PrototypeStudent
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
        rng = np.random.default_rng(1)
        s = PrototypeStudent(classes=np.arange(2), prototypes=rng.normal(size=(20_000, 8)),
                             label_vectors=np.eye(2)[rng.integers(0, 2, 20_000)])
        try:
            s.save({str(saved)!r})
        except OSError as exc:
            print("refused:", exc.errno)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ}, check=False)
    assert "refused: 27" in out.stdout, out.stderr
    assert load_student(saved).n_prototypes == 40


def test_kill_9_during_a_large_save_never_loses_the_student(saved):
    code = textwrap.dedent(f"""
        import numpy as np, sys
        from nnkd.student import PrototypeStudent
        rng = np.random.default_rng(2)
        s = PrototypeStudent(classes=np.arange(3), prototypes=rng.normal(size=(300_000, 32)),
                             label_vectors=rng.dirichlet(np.ones(3), size=300_000))
        print("ready", flush=True)
        while True:
            s.save({str(saved)!r})
    """)
    for delay in (0.05, 0.3, 0.7):
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        loaded = load_student(saved)                     # the old one or a complete new one
        assert loaded.n_prototypes in (40, 300_000)
    loaded.save(saved)                                   # the next save removes the killed saves' leftovers
    assert not [p for p in saved.parent.iterdir() if p.name.startswith(".student.")]


def test_symlinks_in_and_at_the_target_are_never_followed(rng, tmp_path):
    outside = tmp_path / "precious.npz"
    outside.write_bytes(b"keep me")
    target = tmp_path / "s"
    target.mkdir()
    (target / "arrays.npz").symlink_to(outside)
    (target / "student.json").write_text("{}")
    _knn(rng).save(target)
    assert outside.read_bytes() == b"keep me" and not (target / "arrays.npz").is_symlink()
    link = tmp_path / "link"
    link.symlink_to(target)
    with pytest.raises(ValueError, match="symbolic link"):
        _knn(rng).save(link)
    (target / "arrays.npz").unlink()
    (target / "arrays.npz").symlink_to(outside)
    rewrite_manifest_error = None
    try:
        load_student(target)
    except ValueError as exc:
        rewrite_manifest_error = str(exc)
    assert rewrite_manifest_error and "symbolic link" in rewrite_manifest_error


def test_save_refuses_to_replace_a_directory_that_is_not_a_student(rng, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("years of work")
    with pytest.raises(ValueError, match="not an nnkd student; refusing to replace it"):
        _knn(rng).save(home)
    assert (home / "thesis.tex").read_text() == "years of work"


# -- the C core -------------------------------------------------------------------------------------------
def test_huge_label_values_do_not_crash_the_greedy_permutation(rng):
    X = rng.normal(size=(4, 3))
    res = greedy_permutation(X, labels=[0, 0, 0, 2**62 - 1])
    np.testing.assert_array_equal(res.train_errors, [1, 1, 0, 0])       # labels are re-coded 0, 0, 0, 1


def test_c_core_refuses_read_only_misaligned_and_swapped_outputs(rng):
    from nnkd import _cext

    X = rng.normal(size=(6, 2)).astype(np.float32)
    good = dict(order=np.empty(6, np.int64), radius=np.empty(6), owner=np.empty(6, np.int64), dist=np.empty(6))

    def run(**over):
        a = {**good, **over}
        return _cext.greedy_permutation(X, 0, 0, 6, -1.0, None, 0, None, a["order"], a["radius"], a["owner"],
                                        a["dist"], None, None)

    assert run() == 6
    ro = np.empty(6, np.int64)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        run(order=ro)
    with pytest.raises(ValueError, match="byte order"):
        run(radius=np.empty(6, dtype=">f8"))
    raw = np.zeros(6 * 8 + 1, dtype=np.uint8)[1:].view(np.float64)        # misaligned by one byte
    with pytest.raises(ValueError, match="alignment"):
        run(dist=raw)
    with pytest.raises(MemoryError, match="overflow"):
        _cext.greedy_permutation(X, 0, 0, 6, -1.0, np.zeros(6, np.int64), 2**62, None, good["order"], good["radius"],
                                 good["owner"], good["dist"], np.zeros(6, np.int64), np.zeros(6, np.int64))


def test_ctrl_c_interrupts_a_long_greedy_permutation():
    code = textwrap.dedent("""
        import signal, sys, numpy as np, nnkd
        # A shell's background job inherits SIGINT ignored; Python then installs no handler.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        X = np.random.default_rng(0).normal(size=(300_000, 16)).astype(np.float32)
        print("start", flush=True)
        try:
            nnkd.greedy_permutation(X)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
            sys.exit(3)
        print("finished", flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "start"
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 3 and out.strip() == "interrupted"
