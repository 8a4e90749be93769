"""Replay every class of hostile input and fault against nnkd, and count what went wrong.

Case classes (each case has one expected outcome; anything else is counted against it):

- **tampered, checksums intact**: random bytes of a saved student or index changed; must be refused.
- **tampered + checksums rewritten, key configured**: the attacker also rewrites the manifest
  (no key); loading with the key must refuse it before any native parser runs.
- **tampered + checksums rewritten, unsigned**: what the parsers themselves must survive: the
  loader refuses or loads, the process never dies, and a loaded student never answers NaN.
- **metadata outside the schema**: every reported loader gap and random type swaps in the
  metadata; one ``ValueError`` each.
- **interrupted saves**: ``kill -9`` at random moments of a large save, a file-size limit
  (``RLIMIT_FSIZE``) and an ``OSError`` injected at a random write; the previous student
  must load whole afterwards.
- **hostile HTTP clients**: malformed bodies, huge integers, non-finite outputs, 300 sockets that
  send half their headers, stalled bodies; every answer a JSON 4xx/5xx with the right status,
  ``/metrics`` counting the statuses sent, stalled sockets closed, the server alive.
- **adversarial arrays**: hostile inputs to public functions (greedy permutation, indexes,
  students, the C core); a clear exception or a correct result, never a crash.
- **hot reload under load**: reloads (SIGHUP and ``POST /admin/reload``, some of invalid
  students) while clients send requests; no request may fail or be lost.

Every case that could crash runs in a worker process; a worker that dies is a crash. Results:
``benchmarks/results/robustness.json`` and ``robustness.md``.

Usage: ``python benchmarks/robustness.py [--quick] [--seed 0]`` (about 2 minutes on 2 cores;
needs no data files).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path

from _common import DEFAULT_OUT_DIR, REPO_ROOT, log, machine_meta  # noqa: I001 - must come before numpy: it pins threads
import numpy as np

from nnkd.bench import markdown_table

KEY = "robustness-benchmark-key-0123456789"

# A worker process: reads one JSON case per line, answers one JSON outcome per line.
WORKER = textwrap.dedent(r"""
    import json, sys, traceback
    import numpy as np
    from nnkd.student import load_student
    from nnkd.index import load_index
    CLEAR = (ValueError, TypeError, FileNotFoundError, OSError, MemoryError, KeyboardInterrupt)
    for line in sys.stdin:
        case = json.loads(line)
        try:
            if case["op"] == "student":
                s = load_student(case["path"], key=case.get("key"))
                rows = np.load(case["rows"])
                try:
                    pred = s.predict(rows)
                except ValueError:
                    out = {"outcome": "refused_at_predict"}
                else:
                    same = (np.asarray(pred) == np.load(case["expected"], allow_pickle=False)).all()
                    out = {"outcome": "loaded_same" if same else "loaded_different"}
            elif case["op"] == "index":
                ix = load_index(case["path"], key=case.get("key"))
                ix.query(np.load(case["rows"]), 1)
                out = {"outcome": "loaded_same"}
            elif case["op"] == "call":
                exec(case["code"], {"np": np})
                out = {"outcome": "ok"}
        except CLEAR as exc:
            out = {"outcome": "refused", "error": f"{type(exc).__name__}: {str(exc)[:160]}"}
        except Exception as exc:
            out = {"outcome": "unexpected", "error": f"{type(exc).__name__}: {str(exc)[:160]}"}
        print(json.dumps(out), flush=True)
