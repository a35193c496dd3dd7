"""The little megamixit needs from MEDS files: object counts, ids, magzp_ref.

Reads single columns with fitsio (cheap even for big files) rather than
opening the full MEDS reader.
"""

from __future__ import annotations

import os

import numpy as np

from ..errors import InputFileError
from ..fitsfile import open_fits


def _open(path: str | os.PathLike):
    if not os.path.exists(path):
        raise InputFileError(path, "MEDS file not found")
    return open_fits(path)


def meds_nobj(path: str | os.PathLike) -> int:
    """Number of objects (rows of ``object_data``)."""
    with _open(path) as fits:
        if "object_data" not in fits:
            raise InputFileError(path, "no object_data extension")
        return int(fits["object_data"].get_nrows())


def meds_ids(path: str | os.PathLike) -> np.ndarray:
    """The ``id`` column of ``object_data``, in file order."""
    with _open(path) as fits:
        if "object_data" not in fits:
            raise InputFileError(path, "no object_data extension")
        hdu = fits["object_data"]
        if "id" not in hdu.get_colnames():
            raise InputFileError(path, "object_data has no 'id' column")
        return np.asarray(hdu.read_column("id"), dtype=np.int64)


def meds_magzp_ref(path: str | os.PathLike) -> float | None:
    """``magzp_ref`` from the metadata table, or None when absent."""
    with _open(path) as fits:
        if "metadata" not in fits:
            return None
        hdu = fits["metadata"]
        if "magzp_ref" not in hdu.get_colnames():
            return None
        return float(np.ravel(hdu.read_column("magzp_ref"))[0])
