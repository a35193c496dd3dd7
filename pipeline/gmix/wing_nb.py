"""Numba kernels for the PSF wing estimate (called from ``wing.py``): a power law
fitted to the pixels of an elliptical annulus, and rays leaving the stamp.

``jac`` = [row0, col0, dvdrow, dvdcol, dudrow, dudcol]; a pixel's radius is that
of its centre, ``rho^2 = ivv dv^2 + 2 ivu dv du + iuu du^2`` about (v0, u0).
"""

import math

import numpy as np
from numba import njit


@njit(cache=True, inline="always", error_model="numpy")
def _power_law_chi2(lnrho, val, m, n):
    """(chi2, A) of the least-squares ``val = A rho^-n`` (A linear) over m pixels."""
    sgg = 0.0
    sig = 0.0
    svv = 0.0
    for i in range(m):
        g = math.exp(-n * lnrho[i])
        sgg += g * g
        sig += val[i] * g
        svv += val[i] * val[i]
    return svv - sig * sig / sgg, sig / sgg


@njit(cache=True, error_model="numpy")
def annulus_power_law(image, weight, jac, centre_shape, rin, rout, nmin, nmax):
    """(A, n, npix, s2n) of the least-squares fit ``value = A rho^-n`` to the
    pixels with weight > 0 and ``rin <= rho < rout``, n in [nmin, nmax] by a
    golden-section search (A is linear). s2n = the model's sum over the annulus /
    (rms residual * sqrt(npix)): how well the annulus' light is measured (noise
    or a profile that is not a power law lower it). centre_shape = [v0, u0, ivv,
    ivu, iuu]; npix 0 (A, n nan) with fewer than 3 pixels."""
    v0, u0 = centre_shape[0], centre_shape[1]
    ivv, ivu, iuu = centre_shape[2], centre_shape[3], centre_shape[4]
    rin2 = rin * rin
    rout2 = rout * rout
    nrow, ncol = image.shape
    lnrho = np.empty(nrow * ncol)
    val = np.empty(nrow * ncol)
    m = 0
    for r in range(nrow):
        for c in range(ncol):
            if weight[r, c] <= 0.0:
                continue
            dv = jac[2] * (r - jac[0]) + jac[3] * (c - jac[1]) - v0
            du = jac[4] * (r - jac[0]) + jac[5] * (c - jac[1]) - u0
            rho2 = ivv * dv * dv + 2.0 * ivu * dv * du + iuu * du * du
            if rho2 < rin2 or rho2 >= rout2:
                continue
            lnrho[m] = 0.5 * math.log(rho2)
            val[m] = image[r, c]
            m += 1
    if m < 3:
        return math.nan, math.nan, 0, 0.0
    ratio = 0.5 * (math.sqrt(5.0) - 1.0)
    lo = nmin
    hi = nmax
    x1 = hi - ratio * (hi - lo)
    x2 = lo + ratio * (hi - lo)
    f1 = _power_law_chi2(lnrho, val, m, x1)[0]
    f2 = _power_law_chi2(lnrho, val, m, x2)[0]
    for _ in range(40):
        if f1 <= f2:
            hi = x2
            x2 = x1
            f2 = f1
            x1 = hi - ratio * (hi - lo)
            f1 = _power_law_chi2(lnrho, val, m, x1)[0]
        else:
            lo = x1
            x1 = x2
            f1 = f2
            x2 = lo + ratio * (hi - lo)
            f2 = _power_law_chi2(lnrho, val, m, x2)[0]
    n = 0.5 * (lo + hi)
    chi2, A = _power_law_chi2(lnrho, val, m, n)
    total = 0.0
    for i in range(m):
        total += A * math.exp(-n * lnrho[i])
    rms = math.sqrt(max(chi2, 0.0) / max(m - 2, 1))
    s2n = total / (rms * math.sqrt(m)) if rms > 0.0 else math.inf
    return A, n, m, s2n


@njit(cache=True, error_model="numpy")
def ray_exits(corners, nrays, power):
    """(min d, mean d^power) over ``nrays`` equally spaced rays from the origin,
    d the distance at which a ray leaves the convex polygon ``corners`` (2, k)
    that holds the origin (each ray leaves by its nearest crossing of an edge's
    line); (0, nan) if a ray finds no exit (origin outside)."""
    k = corners.shape[1]
    dmin = math.inf
    acc = 0.0
    for i in range(nrays):
        theta = (i + 0.5) * (2.0 * math.pi / nrays)
        cx = math.cos(theta)
        cy = math.sin(theta)
        d = math.inf
        for j in range(k):
            px = corners[0, j]
            py = corners[1, j]
            ex = corners[0, (j + 1) % k] - px
            ey = corners[1, (j + 1) % k] - py
            # t (cx, cy) = p + s e  =>  t = (p x e) / (c x e)
            den = cx * ey - cy * ex
            if den == 0.0:
                continue
            t = (px * ey - py * ex) / den
            if t > 0.0 and t < d:
                d = t
        if not math.isfinite(d):
            return 0.0, math.nan
        dmin = min(dmin, d)
        acc += d ** power
    return dmin, acc / nrays
