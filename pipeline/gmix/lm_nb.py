"""Levenberg-Marquardt kernel for the mixture fits (all in numba: one call per
fit attempt, no Python per iteration).

Each evaluation computes chi2 and the normal equations in one pass over the
pixels (render_nb.fit_eval) plus the prior residuals (priors_nb).  Steps solve
(J^T J + lambda diag(J^T J)) dp = -J^T r by Cholesky, are projected onto the
bounds, and are accepted when chi2 decreases.  Converged when an accepted step
lowers chi2 by less than ftol * chi2 (+1e-12) or changes every parameter by less
than xtol (|p| + xtol), or when no step can lower chi2 any more (lambda huge).
"""
import math

import numpy as np
from numba import njit

from .priors_nb import prior_residuals
from .render_nb import fit_eval

# status bits (mapped to flags.py by maxlike)
ST_BAD_START = 1
ST_MAXIT = 2
ST_SINGULAR = 4
ST_NONFINITE = 8


@njit(cache=True, inline="always", error_model="numpy")
def chol_solve(A, b, x) -> bool:
    """Solve A x = b for symmetric positive-definite A (small n) by Cholesky."""
    n = b.size
    L = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1):
            s = A[i, j]
            for k in range(j):
                s -= L[i, k] * L[j, k]
            if i == j:
                if not (s > 0.0):
                    return False
                L[i, i] = math.sqrt(s)
            else:
                L[i, j] = s / L[j, j]
    y = np.empty(n)
    for i in range(n):
        s = b[i]
        for k in range(i):
            s -= L[i, k] * y[k]
        y[i] = s / L[i, i]
    for i in range(n - 1, -1, -1):
        s = y[i]
        for k in range(i + 1, n):
            s -= L[k, i] * x[k]
        x[i] = s / L[i, i]
    return True


@njit(cache=True, inline="always", error_model="numpy")
def _evaluate(pars, kind, pvals, fvals, nshape, ndisk, img, sqw, ep_info, ep_jac,
              psf_tab, pr_kind, pr_idx, pr_par, JtJ, Jtr, stats):
    st = fit_eval(pars, kind, pvals, fvals, nshape, ndisk, img, sqw, ep_info, ep_jac,
                  psf_tab, JtJ, Jtr, stats, True)
    if st != 0:
        return math.inf
    chi2 = stats[0] + prior_residuals(pars, pr_kind, pr_idx, pr_par, JtJ, Jtr, True)
    if not math.isfinite(chi2):
        return math.inf
    return chi2


