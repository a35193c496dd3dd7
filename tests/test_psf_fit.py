"""PSF fitting (admom, LM gauss/turb/coellipN, EM) against galsim-drawn truth."""

import time

import galsim
import numpy as np
import pytest

from pipeline.gmix import DiagonalJacobian, Jacobian, MultiBandObsList, ObsList, Observation
from pipeline.gmix.admom import admom
from pipeline.gmix.em import fit_em
from pipeline.gmix.flags import PSF_FIT_FAILURE
from pipeline.gmix.psf import fit_psf, fit_psfs

SCALE = 0.263


def _psf_obs(prof, n=25, method="auto", jac=None):
    if jac is None:
        im = prof.drawImage(nx=n, ny=n, scale=SCALE, method=method).array
        jac = DiagonalJacobian(row=(n - 1) / 2, col=(n - 1) / 2, scale=SCALE)
    else:
        wcs = galsim.JacobianWCS(jac.dudcol, jac.dudrow, jac.dvdcol, jac.dvdrow)
        im = prof.drawImage(nx=n, ny=n, wcs=wcs, method=method).array
    return Observation(im, jacobian=jac)


def _gauss_truth(sigma, g1, g2):
    """T of a galsim Gaussian sheared by (g1, g2): shear keeps the area."""
    gsq = g1 * g1 + g2 * g2
    return 2 * sigma ** 2 * (1 + gsq) / (1 - gsq)


# noise-free images: errors come only from the convergence tolerances
# (admom Ttol=1e-3 on T, etol=1e-5 on e) and from sampling a 0.4" Gaussian
# with 0.263" pixels (negligible)
@pytest.mark.parametrize("model", ["admom", "gauss", "em1"])
def test_gaussian_psf_recovered(model):
    sigma, g1, g2 = 0.4, 0.05, -0.03
    obs = _psf_obs(galsim.Gaussian(sigma=sigma).shear(g1=g1, g2=g2), method="no_pixel")
    res = fit_psf(obs, model)
    assert res["flags"] == 0
    T = _gauss_truth(sigma, g1, g2)
    assert abs(res["T"] / T - 1) < 1e-3, (res["T"], T)
    assert np.allclose(res["g"], [g1, g2], atol=1e-4), res["g"]
    assert obs.gmix is not None and abs(obs.gmix.get_flux() - 1.0) < 1e-3


def test_gaussian_psf_general_jacobian():
    """A sheared, rotated pixel grid: the fit is in (v, u) and must not see the grid."""
    sigma, g1, g2 = 0.45, -0.04, 0.06
    obs = _psf_obs(galsim.Gaussian(sigma=sigma).shear(g1=g1, g2=g2), method="no_pixel",
                   jac=Jacobian(row=12, col=12, dudrow=0.03, dudcol=0.26, dvdrow=0.27,
                                dvdcol=-0.02))
    for model in ("admom", "gauss", "em1"):
        res = fit_psf(obs, model)
        assert res["flags"] == 0, model
        assert abs(res["T"] / _gauss_truth(sigma, g1, g2) - 1) < 1e-3, model
        assert np.allclose(res["g"], [g1, g2], atol=1e-4), (model, res["g"])


def test_admom_moffat_matches_hsm():
    prof = galsim.Moffat(beta=3.5, fwhm=0.9).shear(g1=0.03, g2=0.02)
    obs = _psf_obs(prof, n=33)
    res = admom(obs)
    hsm = galsim.hsm.FindAdaptiveMom(galsim.Image(obs.image, scale=SCALE))
    # HSM's sigma is det(M)^(1/4); T follows from it and the shape
    T_hsm = _gauss_truth(hsm.moments_sigma * SCALE, hsm.observed_shape.g1,
                         hsm.observed_shape.g2)
    # both iterate to the same fixed point; admom stops at |dT/T| < 1e-3
    assert res["flags"] == 0
    assert abs(res["T"] / T_hsm - 1) < 1e-3, (res["T"], T_hsm)
    assert np.allclose(res["g"], [hsm.observed_shape.g1, hsm.observed_shape.g2], atol=2e-4)
    assert res["numiter"] < 50


def test_admom_noisy_gaussian_unbiased():
    """At S/N ~ 100 the admom T scatter is ~1%; the mean over 100 fields must
    agree with the truth within a few times the standard error."""
    rng = np.random.default_rng(3)
    sigma = 0.5
    prof = galsim.Gaussian(sigma=sigma)
    im0 = prof.drawImage(nx=31, ny=31, scale=SCALE, method="no_pixel").array
    noise = np.sqrt((im0 ** 2).sum()) / 100.0
    jac = DiagonalJacobian(row=15, col=15, scale=SCALE)
    Ts = []
    for _ in range(100):
        obs = Observation(im0 + rng.normal(0, noise, im0.shape),
                          weight=np.full(im0.shape, noise ** -2), jacobian=jac)
        res = admom(obs)
        assert res["flags"] == 0
        Ts.append(res["T"])
    Ts = np.array(Ts)
    err = Ts.std() / np.sqrt(Ts.size)
    assert abs(Ts.mean() - 2 * sigma ** 2) < 4 * err + 1e-3 * Ts.mean(), (Ts.mean(), err)


