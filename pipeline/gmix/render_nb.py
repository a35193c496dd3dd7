"""Rendering and residual kernels: Gaussian mixtures evaluated on pixel grids
through a Jacobian (pixel -> (v, u) arcsec).

Speed: for a fixed row, a Gaussian's chi2 is quadratic in the column index, so
exp(-chi2/2) along the row follows a two-multiply recurrence.  Each row is
started at its peak column with one exp() and recursed outward both ways (so
the recurrence never starts from an underflowed value), and only columns with
chi2 < MAX_CHI2 = 25 are visited, as in ngmix: the omitted tail of each
component holds a fraction exp(-MAX_CHI2/2) = 3.7e-6 of its flux and no omitted
pixel exceeds that fraction of the component's peak.

Layouts: ``jac6 = [row0, col0, dvdrow, dvdcol, dudrow, dudcol]``; image values
are counts per pixel (surface brightness times pixel area) so a rendered mixture
sums to its flux.

No kernel uses fastmath: with it LLVM may reassociate, contract or reciprocate
differently depending on the compile context (a kernel compiled together with
its callees, or linked to callees loaded from the cache, gets different machine
code), so a run with a cold numba cache and one with a warm cache differed in
the last bits. Sums that must be fast are written so that IEEE arithmetic
vectorises: per-column partial sums ("lanes") reduced in a fixed order.
"""
import math

import numpy as np
from numba import njit

MAX_CHI2 = 25.0


@njit(cache=True, inline="always", error_model="numpy")
def _row_range(A, iA, B, C, ncol):
    """Column range [clo, chi] with chi2 = (A c + B) c + C < MAX_CHI2 and the start
    column c0 (nearest the minimum); clo > chi when the row is empty. iA = 1/A."""
    cpk = -0.5 * B * iA
    chimin = C + 0.5 * B * cpk
    if chimin > MAX_CHI2:
        return 1, 0, 0
    half = math.sqrt((MAX_CHI2 - chimin) * iA)
    lo = cpk - half
    hi = cpk + half
    if hi < 0.0 or lo > ncol - 1.0:
        return 1, 0, 0
    clo = max(0, int(math.ceil(lo)))
    chi = min(ncol - 1, int(math.floor(hi)))
    c0 = int(math.floor(cpk + 0.5))
    if c0 < clo:
        c0 = clo
    if c0 > chi:
        c0 = chi
    return clo, chi, c0


@njit(cache=True, inline="always", error_model="numpy")
def _fill_row_exp(ebuf, A, B, C, clo, chi, c0, q):
    """ebuf[c] = exp(-0.5 chi2(c)) for c in [clo, chi] by recurrence from c0;
    q = exp(-A)."""
    f = math.exp(-0.5 * ((A * c0 + B) * c0 + C))
    ebuf[c0] = f
    # right: f(c+1) = f(c) * exp(-0.5 (A (2c+1) + B)); the ratio itself decays by q
    rat = math.exp(-0.5 * (A * (2 * c0 + 1) + B))
    # left: f(c-1) = f(c) * exp(-0.5 (A (1-2c) - B)); that ratio at c0 is q / rat
    ratl = q / rat
    fr = f
    for c in range(c0 + 1, chi + 1):
        fr *= rat
        ebuf[c] = fr
        rat *= q
    fl = f
    for c in range(c0 - 1, clo - 1, -1):
        fl *= ratl
        ebuf[c] = fl
        ratl *= q


@njit(cache=True, inline="always", error_model="numpy")
def _model_row(mrow, A, B, C, clo, chi, c0, q, pn) -> None:
    """mrow[c] += pn exp(-chi2(c)/2) over [clo, chi] by the row recurrence."""
    f = pn * math.exp(-0.5 * ((A * c0 + B) * c0 + C))
    rat = math.exp(-0.5 * (A * (2 * c0 + 1) + B))
    ratl = q / rat
    mrow[c0] += f
    fr = f
    for c in range(c0 + 1, chi + 1):
        fr *= rat
        mrow[c] += fr
        rat *= q
    fl = f
    for c in range(c0 - 1, clo - 1, -1):
        fl *= ratl
        mrow[c] += fl
        ratl *= q


