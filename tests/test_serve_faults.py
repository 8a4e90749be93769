"""The server under faults and hostile clients: it never answers wrong, always answers JSON,
counts what it sent, drops stalled clients, and swaps students without failing a request."""

from __future__ import annotations

import asyncio
import signal
import socket
import threading
import time

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
jsonschema = pytest.importorskip("jsonschema")
prometheus_parser = pytest.importorskip("prometheus_client.parser")

from _http import _start_server, _stop

from nnkd.serve import LatencyProfile, ServeConfig, create_app, plan_batching
from nnkd.student import ProjectionStudent, PrototypeStudent, load_student


def _rbf(seed=0) -> ProjectionStudent:
    rng = np.random.default_rng(seed)
    return ProjectionStudent(classes=np.array(["x", "y"]), prototypes=rng.normal(size=(6, 3)),
                             label_vectors=rng.normal(size=(6, 2)), projection=rng.normal(size=(3, 4)), gamma=0.5)


def _knn(seed=0, n_features=4, classes=("a", "b", "c")) -> PrototypeStudent:
    rng = np.random.default_rng(seed)
    return PrototypeStudent(classes=np.array(classes), prototypes=rng.normal(size=(30, n_features)),
                            label_vectors=rng.dirichlet(np.ones(len(classes)), size=30))


def _in_process(student, requests):
    """Run ``requests(client)`` against an in-process app; returns its result and /metrics."""
    app = create_app(student, plan_batching(LatencyProfile((1,), (1e-4,), (1e-4,)), 0.05), ServeConfig(slo_s=0.05))

    async def scenario():
        async with (app.starlette.router.lifespan_context(app.starlette),
                    httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client):
            out = await requests(client)
            return out, (await client.get("/metrics")).text

    return asyncio.run(scenario())


def _count(metrics_text: str, endpoint: str, code: str) -> float:
    for family in prometheus_parser.text_string_to_metric_families(metrics_text):
        if family.name == "nnkd_requests":
            return sum(s.value for s in family.samples if s.name == "nnkd_requests_total"
                       and s.labels == {"endpoint": endpoint, "code": code})
    return 0.0


def test_a_non_finite_output_is_a_json_500_counted_as_500():
    async def requests(client):
        huge = [[3e38, -3e38, 3e38, 3e38]]                    # finite float32 rows the projection overflows
        ok = [[0.1, 0.2, 0.3, 0.4]]
        bad_label = await client.post("/v1/predict", json={"instances": huge})
        bad_proba = await client.post("/v1/predict", json={"instances": huge, "return": ["proba"]})
        good = await client.post("/v1/predict", json={"instances": ok, "return": ["label", "proba"]})
        return bad_label, bad_proba, good

    (bad_label, bad_proba, good), metrics = _in_process(_rbf(), requests)
    for r in (bad_label, bad_proba):
        assert r.status_code == 500 and r.headers["content-type"] == "application/json"
        assert "NaN or infinite" in r.json()["error"] and "instances[0]" in r.json()["error"]
    assert good.status_code == 200 and good.json()["label"] == _rbf().predict([[0.1, 0.2, 0.3, 0.4]]).tolist()
    assert _count(metrics, "/v1/predict", "500") == 2 and _count(metrics, "/v1/predict", "200") == 1


def test_huge_integers_are_422_not_500():
    async def requests(client):
        body = '{"instances": [[' + "9" * 5000 + ", 1, 2, 3]]}"
        return await client.post("/v1/predict", content=body, headers={"content-type": "application/json"})

    r, metrics = _in_process(_knn(), requests)
    assert r.status_code == 422 and "number" in r.json()["error"]
    assert _count(metrics, "/v1/predict", "422") == 1


