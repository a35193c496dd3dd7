"""Numba kernels for priors as extra least-squares residuals (r^2 = -2 ln p + const).

A prior set is three arrays: ``kind[n]``, ``idx[n, 2]`` (parameter indices) and
``par[n, 4]``.  Kinds:

* GAUSS:    r = (x - mean) / sigma                         par = (mean, sigma)
* LOGNORM:  r = (ln x - lnmean) / lnsigma  (x > 0; continued linearly below
            x = eps so the LM can step back)                par = (lnmean, lnsigma, eps)
* ERF2:     two-sided erf p = Phi((x-min)/wmin) Phi((max-x)/wmax)-like,
            r = sqrt(-2 ln p)                              par = (min, wmin, max, wmax)
* BA:       shape prior p(g) ~ (1-g^2)^2 exp(-g^2 / (2 sigma^2)) on (g1, g2) as two
            residuals r_i = g_i h(|g|) with h = sqrt(-2 ln p) / |g| (smooth at g = 0)
"""
import math

from numba import njit

GAUSS = 1
LOGNORM = 2
ERF2 = 3
BA = 4

_SQRTPI = math.sqrt(math.pi)


@njit(cache=True, inline="always", error_model="numpy")
def log_half_erfc(z):
    """ln(0.5 erfc(z)) and its derivative, stable for large |z|."""
    if z > 20.0:
        # asymptotic: erfc z ~ exp(-z^2) / (z sqrt(pi)) (1 - 1/(2 z^2))
        lp = -z * z - math.log(z * _SQRTPI) + math.log1p(-0.5 / (z * z)) - math.log(2.0)
        dlp = -2.0 * z - 1.0 / z
        return lp, dlp
    ec = math.erfc(z)
    lp = math.log(0.5 * ec)
    dlp = -2.0 / _SQRTPI * math.exp(-z * z) / ec
    return lp, dlp


@njit(cache=True, inline="always", error_model="numpy")
def erf2_lnprob(x, p):
    """ln p and d ln p / dx of the two-sided erf prior."""
    l1, d1 = log_half_erfc(-(x - p[0]) / p[1])
    l2, d2 = log_half_erfc((x - p[2]) / p[3])
    return l1 + l2, -d1 / p[1] + d2 / p[3]


@njit(cache=True, inline="always", error_model="numpy")
def _ba_H(s, isig2):
    """H(s) = -4 ln(1-s)/s + 1/sigma^2 and dH/ds, s = |g|^2 (series near 0)."""
    if s < 1e-4:
        H = 4.0 * (1.0 + 0.5 * s + s * s / 3.0) + isig2
        dH = 4.0 * (0.5 + 2.0 * s / 3.0)
        return H, dH
    l1 = math.log1p(-s)
    H = -4.0 * l1 / s + isig2
    dH = 4.0 * (s / (1.0 - s) + l1) / (s * s)
    return H, dH


@njit(cache=True, inline="always", error_model="numpy")
def prior_residuals(pars, kind, idx, par, JtJ, Jtr, want_jac) -> float:
    """Sum of squared prior residuals; if want_jac add J^T J and J^T r terms.
    Returns +inf when a parameter is outside the prior's support."""
    chi2 = 0.0
    for n in range(kind.size):
        kd = kind[n]
        i = idx[n, 0]
        x = pars[i]
        if kd == GAUSS:
            r = (x - par[n, 0]) / par[n, 1]
            dr = 1.0 / par[n, 1]
            chi2 += r * r
            if want_jac:
                JtJ[i, i] += dr * dr
                Jtr[i] += dr * r
        elif kd == LOGNORM:
            eps = par[n, 2]
            if x >= eps:
                r = (math.log(x) - par[n, 0]) / par[n, 1]
                dr = 1.0 / (x * par[n, 1])
            else:
                r = (math.log(eps) - par[n, 0]) / par[n, 1] + (x - eps) / (eps * par[n, 1])
                dr = 1.0 / (eps * par[n, 1])
            chi2 += r * r
            if want_jac:
                JtJ[i, i] += dr * dr
                Jtr[i] += dr * r
        elif kd == ERF2:
            lp, dlp = erf2_lnprob(x, par[n])
            if lp > 0.0:
                lp = 0.0
            r = math.sqrt(-2.0 * lp)
            chi2 += r * r
            if want_jac and r > 1e-150:
                dr = -dlp / r
                JtJ[i, i] += dr * dr
                Jtr[i] += dr * r
        elif kd == BA:
            j = idx[n, 1]
            g1 = x
            g2 = pars[j]
            s = g1 * g1 + g2 * g2
            if s >= 1.0:
                return math.inf
            isig2 = 1.0 / (par[n, 0] * par[n, 0])
            H, dH = _ba_H(s, isig2)
            h = math.sqrt(H)
            r1 = g1 * h
            r2 = g2 * h
            chi2 += r1 * r1 + r2 * r2
            if want_jac:
                # dh/dg_k = g_k H'(s) / h
                c = dH / h
                d11 = h + g1 * g1 * c
                d12 = g1 * g2 * c
                d22 = h + g2 * g2 * c
                # J rows: r1 -> (d11, d12) on (i, j); r2 -> (d12, d22)
                JtJ[i, i] += d11 * d11 + d12 * d12
                JtJ[i, j] += d11 * d12 + d12 * d22
                JtJ[j, i] += d11 * d12 + d12 * d22
                JtJ[j, j] += d12 * d12 + d22 * d22
                Jtr[i] += d11 * r1 + d12 * r2
                Jtr[j] += d12 * r1 + d22 * r2
    return chi2
