"""WCS adapters for the MEDS writer.

The writer needs three things from a source image's WCS (the ``MedsWCS``
protocol): where an object lands, the local Jacobian there, and a JSON
description for ``image_info['wcs']``. Pixel coordinates are 0-offset
``(row, col)``; the Jacobian is in arcsec/pixel with the MEDS sign convention
``u = -dRA*cos(dec)``, ``v = dDec``.
"""

from __future__ import annotations

import json
import math
from typing import Any, Protocol, Sequence

import numpy as np

ARCSEC_PER_DEG = 3600.0


class MedsWCS(Protocol):
    """What ``write_meds`` needs from a WCS (vectorised over positions)."""

    def sky_to_image(self, ra: np.ndarray, dec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Degrees -> 0-offset (row, col)."""

    def jacobian(self, row: np.ndarray, col: np.ndarray) -> tuple[np.ndarray, ...]:
        """0-offset (row, col) -> (dudrow, dudcol, dvdrow, dvdcol) in arcsec/pixel."""

    def to_json(self) -> str:
        """Lower-case header-like description, stored in ``image_info['wcs']``."""


def _plain(value: Any) -> Any:
    """numpy scalars -> Python scalars so ``json`` can write them."""
    if isinstance(value, np.generic):
        return value.item()
    return value


def header_json(items: Sequence[tuple[str, Any]]) -> str:
    """Header cards -> JSON with lower-case keys, in the given (stable) order."""
    return json.dumps({str(k).lower(): _plain(v) for k, v in items})


class AffineWCS:
    """A plain affine mapping between pixels and the sky, for tests and toy data.

    ``(u, v) = M . (row - row0, col - col0)`` with ``M = [[dudrow, dudcol],
    [dvdrow, dvdcol]]`` in arcsec/pixel, and ``ra = ra0 - u / (3600 cos dec0)``,
    ``dec = dec0 + v / 3600`` (degrees). The Jacobian is ``M`` everywhere.
    """

    def __init__(self, ra0: float, dec0: float, row0: float = 0.0, col0: float = 0.0,
                 dudrow: float = 0.0, dudcol: float = 0.263,
                 dvdrow: float = 0.263, dvdcol: float = 0.0) -> None:
        self.ra0, self.dec0 = float(ra0), float(dec0)
        self.row0, self.col0 = float(row0), float(col0)
        self.matrix = np.array([[dudrow, dudcol], [dvdrow, dvdcol]], dtype="f8")
        if abs(np.linalg.det(self.matrix)) == 0.0:
            raise ValueError("AffineWCS: singular Jacobian matrix")
        self._inverse = np.linalg.inv(self.matrix)
        self._cosdec0 = math.cos(math.radians(self.dec0))

    def image_to_sky(self, row: np.ndarray, col: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        drow = np.asarray(row, dtype="f8") - self.row0
        dcol = np.asarray(col, dtype="f8") - self.col0
        m = self.matrix
        u = m[0, 0] * drow + m[0, 1] * dcol
        v = m[1, 0] * drow + m[1, 1] * dcol
        ra = self.ra0 - u / (ARCSEC_PER_DEG * self._cosdec0)
        dec = self.dec0 + v / ARCSEC_PER_DEG
        return ra, dec

    def sky_to_image(self, ra: np.ndarray, dec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # wrap RA differences into [-180, 180) so fields across RA=0 work
        dra = (np.asarray(ra, dtype="f8") - self.ra0 + 180.0) % 360.0 - 180.0
        u = -dra * ARCSEC_PER_DEG * self._cosdec0
        v = (np.asarray(dec, dtype="f8") - self.dec0) * ARCSEC_PER_DEG
        inv = self._inverse
        row = self.row0 + inv[0, 0] * u + inv[0, 1] * v
        col = self.col0 + inv[1, 0] * u + inv[1, 1] * v
        return row, col

    def jacobian(self, row: np.ndarray, col: np.ndarray) -> tuple[np.ndarray, ...]:
        shape = np.broadcast(np.asarray(row), np.asarray(col)).shape
        m = self.matrix
        return tuple(np.full(shape, m[i, j]) for i, j in ((0, 0), (0, 1), (1, 0), (1, 1)))

    def to_json(self) -> str:
        # Affine parameters, plus the TAN header that matches it at the reference
        # point (FITS: 1-offset x=col+1, y=row+1; CD in degrees of RA/Dec).
        m = self.matrix / ARCSEC_PER_DEG
        return header_json([
            ("wcs_type", "affine"),
            ("ra0", self.ra0), ("dec0", self.dec0),
            ("row0", self.row0), ("col0", self.col0),
            ("dudrow", float(self.matrix[0, 0])), ("dudcol", float(self.matrix[0, 1])),
            ("dvdrow", float(self.matrix[1, 0])), ("dvdcol", float(self.matrix[1, 1])),
            ("ctype1", "RA---TAN"), ("ctype2", "DEC--TAN"),
            ("crval1", self.ra0), ("crval2", self.dec0),
            ("crpix1", self.col0 + 1.0), ("crpix2", self.row0 + 1.0),
            ("cd1_1", -m[0, 1]), ("cd1_2", -m[0, 0]),
            ("cd2_1", m[1, 1]), ("cd2_2", m[1, 0]),
        ])


class GalsimWCS:
    """Adapt any galsim WCS to the ``MedsWCS`` protocol.

    Pixel convention: the numpy array's ``[0, 0]`` pixel is galsim position
    ``(xmin, ymin)`` (default ``(1, 1)``, galsim's default image origin), so
    ``x = col + xmin`` and ``y = row + ymin``.

    Celestial WCS: sky positions go through galsim's own transforms and the
    Jacobian is galsim's local one (galsim already uses u = -dRA cos(dec)).

    Euclidean WCS: the world coordinates ``(u, v)`` are taken to be arcsec on
    the tangent plane at ``world_origin`` (default RA=0, Dec=0; a
    ``galsim.CelestialCoord``), i.e. RA/Dec <-> (u, v) by galsim's gnomonic
    projection, and the MEDS Jacobian is galsim's local Jacobian in (u, v).
    """

    def __init__(self, galsim_wcs: Any, xmin: int = 1, ymin: int = 1,
                 world_origin: Any = None, shape: tuple[int, int] | None = None) -> None:
        import galsim

        self.wcs = galsim_wcs
        self.xmin, self.ymin = int(xmin), int(ymin)
        self.shape = shape
        self._celestial = bool(galsim_wcs.isCelestial())
        if not self._celestial and world_origin is None:
            world_origin = galsim.CelestialCoord(0.0 * galsim.degrees, 0.0 * galsim.degrees)
        self.world_origin = world_origin

    def _xy(self, row: np.ndarray, col: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(col, dtype="f8") + self.xmin, np.asarray(row, dtype="f8") + self.ymin

    def sky_to_image(self, ra: np.ndarray, dec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ra = np.atleast_1d(np.asarray(ra, dtype="f8"))
        dec = np.atleast_1d(np.asarray(dec, dtype="f8"))
        if self._celestial:
            x, y = self.wcs.radecToxy(ra, dec, units="degrees")
        else:
            u, v = self.world_origin.project_rad(np.radians(ra), np.radians(dec))
            rad_to_arcsec = ARCSEC_PER_DEG * 180.0 / math.pi
            x, y = self.wcs.toImage(u * rad_to_arcsec, v * rad_to_arcsec)
        x = np.atleast_1d(np.asarray(x, dtype="f8"))
        y = np.atleast_1d(np.asarray(y, dtype="f8"))
        return y - self.ymin, x - self.xmin

    def jacobian(self, row: np.ndarray, col: np.ndarray) -> tuple[np.ndarray, ...]:
        import galsim

        x, y = self._xy(np.atleast_1d(row), np.atleast_1d(col))
        out = np.empty((4, x.size))
        # galsim's local Jacobian is scalar-only; this loops per object, not per pixel
        for i, (xi, yi) in enumerate(zip(x.ravel(), y.ravel())):
            jac = self.wcs.jacobian(image_pos=galsim.PositionD(xi, yi))
            # x is col and y is row: d/drow = d/dy, d/dcol = d/dx
            out[:, i] = (jac.dudy, jac.dudx, jac.dvdy, jac.dvdx)
        return tuple(out[k].reshape(x.shape) for k in range(4))

    def to_json(self) -> str:
        import galsim

        if self.shape is not None:
            nrow, ncol = self.shape
        else:
            nrow = ncol = 1
        bounds = galsim.BoundsI(self.xmin, self.xmin + ncol - 1, self.ymin, self.ymin + nrow - 1)
        header = galsim.FitsHeader()
        try:
            self.wcs.writeToFitsHeader(header, bounds)
        except Exception:  # noqa: BLE001 - some exotic galsim WCS cannot be written
            header["GS_WCS"] = repr(self.wcs)
        items = list(header.items())
        if self.world_origin is not None and not self._celestial:
            items += [("world_ra0", self.world_origin.ra.deg),
                      ("world_dec0", self.world_origin.dec.deg)]
        return header_json(items)
