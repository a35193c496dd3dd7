"""Fits against galsim-drawn truth: exponential galaxies convolved with a Moffat
PSF (48x48, 0.263"/pixel, T_gal = 1.5 T_psf, S/N 50), multi-epoch and
multi-band fits, PSF fits, PSF-flux fits and priors in fits."""
import math

import galsim
import numpy as np
import pytest

from pipeline.gmix import (DiagonalJacobian, Jacobian, Observation, fit_model, fit_psf_flux,
                           make_priors)

SCALE = 0.263
STAMP = 48
PSF_BETA = 3.5
PSF_FWHM = 0.9
S2N = 50.0


def moffat_T(beta: float = PSF_BETA, fwhm: float = PSF_FWHM) -> float:
    """T = <r^2> of an untruncated Moffat: r0^2 / (beta - 2)."""
    r0 = galsim.Moffat(beta=beta, fwhm=fwhm).scale_radius
    return r0 ** 2 / (beta - 2.0)


def psf_observation(wcs=None, stamp: int = 25, beta=PSF_BETA, fwhm=PSF_FWHM, rng=None):
    """A high-S/N PSF image (galsim, pixel-integrated) with a fitted coellip3 mixture."""
    wcs = wcs if wcs is not None else galsim.PixelScale(SCALE)
    psf = galsim.Moffat(beta=beta, fwhm=fwhm)
    im = psf.drawImage(nx=stamp, ny=stamp, wcs=wcs).array
    cen = (stamp - 1) / 2.0
    jac = Jacobian.from_galsim(wcs.jacobian(), row=cen, col=cen)
    pobs = Observation(im, weight=np.full(im.shape, 1.0e8), jacobian=jac)
    res = fit_model(pobs, "coellip3", rng=rng, ntry=4)
    assert res["flags"] == 0, res["message"]
    pobs.gmix = res.get_gmix()
    return pobs, res


def sim_exp(rng, nobj: int, s2n: float = S2N, psf_obs=None, flux: float = 1000.0,
            t_ratio: float = 1.5):
    """Noisy exp * Moffat stamps: list of (Observation, truth dict); galaxy T =
    t_ratio * T of the Moffat PSF; S/N = sqrt(sum(image^2)) / sigma."""
    Tpsf = moffat_T()
    Tgal = t_ratio * Tpsf
    psf = galsim.Moffat(beta=PSF_BETA, fwhm=PSF_FWHM)
    if psf_obs is None:
        psf_obs, _ = psf_observation(rng=rng)
    out = []
    cen = (STAMP - 1) / 2.0
    for _ in range(nobj):
        g = rng.normal(0.0, 0.2, size=2)
        while np.hypot(*g) > 0.6:
            g = rng.normal(0.0, 0.2, size=2)
        off = rng.uniform(-0.5, 0.5, size=2)  # pixels (x = col, y = row)
        # exponential: T = <r^2> = 6 h^2; galsim's shear keeps the area, so it
        # multiplies T by (1 + g^2) / (1 - g^2): choose h to keep T = Tgal
        gsq = g[0] ** 2 + g[1] ** 2
        h = math.sqrt(Tgal * (1 - gsq) / (1 + gsq) / 6.0)
        gal = galsim.Exponential(scale_radius=h, flux=flux).shear(g1=g[0], g2=g[1])
        im = galsim.Convolve(gal, psf).drawImage(nx=STAMP, ny=STAMP, scale=SCALE,
                                                 offset=off).array
        sigma = math.sqrt(np.sum(im ** 2)) / s2n
        noisy = im + rng.normal(0.0, sigma, size=im.shape)
        obs = Observation(noisy, weight=np.full(im.shape, 1.0 / sigma ** 2),
                          jacobian=DiagonalJacobian(cen, cen, SCALE), psf=psf_obs)
        truth = dict(flux=flux, T=Tgal, g=g, v=off[1] * SCALE, u=off[0] * SCALE)
        out.append((obs, truth))
    return out


@pytest.fixture(scope="module")
def exp_sims():
    rng = np.random.default_rng(31415)
    return sim_exp(rng, 200), rng


def test_psf_coellip3_fit_matches_moffat():
    pobs, res = psf_observation(rng=np.random.default_rng(2))
    model = res.get_gmix().make_image(pobs.image.shape, pobs.jacobian)
    # the mixture reproduces the galsim PSF image to 1% of its peak everywhere
    assert np.max(np.abs(model - pobs.image)) < 0.01 * pobs.image.max()
    # its T is within the truncation/pixel effects of the Moffat T (stamp holds the core)
    Tpix = SCALE ** 2 / 6.0
    assert abs(res["T"] - (moffat_T() + Tpix)) / moffat_T() < 0.15
    assert abs(res["flux"][0] - pobs.image.sum()) / pobs.image.sum() < 0.01


