"""``show_config``: what nnkd found at import time (versions, C extension)."""

from __future__ import annotations

import importlib.metadata
import platform
import sys

_DISTRIBUTIONS = {"numpy": "numpy", "scipy": "scipy", "scikit-learn": "scikit-learn", "numba": "numba",
                  "faiss": "faiss-cpu", "nmslib": "nmslib", "torch": "torch"}


def _version(dist: str) -> str | None:
    # Read installed metadata instead of importing: importing torch/faiss is slow and
    # show_config must not load them.
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def show_config(print_out: bool = True) -> dict:
    """Report the nnkd build and the versions of the libraries it can use.

    Parameters
    ----------
    print_out : bool, default=True
        Also print the report (one ``key: value`` per line) to stdout.

    Returns
    -------
    dict
        ``{"nnkd": str, "python": str, "platform": str, "cext": bool, <library>: str | None}``;
        a library that is not installed maps to ``None``.
    """
    from nnkd import __version__
    from nnkd._core.cext import CEXT_AVAILABLE

    config = {"nnkd": __version__, "python": sys.version.split()[0], "platform": platform.platform(),
              "cext": CEXT_AVAILABLE}
    config.update({name: _version(dist) for name, dist in _DISTRIBUTIONS.items()})
    if print_out:
        for key, value in config.items():
            print(f"{key}: {value}")
    return config
