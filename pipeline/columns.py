"""Output columns declared with their type, shape, unit and meaning.

Every output table is a list of :class:`Column`; its numpy dtype is derived
from that list, so a column cannot exist without its description. Names,
types and shapes follow ngmixer's outputs wherever ngmixer wrote the same
quantity (a reader written for ngmixer finds its columns unchanged); the
project's own columns come in addition.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

# units, as the column reference prints them
NONE = ""
ARCSEC = "arcsec"
ARCSEC2 = "arcsec^2"
DEG = "deg"
PIXEL = "pixel"
SECOND = "s"
MAG = "mag"
FLUX = "image counts (zero point magzp_ref)"
FLUX2 = "(image counts)^2"
INVVAR = "1/(image counts)^2"
PARS = "[v, u, g1, g2, T, flux per band]: arcsec, arcsec, -, -, arcsec^2, image counts"
PARS_BDF = "[v, u, g1, g2, T, fracdev, flux per band]: arcsec, arcsec, -, -, arcsec^2, -, " \
           "image counts"
PARS_COV = "covariance of the pars (products of their units)"
BITS = "bit mask"
PSF_FULL = "[p, row, col, irr, irc, icc] per Gaussian: image counts, arcsec, arcsec, " \
           "arcsec^2, arcsec^2, arcsec^2"


def pars_unit(model: str) -> str:
    """Units of a model's parameter vector (bdf has fracdev after T)."""
    return PARS_BDF if model == "bdf" else PARS


@dataclass(frozen=True)
class Column:
    """One output column: numpy type code, element shape, unit and meaning."""

    name: str
    fmt: str
    shape: tuple[int, ...] = ()
    unit: str = NONE
    doc: str = ""

    def entry(self) -> tuple:
        """The numpy dtype entry of the column."""
        return (self.name, self.fmt, self.shape) if self.shape else (self.name, self.fmt)


def vec(n: int) -> tuple[int, ...]:
    """Shape of a per-band (or per-parameter) vector column."""
    return (int(n),)


def mat(n: int) -> tuple[int, ...]:
    """Shape of an n x n covariance column."""
    return (int(n), int(n))


def dtype_of(columns: Iterable[Column]) -> np.dtype:
    """The numpy dtype of a list of columns (names must be unique)."""
    cols = list(columns)
    seen: set[str] = set()
    dup = [c.name for c in cols if c.name in seen or seen.add(c.name)]
    if dup:
        raise ValueError(f"duplicate output column(s): {', '.join(dup)}")
    return np.dtype([c.entry() for c in cols])


def undocumented(columns: Iterable[Column]) -> list[str]:
    """Names of columns without a meaning (the docs need one for every column)."""
    return [c.name for c in columns if not c.doc.strip()]