def test_exp_fit_accuracy_against_galsim(exp_sims):
    sims, rng = exp_sims
    res = [fit_model(obs, "exp", rng=rng) for obs, _ in sims]
    flags = np.array([r["flags"] for r in res])
    assert np.mean(flags == 0) >= 0.99
    ok = flags == 0
    flux = np.array([r["flux"][0] for r in res])[ok]
    ferr = np.array([r["flux_err"][0] for r in res])[ok]
    T = np.array([r["T"] for r in res])[ok]
    ftrue = sims[0][1]["flux"]
    Ttrue = sims[0][1]["T"]
    med_flux = np.median(flux / ftrue - 1)
    med_T = np.median(T / Ttrue - 1)
    pull = (flux - ftrue) / ferr
    width = 1.4826 * np.median(np.abs(pull - np.median(pull)))
    print(f"median flux error {med_flux:+.4f}, median T error {med_T:+.4f}, "
          f"pull width {width:.3f}, ok {ok.mean():.3f}")
    # flux: statistical error of the median ~ 1.25 * 2% / sqrt(200) = 0.2%
    assert abs(med_flux) < 0.01
    # T: the Hogg & Lang mixture T is 1.8% below the true exponential's at fixed r_e
    assert abs(med_T) < 0.03
    assert 0.85 < width < 1.15


def test_exp_fit_shapes_and_centres_unbiased(exp_sims):
    sims, rng = exp_sims
    sub = sims[:100]
    res = [fit_model(obs, "exp", rng=rng) for obs, _ in sub]
    dg = np.array([r["g"] - t["g"] for r, (_, t) in zip(res, sub)])
    gerr = np.array([np.sqrt(np.diag(r["g_cov"])) for r in res])
    dv = np.array([r["pars"][0] - t["v"] for r, (_, t) in zip(res, sub)])
    dverr = np.array([r["pars_err"][0] for r in res])
    # shape pulls: unbiased within 4 sigma of the mean, widths sane
    for k in range(2):
        pull = dg[:, k] / gerr[:, k]
        assert abs(np.mean(pull)) < 4 / math.sqrt(len(sub)) + 0.15
        assert 0.7 < np.std(pull) < 1.4
    # centre offsets recovered (sign conventions of v = row, u = col)
    pull = dv / dverr
    assert abs(np.median(pull)) < 0.4
    assert 0.7 < np.std(pull) < 1.4


def test_multi_epoch_multi_band_fit():
    """Two bands x two epochs with different sheared/rotated WCS and PSFs; a
    shared shape and one flux per band."""
    rng = np.random.default_rng(7)
    h = 0.35
    g_true = (0.15, -0.1)
    fluxes = [800.0, 1500.0]
    wcss = [galsim.JacobianWCS(0.26, 0.01, -0.02, 0.27),
            galsim.JacobianWCS(0.0, 0.263, 0.263, 0.0)]
    fwhms = [0.85, 1.0]
    bands = []
    for b in range(2):
        epochs = []
        for e in range(2):
            wcs = wcss[e]
            psf = galsim.Moffat(beta=PSF_BETA, fwhm=fwhms[e])
            pobs, _ = psf_observation(wcs=wcs, fwhm=fwhms[e], rng=rng)
            gal = galsim.Exponential(scale_radius=h, flux=fluxes[b]).shear(g1=g_true[0],
                                                                             g2=g_true[1])
            im = galsim.Convolve(gal, psf).drawImage(nx=STAMP, ny=STAMP, wcs=wcs).array
            sigma = math.sqrt(np.sum(im ** 2)) / 60.0
            cen = (STAMP - 1) / 2.0
            jac = Jacobian.from_galsim(wcs.jacobian(), row=cen, col=cen)
            epochs.append(Observation(im + rng.normal(0, sigma, im.shape),
                                      weight=np.full(im.shape, 1 / sigma ** 2),
                                      jacobian=jac, psf=pobs))
        bands.append(epochs)
    res = fit_model(bands, "exp", rng=rng)
    assert res["flags"] == 0, res["message"]
    assert res["pars"].size == 7
    assert abs(res["chi2per"] - 1.0) < 0.1
    # combined S/N ~ 60 * sqrt(2) per band: fluxes within 4 sigma (+1% model mismatch)
    for b in range(2):
        tol = 4 * res["flux_err"][b] + 0.01 * fluxes[b]
        assert abs(res["flux"][b] - fluxes[b]) < tol
    for k in range(2):
        assert abs(res["g"][k] - g_true[k]) < 4 * math.sqrt(res["g_cov"][k, k]) + 0.01
    gsq = g_true[0] ** 2 + g_true[1] ** 2
    assert abs(res["T"] / (6 * h * h * (1 + gsq) / (1 - gsq)) - 1) < 0.08
    # fitting band 1 alone gives a consistent flux
    res1 = fit_model(bands[1], "exp", rng=rng)
    assert abs(res1["flux"][0] - res["flux"][1]) < 3 * res1["flux_err"][0]