@njit(cache=True, inline="always", error_model="numpy")
def _add_gauss(image, pn, v0, u0, ivv, ivu, iuu, jac, roff, coff):
    """image += pn * exp(-chi2/2) of one Gaussian; pixel (r, c) sampled at
    (r + roff, c + coff)."""
    nrow, ncol = image.shape
    row0 = jac[0] - roff
    col0 = jac[1] - coff
    dvdr = jac[2]
    dvdc = jac[3]
    dudr = jac[4]
    dudc = jac[5]
    A = ivv * dvdc * dvdc + 2.0 * ivu * dvdc * dudc + iuu * dudc * dudc
    if not (A > 0.0):
        return
    iA = 1.0 / A
    q = math.exp(-A)
    for r in range(nrow):
        # offsets at column 0 of this row
        dv = dvdr * (r - row0) - dvdc * col0 - v0
        du = dudr * (r - row0) - dudc * col0 - u0
        B = 2.0 * (ivv * dv * dvdc + ivu * (dv * dudc + du * dvdc) + iuu * du * dudc)
        C = ivv * dv * dv + 2.0 * ivu * dv * du + iuu * du * du
        clo, chi, c0 = _row_range(A, iA, B, C, ncol)
        if clo <= chi:
            _model_row(image[r], A, B, C, clo, chi, c0, q, pn)


@njit(cache=True, error_model="numpy")
def render_gmix(data, jac, image, nsub) -> None:
    """image[:] = mixture ``data`` (GAUSS_DTYPE records) rendered through ``jac``.

    nsub > 1 averages the model over an nsub x nsub grid of sub-pixel positions
    (pixel integration); nsub = 1 samples pixel centres.
    """
    image[:, :] = 0.0
    area = abs(jac[2] * jac[5] - jac[3] * jac[4])
    nsub = max(1, nsub)
    fac = area / (nsub * nsub)
    for isr in range(nsub):
        roff = (isr + 0.5) / nsub - 0.5
        for isc in range(nsub):
            coff = (isc + 0.5) / nsub - 0.5
            for k in range(data.size):
                g = data[k]
                if g['norm'] == 0.0:
                    continue
                _add_gauss(image, g['pnorm'] * fac, g['row'], g['col'], g['ivv'],
                           g['ivu'], g['iuu'], jac, roff, coff)


@njit(cache=True, error_model="numpy")
def render_gmix_exact(data, jac, image) -> None:
    """Reference renderer: math.exp at every pixel and component (tests, no cut)."""
    nrow, ncol = image.shape
    area = abs(jac[2] * jac[5] - jac[3] * jac[4])
    for r in range(nrow):
        for c in range(ncol):
            v = jac[2] * (r - jac[0]) + jac[3] * (c - jac[1])
            u = jac[4] * (r - jac[0]) + jac[5] * (c - jac[1])
            s = 0.0
            for k in range(data.size):
                g = data[k]
                dv = v - g['row']
                du = u - g['col']
                chi2 = g['ivv'] * dv * dv + 2.0 * g['ivu'] * dv * du + g['iuu'] * du * du
                s += g['pnorm'] * math.exp(-0.5 * chi2)
            image[r, c] = s * area


@njit(cache=True, error_model="numpy")
def chi2_stats(model, image, weight):
    """(chi2, loglike, s2n_num, s2n_den, npix) over pixels with weight > 0."""
    chi2 = 0.0
    num = 0.0
    den = 0.0
    npix = 0
    nrow, ncol = image.shape
    for r in range(nrow):
        for c in range(ncol):
            w = weight[r, c]
            if w <= 0.0:
                continue
            m = model[r, c]
            d = m - image[r, c]
            chi2 += d * d * w
            num += m * image[r, c] * w
            den += m * m * w
            npix += 1
    return chi2, -0.5 * chi2, num, den, npix


@njit(cache=True, inline="always", error_model="numpy")
def gaussian_moments(image, weight, jac, v0, u0, wvv, wvu, wuu):
    """Sums of I w, I w v, I w u, I w v^2, I w v u, I w u^2 (offsets from v0, u0) with
    the Gaussian weight function of covariance [[wvv, wvu], [wvu, wuu]]; only
    pixels with weight > 0 are used."""
    det = wvv * wuu - wvu * wvu
    ivv = wuu / det
    ivu = -wvu / det
    iuu = wvv / det
    s = np.zeros(6)
    nrow, ncol = image.shape
    for r in range(nrow):
        for c in range(ncol):
            if weight[r, c] <= 0.0:
                continue
            v = jac[2] * (r - jac[0]) + jac[3] * (c - jac[1]) - v0
            u = jac[4] * (r - jac[0]) + jac[5] * (c - jac[1]) - u0
            chi2 = ivv * v * v + 2.0 * ivu * v * u + iuu * u * u
            if chi2 > MAX_CHI2:
                continue
            wi = image[r, c] * math.exp(-0.5 * chi2)
            s[0] += wi
            s[1] += wi * v
            s[2] += wi * u
            s[3] += wi * v * v
            s[4] += wi * v * u
            s[5] += wi * u * u
    return s


