"""Segmentation map of a simulated tile, from its noiseless coadds.

Detection-like: the detection image is the sum of the bands' noiseless coadds;
a pixel above ``threshold`` x the detection image's noise sigma belongs to the
object contributing most flux there (its ``number`` is written), other pixels
are 0. An object's centre pixel always carries its own number, as a detection
peak would, even when the object is faint or sits on a brighter neighbour
(both the pixel containing the centre and the one at the truncated centre,
which MEDS readers use to find an object's seg id).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


class Stamp:
    """An object's rendered stamp: array placed at 0-offset (row0, col0) of a big image."""

    __slots__ = ("row0", "col0", "array")

    def __init__(self, row0: int, col0: int, array: np.ndarray) -> None:
        self.row0, self.col0, self.array = int(row0), int(col0), array

    @property
    def slices(self) -> tuple[slice, slice]:
        nr, nc = self.array.shape
        return slice(self.row0, self.row0 + nr), slice(self.col0, self.col0 + nc)


def make_seg(shape: tuple[int, int], stamps: Sequence[Stamp | None], numbers: np.ndarray,
             centre_rows: np.ndarray, centre_cols: np.ndarray, noise_sigma: float,
             threshold: float) -> np.ndarray:
    """Seg map (i4) from per-object noiseless detection stamps (see module doc)."""
    detection = np.zeros(shape, dtype="f8")
    best = np.zeros(shape, dtype="f8")
    owner = np.zeros(shape, dtype="i4")
    for stamp, number in zip(stamps, numbers):
        if stamp is None:
            continue
        sl = stamp.slices
        detection[sl] += stamp.array
        better = stamp.array > best[sl]
        best[sl][better] = stamp.array[better]
        owner[sl][better] = number
    seg = np.where(detection > threshold * noise_sigma, owner, 0).astype("i4")
    # the pixel containing the centre (rounded) and the truncated centre that MEDS
    # readers look up for an object's seg id (docs/meds.rst); blended objects are >= 3
    # pixels apart, so these pixels never collide between objects
    for offset in (0.5, 0.0):
        rows = np.clip(np.floor(np.asarray(centre_rows) + offset).astype(int), 0, shape[0] - 1)
        cols = np.clip(np.floor(np.asarray(centre_cols) + offset).astype(int), 0, shape[1] - 1)
        seg[rows, cols] = numbers
    return seg
