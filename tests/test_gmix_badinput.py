"""Bad data give flagged results, never exceptions or hangs."""
import time

import numpy as np
import pytest

from pipeline.gmix import (DiagonalJacobian, GMix, GMixModel, Jacobian, Observation, fit_model,
                           fit_psf_flux)
from pipeline.gmix import flags as F

SCALE = 0.263


def _psf_obs():
    return Observation(np.zeros((15, 15)), jacobian=DiagonalJacobian(7, 7, SCALE),
                       gmix=GMixModel([0, 0, 0.0, 0.0, 0.6, 1.0], "turb"))


def _gal_image(rng, sigma=1.0):
    gm = GMixModel([0, 0, 0.1, 0.0, 0.9, 400.0], "exp").convolve(_psf_obs().gmix)
    im = gm.make_image((32, 32), DiagonalJacobian(15.5, 15.5, SCALE))
    return im + rng.normal(0, sigma, im.shape)


@pytest.fixture(scope="module", autouse=True)
def compiled_kernels():
    """Compile the fitting kernels first, so the timings below measure the fits:
    a fresh checkout has no numba cache and the first compilation takes ~30 s."""
    rng = np.random.default_rng(0)
    obs = Observation(_gal_image(rng), jacobian=DiagonalJacobian(15.5, 15.5, SCALE),
                      psf=_psf_obs())
    for model in ("exp", "gauss"):
        fit_model(obs, model, rng=rng)
    fit_psf_flux(obs)


def _timed(fn):
    t0 = time.perf_counter()
    res = fn()
    assert time.perf_counter() - t0 < 5.0  # generous: these fail fast
    return res


def test_nan_and_inf_pixels_are_masked_and_fit_succeeds():
    rng = np.random.default_rng(1)
    im = _gal_image(rng)
    im[3:6, 10] = np.nan
    im[20, 20] = np.inf
    obs = Observation(im, weight=np.ones_like(im), jacobian=DiagonalJacobian(15.5, 15.5, SCALE),
                      psf=_psf_obs())
    assert obs.meta['nbad'] == 4
    res = _timed(lambda: fit_model(obs, "exp", rng=rng))
    assert res["flags"] == 0
    assert res["npix"] == 32 * 32 - 4
    assert abs(res["flux"][0] - 400) < 5 * res["flux_err"][0]


def test_all_nan_image_and_zero_weight_flag_no_data():
    rng = np.random.default_rng(2)
    for im, w in [(np.full((20, 20), np.nan), None), (_gal_image(rng), np.zeros((32, 32)))]:
        obs = Observation(im, weight=w, psf=_psf_obs())
        res = _timed(lambda: fit_model(obs, "exp", rng=rng))
        assert res["flags"] & F.NO_DATA
        assert res["pars"].size == 6 and np.all(res["pars"] == F.DEFVAL)
        pf = fit_psf_flux(obs)
        assert pf["flags"] & F.NO_DATA


def test_singular_and_nonfinite_jacobian_flagged():
    rng = np.random.default_rng(3)
    im = _gal_image(rng)
    for jac in [Jacobian(15.5, 15.5, 0.263, 0.263, 0.263, 0.263),
                Jacobian(15.5, 15.5, 0.0, np.nan, 0.263, 0.0)]:
        obs = Observation(im, jacobian=jac, psf=_psf_obs())
        res = _timed(lambda: fit_model(obs, "exp", rng=rng))
        assert res["flags"] & F.BAD_JACOBIAN
        assert fit_psf_flux(obs)["flags"] & F.BAD_JACOBIAN


def test_zero_flux_psf_image_and_zero_flux_psf_mixture():
    rng = np.random.default_rng(4)
    # fitting a PSF image of zero flux (unconvolved coellip3, as a PSF fit does)
    pobs = Observation(np.zeros((25, 25)), jacobian=DiagonalJacobian(12, 12, SCALE))
    pres = _timed(lambda: fit_model(pobs, "coellip3", rng=rng))
    assert pres["flags"] != 0
    # a PSF mixture of zero flux attached to a galaxy observation
    bad = GMix(pars=[0.0, 0.0, 0.0, 0.3, 0.0, 0.3])
    for gm in [bad, GMix(pars=[1.0, 0.0, 0.0, np.nan, 0.0, 0.3])]:
        psf = Observation(np.zeros((25, 25)), gmix=gm)
        obs = Observation(_gal_image(rng), jacobian=DiagonalJacobian(15.5, 15.5, SCALE), psf=psf)
        res = _timed(lambda: fit_model(obs, "exp", rng=rng))
        assert res["flags"] & F.BAD_PSF
        assert fit_psf_flux(obs)["flags"] & F.BAD_PSF


def test_bad_epoch_is_skipped_when_others_are_good():
    rng = np.random.default_rng(5)
    good = Observation(_gal_image(rng), jacobian=DiagonalJacobian(15.5, 15.5, SCALE),
                       psf=_psf_obs())
    bad = Observation(_gal_image(rng), weight=np.zeros((32, 32)), psf=_psf_obs())
    res = fit_model([good, bad], "exp", rng=rng)
    assert res["flags"] == 0


def test_pure_noise_and_negative_images_do_not_raise():
    rng = np.random.default_rng(6)
    for im in [rng.normal(0, 1, (32, 32)), -np.abs(_gal_image(rng)), np.zeros((32, 32))]:
        obs = Observation(im, jacobian=DiagonalJacobian(15.5, 15.5, SCALE), psf=_psf_obs())
        for model in ["gauss", "exp", "bdf"]:
            res = _timed(lambda: fit_model(obs, model, rng=rng, ntry=3))
            assert isinstance(res["flags"], int)
            assert res["message"]


def test_bad_guess_and_wrong_input():
    rng = np.random.default_rng(7)
    obs = Observation(_gal_image(rng), jacobian=DiagonalJacobian(15.5, 15.5, SCALE),
                      psf=_psf_obs())
    res = fit_model(obs, "exp", guess=[0, 0, 1.5, 0, 1.0, 100.0], ntry=1)  # |g| > 1
    assert res["flags"] & F.BAD_GUESS
    # a retry starts from a perturbed, clipped guess and recovers
    res = fit_model(obs, "exp", guess=[0, 0, 1.5, 0, 1.0, 100.0], ntry=2)
    assert res["flags"] == 0
    res = fit_model(obs, "exp", guess=[0, 0, 0, 0])
    assert res["flags"] & F.BAD_INPUT
    res = fit_model([[obs], [obs]], "coellip2")
    assert res["flags"] & F.BAD_INPUT
    res = fit_model([], "exp")
    assert res["flags"] & F.BAD_INPUT
