"""numba kernels for weight regions (called from ``regions.py``)."""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def map_seg_stack_nb(coadd_seg: np.ndarray, amats: np.ndarray, origins: np.ndarray,
                     crow0: float, ccol0: float, nrow: int, ncol: int) -> np.ndarray:
    """Resample the coadd seg stamp onto ``len(amats)`` stamps of shape (nrow, ncol).

    Pixel p of stamp k maps to coadd pixel ``amats[k] . (p - origins[k]) + c0``;
    the value is taken at the nearest coadd pixel, clipped to the stamp.
    """
    nstamp = amats.shape[0]
    out = np.empty((nstamp, nrow, ncol), dtype=coadd_seg.dtype)
    cnrow, cncol = coadd_seg.shape
    for k in range(nstamp):
        a00, a01 = amats[k, 0, 0], amats[k, 0, 1]
        a10, a11 = amats[k, 1, 0], amats[k, 1, 1]
        for r in range(nrow):
            dr = r - origins[k, 0]
            for c in range(ncol):
                dc = c - origins[k, 1]
                rr = int(np.floor(a00 * dr + a01 * dc + crow0 + 0.5))
                cc = int(np.floor(a10 * dr + a11 * dc + ccol0 + 0.5))
                rr = min(max(rr, 0), cnrow - 1)
                cc = min(max(cc, 0), cncol - 1)
                out[k, r, c] = coadd_seg[rr, cc]
    return out


@njit(cache=True)
def outlier_mask_nb(images: np.ndarray, weights: np.ndarray, nsigma: float,
                    A: float) -> np.ndarray:  # noqa: N803 - published name
    """bad[e, r, c]: pixel (r, c) of epoch e deviates from the median over epochs,
    ``w (im - med)^2 > (nsigma + A |med| sqrt(w))^2`` with w = max(weight, 0) > 0.

    images, weights: (nepoch, nrow, ncol) float64 stacks.
    """
    ne, nrow, ncol = images.shape
    bad = np.zeros((ne, nrow, ncol), dtype=np.bool_)
    buf = np.empty(ne)
    half = ne // 2
    for r in range(nrow):
        for c in range(ncol):
            # median by insertion sort of the few epoch values (as np.median:
            # the mean of the two middle values for an even count)
            nan = False
            for e in range(ne):
                x = images[e, r, c]
                if np.isnan(x):
                    nan = True
                j = e
                while j > 0 and buf[j - 1] > x:
                    buf[j] = buf[j - 1]
                    j -= 1
                buf[j] = x
            if nan:
                continue  # np.median is NaN: no comparison rejects
            if ne % 2 == 1:
                med = buf[half]
            else:
                med = 0.5 * (buf[half - 1] + buf[half])
            for e in range(ne):
                w = weights[e, r, c]
                if not (w > 0.0):
                    continue
                d = images[e, r, c] - med
                lim = nsigma + A * abs(med) * np.sqrt(w)
                if w * d * d > lim * lim:
                    bad[e, r, c] = True
    return bad


@njit(cache=True)
def first_nearest_label_nb(seg: np.ndarray, d2: np.ndarray) -> np.ndarray:
    """Label of each pixel's nearest labelled (non-zero) pixel, ties going to the
    first in row-major order; labelled pixels are their own nearest.

    d2: squared distance of each pixel to its nearest labelled pixel (exact
    integers, e.g. from a distance transform). Only offsets (dr, dc) with
    dr^2 + dc^2 == d2 are visited, in row-major order, so the search costs a
    few steps per pixel.
    """
    nrow, ncol = seg.shape
    out = seg.copy()
    for r in range(nrow):
        for c in range(ncol):
            if seg[r, c] != 0:
                continue
            dd = d2[r, c]
            rad = int(np.sqrt(dd))
            while rad * rad > dd:
                rad -= 1
            while (rad + 1) * (rad + 1) <= dd:
                rad += 1
            done = False
            for dr in range(-rad, rad + 1):
                rr = r + dr
                rem = dd - dr * dr
                if rr < 0 or rr >= nrow or rem < 0:
                    continue
                dc = int(np.sqrt(rem))
                while dc * dc > rem:
                    dc -= 1
                while (dc + 1) * (dc + 1) <= rem:
                    dc += 1
                if dc * dc != rem:
                    continue
                # the column left of the pixel comes first in row-major order
                for cc in (c - dc, c + dc):
                    if 0 <= cc < ncol and seg[rr, cc] != 0:
                        out[r, c] = seg[rr, cc]
                        done = True
                        break
                if done:
                    break
    return out