@njit(cache=True, error_model="numpy")
def moment_guess(image, weight, jac, Tpsf):
    """(v, u, T_obs, flux) from Gaussian-weighted moments with three adaptive
    iterations of the weight, the object's covariance C recovered from the
    measured M through M^-1 = C^-1 + W^-1; falls back to the PSF size and the
    summed flux when the moments fail."""
    scale2 = abs(jac[2] * jac[5] - jac[3] * jac[4])
    scale = math.sqrt(scale2)
    Tw = max(2.0 * Tpsf, 4.0 * scale2)
    Wvv = 0.5 * Tw
    Wuu = 0.5 * Tw
    Wvu = 0.0
    v0 = 0.0
    u0 = 0.0
    flux = 0.0
    have = False
    Cvv = Cvu = Cuu = 0.0
    for _ in range(3):
        s = gaussian_moments(image, weight, jac, v0, u0, Wvv, Wvu, Wuu)
        if not s[0] > 0:
            break
        mv = s[1] / s[0]
        mu = s[2] / s[0]
        Mvv = s[3] / s[0] - mv * mv
        Mvu = s[4] / s[0] - mv * mu
        Muu = s[5] / s[0] - mu * mu
        detM = Mvv * Muu - Mvu * Mvu
        detW = Wvv * Wuu - Wvu * Wvu
        if not (detM > 0 and Mvv > 0):
            break
        a = Muu / detM - Wuu / detW
        b = -Mvu / detM + Wvu / detW
        c = Mvv / detM - Wvv / detW
        detCi = a * c - b * b
        if detCi > 0 and a > 0:
            Cvv = c / detCi
            Cvu = -b / detCi
            Cuu = a / detCi
        else:
            Cvv = 2 * Mvv
            Cvu = 2 * Mvu
            Cuu = 2 * Muu
        if abs(mv) < 2 * scale and abs(mu) < 2 * scale:
            v0 += mv
            u0 += mu
        have = True
        detC = Cvv * Cuu - Cvu * Cvu
        flux = s[0] * math.sqrt(detC / detM) if detC > 0 else s[0]
        Wvv = Cvv
        Wvu = Cvu
        Wuu = Cuu
    if not have:
        tot = 0.0
        nrow, ncol = image.shape
        for r in range(nrow):
            for c in range(ncol):
                if weight[r, c] > 0:
                    tot += image[r, c]
        return 0.0, 0.0, max(Tpsf, 4.0 * scale2), tot
    return v0, u0, Cvv + Cuu, flux


# --------------------------------------------------------------------------
# Fit kernel: model, chi2 and the normal equations (J^T J, J^T r) of a
# parametrised model convolved with each epoch's PSF, in one pass.
# --------------------------------------------------------------------------
KIND_SHARED = 0   # gauss/turb/exp/dev/cm: [v, u, g1, g2, T, F_b...]
KIND_BDF = 1      # [v, u, g1, g2, T, fracdev, F_b...]
KIND_COELLIP = 2  # [v, u, g1, g2, T_1..T_N, F_1..F_N]

# columns of the per-component table
_PN, _A, _B, _V, _U, _IVV, _IVU, _IUU = 0, 1, 2, 3, 4, 5, 6, 7
_G1, _G2, _TT = 8, 12, 16   # each: 0.5 Dvv, Dvu, 0.5 Duu, 0.5 tr(Sigma^-1 D)
_TIDX, _FIDX = 20, 21
_NCOLS = 22


@njit(cache=True, inline="always", error_model="numpy")
def _shape_derivs(g1, g2):
    """e1, e2 and de/dg (distortion from reduced shear)."""
    gsq = g1 * g1 + g2 * g2
    f = 1.0 / (1.0 + gsq)
    e1 = 2.0 * g1 * f
    e2 = 2.0 * g2 * f
    f2 = 2.0 * f * f
    de1dg1 = f2 * (1.0 - g1 * g1 + g2 * g2)
    de1dg2 = -2.0 * f2 * g1 * g2
    de2dg1 = de1dg2
    de2dg2 = f2 * (1.0 + g1 * g1 - g2 * g2)
    return e1, e2, de1dg1, de1dg2, de2dg1, de2dg2


