"""numba kernels for the per-pixel work on one band's stamp stack (``meds_band.py``)."""

from __future__ import annotations

import numpy as np
from numba import njit

from ..meds.regions_nb import (map_coadd_seg_nb, object_segid_nb, outlier_mask_nb,
                                region_keep_nb)


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
    # outliers are judged on the images as read, so non-finite ones are zeroed
    # only after the test
    judge = reject and n >= 3
    for e in range(n):
        s = scale[e]
        s2 = s * s
        bad = 0
        for r in range(nrow):
            for c in range(ncol):
                im = image_in[e, r, c] * s
                w = weight_in[e, r, c] / s2
                if not (np.isfinite(im) and np.isfinite(w)):
                    bad += 1
                    w = 0.0
                    if not judge:
                        im = 0.0
                elif not (w >= min_weight):
                    w = 0.0
                elif has_bmask and (bmask_in[e, r, c] & bmask_flags) != 0:
                    w = 0.0
                images[e, r, c] = im
                raw[e, r, c] = w
                weights[e, r, c] = w if (not has_keep or keep_in[e, r, c]) else 0.0
        nbad[e] = bad
    if judge:
        _reject_outliers(images, raw, weights, nsigma, A)
        for e in range(n):
            if nbad[e] == 0:
                continue
            s = scale[e]
            s2 = s * s
            for r in range(nrow):
                for c in range(ncol):
                    if not (np.isfinite(images[e, r, c])
                            and np.isfinite(weight_in[e, r, c] / s2)):
                        images[e, r, c] = 0.0
    nzero = np.zeros(n, dtype=np.int64)
    npos = np.zeros(n, dtype=np.int64)
    wsum = np.zeros(n)
    wmax = np.zeros(n)
    for e in range(n):
        nz = npo = 0
        ws = wm = 0.0
        for r in range(nrow):
            for c in range(ncol):
                if raw[e, r, c] <= 0.0:
                    nz += 1
                w = weights[e, r, c]
                if w > 0.0:
                    npo += 1
                    ws += w
                    if w > wm:
                        wm = w
        nzero[e], npos[e], wsum[e], wmax[e] = nz, npo, ws, wm
    return images, raw, weights, nbad, nzero, npos, wsum, wmax


@njit(cache=True)
def _reject_outliers(images, raw, weights, nsigma, A):  # noqa: N803
    """Zero both weights of the pixels ``outlier_mask_nb`` finds deviant."""
    outliers = outlier_mask_nb(images, raw, nsigma, A)
    n, nrow, ncol = images.shape
    for e in range(n):
        for r in range(nrow):
            for c in range(ncol):
                if outliers[e, r, c]:
                    raw[e, r, c] = 0.0
                    weights[e, r, c] = 0.0


#: weight-region modes of :func:`band_stack_nb`
REGION_NONE, REGION_CWEIGHT, REGION_NEAREST = 0, 1, 2


@njit(cache=True)
def band_stack_nb(image_all, weight_all, bmask_all, has_bmask, bmask_flags, seg_all, has_seg,
                  region_mode, number, cuts, jacs, scale, min_weight, reject, nsigma, A):  # noqa: N803
    """One object's cutouts ``cuts`` of one band, cleaned in a single call.

    image_all, weight_all (and bmask_all, seg_all when ``has_bmask`` /
    ``has_seg``): the object's whole ``(ncutout, box, box)`` stacks as read,
    cutout 0 the coadd. jacs: ``(ncutout, 6)`` Jacobians in MEDS order (row0,
    col0, dudrow, dudcol, dvdrow, dvdcol).

    With ``has_seg`` the coadd seg stamp is mapped onto every cutout (nearest
    pixel) and the object's seg id is its ``number`` when the coadd seg holds
    it, else the coadd seg under the object's centre. region_mode
    ``REGION_CWEIGHT`` drops other objects' pixels from the region weight,
    ``REGION_NEAREST`` (uberseg) also sky pixels strictly nearer another
    object (an object without seg pixels keeps the cweight).

    Returns images, raw, weights, segs (empty without ``has_seg``), and per
    cutout nbad, nzero, npos, wsum, wmax, as :func:`prepare_stack_nb`.
    """
    n = cuts.shape[0]
    box_r, box_c = image_all.shape[1], image_all.shape[2]
    image = np.empty((n, box_r, box_c), dtype=image_all.dtype)
    weight = np.empty((n, box_r, box_c), dtype=weight_all.dtype)
    for k in range(n):
        image[k] = image_all[cuts[k]]
        weight[k] = weight_all[cuts[k]]
    if has_bmask:
        bmask = np.empty((n, box_r, box_c), dtype=bmask_all.dtype)
        for k in range(n):
            bmask[k] = bmask_all[cuts[k]]
    else:
        bmask = np.zeros((0, 0, 0), dtype=bmask_all.dtype)
    if has_seg:
        jac_epochs = np.empty((n, 6))
        for k in range(n):
            jac_epochs[k] = jacs[cuts[k]]
        segs = map_coadd_seg_nb(seg_all[0], jacs[0], jac_epochs, box_r, box_c)
        segid = object_segid_nb(seg_all[0], jacs[0, 0], jacs[0, 1], number)
    else:
        segs = np.zeros((0, 0, 0), dtype=seg_all.dtype)
        segid = 0
    has_keep = has_seg and region_mode != REGION_NONE
    if has_keep:
        keep = region_keep_nb(segs, segid, region_mode == REGION_NEAREST, False)
    else:
        keep = np.zeros((0, 0, 0), dtype=np.bool_)
    images, raw, weights, nbad, nzero, npos, wsum, wmax = prepare_stack_nb(
        image, weight, bmask, has_bmask, bmask_flags, keep, has_keep, scale, min_weight,
        reject, nsigma, A)
    return images, raw, weights, segs, nbad, nzero, npos, wsum, wmax

