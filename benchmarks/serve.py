"""Benchmark of ``nnkd serve``: adaptive batching against no batching, under open-loop load.

A random ``kind="knn"`` student with 1,000 prototypes of dimension 64 and 10 classes is
served twice, in one run: with the planner's batching, and with ``--max-batch 1`` (the same
code path, one row per prediction call). Both servers run at once (an idle one costs
nothing) and ``nnkd.serve.run_loadtest`` offers each the same ladder of Poisson rates,
alternating between the two at every step so that both see the same background load. A step
passes when the client-side p99 latency is within the SLO (50 ms) and nothing failed: no
HTTP error, no request dropped at the client's concurrency cap, none lost. A mode's ladder
stops after two failing steps in a row; its sustainable rate is its highest passing rate.

Writes ``benchmarks/results/serve.{json,md}``. Usage: ``python benchmarks/serve.py``
(about 6 minutes on 2 cores), ``--quick`` for a smoke run (under a minute).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from _common import DEFAULT_OUT_DIR, REPO_ROOT, log, machine_meta  # noqa: I001 - must come before numpy: it pins threads
import numpy as np

from nnkd.bench import json_safe, markdown_table
from nnkd.serve import run_loadtest
from nnkd.student import PrototypeStudent

N_PROTOTYPES, DIM, N_CLASSES = 1000, 64, 10
MODES = {"batching": [], "no batching": ["--max-batch", "1"]}


def make_student(directory: Path, seed: int = 0) -> Path:
    """Random knn student: 1,000 prototypes in 64 dims, each with a 10-class distribution."""
    rng = np.random.default_rng(seed)
    student = PrototypeStudent(classes=np.arange(N_CLASSES), prototypes=rng.normal(size=(N_PROTOTYPES, DIM)),
                      label_vectors=rng.dirichlet(np.ones(N_CLASSES), size=N_PROTOTYPES))
    return student.save(directory)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read()


def start_server(student_dir: Path, slo_ms: float, extra: list[str], log_path: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH"))
                                                        if p)}
    with open(log_path, "w") as log_file:      # the child keeps its own descriptor
        proc = subprocess.Popen([sys.executable, "-m", "nnkd", "serve", str(student_dir), "--port", str(port),
                                 "--slo-ms", str(slo_ms), *extra], env=env, stdout=log_file, stderr=subprocess.STDOUT)
    proc.log_path = log_path
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log_path.read_text()}")
        try:
            _get(f"{url}/readyz")
            return proc, url
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server not ready within 120 s")


def stop_server(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    return proc.log_path.read_text()


def batch_counters(url: str) -> tuple[float, float]:
    """(rows, batches) served so far, from the server's /metrics."""
    text = _get(f"{url}/metrics").decode()
    rows = float(re.search(r"^nnkd_batch_size_rows_sum (\S+)$", text, re.MULTILINE).group(1))
    batches = float(re.search(r"^nnkd_batch_size_rows_count (\S+)$", text, re.MULTILINE).group(1))
    return rows, batches


def run_step(url: str, rate: float, duration_s: float, slo_ms: float, seed: int) -> dict[str, Any]:
    rows0, batches0 = batch_counters(url)
    load = os.getloadavg()[0]
    report = run_loadtest(url, rate=rate, duration_s=duration_s, slo_ms=slo_ms, seed=seed, concurrency=512)
    rows1, batches1 = batch_counters(url)
    d = report.to_dict()
    d["passed"] = bool(report.errors == 0 and report.ok == report.planned and report.p99_ms <= slo_ms)
    d["mean_batch_rows"] = (rows1 - rows0) / (batches1 - batches0) if batches1 > batches0 else None
    d["loadavg_1min_before"] = load
    return d