@njit(cache=True, inline="always", error_model="numpy")
def _set_deriv(tab, k, col, Dvv, Dvu, Duu, ivv, ivu, iuu):
    tab[k, col] = 0.5 * Dvv
    tab[k, col + 1] = Dvu
    tab[k, col + 2] = 0.5 * Duu
    tab[k, col + 3] = 0.5 * (ivv * Dvv + 2.0 * ivu * Dvu + iuu * Duu)


#: a PSF component at least this many times wider (in T) than the whole PSF
#: (a wing model's far Gaussian) is convolved with the galaxy's moment-matched
#: single Gaussian instead of with each of its components (one per profile of
#: a bdf): the convolution keeps its flux and second moments exactly, the
#: higher moments differ by ~Var(T_i) / T_far^2 of a component holding a few
#: per cent of the light, and the wide component, which spans the whole stamp
#: and costs most per pixel, is evaluated once or twice instead of 6-16 times
FAR_PSF_T_RATIO = 10.0


@njit(cache=True, inline="always", error_model="numpy")
def _profile_share(kind, disk, fd):
    """(share of the flux, its derivative in fracdev) of a bdf's disk or bulge
    components; (1, 0) for the other kinds."""
    if kind != KIND_BDF:
        return 1.0, 0.0
    if disk:
        return 1.0 - fd, -1.0
    return fd, 1.0


@njit(cache=True, inline="always", error_model="numpy")
def _put_component(tab, k, pars, q, area, F, pn, fdd, Ti, tfac, tidx, fidx,
                   Srr, Src, Scc, de1dg1, de1dg2, de2dg1, de2dg2) -> bool:
    """Row k of ``tab``: a galaxy Gaussian (T = Ti, weight pn of flux F,
    d(weight)/d(fracdev) fdd) convolved with PSF row ``q``; False if the
    convolved covariance is not positive definite."""
    irr = Ti * Srr + q[3]
    irc = Ti * Src + q[4]
    icc = Ti * Scc + q[5]
    det = irr * icc - irc * irc
    if not (det > 0.0 and irr > 0.0):
        return False
    idet = 1.0 / det
    ivv = icc * idet
    ivu = -irc * idet
    iuu = irr * idet
    norm = area * q[0] / (2.0 * math.pi * math.sqrt(det))
    tab[k, _PN] = F * pn * norm
    tab[k, _A] = pn * norm
    tab[k, _B] = F * fdd * norm
    tab[k, _V] = pars[0] + q[1]
    tab[k, _U] = pars[1] + q[2]
    tab[k, _IVV] = ivv
    tab[k, _IVU] = ivu
    tab[k, _IUU] = iuu
    _set_deriv(tab, k, _G1, -0.5 * Ti * de1dg1, 0.5 * Ti * de2dg1,
               0.5 * Ti * de1dg1, ivv, ivu, iuu)
    _set_deriv(tab, k, _G2, -0.5 * Ti * de1dg2, 0.5 * Ti * de2dg2,
               0.5 * Ti * de1dg2, ivv, ivu, iuu)
    _set_deriv(tab, k, _TT, tfac * Srr, tfac * Src, tfac * Scc, ivv, ivu, iuu)
    tab[k, _TIDX] = tidx
    tab[k, _FIDX] = fidx
    return True


