"""scikit-learn estimators built on nnkd's condensing and search layers."""

from nnkd.neighbors._condensed import MarginCondensedNN

__all__ = ["MarginCondensedNN"]