""")


class Worker:
    """One long-lived worker process; :meth:`run` restarts it after a crash."""

    def __init__(self):
        self.proc = None
        self.crashes = 0

    def _start(self):
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
        self.proc = subprocess.Popen([sys.executable, "-c", WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True, env=env)

    def run(self, case: dict) -> dict:
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        self.proc.stdin.write(json.dumps(case) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:                                         # the process died: a crash
            self.proc.wait()
            self.crashes += 1
            code = self.proc.returncode
            self.proc = None
            return {"outcome": "crash", "error": f"worker died with status {code}"}
        return json.loads(line)

    def close(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)


# -- fixtures -------------------------------------------------------------------------------------
def make_students(root: Path, rng) -> dict[str, tuple[Path, Path, Path]]:
    """Saved students of every kind (and an approximate index): name -> (dir, rows, expected)."""
    from sklearn.datasets import load_digits, load_iris

    from nnkd import KernelKNNClassifier, KernelKNNRegressor, MarginCondensedNN, SoftDecisionTreeClassifier
    from nnkd.student import ProjectionStudent

    X, y = load_digits(return_X_y=True)
    Xi, yi = load_iris(return_X_y=True)
    built = {
        "knn (condensed)": MarginCondensedNN(method="hart", random_state=0).fit(X, y).to_student(),
        "knn (faiss HNSW)": KernelKNNClassifier(3, index="faiss:HNSW16").fit(X[:600], y[:600]).to_student(),
        "knn (nmslib hnsw)": KernelKNNClassifier(3, index="nmslib:hnsw").fit(X[:600], y[:600]).to_student(),
        "knn_regressor": KernelKNNRegressor(4).fit(Xi, Xi[:, 0] * 2).to_student(),
        "rbf": ProjectionStudent(classes=np.arange(3), prototypes=rng.normal(size=(20, 4)),
                                 label_vectors=rng.normal(size=(20, 3)), projection=rng.normal(size=(4, 64)) / 8,
                                 gamma=0.5, support=np.arange(20), cell_indptr=np.arange(21),
                                 cell_indices=np.arange(20)),
        "tree": SoftDecisionTreeClassifier(depth=3, max_epochs=5, random_state=0).fit(Xi, yi).to_student(),
    }
    out = {}
    for name, student in built.items():
        directory = root / name.replace(" ", "_").replace("(", "").replace(")", "")
        student.save(directory / "unsigned")
        student.save(directory / "signed", key=KEY)
        rows = student.example_inputs(20, rng)
        np.save(directory / "rows.npy", rows)
        np.save(directory / "expected.npy", student.predict(rows), allow_pickle=False)
        out[name] = directory
    return out


def mutate(path: Path, rng, rewrite: bool) -> None:
    """Change 1-8 random bytes (or truncate) one random file of the artifact at ``path``."""
    from nnkd._core.artifacts import MANIFEST_FILE, sha256_file

    files = sorted(p for p in path.rglob("*") if p.is_file() and p.name != MANIFEST_FILE)
    target = files[rng.integers(len(files))]
    blob = bytearray(target.read_bytes())
    if rng.random() < 0.2:
        blob = blob[:rng.integers(len(blob))]
    else:
        for _ in range(rng.integers(1, 9)):
            pos = int(rng.integers(len(blob)))
            blob[pos] = (blob[pos] + int(rng.integers(1, 256))) % 256
    target.write_bytes(bytes(blob))
    if rewrite:                                      # an attacker without the key fixes every manifest
        for manifest_path in path.rglob(MANIFEST_FILE):
            manifest = json.loads(manifest_path.read_text())
            base = manifest_path.parent
            manifest["files"] = {n: sha256_file(base / n) for n in manifest["files"] if (base / n).is_file()}
            manifest.pop("signature", None)
            manifest_path.write_text(json.dumps(manifest))


# -- the case classes --------------------------------------------------------------------------------
def tampering(worker: Worker, students: dict, rng, n: int, tmp: Path) -> dict:
    results = {}
    for label, rewrite, signed, key in (("tampered, checksums intact", False, "unsigned", None),
                                        ("tampered + checksums rewritten, key configured", True, "signed", KEY),
                                        ("tampered + checksums rewritten, unsigned", True, "unsigned", None)):
        counts = Counter()
        for i in range(n):
            name = list(students)[i % len(students)]
            src = students[name]
            case_dir = tmp / f"t{len(results)}-{i}"
            shutil.copytree(src / signed, case_dir)
            mutate(case_dir, rng, rewrite)
            got = worker.run({"op": "student", "path": str(case_dir), "key": key, "rows": str(src / "rows.npy"),
                              "expected": str(src / "expected.npy")})
            outcome = got["outcome"]
            if outcome in ("crash", "unexpected"):
                counts["crash"] += 1
            elif label != "tampered + checksums rewritten, unsigned" and outcome != "refused":
                counts["silent wrong"] += 1            # a modified artifact that loaded
            else:
                counts["refused" if outcome.startswith("refused") else "accepted"] += 1
            shutil.rmtree(case_dir)
        results[label] = counts
    return results


def native_indexes(worker: Worker, rng, n: int, tmp: Path) -> dict:
    from nnkd.index import make_index

    counts = Counter()
    X = rng.normal(size=(400, 16)).astype(np.float32)
    np.save(tmp / "q.npy", X[:5])
    for i in range(n):
        spec = ("faiss:HNSW32", "nmslib:hnsw")[i % 2]
        path = make_index(spec).fit(X).save(tmp / f"ix{i}", key=KEY if i % 4 < 2 else None)
        mutate(path, rng, rewrite=True)
        got = worker.run({"op": "index", "path": str(path), "key": KEY if i % 4 < 2 else None,
                          "rows": str(tmp / "q.npy")})
        counts["crash" if got["outcome"] in ("crash", "unexpected") else
               "refused" if got["outcome"] == "refused" else "silent wrong"] += 1
    return {"native index files tampered + checksums rewritten (signed and unsigned)": counts}


def schema(worker: Worker, students: dict, rng, n_random: int, tmp: Path) -> dict:
    from nnkd._core.artifacts import MANIFEST_FILE, sha256_file

    edits = [lambda m: {k: v for k, v in m.items() if k != "kind"},
             lambda m: {k: v for k, v in m.items() if k != "shapes"},
             lambda m: {**m, "format_version": True}, lambda m: {**m, "depth": 1e308},
             lambda m: {**m, "n_neighbors": 1e308}, lambda m: {**m, "gamma": "Infinity"},
             lambda m: {**m, "shapes": {k: [10**12] for k in m["shapes"]}},
             lambda m: {**m, "classes": {"dtype": "int", "values": [True]}},
             lambda m: {**m, "kind": ["knn"]}, lambda m: {**m, "dtype": "float8"}]
    values = [None, True, -1, 0, 1e308, "x", [], {}, [1e308], {"dtype": "str"}, 2**70]
    counts = Counter()
    names = list(students)
    for i in range(len(edits) * len(names) + n_random):
        src = students[names[i % len(names)]]
        case_dir = tmp / f"s{i}"
        shutil.copytree(src / "unsigned", case_dir)
        meta = json.loads((case_dir / "student.json").read_text())
        if i < len(edits) * len(names):
            meta = edits[i // len(names)](meta)
        else:
            key = list(meta)[rng.integers(len(meta))]
            meta[key] = values[rng.integers(len(values))]
        (case_dir / "student.json").write_text(json.dumps(meta))
        manifest = json.loads((case_dir / MANIFEST_FILE).read_text())
        manifest["files"] = {n: sha256_file(case_dir / n) for n in manifest["files"]}
        (case_dir / MANIFEST_FILE).write_text(json.dumps(manifest))
        got = worker.run({"op": "student", "path": str(case_dir), "rows": str(src / "rows.npy"),
                          "expected": str(src / "expected.npy")})
        counts["crash" if got["outcome"] in ("crash", "unexpected") else
               "refused" if got["outcome"].startswith("refused") else "accepted"] += 1
        shutil.rmtree(case_dir)
    return {"metadata outside the schema (checksums rewritten)": counts}


def interrupted_saves(students: dict, rng, n_kill: int, tmp: Path) -> dict:
    from nnkd.student import load_student

    counts = Counter()
    target = tmp / "victim"
    shutil.copytree(students["knn (condensed)"] / "unsigned", target)
    before = load_student(target).predict(np.load(students["knn (condensed)"] / "rows.npy"))
    big = textwrap.dedent(f"""
        import numpy as np, sys, resource
        from nnkd.student import PrototypeStudent
        limit = int(sys.argv[1])
        if limit:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        rng = np.random.default_rng(int(sys.argv[2]))
        s = PrototypeStudent(classes=np.arange(10), prototypes=rng.normal(size=(200_000, 64)),
                             label_vectors=rng.dirichlet(np.ones(10), size=200_000))
        print("ready", flush=True)
        try:
            s.save({str(target)!r})
        except OSError:
            pass
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}

    rows = np.load(students["knn (condensed)"] / "rows.npy")

    def check(kind: str, new_size: int) -> None:
        """After a save was cut short: the previous student, or the complete new one."""
        try:
            s = load_student(target)
            ok = s.n_prototypes == new_size or bool((s.predict(rows) == before).all())
        except (ValueError, OSError):
            ok = False
        counts[f"{kind}: previous or complete new student loads"] += ok
        counts["previous lost"] += not ok

    for i in range(n_kill):
        proc = subprocess.Popen([sys.executable, "-c", big, "0", str(i)], stdout=subprocess.PIPE, text=True, env=env)
        proc.stdout.readline()
        time.sleep(float(rng.uniform(0.0, 1.5)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        check("kill -9", 200_000)
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(students["knn (condensed)"] / "unsigned", target)
    for limit in (1_000, 100_000, 10_000_000, 50_000_000):
        subprocess.run([sys.executable, "-c", big, str(limit), "0"], capture_output=True, env=env, check=False)
        check("RLIMIT_FSIZE", 200_000)
    code = textwrap.dedent(f"""
        import numpy as np, sys, builtins
        from nnkd.student import PrototypeStudent
        real_open, calls = builtins.open, [0]
        fail_at = int(sys.argv[1])
        def failing_open(*a, **k):
            if len(a) > 1 and "w" in str(a[1]):
                calls[0] += 1
                if calls[0] == fail_at:
                    raise OSError(28, "No space left on device")
            return real_open(*a, **k)
        builtins.open = failing_open
        rng = np.random.default_rng(0)
        s = PrototypeStudent(classes=np.arange(3), prototypes=rng.normal(size=(50, 4)),
                             label_vectors=rng.dirichlet(np.ones(3), size=50))
        try:
            s.save({str(target)!r})
        except OSError:
            pass
    """)
    for fail_at in range(1, 6):
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(students["knn (condensed)"] / "unsigned", target)
        subprocess.run([sys.executable, "-c", code, str(fail_at)], capture_output=True, env=env, check=False)
        check("injected OSError", 50)
    leftovers = [p.name for p in tmp.iterdir() if p.name.startswith(".victim.")]
    counts["temporary directories of killed saves left after the next save"] = len(leftovers)
    return {"interrupted saves": counts}


def hostile_http(tmp: Path) -> dict:
    import socket

    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    sys.path.insert(0, str(REPO_ROOT / "tests"))
    from _http import _start_server, _stop

    from nnkd.student import ProjectionStudent

    rng = np.random.default_rng(0)
    student = ProjectionStudent(classes=np.array(["x", "y"]), prototypes=rng.normal(size=(6, 3)),
                                label_vectors=rng.normal(size=(6, 2)), projection=rng.normal(size=(3, 4)), gamma=0.5)
    directory = student.save(tmp / "http-student")
    proc, url = _start_server(directory, "--header-timeout", "1", "--body-timeout", "1")
    port = int(url.rsplit(":", 1)[1])
    counts, sent = Counter(), Counter()
    ok_row = [[0.1, 0.2, 0.3, 0.4]]
    cases = [  # (body or json, expected status)
        (b"", 400), (b"{", 400), (b"[]", 400), (b'"x"', 400), (b"\xff\xfe", 400), (b'{"instances": 5}', 422),
        (b'{"instances": [[1, 2]]}', 422), (b'{"instances": [[1, 2, 3, "4"]]}', 422),
        (b'{"instances": [[1, 2, 3, NaN]]}', 422), (b'{"instances": [[1, 2, 3, Infinity]]}', 422),
        (b'{"instances": [[1e39, 2, 3, 4]]}', 422), (b'{"instances": [[true, 2, 3, 4]]}', 422),
        (b'{"instances": ' + b"[" * 5000 + b"]" * 5000 + b"}", 400),
        (b'{"instances": [[' + b"9" * 5000 + b', 1, 2, 3]]}', 422),
        (b'{"instances": [[-' + b"9" * 4400 + b', 1, 2, 3]]}', 422),
        (b'{"instances": [[1, 2, 3, 4]], "k": 0}', 422), (b'{"instances": [[1, 2, 3, 4]], "return": ["x"]}', 422),
        (b'{"instances": [[1, 2, 3, 4]], "evil": 1}', 422), (json.dumps({"instances": ok_row * 2000}).encode(), 413),
        (json.dumps({"instances": [[3e38, -3e38, 3e38, 3e38]]}).encode(), 500),
        (json.dumps({"instances": [[3e38, -3e38, 3e38, 3e38]], "return": ["proba"]}).encode(), 500),
        (json.dumps({"instances": ok_row}).encode(), 200)]
    try:
        with httpx.Client(base_url=url, timeout=20) as client:
            for body, expected in cases:
                r = client.post("/v1/predict", content=body, headers={"content-type": "application/json"})
                sent[str(r.status_code)] += 1
                is_json = r.headers.get("content-type", "").startswith("application/json")
                right = r.status_code == expected and is_json and ("error" in r.json()) == (expected != 200)
                counts["answered as expected" if right else "wrong status or body"] += 1
            # 300 connections that send half their headers and stall
            socks = []
            for _ in range(300):
                s = socket.create_connection(("127.0.0.1", port))
                s.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-")
                socks.append(s)
            time.sleep(3.0)
            closed = 0
            for s in socks:
                s.settimeout(2.0)
                try:
                    closed += s.recv(1) == b""
                except OSError:
                    closed += 1
                s.close()
            counts["stalled-header sockets closed by the server"] = closed
            counts["stalled-header sockets left open"] = len(socks) - closed
            for _ in range(5):                   # stalled bodies: 408
                with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                    s.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                              b"Content-Length: 50\r\n\r\n{\"inst")
                    reply = s.recv(4096)
                right = reply.startswith(b"HTTP/1.1 408")
                sent["408"] += right
                counts["answered as expected" if right else "wrong status or body"] += 1
            metrics = client.get("/metrics").text
            counted = Counter()
            for family in text_string_to_metric_families(metrics):
                if family.name == "nnkd_requests":
                    for sample in family.samples:
                        if sample.name == "nnkd_requests_total" and sample.labels["endpoint"] == "/v1/predict":
                            counted[sample.labels["code"]] += int(sample.value)
            counts["/metrics status counts that differ from the statuses sent"] = sum(
                abs(counted[c] - sent[c]) for c in set(counted) | set(sent))
            counts["server alive at the end"] = int(client.get("/healthz").status_code == 200)
    finally:
        _stop(proc)
    counts["server exit status after SIGTERM"] = proc.returncode
    return {"hostile HTTP clients": counts}


ADVERSARIAL = [
    "from nnkd import greedy_permutation; greedy_permutation(np.zeros((4, 3)), labels=[0, 0, 0, 2**62 - 1])",
    "from nnkd import greedy_permutation; greedy_permutation(np.full((3, 2), np.nan))",
    "from nnkd import greedy_permutation; greedy_permutation(np.zeros((0, 2)))",
    "from nnkd import greedy_permutation; greedy_permutation(np.zeros((2, 2, 2)))",
    "from nnkd import greedy_permutation; greedy_permutation(np.array([['a']]))",
    "from nnkd import greedy_permutation; greedy_permutation(np.zeros((5, 2)), start=-1)",
    "from nnkd import greedy_permutation; greedy_permutation(np.zeros((5, 2)), max_prototypes=10**18)",
    "from nnkd import greedy_permutation; greedy_permutation(np.zeros((5, 2)), labels=np.arange(5, dtype=np.uint64) * 2**62)",
    "from nnkd import greedy_permutation; greedy_permutation(np.full((5, 2), 3e38))",
    "from nnkd import _cext; o = np.empty(4, np.int64); o.flags.writeable = False; "
    "_cext.greedy_permutation(np.zeros((4, 2), np.float32), 0, 0, 4, -1.0, None, 0, None, o, np.empty(4), "
    "np.empty(4, np.int64), np.empty(4), None, None)",
    "from nnkd import _cext; _cext.greedy_permutation(np.zeros((4, 2), np.float32), 0, 0, 4, -1.0, "
    "np.zeros(4, np.int64), 2**62, None, np.empty(4, np.int64), np.empty(4), np.empty(4, np.int64), np.empty(4), "
    "np.zeros(4, np.int64), np.zeros(4, np.int64))",
    "from nnkd import _cext; _cext.greedy_permutation(np.zeros((4, 2), np.float32), 9, 0, 4, -1.0, None, 0, None, "
    "np.empty(4, np.int64), np.empty(4), np.empty(4, np.int64), np.empty(4), None, None)",
    "from nnkd import _cext; _cext.greedy_permutation(np.zeros((4, 2), np.float32), 0, 3, 4, -1.0, None, 0, None, "
    "np.empty(2, np.int64), np.empty(4), np.empty(4, np.int64), np.empty(4), None, None)",
    "from nnkd import _cext; _cext.pairs_to_arrays([(np.arange(5, dtype=np.int32), np.zeros(5, np.float32))], "
    "np.empty((1, 2), np.int64), np.empty((1, 2), np.float32))",
    "from nnkd import _cext; _cext.pairs_to_arrays([5], np.empty((1, 2), np.int64), np.empty((1, 2), np.float32))",
    "from nnkd.index import make_index; make_index('exact').fit(np.zeros((3, 2))).query(np.zeros((1, 2)), 10**12)",
    "from nnkd.index import make_index; make_index('exact').fit(np.zeros((3, 2))).query(np.zeros((1, 3)), 1)",
    "from nnkd.index import make_index; make_index('faiss:HNSW32').fit(np.full((30, 4), 3e38, np.float32)).query("
    "np.full((2, 4), -3e38, np.float32), 3)",
    "from nnkd.index import make_index; make_index('nmslib:hnsw').fit(np.random.rand(30, 4)).query("
    "np.full((2, 4), 3e38, np.float32), 3)",
    "from nnkd.index import make_index; make_index('faiss:IVF4,Flat').fit(np.random.rand(3, 4))",
    "from nnkd.student import ProjectionStudent; ProjectionStudent(classes=np.arange(2), prototypes=np.ones((2, 2)),"
    " label_vectors=np.ones((2, 2)), projection=np.ones((2, 3)), gamma=1.0).predict(np.full((1, 3), 3e38))",
    "from nnkd.student import PrototypeStudent; PrototypeStudent(classes=np.arange(2), prototypes=np.ones((2, 2)),"
    " label_vectors=np.full((2, 2), np.nan))",
    "from nnkd import KernelKNNClassifier; KernelKNNClassifier(2).fit(np.random.rand(5, 2), np.arange(5))"
    ".predict(np.full((1, 2), np.inf))",
    "from nnkd import MarginCondensedNN; MarginCondensedNN().fit(np.random.rand(6, 2), [0, 1] * 3)"
    ".predict(np.zeros((1, 5)))",
    "from nnkd import KernelKNNRegressor; KernelKNNRegressor(2, kernel='uniform', bandwidth=1e-30)"
    ".fit(np.random.rand(5, 2), np.arange(5.0)).predict(np.random.rand(2, 2) + 5)",
]


def adversarial(worker: Worker) -> dict:
    counts = Counter()
    for code in ADVERSARIAL:
        got = worker.run({"op": "call", "code": code})
        counts["crash" if got["outcome"] in ("crash", "unexpected") else "clear error or correct result"] += 1
    return {"adversarial arrays to public functions": counts}


def hot_reload(tmp: Path, n_reloads: int) -> dict:
    import httpx

    sys.path.insert(0, str(REPO_ROOT / "tests"))
    from _http import _start_server, _stop

    from nnkd.student import PrototypeStudent

    def student(seed, classes):
        rng = np.random.default_rng(seed)
        return PrototypeStudent(classes=np.array(classes), prototypes=rng.normal(size=(50, 4)),
                                label_vectors=rng.dirichlet(np.ones(len(classes)), size=50))

    directory = student(0, ["a", "b"]).save(tmp / "reload")
    bad = student(1, ["a", "b"]).save(tmp / "reload-bad")
    (bad / "arrays.npz").write_bytes(b"not an archive")
    proc, url = _start_server(directory, "--max-delay-ms", "2")
    rows = np.random.default_rng(9).normal(size=(3, 4)).tolist()
    results, stop = [], threading.Event()

    def client():
        with httpx.Client(base_url=url, timeout=30) as c:
            while not stop.is_set():
                try:
                    results.append(c.post("/v1/predict", json={"instances": rows}).status_code)
                except httpx.HTTPError:
                    results.append("lost")

    threads = [threading.Thread(target=client) for _ in range(4)]
    counts = Counter()
    try:
        for t in threads:
            t.start()
        for i in range(n_reloads):
            time.sleep(0.3)
            if i % 3 == 2:                                   # an invalid student: refused, old one serves
                r = httpx.post(f"{url}/admin/reload", json={"path": str(bad)}, timeout=30)
                counts["invalid reloads refused"] += r.status_code == 422
            elif i % 2:
                student(10 + i, ["a", "b", "c"][: 2 + i % 2]).save(directory)
                before = httpx.get(f"{url}/v1/model", timeout=10).json()["reloads"]
                proc.send_signal(signal.SIGHUP)
                deadline = time.monotonic() + 20
                while httpx.get(f"{url}/v1/model", timeout=10).json()["reloads"] == before:
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.02)
                counts["SIGHUP reloads"] += 1
            else:
                student(20 + i, ["p", "q"]).save(directory)
                r = httpx.post(f"{url}/admin/reload", json={}, timeout=30)
                counts["admin reloads"] += r.status_code == 200
        time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join()
        _stop(proc)
    codes = Counter(results)
    counts["requests sent during reloads"] = len(results)
    counts["requests failed"] = sum(v for k, v in codes.items() if k not in (200, "lost"))
    counts["requests lost"] = codes.get("lost", 0)
    return {"hot reload under load": counts}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer cases per class")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    scale = 1 if args.quick else 4
    start = time.perf_counter()
    worker = Worker()
    classes: dict[str, Counter] = {}
    with tempfile.TemporaryDirectory(prefix="nnkd-robustness-") as tmp_name:
        tmp = Path(tmp_name)
        log("saving students of every kind")
        students = make_students(tmp / "students", rng)
        log("tampered artifacts")
        classes.update(tampering(worker, students, rng, 30 * scale, tmp))
        log("native index files")
        classes.update(native_indexes(worker, rng, 5 * scale, tmp))
        log("metadata schema")
        classes.update(schema(worker, students, rng, 20 * scale, tmp))
        log("interrupted saves")
        classes.update(interrupted_saves(students, rng, 3 * scale, tmp))
        log("hostile HTTP clients")
        classes.update(hostile_http(tmp))
        log("adversarial arrays")
        classes.update(adversarial(worker))
        log("hot reload under load")
        classes.update(hot_reload(tmp, 3 * scale))
    worker.close()
    elapsed = time.perf_counter() - start
    rows = [{"class": name, **dict(counts)} for name, counts in classes.items()]
    summary = {
        "crashes": sum(c.get("crash", 0) for c in classes.values()),
        "silent wrong answers": sum(c.get("silent wrong", 0) + c.get("wrong status or body", 0)
                                    for c in classes.values()),
        "previous artifacts lost": sum(c.get("previous lost", 0) for c in classes.values()),
        "requests lost or failed during hot reload": classes["hot reload under load"]["requests lost"]
        + classes["hot reload under load"]["requests failed"],
    }
    out = args.out_dir
    out.mkdir(parents=True, exist_ok=True)
    (out / "robustness.json").write_text(json.dumps({"summary": summary, "classes": rows, "elapsed_s": elapsed,
                                                     "meta": machine_meta(args.threads)}, indent=2, default=int))
    lines = ["# Robustness: hostile inputs and faults", "",
             f"`python benchmarks/robustness.py{' --quick' if args.quick else ''} --seed {args.seed}`, "
             f"{elapsed:.0f} s on this machine. Each line counts the cases of one class by outcome; a "
             "crash is a worker process that died or an exception other than a clear "
             "ValueError/TypeError/OSError.", "",
             *markdown_table(["", "count"], [[k, str(v)] for k, v in summary.items()]), ""]
    for name, counts in classes.items():
        lines += [f"## {name}", "", *markdown_table(["outcome", "cases"], [[k, str(v)] for k, v in counts.items()]),
                  ""]
    (out / "robustness.md").write_text("\n".join(lines))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
