"""One nearest-neighbour Index over exact search, FAISS and NMSLIB.

``make_index(spec, metric, **params).fit(X).query(Q, k)`` returns true distances of the
named metric (float32, ascending) and int64 ids whatever the backend. FAISS and NMSLIB
are imported only when an index of theirs is built or loaded.
"""

from nnkd.index._base import INDEX_METRICS, Index
from nnkd.index._factory import load_index, make_index, parse_spec

__all__ = ["INDEX_METRICS", "Index", "load_index", "make_index", "parse_spec"]
