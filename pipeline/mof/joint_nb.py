"""Numba kernel for the joint MOF fit: one member's convolved model on one stamp
and its per-pixel derivatives (the member's block of the group Jacobian).

Same model algebra as ``gmix.render_nb.fit_eval`` (whose component builder and
row recurrences it reuses), but it keeps the per-pixel derivative rows instead
of reducing them to J^T J, because in a joint fit the residual of a pixel is
the sum of all members' models.
"""

import math

from numba import njit

from ..gmix.render_nb import (KIND_BDF, _A, _B, _G1, _G2, _IUU, _IVU, _IVV, _NCOLS,
                              _PN, _TIDX, _TT, _U, _V, _build_components, _fill_row_exp,
                              _row_range)

import numpy as np


@njit(cache=True, fastmath=True, error_model="numpy")
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
    model[:] = 0.0
    J[:, :] = 0.0
    ebuf = np.empty(ncol)
    row0 = jac[0]
    col0 = jac[1]
    dvdr = jac[2]
    dvdc = jac[3]
    dudr = jac[4]
    dudc = jac[5]
    touched = 0
    for k in range(ncomp):
        ivv = tab[k, _IVV]
        ivu = tab[k, _IVU]
        iuu = tab[k, _IUU]
        A = ivv * dvdc * dvdc + 2.0 * ivu * dvdc * dudc + iuu * dudc * dudc
        if not (A > 0.0):
            continue
        q = math.exp(-A)
        pn = tab[k, _PN]
        an = tab[k, _A]
        bn = tab[k, _B]
        lt = int(tab[k, _TIDX])
        # the flux of this band is the last local parameter
        lf = na - 1
        for r in range(nrow):
            dv0 = dvdr * (r - row0) - dvdc * col0 - tab[k, _V]
            du0 = dudr * (r - row0) - dudc * col0 - tab[k, _U]
            B = 2.0 * (ivv * dv0 * dvdc + ivu * (dv0 * dudc + du0 * dvdc) + iuu * du0 * dudc)
            C = ivv * dv0 * dv0 + 2.0 * ivu * dv0 * du0 + iuu * du0 * du0
            clo, chi, c0 = _row_range(A, B, C, ncol)
            if clo > chi:
                continue
            _fill_row_exp(ebuf, A, B, C, clo, chi, c0, q)
            base = r * ncol
            for c in range(clo, chi + 1):
                ev = ebuf[c]
                pe = pn * ev
                dv = dv0 + dvdc * c
                du = du0 + dudc * c
                wv = ivv * dv + ivu * du
                wu = ivu * dv + iuu * du
                qvv = wv * wv
                qvu = wv * wu
                quu = wu * wu
                i = base + c
                model[i] += pe
                J[i, 0] += pe * wv
                J[i, 1] += pe * wu
                J[i, 2] += pe * (tab[k, _G1] * qvv + tab[k, _G1 + 1] * qvu
                                 + tab[k, _G1 + 2] * quu - tab[k, _G1 + 3])
                J[i, 3] += pe * (tab[k, _G2] * qvv + tab[k, _G2 + 1] * qvu
                                 + tab[k, _G2 + 2] * quu - tab[k, _G2 + 3])
                J[i, lt] += pe * (tab[k, _TT] * qvv + tab[k, _TT + 1] * qvu
                                  + tab[k, _TT + 2] * quu - tab[k, _TT + 3])
                J[i, lf] += an * ev
                if kind == KIND_BDF:
                    J[i, 5] += bn * ev
                touched += 1
    return touched


@njit(cache=True, fastmath=True, error_model="numpy")
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
        for a in range(nl):
            ga = gidx[a]
            Jtr[ga] += Jrl[a]
            for b in range(a, nl):
                gb = gidx[b]
                JtJ[ga, gb] += Jl[a, b]
                if gb != ga:
                    JtJ[gb, ga] += Jl[a, b]
    return chi2
