"""Expectation-maximisation fit of N Gaussians to an image (typically a PSF)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import em_nb
from .admom import admom_arrays, obs_arrays
from .em_nb import EM_MAXIT, EM_NO_DATA, EM_RANGE  # noqa: F401

EM_BAD_INPUT = 8
EM_BAD_GUESS = 16

# relative sizes of the starting components around the admom size: a compact
# core and broader wings are what PSFs need
_T_FACTORS = (0.5, 1.0, 2.0, 0.25, 4.0, 8.0)


class EMResult(dict):
    """EM result: flags, numiter, fdiff, sky, pars ((ngauss, 6) array of
    [p, v, u, irr, irc, icc]), T, g, flux; ``get_gmix()`` builds the GMix."""

    def get_gmix(self):
        if self["flags"] != 0:
            raise ValueError("EM failed; no mixture available")
        from .gmix import GMix
        return GMix(pars=np.asarray(self["pars"]).ravel())


def _failed(flags: int, ngauss: int, numiter: int = 0) -> EMResult:
    nan = np.nan
    return EMResult(flags=int(flags), numiter=numiter, fdiff=nan, sky=nan,
                    pars=np.full((ngauss, 6), nan), T=nan, g=np.full(2, nan), flux=nan)


def em_guess(ngauss: int, T: float, e1: float, e2: float, flux: float, cen: tuple[float, float],
             rng: np.random.Generator | None, scale: float) -> np.ndarray:
    """Start: components sharing the admom shape with sizes spread around T."""
    pars = np.zeros((ngauss, 6))
    for k in range(ngauss):
        fT = _T_FACTORS[k % len(_T_FACTORS)]
        jT = 1.0
        jc = (0.0, 0.0)
        if rng is not None:
            jT = 1.0 + 0.1 * rng.uniform(-1, 1)
            jc = tuple(0.1 * scale * rng.uniform(-1, 1, size=2))
        Tk = T * fT * jT
        pars[k, 0] = flux / ngauss
        pars[k, 1] = cen[0] + jc[0]
        pars[k, 2] = cen[1] + jc[1]
        pars[k, 3] = 0.5 * Tk * (1.0 - e1)
        pars[k, 4] = 0.5 * Tk * e2
        pars[k, 5] = 0.5 * Tk * (1.0 + e1)
    return pars


def mixture_summary(pars: np.ndarray) -> tuple[float, np.ndarray, float]:
    """(T, g, flux) of an (ngauss, 6) mixture about its flux-weighted centre."""
    p = pars[:, 0]
    psum = p.sum()
    v0 = (p * pars[:, 1]).sum() / psum
    u0 = (p * pars[:, 2]).sum() / psum
    irr = (p * (pars[:, 3] + (pars[:, 1] - v0) ** 2)).sum() / psum
    irc = (p * (pars[:, 4] + (pars[:, 1] - v0) * (pars[:, 2] - u0))).sum() / psum
    icc = (p * (pars[:, 5] + (pars[:, 2] - u0) ** 2)).sum() / psum
    T = irr + icc
    e1 = (icc - irr) / T
    e2 = 2.0 * irc / T
    e = math.hypot(e1, e2)
    if e >= 1.0:
        return T, np.full(2, np.nan), psum
    f = math.tanh(0.5 * math.atanh(e)) / e if e > 0 else 0.0
    return T, np.array([e1 * f, e2 * f]), psum


def fit_em(obs: Any, ngauss: int, maxiter: int = 2000, tol: float = 1e-6,
           rng: np.random.Generator | None = None, guess: np.ndarray | None = None,
           guess_T: float | None = None) -> EMResult:
    """Fit ``ngauss`` Gaussians to ``obs.image`` by EM in (v, u) through the Jacobian.

    The image is shifted to be non-negative and the shift is modelled as a
    fixed sky level, so noise-free PSF images with small negative ringing and
    images with a flat background both work.  Converged when the mixture's T
    changes by less than ``tol`` (fractional) in an iteration.  ``guess``: optional (ngauss, 6)
    start; otherwise one is made from adaptive moments (perturbed with ``rng``).
    Never raises for bad data: failures return non-zero ``flags``.
    """
    image, weight, jac, problem = obs_arrays(obs)
    if problem:
        return _failed(EM_BAD_INPUT, ngauss)
    good = weight > 0
    vals = image[good]
    vmin = float(vals.min())
    vmax = float(vals.max())
    if not (vmax > 0.0) or not (vals.sum() > 0.0):
        return _failed(EM_BAD_INPUT, ngauss)
    # a small floor keeps the sky component alive where the image is ~0
    sky = max(0.0, -vmin) + 1.0e-4 * vmax
    shifted = np.where(good, image + sky, 0.0)

    if guess is None:
        am = admom_arrays(image, weight, jac, guess_T=guess_T)
        if am["flags"] == 0:
            T, (e1, e2), cen = am["T"], am["e1e2"], am["pars"][:2]
        else:
            T = guess_T if guess_T else 8.0 * abs(jac[2] * jac[5] - jac[3] * jac[4])
            e1 = e2 = 0.0
            cen = (0.0, 0.0)
        scale = math.sqrt(abs(jac[2] * jac[5] - jac[3] * jac[4]))
        pars = em_guess(ngauss, T, e1, e2, float(vals.sum()), cen, rng, scale)
    else:
        pars = np.array(guess, dtype="f8").reshape(ngauss, 6)
    if not np.all(np.isfinite(pars)):
        return _failed(EM_BAD_GUESS, ngauss)

    flags, numiter, fdiff = em_nb.em_run(shifted, weight, jac, sky, pars, int(maxiter), float(tol))
    if flags != 0 or not np.all(np.isfinite(pars)):
        return _failed(flags or EM_RANGE, ngauss, numiter)
    T, g, flux = mixture_summary(pars)
    return EMResult(flags=0, numiter=int(numiter), fdiff=float(fdiff), sky=sky, pars=pars,
                    T=T, g=g, flux=flux)
