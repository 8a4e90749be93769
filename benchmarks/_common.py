"""What the benchmark scripts share beyond :mod:`nnkd.bench`: thread pinning, folders, progress lines.

Import this module before numpy: it pins BLAS/OpenMP threads to 1 (unless set) and Numba's
pool to ``--threads`` (read from ``sys.argv``), which must happen before those libraries load.
"""

from __future__ import annotations

import argparse
import os
import sys

DEFAULT_THREADS = 2
BLAS_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _early_threads(argv: list[str]) -> int:
    """Read ``--threads`` before numpy is imported (the full parser comes later)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--threads", type=int, default=DEFAULT_THREADS)
    return pre.parse_known_args(argv)[0].threads


_THREADS = _early_threads(sys.argv[1:]) if __name__ == "__main__" else DEFAULT_THREADS
for _var in BLAS_THREAD_VARS:
    os.environ.setdefault(_var, "1")
os.environ["NUMBA_NUM_THREADS"] = str(_THREADS)

import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
try:  # a stale editable install can resolve ``nnkd`` to an empty namespace package
    import nnkd
    nnkd.show_config  # noqa: B018
except (ImportError, AttributeError):
    sys.path.insert(0, str(REPO_ROOT))
    for _name in [m for m in sys.modules if m == "nnkd" or m.startswith("nnkd.")]:
        del sys.modules[_name]
    import nnkd

from nnkd.bench import check_datasets, provenance  # noqa: E402 - after the thread pins above

DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data"
DEFAULT_OUT_DIR = REPO_ROOT / "benchmarks" / "results"
#: The one teacher recipe every benchmark trains, whatever the dataset (dropout and input
#: noise: chosen in the trees benchmark's pilots on optdigits and pendigits, before the
#: groups were split; optdigits is now sealed).
DEFAULT_TEACHER = {"hidden": (512, 512), "epochs": 60, "batch_size": 128, "lr": 2e-3, "dropout": 0.2,
                   "input_noise": 0.3}


def check_data(names: list[str], data_dir: Path) -> list[str]:
    """:func:`nnkd.bench.check_datasets`, with its error as the script's one last line
    (``SystemExit``), before any work starts."""
    try:
        return check_datasets(names, data_dir)
    except (ValueError, FileNotFoundError) as exc:
        raise SystemExit(str(exc)) from None


def log(message: str) -> None:
    """Progress message on stderr."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def machine_meta(threads: int) -> dict[str, Any]:
    """:func:`nnkd.bench.provenance` (date, machine, versions; the one provenance record of
    ``nnkd bench`` and these scripts) plus this run's thread settings and arguments."""
    import numba

    return {**provenance(),
            "threads": {"threads": threads, "n_jobs": threads, "numba_get_num_threads": numba.get_num_threads(),
                        **{var: os.environ.get(var) for var in (*BLAS_THREAD_VARS, "NUMBA_NUM_THREADS")}},
            "argv": sys.argv[1:]}