@njit(cache=True)
def _sq_distance_1d(f: np.ndarray, n: int, d: np.ndarray, v: np.ndarray, z: np.ndarray) -> None:
    """d[i] = min_j (i - j)^2 + f[j] over j < n: the lower envelope of parabolas
    (Felzenszwalb & Huttenlocher). Squared distances of pixel centres are
    integers, and the envelope's breakpoints are rationals at least 1/(2n) from
    any integer, so float64 gives them exactly."""
    k = 0
    v[0] = 0
    z[0] = -np.inf
    z[1] = np.inf
    for q in range(1, n):
        if f[q] == np.inf:
            continue
        if f[v[k]] == np.inf:  # only infinite parabolas so far: replace
            v[k] = q
            continue
        s = ((f[q] + q * q) - (f[v[k]] + v[k] * v[k])) / (2.0 * (q - v[k]))
        while s <= z[k]:
            k -= 1
            s = ((f[q] + q * q) - (f[v[k]] + v[k] * v[k])) / (2.0 * (q - v[k]))
        k += 1
        v[k] = q
        z[k] = s
        z[k + 1] = np.inf
    k = 0
    for q in range(n):
        while z[k + 1] < q:
            k += 1
        d[q] = (q - v[k]) * (q - v[k]) + f[v[k]] if f[v[k]] != np.inf else np.inf


@njit(cache=True)
def sq_distance_to_nb(mask: np.ndarray) -> np.ndarray:
    """Squared Euclidean distance of every pixel centre to the nearest True pixel
    (exact integers as floats; inf without any True pixel)."""
    nrow, ncol = mask.shape
    n = max(nrow, ncol)
    f = np.empty(n)
    d = np.empty(n)
    v = np.empty(n, dtype=np.int64)
    z = np.empty(n + 1)
    out = np.empty((nrow, ncol))
    for c in range(ncol):
        for r in range(nrow):
            f[r] = 0.0 if mask[r, c] else np.inf
        _sq_distance_1d(f, nrow, d, v, z)
        for r in range(nrow):
            out[r, c] = d[r]
    for r in range(nrow):
        for c in range(ncol):
            f[c] = out[r, c]
        _sq_distance_1d(f, ncol, d, v, z)
        for c in range(ncol):
            out[r, c] = d[c]
    return out


@njit(cache=True)
def _column_sq_distances(seg: np.ndarray, segid: int, own: np.ndarray,
                         other: np.ndarray) -> bool:
    """Squared distance along each column to the nearest own (``segid``) and other
    (non-zero) pixel of ``seg`` (-1 when the column has none): the first pass of
    the distance transforms, by a forward and a backward sweep. Returns whether
    the stamp holds both own and other pixels."""
    nrow, ncol = seg.shape
    has_own = has_other = False
    for c in range(ncol):
        last_own = last_other = -1
        for r in range(nrow):
            s = seg[r, c]
            if s == segid:
                last_own = r
            elif s != 0:
                last_other = r
            own[r, c] = -1 if last_own < 0 else (r - last_own) * (r - last_own)
            other[r, c] = -1 if last_other < 0 else (r - last_other) * (r - last_other)
        next_own = next_other = -1
        for r in range(nrow - 1, -1, -1):
            s = seg[r, c]
            if s == segid:
                next_own = r
            elif s != 0:
                next_other = r
            if next_own >= 0:
                d = (next_own - r) * (next_own - r)
                if own[r, c] < 0 or d < own[r, c]:
                    own[r, c] = d
            if next_other >= 0:
                d = (next_other - r) * (next_other - r)
                if other[r, c] < 0 or d < other[r, c]:
                    other[r, c] = d
        has_own = has_own or next_own >= 0
        has_other = has_other or next_other >= 0
    return has_own and has_other


@njit(cache=True)
def _row_sq_distances(f: np.ndarray, d: np.ndarray, v: np.ndarray, zn: np.ndarray,
                      zd: np.ndarray) -> None:
    """d[i] = min_j (i - j)^2 + f[j] over the j with f[j] >= 0 (at least one): the
    lower envelope of parabolas (Felzenszwalb & Huttenlocher) in integers, the
    breakpoints kept as fractions zn/zd (zd > 0) so that ties compare exactly."""
    n = f.shape[0]
    k = -1
    for q in range(n):
        fq = f[q]
        if fq < 0:
            continue
        if k < 0:
            k = 0
            v[0] = q
            continue
        while True:
            vk = v[k]
            sn = (fq + q * q) - (f[vk] + vk * vk)
            sd = 2 * (q - vk)
            # pop the last parabola while the new one takes over before its breakpoint
            if k > 0 and sn * zd[k] <= zn[k] * sd:
                k -= 1
            else:
                break
        k += 1
        v[k] = q
        zn[k] = sn
        zd[k] = sd
    last = k
    k = 0
    for q in range(n):
        while k < last and zn[k + 1] < q * zd[k + 1]:
            k += 1
        vk = v[k]
        d[q] = (q - vk) * (q - vk) + f[vk]


