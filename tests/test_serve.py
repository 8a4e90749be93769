"""nnkd serve / nnkd loadtest: the server runs in a subprocess on a free loopback port and is
checked against ``load_student(...)`` in this process (the oracle), plus unit tests of the
planner, the AIMD controller, the batcher, the metrics text and the arrival schedule."""

from __future__ import annotations

import asyncio
import json
import math
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
prometheus_parser = pytest.importorskip("prometheus_client.parser")

from _http import _env, _free_port, _start_server, _stop

from nnkd.cli import main
from nnkd.serve import (
    AIMDController,
    LatencyProfile,
    MicroBatcher,
    arrival_times,
    plan_batching,
    run_loadtest,
)
from nnkd.serve._metrics import ServerMetrics
from nnkd.serve._requests import RequestError, decode_json, parse_instances
from nnkd.student import PrototypeStudent, Student, load_student

N_FEATURES = 8
MAX_INSTANCES = 100
MAX_BODY = 64 * 1024


@pytest.fixture(scope="module")
def student_dir(tmp_path_factory) -> Path:
    """A real knn student (60 prototypes standing for 600 training rows, string classes)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, N_FEATURES)).astype(np.float32)
    support = np.arange(0, 600, 10)
    P = X[support]
    cell = np.argmin(((X[:, None, :] - P[None]) ** 2).sum(-1), axis=1)
    order = np.argsort(cell, kind="stable")
    indptr = np.concatenate([[0], np.cumsum(np.bincount(cell, minlength=len(P)))])
    labels = rng.dirichlet(np.ones(3), size=len(P)).astype(np.float32)
    student = PrototypeStudent(classes=np.array(["ant", "bee", "cat"]), prototypes=P, label_vectors=labels, n_neighbors=3,
                      kernel="triangular", support=support, cell_indptr=indptr, cell_indices=order)
    return student.save(tmp_path_factory.mktemp("serve") / "student")


@pytest.fixture(scope="module")
def server(student_dir):
    proc, url = _start_server(student_dir, "--max-instances", str(MAX_INSTANCES), "--max-body-bytes", str(MAX_BODY))
    try:
        yield url
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def oracle(student_dir) -> Student:
    return load_student(student_dir)


def _rows(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, N_FEATURES)).astype(np.float32)


def _post(url: str, path: str, payload, **kw) -> httpx.Response:
    return httpx.post(f"{url}{path}", json=payload, timeout=10.0, **kw)


# --------------------------------------------------------------------------- predictions over HTTP

def test_predict_equals_load_student(server, oracle):
    X = _rows(50, 1)
    r = _post(server, "/v1/predict", {"instances": X.tolist(), "return": ["label", "proba"]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["label"] == oracle.predict(X).tolist()
    assert body["classes"] == ["ant", "bee", "cat"]
    np.testing.assert_array_equal(np.array(body["proba"]), oracle.predict_proba(X))


def test_concurrent_requests_are_batched_and_each_gets_its_own_answer(server, oracle):
    X = _rows(64, 2)

    async def fire():
        async with httpx.AsyncClient(base_url=server, timeout=10.0) as client:
            return await asyncio.gather(*(client.post("/v1/predict", json={"instances": [row]})
                                          for row in X.tolist()))

    before = _metric_value(server, "nnkd_batch_size_rows", "nnkd_batch_size_rows_count")
    responses = asyncio.run(fire())
    assert [r.status_code for r in responses] == [200] * len(X)
    assert [r.json()["label"][0] for r in responses] == oracle.predict(X).tolist()
    batches = _metric_value(server, "nnkd_batch_size_rows", "nnkd_batch_size_rows_count") - before
    assert 1 <= batches <= len(X)


def test_neighbors_equal_explain(server, oracle):
    X = _rows(5, 3)
    r = _post(server, "/v1/neighbors", {"instances": X.tolist(), "k": 4})
    assert r.status_code == 200, r.text
    assert r.json()["neighbors"] == oracle.explain(X, k=4)
    first = r.json()["neighbors"][0]["prototypes"][0]
    assert set(first) >= {"prototype", "distance", "training_rows", "support_row"} and first["training_rows"]
    r = _post(server, "/v1/predict", {"instances": X.tolist(), "return": ["neighbors"]})
    assert r.json() == {"neighbors": oracle.explain(X, k=3)}


def test_model_health_ready(server, oracle):
    model = httpx.get(f"{server}/v1/model").json()
    assert model["student"]["n_features_in"] == N_FEATURES
    assert model["student"]["n_prototypes"] == oracle.prototypes.shape[0]
    assert model["student"]["classes"] == ["ant", "bee", "cat"]
    assert "arrays.npz" in model["student"]["checksums"]
    plan = model["batching"]["plan"]
    assert 1 <= plan["max_batch"] <= plan["cap"] and plan["slo_ms"] == 50.0 and plan["max_delay_ms"] >= 0
    assert model["batching"]["profile"]["rows"][0]["batch_size"] == 1
    assert model["limits"]["max_instances"] == MAX_INSTANCES
    assert httpx.get(f"{server}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{server}/readyz").json() == {"status": "ready"}


# --------------------------------------------------------------------------- bad input

_GOOD_ROW = [0.5] * N_FEATURES
_BAD_BODIES = {
    "wrong dimension": ({"instances": [_GOOD_ROW, [1.0, 2.0, 3.0]]}, 422,
                        f"instances[1] has 3 values; this student expects {N_FEATURES}"),
    "NaN": (b'{"instances": [[NaN' + b", 0" * (N_FEATURES - 1) + b"]]}", 422, "instances[0][0] is NaN"),
    "infinity": (b'{"instances": [[0, -Infinity' + b", 0" * (N_FEATURES - 2) + b"]]}", 422,
                 "instances[0][1] is infinite"),
    "float32 overflow": ({"instances": [[1e39] + _GOOD_ROW[1:]]}, 422,
                         "instances[0][0] is 1e+39, outside the float32 range"),
    "huge integer": (b'{"instances": [[' + b"1" * 400 + b", 0" * (N_FEATURES - 1) + b"]]}", 422, "too large"),
    "string value": ({"instances": [_GOOD_ROW, ["1"] + _GOOD_ROW[1:]]}, 422, "instances[1][0] is a string"),
    "boolean value": ({"instances": [[True] + _GOOD_ROW[1:]]}, 422, "instances[0][0] is a boolean"),
    "null value": ({"instances": [[None] + _GOOD_ROW[1:]]}, 422, "instances[0][0] is null"),
    "row not an array": ({"instances": [_GOOD_ROW, 3]}, 422, "instances[1] is a number"),
    "instances not an array": ({"instances": "abc"}, 422, '"instances" must be an array'),
    "empty": ({"instances": []}, 422, '"instances" is empty'),
    "too many instances": ({"instances": [[0.0] * N_FEATURES] * (MAX_INSTANCES + 1)}, 413,
                           f"at most {MAX_INSTANCES} are accepted"),
    "missing instances": ({"rows": [_GOOD_ROW]}, 422, "unknown field(s) ['rows']"),
    "no instances field": ({}, 422, 'missing field "instances"'),
    "bad return": ({"instances": [_GOOD_ROW], "return": ["logits"]}, 422, '"return" must be'),
    "bad k": ({"instances": [_GOOD_ROW], "k": 0}, 422, '"k" must be an integer >= 1'),
    "k beyond the prototypes": ({"instances": [_GOOD_ROW], "k": 61, "return": ["neighbors"]}, 422,
                                "k must be an integer in [1, 60] (the number of prototypes)"),
    "malformed JSON": (b'{"instances": [[1, 2', 400, "malformed JSON"),
    "not UTF-8": (b'{"instances": "\xff"}', 400, "not UTF-8"),
    "not an object": (b"[[1, 2, 3]]", 400, "must be a JSON object, not an array"),
    "empty body": (b"", 400, "the request body is empty"),
    "body over the limit": (b'{"instances": [' + b" " * MAX_BODY + b"]}", 413, f"the limit is {MAX_BODY} bytes"),
}


def test_values_beyond_float32_are_refused_without_a_numpy_warning():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")           # the server log once showed "overflow encountered in cast"
        with pytest.raises(RequestError, match=r"instances\[0\]\[1\] is -1e\+39, outside the float32 range"):
            parse_instances([[0.5, -1e39]], 2, 10)


@pytest.mark.parametrize("case", list(_BAD_BODIES))
def test_bad_input_is_a_4xx_naming_the_problem(server, case):
    body, status, message = _BAD_BODIES[case]
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    r = httpx.post(f"{server}/v1/predict", content=content, headers={"Content-Type": "application/json"}, timeout=10)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    assert message in r.json()["error"]


def test_other_bad_requests(server):
    def chunks():                                 # chunked upload: no Content-Length to check up front
        yield b'{"instances": ['
        for _ in range(MAX_BODY // 1024 + 1):
            yield b" " * 1024
        yield b"]}"

    r = httpx.post(f"{server}/v1/predict", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "exceeds the limit" in r.json()["error"]
    r = httpx.post(f"{server}/v1/predict", content=b"a=1", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 415 and "Content-Type must be application/json" in r.json()["error"]
    r = httpx.get(f"{server}/v1/predict")
    assert r.status_code == 405 and "error" in r.json()
    r = httpx.get(f"{server}/nope")
    assert r.status_code == 404 and "/nope" in r.json()["error"]
    r = _post(server, "/v1/neighbors", {"instances": [_GOOD_ROW], "return": ["label"]})
    assert r.status_code == 422 and "unknown field(s) ['return']" in r.json()["error"]


def test_bad_requests_do_not_disturb_good_ones(server, oracle):
    X = _rows(20, 4)
    bad = [json.dumps(b).encode() if not isinstance(b, bytes) else b for b, _, _ in _BAD_BODIES.values()]

    async def fire():
        async with httpx.AsyncClient(base_url=server, timeout=10.0,
                                     headers={"Content-Type": "application/json"}) as client:
            good = [client.post("/v1/predict", content=json.dumps({"instances": [row]}).encode())
                    for row in X.tolist()]
            worse = [client.post("/v1/predict", content=b) for b in bad]
            return await asyncio.gather(*good, *worse)     # all in flight together

    responses = asyncio.run(fire())
    assert [r.status_code for r in responses[:len(X)]] == [200] * len(X)
    assert [r.json()["label"][0] for r in responses[:len(X)]] == oracle.predict(X).tolist()
    assert [r.status_code for r in responses[len(X):]] == [status for _, status, _ in _BAD_BODIES.values()]
    assert httpx.get(f"{server}/readyz").status_code == 200


# --------------------------------------------------------------------------- metrics

def _families(url: str) -> dict:
    r = httpx.get(f"{url}/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {f.name: f for f in prometheus_parser.text_string_to_metric_families(r.text)}


def _metric_value(url: str, family: str, sample: str, **labels) -> float:
    for s in _families(url)[family].samples:
        if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    return 0.0


def test_metrics_parse_as_prometheus_text(server):
    _post(server, "/v1/predict", {"instances": [_GOOD_ROW]})
    _post(server, "/v1/predict", {"instances": []})
    fams = _families(server)
    assert fams["nnkd_requests"].type == "counter"
    ok = [s for s in fams["nnkd_requests"].samples
          if s.labels == {"endpoint": "/v1/predict", "code": "200"} and s.name == "nnkd_requests_total"]
    assert ok and ok[0].value >= 1
    errors = {(s.labels["endpoint"], s.labels["code"]) for s in fams["nnkd_request_errors"].samples}
    assert ("/v1/predict", "422") in errors
    for name in ("nnkd_request_duration_seconds", "nnkd_queue_wait_seconds", "nnkd_batch_size_rows",
                 "nnkd_batch_duration_seconds"):
        assert fams[name].type == "histogram", name
        names = {s.name for s in fams[name].samples}
        assert {f"{name}_bucket", f"{name}_sum", f"{name}_count"} <= names
    buckets = [s for s in fams["nnkd_request_duration_seconds"].samples
               if s.name.endswith("_bucket") and s.labels["endpoint"] == "/v1/predict"]
    counts = [s.value for s in buckets]
    assert counts == sorted(counts) and buckets[-1].labels["le"] == "+Inf"
    assert fams["nnkd_requests_in_flight"].type == "gauge"
    assert fams["nnkd_requests_in_flight"].samples[0].value >= 1     # this scrape itself
    assert fams["nnkd_batch_max_rows"].samples[0].value >= 1


def test_metrics_are_prometheus_clients_with_process_metrics(server):
    fams = _families(server)
    # prometheus_client's own collectors: what every dashboard expects next to nnkd's.
    for name in ("process_resident_memory_bytes", "process_cpu_seconds", "process_open_fds", "python_info"):
        assert name in fams, name
    assert fams["process_resident_memory_bytes"].samples[0].value > 1e6
    # OpenMetrics on request, parsed by the client's own OpenMetrics parser.
    from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families

    r = httpx.get(f"{server}/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/openmetrics-text")
    assert r.text.endswith("# EOF\n")
    assert "nnkd_requests" in {f.name for f in openmetrics_families(r.text)}


def test_server_metrics_count_what_they_are_told():
    from prometheus_client.parser import text_string_to_metric_families

    metrics = ServerMetrics()
    metrics.requests.labels("/v1/predict", "200").inc(3)
    for v in (0.0004, 0.05, 3.0):
        metrics.latency.labels("/v1/predict").observe(v)
    body, content_type = metrics.expose()
    assert content_type.startswith("text/plain; version=0.0.4")
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(body.decode()) for s in f.samples}
    assert samples[("nnkd_requests_total", (("code", "200"), ("endpoint", "/v1/predict")))] == 3
    assert samples[("nnkd_request_duration_seconds_bucket", (("endpoint", "/v1/predict"), ("le", "0.0005")))] == 1
    assert samples[("nnkd_request_duration_seconds_bucket", (("endpoint", "/v1/predict"), ("le", "0.05")))] == 2
    assert samples[("nnkd_request_duration_seconds_count", (("endpoint", "/v1/predict"),))] == 3
    # Each instance has its own registry: a second one starts from zero.
    other = {s.name: s.value for f in text_string_to_metric_families(ServerMetrics().expose()[0].decode())
             for s in f.samples if s.name == "nnkd_requests_total"}
    assert other == {}


def test_workers_report_every_request_between_them(student_dir):
    """With --workers 2 the request counters of any worker's /metrics, summed, equal the
    requests sent (prometheus_client's multiprocess mode), and both workers report."""
    proc, url = _start_server(student_dir, "--workers", "2")
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:               # the second worker may start later
            pids = {s.labels["pid"] for s in _families(url)["nnkd_batch_max_rows"].samples}
            if len(pids) == 2:
                break
            time.sleep(0.2)
        assert len(pids) == 2, pids
        report = run_loadtest(url, rate=100, duration_s=2.0, seed=3)
        assert report.sent > 100 and report.ok == report.sent

        def answered() -> float:
            return sum(s.value for s in _families(url)["nnkd_requests"].samples
                       if s.name == "nnkd_requests_total" and s.labels["endpoint"] == "/v1/predict")

        deadline = time.monotonic() + 5                  # the last responses' counts land just after them
        while answered() != report.sent and time.monotonic() < deadline:
            time.sleep(0.1)
        for _ in range(3):                               # whichever worker answers the scrape
            assert answered() == report.sent
    finally:
        _stop(proc)


# --------------------------------------------------------------------------- load generator

def test_short_load_run_has_no_errors(server):
    report = run_loadtest(server, rate=50, duration_s=2.0, seed=1)
    assert report.planned > 60                       # Poisson(100): far from the bound
    assert report.errors == 0 and report.failed == 0 and report.dropped == 0
    assert report.sent == report.planned == report.ok
    assert report.dim == N_FEATURES
    assert 0 < report.latency_ms["p50"] <= report.latency_ms["p99"] <= report.latency_ms["max"]
    assert report.throughput_rps > 0


def test_loadtest_cli_json(server, capsys):
    assert main(["loadtest", server, "--rate", "40", "--duration", "1", "--burst", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["errors"] == 0 and report["ok"] == report["planned"] and report["burst"] is True


def test_loadtest_cli_text(server, capsys, tmp_path):
    out = tmp_path / "lt.json"
    assert main(["loadtest", f"{server}/v1/neighbors", "--rate", "20", "--duration", "1", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "p99" in text and "errors 0" in text
    assert json.loads(out.read_text())["errors"] == 0


def test_loadtest_counts_overflow_as_dropped(server):
    report = run_loadtest(server, rate=400, duration_s=0.5, concurrency=1, seed=2)
    assert report.planned == report.sent + report.dropped
    assert report.sent == report.ok + sum(report.http_errors.values()) + report.failed
    assert report.dropped > 0 and report.errors >= report.dropped


def test_loadtest_refuses_non_loopback(capsys):
    assert main(["loadtest", "http://192.0.2.1:8000", "--rate", "1", "--duration", "1"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a loopback address" in err[0] and "--allow-remote" in err[0]
    assert main(["loadtest", "https://127.0.0.1:8000", "--rate", "1", "--duration", "1"]) == 1


def test_loadtest_no_server(capsys):
    port = _free_port()
    assert main(["loadtest", f"http://127.0.0.1:{port}", "--rate", "1", "--duration", "1"]) == 1
    assert "is the server running?" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["serve"], ["loadtest", "http://127.0.0.1:1"], ["serve", "x", "--slo-ms", "-1"],
                                  ["loadtest", "http://127.0.0.1:1", "--rate", "0", "--duration", "1"]])
def test_usage_errors_exit_2(argv):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2


def test_arrival_times():
    t = arrival_times(200.0, 5.0, seed=0)
    assert np.all(np.diff(t) > 0) and t[0] >= 0 and t[-1] < 5.0
    assert abs(t.size - 1000) < 4 * math.sqrt(1000)
    gaps = np.diff(t)
    assert abs(gaps.mean() - 1 / 200) < 0.1 / 200 and abs(gaps.std() / gaps.mean() - 1) < 0.1   # exponential
    b = arrival_times(200.0, 5.0, burst=True, seed=0)
    assert abs(b.size - 1000) < 4 * math.sqrt(1000)
    in_burst = np.mean((b % 1.0) < 0.2)          # 0.2 s at 3x then 0.8 s at 0.5x: 60% of arrivals
    assert abs(in_burst - 0.6) < 0.05
    assert np.array_equal(arrival_times(50.0, 1.0, seed=3), arrival_times(50.0, 1.0, seed=3))
    with pytest.raises(ValueError, match="exceeds the cap"):
        arrival_times(1000.0, 10.0, max_requests=100)


# --------------------------------------------------------------------------- start-up and shutdown

def test_tampered_student_is_refused(student_dir, tmp_path):
    bad = tmp_path / "tampered"
    shutil.copytree(student_dir, bad)
    data = bytearray((bad / "arrays.npz").read_bytes())
    data[-100] ^= 0xFF
    (bad / "arrays.npz").write_bytes(bytes(data))
    proc = subprocess.run([sys.executable, "-m", "nnkd", "serve", str(bad), "--port", str(_free_port())],
                          env=_env(), capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nnkd: error: checksum mismatch"), proc.stderr


def test_missing_student_is_refused(tmp_path, capsys):
    assert main(["serve", str(tmp_path / "nothing"), "--port", str(_free_port())]) == 1
    assert "is not a directory; is it a saved nnkd student?" in capsys.readouterr().err


def test_graceful_shutdown_finishes_queued_requests(student_dir, oracle):
    # A long queue delay keeps the requests waiting in the batcher when SIGTERM arrives.
    proc, url = _start_server(student_dir, "--max-batch", "64", "--max-delay-ms", "400")
    try:
        X = _rows(12, 5)

        async def fire():
            async with httpx.AsyncClient(base_url=url, timeout=20.0) as client:
                tasks = [asyncio.ensure_future(client.post("/v1/predict", json={"instances": [row]}))
                         for row in X.tolist()]
                await asyncio.sleep(0.15)
                proc.send_signal(signal.SIGTERM)
                return await asyncio.gather(*tasks)

        responses = asyncio.run(fire())
        assert [r.status_code for r in responses] == [200] * len(X)
        assert [r.json()["label"][0] for r in responses] == oracle.predict(X).tolist()
        # A graceful SIGTERM drain exits with status 0 (uvicorn alone would re-raise the signal).
        assert proc.wait(timeout=20) == 0
    finally:
        log = _stop(proc)
    assert "stopped after" in log


def test_import_nnkd_stays_lazy():
    code = ("import sys, nnkd, nnkd.serve; "
            "bad = [m for m in ('starlette', 'uvicorn', 'httpx', 'torch') if m in sys.modules]; "
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


# --------------------------------------------------------------------------- planner, controller, batcher

def test_planner_picks_the_knee_of_a_synthetic_profile():
    # p99 s99(b) = 1 ms + 0.1 ms * b, median half of it; SLO 10 ms, headroom 0.2 -> budget 4 ms.
    sizes = (1, 2, 4, 8, 16, 32)
    p99 = tuple(1e-3 + 1e-4 * b for b in sizes)
    profile = LatencyProfile(sizes, tuple(0.5 * t for t in p99), p99)
    plan = plan_batching(profile, 0.010)
    # feasible by p99: b <= 16 (2.6 ms); 32 takes 4.2 ms. Throughputs b / s50(b): 1818, 3333,
    # 5714, 8889, 12308 rows/s: 16 is the only size within 10% of the best.
    assert (plan.max_batch, plan.cap) == (16, 16)
    assert plan.max_delay_s == pytest.approx(1.3e-3)               # s50(16)
    assert plan.batch_budget_s == pytest.approx(4e-3)
    assert (plan.batch_p50_s, plan.batch_p99_s) == (pytest.approx(1.3e-3), pytest.approx(2.6e-3))
    assert plan.capacity_rps == pytest.approx(16 / 1.3e-3)
    assert plan.feasible
    # 1 ms of per-request overhead flattens the curve: 1 / (o + s50(b) / b) = 769 (b=2), 851 (b=4),
    # 899 (b=8), 925 (b=16) requests/s; 851 >= 0.9 * 925 > 769, so 4 rows suffice.
    plan = plan_batching(profile, 0.010, request_overhead_s=1e-3)
    assert (plan.max_batch, plan.cap) == (4, 16)
    assert plan.max_delay_s == pytest.approx(0.7e-3)
    assert plan.capacity_rps == pytest.approx(1 / (1e-3 + 0.7e-3 / 4))


def test_planner_edge_cases():
    sizes = (1, 2, 4)
    p99 = (1e-3, 1.5e-3, 2.5e-3)
    profile = LatencyProfile(sizes, p99, p99)
    plan = plan_batching(profile, 0.050, max_batch=1)                 # the no-batching baseline
    assert (plan.max_batch, plan.cap, plan.max_delay_s) == (1, 1, 0.0)
    plan = plan_batching(profile, 0.002)                              # budget 0.8 ms < s(1)
    assert not plan.feasible and plan.max_batch == 1 and "cannot be met" in plan.reason
    plan = plan_batching(profile, 0.050, max_delay_s=0.005)
    assert plan.max_batch == 4 and plan.max_delay_s == 0.005
    with pytest.raises(ValueError, match="slo_s"):
        plan_batching(profile, 0.0)
    with pytest.raises(ValueError, match="strictly increasing"):
        LatencyProfile((2, 1), (1e-3, 1e-3), (1e-3, 1e-3))


def test_aimd_controller():
    c = AIMDController(4, cap=6, target_s=0.010, step=1, backoff=0.5)
    assert c.observe(4, 0.005) == 5          # full batch within target: +1
    assert c.observe(3, 0.005) == 5          # not full: the limit does not bind, unchanged
    assert c.observe(5, 0.005) == 6
    assert c.observe(6, 0.005) == 6          # capped
    assert c.observe(6, 0.020) == 3          # miss: x0.5
    assert c.observe(2, 0.020) == 1          # miss, even on a batch that was not full
    assert c.observe(1, 0.020) == 1          # never below 1
    assert (c.increases, c.decreases) == (2, 2)
    c = AIMDController(10, cap=20, target_s=0.010)                        # Clipper's 10% backoff
    assert c.observe(10, 0.011) == 9 and c.observe(9, 0.011) == 8       # floor(9*0.9)=8
    with pytest.raises(ValueError):
        AIMDController(0, cap=4, target_s=0.01)


def test_micro_batcher_merges_orders_and_drains():
    calls = []

    def run_batch(X, sizes, options):
        calls.append(sizes)
        out, start = [], 0
        for n, opt in zip(sizes, options, strict=True):
            out.append((opt, X[start:start + n, 0].tolist()))
            start += n
        return out

    async def scenario():
        b = MicroBatcher(run_batch, max_batch=4, max_delay_s=0.2)
        await b.start()
        jobs = [asyncio.ensure_future(b.submit(np.full((1 + (i == 3), 2), i, np.float32), options=i))
                for i in range(6)]
        await asyncio.sleep(0)
        await b.stop()                       # drains: everything queued is answered
        return [await j for j in jobs], b

    results, b = asyncio.run(scenario())
    assert results == [(i, [float(i)] * (1 + (i == 3))) for i in range(6)]
    assert calls == [[1, 1, 1], [2, 1, 1]]      # 4-row cap; the 2-row request is not split
    assert (b.batches, b.rows) == (2, 7)


def test_micro_batcher_errors_reach_every_request_of_the_batch():
    def run_batch(X, sizes, options):
        raise RuntimeError("boom")

    async def scenario():
        b = MicroBatcher(run_batch, max_batch=8, max_delay_s=0.05)
        await b.start()
        jobs = [asyncio.ensure_future(b.submit(np.zeros((1, 2), np.float32))) for _ in range(3)]
        out = await asyncio.gather(*jobs, return_exceptions=True)
        await b.stop()
        return out

    out = asyncio.run(scenario())
    assert all(isinstance(e, RuntimeError) and str(e) == "boom" for e in out)


def test_a_failing_prediction_is_a_json_500_and_serving_goes_on(student_dir, oracle):
    from nnkd.serve import ServeConfig, create_app

    student = load_student(student_dir)          # patched below; the oracle stays untouched
    plan = plan_batching(LatencyProfile((1, 8), (1e-4, 2e-4), (1e-4, 2e-4)), 0.05)
    app = create_app(student, plan, ServeConfig(slo_s=0.05))
    real = student._outputs
    X = _rows(2, 6)

    async def scenario():
        async with app.starlette.router.lifespan_context(app.starlette):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                student._outputs = lambda rows: 1 / 0
                try:
                    failed = await client.post("/v1/predict", json={"instances": X.tolist()})
                finally:
                    student._outputs = real
                ok = await client.post("/v1/predict", json={"instances": X.tolist()})
                metrics = (await client.get("/metrics")).text
        return failed, ok, metrics

    failed, ok, metrics = asyncio.run(scenario())
    assert failed.status_code == 500 and failed.json() == {"error": "internal server error (see the server log)."}
    assert ok.status_code == 200 and ok.json()["label"] == oracle.predict(X).tolist()
    errors = {(s.labels["endpoint"], s.labels["code"]): s.value
              for f in prometheus_parser.text_string_to_metric_families(metrics) for s in f.samples
              if s.name == "nnkd_request_errors_total"}
    assert errors == {("/v1/predict", "500"): 1}


def test_teacher_space_student_says_it_takes_embeddings():
    from nnkd.serve import ServeConfig, create_app

    rng = np.random.default_rng(7)
    student = PrototypeStudent(classes=np.arange(2), prototypes=rng.normal(size=(10, 5)), label_vectors=np.eye(2)[[0, 1] * 5],
                      space="teacher")
    plan = plan_batching(LatencyProfile((1,), (1e-4,), (1e-4,)), 0.05)
    app = create_app(student, plan, ServeConfig(slo_s=0.05))

    async def scenario():
        async with (app.starlette.router.lifespan_context(app.starlette),
                    httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client):
            model = (await client.get("/v1/model")).json()
            bad = await client.post("/v1/predict", json={"instances": [[0.0] * 4]})
            good = await client.post("/v1/predict", json={"instances": rng.normal(size=(3, 5)).tolist()})
        return model, bad, good

    model, bad, good = asyncio.run(scenario())
    assert model["student"]["space"] == "teacher" and model["student"]["n_features_in"] == 5
    assert model["student"]["expects"].startswith("teacher embeddings: 5 values per instance")
    assert bad.status_code == 422
    assert bad.json()["error"].startswith("instances[0] has 4 values; this student expects 5 (teacher embeddings: 5 "
                                          "values per instance")
    assert good.status_code == 200 and len(good.json()["label"]) == 3


def test_micro_batcher_refuses_when_full_or_not_running():
    from nnkd.serve import NotRunningError, QueueFullError

    def run_batch(X, sizes, options):
        return [None] * len(sizes)

    async def scenario():
        b = MicroBatcher(run_batch, max_batch=100, max_delay_s=0.5, max_queue_rows=3)
        with pytest.raises(NotRunningError):
            await b.submit(np.zeros((1, 2), np.float32))
        await b.start()
        first = asyncio.ensure_future(b.submit(np.zeros((3, 2), np.float32)))   # waits for the delay
        await asyncio.sleep(0)
        with pytest.raises(QueueFullError, match="3 rows waiting"):
            await b.submit(np.zeros((1, 2), np.float32))
        await b.stop()
        with pytest.raises(NotRunningError):
            await b.submit(np.zeros((1, 2), np.float32))
        return await first

    assert asyncio.run(scenario()) is None


def test_decode_json_agrees_with_the_standard_library():
    # The fast parser (orjson) and the standard library's must read valid bodies identically,
    # floats bit for bit; what only the standard library accepts (NaN, Infinity, integers
    # beyond float64) must still decode so that parse_instances can name the bad value.
    rng = np.random.default_rng(0)
    for scale in (1e-300, 1e-3, 1.0, 1e5, 1e300):
        rows = (scale * rng.standard_normal((3, 7))).tolist() + [[0, -0.0, 2**53 + 1, 1e-320, 5, 6, 7]]
        body = json.dumps({"instances": rows, "k": 2}).encode()
        fast = decode_json(body)
        assert fast == json.loads(body)
        assert np.array_equal(np.array(fast["instances"]).view(np.int64), np.array(rows).view(np.int64))
    payload = decode_json(b'{"instances": [[1, NaN, Infinity, ' + b"9" * 400 + b"]]}")
    assert math.isnan(payload["instances"][0][1]) and payload["instances"][0][2] == math.inf
    assert payload["instances"][0][3] == int("9" * 400)
    for bad, message in [(b'{"instances": [[1, 2', "malformed JSON"), (b"[1, 2]", "not an array"),
                         (b"{\"instances\": \"\xff\"}", "not UTF-8"), (b"[" * 100_000 + b"]" * 100_000, "nested too deeply")]:
        with pytest.raises(RequestError, match=message) as info:
            decode_json(bad)
        assert info.value.status == 400
