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

from .. import columns as C
from ..columns import Column

#: ngmixer's epoch identification (also the first columns of MOF's nbrs_data)
EPOCH_META_COLUMNS = [
    Column("id", "i8", (), C.NONE, "id of the object (MEDS id)"),
    Column("number", "i4", (), C.NONE, "number of the object (MEDS number, 1-based)"),
    Column("band_num", "i2", (), C.NONE, "band index (order of the MEDS files)"),
    Column("cutout_index", "i4", (), C.NONE, "cutout of the object in the MEDS file "
           "(0 is the coadd)"),
    Column("orig_row", "f8", (), C.PIXEL, "row of the object's centre in the source image"),
    Column("orig_col", "f8", (), C.PIXEL, "column of the object's centre in the source "
           "image"),
    Column("file_id", "i4", (), C.NONE, "source image (row of the MEDS image_info)"),
    Column("pixel_scale", "f8", (), "arcsec/pixel", "sqrt(|det J|) of the cutout's "
           "Jacobian"),
]
#: every epoch_data table starts with these (filled by the ImageIO)
EPOCH_COLUMNS = EPOCH_META_COLUMNS + [
    Column("npix", "i4", (), C.NONE, "pixels of the cutout"),
    Column("wsum", "f8", (), C.INVVAR, "sum of the weight (region weight) over the cutout"),
    Column("wmax", "f8", (), C.INVVAR, "largest weight in the cutout"),
]
EPOCH_DTYPE = np.dtype([c.entry() for c in EPOCH_COLUMNS])


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
    zero_weight_frac: float = 0.0   # raw weight 0 over all cutouts read
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

    def prefetch_group(self, igroup: int) -> None:
        """Hint that group ``igroup`` will be read next (an ImageIO may start reading
        it in the background); the default does nothing."""

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
