"""Gaussian mixtures, models, Jacobians, observations and the rendering /
derivative kernels, checked against formulas, numpy and galsim."""
import math

import galsim
import numpy as np
import pytest

from pipeline.errors import ConfigError
from pipeline.gmix import (DiagonalJacobian, GMix, GMixModel, Jacobian, MultiBandObsList,
                           Observation, get_mb_obs, get_model)
from pipeline.gmix import render_nb
from pipeline.gmix.maxlike import _Packed
from pipeline.gmix.models import PVALS_DEV, PVALS_EXP, FVALS_DEV, FVALS_EXP

JAC = Jacobian(row=20.3, col=18.7, dudrow=0.02, dudcol=0.26, dvdrow=0.27, dvdcol=-0.015)


def numpy_image(gm: GMix, shape, jac: Jacobian) -> np.ndarray:
    """Direct numpy evaluation of a mixture (independent of the kernels)."""
    rows, cols = np.mgrid[0:shape[0], 0:shape[1]].astype(float)
    v, u = jac.get_vu(rows, cols)
    out = np.zeros(shape)
    for g in gm.data:
        C = np.array([[g['irr'], g['irc']], [g['irc'], g['icc']]])
        Ci = np.linalg.inv(C)
        dv = v - g['row']
        du = u - g['col']
        chi2 = Ci[0, 0] * dv ** 2 + 2 * Ci[0, 1] * dv * du + Ci[1, 1] * du ** 2
        out += g['p'] / (2 * np.pi * np.sqrt(np.linalg.det(C))) * np.exp(-0.5 * chi2)
    return out * jac.get_area()


@pytest.mark.parametrize("model", ["gauss", "turb", "exp", "dev", "bdf"])
def test_model_moments_match_parameters(model):
    pars = [0.1, -0.2, 0.3, -0.2, 1.7, 250.0]
    if model == "bdf":
        pars = [0.1, -0.2, 0.3, -0.2, 1.7, 0.35, 250.0]
    gm = GMixModel(pars, model)
    g1, g2, T = gm.get_g1g2T()
    assert gm.get_flux() == pytest.approx(250.0, rel=1e-12)
    assert T == pytest.approx(1.7, rel=1e-12)
    assert (g1, g2) == pytest.approx((0.3, -0.2), abs=1e-12)
    assert gm.get_cen() == pytest.approx((0.1, -0.2), abs=1e-14)


def test_gauss_moments_formula_and_coefficient_normalisation():
    g1, g2, T = 0.2, 0.1, 2.0
    gm = GMixModel([0, 0, g1, g2, T, 1.0], "gauss")
    gsq = g1 * g1 + g2 * g2
    e1, e2 = 2 * g1 / (1 + gsq), 2 * g2 / (1 + gsq)
    d = gm.data[0]
    assert d['irr'] == pytest.approx(T / 2 * (1 - e1))
    assert d['icc'] == pytest.approx(T / 2 * (1 + e1))
    assert d['irc'] == pytest.approx(T / 2 * e2)
    for p, f in [(PVALS_EXP, FVALS_EXP), (PVALS_DEV, FVALS_DEV)]:
        assert p.sum() == pytest.approx(1.0, abs=1e-14)
        assert np.sum(p * f) == pytest.approx(1.0, abs=1e-14)


def test_cm_T_is_whole_mixture():
    spec = get_model("cm", fracdev=0.3, TdByTe=2.0)
    gm = GMixModel([0, 0, 0.1, 0.0, 1.2, 10.0], spec)
    assert gm.get_T() == pytest.approx(1.2, rel=1e-12)
    with pytest.raises(ConfigError):
        get_model("cm")
    with pytest.raises(ConfigError, match="unknown model"):
        get_model("expp")


