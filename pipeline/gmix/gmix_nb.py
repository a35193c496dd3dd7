"""Numba kernels on Gaussian-mixture records (dtype ``gmix.GAUSS_DTYPE``).

Coordinates: ``row`` is v and ``col`` is u (arcsec when rendered through a
Jacobian).  Each component stores its flux ``p``, centre, covariance
(``irr, irc, icc``) and cached quantities: ``det``, the inverse covariance in
(v, u) order (``ivv, ivu, iuu``), ``norm = 1/(2 pi sqrt(det))`` and
``pnorm = p * norm``.
"""
import math

import numpy as np
from numba import njit

TWO_PI = 2.0 * math.pi


@njit(cache=True, inline="always", error_model="numpy")
def set_norms(data) -> int:
    """Fill the cached fields; return 0, or 1 if a component is not positive definite."""
    bad = 0
    for i in range(data.size):
        g = data[i]
        det = g['irr'] * g['icc'] - g['irc'] * g['irc']
        g['det'] = det
        if not (det > 0.0) or not (g['irr'] > 0.0):
            bad = 1
            g['ivv'] = 0.0
            g['ivu'] = 0.0
            g['iuu'] = 0.0
            g['norm'] = 0.0
            g['pnorm'] = 0.0
            continue
        idet = 1.0 / det
        g['ivv'] = g['icc'] * idet
        g['ivu'] = -g['irc'] * idet
        g['iuu'] = g['irr'] * idet
        g['norm'] = 1.0 / (TWO_PI * math.sqrt(det))
        g['pnorm'] = g['p'] * g['norm']
    return bad


@njit(cache=True, inline="always", error_model="numpy")
def g1g2_to_e1e2(g1, g2):
    """Reduced-shear ellipticity g -> distortion e = 2 g / (1 + |g|^2)."""
    gsq = g1 * g1 + g2 * g2
    f = 2.0 / (1.0 + gsq)
    return f * g1, f * g2


@njit(cache=True, error_model="numpy")
def e1e2_to_g1g2(e1, e2):
    """Distortion e -> reduced-shear ellipticity g (inverse of g1g2_to_e1e2)."""
    esq = e1 * e1 + e2 * e2
    if esq <= 0.0:
        return 0.0, 0.0
    if esq >= 1.0:
        return np.nan, np.nan
    e = math.sqrt(esq)
    g = math.tanh(0.5 * math.atanh(e))
    return e1 * g / e, e2 * g / e


@njit(cache=True, error_model="numpy")
def fill_shared(data, pars, pvals, fvals, flux_index, fracdev_index, ndisk) -> int:
    """Fill a mixture whose components share centre and shape.

    pars = [v, u, g1, g2, T, ...]; component i has flux ``pvals[i] * F`` and
    ``T_i = fvals[i] * T`` with F = pars[flux_index].  With fracdev_index >= 0
    (bdf) the first ``ndisk`` components are scaled by (1 - fracdev) and the
    rest by fracdev.  Returns 1 if the shape is invalid (|g| >= 1).
    """
    v = pars[0]
    u = pars[1]
    g1 = pars[2]
    g2 = pars[3]
    T = pars[4]
    F = pars[flux_index]
    if g1 * g1 + g2 * g2 >= 1.0:
        return 1
    e1, e2 = g1g2_to_e1e2(g1, g2)
    fd = 0.0
    if fracdev_index >= 0:
        fd = pars[fracdev_index]
    for i in range(data.size):
        Ti = T * fvals[i]
        p = F * pvals[i]
        if fracdev_index >= 0:
            if i < ndisk:
                p *= 1.0 - fd
            else:
                p *= fd
        g = data[i]
        g['p'] = p
        g['row'] = v
        g['col'] = u
        g['irr'] = 0.5 * Ti * (1.0 - e1)
        g['irc'] = 0.5 * Ti * e2
        g['icc'] = 0.5 * Ti * (1.0 + e1)
    set_norms(data)
    return 0


@njit(cache=True, error_model="numpy")
def fill_coellip(data, pars) -> int:
    """Fill a co-elliptical mixture: pars = [v, u, g1, g2, T_1..T_N, F_1..F_N]."""
    n = data.size
    g1 = pars[2]
    g2 = pars[3]
    if g1 * g1 + g2 * g2 >= 1.0:
        return 1
    e1, e2 = g1g2_to_e1e2(g1, g2)
    for i in range(n):
        Ti = pars[4 + i]
        g = data[i]
        g['p'] = pars[4 + n + i]
        g['row'] = pars[0]
        g['col'] = pars[1]
        g['irr'] = 0.5 * Ti * (1.0 - e1)
        g['irc'] = 0.5 * Ti * e2
        g['icc'] = 0.5 * Ti * (1.0 + e1)
    set_norms(data)
    return 0


