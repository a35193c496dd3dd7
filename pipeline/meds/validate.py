"""Structural checks of a MEDS file's layout, run when it is opened.

Only the small tables are looked at (``object_data`` columns against the HDU
lengths and the ``image_info`` size), with whole-array numpy operations: no
pixel is read. Each check returns the first problem as a one-line message
naming the object (table row and id) and the cutout, or None.
"""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np

from .schema import PSF_EXT, UNUSED, cutout_ext


def _name(ids: np.ndarray | None, i: int) -> str:
    return f"object {i}" if ids is None else f"object {i} (id {ids[i]})"


def _used(ncut: np.ndarray, nmax: int) -> np.ndarray:
    """(nobj, nmax) mask of the slots below each object's ncutout."""
    return np.arange(nmax)[None, :] < ncut[:, None]


def _slot_problem(bad: np.ndarray, ids: np.ndarray | None,
                  text: Callable[[int, int], str]) -> str | None:
    """The message for the first (object, cutout) flagged in ``bad``, or None."""
    if not bad.any():
        return None
    i, j = (int(k[0]) for k in np.nonzero(bad))
    return f"{_name(ids, i)} cutout {j}: {text(i, j)}"


def cutout_layout_problem(ncut: np.ndarray, box: np.ndarray, start: np.ndarray,
                          lengths: Mapping[str, int], ids: np.ndarray | None = None
                          ) -> str | None:
    """Cutout counts, box sizes and ``start_row`` offsets against the cutout HDUs.

    ncut, box: (nobj,) int64; start: (nobj, nmax) int64; lengths: pixels in each
    ``<type>_cutouts`` HDU by type. A used slot is one below the object's ncutout.
    """
    nmax = start.shape[1]
    bad = np.flatnonzero((ncut < 0) | (ncut > nmax))
    if bad.size:
        i = int(bad[0])
        return (f"{_name(ids, i)}: ncutout {ncut[i]} is outside [0, {nmax}] "
                f"(the per-cutout columns hold {nmax})")
    bad = np.flatnonzero((ncut > 0) & ((box <= 0) | (box % 2 != 0)))
    if bad.size:
        i = int(bad[0])
        return f"{_name(ids, i)}: box_size {box[i]} is not a positive even number"
    used = _used(ncut, nmax)
    npix = (box * box)[:, None]
    end = start + npix
    for kind, length in lengths.items():
        problem = _extent_problem(used, start, end, "start_row", cutout_ext(kind), length, ids,
                                  lambda i, j: f"box_size**2 {npix[i, 0]}")
        if problem:
            return problem
    return _overlap_problem(start, end, used, ids)


def _extent_problem(used: np.ndarray, start: np.ndarray, end: np.ndarray, column: str,
                    hdu: str, length: int, ids: np.ndarray | None,
                    size: Callable[[int, int], str]) -> str | None:
    """Every used stamp ``[start, end)`` must lie inside an HDU of ``length`` pixels."""
    return (_slot_problem(used & (start < 0), ids,
                          lambda i, j: f"{column} {start[i, j]} is negative")
            or _slot_problem(used & (end > length), ids,
                             lambda i, j: f"{column} {start[i, j]} + {size(i, j)} runs past the "
                                          f"end of '{hdu}' ({length} pixels; truncated or "
                                          f"damaged file)"))


def _overlap_problem(start: np.ndarray, end: np.ndarray, used: np.ndarray,
                     ids: np.ndarray | None) -> str | None:
    """Two used cutouts sharing pixels (every cutout owns its own pixels)."""
    s, e = start[used], end[used]  # row-major: the order writers lay stamps out in
    if s.size < 2 or np.all(s[1:] >= e[:-1]):
        return None  # in order and disjoint (the usual layout): no sort needed
    obj, slot = np.nonzero(used)
    order = np.argsort(s, kind="stable")
    s, e, obj, slot = s[order], e[order], obj[order], slot[order]
    # the furthest end reached by the cutouts before each one (catches containment)
    bad = s[1:] < np.maximum.accumulate(e[:-1])
    if not bad.any():
        return None
    k = int(np.flatnonzero(bad)[0]) + 1
    other = int(np.argmax(e[:k]))  # first cutout reaching that far
    return (f"{_name(ids, int(obj[k]))} cutout {slot[k]} (pixels [{s[k]}, {e[k]})) "
            f"overlaps {_name(ids, int(obj[other]))} cutout {slot[other]} "
            f"(pixels [{s[other]}, {e[other]})): damaged start_row or box_size")


def file_id_problem(ncut: np.ndarray, file_id: np.ndarray, nimage: int,
                    ids: np.ndarray | None = None) -> str | None:
    """Every used cutout's ``file_id`` must be a row of ``image_info``."""
    bad = _used(ncut, file_id.shape[1]) & ((file_id < 0) | (file_id >= nimage))
    return _slot_problem(bad, ids, lambda i, j: f"file_id {file_id[i, j]} is not a row of "
                                                f"image_info (0..{nimage - 1})")


def psf_layout_problem(ncut: np.ndarray, pstart: np.ndarray, prows: np.ndarray,
                       pcols: np.ndarray, length: int,
                       ids: np.ndarray | None = None) -> str | None:
    """PSF stamp offsets and sizes against the ``psf`` HDU.

    A used slot whose ``psf_start_row`` is -9999 has no PSF stamp (allowed: an
    image without a PSF model); any other must lie inside the HDU.
    """
    has = _used(ncut, pstart.shape[1]) & (pstart != UNUSED)
    return (_slot_problem(has & ((prows <= 0) | (pcols <= 0)), ids,
                          lambda i, j: f"PSF stamp size {prows[i, j]}x{pcols[i, j]} is not "
                                       f"positive")
            or _extent_problem(has, pstart, pstart + prows * pcols, "psf_start_row", PSF_EXT,
                               length, ids, lambda i, j: f"{prows[i, j]}x{pcols[i, j]} pixels"))