def test_full_pars_roundtrip_and_setters():
    gm = GMixModel([0.3, 0.1, 0.1, 0.2, 1.0, 5.0, 0.5, 0.3], "coellip2")
    gm2 = GMix(pars=gm.get_full_pars())
    assert np.allclose(gm2.get_full_pars(), gm.get_full_pars())
    gm2.set_cen(1.0, -2.0)
    assert gm2.get_cen() == pytest.approx((1.0, -2.0))
    gm2.set_flux(3.0)
    assert gm2.get_flux() == pytest.approx(3.0)
    assert gm2.get_T() == pytest.approx(gm.get_T())
    assert gm.get_flux() == pytest.approx(0.8)  # copy semantics: original unchanged


def test_convolution_moments_add():
    gal = GMixModel([0.2, -0.1, 0.3, 0.1, 1.3, 7.0], "exp")
    psf = GMixModel([0.05, 0.02, -0.05, 0.08, 0.3, 0.7, 1.5, 0.5, 0.3, 0.2], "coellip3")
    conv = gal.convolve(psf)
    assert conv.size == gal.size * psf.size
    assert conv.get_flux() == pytest.approx(7.0)          # PSF normalised to unit flux
    assert conv.get_cen() == pytest.approx(gal.get_cen())  # PSF centroid removed
    for a, b, c in zip(conv.get_moments(), gal.get_moments(), psf.get_moments()):
        assert a == pytest.approx(b + c, rel=1e-12)


def test_render_matches_numpy_and_sums_to_flux():
    gal = GMixModel([0.3, -0.4, 0.25, -0.15, 1.1, 123.0], "exp")
    psf = GMixModel([0, 0, 0.0, 0.05, 0.3, 0.6, 1.2, 0.5, 0.3, 0.2], "coellip3")
    conv = gal.convolve(psf)
    shape = (41, 39)
    im = conv.make_image(shape, JAC)
    ref = numpy_image(conv, shape, JAC)
    # the kernel skips chi2 > 25: omitted pixels are < 3.7e-6 of a component's peak
    assert np.max(np.abs(im - ref)) < 4e-6 * ref.max()
    big = conv.make_image((160, 160), Jacobian(80, 80, 0.0, 0.26, 0.27, 0.0))
    assert big.sum() == pytest.approx(123.0, rel=1e-4)


def test_row_recurrence_matches_math_exp():
    rng = np.random.default_rng(4)
    for _ in range(200):
        ncol = 64
        A = rng.uniform(0.01, 3.0)
        cpk = rng.uniform(-10, 70)
        B = -2 * A * cpk
        C = A * cpk ** 2 + rng.uniform(0, 20)
        clo, chi, c0 = render_nb._row_range(A, 1.0 / A, B, C, ncol)
        if clo > chi:
            continue
        ebuf = np.zeros(ncol)
        render_nb._fill_row_exp(ebuf, A, B, C, clo, chi, c0, math.exp(-A))
        c = np.arange(clo, chi + 1)
        exact = np.array([math.exp(-0.5 * ((A * x + B) * x + C)) for x in c])
        assert np.max(np.abs(ebuf[clo:chi + 1] / exact - 1)) < 1e-12
        # every column outside the range has chi2 > 25
        out = np.setdiff1d(np.arange(ncol), c)
        assert np.all((A * out + B) * out + C > 25 - 1e-9)


def test_render_matches_galsim_no_pixel_and_pixel_integration():
    """A sheared Gaussian drawn by galsim through a general WCS."""
    wcs = galsim.JacobianWCS(0.25, 0.03, -0.02, 0.27)  # dudx, dudy, dvdx, dvdy
    gs = galsim.Gaussian(sigma=0.5, flux=50.0).shear(g1=0.2, g2=-0.1)
    n = 32
    cen = (n - 1) / 2.0
    jac = Jacobian.from_galsim(wcs.jacobian(), row=cen, col=cen)
    # galsim's T for a sheared Gaussian: area-preserving shear
    gsq = 0.2 ** 2 + 0.1 ** 2
    T = 2 * 0.25 * (1 + gsq) / (1 - gsq)
    gm = GMixModel([0, 0, 0.2, -0.1, T, 50.0], "gauss")
    ref = gs.drawImage(nx=n, ny=n, wcs=wcs, method="no_pixel").array
    im = gm.make_image((n, n), jac)
    assert np.max(np.abs(im - ref)) < 1e-5 * ref.max()
    # pixel-integrated: nsub = 8 sub-samples vs galsim's exact pixel convolution
    ref_pix = gs.drawImage(nx=n, ny=n, wcs=wcs).array
    im8 = gm.make_image((n, n), jac, nsub=8)
    assert np.max(np.abs(im8 - ref_pix)) < 2e-3 * ref_pix.max()
    assert np.max(np.abs(im - ref_pix)) > np.max(np.abs(im8 - ref_pix))


