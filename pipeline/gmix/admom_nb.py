"""Numba kernel for adaptive moments (Gaussian-weighted second moments iterated
until the weight matches the object).

Coordinates: a pixel (row, col) maps to v = dvdrow*(row-row0) + dvdcol*(col-col0),
u = dudrow*(row-row0) + dudcol*(col-col0), in arcsec.  ``jac`` is the float64
array [row0, col0, dvdrow, dvdcol, dudrow, dudcol].  Moments are (Irr, Irc, Icc)
= (<vv>, <vu>, <uu>).
"""

import math

import numpy as np
from numba import njit

# flag bits (mirrored in admom.py)
ADMOM_EDGE = 1        # no positive weighted flux / no usable pixels
ADMOM_SHIFT = 2       # centre wandered too far from the start
ADMOM_FAINT = 4
ADMOM_SMALL = 8       # weight became non positive-definite or T tiny
ADMOM_MAXIT = 16
ADMOM_BIG = 32        # T grew beyond bounds

# pixels beyond this chi^2 contribute < exp(-25) of the peak: skip them
_MAX_CHI2 = 50.0


@njit(cache=True, inline="always")
def weighted_sums(image, weight, jac, wp, sums):
    """Gaussian-weighted sums for weight wp = [v0, u0, irr, irc, icc].

    sums <- [S, Sv, Su, Svv, Svu, Suu, Sw2var, Sw2, npix] where S = sum(W I),
    dv, du relative to (v0, u0); W has unit peak.
    """
    for i in range(sums.size):
        sums[i] = 0.0
    row0, col0, dvdrow, dvdcol, dudrow, dudcol = jac[0], jac[1], jac[2], jac[3], jac[4], jac[5]
    v0, u0, irr, irc, icc = wp[0], wp[1], wp[2], wp[3], wp[4]
    det = irr * icc - irc * irc
    if det <= 0.0:
        return False
    drr = icc / det
    drc = -irc / det
    dcc = irr / det
    nrow, ncol = image.shape
    for r in range(nrow):
        rr = r - row0
        for c in range(ncol):
            ivar = weight[r, c]
            if ivar <= 0.0:
                continue
            cc = c - col0
            dv = dvdrow * rr + dvdcol * cc - v0
            du = dudrow * rr + dudcol * cc - u0
            chi2 = drr * dv * dv + 2.0 * drc * dv * du + dcc * du * du
            if chi2 > _MAX_CHI2:
                continue
            w = math.exp(-0.5 * chi2)
            s = w * image[r, c]
            sums[0] += s
            sums[1] += s * dv
            sums[2] += s * du
            sums[3] += s * dv * dv
            sums[4] += s * dv * du
            sums[5] += s * du * du
            sums[6] += w * w / ivar
            sums[7] += w * w
            sums[8] += 1.0
    return True


@njit(cache=True)
def admom_iterate(image, weight, jac, wp, maxiter, etol, Ttol, maxshift, sums):
    """Iterate the weight wp (modified in place) to the adaptive-moment fixed point.

    Returns (flags, numiter).  At the fixed point the weight covariance equals
    twice the weighted moments; the update uses the Gaussian "deweighting"
    inverse(inv(M) - inv(W)), which is exact for a Gaussian object, and falls
    back to 2 M when noise makes that non positive-definite.
    """
    v_start = wp[0]
    u_start = wp[1]
    T_start = wp[2] + wp[4]
    for it in range(1, maxiter + 1):
        if not weighted_sums(image, weight, jac, wp, sums):
            return ADMOM_SMALL, it
        S = sums[0]
        if sums[8] < 1.0 or S <= 0.0:
            return ADMOM_EDGE, it
        mv = sums[1] / S
        mu = sums[2] / S
        mrr = sums[3] / S - mv * mv
        mrc = sums[4] / S - mv * mu
        mcc = sums[5] / S - mu * mu
        mdet = mrr * mcc - mrc * mrc
        if mdet <= 0.0 or mrr <= 0.0 or mcc <= 0.0:
            return ADMOM_SMALL, it

        irr, irc, icc = wp[2], wp[3], wp[4]
        wdet = irr * icc - irc * irc
        # inv(M) - inv(W)
        arr = mcc / mdet - icc / wdet
        arc = -mrc / mdet + irc / wdet
        acc = mrr / mdet - irr / wdet
        adet = arr * acc - arc * arc
        if adet > 0.0 and arr > 0.0:
            nrr = acc / adet
            nrc = -arc / adet
            ncc = arr / adet
        else:
            nrr = 2.0 * mrr
            nrc = 2.0 * mrc
            ncc = 2.0 * mcc
        # for a Gaussian matching the weight the weighted centroid moves half way
        wp[0] += 2.0 * mv
        wp[1] += 2.0 * mu

        Told = irr + icc
        e1old = (icc - irr) / Told
        e2old = 2.0 * irc / Told
        Tnew = nrr + ncc
        if Tnew <= 1.0e-8 * (1.0 + T_start):
            return ADMOM_SMALL, it
        if Tnew > 1.0e4 * T_start + 1.0e4:
            return ADMOM_BIG, it
        wp[2] = nrr
        wp[3] = nrc
        wp[4] = ncc
        dshift = math.sqrt((wp[0] - v_start) ** 2 + (wp[1] - u_start) ** 2)
        if dshift > maxshift:
            return ADMOM_SHIFT, it
        e1new = (ncc - nrr) / Tnew
        e2new = 2.0 * nrc / Tnew
        if (abs(e1new - e1old) < etol and abs(e2new - e2old) < etol
                and abs(Tnew / Told - 1.0) < Ttol):
            # final sums with the converged weight
            if not weighted_sums(image, weight, jac, wp, sums):
                return ADMOM_SMALL, it
            return 0, it
    return ADMOM_MAXIT, maxiter


@njit(cache=True)
def image_moments(image, weight, jac, out):
    """Unweighted first and second moments over pixels with weight > 0.

    out <- [sum, v, u, irr, irc, icc]; used to start admom and EM.
    """
    row0, col0, dvdrow, dvdcol, dudrow, dudcol = jac[0], jac[1], jac[2], jac[3], jac[4], jac[5]
    s = 0.0
    sv = 0.0
    su = 0.0
    svv = 0.0
    svu = 0.0
    suu = 0.0
    nrow, ncol = image.shape
    for r in range(nrow):
        rr = r - row0
        for c in range(ncol):
            if weight[r, c] <= 0.0:
                continue
            val = image[r, c]
            cc = c - col0
            v = dvdrow * rr + dvdcol * cc
            u = dudrow * rr + dudcol * cc
            s += val
            sv += val * v
            su += val * u
            svv += val * v * v
            svu += val * v * u
            suu += val * u * u
    out[0] = s
    if s > 0.0:
        mv = sv / s
        mu = su / s
        out[1] = mv
        out[2] = mu
        out[3] = svv / s - mv * mv
        out[4] = svu / s - mv * mu
        out[5] = suu / s - mu * mu
    else:
        for i in range(1, 6):
            out[i] = np.nan
