"""Numba kernel for the PSF wing estimate (called from ``wing.py``): a power law
fitted to the pixels of an elliptical annulus.

``jac`` = [row0, col0, dvdrow, dvdcol, dudrow, dudcol]; a pixel's radius is that
of its centre, ``rho^2 = ivv dv^2 + 2 ivu dv du + iuu du^2`` about (v0, u0).
"""

import math

import numpy as np
from numba import njit


@njit(cache=True, error_model="numpy")
def annulus_power_law(image, weight, jac, centre_shape, rin, rout):
    """(ln A, n, npix) of ``image ~ A rho^-n`` over the pixels with weight > 0,
    a positive value and ``rin <= rho < rout``: the regression of ln(value) on
    ln(rho) weighted by value^2, i.e. the least-squares fit of the values
    themselves to first order. centre_shape = [v0, u0, ivv, ivu, iuu]; npix 0
    (and nan) when fewer than 3 pixels or a degenerate spread of radii."""
    v0, u0 = centre_shape[0], centre_shape[1]
    ivv, ivu, iuu = centre_shape[2], centre_shape[3], centre_shape[4]
    rin2 = rin * rin
    rout2 = rout * rout
    s = np.zeros(5)   # sum w, w x, w y, w x^2, w x y
    npix = 0
    nrow, ncol = image.shape
    for r in range(nrow):
        for c in range(ncol):
            val = image[r, c]
            if weight[r, c] <= 0.0 or not (val > 0.0):
                continue
            dv = jac[2] * (r - jac[0]) + jac[3] * (c - jac[1]) - v0
            du = jac[4] * (r - jac[0]) + jac[5] * (c - jac[1]) - u0
            rho2 = ivv * dv * dv + 2.0 * ivu * dv * du + iuu * du * du
            if rho2 < rin2 or rho2 >= rout2:
                continue
            x = 0.5 * math.log(rho2)
            y = math.log(val)
            w = val * val
            s[0] += w
            s[1] += w * x
            s[2] += w * y
            s[3] += w * x * x
            s[4] += w * x * y
            npix += 1
    if npix < 3:
        return math.nan, math.nan, 0
    det = s[0] * s[3] - s[1] * s[1]
    if not (det > 1e-12 * s[0] * s[3]):
        return math.nan, math.nan, 0
    slope = (s[0] * s[4] - s[1] * s[2]) / det
    lnA = (s[2] - slope * s[1]) / s[0]
    return lnA, -slope, npix


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
