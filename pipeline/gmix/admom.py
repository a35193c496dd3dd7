"""Adaptive moments of an observation (single Gaussian weight iterated to the
object's own shape), as used for PSF sizes and robust starting guesses."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import admom_nb
from .admom_nb import (ADMOM_BIG, ADMOM_EDGE, ADMOM_FAINT, ADMOM_MAXIT,  # noqa: F401
                       ADMOM_SHIFT, ADMOM_SMALL)

ADMOM_BAD_INPUT = 64    # non-finite pixels, no positive weight or bad Jacobian

ADMOM_FLAG_NAMES = {
    ADMOM_EDGE: "ADMOM_EDGE", ADMOM_SHIFT: "ADMOM_SHIFT", ADMOM_FAINT: "ADMOM_FAINT",
    ADMOM_SMALL: "ADMOM_SMALL", ADMOM_MAXIT: "ADMOM_MAXIT", ADMOM_BIG: "ADMOM_BIG",
    ADMOM_BAD_INPUT: "ADMOM_BAD_INPUT",
}


def jacobian_array(jac: Any) -> np.ndarray:
    """[row0, col0, dvdrow, dvdcol, dudrow, dudcol] of a Jacobian object."""
    return np.array([jac.row0, jac.col0, jac.dvdrow, jac.dvdcol, jac.dudrow, jac.dudcol],
                    dtype="f8")


def obs_arrays(obs: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """(image, weight, jac array, problem) with non-finite pixels zero-weighted.

    ``problem`` is "" when the data are usable, else a short reason.
    """
    image = np.asarray(obs.image, dtype="f8")
    weight = getattr(obs, "weight", None)
    if weight is None:
        weight = np.ones_like(image)
    weight = np.asarray(weight, dtype="f8")
    jac = jacobian_array(obs.jacobian)
    problem = ""
    good = np.isfinite(image) & np.isfinite(weight) & (weight > 0)
    if not good.all():
        weight = np.where(good, weight, 0.0)
        image = np.where(good, image, 0.0)
    if not good.any():
        problem = "no pixel with positive weight and finite value"
    det = jac[2] * jac[5] - jac[3] * jac[4]
    if not np.all(np.isfinite(jac)) or not (abs(det) > 0.0):
        problem = "singular or non-finite Jacobian"
    return image, weight, jac, problem


def default_T_guess(image_shape: tuple[int, int], jac: np.ndarray) -> float:
    """A 2-pixel-sigma Gaussian: T = 2 * (2 pix)^2 in arcsec^2."""
    area = abs(jac[2] * jac[5] - jac[3] * jac[4])
    return 8.0 * area


class AdmomResult(dict):
    """Adaptive-moments result: flags, pars [v, u, g1, g2, T, flux], Irr/Irc/Icc,
    T, e1e2, e, g, flux, s2n, numiter; ``get_gmix()`` gives the weight Gaussian
    with the measured flux."""

    def get_gmix(self):
        if self["flags"] != 0:
            raise ValueError("admom failed; no mixture available")
        from .gmix import GMix
        v, u = self["pars"][0], self["pars"][1]
        full = np.array([self["flux"], v, u, self["Irr"], self["Irc"], self["Icc"]])
        return GMix(pars=full)


def _failed(flags: int, numiter: int = 0) -> AdmomResult:
    nan = np.nan
    return AdmomResult(flags=int(flags), numiter=numiter, pars=np.full(6, nan), T=nan,
                       Irr=nan, Irc=nan, Icc=nan, e1e2=np.full(2, nan),
                       e=np.full(2, nan), g=np.full(2, nan), flux=nan, s2n=nan,
                       wsum=0.0)


def admom_arrays(image: np.ndarray, weight: np.ndarray, jac: np.ndarray,
                 guess_T: float | None = None, guess_cen: tuple[float, float] = (0.0, 0.0),
                 maxiter: int = 200, etol: float = 1e-5, Ttol: float = 1e-3,
                 maxshift: float | None = None) -> AdmomResult:
    """Adaptive moments on plain arrays (see ``admom``)."""
    if guess_T is None or not (guess_T > 0):
        guess_T = default_T_guess(image.shape, jac)
    if maxshift is None:
        # generous: a quarter of the stamp, at least 3 sigma of the guess
        scale = math.sqrt(abs(jac[2] * jac[5] - jac[3] * jac[4]))
        maxshift = max(0.25 * min(image.shape) * scale, 3.0 * math.sqrt(guess_T / 2.0))
    wp = np.array([guess_cen[0], guess_cen[1], guess_T / 2.0, 0.0, guess_T / 2.0])
    sums = np.zeros(9)
    flags, numiter = admom_nb.admom_iterate(image, weight, jac, wp, int(maxiter), float(etol),
                                            float(Ttol), float(maxshift), sums)
    if flags != 0:
        return _failed(flags, numiter)
    irr, irc, icc = wp[2], wp[3], wp[4]
    T = irr + icc
    det = irr * icc - irc * irc
    e1 = (icc - irr) / T
    e2 = 2.0 * irc / T
    esq = e1 * e1 + e2 * e2
    if esq >= 1.0:
        return _failed(ADMOM_SMALL, numiter)
    if esq > 0:
        e = math.sqrt(esq)
        gfac = math.tanh(0.5 * math.atanh(e)) / e
    else:
        gfac = 0.0
    g1, g2 = e1 * gfac, e2 * gfac
    S, w2var, w2 = sums[0], sums[6], sums[7]
    # flux of a Gaussian of the weight's shape that best matches the image
    area = abs(jac[2] * jac[5] - jac[3] * jac[4])
    norm = area / (2.0 * math.pi * math.sqrt(det))
    flux = S / (w2 * norm)
    s2n = S / math.sqrt(w2var) if w2var > 0 else np.nan
    flags = 0 if s2n > 0 else ADMOM_FAINT
    return AdmomResult(flags=flags, numiter=int(numiter),
                       pars=np.array([wp[0], wp[1], g1, g2, T, flux]),
                       T=T, Irr=irr, Irc=irc, Icc=icc,
                       e1e2=np.array([e1, e2]), e=np.array([e1, e2]), g=np.array([g1, g2]),
                       flux=flux, s2n=s2n, wsum=float(sums[8]))


def admom(obs: Any, guess_T: float | None = None, maxiter: int = 200, etol: float = 1e-5,
          Ttol: float = 1e-3) -> AdmomResult:
    """Adaptive moments of one Observation (zero-weight and non-finite pixels skipped).

    guess_T: starting T in arcsec^2 (default: a 2-pixel-sigma Gaussian).
    Never raises for bad data: failures come back with non-zero ``flags``.
    """
    image, weight, jac, problem = obs_arrays(obs)
    if problem:
        return _failed(ADMOM_BAD_INPUT)
    return admom_arrays(image, weight, jac, guess_T=guess_T, maxiter=maxiter, etol=etol,
                        Ttol=Ttol)
