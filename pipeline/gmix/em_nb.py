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


@njit(cache=True, fastmath=True)
def em_run(image, weight, jac, sky, pars, maxiter, tol):
    """Iterate EM in place on ``pars``; returns (flags, numiter, fractional T change)."""
    ng = pars.shape[0]
    row0, col0, dvdrow, dvdcol, dudrow, dudcol = jac[0], jac[1], jac[2], jac[3], jac[4], jac[5]
    area = abs(dvdrow * dudcol - dvdcol * dudrow)
    nrow, ncol = image.shape

    # cached inverse covariances and amplitudes
    amp = np.empty(ng)
    ivv = np.empty(ng)
    ivu = np.empty(ng)
    iuu = np.empty(ng)
    gval = np.empty(ng)
    acc = np.zeros((ng, 6))  # S, Sv, Su, Svv, Svu, Suu

    Told = 0.0
    psum = 0.0
    for k in range(ng):
        psum += pars[k, 0]
        Told += pars[k, 0] * (pars[k, 3] + pars[k, 5])
    if not (psum > 0.0):
        return EM_RANGE, 0, np.inf
    Told /= psum

    fdiff = np.inf
    for it in range(1, maxiter + 1):
        for k in range(ng):
            det = pars[k, 3] * pars[k, 5] - pars[k, 4] * pars[k, 4]
            if not (det > 0.0) or not (pars[k, 0] > 0.0):
                return EM_RANGE, it, fdiff
            ivv[k] = pars[k, 5] / det
            ivu[k] = -pars[k, 4] / det
            iuu[k] = pars[k, 3] / det
            amp[k] = pars[k, 0] * area / (2.0 * math.pi * math.sqrt(det))
            for j in range(6):
                acc[k, j] = 0.0

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
        if npix == 0:
            return EM_NO_DATA, it, fdiff

        Tnew = 0.0
        psum = 0.0
        for k in range(ng):
            S = acc[k, 0]
            if not (S > 0.0):
                return EM_RANGE, it, fdiff
            mv = acc[k, 1] / S
            mu = acc[k, 2] / S
            pars[k, 0] = S
            pars[k, 1] = mv
            pars[k, 2] = mu
            pars[k, 3] = acc[k, 3] / S - mv * mv
            pars[k, 4] = acc[k, 4] / S - mv * mu
            pars[k, 5] = acc[k, 5] / S - mu * mu
            psum += S
            Tnew += S * (pars[k, 3] + pars[k, 5])
        Tnew /= psum
        fdiff = abs(Tnew - Told) / Told
        if fdiff < tol:
            return 0, it, fdiff
        Told = Tnew
    return EM_MAXIT, maxiter, fdiff