#: a wing PSF: coellip3 plus a far Gaussian (T 30 times the core's) holding 1% of the light
_WING_PSF = GMix(pars=np.concatenate([
    GMixModel([0.02, -0.01, 0.05, -0.03, 0.25, 0.7, 1.1, 0.594, 0.297, 0.099], "coellip3")
    .get_full_pars(), [0.01, 0.01, -0.02, 9.0, 0.4, 8.0]]))


def _two_epoch_packed(model, pars, nband=1, wing=False):
    rng = np.random.default_rng(11)
    bands = []
    jacs = [JAC, Jacobian(15.2, 16.9, -0.01, 0.25, 0.26, 0.02)]
    psfs = [GMixModel([0.02, -0.01, 0.05, -0.03, 0.25, 0.7, 1.1, 0.6, 0.3, 0.1], "coellip3"),
            GMixModel([0, 0, -0.02, 0.04, 0.4, 1.0], "gauss")]
    if wing:
        psfs[0] = _WING_PSF
    for b in range(nband):
        eps = []
        for e in range(2):
            im = rng.normal(0, 1, (33, 31)) + 2.0
            w = rng.uniform(0.5, 2.0, im.shape)
            w[3, 4] = 0.0
            pobs = Observation(np.zeros((5, 5)), gmix=psfs[e])
            eps.append(Observation(im, weight=w, jacobian=jacs[e], psf=pobs))
        bands.append(eps)
    return _Packed(get_mb_obs(bands), nband)


