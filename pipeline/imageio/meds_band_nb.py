"""numba kernel for the per-pixel work on one band's stamp stack (``meds_band.py``)."""

from __future__ import annotations

import numpy as np
from numba import njit

from ..meds.regions_nb import outlier_mask_nb


@njit(cache=True)
def prepare_stack_nb(image_in, weight_in, bmask_in, has_bmask, bmask_flags, keep_in,
                     has_keep, scale, min_weight, reject, nsigma, A):  # noqa: N803
    """Scaled, masked float64 stacks and per-epoch counts, in one pass over the pixels.

    image_in, weight_in: (n, nrow, ncol) stamps as read; bmask_in and keep_in:
    same shape when ``has_bmask`` / ``has_keep`` (the weight region's kept
    pixels), else ignored. scale: (n,) flux scale of each epoch.

    A pixel is bad when its image or weight is not finite, its weight is below
    ``min_weight`` or its bmask has a ``bmask_flags`` bit: its raw weight is 0.
    The region weight is the raw weight where ``keep``, else 0. With ``reject``
    and n >= 3, pixels deviant across epochs (``outlier_mask_nb``, judged on the
    images before non-finite values are zeroed) get both weights 0. Pixels with a
    non-finite image or weight then get image 0.

    Returns images, raw, weights, and per epoch: nbad (non-finite pixels),
    nzero (raw weight 0), npos (region weight > 0), wsum and wmax (region weight).
    """
    n, nrow, ncol = image_in.shape
    images = np.empty((n, nrow, ncol))
    raw = np.empty((n, nrow, ncol))
    weights = np.empty((n, nrow, ncol))
    nbad = np.zeros(n, dtype=np.int64)
    nonfinite = np.zeros((n, nrow, ncol), dtype=np.bool_)
    for e in range(n):
        s = scale[e]
        s2 = s * s
        for r in range(nrow):
            for c in range(ncol):
                im = image_in[e, r, c] * s
                w = weight_in[e, r, c] / s2
                finite = np.isfinite(im) and np.isfinite(w)
                if not finite:
                    nbad[e] += 1
                    nonfinite[e, r, c] = True
                if not finite or not (w >= min_weight):
                    w = 0.0
                elif has_bmask and (bmask_in[e, r, c] & bmask_flags) != 0:
                    w = 0.0
                images[e, r, c] = im
                raw[e, r, c] = w
                weights[e, r, c] = w if (not has_keep or keep_in[e, r, c]) else 0.0
    if reject and n >= 3:
        outliers = outlier_mask_nb(images, raw, nsigma, A)
        for e in range(n):
            for r in range(nrow):
                for c in range(ncol):
                    if outliers[e, r, c]:
                        raw[e, r, c] = 0.0
                        weights[e, r, c] = 0.0
    nzero = np.zeros(n, dtype=np.int64)
    npos = np.zeros(n, dtype=np.int64)
    wsum = np.zeros(n)
    wmax = np.zeros(n)
    for e in range(n):
        for r in range(nrow):
            for c in range(ncol):
                if nonfinite[e, r, c]:
                    images[e, r, c] = 0.0
                if raw[e, r, c] <= 0.0:
                    nzero[e] += 1
                w = weights[e, r, c]
                if w > 0.0:
                    npos[e] += 1
                    wsum[e] += w
                    if w > wmax[e]:
                        wmax[e] = w
    return images, raw, weights, nbad, nzero, npos, wsum, wmax