@njit(cache=True, inline="always", error_model="numpy")
def _build_components(pars, kind, pvals, fvals, nshape, ndisk, band, jac, psf_tab,
                      pstart, pn_, tab) -> int:
    """Fill ``tab`` with the convolved components of one epoch; return the number
    of components, or -1 if the model is invalid here.  PSF components wider
    than FAR_PSF_T_RATIO times the PSF meet the galaxy's moment-matched
    Gaussian (per profile) rather than each of its components."""
    g1 = pars[2]
    g2 = pars[3]
    if g1 * g1 + g2 * g2 >= 1.0:
        return -1
    e1, e2, de1dg1, de1dg2, de2dg1, de2dg2 = _shape_derivs(g1, g2)
    # unit-T shape matrix and its g-derivatives, (rr, rc, cc) = (vv, vu, uu)
    Srr = 0.5 * (1.0 - e1)
    Src = 0.5 * e2
    Scc = 0.5 * (1.0 + e1)
    area = abs(jac[2] * jac[5] - jac[3] * jac[4])
    if kind == KIND_COELLIP:
        ngal = nshape - 4
    else:
        ngal = pvals.size
    fd = 0.0
    if kind == KIND_BDF:
        fd = pars[5]
    Tpsf = 0.0
    for j in range(pn_):
        q = psf_tab[pstart + j]
        Tpsf += q[0] * (q[3] + q[5])
    k = 0
    for j in range(pn_):
        q = psf_tab[pstart + j]
        if kind != KIND_COELLIP and q[3] + q[5] >= FAR_PSF_T_RATIO * Tpsf:
            # the galaxy as one Gaussian per profile (disk i < ndisk, bulge)
            nprof = 2 if kind == KIND_BDF else 1
            for prof in range(nprof):
                ilo = ndisk if prof == 1 else 0
                ihi = ndisk if (kind == KIND_BDF and prof == 0) else ngal
                fdm, fdd = _profile_share(kind, prof == 0, fd)
                psum = 0.0
                pfsum = 0.0
                for i in range(ilo, ihi):
                    psum += pvals[i]
                    pfsum += pvals[i] * fvals[i]
                if not (psum > 0.0):
                    continue
                tfac = pfsum / psum
                fidx = nshape + band
                if not _put_component(tab, k, pars, q, area, pars[fidx], psum * fdm,
                                      psum * fdd, tfac * pars[4], tfac, 4, fidx,
                                      Srr, Src, Scc, de1dg1, de1dg2, de2dg1, de2dg2):
                    return -1
                k += 1
            continue
        for i in range(ngal):
            if kind == KIND_COELLIP:
                tidx = 4 + i
                tfac = 1.0
                fidx = nshape + i
                pn = 1.0
                fdd = 0.0
            else:
                tidx = 4
                tfac = fvals[i]
                fidx = nshape + band
                fdm, fdd = _profile_share(kind, i < ndisk, fd)
                pn = pvals[i] * fdm
                fdd *= pvals[i]
            if not _put_component(tab, k, pars, q, area, pars[fidx], pn, fdd,
                                  tfac * pars[tidx], tfac, tidx, fidx,
                                  Srr, Src, Scc, de1dg1, de1dg2, de2dg1, de2dg2):
                return -1
            k += 1
    return k


@njit(cache=True, inline="always", error_model="numpy")
def _deriv_rows(mrow, jr, ebuf, clo, chi, pn, an, dv0, du0, dvdc, dudc, ivv, ivu, iuu,
                h1v, h1vu, h1u, t1, h2v, h2vu, h2u, t2, hTv, hTvu, hTu, tT, lt, lf) -> None:
    """Add one component over [clo, chi] to the model row and to the derivative
    rows 0..3 = d/d(v, u, g1, g2), lt = d/dT (or T_i) and lf = d/dF (or F_i) of
    ``jr`` (layout [parameter, column])."""
    # along the row w = Sigma^-1 (dv, du) is linear in the column i and the
    # derivative factors are polynomials in i: their coefficients per row
    # leave 2-3 multiply-adds per pixel and factor instead of ~10
    dvs = dv0 + dvdc * clo
    dus = du0 + dudc * clo
    wv0 = ivv * dvs + ivu * dus
    wv1 = ivv * dvdc + ivu * dudc
    wu0 = ivu * dvs + iuu * dus
    wu1 = ivu * dvdc + iuu * dudc
    # q_vv = wv^2, q_vu = wv wu, q_uu = wu^2 as c0 + c1 i + c2 i^2
    vv0, vv1, vv2 = wv0 * wv0, 2.0 * wv0 * wv1, wv1 * wv1
    vu0, vu1, vu2 = wv0 * wu0, wv0 * wu1 + wv1 * wu0, wv1 * wu1
    uu0, uu1, uu2 = wu0 * wu0, 2.0 * wu0 * wu1, wu1 * wu1
    a0 = h1v * vv0 + h1vu * vu0 + h1u * uu0 - t1
    a1 = h1v * vv1 + h1vu * vu1 + h1u * uu1
    a2 = h1v * vv2 + h1vu * vu2 + h1u * uu2
    b0 = h2v * vv0 + h2vu * vu0 + h2u * uu0 - t2
    b1 = h2v * vv1 + h2vu * vu1 + h2u * uu1
    b2 = h2v * vv2 + h2vu * vu2 + h2u * uu2
    c0 = hTv * vv0 + hTvu * vu0 + hTu * uu0 - tT
    c1 = hTv * vv1 + hTvu * vu1 + hTu * uu1
    c2 = hTv * vv2 + hTvu * vu2 + hTu * uu2
    e = ebuf[clo:chi + 1]
    m = mrow[clo:chi + 1]
    j0 = jr[0, clo:chi + 1]
    j1 = jr[1, clo:chi + 1]
    j2 = jr[2, clo:chi + 1]
    j3 = jr[3, clo:chi + 1]
    jt = jr[lt, clo:chi + 1]
    jf = jr[lf, clo:chi + 1]
    for i in range(chi + 1 - clo):
        ev = e[i]
        pe = pn * ev
        x = float(i)
        m[i] += pe
        j0[i] += pe * (wv0 + wv1 * x)
        j1[i] += pe * (wu0 + wu1 * x)
        j2[i] += pe * (a0 + (a1 + a2 * x) * x)
        j3[i] += pe * (b0 + (b1 + b2 * x) * x)
        jt[i] += pe * (c0 + (c1 + c2 * x) * x)
        jf[i] += an * ev


