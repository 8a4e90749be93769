"""The C extension must be built and loaded: the suite fails loudly otherwise."""

import subprocess
import sys

import nnkd
from nnkd._core import cext


def test_cext_is_loaded():
    assert cext.CEXT_AVAILABLE, (
        f"nnkd._cext did not import ({cext.IMPORT_ERROR}); build it with `pip install .`"
    )
    assert cext.require_cext().__name__ == "nnkd._cext"


def test_show_config_reports_versions(capsys):
    config = nnkd.show_config()
    assert config["cext"] is True
    assert config["nnkd"] == nnkd.__version__
    for lib in ("numpy", "numba", "faiss", "nmslib", "torch"):
        assert lib in config
    import numpy
    assert config["numpy"] == numpy.__version__
    assert "cext: True" in capsys.readouterr().out


def test_import_nnkd_does_not_load_torch_or_ann_libraries():
    code = ("import sys, nnkd; nnkd.MarginCondensedNN; nnkd.show_config(print_out=False);"
            "print(sorted(m for m in ('torch', 'faiss', 'nmslib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_unknown_attribute():
    import pytest
    with pytest.raises(AttributeError, match="no attribute"):
        nnkd.does_not_exist


def test_pairs_to_arrays_pads_short_rows_and_rejects_bad_rows():
    import numpy as np
    import pytest

    rows = [(np.array([3, 1], np.int32), np.array([0.5, 2.0], np.float32)),
            (np.array([7], np.int32), np.array([1.5], np.float32))]
    dist, ind = cext.pairs_to_arrays(rows, 2)
    assert ind.dtype == np.int64 and dist.dtype == np.float32
    assert ind.tolist() == [[3, 1], [7, -1]]
    assert dist.tolist() == [[0.5, 2.0], [1.5, float("inf")]]
    with pytest.raises(ValueError, match="k=1"):
        cext.pairs_to_arrays(rows, 1)                         # a row longer than k
    with pytest.raises(ValueError, match="wrong dtype"):
        cext.pairs_to_arrays([(np.array([1], np.int64), np.array([1.0], np.float32))], 1)
    with pytest.raises(TypeError, match="pair"):
        cext.pairs_to_arrays([[np.array([1], np.int32)]], 1)
