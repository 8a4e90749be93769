"""The ``nnkd`` command.

User mistakes print one ``nnkd: error: ...`` line on stderr and exit 1 (``NNKD_DEBUG=1``
re-raises with the traceback); usage errors exit 2 (argparse); results go to stdout
and, with ``--out``, to a JSON file.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def _demo_cli(args) -> None:
    from nnkd.demo import format_table, run_demo

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} exists and is not a directory")
    print("nnkd demo: a PyTorch teacher on scikit-learn's digits, distilled into nearest-prototype students "
          "(about a minute on 2 cores)", flush=True)
    report = run_demo(out, random_state=args.random_state, n_jobs=args.n_jobs)
    print(report["dataset"])
    print(format_table(report))
    print("(fidelity = agreement with the teacher; size = every parameter at its storage type; bound: "
          "compression = sample-compression bound, held-out = Clopper-Pearson bound on held-out rows, "
          "vacuous = >= 1; delta = 0.05; see docs/bounds.md)")
    for path in report["files"]:
        print(f"wrote {path}")


def _summary(summary: dict) -> None:
    print(json.dumps(summary, indent=2))


def _condense_cli(args) -> None:
    from nnkd.workflows import condense_file

    _summary(condense_file(args.data, args.out, method=args.method, selection=args.selection,
                           max_prototypes=args.max_prototypes, metric=args.metric, index=args.index, label=args.label,
                           features=args.features, validation_fraction=args.validation_fraction, delta=args.delta,
                           random_state=args.random_state, n_jobs=args.n_jobs, progress=not args.quiet,
                           dask=args.dask, labels=args.labels))


def _distill_cli(args) -> None:
    from nnkd.workflows import distill_file

    _summary(distill_file(args.data, args.teacher, args.out, embedding=args.embedding, space=args.space,
                          budget_kb=args.budget_kb, dtype=args.dtype, label=args.label, features=args.features,
                          classes=args.classes.split(",") if args.classes else None,
                          validation_fraction=args.validation_fraction, random_state=args.random_state,
                          n_jobs=args.n_jobs, progress=not args.quiet))


def _predict_cli(args) -> None:
    from nnkd.workflows import predict_file

    _summary(predict_file(args.student_dir, args.data, args.out, proba=args.proba, label=args.label,
                          features=args.features, teacher=args.teacher, embedding=args.embedding,
                          key_file=args.key_file, trust_native=True if args.trust_native else None,
                          dask=args.dask))


def _max_prototypes(text: str):
    """An int count or a float fraction in (0, 1]."""
    try:
        value = int(text)
    except ValueError:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text} is neither a count nor a fraction") from None
        if not 0 < value <= 1:
            raise argparse.ArgumentTypeError(f"{text} as a fraction must lie in (0, 1]")
        return value
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be >= 1")
    return value


def _add_user_data_parsers(sub) -> None:
    from nnkd._core.metrics import METRICS
    from nnkd._core.partitions import DASK_SPEC_HELP

    def data_args(p, label_help: str) -> None:
        p.add_argument("data", metavar="DATA", help=".npz (keys X, y), .npy (features), .csv/.tsv (header row) "
                                                    "or .parquet")
        p.add_argument("--label", default=None, help=label_help)
        p.add_argument("--features", default=None, help=".npz only: key of the features (default X or X_train)")

    def dask_arg(p) -> None:
        p.add_argument("--dask", default=None, metavar="SPEC",
                       help=f"run on Dask, reading DATA by partitions (.npy file or directory, Parquet, Zarr): "
                            f"{DASK_SPEC_HELP}")

    def fit_args(p) -> None:
        p.add_argument("--out", required=True, help="output directory: student/ and report.json")
        p.add_argument("--validation-fraction", type=float, default=0.2,
                       help="rows held out to report validation accuracy (0: fit on every row)")
        p.add_argument("--random-state", type=int, default=None, help="seed (default: fresh randomness)")
        p.add_argument("--n-jobs", type=int, default=None, help="threads (-1: all cores)")
        p.add_argument("--quiet", action="store_true", help="no progress bars")

    p = sub.add_parser("condense", help="condense a labelled data file into a prototype student")
    data_args(p, "label column (.csv/.tsv/.parquet) or key (.npz, default y)")
    p.add_argument("--method", choices=["ksu", "gkn", "hart", "fcnn"], default="ksu")
    p.add_argument("--selection", choices=["auto", "bound", "validation"], default="auto",
                   help="how ksu picks the net size (auto: the bound where it certifies something, else validation)")
    p.add_argument("--max-prototypes", type=_max_prototypes, default=None, help="cap: a count or a fraction of rows")
    p.add_argument("--metric", choices=list(METRICS), default="euclidean")
    p.add_argument("--index", default="exact", help="search backend over the prototypes (exact, faiss:..., nmslib:...)")
    p.add_argument("--delta", type=float, default=0.05, help="confidence parameter of the bound")
    dask_arg(p)
    p.add_argument("--labels", default=None, metavar="LABELS.npy",
                   help="with --dask and .npy features: the labels, a .npy file (or directory) row for row")
    fit_args(p)
    p.set_defaults(func=_condense_cli)

    p = sub.add_parser("distill", help="distil a TorchScript teacher on a data file into a compressed student")
    data_args(p, "label column or .npz key: reports accuracy (and names the classes)")
    p.add_argument("--teacher", required=True, metavar="MODEL.pt", help="TorchScript teacher (torch.jit.save)")
    p.add_argument("--embedding", default=None, metavar="METHOD",
                   help="the teacher embedding (space=teacher): a method of the TorchScript model exported with "
                        "@torch.jit.export (default: the logits)")
    p.add_argument("--classes", default=None, metavar="A,B,...",
                   help="class of each teacher output, in output order (default: the sorted labels)")
    p.add_argument("--space", choices=["input", "teacher", "projection"], default="projection")
    p.add_argument("--budget-kb", type=_positive(float), default=64.0, help="largest student size in kB")
    p.add_argument("--dtype", choices=["auto", "float32", "float16", "int8"], default="auto",
                   help="storage type of parameters (auto: chosen under the budget on held-out rows)")
    fit_args(p)
    p.set_defaults(func=_distill_cli)

    p = sub.add_parser("predict", help="predict a data file with a saved student (no torch needed)")
    p.add_argument("student_dir", metavar="STUDENT_DIR", help="directory written by Student.save")
    data_args(p, "a label column to leave out of the features")
    p.add_argument("--out", required=True, help="predictions: a .npy or .csv file")
    p.add_argument("--proba", action="store_true", help="class probabilities instead of labels")
    p.add_argument("--teacher", default=None, metavar="MODEL.pt", help="for students that take teacher embeddings")
    p.add_argument("--embedding", default=None, metavar="METHOD", help="the teacher's embedding method (as at distil time)")
    p.add_argument("--key-file", default=None, help="verify the student's signature with this key")
    p.add_argument("--trust-native", action="store_true", help="load an unsigned FAISS/NMSLIB index (files you wrote)")
    dask_arg(p)
    p.set_defaults(func=_predict_cli)


def _show_config_cli(args) -> None:
    from nnkd._config import show_config

    config = show_config(print_out=not args.json)
    if args.json:
        print(json.dumps(config, indent=2))


def _bench_dataset(args):
    from nnkd.bench import load_bench_dataset

    return load_bench_dataset(args.dataset, query_fraction=args.query_fraction, max_queries=args.max_queries)


def _bench_search_cli(args, knn: bool) -> None:
    from nnkd.bench import load_grid, run_grid, write_report

    if args.k < 1 or args.runs < 1 or args.threads < 1:
        raise ValueError("--k, --runs and --threads must be positive integers.")
    algorithms = [a.strip() for a in args.algorithms.split(",") if a.strip()] if args.algorithms else None
    grid = load_grid(args.config, algorithms)          # bad specs/parameters fail before any work
    ds = _bench_dataset(args)
    rows = run_grid(ds, args.out, grid, k=args.k, runs=args.runs, threads=args.threads, batch=args.batch,
                    n_neighbors=args.n_neighbors if knn else None, save_neighbors=args.save_neighbors,
                    progress=not args.quiet)
    paths = write_report(args.out)
    ok = [r for r in rows if "error" not in r]
    print(f"nnkd bench {'knn' if knn else 'ann'}: {len(rows)} runs on {ds.name} ({len(ok)} ok); "
          f"results in {Path(args.out) / 'results.jsonl'}")
    for path in paths:
        print(f"wrote {path}")


def _bench_condense_cli(args) -> None:
    from nnkd.bench import write_report
    from nnkd.bench.condensing import run_condense

    rows = run_condense(_bench_dataset(args), args.out, threads=args.threads, progress=not args.quiet)
    for r in rows:
        print(f"{r['method']:<28} kept {100 * r['kept_fraction']:6.2f}%  accuracy {100 * r['accuracy']:6.2f}%  "
              f"fit {r['fit_s']:.3f} s")
    for path in write_report(args.out):
        print(f"wrote {path}")


def _bench_plot_cli(args) -> None:
    from nnkd.bench import write_report

    if not Path(args.dir).is_dir():
        raise FileNotFoundError(f"{args.dir} is not a directory of nnkd bench results")
    for path in write_report(args.dir):
        print(f"wrote {path}")


def _bench_convert_cli(args) -> None:
    from nnkd.bench import convert_to_hdf5

    path = convert_to_hdf5(args.src, args.dst, k=args.k, query_fraction=args.query_fraction)
    print(f"wrote {path}")


def _add_bench_parser(sub) -> None:
    bench = sub.add_parser("bench", help="benchmark indexes (ann, knn), condensing; plot; convert datasets")
    bsub = bench.add_subparsers(dest="bench_command", metavar="BENCH_COMMAND", required=True)

    def dataset_args(p, hdf5: bool = True):
        p.add_argument("--dataset", required=True,
                       help="ann-benchmarks .hdf5 or .npz file" if hdf5 else ".npz file with labels")
        p.add_argument("--out", required=True, help="results directory (results.jsonl, plots, summary.md)")
        p.add_argument("--threads", type=int, default=1, help="threads for building and querying")
        p.add_argument("--query-fraction", type=float, default=0.1,
                       help=".npz without X_test: hold out this last fraction of rows as queries")
        p.add_argument("--max-queries", type=int, default=None, help="use only the first N queries")
        p.add_argument("--quiet", action="store_true", help="no progress bar")

    def search_args(p):
        p.add_argument("--algorithms", default=None,
                       help="comma-separated index specs to run (default: every spec of the grid)")
        p.add_argument("--config", default=None, help="YAML parameter grid (default: the one shipped with nnkd)")
        p.add_argument("--k", type=int, default=10, help="neighbours per query (recall@k)")
        p.add_argument("--runs", type=int, default=3, help="timed runs per setting; QPS is the best")
        p.add_argument("--batch", action="store_true", help="send all queries in one call")
        p.add_argument("--save-neighbors", action="store_true",
                       help="keep the ids each run returned (DIR/neighbors/*.npz) for independent checks")

    p = bsub.add_parser("ann", help="recall vs queries per second over a parameter grid (ann-benchmarks style)")
    dataset_args(p)
    search_args(p)
    p.set_defaults(func=lambda a: _bench_search_cli(a, knn=False))
    p = bsub.add_parser("knn", help="downstream k-NN accuracy next to recall and QPS for each index setting")
    dataset_args(p, hdf5=False)
    search_args(p)
    p.add_argument("--n-neighbors", type=int, default=5, help="neighbours of the KernelKNNClassifier")
    p.set_defaults(func=lambda a: _bench_search_cli(a, knn=True))
    p = bsub.add_parser("condense", help="every condensing method and its peers: kept fraction, accuracy, bound")
    dataset_args(p, hdf5=False)
    p.set_defaults(func=_bench_condense_cli)
    p = bsub.add_parser("plot", help="Pareto plot and summary.md from a results directory")
    p.add_argument("dir")
    p.set_defaults(func=_bench_plot_cli)
    p = bsub.add_parser("convert", help="write an .npz dataset in the ann-benchmarks HDF5 format")
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--k", type=int, default=100, help="ground-truth neighbours to store")
    p.add_argument("--query-fraction", type=float, default=0.1)
    p.set_defaults(func=_bench_convert_cli)


def _serve_cli(args) -> None:
    from nnkd.serve import run_server
    from nnkd.serve._server import log_to_stderr

    log_to_stderr()
    run_server(args.student_dir, host=args.host, port=args.port, slo_ms=args.slo_ms, workers=args.workers,
               max_batch=args.max_batch, max_delay_ms=args.max_delay_ms, max_body_bytes=args.max_body_bytes,
               max_instances=args.max_instances, max_queue_rows=args.max_queue_rows, log_level=args.log_level,
               key_file=args.key_file, header_timeout_s=args.header_timeout, body_timeout_s=args.body_timeout,
               trust_native=True if args.trust_native else None)


def _loadtest_cli(args) -> None:
    from nnkd.serve import run_loadtest

    report = run_loadtest(args.url, rate=args.rate, duration_s=args.duration, burst=args.burst,
                          concurrency=args.concurrency, dim=args.dim, instances=args.instances, slo_ms=args.slo_ms,
                          timeout_s=args.timeout, seed=args.seed, allow_remote=args.allow_remote,
                          max_requests=args.max_requests)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.format_text())
    if args.out:
        Path(args.out).write_text(json.dumps(report.to_dict(), indent=2) + "\n")
        print(f"wrote {args.out}", file=sys.stderr)


def _positive(kind):
    def parse(text):
        value = kind(text)
        if not value > 0:
            raise argparse.ArgumentTypeError(f"{text} is not > 0")
        return value
    parse.__name__ = kind.__name__
    return parse


def _add_serve_parsers(sub) -> None:
    p = sub.add_parser("serve", help="serve a saved student over HTTP with SLO-aware adaptive batching")
    p.add_argument("student_dir", metavar="STUDENT_DIR", help="directory written by Student.save (checksums verified)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--slo-ms", type=_positive(float), default=50.0, help="p99 latency objective the batching plan meets")
    p.add_argument("--workers", type=_positive(int), default=1, help="uvicorn worker processes")
    p.add_argument("--max-batch", type=_positive(int), default=None,
                   help="cap on rows per batch (1: no batching; default: as planned, up to 1024)")
    p.add_argument("--max-delay-ms", type=float, default=None, help="override the planned queue delay")
    p.add_argument("--max-body-bytes", type=_positive(int), default=None, help="largest request body (default 4 MiB)")
    p.add_argument("--max-instances", type=_positive(int), default=None, help="most rows per request (default 1024)")
    p.add_argument("--max-queue-rows", type=_positive(int), default=None,
                   help="rows waiting for a batch beyond which requests get 503 (default 100000)")
    p.add_argument("--key-file", default=None, help="verify the student's HMAC signature with this key (else "
                   "NNKD_ARTIFACT_KEY, if set); unsigned students are then refused")
    p.add_argument("--trust-native", action="store_true", help="load an unsigned FAISS/NMSLIB index saved with the "
                   "student (only for files you wrote: their parsers do not check them)")
    p.add_argument("--header-timeout", type=_positive(float), default=10.0,
                   help="seconds a connection may take to send request headers")
    p.add_argument("--body-timeout", type=_positive(float), default=10.0,
                   help="seconds a request body may take to arrive (slower: 408)")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    p.set_defaults(func=_serve_cli)
    p = sub.add_parser("loadtest", help="open-loop Poisson load against an nnkd server: throughput, latency, errors")
    p.add_argument("url", metavar="URL", help="http://127.0.0.1:8000 (posts to /v1/predict) or a full endpoint URL")
    p.add_argument("--rate", type=_positive(float), required=True, help="mean requests per second")
    p.add_argument("--duration", type=_positive(float), required=True, help="seconds of arrivals")
    p.add_argument("--burst", action="store_true", help="bursty arrivals: 0.2 s at 3x then 0.8 s at 0.5x the rate")
    p.add_argument("--concurrency", type=_positive(int), default=256,
                   help="most requests in flight; arrivals beyond it are dropped and counted as errors")
    p.add_argument("--dim", type=_positive(int), default=None, help="values per instance (default: ask /v1/model)")
    p.add_argument("--instances", type=_positive(int), default=1, help="rows per request")
    p.add_argument("--slo-ms", type=_positive(float), default=50.0, help="latency objective counted as SLO misses")
    p.add_argument("--timeout", type=_positive(float), default=10.0,
                   help="seconds to wait for outstanding responses after the last send")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-requests", type=_positive(int), default=1_000_000, help="refuse larger schedules")
    p.add_argument("--allow-remote", action="store_true", help="allow a non-loopback target")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--out", default=None, help="also write the JSON report to this file")
    p.set_defaults(func=_loadtest_cli)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nnkd", description="Nearest-neighbour sample compression and distillation.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("demo", help="distil a PyTorch teacher on digits into compressed students; print and "
                                    "write a report")
    p.add_argument("--out", default="nnkd-demo", help="directory for demo.md, demo.json, plots and the student")
    p.add_argument("--random-state", type=int, default=0)
    p.add_argument("--n-jobs", type=int, default=None, help="threads (-1: all cores)")
    p.set_defaults(func=_demo_cli)
    p = sub.add_parser("show-config", help="print versions and whether the C extension is loaded")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_show_config_cli)
    _add_user_data_parsers(sub)
    _add_bench_parser(sub)
    _add_serve_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``nnkd`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        args.func(args)
    except (ValueError, TypeError, OSError, ImportError, KeyboardInterrupt) as exc:
        if os.environ.get("NNKD_DEBUG"):
            raise
        print(f"nnkd: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
