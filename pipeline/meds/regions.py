"""Weight-map regions used by fitters: cweight, uberseg, outlier rejection.

Definitions follow MEDS.md. Jacobians are dicts as returned by
``MEDS.get_jacobian`` (row0, col0, dudrow, dudcol, dvdrow, dvdcol); an epoch
Jacobian of ``None`` means the stamp *is* the coadd stamp (no resampling).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

# scipy.spatial and the numba kernel are imported where used: they cost ~2 s at
# start-up, which every CLI that merely opens a MEDS file would otherwise pay.

Jacobian = Mapping[str, float]


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
    if number is not None and np.any(coadd_seg == number):
        return int(number)
    nrow, ncol = coadd_seg.shape
    r = min(max(int(row0), 0), nrow - 1)
    c = min(max(int(col0), 0), ncol - 1)
    return int(coadd_seg[r, c])


def map_coadd_seg(coadd_seg: np.ndarray, jac_coadd: Jacobian | None,
                  jac_epoch: Jacobian | None, shape: tuple[int, int]) -> np.ndarray:
    """The coadd seg stamp seen on an epoch stamp of ``shape`` (nearest pixel)."""
    if jac_epoch is None or jac_coadd is None:
        if tuple(shape) != coadd_seg.shape:
            raise ValueError(f"stamp shape {tuple(shape)} != coadd seg shape {coadd_seg.shape}")
        return coadd_seg
    from .regions_nb import map_seg_nb

    # inverse coadd Jacobian times epoch Jacobian, written out for 2x2 (this runs
    # for every epoch of every object; np.linalg.solve's overhead dominated)
    a, b = float(jac_coadd["dudrow"]), float(jac_coadd["dudcol"])
    c, d = float(jac_coadd["dvdrow"]), float(jac_coadd["dvdcol"])
    det = a * d - b * c
    if det == 0.0:  # as np.linalg.solve did
        raise np.linalg.LinAlgError("Singular matrix")
    inv = np.array([[d, -b], [-c, a]]) / det
    amat = inv @ _matrix(jac_epoch)
    return map_seg_nb(np.ascontiguousarray(coadd_seg), amat,
                      float(jac_epoch["row0"]), float(jac_epoch["col0"]),
                      float(jac_coadd["row0"]), float(jac_coadd["col0"]),
                      int(shape[0]), int(shape[1]))


def cweight(weight: np.ndarray, coadd_seg: np.ndarray, segid: int,
            jac_coadd: Jacobian | None = None, jac_epoch: Jacobian | None = None) -> np.ndarray:
    """Copy of ``weight``, zero where the (mapped) coadd seg is another object."""
    seg = map_coadd_seg(coadd_seg, jac_coadd, jac_epoch, weight.shape)
    out = np.array(weight, dtype="f8", copy=True)
    out[(seg != segid) & (seg != 0)] = 0.0
    return out


def uberseg(weight: np.ndarray, coadd_seg: np.ndarray, segid: int,
            jac_coadd: Jacobian | None = None, jac_epoch: Jacobian | None = None) -> np.ndarray:
    """cweight, and sky pixels whose nearest seg pixel is another object set to 0."""
    seg = map_coadd_seg(coadd_seg, jac_coadd, jac_epoch, weight.shape)
    out = np.array(weight, dtype="f8", copy=True)
    other = (seg != segid) & (seg != 0)
    if not other.any():
        return out
    out[other] = 0.0
    sky = seg == 0
    if sky.any():
        from scipy.spatial import cKDTree

        labelled = np.argwhere(seg != 0)
        _, nearest = cKDTree(labelled).query(np.argwhere(sky), k=1)
        owner = seg[labelled[nearest, 0], labelled[nearest, 1]]
        sky_idx = np.flatnonzero(sky.ravel())
        out.ravel()[sky_idx[owner != segid]] = 0.0
    return out


def reject_outliers(images: Sequence[np.ndarray], weights: Sequence[np.ndarray],
                    nsigma: float = 5.0, A: float = 0.3) -> int:  # noqa: N803 - published name
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


def outlier_mask(images: np.ndarray, weights: np.ndarray, nsigma: float = 5.0,
                 A: float = 0.3) -> np.ndarray:  # noqa: N803 - published name
    """Boolean ``(nepoch, nrow, ncol)`` mask of the pixels ``reject_outliers`` zeroes,
    for float64 stacks of same-shape epochs (all False with fewer than 3)."""
    if len(images) < 3:
        return np.zeros(images.shape, dtype=bool)
    from .regions_nb import outlier_mask_nb

    return outlier_mask_nb(images, weights, float(nsigma), float(A))
