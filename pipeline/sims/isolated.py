"""Isolated objects with known truth, for accuracy studies of the fitting engine.

One exponential galaxy or star per stamp, convolved with a Moffat, Kolmogorov or
Gaussian PSF and drawn by galsim (pixel included), with the PSF image as the MEDS
files of the simulated tiles carry it (:func:`conditions.psf_image`: an odd
stamp, unit sum, the light beyond the stamp dropped). Truth conventions: ``flux``
is the profile's total flux (galsim's, untruncated); ``T`` = Irr + Icc of the
unconvolved profile (an exponential's ``6 r_s^2`` times ``(1 + g^2) / (1 - g^2)``
for its shear g; 0 for a star); S/N is the optimal (matched-filter) one,
``sqrt(sum(image^2)) / sigma``, of the noiseless image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import galsim
import numpy as np

from ..gmix import DiagonalJacobian, Observation
from ..gmix.observation import psf_observation
from .conditions import ImageConditions, psf_image
from .profiles import round_profile, sheared_T

PSF_FAMILIES = ("moffat", "kolmogorov", "gaussian")
#: galsim accuracy: at the default (5e-3) FFT folding moves ~0.1% of a wing's
#: light at the stamp edges, the level these studies resolve
GSPARAMS = galsim.GSParams(folding_threshold=1e-4, maxk_threshold=1e-4)


@dataclass
class IsolatedObject:
    """A drawn object: ``obs`` (noisy image, weight, Jacobian centred on the
    object, ``obs.psf`` the PSF stamp's Observation), the noiseless image and
    the truth."""

    obs: Observation
    noiseless: np.ndarray
    flux: float
    T: float
    fwhm: float


def psf_profile(family: str, fwhm: float, g1: float = 0.0, g2: float = 0.0,
                beta: float = 2.5) -> galsim.GSObject:
    """A unit-flux PSF of ``family`` ("moffat" of ``beta``, "kolmogorov" or
    "gaussian") with FWHM ``fwhm`` arcsec, sheared by (g1, g2)."""
    if family == "moffat":
        prof = galsim.Moffat(beta=beta, fwhm=fwhm, gsparams=GSPARAMS)
    elif family == "kolmogorov":
        prof = galsim.Kolmogorov(fwhm=fwhm, gsparams=GSPARAMS)
    elif family == "gaussian":
        prof = galsim.Gaussian(fwhm=fwhm, gsparams=GSPARAMS)
    else:
        raise ValueError(f"unknown PSF family {family!r}; known: {', '.join(PSF_FAMILIES)}")
    return prof.shear(g1=g1, g2=g2)


def draw_isolated(psf: galsim.GSObject, fwhm: float, hlr: float | None, g: tuple[float, float],
                  flux: float, box: int, offset: tuple[float, float], s2n: float | None,
                  rng: np.random.Generator, scale: float = 0.263,
                  psf_size: int = 33) -> IsolatedObject:
    """An exponential of half-light radius ``hlr`` and shape ``g`` (a star when
    hlr is None) convolved with ``psf``, on a ``box`` x ``box`` stamp, shifted by
    ``offset`` (col, row) pixels from its centre, with Gaussian noise giving
    S/N ``s2n`` (None: noise-free, unit weight)."""
    if hlr is None:
        obj, T = psf.withFlux(flux), 0.0
    else:
        gal, T_round = round_profile("exp", hlr, 0.0, 1.0, 0.0)
        gal = gal.withGSParams(GSPARAMS).withFlux(flux).shear(g1=g[0], g2=g[1])
        obj, T = galsim.Convolve(gal, psf), sheared_T(T_round, g[0], g[1])
    image = obj.drawImage(nx=box, ny=box, scale=scale, offset=offset).array.astype("f8")
    if s2n is None:
        sigma, noisy = 1.0, image.copy()
    else:
        sigma = math.sqrt(float((image ** 2).sum())) / s2n
        noisy = image + rng.normal(0.0, sigma, image.shape)
    cond = ImageConditions(galsim.PixelScale(scale), psf, 0.0, fwhm)
    half = (psf_size - 1) / 2
    psf_obs = psf_observation(psf_image(cond, half, half, psf_size),
                              DiagonalJacobian(row=half, col=half, scale=scale))
    centre = ((box - 1) / 2 + offset[1], (box - 1) / 2 + offset[0])
    obs = Observation(noisy, weight=np.full(image.shape, sigma ** -2),
                      jacobian=DiagonalJacobian(row=centre[0], col=centre[1], scale=scale),
                      psf=psf_obs)
    return IsolatedObject(obs=obs, noiseless=image, flux=float(flux), T=float(T),
                          fwhm=float(fwhm))