@pytest.mark.parametrize("model", ["gauss", "dev", "bdf", "turb"])
def test_other_models_converge(exp_sims, model):
    sims, rng = exp_sims
    obs, truth = sims[0]
    res = fit_model(obs, model, rng=rng)
    assert res["flags"] == 0, res["message"]
    assert abs(res["chi2per"] - 1) < 0.15
    # flux is well determined for any reasonable profile; dev's wings add ~20%
    tol = 0.3 if model == "dev" else 0.1
    assert abs(res["flux"][0] / truth["flux"] - 1) < tol


def test_cm_model_uses_fixed_fracdev(exp_sims):
    sims, rng = exp_sims
    obs, truth = sims[1]
    res = fit_model(obs, "cm", rng=rng, fracdev=0.2, TdByTe=1.5)
    assert res["flags"] == 0, res["message"]
    assert abs(res["flux"][0] / truth["flux"] - 1) < 0.1
    gm = res.get_gmix()
    assert abs(gm.get_T() - res["T"]) < 1e-10 * res["T"]


def test_fit_with_priors(exp_sims):
    sims, rng = exp_sims
    obs, truth = sims[2]
    prior = make_priors({"cen": {"type": "normal2d", "width": SCALE},
                         "g": {"type": "ba", "sigma": 0.3},
                         "T": {"type": "TwoSidedErf", "pars": [-1.0, 0.03, 1.0e3, 1.0e2]},
                         "counts": {"type": "TwoSidedErf", "pars": [-100.0, 1.0, 1e9, 1e8]}},
                        nband=1)
    res = fit_model(obs, "exp", prior=prior, rng=rng)
    res0 = fit_model(obs, "exp", rng=rng)
    assert res["flags"] == 0
    # weak priors: flux unchanged to a fraction of its error; g pulled towards 0
    assert abs(res["flux"][0] - res0["flux"][0]) < 0.2 * res0["flux_err"][0]
    assert np.hypot(*res["g"]) <= np.hypot(*res0["g"]) + 1e-3
    # a tight Gaussian prior on T dominates
    tight = make_priors({"T": {"type": "gauss", "mean": 0.5, "sigma": 1e-4}}, nband=1)
    rest = fit_model(obs, "exp", prior=tight, rng=rng)
    assert abs(rest["T"] - 0.5) < 5e-4


def test_bounds_respected(exp_sims):
    sims, rng = exp_sims
    obs, _ = sims[3]
    lo = [None] * 6
    res = fit_model(obs, "exp", rng=rng, bounds=([np.nan] * 4 + [0.6, np.nan], None))
    assert res["flags"] == 0 or res["flags"] & ~0
    assert res["pars"][4] >= 0.6 - 1e-12
    assert lo  # bounds given as lists with NaN = unbounded


def test_psf_flux_fit_of_a_star():
    rng = np.random.default_rng(5)
    pobs, _ = psf_observation(rng=rng)
    psf = galsim.Moffat(beta=PSF_BETA, fwhm=PSF_FWHM, flux=500.0)
    fluxes, errs = [], []
    for _ in range(50):
        im = psf.drawImage(nx=STAMP, ny=STAMP, scale=SCALE).array
        sigma = 0.5
        obs = Observation(im + rng.normal(0, sigma, im.shape),
                          weight=np.full(im.shape, 1 / sigma ** 2),
                          jacobian=DiagonalJacobian(23.5, 23.5, SCALE), psf=pobs)
        r = fit_psf_flux(obs)
        assert r["flags"] == 0
        fluxes.append(r["flux"][0])
        errs.append(r["flux_err"][0])
    fluxes = np.array(fluxes)
    # the coellip3 template misses < 1% of the Moffat flux on the stamp
    assert abs(np.mean(fluxes) / 500.0 - 1) < 0.01 + 3 * np.std(fluxes) / 500 / math.sqrt(50)
    assert 0.7 < np.std(fluxes) / np.mean(errs) < 1.3
