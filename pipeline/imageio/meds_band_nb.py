"""numba kernels for the per-pixel work on one band's stamp stack (``meds_band.py``)."""

from __future__ import annotations

import numpy as np
from numba import njit

from ..meds.regions_nb import map_seg_stack_nb, nearer_to_own_nb, outlier_mask_nb


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
        coadd = seg_all[0]
        amats = np.empty((n, 2, 2))
        origins = np.empty((n, 2))
        a, b, c, d = jacs[0, 2], jacs[0, 3], jacs[0, 4], jacs[0, 5]
        det = a * d - b * c
        i00, i01, i10, i11 = d / det, -b / det, -c / det, a / det
        for k in range(n):
            j = jacs[cuts[k]]
            amats[k, 0, 0] = i00 * j[2] + i01 * j[4]
            amats[k, 0, 1] = i00 * j[3] + i01 * j[5]
            amats[k, 1, 0] = i10 * j[2] + i11 * j[4]
            amats[k, 1, 1] = i10 * j[3] + i11 * j[5]
            origins[k, 0] = j[0]
            origins[k, 1] = j[1]
        segs = map_seg_stack_nb(coadd, amats, origins, jacs[0, 0], jacs[0, 1], box_r, box_c)
        segid = _object_segid(coadd, jacs[0, 0], jacs[0, 1], number)
    else:
        segs = np.zeros((0, 0, 0), dtype=seg_all.dtype)
        segid = 0
    has_keep = has_seg and region_mode != REGION_NONE
    if has_keep:
        keep = np.empty((n, box_r, box_c), dtype=np.bool_)
        for k in range(n):
            for r in range(box_r):
                for cc in range(box_c):
                    s = segs[k, r, cc]
                    keep[k, r, cc] = s == segid or s == 0
        if region_mode == REGION_NEAREST and segid != 0:
            nearer_to_own_nb(segs, segid, keep)
    else:
        keep = np.zeros((0, 0, 0), dtype=np.bool_)
    images, raw, weights, nbad, nzero, npos, wsum, wmax = prepare_stack_nb(
        image, weight, bmask, has_bmask, bmask_flags, keep, has_keep, scale, min_weight,
        reject, nsigma, A)
    return images, raw, weights, segs, nbad, nzero, npos, wsum, wmax


@njit(cache=True)
def _object_segid(coadd_seg, row0, col0, number):
    """``regions.object_segid``: ``number`` when the coadd seg holds it, else the
    seg under the truncated centre (clipped to the stamp)."""
    nrow, ncol = coadd_seg.shape
    for r in range(nrow):
        for c in range(ncol):
            if coadd_seg[r, c] == number:
                return number
    r = min(max(int(row0), 0), nrow - 1)
    c = min(max(int(col0), 0), ncol - 1)
    return int(coadd_seg[r, c])
