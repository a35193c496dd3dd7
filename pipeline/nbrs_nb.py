"""numba kernel for splitting FoF groups (called from ``nbrs.py``)."""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def _root(parent: np.ndarray, i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]  # path halving
        i = parent[i]
    return i


@njit(cache=True)
def capped_union_nb(n: int, pair_i: np.ndarray, pair_j: np.ndarray, max_size: int
                    ) -> np.ndarray:
    """Union the pairs in the order given, skipping any union that would make a group
    larger than ``max_size``; returns a root label (0..n-1) per object."""
    parent = np.arange(n)
    size = np.ones(n, dtype=np.int64)
    for k in range(pair_i.size):
        a = _root(parent, pair_i[k])
        b = _root(parent, pair_j[k])
        if a == b or size[a] + size[b] > max_size:
            continue
        if size[a] < size[b] or (size[a] == size[b] and b < a):
            a, b = b, a
        parent[b] = a
        size[a] += size[b]
    for i in range(n):
        parent[i] = _root(parent, i)
    return parent
