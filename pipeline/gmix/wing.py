"""PSF light beyond the stamp, for the wing PSF models (``coellipN+wing``, ``emN+wing``).

A PSF stamp normalised to unit sum (as MEDS files carry it) holds only the light
inside it: 0.3-1% of a Moffat (beta 2.5) or Kolmogorov PSF of FWHM 0.8-1.2 arcsec
falls outside a 33-pixel stamp of 0.263 arcsec. Galaxy models are convolved with
the fitted mixture normalised to unit flux, so light the mixture lacks is missing
from the fluxes, and a mixture fitted to the stamp alone lacks at least that.

PSF wings fall as a power law, ``I ~ rho^-n`` (Moffat: n = 2 beta; Kolmogorov:
11/3 far out). The pixels of an annulus at the stamp's edge, ``a <= rho < b``
(``rho`` the elliptical radius of the PSF's adaptive moments, scaled to keep
areas; ``b`` the largest ellipse inside the stamp's pixel centres, ``a`` a fixed
fraction of it), are fitted with ``A rho^-n``, and the law is integrated over
everything outside the stamp's pixel area (exactly, along rays from the centre):
that is the estimate of the light beyond the stamp.

That light goes to a far Gaussian, co-elliptical with the adaptive moments and of
width b along rho, whose flux puts the estimate outside the stamp; its share inside
the stamp is subtracted before the mixture is fitted, so the mixture and the far
Gaussian together hold the stamp's light plus the light beyond it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .gmix import GMix
from .render_nb import render_gmix
from .wing_nb import annulus_power_law, ray_exits

#: the annulus fitted with the power law: a = ANNULUS_INNER * b
ANNULUS_INNER = 0.8
#: the range of n searched (the light beyond a rho^-n wing diverges as n -> 2)
MIN_SLOPE, MAX_SLOPE = 2.5, 20.0
#: below this S/N of the annulus' light (noise, or no power law) nothing is
#: extrapolated: with noise the fitted slope scatters by ~15 / S/N and the
#: estimate by ~10 / S/N of itself (measured on Moffat stamps), so at 100 the
#: estimate of a 1% wing is good to 0.1% of the flux; noiseless stamps reach
#: S/N of thousands
MIN_ANNULUS_S2N = 100.0
#: at most this fraction of the stamp's light is put beyond it
MAX_WING_FRAC = 0.05
#: the annulus needs this many usable pixels and b this many pixels for an estimate
MIN_ANNULUS_PIXELS = 20
MIN_RADIUS_PIXELS = 4.0
#: rays from the centre along which the law is integrated beyond the stamp
N_RAYS = 720
#: flux weights: pixels brighter than this fraction of the peak have variance
#: growing as their value
FLUX_WEIGHT_FLOOR = 1.0e-3


@dataclass(frozen=True)
class Wing:
    """The far Gaussian of a wing model: ``flux`` is the estimated light beyond
    the stamp (image units), ``slope`` the fitted n (nan when the annulus gave
    no usable power law and ``flux`` is 0), ``radius`` b (arcsec), ``pars`` its
    full parameters [p, v, u, irr, irc, icc] and ``inside`` its image on the stamp."""

    flux: float
    slope: float
    radius: float
    pars: np.ndarray
    inside: np.ndarray


def mixture(rows: np.ndarray) -> GMix:
    """The GMix of full-parameter rows (n, 6) [p, v, u, irr, irc, icc], set
    through its record fields (so no kernel is compiled for it)."""
    gm = GMix(len(rows))
    for name, values in zip(("p", "row", "col", "irr", "irc", "icc"), np.asarray(rows).T):
        gm.data[name] = values
    gm.set_norms()
    return gm


def _rho_frame(irr: float, irc: float, icc: float) -> np.ndarray:
    """The 2x2 matrix N taking (v, u) to coordinates where the shape of covariance
    (irr, irc, icc) is round and areas are kept: |N x| = rho, det N = 1."""
    s = math.sqrt(irr * icc - irc * irc)
    ivv, ivu, iuu = icc / s, -irc / s, irr / s      # the inverse of the shape, det 1
    l11 = math.sqrt(ivv)
    l21 = ivu / l11
    return np.array([[l11, l21], [0.0, math.sqrt(max(iuu - l21 * l21, 0.0))]])


def _stamp_corners(shape: tuple[int, int], jac: np.ndarray, centre: tuple[float, float],
                   frame: np.ndarray, inset: float) -> np.ndarray:
    """(2, 4) corners, in the round frame about ``centre``, of the stamp's
    parallelogram from pixel position -0.5 + inset to n - 0.5 - inset (inset 0.5:
    the outer pixel centres; 0: the edges of the pixel area)."""
    nrow, ncol = shape
    lo = -0.5 + inset
    rows = np.array([lo, lo, nrow - 1 - lo, nrow - 1 - lo])
    cols = np.array([lo, ncol - 1 - lo, ncol - 1 - lo, lo])
    v = jac[2] * (rows - jac[0]) + jac[3] * (cols - jac[1]) - centre[0]
    u = jac[4] * (rows - jac[0]) + jac[5] * (cols - jac[1]) - centre[1]
    return np.ascontiguousarray(frame @ np.vstack([v, u]))


def estimate_wing(image: np.ndarray, weight: np.ndarray, jac: np.ndarray,
                  centre: tuple[float, float], cov: tuple[float, float, float]) -> Wing:
    """The far Gaussian of a PSF stamp (see the module doc); ``centre`` (v, u) and
    ``cov`` (irr, irc, icc) from the stamp's adaptive moments.  A stamp whose
    annulus gives no usable power law gets a far Gaussian of flux 0."""
    v0, u0 = float(centre[0]), float(centre[1])
    frame = _rho_frame(*cov)
    area = abs(jac[2] * jac[5] - jac[3] * jac[4])
    flux, slope = 0.0, math.nan
    b, _ = ray_exits(_stamp_corners(image.shape, jac, (v0, u0), frame, 0.5), N_RAYS, 0.0)
    if b >= MIN_RADIUS_PIXELS * math.sqrt(area):
        q = frame.T @ frame                       # rho^2 = x^T q x
        shape = np.array([v0, u0, q[0, 0], q[0, 1], q[1, 1]])
        amp, n, npix, s2n = annulus_power_law(image, weight, jac, shape, ANNULUS_INNER * b, b,
                                              MIN_SLOPE, MAX_SLOPE)
        if npix >= MIN_ANNULUS_PIXELS and s2n >= MIN_ANNULUS_S2N and amp > 0.0:
            slope = n
            corners = _stamp_corners(image.shape, jac, (v0, u0), frame, 0.0)
            _, mean_d = ray_exits(corners, N_RAYS, 2.0 - slope)
            # integral of A rho^-n rho drho dtheta from each exit to infinity
            beyond = amp / area * mean_d * 2.0 * math.pi / (slope - 2.0)
            total = float(image[weight > 0].sum())
            flux = min(max(float(beyond), 0.0), MAX_WING_FRAC * max(total, 0.0))
    # width b along rho: covariance b^2 times the shape scaled to determinant 1
    (l11, l21), (_, l22) = frame
    finv = np.array([[1.0 / l11, -l21 / (l11 * l22)], [0.0, 1.0 / l22]])
    cov_far = (b * b) * (finv @ finv.T)
    far = mixture(np.array([[1.0, v0, u0, cov_far[0, 0], cov_far[0, 1], cov_far[1, 1]]]))
    inside = np.zeros(image.shape)
    render_gmix(far.data, jac, inside, 1)
    p = flux / max(1.0 - float(inside.sum()), 1e-3)
    inside *= p
    return Wing(flux=flux, slope=slope, radius=b,
                pars=np.array([p, v0, u0, cov_far[0, 0], cov_far[0, 1], cov_far[1, 1]]),
                inside=inside)


def flux_weight(image: np.ndarray, weight: np.ndarray,
                floor: float = FLUX_WEIGHT_FLOOR) -> np.ndarray:
    """``weight`` times ``min(1, floor * peak / |image|)``: above ``floor`` of the
    peak a pixel's variance grows as its value (as photon noise would), so a
    least-squares fit matches the light in the wings and not only the core's
    brightest pixels."""
    good = weight > 0
    peak = float(np.abs(image[good]).max()) if good.any() else 0.0
    if not peak > 0.0:
        return weight
    level = floor * peak
    return weight * (level / np.maximum(np.abs(image), level))