@njit(cache=True, inline="always", error_model="numpy")
def _row_stats(mrow, img, sqw, base, ncol, rbuf, lst) -> None:
    """Add one image row to the per-column sums ``lst`` = (chi2, s2n_num, s2n_den,
    npix) over pixels with sqrt(weight) > 0; rbuf = residuals (model - data)
    sqrt(w) and mrow = sqrt(w) (0 on skipped pixels). Branch-free, so it
    vectorises; per-column sums need no reassociation."""
    for c in range(ncol):
        s = sqw[base + c]
        ok = s > 0.0
        m = mrow[c]
        d = img[base + c]
        res = (m - d) * s if ok else 0.0
        w = s * s if ok else 0.0
        md = m * d if ok else 0.0
        mm = m * m if ok else 0.0
        lst[0, c] += res * res
        lst[1, c] += md * w
        lst[2, c] += mm * w
        lst[3, c] += 1.0 if ok else 0.0
        rbuf[c] = res
        mrow[c] = s if ok else 0.0


@njit(cache=True, inline="always", error_model="numpy")
def _row_jac_lanes(jr, na, sqw_row, rbuf, lo, hi, ljj, ljr) -> None:
    """Add one row's J^T J (upper triangle, pair p = (a, b >= a) in row order) and
    J^T r to the per-column sums ``ljj``, ``ljr`` over the columns [lo, hi] where
    the model has derivatives (elsewhere J is 0); jr is scaled by sqrt(w) here."""
    n = hi + 1 - lo
    s = sqw_row[lo:hi + 1]
    r = rbuf[lo:hi + 1]
    for a in range(na):
        ja = jr[a, lo:hi + 1]
        for i in range(n):
            ja[i] *= s[i]
    p = 0
    for a in range(na):
        ja = jr[a, lo:hi + 1]
        la = ljr[a, lo:hi + 1]
        for i in range(n):
            la[i] += ja[i] * r[i]
        for b in range(a, na):
            jb = jr[b, lo:hi + 1]
            lp = ljj[p, lo:hi + 1]
            for i in range(n):
                lp[i] += ja[i] * jb[i]
            p += 1


@njit(cache=True, inline="always", error_model="numpy")
def _reduce_lanes(lanes, nsum, lo, hi, out) -> None:
    """out[k] = sum of lanes[k, lo..hi] for k < nsum, in column order (the
    k-inner loop keeps the sums independent, so no reassociation is needed)."""
    for k in range(nsum):
        out[k] = 0.0
    for c in range(lo, hi + 1):
        for k in range(nsum):
            out[k] += lanes[k, c]


@njit(cache=True, inline="always", error_model="numpy")
def scatter_normal(Jl, Jrl, idx, JtJ, Jtr) -> None:
    """Add local normal equations (upper triangle of ``Jl``, and ``Jrl``) into the
    global ones; local parameter a is global ``idx[a]`` (two local parameters may
    share a global one: both triangle halves then land on it)."""
    n = idx.size
    for a in range(n):
        ga = idx[a]
        Jtr[ga] += Jrl[a]
        for b in range(a, n):
            gb = idx[b]
            JtJ[ga, gb] += Jl[a, b]
            if b != a:
                JtJ[gb, ga] += Jl[a, b]


@njit(cache=True, inline="always", error_model="numpy")
def _row_a(tab, k, jac) -> float:
    """A of component k's chi2 = A c^2 + B c + C along any image row."""
    dvdc = jac[3]
    dudc = jac[5]
    return (tab[k, _IVV] * dvdc * dvdc + 2.0 * tab[k, _IVU] * dvdc * dudc
            + tab[k, _IUU] * dudc * dudc)


