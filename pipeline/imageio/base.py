"""The ImageIO interface: iterate friends-of-friends groups of objects to fit.

An ImageIO turns survey inputs into :class:`FitObject` records grouped by FoF
group. Each object carries its multi-band, multi-epoch observations and the
bookkeeping the output tables need (ids, cutout indices, positions, flags).
Fitters see only these records, so any input format can be fitted by writing
a new ImageIO.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

EPOCH_DTYPE = [
    ("id", "i8"), ("number", "i8"), ("band_num", "i2"), ("cutout_index", "i4"),
    ("orig_row", "f8"), ("orig_col", "f8"), ("file_id", "i4"), ("pixel_scale", "f8"),
    ("npix", "i4"), ("wsum", "f8"), ("wmax", "f8"),
]


@dataclass
class FitObject:
    """One object to fit with its observations and bookkeeping."""

    index: int                 # row in the input object table
    id: int
    number: int
    fofid: int
    ra: float
    dec: float
    box_size: int
    nband: int
    obj_flags: int = 0         # run-level flags set while reading (gmix.flags)
    mbobs: object = None       # pipeline.gmix MultiBandObsList, or None when unusable
    epochs: np.ndarray = None  # EPOCH_DTYPE rows for the epochs used, in mbobs order
    nimage_tot: np.ndarray = field(default_factory=lambda: np.zeros(0, "i4"))
    nimage_use: np.ndarray = field(default_factory=lambda: np.zeros(0, "i4"))
    mask_frac: float = 0.0
    extra: dict = field(default_factory=dict)


class ImageIO(ABC):
    """Base class: an indexable sequence of FoF groups of :class:`FitObject`."""

    nband: int

    @property
    @abstractmethod
    def ngroups(self) -> int:
        """Number of FoF groups."""

    @abstractmethod
    def group_indices(self, igroup: int) -> np.ndarray:
        """Object indices (rows of the object table) of group ``igroup``."""

    @abstractmethod
    def get_object(self, index: int, fofid: int) -> FitObject:
        """Build the :class:`FitObject` of object ``index``."""

    @abstractmethod
    def object_table(self) -> np.ndarray:
        """Structured array with at least id, number, ra, dec, box_size per object."""

    @abstractmethod
    def meta_data(self) -> dict:
        """Input provenance for the output's meta_data table."""

    def get_group(self, igroup: int) -> list[FitObject]:
        return [self.get_object(int(i), igroup) for i in self.group_indices(igroup)]

    def iter_groups(self, first: int, last: int) -> Iterator[tuple[int, list[FitObject]]]:
        """Yield ``(igroup, objects)`` for groups ``first..last`` inclusive."""
        for igroup in range(first, last + 1):
            yield igroup, self.get_group(igroup)

    def close(self) -> None:
        """Release open files."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
