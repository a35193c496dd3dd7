"""Reading small auxiliary tables (FoF, neighbour, object-flag files) with clear errors."""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from .errors import InputFileError
from .fitsfile import open_fits


def read_table(path: str | os.PathLike, columns: Sequence[str], ext: int | str = 1) -> np.ndarray:
    """Read a FITS table and check it has ``columns``; one-line errors on bad files."""
    path = os.fspath(path)
    try:
        with open_fits(path) as fits:
            if len(fits) <= 1 and ext == 1:
                raise InputFileError(path, "no table extension")
            data = fits[ext].read()
    except InputFileError:
        raise
    except (OSError, ValueError, KeyError, IndexError) as err:
        raise InputFileError(path, f"not a readable FITS table ({str(err).splitlines()[0]})") from None
    names = data.dtype.names or ()
    missing = [c for c in columns if c not in names]
    if missing:
        raise InputFileError(path, f"missing column(s) {', '.join(missing)}")
    return data