@njit(cache=True, error_model="numpy")
def fill_full(data, pars) -> None:
    """Fill from flat [p, row, col, irr, irc, icc] * n."""
    for i in range(data.size):
        g = data[i]
        g['p'] = pars[6 * i]
        g['row'] = pars[6 * i + 1]
        g['col'] = pars[6 * i + 2]
        g['irr'] = pars[6 * i + 3]
        g['irc'] = pars[6 * i + 4]
        g['icc'] = pars[6 * i + 5]
    set_norms(data)


@njit(cache=True, inline="always", error_model="numpy")
def get_cen_flux(data):
    """Flux-weighted centre and total flux (row, col, psum)."""
    psum = 0.0
    r = 0.0
    c = 0.0
    for i in range(data.size):
        p = data[i]['p']
        psum += p
        r += p * data[i]['row']
        c += p * data[i]['col']
    if psum != 0.0:
        r /= psum
        c /= psum
    return r, c, psum


@njit(cache=True, error_model="numpy")
def get_moments(data):
    """Flux-weighted (irr, irc, icc) about the mixture centre, and total flux."""
    r0, c0, psum = get_cen_flux(data)
    irr = 0.0
    irc = 0.0
    icc = 0.0
    for i in range(data.size):
        g = data[i]
        dr = g['row'] - r0
        dc = g['col'] - c0
        irr += g['p'] * (g['irr'] + dr * dr)
        irc += g['p'] * (g['irc'] + dr * dc)
        icc += g['p'] * (g['icc'] + dc * dc)
    if psum != 0.0:
        irr /= psum
        irc /= psum
        icc /= psum
    return irr, irc, icc, psum


@njit(cache=True, error_model="numpy")
def convolve_fill(out, obj, psf) -> int:
    """out[i*npsf + j] = obj[i] (x) psf[j]; the PSF's own centroid is removed so the
    convolution keeps the object's centre; PSF fluxes are normalised to sum 1.
    Returns 1 if the PSF has non-positive total flux."""
    pr, pc, psum = get_cen_flux(psf)
    if not (psum > 0.0):
        return 1
    npsf = psf.size
    for i in range(obj.size):
        o = obj[i]
        for j in range(npsf):
            q = psf[j]
            g = out[i * npsf + j]
            g['p'] = o['p'] * q['p'] / psum
            g['row'] = o['row'] + q['row'] - pr
            g['col'] = o['col'] + q['col'] - pc
            g['irr'] = o['irr'] + q['irr']
            g['irc'] = o['irc'] + q['irc']
            g['icc'] = o['icc'] + q['icc']
    return set_norms(out)


@njit(cache=True, error_model="numpy")
def psf_table(data):
    """(flag, table, T) of a PSF mixture for the fit kernels: table rows
    (p, dv, du, irr, irc, icc) with p normalised to sum 1 and (dv, du) relative
    to the flux-weighted centroid; T = Irr + Icc of the whole mixture.
    flag 1 when a value is non-finite, the flux is not positive or a component
    is not positive definite (the table is then empty)."""
    n = data.size
    psum = 0.0
    finite = True
    for i in range(n):
        g = data[i]
        psum += g['p']
        for x in (g['p'], g['row'], g['col'], g['irr'], g['irc'], g['icc']):
            if not math.isfinite(x):
                finite = False
    if not finite or not (math.isfinite(psum) and psum > 0.0):
        return 1, np.zeros((0, 6)), 0.0
    for i in range(n):
        g = data[i]
        if g['irr'] * g['icc'] - g['irc'] * g['irc'] <= 0.0 or g['irr'] <= 0.0:
            return 1, np.zeros((0, 6)), 0.0
    vc = 0.0
    uc = 0.0
    for i in range(n):
        p = data[i]['p'] / psum
        vc += p * data[i]['row']
        uc += p * data[i]['col']
    tab = np.empty((n, 6))
    T = 0.0
    for i in range(n):
        g = data[i]
        p = g['p'] / psum
        dv = g['row'] - vc
        du = g['col'] - uc
        tab[i, 0] = p
        tab[i, 1] = dv
        tab[i, 2] = du
        tab[i, 3] = g['irr']
        tab[i, 4] = g['irc']
        tab[i, 5] = g['icc']
        T += p * (g['irr'] + g['icc'] + dv * dv + du * du)
    return 0, tab, T
