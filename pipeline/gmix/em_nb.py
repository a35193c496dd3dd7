"""Numba kernel for expectation-maximisation of a Gaussian mixture on an image.

The image (counts, made non-negative by a known constant ``sky`` per pixel) is
treated as a weighted sample of positions; the model per pixel is
``sum_k p_k N_k(v, u) * area + sky``.  The sky level is held fixed, so its
component absorbs the constant that was added and any flat background.

``pars`` is an (ngauss, 6) float64 array [p, v, u, irr, irc, icc] in (v, u)
arcsec; ``jac`` = [row0, col0, dvdrow, dvdcol, dudrow, dudcol].
"""

import math

import numpy as np
from numba import njit

EM_RANGE = 1      # a component lost its flux or became non positive-definite
EM_MAXIT = 2
EM_NO_DATA = 4

_ETA_GROW = 1.1
_ETA_MAX = 10.0


@njit(cache=True, inline="always")
def _valid(pars):
    for k in range(pars.shape[0]):
        det = pars[k, 3] * pars[k, 5] - pars[k, 4] * pars[k, 4]
        if not (det > 0.0) or not (pars[k, 0] > 0.0) or not (pars[k, 3] > 0.0):
            return False
    return True


@njit(cache=True, inline="always")
def _mixture_T(pars):
    psum = 0.0
    T = 0.0
    for k in range(pars.shape[0]):
        psum += pars[k, 0]
        T += pars[k, 0] * (pars[k, 3] + pars[k, 5])
    return T / psum


@njit(cache=True, inline="always")
def _copy(dst, src):
    """dst[:, :] = src, as a loop: numba compiles an array assignment with a
    shape check whose error message costs a second of string code to compile."""
    for k in range(dst.shape[0]):
        for j in range(dst.shape[1]):
            dst[k, j] = src[k, j]


@njit(cache=True, inline="always")
def _e_step(image, weight, jac, sky, pars, acc, gval):
    """Accumulate responsibility-weighted sums; returns (log-likelihood, npix)."""
    ng = pars.shape[0]
    row0, col0, dvdrow, dvdcol, dudrow, dudcol = jac[0], jac[1], jac[2], jac[3], jac[4], jac[5]
    area = abs(dvdrow * dudcol - dvdcol * dudrow)
    nrow, ncol = image.shape
    amp = np.empty(ng)
    ivv = np.empty(ng)
    ivu = np.empty(ng)
    iuu = np.empty(ng)
    for k in range(ng):
        det = pars[k, 3] * pars[k, 5] - pars[k, 4] * pars[k, 4]
        ivv[k] = pars[k, 5] / det
        ivu[k] = -pars[k, 4] / det
        iuu[k] = pars[k, 3] / det
        amp[k] = pars[k, 0] * area / (2.0 * math.pi * math.sqrt(det))
        for j in range(6):
            acc[k, j] = 0.0
    loglike = 0.0
    npix = 0
    for r in range(nrow):
        rr = r - row0
        for c in range(ncol):
            if weight[r, c] <= 0.0:
                continue
            val = image[r, c]
            if val <= 0.0:
                continue
            npix += 1
            cc = c - col0
            v = dvdrow * rr + dvdcol * cc
            u = dudrow * rr + dudcol * cc
            model = sky
            for k in range(ng):
                dv = v - pars[k, 1]
                du = u - pars[k, 2]
                chi2 = ivv[k] * dv * dv + 2.0 * ivu[k] * dv * du + iuu[k] * du * du
                if chi2 < 100.0:
                    gk = amp[k] * math.exp(-0.5 * chi2)
                else:
                    gk = 0.0
                gval[k] = gk
                model += gk
            if model <= 0.0:
                continue
            loglike += val * math.log(model)
            fac = val / model
            for k in range(ng):
                t = gval[k] * fac
                if t == 0.0:
                    continue
                acc[k, 0] += t
                acc[k, 1] += t * v
                acc[k, 2] += t * u
                acc[k, 3] += t * v * v
                acc[k, 4] += t * v * u
                acc[k, 5] += t * u * u
    return loglike, npix


@njit(cache=True)
def em_run(image, weight, jac, sky, pars, maxiter, tol):
    """Iterate EM in place on ``pars``; returns (flags, numiter, fractional T change).

    Adaptive over-relaxation (Salakhutdinov & Roweis 2003): the step from the
    current point to its EM update is stretched by eta, which grows while the
    likelihood increases; when it does not, the plain EM update (which never
    decreases it) is taken and eta restarts at 1.  PSF mixtures have strongly
    overlapping components, where plain EM crawls.
    """
    ng = pars.shape[0]
    acc = np.zeros((ng, 6))
    gval = np.empty(ng)
    em_new = np.empty((ng, 6))
    em_last = np.empty((ng, 6))
    if not _valid(pars):
        return EM_RANGE, 0, np.inf
    Told = _mixture_T(pars)
    eta = 1.0
    ll_prev = -np.inf
    have_em = False
    fdiff = np.inf
    for it in range(1, maxiter + 1):
        loglike, npix = _e_step(image, weight, jac, sky, pars, acc, gval)
        if npix == 0:
            return EM_NO_DATA, it, fdiff
        if eta > 1.0 and have_em and loglike < ll_prev:
            # the stretched step overshot: fall back to the safe EM update
            _copy(pars, em_last)
            eta = 1.0
            continue
        ll_prev = loglike
        for k in range(ng):
            S = acc[k, 0]
            if not (S > 0.0):
                return EM_RANGE, it, fdiff
            mv = acc[k, 1] / S
            mu = acc[k, 2] / S
            em_new[k, 0] = S
            em_new[k, 1] = mv
            em_new[k, 2] = mu
            em_new[k, 3] = acc[k, 3] / S - mv * mv
            em_new[k, 4] = acc[k, 4] / S - mv * mu
            em_new[k, 5] = acc[k, 5] / S - mu * mu
        if not _valid(em_new):
            return EM_RANGE, it, fdiff
        Tnew = _mixture_T(em_new)
        fdiff = abs(Tnew - Told) / Told
        Told = Tnew
        if fdiff < tol:
            _copy(pars, em_new)
            return 0, it, fdiff
        _copy(em_last, em_new)
        have_em = True
        if eta > 1.0:
            for k in range(ng):
                for j in range(6):
                    pars[k, j] = pars[k, j] + eta * (em_new[k, j] - pars[k, j])
            if not _valid(pars):
                _copy(pars, em_new)
                eta = 1.0
        else:
            _copy(pars, em_new)
        eta = min(eta * _ETA_GROW, _ETA_MAX)
    return EM_MAXIT, maxiter, fdiff