def bench(slo_ms: float, rates: list[float], duration_s: float, pause_s: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        student_dir = make_student(Path(tmp) / "student")
        servers = {}
        try:
            for mode, extra in MODES.items():
                servers[mode] = start_server(student_dir, slo_ms, extra, Path(tmp) / f"{mode.replace(' ', '_')}.log")
                _, url = servers[mode]
                model = json.loads(_get(f"{url}/v1/model"))
                log(f"{mode}: {url}, plan max_batch={model['batching']['plan']['max_batch']} "
                    f"max_delay={model['batching']['plan']['max_delay_ms']:.2f} ms")
                run_loadtest(url, rate=100, duration_s=1.0, slo_ms=slo_ms, seed=99)        # warm-up
            plans = {mode: json.loads(_get(f"{url}/v1/model"))["batching"] for mode, (_, url) in servers.items()}
            steps: dict[str, list[dict]] = {mode: [] for mode in MODES}
            active = dict.fromkeys(MODES, True)
            for i, rate in enumerate(rates):
                for mode in MODES:
                    if not active[mode]:
                        continue
                    step = run_step(servers[mode][1], rate, duration_s, slo_ms, seed=i)
                    steps[mode].append(step)
                    lat = step["latency_ms"]
                    log(f"{mode:>12} {rate:7.0f} req/s: ok {step['ok']}/{step['planned']}, errors {step['errors']}, "
                        f"p50 {lat.get('p50', float('nan')):.1f} ms, p99 {lat.get('p99', float('nan')):.1f} ms, "
                        f"batch {step['mean_batch_rows'] or 0:.1f} rows, load {step['loadavg_1min_before']:.2f}"
                        f"{'' if step['passed'] else '  FAIL'}")
                    if len(steps[mode]) >= 2 and not steps[mode][-1]["passed"] and not steps[mode][-2]["passed"]:
                        active[mode] = False
                    time.sleep(pause_s)
                if not any(active.values()):
                    break
        finally:
            logs = {mode: stop_server(proc) for mode, (proc, _) in servers.items()}
    summary = {}
    for mode, mode_steps in steps.items():
        passing = [s for s in mode_steps if s["passed"]]
        best = max(passing, key=lambda s: s["rate"]) if passing else None
        summary[mode] = {"max_rate": best["rate"] if best else 0.0,
                         "p99_ms_at_max": best["latency_ms"]["p99"] if best else None,
                         "throughput_at_max": best["throughput_rps"] if best else None,
                         "mean_batch_rows_at_max": best["mean_batch_rows"] if best else None,
                         "errors_at_max": best["errors"] if best else None,
                         "ladder_exhausted": bool(mode_steps and mode_steps[-1]["passed"])}
    no_batch = summary["no batching"]["max_rate"]
    ratio = summary["batching"]["max_rate"] / no_batch if no_batch else None
    return {"summary": summary, "ratio": ratio, "steps": steps, "plans": plans,
            "server_log_tail": {m: log_text.splitlines()[-12:] for m, log_text in logs.items()}}


def render(result: dict[str, Any], meta: dict[str, Any]) -> str:
    s = result["summary"]
    cfg = meta["config"]
    plan = result["plans"]["batching"]["plan"]
    out = ["# Serving benchmark: adaptive batching vs no batching", "",
           (f"Run {meta['date']} on {meta['machine']['platform']} ({meta['machine']['cpus_available']} CPUs); "
            f"nnkd {meta['versions'].get('nnkd')}; HTTP: uvicorn with {meta['http']}, event loop {meta['loop']}. "
            "Generated by `benchmarks/serve.py`; raw numbers in `serve.json`. Server, load generator and "
            "benchmark share the machine's cores; the 1-minute load average before each step is listed."), "",
           (f"Student: `kind=\"knn\"`, {N_PROTOTYPES:,} prototypes of dimension {DIM}, {N_CLASSES} classes, exact "
            f"index; one instance per request. Open-loop Poisson arrivals, {cfg['duration_s']:g} s per step, "
            f"client-side latency from each request's scheduled send time. A rate is sustained when p99 <= "
            f"{cfg['slo_ms']:g} ms with no error, drop or loss; both modes alternate at every step."), "",
           (f"Batching plan: max_batch {plan['max_batch']} (controller range 1..{plan['cap']}), max_delay "
            f"{plan['max_delay_ms']:.2f} ms, profiled batch p50/p99 {plan['batch_p50_ms']:.2f}/"
            f"{plan['batch_p99_ms']:.2f} ms."), "",
           "## Result", ""]
    body = [[mode, f"{v['max_rate']:,.0f}", "–" if v["p99_ms_at_max"] is None else f"{v['p99_ms_at_max']:.1f}",
             "–" if v["mean_batch_rows_at_max"] is None else f"{v['mean_batch_rows_at_max']:.1f}",
             "–" if v["errors_at_max"] is None else str(v["errors_at_max"]),
             "yes" if v["ladder_exhausted"] else "no"] for mode, v in s.items()]
    out += markdown_table(["mode", "max rate with p99 <= SLO (req/s)", "p99 there (ms)", "mean rows per batch",
                           "errors there", "ladder exhausted"], body)
    ratio = result["ratio"]
    out += ["", f"Ratio batching / no batching: **{ratio:.2f}x**." if ratio else "Ratio: no passing step without batching.",
            "", "## Every step", ""]
    body = []
    for mode, steps in result["steps"].items():
        for st in steps:
            lat = st["latency_ms"]
            body.append([mode, f"{st['rate']:,.0f}", f"{st['throughput_rps']:,.0f}", f"{lat.get('p50', float('nan')):.1f}",
                         f"{lat.get('p99', float('nan')):.1f}", str(st["errors"]),
                         "–" if st["mean_batch_rows"] is None else f"{st['mean_batch_rows']:.1f}",
                         f"{st['client']['send_lag_p99_ms']:.1f}", f"{100 * st['client']['cpu_fraction']:.0f}",
                         f"{st['loadavg_1min_before']:.2f}", "pass" if st["passed"] else "FAIL"])
    out += markdown_table(["mode", "offered req/s", "ok/s", "p50 ms", "p99 ms", "errors", "rows/batch",
                           "client lag p99 ms", "client CPU %", "load avg", ""], body)
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slo-ms", type=float, default=50.0)
    parser.add_argument("--start-rate", type=float, default=200.0)
    parser.add_argument("--factor", type=float, default=1.1, help="rate multiplier between steps")
    parser.add_argument("--max-rate", type=float, default=20_000.0)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of arrivals per step")
    parser.add_argument("--pause", type=float, default=1.0, help="seconds between steps")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1.5 s steps, factor 1.6, up to 3,000 req/s")
    parser.add_argument("--out-dir", default=DEFAULT_OUT_DIR)
    parser.add_argument("--threads", type=int, default=2, help="recorded only: the server runs one batch thread")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.factor, args.max_rate, args.pause = 1.5, 1.6, 3000.0, 0.5
    rates, r = [], args.start_rate
    while r <= args.max_rate:
        rates.append(round(r))
        r *= args.factor
    meta = {**machine_meta(args.threads),
            "http": "httptools" if importlib.util.find_spec("httptools") else "h11",
            "loop": "uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
            "config": {"slo_ms": args.slo_ms, "rates": rates, "duration_s": args.duration, "quick": args.quick}}
    log(f"serving benchmark: rates {rates[0]}..{rates[-1]} req/s, {args.duration:g} s per step, http {meta['http']}, "
        f"loop {meta['loop']}")
    result = bench(args.slo_ms, rates, args.duration, args.pause)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = "serve_quick" if args.quick else "serve"
    (out_dir / f"{stem}.json").write_text(json.dumps(json_safe({"meta": meta, **result}), indent=2) + "\n")
    (out_dir / f"{stem}.md").write_text(render(result, meta))
    s = result["summary"]
    log(f"max rate with p99 <= {args.slo_ms:g} ms: batching {s['batching']['max_rate']:,.0f} req/s, no batching "
        f"{s['no batching']['max_rate']:,.0f} req/s, ratio {result['ratio'] or float('nan'):.2f}")
    log(f"wrote {out_dir / (stem + '.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
