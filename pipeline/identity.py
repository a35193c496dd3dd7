"""The identity of a tile's object catalogue, carried by every file derived from it.

A neighbour, FoF, MOF or object-flags file made for one tile must never be used
with another tile of the same size: the objects' ``number`` values (1..N) would
match and the fits would silently be wrong. Every such file therefore records,
in its table header, a digest of the catalogue it was built from: the
``id``, ``number``, ``ra`` and ``dec`` columns of the MEDS ``object_data`` table
(band files of one tile share them). Readers compare it with the digest of the
MEDS files at hand.

Band files of one tile must agree on ``id`` and ``number`` exactly and on
positions to within :data:`POSITION_TOLERANCE_ARCSEC` (bands of different
tiles may share ids, never positions).
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .errors import InputFileError

logger = logging.getLogger(__name__)

#: header keyword holding the catalogue digest
CATALOG_KEY = "MMXCAT"
#: header keyword holding the digest of the config a file was built with
CONFIG_KEY = "MMXCONF"
POSITION_TOLERANCE_ARCSEC = 1e-3


@dataclass(frozen=True)
class Catalog:
    """The identifying columns of one MEDS file's ``object_data``."""

    path: str
    id: np.ndarray
    number: np.ndarray
    ra: np.ndarray
    dec: np.ndarray

    @property
    def size(self) -> int:
        return int(self.id.size)

    def digest(self) -> str:
        """sha256 of the columns in a fixed byte order and dtype."""
        h = hashlib.sha256(b"megamixer-catalog-v1")
        for arr, dtype in ((self.id, "<i8"), (self.number, "<i8"), (self.ra, "<f8"),
                           (self.dec, "<f8")):
            h.update(np.ascontiguousarray(arr, dtype=dtype).tobytes())
        return h.hexdigest()


def read_catalog(path: str | os.PathLike) -> Catalog:
    """Read ``id``, ``number`` (index+1 when absent), ``ra``, ``dec`` of a MEDS file."""
    from .fitsfile import open_fits

    path = os.fspath(path)
    if not os.path.lexists(path):
        raise InputFileError(path, "MEDS file not found")
    with open_fits(path) as fits:
        if "object_data" not in fits:
            raise InputFileError(path, "not a MEDS file: no 'object_data' HDU")
        hdu = fits["object_data"]
        names = [c.lower() for c in hdu.get_colnames()]
        missing = [c for c in ("id", "ra", "dec") if c not in names]
        if missing:
            raise InputFileError(path, f"object_data lacks column(s) {', '.join(missing)}")
        cols = ["id", "ra", "dec"] + (["number"] if "number" in names else [])
        data = hdu.read(columns=cols, lower=True)
    n = len(data)
    number = (np.asarray(data["number"], dtype=np.int64) if "number" in data.dtype.names
              else np.arange(1, n + 1, dtype=np.int64))
    return Catalog(path, np.asarray(data["id"], dtype=np.int64), number,
                   np.asarray(data["ra"], dtype=np.float64),
                   np.asarray(data["dec"], dtype=np.float64))


def check_same_objects(ref: Catalog, other: Catalog) -> None:
    """One-line error unless ``other`` lists the same objects as ``ref``."""
    if other.size != ref.size:
        raise InputFileError(other.path, f"has {other.size} objects but {ref.path} has "
                                         f"{ref.size}: band files must match")
    if not np.array_equal(other.id, ref.id):
        raise InputFileError(other.path, f"object ids differ from {ref.path}: band files "
                                         f"must list the same objects in the same order")
    if not np.array_equal(other.number, ref.number):
        raise InputFileError(other.path, f"object numbers differ from {ref.path}")
    sep = _separation_arcsec(ref.ra, ref.dec, other.ra, other.dec)
    bad = np.flatnonzero(~(sep <= POSITION_TOLERANCE_ARCSEC))
    if bad.size:
        i = int(bad[0])
        raise InputFileError(other.path, f"positions differ from {ref.path} for {bad.size} "
                                         f"object(s) (id {int(ref.id[i])}: {sep[i]:.3g} "
                                         f"arcsec apart): bands of different tiles?")


def _separation_arcsec(ra1, dec1, ra2, dec2) -> np.ndarray:
    r1, d1, r2, d2 = (np.radians(np.asarray(a, dtype=np.float64)) for a in (ra1, dec1, ra2, dec2))
    # haversine: accurate for the tiny separations that matter here
    a = (np.sin((d2 - d1) / 2) ** 2
         + np.cos(d1) * np.cos(d2) * np.sin((r2 - r1) / 2) ** 2)
    return np.degrees(2 * np.arcsin(np.sqrt(np.clip(a, 0, 1)))) * 3600.0


def tile_catalog(paths: Sequence[str | os.PathLike]) -> Catalog:
    """The catalogue of a tile's band files (checked to agree); band 0's columns."""
    if not paths:
        raise InputFileError("<command line>", "no MEDS files given")
    cats = [read_catalog(p) for p in paths]
    for other in cats[1:]:
        check_same_objects(cats[0], other)
    return cats[0]


def check_derived_file(path: str | os.PathLike, header, catalog: Catalog,
                       what: str) -> bool:
    """Compare the catalogue digest recorded in ``header`` with ``catalog``'s.

    Returns True when the file carries a digest (and it matches); False for a
    file without one (e.g. written by ngmixer), which callers check by content.
    A mismatch is a one-line error.
    """
    recorded = header.get(CATALOG_KEY) if header is not None else None
    if recorded is None:
        return False
    if str(recorded).strip() != catalog.digest():
        raise InputFileError(path, f"{what} was built for another object catalogue than "
                                   f"{catalog.path} (catalogue digest differs): wrong tile?")
    return True


def catalog_header(catalog: Catalog, config_digest: str | None = None) -> list[dict]:
    """Header records identifying what a derived file was built from."""
    records = [{"name": CATALOG_KEY, "value": catalog.digest(),
                "comment": "sha256 of the MEDS id/number/ra/dec columns"}]
    if config_digest:
        records.append({"name": CONFIG_KEY, "value": config_digest,
                        "comment": "sha256 of the config used"})
    return records


def text_digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
