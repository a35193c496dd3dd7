"""numba kernels for weight regions (called from ``regions.py``)."""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def map_seg_nb(coadd_seg: np.ndarray, amat: np.ndarray, erow0: float, ecol0: float,
               crow0: float, ccol0: float, nrow: int, ncol: int) -> np.ndarray:
    """Resample the coadd seg stamp onto an epoch stamp of shape (nrow, ncol).

    Epoch pixel p maps to coadd pixel ``amat . (p - e0) + c0`` (``amat`` =
    inverse coadd Jacobian times epoch Jacobian: both stamps share the object
    as their (u, v) origin); the value is taken at the nearest coadd pixel,
    clipped to the stamp.
    """
    out = np.empty((nrow, ncol), dtype=coadd_seg.dtype)
    cnrow, cncol = coadd_seg.shape
    for r in range(nrow):
        dr = r - erow0
        for c in range(ncol):
            dc = c - ecol0
            rr = int(np.floor(amat[0, 0] * dr + amat[0, 1] * dc + crow0 + 0.5))
            cc = int(np.floor(amat[1, 0] * dr + amat[1, 1] * dc + ccol0 + 0.5))
            rr = min(max(rr, 0), cnrow - 1)
            cc = min(max(cc, 0), cncol - 1)
            out[r, c] = coadd_seg[rr, cc]
    return out