@njit(cache=True, inline="always", error_model="numpy")
def _row_quadratic(tab, k, r, jac):
    """Component k along image row r: the (v, u) offsets of column 0 from its
    centre and B, C of its chi2 = A c^2 + B c + C in the column c."""
    ivv = tab[k, _IVV]
    ivu = tab[k, _IVU]
    iuu = tab[k, _IUU]
    dvdc = jac[3]
    dudc = jac[5]
    dv0 = jac[2] * (r - jac[0]) - dvdc * jac[1] - tab[k, _V]
    du0 = jac[4] * (r - jac[0]) - dudc * jac[1] - tab[k, _U]
    B = 2.0 * (ivv * dv0 * dvdc + ivu * (dv0 * dudc + du0 * dvdc) + iuu * du0 * dudc)
    C = ivv * dv0 * dv0 + 2.0 * ivu * dv0 * du0 + iuu * du0 * du0
    return dv0, du0, B, C


@njit(cache=True, inline="always", error_model="numpy")
def _component_row(kind, tab, k, mrow, jr, ebuf, clo, chi, dv0, du0, jac) -> None:
    """Add component k's model (``mrow``) and derivative rows (``jr``, layout
    [parameter, column]) over columns [clo, chi]; ``ebuf`` holds its exponentials.
    Local rows: shared (v, u, g1, g2, T, F), bdf (v, u, g1, g2, T, fracdev, F),
    coellip the global parameters (T_i and F_i rows per component)."""
    if kind == KIND_COELLIP:
        lt = int(tab[k, _TIDX])
        lf = int(tab[k, _FIDX])
    elif kind == KIND_BDF:
        lt = 4
        lf = 6
    else:
        lt = 4
        lf = 5
    _deriv_rows(mrow, jr, ebuf, clo, chi, tab[k, _PN], tab[k, _A], dv0, du0,
                jac[3], jac[5], tab[k, _IVV], tab[k, _IVU], tab[k, _IUU],
                tab[k, _G1], tab[k, _G1 + 1], tab[k, _G1 + 2], tab[k, _G1 + 3],
                tab[k, _G2], tab[k, _G2 + 1], tab[k, _G2 + 2], tab[k, _G2 + 3],
                tab[k, _TT], tab[k, _TT + 1], tab[k, _TT + 2], tab[k, _TT + 3], lt, lf)
    if kind == KIND_BDF:
        bn = tab[k, _B]
        e = ebuf[clo:chi + 1]
        jd = jr[5, clo:chi + 1]
        for i in range(chi + 1 - clo):
            jd[i] += bn * e[i]


@njit(cache=True, error_model="numpy")
def fit_eval(pars, kind, pvals, fvals, nshape, ndisk, img, sqw, ep_info, ep_jac,
             psf_tab, JtJ, Jtr, stats, want_jac) -> int:
    """chi2 = sum w (model - data)^2 over all epochs and, if ``want_jac``, the
    normal matrix J^T J and J^T r (r = (model - data) sqrt(w)).

    img, sqw: flat pixel arrays of all epochs; ep_info[e] = (offset, nrow, ncol,
    band, psf_start, psf_n); ep_jac[e] = jac6; psf_tab rows = (p, dv, du, irr,
    irc, icc) with p summing to 1 per epoch and (dv, du) relative to the PSF
    centroid.  stats = (chi2, s2n_num, s2n_den, npix).  Returns 0, or 1 if the
    parameters are outside the model's domain.

    Per image row the model and its derivative rows are built component by
    component (row recurrences, columns within chi2 < MAX_CHI2 only) and added
    to per-column sums of the chi2 statistics and of the epoch's local normal
    equations (shape parameters and the epoch's band flux); those are reduced
    per epoch and scattered into the global ones.
    """
    npar = pars.size
    nep = ep_info.shape[0]
    if want_jac:
        JtJ[:, :] = 0.0
        Jtr[:] = 0.0
    # local parameter space per epoch: shape params + this band's flux
    if kind == KIND_COELLIP:
        na = npar
    else:
        na = nshape + 1
    npair = na * (na + 1) // 2
    act = np.empty(na, dtype=np.int64)
    maxcomp = 0
    maxcol = 0
    for e in range(nep):
        maxcol = max(maxcol, ep_info[e, 2])
        maxcomp = max(maxcomp, ep_info[e, 5])
    ngal = (nshape - 4) if kind == KIND_COELLIP else pvals.size
    tab = np.empty((ngal * maxcomp, _NCOLS))
    mrow = np.empty(maxcol)
    ebuf = np.empty(maxcol)
    rbuf = np.empty(maxcol)
    jr = np.zeros((na, maxcol))
    Ak = np.empty(ngal * maxcomp)
    iAk = np.empty(ngal * maxcomp)
    qk = np.empty(ngal * maxcomp)
    lst = np.zeros((4, maxcol))
    ljj = np.empty((npair, maxcol))
    ljr = np.empty((na, maxcol))
    Jl = np.zeros((na, na))
    pairs = np.empty(npair)
    Jrl = np.empty(na)
    return _eval_epochs(pars, kind, pvals, fvals, nshape, ndisk, img, sqw, ep_info, ep_jac,
                        psf_tab, JtJ, Jtr, stats, want_jac, act, tab, mrow, ebuf, rbuf, jr,
                        Ak, iAk, qk, lst, ljj, ljr, Jl, pairs, Jrl)


