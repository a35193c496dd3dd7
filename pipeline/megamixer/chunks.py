"""Splitting a tile's FoF groups into chunks (contiguous, inclusive group ranges).

Chunk k covers groups ``[k*n, min((k+1)*n - 1, N - 1)]``; a group with more
members than ``max_group_size`` is cut out of its regular chunk into a chunk of
its own, so the regular grid (and hence most chunk names) does not depend on
where the big groups are.
"""

from __future__ import annotations

import os

import numpy as np

from ..errors import InputFileError


def make_chunks(group_sizes: np.ndarray, chunksize: int,
                max_group_size: int | None = None) -> np.ndarray:
    """Return an (nchunk, 2) int64 array of inclusive ``[first, last]`` group ranges.

    group_sizes: members per group, in group order (``N = len(group_sizes)``).
    """
    if chunksize < 1:
        raise ValueError("chunksize must be >= 1")
    sizes = np.asarray(group_sizes, dtype=np.int64)
    ngroup = sizes.size
    if ngroup == 0:
        return np.zeros((0, 2), dtype=np.int64)
    # Chunk starts: the regular grid, plus each big group and the group after it.
    starts = np.arange(0, ngroup, chunksize, dtype=np.int64)
    if max_group_size is not None:
        big = np.flatnonzero(sizes > max_group_size)
        starts = np.union1d(starts, np.concatenate([big, big + 1]))
        starts = starts[starts < ngroup]
    ends = np.append(starts[1:] - 1, ngroup - 1)
    return np.stack([starts, ends], axis=1)


def group_sizes_from_fof(fof_path: str | os.PathLike) -> np.ndarray:
    """Members per FoF group from a FoF file (``fofid`` 0..Nfof-1, ``number``)."""
    fofid = read_fofid(fof_path)
    if fofid.size and (fofid.min() < 0):
        raise InputFileError(fof_path, "negative fofid")
    sizes = np.bincount(fofid) if fofid.size else np.zeros(0, dtype=np.int64)
    if np.any(sizes == 0):
        raise InputFileError(fof_path, f"fofid values are not 0..{sizes.size - 1} "
                                       f"without gaps")
    return sizes


def read_fofid(fof_path: str | os.PathLike) -> np.ndarray:
    """The ``fofid`` column of a FoF file (via ``pipeline.nbrs.read_fofs`` when present)."""
    try:
        from ..nbrs import read_fofs  # type: ignore[attr-defined]
    except ImportError:
        read_fofs = None
    if read_fofs is not None:
        fofs = read_fofs(fof_path)
    else:
        from ..fitsfile import read_table
        fofs = read_table(fof_path, ext=1)
    if fofs.dtype.names is None or "fofid" not in fofs.dtype.names:
        raise InputFileError(fof_path, "FoF table has no 'fofid' column")
    return np.asarray(fofs["fofid"], dtype=np.int64)


def chunk_objects(group_sizes: np.ndarray, chunks: np.ndarray) -> np.ndarray:
    """Objects per chunk."""
    csum = np.concatenate([[0], np.cumsum(group_sizes, dtype=np.int64)])
    return csum[chunks[:, 1] + 1] - csum[chunks[:, 0]]
