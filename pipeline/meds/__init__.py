"""MEDS (Multi-Epoch Data Structures) input/output on fitsio.

- ``MEDS(path)``: lazy, slice-based reader with the reference ``meds.MEDS`` API,
  checking the file's layout when it opens (``reader.py``, ``validate.py``).
- ``write_meds(path, catalog, images)``: the MEDS maker, with ``SourceImage``
  and the WCS adapters ``GalsimWCS`` and ``AffineWCS``.
- ``regions``: cweight, uberseg and outlier rejection on stamps.
"""

from .reader import MEDS, split_mosaic
from .regions import cweight, reject_outliers, uberseg
from .wcs import AffineWCS, GalsimWCS, MedsWCS
from .writer import MedsInputError, SourceImage, write_meds

__all__ = ["MEDS", "split_mosaic", "write_meds", "SourceImage", "GalsimWCS", "AffineWCS", "MedsWCS",
           "MedsInputError", "cweight", "uberseg", "reject_outliers"]
