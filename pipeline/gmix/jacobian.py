"""Jacobian: the local affine map from pixel (row, col) to sky offsets (v, u) in arcsec.

``u = dudrow (row - row0) + dudcol (col - col0)`` and
``v = dvdrow (row - row0) + dvdcol (col - col0)`` (MEDS convention; u = -dRA cos dec,
v = dDec).  A singular or non-finite Jacobian can be constructed (so bad data do
not raise while building observations); the fitters detect it with ``is_valid``.
"""
import math

import numpy as np

from ..errors import PipelineError


class Jacobian:
    """Affine pixel -> (v, u) map centred at pixel (row, col)."""

    def __init__(self, row: float, col: float, dudrow: float, dudcol: float,
                 dvdrow: float, dvdcol: float):
        self._data = np.array([row, col, dvdrow, dvdcol, dudrow, dudcol], dtype='f8')

    # ---- constructors -------------------------------------------------------
    @classmethod
    def from_meds(cls, d: dict) -> "Jacobian":
        """From a MEDS jacobian dict (row0, col0, dudrow, dudcol, dvdrow, dvdcol)."""
        return cls(row=d["row0"], col=d["col0"], dudrow=d["dudrow"], dudcol=d["dudcol"],
                   dvdrow=d["dvdrow"], dvdcol=d["dvdcol"])

    @classmethod
    def from_meds_array(cls, jac: np.ndarray) -> "Jacobian":
        """From a MEDS-ordered row (row0, col0, dudrow, dudcol, dvdrow, dvdcol)."""
        new = cls.__new__(cls)
        new._data = np.asarray(jac, dtype="f8")[[0, 1, 4, 5, 2, 3]]
        return new

    @classmethod
    def from_galsim(cls, wcs_local, row: float, col: float) -> "Jacobian":
        """From a galsim local JacobianWCS (x = col, y = row; u = -x_world)."""
        # galsim: (u, v) = [[dudx, dudy], [dvdx, dvdy]] . (dx, dy) with x = col, y = row
        return cls(row=row, col=col, dudrow=wcs_local.dudy, dudcol=wcs_local.dudx,
                   dvdrow=wcs_local.dvdy, dvdcol=wcs_local.dvdx)

    def copy(self) -> "Jacobian":
        new = Jacobian.__new__(type(self))
        new._data = self._data.copy()
        return new

    # ---- accessors ------------------------------------------------------------
    @property
    def jac6(self) -> np.ndarray:
        """[row0, col0, dvdrow, dvdcol, dudrow, dudcol] as used by the kernels."""
        return self._data

    row0 = property(lambda self: float(self._data[0]))
    col0 = property(lambda self: float(self._data[1]))
    dvdrow = property(lambda self: float(self._data[2]))
    dvdcol = property(lambda self: float(self._data[3]))
    dudrow = property(lambda self: float(self._data[4]))
    dudcol = property(lambda self: float(self._data[5]))

    def get_cen(self):
        return float(self._data[0]), float(self._data[1])

    def set_cen(self, row: float, col: float) -> None:
        self._data[0] = row
        self._data[1] = col

    def get_det(self) -> float:
        """Determinant ``dudrow dvdcol - dudcol dvdrow``; its absolute value is the pixel area."""
        d = self._data
        return float(d[4] * d[3] - d[5] * d[2])

    def get_area(self) -> float:
        return abs(self.get_det())

    def get_scale(self) -> float:
        """Linear pixel scale ``sqrt(|det|)`` in arcsec."""
        return math.sqrt(self.get_area())

    scale = property(get_scale)
    area = property(get_area)

    def is_valid(self) -> bool:
        """Finite and non-singular."""
        return bool(np.all(np.isfinite(self._data)) and self.get_area() > 0.0)

    def get_vu(self, row, col):
        """(v, u) in arcsec of pixel position(s) (row, col)."""
        d = self._data
        dr = np.asarray(row, dtype='f8') - d[0]
        dc = np.asarray(col, dtype='f8') - d[1]
        return d[2] * dr + d[3] * dc, d[4] * dr + d[5] * dc

    def get_rowcol(self, v, u):
        """Pixel (row, col) of sky offset(s) (v, u); raises PipelineError if singular."""
        d = self._data
        det = d[2] * d[5] - d[3] * d[4]
        if not (np.isfinite(det) and det != 0.0):
            raise PipelineError("cannot invert a singular Jacobian")
        v = np.asarray(v, dtype='f8')
        u = np.asarray(u, dtype='f8')
        dr = (d[5] * v - d[3] * u) / det
        dc = (-d[4] * v + d[2] * u) / det
        return d[0] + dr, d[1] + dc

    def __repr__(self) -> str:
        r0, c0, vr, vc, ur, uc = self._data
        return (f"Jacobian(row={r0:g}, col={c0:g}, dudrow={ur:g}, dudcol={uc:g}, "
                f"dvdrow={vr:g}, dvdcol={vc:g})")


class DiagonalJacobian(Jacobian):
    """Square pixels of side ``scale``: u = scale (col - col0), v = scale (row - row0)."""

    def __init__(self, row: float = 0.0, col: float = 0.0, scale: float = 1.0):
        super().__init__(row=row, col=col, dudrow=0.0, dudcol=scale, dvdrow=scale,
                         dvdcol=0.0)


UnitJacobian = DiagonalJacobian