def _raw(port: int, data: bytes, wait_s: float) -> bytes:
    """Send ``data`` and read until the server closes the connection (or ``wait_s`` passes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait_s) as sock:
        sock.sendall(data)
        chunks = []
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                return b"".join(chunks) + b"<closed>"
            chunks.append(chunk)
        return b"".join(chunks)


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    directory = _knn().save(tmp_path_factory.mktemp("faults") / "student")
    proc, url = _start_server(directory, "--header-timeout", "1", "--body-timeout", "1")
    try:
        yield directory, url, int(url.rsplit(":", 1)[1])
    finally:
        _stop(proc)


def test_stalled_headers_are_disconnected(live):
    _, _, port = live
    start = time.monotonic()
    got = _raw(port, b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Ty", 8.0)
    assert got.endswith(b"<closed>") and time.monotonic() - start < 5


def test_every_worker_disconnects_stalled_headers(tmp_path):
    """With ``--workers 2`` each worker imports the guarded protocol by name: stalled
    connections, spread by the kernel over both workers, are all closed at the deadline
    (uvicorn's own protocol would hold them open)."""
    directory = _knn().save(tmp_path / "student")
    proc, url = _start_server(directory, "--workers", "2", "--header-timeout", "1")
    try:
        deadline = time.monotonic() + 60
        pids: set = set()
        while len(pids) < 2 and time.monotonic() < deadline:    # both workers up
            text = httpx.get(f"{url}/metrics", timeout=5).text
            pids = {s.labels["pid"] for f in prometheus_parser.text_string_to_metric_families(text)
                    if f.name == "nnkd_batch_max_rows" for s in f.samples}
            time.sleep(0.2)
        assert len(pids) == 2, pids
        port = int(url.rsplit(":", 1)[1])
        results: list = [None] * 8
        start = time.monotonic()

        def stall(i: int) -> None:
            results[i] = _raw(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nAcc", 8.0)

        threads = [threading.Thread(target=stall, args=(i,)) for i in range(len(results))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert all(r is not None and r.endswith(b"<closed>") for r in results), results
        assert time.monotonic() - start < 4.5
    finally:
        _stop(proc)


def test_a_stalled_body_is_a_408(live):
    _, _, port = live
    got = _raw(port, b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{\"instances\": ", 8.0)
    assert got.startswith(b"HTTP/1.1 408") and b"did not arrive within 1 s" in got


def test_openapi_describes_what_the_live_server_answers(live):
    _, url, _ = live
    spec = httpx.get(f"{url}/openapi.json", timeout=10).json()
    rows = _knn().example_inputs(2, np.random.default_rng(0)).tolist()
    calls = [("post", "/v1/predict", {"instances": rows, "return": ["label", "proba", "neighbors"], "k": 2}),
             ("post", "/v1/predict", {"instances": rows, "k": 0}),
             ("post", "/v1/predict", {"instances": [[1.0]]}),
             ("post", "/v1/predict", {"nothing": 1}),
             ("post", "/v1/neighbors", {"instances": rows, "k": 3}),
             ("post", "/v1/neighbors", {"instances": rows, "return": ["label"]}),
             ("get", "/v1/model", None), ("get", "/healthz", None), ("get", "/readyz", None),
             ("get", "/openapi.json", None), ("post", "/admin/reload", {"nonsense": True})]
    for method, path, body in calls:
        r = httpx.request(method, f"{url}{path}", json=body, timeout=10)
        responses = spec["paths"][path][method]["responses"]
        assert str(r.status_code) in responses, (path, r.status_code, r.text)
        content = responses[str(r.status_code)]["content"]
        schema = content.get("application/json", {}).get("schema")
        if schema is not None:
            jsonschema.validate(r.json(), schema)
            request_schema = spec["paths"][path][method].get("requestBody", {}).get("content", {}) \
                .get("application/json", {}).get("schema")
            if request_schema is not None and r.status_code == 200 and body is not None:
                jsonschema.validate(body, request_schema)
    assert set(spec["paths"]) >= {"/v1/predict", "/v1/neighbors", "/v1/model", "/metrics", "/admin/reload"}


def test_hot_reload_under_load_fails_no_request_and_keeps_a_good_student(tmp_path):
    directory = _knn(seed=1).save(tmp_path / "student")
    proc, url = _start_server(directory, "--max-delay-ms", "5")
    rows = _knn().example_inputs(4, np.random.default_rng(3))
    statuses, stop = [], threading.Event()

    def load():
        with httpx.Client(base_url=url, timeout=10) as client:
            while not stop.is_set():
                r = client.post("/v1/predict", json={"instances": rows.tolist()})
                statuses.append((r.status_code, tuple(r.json().get("label", ()))))

    threads = [threading.Thread(target=load) for _ in range(4)]
    try:
        for t in threads:
            t.start()
        time.sleep(0.5)
        new = _knn(seed=2, classes=("p", "q"))
        new.save(directory)                                      # re-saved in place, atomically
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 20
        while httpx.get(f"{url}/v1/model", timeout=5).json()["reloads"] < 1:
            assert time.monotonic() < deadline, "SIGHUP did not reload"
            time.sleep(0.05)
        time.sleep(0.3)
        # An invalid student is refused: the good one keeps serving.
        bad = tmp_path / "bad"
        new.save(bad)
        (bad / "arrays.npz").write_bytes(b"garbage")
        r = httpx.post(f"{url}/admin/reload", json={"path": str(bad)}, timeout=20)
        assert r.status_code == 422 and "keeps serving" in r.json()["error"]
        r = httpx.post(f"{url}/admin/reload", json={"path": str(tmp_path / "missing")}, timeout=20)
        assert r.status_code == 422
        time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join()
        log = _stop(proc)
    codes = {code for code, _ in statuses}
    assert len(statuses) > 50 and codes == {200}, (codes, log[-2000:])
    answers = {labels for _, labels in statuses}
    old_answer, new_answer = tuple(_knn(seed=1).predict(rows).tolist()), tuple(new.predict(rows).tolist())
    assert answers == {old_answer, new_answer}                   # each answer is one student's, whole
    assert statuses[-1][1] == new_answer and "reloaded" in log


def test_admin_reload_swaps_in_place_and_answers_with_the_new_student(tmp_path):
    directory = _knn(seed=1).save(tmp_path / "student")
    other = _knn(seed=5, n_features=6, classes=("u", "v")).save(tmp_path / "other")
    proc, url = _start_server(directory)
    try:
        r = httpx.post(f"{url}/admin/reload", json={"path": str(other)}, timeout=20)
        assert r.status_code == 200 and r.json()["student"]["n_features_in"] == 6
        rows = load_student(other).example_inputs(3, np.random.default_rng(0))
        r = httpx.post(f"{url}/v1/predict", json={"instances": rows.tolist()}, timeout=10)
        assert r.json()["label"] == load_student(other).predict(rows).tolist()
        assert httpx.get(f"{url}/v1/model", timeout=5).json()["student"]["path"] == str(other.resolve())
    finally:
        _stop(proc)


def test_serve_refuses_unsigned_students_with_a_key(tmp_path):
    import subprocess
    import sys

    from _http import _env, _free_port

    directory = _knn().save(tmp_path / "s")
    key = tmp_path / "key"
    key.write_text("k" * 32)
    proc = subprocess.run([sys.executable, "-m", "nnkd", "serve", str(directory), "--port", str(_free_port()),
                           "--key-file", str(key)], env=_env(), capture_output=True, text=True, timeout=60,
                          check=False)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1 and "not signed" in proc.stderr
    _knn().save(directory, key_file=key)
    served, url = _start_server(directory, "--key-file", str(key))
    try:
        assert httpx.get(f"{url}/readyz", timeout=5).status_code == 200
    finally:
        _stop(served)


def test_the_library_never_answers_a_non_finite_output_either():
    student = _rbf()
    with pytest.raises(ValueError, match="NaN or infinite"):
        student.predict([[3e38, -3e38, 3e38, 3e38], [0.1, 0.2, 0.3, 0.4]])
    with pytest.raises(ValueError, match="NaN or infinite"):
        student.predict_proba([[3e38, -3e38, 3e38, 3e38]])
    assert student.predict([[0.1, 0.2, 0.3, 0.4]]).shape == (1,)