@njit(cache=True, error_model="numpy", _nrt=False)
def _eval_epochs(pars, kind, pvals, fvals, nshape, ndisk, img, sqw, ep_info, ep_jac, psf_tab,
                 JtJ, Jtr, stats, want_jac, act, tab, mrow, ebuf, rbuf, jr,
                 Ak, iAk, qk, lst, ljj, ljr, Jl, pairs, Jrl) -> int:
    """The body of fit_eval on its preallocated buffers.  Compiled without the
    reference-counting runtime: nothing here allocates, and the views and
    inlined helpers of the pixel loops would otherwise cost two atomic
    reference-count updates per array per component row (~40% of the time)."""
    nep = ep_info.shape[0]
    na = jr.shape[0]        # local parameters per epoch
    npair = ljj.shape[0]    # their pairs
    maxcol = mrow.size
    for e in range(nep):
        off = ep_info[e, 0]
        nrow = ep_info[e, 1]
        ncol = ep_info[e, 2]
        band = ep_info[e, 3]
        jac = ep_jac[e]
        ncomp = _build_components(pars, kind, pvals, fvals, nshape, ndisk, band, jac,
                                  psf_tab, ep_info[e, 4], ep_info[e, 5], tab)
        if ncomp < 0:
            return 1
        if kind == KIND_COELLIP:
            for a in range(na):
                act[a] = a
        else:
            for a in range(nshape):
                act[a] = a
            act[nshape] = nshape + band
        if want_jac:
            ljj[:, :ncol] = 0.0
            ljr[:, :ncol] = 0.0
        # chi2 along a row is A c^2 + B c + C; A and the recurrence factor
        # exp(-A) are constant per component
        for k in range(ncomp):
            Ak[k] = _row_a(tab, k, jac)
            iAk[k] = 1.0 / Ak[k]
            qk[k] = math.exp(-Ak[k])
        elo = ncol
        ehi = -1
        for r in range(nrow):
            mrow[:ncol] = 0.0
            lo = ncol
            hi = -1
            for k in range(ncomp):
                A = Ak[k]
                dv0, du0, B, C = _row_quadratic(tab, k, r, jac)
                clo, chi, c0 = _row_range(A, iAk[k], B, C, ncol)
                if clo > chi:
                    continue
                if not want_jac:
                    _model_row(mrow, A, B, C, clo, chi, c0, qk[k], tab[k, _PN])
                    continue
                lo = min(lo, clo)
                hi = max(hi, chi)
                _fill_row_exp(ebuf, A, B, C, clo, chi, c0, qk[k])
                _component_row(kind, tab, k, mrow, jr, ebuf, clo, chi, dv0, du0, jac)
            _row_stats(mrow, img, sqw, off + r * ncol, ncol, rbuf, lst)
            if lo <= hi:
                _row_jac_lanes(jr, na, mrow, rbuf, lo, hi, ljj, ljr)
                jr[:, lo:hi + 1] = 0.0
                elo = min(elo, lo)
                ehi = max(ehi, hi)
        if want_jac and elo <= ehi:
            _reduce_lanes(ljj, npair, elo, ehi, pairs)
            _reduce_lanes(ljr, na, elo, ehi, Jrl)
            p = 0
            for a in range(na):
                for b in range(a, na):
                    Jl[a, b] = pairs[p]
                    p += 1
            scatter_normal(Jl, Jrl, act, JtJ, Jtr)
    _reduce_lanes(lst, 4, 0, maxcol - 1, stats)
    return 0
