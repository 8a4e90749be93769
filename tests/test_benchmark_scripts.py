"""The benchmark scripts on a machine without the project's shared datasets (a user's): each
exits at once with one line naming the folder and what to pass, never a traceback or an empty
table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
READS_SHARED_DATA = ["condense", "distill", "few_class", "knn", "ksu_start", "trees"]


@pytest.mark.parametrize("script", READS_SHARED_DATA)
def test_missing_data_folder_is_one_clear_line(script, tmp_path):
    absent = tmp_path / "no-such-folder"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / f"{script}.py"), "--data-dir", str(absent),
                           "--out-dir", str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert str(absent) in last and "not found" in last and "--data-dir" in last, proc.stderr[-2000:]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())   # nothing half-written
