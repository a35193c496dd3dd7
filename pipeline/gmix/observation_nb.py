"""numba kernel for building PSF observations (called from ``observation.py``)."""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def psf_stack_nb(stamps, rel_noise):
    """(images, weights, nbad) of an (n, nrow, ncol) PSF stack: float64 images with
    non-finite pixels set to 0, weight ``1 / (rel_noise * peak)**2`` (1 for an
    empty or all-zero stamp) except 0 on non-finite pixels, and their count."""
    n, nrow, ncol = stamps.shape
    images = np.empty((n, nrow, ncol))
    weights = np.empty((n, nrow, ncol))
    nbad = np.zeros(n, dtype=np.int64)
    for e in range(n):
        peak = 0.0
        for r in range(nrow):
            for c in range(ncol):
                v = float(stamps[e, r, c])
                if np.isfinite(v):
                    images[e, r, c] = v
                    if abs(v) > peak:
                        peak = abs(v)
                else:
                    images[e, r, c] = 0.0
                    nbad[e] += 1
        noise = rel_noise * peak if peak > 0.0 else 1.0
        w = 1.0 / (noise * noise)
        for r in range(nrow):
            for c in range(ncol):
                weights[e, r, c] = w if np.isfinite(stamps[e, r, c]) else 0.0
    return images, weights, nbad