@njit(cache=True)
def nearer_to_own_nb(segs: np.ndarray, segid: int, keep: np.ndarray) -> None:
    """Uberseg's nearest-object rule on a stack of mapped seg stamps, in place:
    in every stamp holding both the object's pixels (``segid``) and another
    object's, ``keep`` is cleared where the nearest own pixel is farther than
    the nearest other object's pixel (equally near stays with the object).

    Exact squared Euclidean distances in integers (so equal distances compare
    equal): a column pass by sweeps, then a lower-envelope row pass, for both
    label sets at once.
    """
    nstamp, nrow, ncol = segs.shape
    col_own = np.empty((nrow, ncol), dtype=np.int64)
    col_other = np.empty((nrow, ncol), dtype=np.int64)
    d_own = np.empty(ncol, dtype=np.int64)
    d_other = np.empty(ncol, dtype=np.int64)
    v = np.empty(ncol, dtype=np.int64)
    zn = np.empty(ncol + 1, dtype=np.int64)
    zd = np.empty(ncol + 1, dtype=np.int64)
    for k in range(nstamp):
        if not _column_sq_distances(segs[k], segid, col_own, col_other):
            continue
        for r in range(nrow):
            _row_sq_distances(col_own[r], d_own, v, zn, zd)
            _row_sq_distances(col_other[r], d_other, v, zn, zd)
            for c in range(ncol):
                if d_own[c] > d_other[c]:
                    keep[k, r, c] = False


@njit(cache=True)
def map_coadd_seg_nb(coadd_seg: np.ndarray, jac_coadd: np.ndarray, jac_epochs: np.ndarray,
                     nrow: int, ncol: int) -> np.ndarray:
    """The coadd seg seen on ``len(jac_epochs)`` stamps of (nrow, ncol): epoch pixel
    offsets map to coadd offsets through the inverse coadd Jacobian times the
    epoch's (Jacobians in MEDS order; the coadd one must not be singular)."""
    a, b, c, d = jac_coadd[2], jac_coadd[3], jac_coadd[4], jac_coadd[5]
    det = a * d - b * c
    i00, i01, i10, i11 = d / det, -b / det, -c / det, a / det
    n = jac_epochs.shape[0]
    amats = np.empty((n, 2, 2))
    origins = np.empty((n, 2))
    for k in range(n):
        j = jac_epochs[k]
        amats[k, 0, 0] = i00 * j[2] + i01 * j[4]
        amats[k, 0, 1] = i00 * j[3] + i01 * j[5]
        amats[k, 1, 0] = i10 * j[2] + i11 * j[4]
        amats[k, 1, 1] = i10 * j[3] + i11 * j[5]
        origins[k, 0] = j[0]
        origins[k, 1] = j[1]
    return map_seg_stack_nb(coadd_seg, amats, origins, jac_coadd[0], jac_coadd[1], nrow, ncol)


@njit(cache=True)
def object_segid_nb(coadd_seg: np.ndarray, row0: float, col0: float, number: int) -> int:
    """``regions.object_segid``: ``number`` when the coadd seg holds it (-1: no
    number), else the seg under the truncated centre (clipped to the stamp)."""
    nrow, ncol = coadd_seg.shape
    if number >= 0:
        for r in range(nrow):
            for c in range(ncol):
                if coadd_seg[r, c] == number:
                    return number
    r = min(max(int(row0), 0), nrow - 1)
    c = min(max(int(col0), 0), ncol - 1)
    return int(coadd_seg[r, c])


@njit(cache=True)
def region_keep_nb(segs: np.ndarray, segid: int, nearest: bool,
                   restrict_to_seg: bool) -> np.ndarray:
    """``regions.region_keep``: the pixels a weight region keeps."""
    n, nrow, ncol = segs.shape
    keep = np.empty((n, nrow, ncol), dtype=np.bool_)
    for k in range(n):
        for r in range(nrow):
            for c in range(ncol):
                s = segs[k, r, c]
                keep[k, r, c] = s == segid or (s == 0 and not restrict_to_seg)
    if nearest and segid != 0:
        nearer_to_own_nb(segs, segid, keep)
    return keep
