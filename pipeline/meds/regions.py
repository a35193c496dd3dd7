"""Weight-map regions used by fitters: cweight, uberseg, outlier rejection.

Definitions: docs/meds.rst, "Weight regions". Jacobians are dicts as returned by
``MEDS.get_jacobian`` (row0, col0, dudrow, dudcol, dvdrow, dvdcol); an epoch
Jacobian of ``None`` means the stamp *is* the coadd stamp (no resampling).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

# The numba kernels are imported where used: loading them costs start-up time,
# which every CLI that merely opens a MEDS file would otherwise pay.

Jacobian = Mapping[str, float]

#: outlier rejection across epochs (docs/meds.rst): deviation limit in sigma, and the
#: allowance for PSF/astrometry differences that grows with the median flux
OUTLIER_NSIGMA = 5.0
OUTLIER_A = 0.3


def _matrix(jac: Jacobian) -> np.ndarray:
    return np.array([[jac["dudrow"], jac["dudcol"]], [jac["dvdrow"], jac["dvdcol"]]], dtype="f8")


def object_segid(coadd_seg: np.ndarray, row0: float, col0: float,
                 number: int | None = None) -> int:
    """Seg id of the object: its ``number`` when that appears in the coadd seg
    stamp, else the coadd seg at the truncated stamp centre.

    ``number`` is the object's segmentation id by definition; the centre pixel
    can belong to a neighbour in a close blend, and taking it would hand the
    object's region to the neighbour.
    """
    from .regions_nb import object_segid_nb

    return object_segid_nb(np.ascontiguousarray(coadd_seg), float(row0), float(col0),
                           -1 if number is None else int(number))


#: column order of the Jacobian arrays taken by :func:`map_coadd_seg_stack`
JACOBIAN_FIELDS = ("row0", "col0", "dudrow", "dudcol", "dvdrow", "dvdcol")


def jacobian_array(jac: Jacobian) -> np.ndarray:
    """A Jacobian dict as a float64 array in :data:`JACOBIAN_FIELDS` order."""
    return np.array([float(jac[name]) for name in JACOBIAN_FIELDS])


def map_coadd_seg_stack(coadd_seg: np.ndarray, jac_coadd: np.ndarray, jac_epochs: np.ndarray,
                        shape: tuple[int, int]) -> np.ndarray:
    """The coadd seg stamp seen on each of ``len(jac_epochs)`` stamps of ``shape``
    (nearest pixel, clipped): an ``(nepoch, nrow, ncol)`` array.

    jac_coadd: (6,) and jac_epochs: (nepoch, 6) Jacobians in :data:`JACOBIAN_FIELDS`
    order; both stamps have the object at their (u, v) origin. Epoch pixel offsets
    map to coadd pixel offsets through the inverse coadd Jacobian times the epoch's.
    """
    from .regions_nb import map_coadd_seg_nb

    jac_coadd = np.ascontiguousarray(jac_coadd, dtype="f8")
    jac_epochs = np.ascontiguousarray(jac_epochs, dtype="f8").reshape(-1, 6)
    a, b, c, d = jac_coadd[2:6]
    if a * d - b * c == 0.0:  # as np.linalg.solve did
        raise np.linalg.LinAlgError("Singular matrix")
    return map_coadd_seg_nb(np.ascontiguousarray(coadd_seg), jac_coadd, jac_epochs,
                            int(shape[0]), int(shape[1]))


def map_coadd_seg(coadd_seg: np.ndarray, jac_coadd: Jacobian | None,
                  jac_epoch: Jacobian | None, shape: tuple[int, int]) -> np.ndarray:
    """The coadd seg stamp seen on an epoch stamp of ``shape`` (nearest pixel)."""
    if jac_epoch is None or jac_coadd is None:
        if tuple(shape) != coadd_seg.shape:
            raise ValueError(f"stamp shape {tuple(shape)} != coadd seg shape {coadd_seg.shape}")
        return coadd_seg
    return map_coadd_seg_stack(coadd_seg, jacobian_array(jac_coadd),
                               jacobian_array(jac_epoch)[None], shape)[0]


def region_keep(segs: np.ndarray, segid: int, nearest: bool,
                restrict_to_seg: bool = False) -> np.ndarray:
    """Pixels whose weight a region keeps, for an ``(nepoch, nrow, ncol)`` stack of
    mapped seg stamps.

    cweight (``nearest=False``) drops other objects' pixels (and sky too with
    ``restrict_to_seg``). uberseg (``nearest=True``) also drops sky pixels
    strictly nearer to another object's pixels than to the object's own: a sky
    pixel equally near both stays with the object, so the rule is symmetric and
    does not depend on the stamp's orientation. An epoch with no other object,
    or in which the object has no pixels of its own (``segid`` 0 or absent),
    keeps what cweight keeps.
    """
    from .regions_nb import region_keep_nb

    # exact squared distances, so equally near pixels compare equal
    return region_keep_nb(np.ascontiguousarray(segs, dtype=np.int64), int(segid),
                          bool(nearest), bool(restrict_to_seg))


def _apply_region(weight: np.ndarray, coadd_seg: np.ndarray, segid: int,
                  jac_coadd: Jacobian | None, jac_epoch: Jacobian | None,
                  nearest: bool) -> np.ndarray:
    seg = map_coadd_seg(coadd_seg, jac_coadd, jac_epoch, weight.shape)
    out = np.array(weight, dtype="f8", copy=True)
    out[~region_keep(seg[None], segid, nearest)[0]] = 0.0
    return out


def cweight(weight: np.ndarray, coadd_seg: np.ndarray, segid: int,
            jac_coadd: Jacobian | None = None, jac_epoch: Jacobian | None = None) -> np.ndarray:
    """Copy of ``weight``, zero where the (mapped) coadd seg is another object."""
    return _apply_region(weight, coadd_seg, segid, jac_coadd, jac_epoch, nearest=False)


def uberseg(weight: np.ndarray, coadd_seg: np.ndarray, segid: int,
            jac_coadd: Jacobian | None = None, jac_epoch: Jacobian | None = None) -> np.ndarray:
    """cweight, and sky pixels nearer another object than this one set to 0."""
    return _apply_region(weight, coadd_seg, segid, jac_coadd, jac_epoch, nearest=True)


# ------------------------------------------------- the reference reader's rules
def map_coadd_seg_reference(coadd_seg: np.ndarray, jac_coadd: np.ndarray,
                            jac_epoch: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """:func:`map_coadd_seg_stack` for one stamp as the reference reader computes it:
    the same nearest-pixel mapping, with its operation order, its inverse
    (``numpy.linalg.inv``) and exact halves rounded to even.

    jac_coadd, jac_epoch: (6,) Jacobians in :data:`JACOBIAN_FIELDS` order. A
    singular coadd Jacobian raises ``numpy.linalg.LinAlgError``.
    """
    jc = np.asarray(jac_coadd, dtype="f8")
    je = np.asarray(jac_epoch, dtype="f8")
    cinv = np.linalg.inv(jc[2:6].reshape(2, 2))
    rows, cols = np.mgrid[0:shape[0], 0:shape[1]]
    rows = rows - je[0]
    cols = cols - je[1]
    u = rows * je[2] + cols * je[3]
    v = rows * je[4] + cols * je[5]
    crow = np.rint(jc[0] + u * cinv[0, 0] + v * cinv[0, 1]).astype("i8")
    ccol = np.rint(jc[1] + u * cinv[1, 0] + v * cinv[1, 1]).astype("i8")
    crow = crow.clip(0, coadd_seg.shape[0] - 1)
    ccol = ccol.clip(0, coadd_seg.shape[1] - 1)
    return coadd_seg[crow, ccol]


def reference_nearest_keep(seg: np.ndarray, number: int) -> np.ndarray:
    """The reference uberseg's nearest-object rule on one mapped seg stamp: a pixel
    is kept when its nearest labelled pixel (itself, if labelled) is ``number``;
    among equally near labelled pixels the first in row-major order decides
    (the reference's ``fast=False`` search). A stamp without labelled pixels
    keeps everything."""
    from .regions_nb import first_nearest_label_nb, sq_distance_to_nb

    labelled = seg != 0
    if not labelled.any():
        return np.ones(seg.shape, dtype=bool)
    d2 = sq_distance_to_nb(labelled).astype(np.int64)  # exact integers
    return first_nearest_label_nb(np.ascontiguousarray(seg), d2) == number


def cseg_weight_keep(seg: np.ndarray, number: int, row: float, col: float) -> np.ndarray:
    """Pixels inside the largest circle about (row, col) that touches no pixel of
    another object in ``seg`` (all pixels when there is none)."""
    other = (seg != 0) & (seg != number)
    if not other.any():
        return np.ones(seg.shape, dtype=bool)
    rows, cols = np.mgrid[0:seg.shape[0], 0:seg.shape[1]]
    r2 = (rows - row) ** 2 + (cols - col) ** 2
    return r2 < r2[other].min()


def reject_outliers(images: Sequence[np.ndarray], weights: Sequence[np.ndarray],
                    nsigma: float = OUTLIER_NSIGMA,
                    A: float = OUTLIER_A) -> int:  # noqa: N803 - published name
    """Zero, in place, weights of pixels far from the per-pixel median over epochs.

    A pixel is rejected when ``wt*(im-med)**2 > (nsigma + A*|med|*sqrt(wt))**2``
    (the ``A`` term allows for PSF/astrometry differences on bright objects).
    Needs >= 3 same-shape epochs of one band; returns the number of pixels
    rejected (0 with fewer than 3 epochs).
    """
    if len(images) != len(weights):
        raise ValueError(f"{len(images)} images but {len(weights)} weights")
    if len(images) < 3:
        return 0
    shape = images[0].shape
    for arr in list(images) + list(weights):
        if arr.shape != shape:
            raise ValueError(f"reject_outliers needs same-shape stamps: {arr.shape} != {shape}")
    bad = outlier_mask(np.stack([np.asarray(im, dtype="f8") for im in images]),
                       np.stack([np.asarray(wt, dtype="f8") for wt in weights]), nsigma, A)
    nrej = 0
    for wt, b in zip(weights, bad):
        wt[b] = 0
        nrej += int(b.sum())
    return nrej


def outlier_mask(images: np.ndarray, weights: np.ndarray, nsigma: float = OUTLIER_NSIGMA,
                 A: float = OUTLIER_A) -> np.ndarray:  # noqa: N803 - published name
    """Boolean ``(nepoch, nrow, ncol)`` mask of the pixels ``reject_outliers`` zeroes,
    for float64 stacks of same-shape epochs (all False with fewer than 3)."""
    if len(images) < 3:
        return np.zeros(images.shape, dtype=bool)
    from .regions_nb import outlier_mask_nb

    return outlier_mask_nb(images, weights, float(nsigma), float(A))
