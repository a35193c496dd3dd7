"""Gaussian mixtures (ngmix conventions): row = v, col = u (arcsec through a
Jacobian), ``p`` = flux of the component, T = Irr + Icc."""
from typing import Optional, Sequence

import numpy as np

from . import gmix_nb
from . import render_nb
from .models import ModelSpec, get_model

GAUSS_DTYPE = np.dtype([
    ('p', 'f8'), ('row', 'f8'), ('col', 'f8'),
    ('irr', 'f8'), ('irc', 'f8'), ('icc', 'f8'),
    ('det', 'f8'),
    # cached inverse covariance in (v, u) = (row, col) order
    ('ivv', 'f8'), ('ivu', 'f8'), ('iuu', 'f8'),
    ('norm', 'f8'), ('pnorm', 'f8'),
])


class GMixRangeError(ValueError):
    """Parameters outside the domain of the model (``|g| >= 1``, singular covariance)."""


class GMix:
    """A Gaussian mixture held in a structured array ``data`` (GAUSS_DTYPE)."""

    def __init__(self, ngauss: Optional[int] = None, pars: Optional[Sequence] = None):
        if pars is not None:
            pars = np.asarray(pars, dtype='f8').ravel()
            if pars.size % 6 != 0:
                raise ValueError(f"full pars must have 6*n entries, got {pars.size}")
            ngauss = pars.size // 6
        if ngauss is None or ngauss < 1:
            raise ValueError("a GMix needs at least one Gaussian")
        self.data = np.zeros(ngauss, dtype=GAUSS_DTYPE)
        if pars is not None:
            self.set_full_pars(pars)

    # ---- basic -----------------------------------------------------------------
    @property
    def size(self) -> int:
        return self.data.size

    def __len__(self) -> int:
        return self.data.size

    def copy(self) -> "GMix":
        new = GMix.__new__(GMix)
        new.data = self.data.copy()
        return new

    def set_norms(self) -> bool:
        """Recompute cached fields; False if a component is not positive definite."""
        return gmix_nb.set_norms(self.data) == 0

    def is_valid(self) -> bool:
        d = self.data
        fields = ('p', 'row', 'col', 'irr', 'irc', 'icc')
        finite = all(np.all(np.isfinite(d[f])) for f in fields)
        return bool(finite and np.all(d['det'] > 0) and np.all(d['irr'] > 0))

    def get_full_pars(self) -> np.ndarray:
        """Flat [p, row, col, irr, irc, icc] * n."""
        d = self.data
        return np.column_stack([d['p'], d['row'], d['col'], d['irr'], d['irc'],
                                d['icc']]).ravel()

    def set_full_pars(self, pars: Sequence) -> None:
        pars = np.asarray(pars, dtype='f8').ravel()
        if pars.size != 6 * self.size:
            raise ValueError(f"expected {6 * self.size} pars, got {pars.size}")
        gmix_nb.fill_full(self.data, pars)

    # ---- moments -----------------------------------------------------------------
    def get_cen(self):
        r, c, _ = gmix_nb.get_cen_flux(self.data)
        return r, c

    def set_cen(self, row: float, col: float) -> None:
        r0, c0 = self.get_cen()
        self.data['row'] += row - r0
        self.data['col'] += col - c0

    def get_flux(self) -> float:
        return float(self.data['p'].sum())

    get_psum = get_flux

    def set_flux(self, flux: float) -> None:
        psum = self.get_flux()
        if psum == 0.0:
            raise GMixRangeError("cannot rescale a mixture of zero flux")
        self.data['p'] *= flux / psum
        gmix_nb.set_norms(self.data)

    set_psum = set_flux

    def get_moments(self):
        """(irr, irc, icc) of the whole mixture about its centre."""
        irr, irc, icc, _ = gmix_nb.get_moments(self.data)
        return irr, irc, icc

    def get_T(self) -> float:
        irr, _, icc = self.get_moments()
        return irr + icc

    def get_e1e2T(self):
        """Distortion (e1, e2) = ((Icc - Irr)/T, 2 Irc / T) and T."""
        irr, irc, icc = self.get_moments()
        T = irr + icc
        if T == 0.0:
            return 0.0, 0.0, 0.0
        return (icc - irr) / T, 2.0 * irc / T, T

    def get_g1g2T(self):
        """Reduced-shear ellipticity (g1, g2) and T."""
        e1, e2, T = self.get_e1e2T()
        g1, g2 = gmix_nb.e1e2_to_g1g2(e1, e2)
        return g1, g2, T

    # ---- operations --------------------------------------------------------------
    def convolve(self, psf: "GMix") -> "GMix":
        """Analytic convolution with a PSF mixture (PSF normalised to unit flux, its
        centroid removed so the object's centre is kept)."""
        out = GMix(self.size * psf.size)
        if gmix_nb.convolve_fill(out.data, self.data, psf.data) != 0:
            if psf.get_flux() <= 0:
                raise GMixRangeError("PSF mixture has non-positive flux")
            raise GMixRangeError("convolved mixture is not positive definite")
        return out

    def make_image(self, dims, jacobian=None, nsub: int = 1, fast: bool = True) -> np.ndarray:
        """Render into an array of shape ``dims`` (counts per pixel; sums to the flux
        when the stamp holds the object).  Default Jacobian: unit pixels, centre
        (0, 0), i.e. row/col of the mixture are pixel coordinates."""
        from .jacobian import DiagonalJacobian
        jac = jacobian if jacobian is not None else DiagonalJacobian(0.0, 0.0, 1.0)
        image = np.zeros(tuple(int(d) for d in dims), dtype='f8')
        if fast:
            render_nb.render_gmix(self.data, jac.jac6, image, int(nsub))
        else:
            render_nb.render_gmix_exact(self.data, jac.jac6, image)
        return image

    def get_loglike(self, obs) -> float:
        """log-likelihood -chi2/2 of an Observation (its weight map) for this mixture."""
        model = self.make_image(obs.image.shape, obs.jacobian)
        return float(render_nb.chi2_stats(model, obs.image, obs.weight)[1])

    def __repr__(self) -> str:
        rows = [f"  p={g['p']:.6g} row={g['row']:.6g} col={g['col']:.6g} "
                f"irr={g['irr']:.6g} irc={g['irc']:.6g} icc={g['icc']:.6g}"
                for g in self.data]
        return "GMix(\n" + "\n".join(rows) + "\n)"


def GMixModel(pars: Sequence, model, band: int = 0, fracdev=None, TdByTe=None) -> GMix:
    """Mixture of a named model (or ModelSpec) from its parameters.

    For multi-band parameter vectors the flux of ``band`` is used."""
    spec = model if isinstance(model, ModelSpec) else get_model(model, fracdev, TdByTe)
    pars = np.asarray(pars, dtype='f8').ravel()
    gm = GMix(spec.ngauss)
    if spec.kind == "coellip":
        if pars.size != spec.npars(1):
            raise ValueError(f"{spec.name} needs {spec.npars(1)} pars, got {pars.size}")
        status = gmix_nb.fill_coellip(gm.data, pars)
    else:
        if pars.size < spec.nshape + 1 + band:
            raise ValueError(f"{spec.name} needs at least {spec.nshape + 1 + band} pars, "
                             f"got {pars.size}")
        status = gmix_nb.fill_shared(gm.data, pars, spec.pvals, spec.fvals,
                                     spec.nshape + band, spec.fracdev_index, spec.ndisk)
    if status != 0:
        raise GMixRangeError(f"shape out of range: g = ({pars[2]:g}, {pars[3]:g})")
    return gm


make_gmix = GMixModel