@pytest.mark.parametrize("model,pars,nband,wing", [
    ("exp", [0.1, -0.2, 0.2, -0.3, 0.8, 40.0], 1, False),
    ("gauss", [0.1, -0.2, -0.2, 0.1, 0.5, 40.0, 25.0], 2, False),
    ("bdf", [0.1, -0.2, 0.2, 0.1, 0.8, 0.3, 40.0, 20.0], 2, False),
    ("coellip2", [0.1, -0.2, 0.2, -0.1, 0.4, 1.2, 20.0, 15.0], 1, False),
    # the far Gaussian meets the galaxy's moment-matched Gaussian and enters the
    # flux (and fracdev) derivatives only: the same tolerances hold
    ("exp", [0.1, -0.2, 0.2, -0.3, 0.8, 40.0], 1, True),
    ("bdf", [0.1, -0.2, 0.2, 0.1, 0.8, 0.3, 40.0, 20.0], 2, True),
])
def test_derivative_kernel_vs_finite_differences(model, pars, nband, wing):
    spec = get_model(model)
    kind = {"shared": 0, "bdf": 1, "coellip": 2}[spec.kind]
    packed = _two_epoch_packed(model, pars, nband, wing)
    pars = np.array(pars, dtype='f8')
    n = pars.size
    JtJ = np.zeros((n, n))
    Jtr = np.zeros(n)
    st = np.zeros(4)
    args = (kind, spec.pvals, spec.fvals, spec.nshape, spec.ndisk, packed.img, packed.sqw,
            packed.ep_info, packed.ep_jac, packed.psf_tab)

    def residuals(p):
        # independent path: GMix convolution + numpy rendering
        out = []
        for b, obslist in enumerate([[0, 1]] * nband):
            for e in range(2):
                info = packed.ep_info[b * 2 + e]
                off, nr, nc = info[0], info[1], info[2]
                gm = GMixModel(p, spec, band=b)
                psfobs = [r for r in packed.psf_tab[info[4]:info[4] + info[5]]]
                pg = GMix(pars=np.concatenate([[r[0], r[1], r[2], r[3], r[4], r[5]]
                                               for r in psfobs]))
                jac = Jacobian.__new__(Jacobian)
                jac._data = packed.ep_jac[b * 2 + e]
                model_im = numpy_image(gm.convolve(pg), (nr, nc), jac)
                img = packed.img[off:off + nr * nc]
                s = packed.sqw[off:off + nr * nc]
                out.append((model_im.ravel() - img) * s)
        return np.concatenate(out)

    assert render_nb.fit_eval(pars, *args, JtJ, Jtr, st, True) == 0
    r0 = residuals(pars)
    assert st[0] == pytest.approx(np.sum(r0 ** 2), rel=1e-5)
    J = np.zeros((r0.size, n))
    for i in range(n):
        h = 1e-6 * max(1.0, abs(pars[i]))
        pp = pars.copy()
        pm = pars.copy()
        pp[i] += h
        pm[i] -= h
        J[:, i] = (residuals(pp) - residuals(pm)) / (2 * h)
    JtJ_fd = J.T @ J
    Jtr_fd = J.T @ r0
    scale = np.sqrt(np.outer(np.diag(JtJ_fd), np.diag(JtJ_fd)))
    assert np.max(np.abs(JtJ - JtJ_fd) / scale) < 1e-4
    assert np.max(np.abs(Jtr - Jtr_fd) / np.sqrt(np.diag(JtJ_fd) * np.sum(r0 ** 2))) < 1e-4


def test_jacobian_api():
    d = dict(row0=10.2, col0=12.7, dudrow=0.01, dudcol=0.263, dvdrow=0.262, dvdcol=-0.02)
    jac = Jacobian.from_meds(d)
    assert jac.get_cen() == (10.2, 12.7)
    det = 0.01 * -0.02 - 0.263 * 0.262
    assert jac.get_det() == pytest.approx(det)
    assert jac.get_scale() == pytest.approx(math.sqrt(abs(det)))
    v, u = jac.get_vu(13.0, 9.0)
    assert (v, u) == pytest.approx((0.262 * 2.8 - 0.02 * -3.7, 0.01 * 2.8 + 0.263 * -3.7))
    r, c = jac.get_rowcol(v, u)
    assert (r, c) == pytest.approx((13.0, 9.0))
    dj = DiagonalJacobian(row=3, col=4, scale=0.2)
    assert dj.scale == pytest.approx(0.2)
    assert dj.get_vu(4, 4) == pytest.approx((0.2, 0.0))
    assert not Jacobian(0, 0, 0, 0, 0, 0).is_valid()


def test_observation_cleaning_and_normalisation():
    im = np.ones((10, 12))
    im[2, 3] = np.nan
    w = np.ones_like(im)
    w[5, 5] = np.inf
    w[6, 6] = -1
    obs = Observation(im, weight=w)
    assert obs.meta['nbad'] == 2
    assert obs.weight[2, 3] == 0 and obs.weight[5, 5] == 0 and obs.weight[6, 6] == 0
    assert np.all(np.isfinite(obs.image))
    assert obs.jacobian.get_cen() == (4.5, 5.5)
    assert Observation(im).weight.sum() == im.size - 1  # default weight ones, NaN pixel -> 0
    mb = get_mb_obs(obs)
    assert isinstance(mb, MultiBandObsList) and len(mb) == 1 and len(mb[0]) == 1
    assert [len(b) for b in get_mb_obs([obs, obs])] == [2]
    assert [len(b) for b in get_mb_obs([[obs], [obs, obs]])] == [1, 2]
    with pytest.raises(ValueError):
        Observation(im, weight=np.ones((3, 3)))
