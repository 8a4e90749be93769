"""Build the C extension; all other metadata lives in pyproject.toml."""
import numpy as np
from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "nnkd._cext",
            sources=["cext/_cextmodule.c", "cext/greedy.c"],
            include_dirs=["cext", np.get_include()],
            # No FMA contraction: the Numba port must produce bit-identical radii.
            extra_compile_args=["-std=c99", "-O2", "-ffp-contract=off", "-pthread"],
            extra_link_args=["-pthread"],
        )
    ]
)