@njit(cache=True, error_model="numpy")
def lm_fit(pars0, lo, hi, maxit, ftol, xtol, lam0, kind, pvals, fvals, nshape, ndisk,
           img, sqw, ep_info, ep_jac, psf_tab, pr_kind, pr_idx, pr_par, flux_first, lam_down):
    """Returns (pars, JtJ, stats, chi2_total, nfev, niter, status).

    flux_first: before the first LM step, replace the start's fluxes (parameters
    nshape..) by the best ones at its shape (one Newton step in the fluxes, on
    which the model is linear), so a start needs no flux guess.

    The model is evaluated at one place in the loop (the start point, then each
    trial step), so numba and LLVM compile the fit kernel inlined here once."""
    n = pars0.size
    x = np.zeros(n)
    xt = np.minimum(np.maximum(pars0.copy(), lo), hi)   # point to evaluate next
    JtJ = np.zeros((n, n))
    Jtr = np.zeros(n)
    stats = np.zeros(4)
    JtJt = np.zeros((n, n))
    Jtrt = np.zeros(n)
    statst = np.zeros(4)
    Ad = np.zeros((n, n))
    step = np.zeros(n)
    rhs = np.zeros(n)
    nfev = 0
    chi2 = math.inf
    lam = lam0
    status = ST_MAXIT
    niter = 0
    small = False
    fluxstep = False
    while True:
        chi2t = _evaluate(xt, kind, pvals, fvals, nshape, ndisk, img, sqw, ep_info, ep_jac,
                          psf_tab, pr_kind, pr_idx, pr_par, JtJt, Jtrt, statst)
        nfev += 1
        start = nfev == 1
        if start or chi2t <= chi2:
            # accept: swap the buffers (no copies, and no array-assignment shape
            # checks, whose error formatting numba would compile)
            dchi2 = chi2 - chi2t
            x, xt = xt, x
            JtJ, JtJt = JtJt, JtJ
            Jtr, Jtrt = Jtrt, Jtr
            stats, statst = statst, stats
            chi2 = chi2t
            if start:
                if not math.isfinite(chi2):
                    return x, JtJ, stats, chi2, nfev, 0, ST_BAD_START
                if flux_first:
                    # the flux step: the others stay, and it is neither an LM
                    # iteration nor a convergence test
                    for i in range(n):
                        xt[i] = x[i]
                    for i in range(nshape, n):
                        if JtJ[i, i] > 0.0:
                            xt[i] = min(max(x[i] - Jtr[i] / JtJ[i, i], lo[i]), hi[i])
                    fluxstep = True
                    continue
            elif fluxstep:
                fluxstep = False
            else:
                lam = max(lam * lam_down, 1e-12)
                if dchi2 <= ftol * chi2 + 1e-12 or small:
                    status = 0
                    break
        elif fluxstep:
            # the flux step did not lower chi2 (a prior can do that): step from the start
            fluxstep = False
        else:
            if small:
                # cannot move any more: at the minimum to numerical precision
                status = 0
                break
            lam *= 10.0
            if lam > 1e10:
                status = 0
                break
        # next trial step: solve (J^T J + lam diag) dp = -J^T r, raising lam
        # while the damped matrix is not positive definite
        found = False
        while niter < maxit:
            niter += 1
            dmax = 0.0
            for i in range(n):
                dmax = max(dmax, JtJ[i, i])
            if not (dmax > 0.0) or not math.isfinite(dmax):
                status = ST_SINGULAR
                break
            floor = 1e-12 * dmax
            for i in range(n):
                rhs[i] = -Jtr[i]
                for j in range(n):
                    Ad[i, j] = JtJ[i, j]
                Ad[i, i] += lam * max(JtJ[i, i], floor)
            if not chol_solve(Ad, rhs, step):
                lam *= 10.0
                if lam > 1e12:
                    status = ST_SINGULAR
                    break
                continue
            small = True
            for i in range(n):
                xt[i] = min(max(x[i] + step[i], lo[i]), hi[i])
                if abs(xt[i] - x[i]) > xtol * (abs(x[i]) + xtol):
                    small = False
            found = True
            break
        if not found:
            break
    for i in range(n):
        if not math.isfinite(x[i]):
            status |= ST_NONFINITE
    return x, JtJ, stats, chi2, nfev, niter, status


@njit(cache=True, inline="always", error_model="numpy")
def invert(A):
    """(status, inverse) of a small square matrix by Gauss-Jordan elimination
    with partial pivoting; status 1 when a pivot is exactly zero (singular)."""
    n = A.shape[0]
    M = A.copy()
    inv = np.eye(n)
    for col in range(n):
        piv = col
        best = abs(M[col, col])
        for r in range(col + 1, n):
            if abs(M[r, col]) > best:
                best = abs(M[r, col])
                piv = r
        if not (best > 0.0):
            return 1, inv
        if piv != col:
            for k in range(n):
                t = M[col, k]
                M[col, k] = M[piv, k]
                M[piv, k] = t
                t = inv[col, k]
                inv[col, k] = inv[piv, k]
                inv[piv, k] = t
        d = 1.0 / M[col, col]
        for k in range(n):
            M[col, k] *= d
            inv[col, k] *= d
        for r in range(n):
            if r == col:
                continue
            f = M[r, col]
            if f != 0.0:
                for k in range(n):
                    M[r, k] -= f * M[col, k]
                    inv[r, k] -= f * inv[col, k]
    return 0, inv


@njit(cache=True, error_model="numpy")
def covariance(JtJ):
    """(status, cov, err) from the normal matrix: status 0 ok, 1 singular,
    2 not positive (a non-finite entry or a non-positive variance)."""
    n = JtJ.shape[0]
    st, c = invert(JtJ)
    cov = np.empty((n, n))
    err = np.empty(n)
    if st != 0:
        return 1, cov, err
    for i in range(n):
        for j in range(n):
            if not math.isfinite(c[i, j]):
                return 2, cov, err
        if not (c[i, i] > 0.0):
            return 2, cov, err
    for i in range(n):
        for j in range(n):
            cov[i, j] = 0.5 * (c[i, j] + c[j, i])
        err[i] = math.sqrt(cov[i, i])
    return 0, cov, err
