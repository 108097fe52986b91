"""Nearest-neighbour search of unit-norm embeddings: exact (batched matmul) or an approximate usearch index.

    exact.py    top-k by cosine similarity, a block of queries at a time
    index.py    the usearch HNSW index (optional extra ``polymodal[retrieval]``), saved in its own file format

Numpy (and usearch, imported only when an index is used): no torch, no pandas.
"""

from .exact import Hits, exact_search
from .index import ApproximateIndex, search

__all__ = ["ApproximateIndex", "Hits", "exact_search", "search"]