@pytest.mark.parametrize("model, max_resid", [("coellip3", 0.01), ("em3", 0.01)])
def test_moffat_multi_gauss_residuals(model, max_resid):
    """Three Gaussians describe a Moffat to better than 1% of the flux in
    sum |residual| (a single Gaussian leaves > 10%)."""
    prof = galsim.Moffat(beta=3.5, fwhm=0.9).shear(g1=0.02, g2=0.01)
    obs = _psf_obs(prof)
    res = fit_psf(obs, model, rng=np.random.default_rng(1))
    assert res["flags"] == 0
    model_im = obs.gmix.make_image(obs.image.shape, obs.jacobian)
    frac = np.abs(model_im - obs.image).sum() / obs.image.sum()
    assert frac < max_resid, frac
    one = fit_psf(_psf_obs(prof), "gauss")
    one_im = one["gmix"].make_image(obs.image.shape, obs.jacobian)
    assert np.abs(one_im - obs.image).sum() / obs.image.sum() > 5 * frac
    # the shape of a sheared round profile is the applied shear
    assert np.allclose(res["g"], [0.02, 0.01], atol=2e-3), res["g"]


def test_turb_and_coellip2_ok():
    prof = galsim.Kolmogorov(fwhm=0.9).shear(g1=-0.02, g2=0.03)
    for model in ("turb", "coellip2"):
        obs = _psf_obs(prof)
        res = fit_psf(obs, model, rng=np.random.default_rng(2))
        assert res["flags"] == 0, model
        assert np.allclose(res["g"], [-0.02, 0.03], atol=3e-3), (model, res["g"])


def test_em_converges():
    prof = galsim.Moffat(beta=3.5, fwhm=0.9)
    obs = _psf_obs(prof)
    res = fit_em(obs, 3, maxiter=2000, tol=1e-6, rng=np.random.default_rng(5))
    assert res["flags"] == 0
    assert res["numiter"] < 2000
    assert res["fdiff"] < 1e-6
    # restarting from the converged mixture changes nothing (a fixed point)
    again = fit_em(obs, 3, maxiter=2000, tol=1e-6, guess=res["pars"])
    assert again["flags"] == 0
    assert abs(again["T"] / res["T"] - 1) < 1e-4
    assert again["numiter"] < res["numiter"]


def _bad_psfs():
    good = galsim.Gaussian(sigma=0.4).drawImage(nx=25, ny=25, scale=SCALE).array
    jac = DiagonalJacobian(row=12, col=12, scale=SCALE)
    yield "zero flux", Observation(np.zeros((25, 25)), jacobian=jac)
    yield "negative flux", Observation(-good, jacobian=jac)
    yield "all NaN", Observation(np.full((25, 25), np.nan), jacobian=jac)
    yield "zero weight", Observation(good, weight=np.zeros((25, 25)), jacobian=jac)
    yield "singular jacobian", Observation(
        good, jacobian=Jacobian(row=12, col=12, dudrow=0.0, dudcol=0.0, dvdrow=0.0, dvdcol=0.0))
    yield "inf pixels", Observation(np.where(good > good.max() / 2, np.inf, good), jacobian=jac)


@pytest.mark.parametrize("model", ["admom", "gauss", "coellip3", "em3", "coellip3+wing",
                                   "em3+wing"])
def test_bad_psf_input_flagged(model):
    for name, obs in _bad_psfs():
        t0 = time.time()
        res = fit_psf(obs, model, rng=np.random.default_rng(0))
        dt = time.time() - t0
        if name == "inf pixels":
            # inf pixels are zero-weighted by Observation; the rest may still fit
            assert res["flags"] in (0, PSF_FIT_FAILURE)
        else:
            assert res["flags"] & PSF_FIT_FAILURE, (model, name)
            assert obs.gmix is None
        assert dt < 5.0, (model, name, dt)


def test_fit_psfs_multiband_multiepoch():
    fwhms = [[0.8, 1.0], [0.9, 1.1]]
    rng = np.random.default_rng(4)
    bands = []
    for band in fwhms:
        ol = ObsList()
        for fwhm in band:
            psf = _psf_obs(galsim.Gaussian(fwhm=fwhm), method="no_pixel")
            ol.append(Observation(np.zeros((32, 32)), jacobian=DiagonalJacobian(15.5, 15.5, SCALE),
                                  psf=psf))
        bands.append(ol)
    # a broken epoch in band 1
    bands[1].append(Observation(np.zeros((32, 32)), jacobian=DiagonalJacobian(15.5, 15.5, SCALE),
                                psf=Observation(np.zeros((25, 25)))))
    mb = MultiBandObsList(bands)
    res = fit_psfs(mb, model="gauss", rng=rng)
    assert [len(b) for b in res] == [2, 3]
    for b, band in enumerate(fwhms):
        for e, fwhm in enumerate(band):
            sigma = fwhm / 2.3548200450309493
            assert res[b][e]["flags"] == 0
            assert abs(mb[b][e].psf.gmix.get_T() / (2 * sigma ** 2) - 1) < 1e-3
    assert res[1][2]["flags"] & PSF_FIT_FAILURE
    assert mb[1][2].psf.gmix is None


def test_fit_pars_options():
    """psf_pars.fit_pars options reach the fitters; unknown ones are config errors."""
    from pipeline.errors import ConfigError
    prof = galsim.Moffat(beta=3.5, fwhm=0.9)
    loose = fit_psf(_psf_obs(prof), "em3", tol=1e-3, rng=np.random.default_rng(1))
    tight = fit_psf(_psf_obs(prof), "em3", tol=1e-7, maxiter=5000, rng=np.random.default_rng(1))
    assert loose["flags"] == 0 and tight["flags"] == 0
    assert loose["numiter"] < tight["numiter"]
    # an LM fit limited to 1 iteration cannot converge
    assert fit_psf(_psf_obs(prof), "coellip3", maxfev=1, ntry=1)["flags"] & PSF_FIT_FAILURE
    assert fit_psf(_psf_obs(prof), "coellip3", maxfev=2000)["flags"] == 0
    with pytest.raises(ConfigError, match="tol"):
        fit_psf(_psf_obs(prof), "coellip3", tol=1e-3)
