"""Numba kernel for the joint MOF fit: one member's convolved model on one stamp
and its per-pixel derivatives (the member's block of the group Jacobian).

Same model algebra as ``gmix.render_nb.fit_eval`` (whose component builder, row
recurrences and derivative passes it reuses), but it keeps the per-pixel
derivative rows instead of reducing them to J^T J, because in a joint fit the
residual of a pixel is the sum of all members' models.
"""

import math

from numba import njit

from ..gmix.render_nb import (_NCOLS, _build_components, _component_row, _fill_row_exp,
                              _row_a, _row_quadratic, _row_range, scatter_normal)

import numpy as np


@njit(cache=True, inline="always", error_model="numpy")
def model_and_jac(pars, kind, pvals, fvals, nshape, ndisk, band, jac, psf_tab,
                  nrow, ncol, model, J) -> int:
    """model[npix] = member model on the stamp; J[npix, nshape+1] its derivatives
    with respect to (shape parameters..., flux of ``band``).

    Returns the number of pixels touched (0 when the member does not reach the
    stamp), or -1 when the parameters are outside the model's domain.
    """
    npsf = psf_tab.shape[0]
    ngal = pvals.size
    tab = np.empty((ngal * npsf, _NCOLS))
    ncomp = _build_components(pars, kind, pvals, fvals, nshape, ndisk, band, jac, psf_tab,
                              0, npsf, tab)
    if ncomp < 0:
        return -1
    na = nshape + 1
    mrow = np.empty(ncol)
    jr = np.empty((na, ncol))
    ebuf = np.empty(ncol)
    Ak = np.empty(ncomp)
    iAk = np.empty(ncomp)
    qk = np.empty(ncomp)
    for k in range(ncomp):
        Ak[k] = _row_a(tab, k, jac)
        iAk[k] = 1.0 / Ak[k]
        qk[k] = math.exp(-Ak[k])
    touched = 0
    for r in range(nrow):
        mrow[:] = 0.0
        jr[:, :] = 0.0
        for k in range(ncomp):
            A = Ak[k]
            if not (A > 0.0):
                continue
            dv0, du0, B, C = _row_quadratic(tab, k, r, jac)
            clo, chi, c0 = _row_range(A, iAk[k], B, C, ncol)
            if clo > chi:
                continue
            _fill_row_exp(ebuf, A, B, C, clo, chi, c0, qk[k])
            # shared-shape and bdf rows: (v, u, g1, g2, T[, fracdev], this band's flux)
            _component_row(kind, tab, k, mrow, jr, ebuf, clo, chi, dv0, du0, jac)
            touched += chi - clo + 1
        base = r * ncol
        for c in range(ncol):
            model[base + c] = mrow[c]
            for a in range(na):
                J[base + c, a] = jr[a, c]
    return touched


@njit(cache=True, error_model="numpy")
def stamp_normal(x, npar, kind, pvals, fvals, nshape, ndisk, band, jac, img, sqw, nrow, ncol,
                 dk, dv, du, psf_all, pstart, pcount, JtJ, Jtr, want_jac) -> float:
    """chi2 of one stamp under the sum of the drawn members; adds the stamp's
    J^T J and J^T r into the global ``JtJ``/``Jtr`` (member k's parameters at
    ``x[k*npar:(k+1)*npar]``).  Draw d puts member ``dk[d]`` at offset
    (``dv[d]``, ``du[d]``) with PSF rows ``psf_all[pstart[d]:+pcount[d]]``.
    Returns inf when a member's parameters are outside the model's domain."""
    npix = nrow * ncol
    na = nshape + 1
    nd = dk.size
    nl = nd * na
    model = np.zeros(npix)
    Jall = np.zeros((npix, nl))
    mk = np.empty(npix)
    Jk = np.empty((npix, na))
    gidx = np.empty(nl, dtype=np.int64)
    pk = np.empty(npar)
    for d in range(nd):
        k = dk[d]
        for a in range(npar):
            pk[a] = x[k * npar + a]
        pk[0] += dv[d]
        pk[1] += du[d]
        ptab = psf_all[pstart[d]:pstart[d] + pcount[d]]
        t = model_and_jac(pk, kind, pvals, fvals, nshape, ndisk, band, jac, ptab,
                          nrow, ncol, mk, Jk)
        if t < 0:
            return math.inf
        for a in range(nshape):
            gidx[d * na + a] = k * npar + a
        gidx[d * na + nshape] = k * npar + nshape + band
        if t == 0:
            continue
        for i in range(npix):
            model[i] += mk[i]
            for a in range(na):
                Jall[i, d * na + a] = Jk[i, a]
    chi2 = 0.0
    Jl = np.zeros((nl, nl))
    Jrl = np.zeros(nl)
    for i in range(npix):
        s = sqw[i]
        if s <= 0.0:
            continue
        r = (model[i] - img[i]) * s
        chi2 += r * r
        if want_jac:
            for a in range(nl):
                ja = Jall[i, a] * s
                if ja == 0.0:
                    continue
                Jrl[a] += ja * r
                for b in range(a, nl):
                    Jl[a, b] += ja * Jall[i, b] * s
    if want_jac:
        scatter_normal(Jl, Jrl, gidx, JtJ, Jtr)
    return chi2
