"""Metacalibration: image operations against galsim truth, the fixnoise
correction, multi-epoch/multi-band input, bad input, and shear recovery."""

import logging
import math
import time

import galsim
import numpy as np
import pytest

from pipeline.gmix import (DiagonalJacobian, Jacobian, MultiBandObsList, ObsList,
                           Observation)
from pipeline.gmix.admom import admom
from pipeline.gmix.flags import METACAL_FAILURE
from pipeline.gmix.metacal import (METACAL_TYPES, EpochShearer, draw_target_psf,
                                   make_metacal_obs, metacal)

log = logging.getLogger(__name__)

SCALE = 0.263
NPIX = 48


def _wcs(jac):
    return galsim.JacobianWCS(jac.dudcol, jac.dudrow, jac.dvdcol, jac.dvdrow)


# --------------------------------------------------------------------------
# image operations against truth
# --------------------------------------------------------------------------

@pytest.mark.parametrize("jac", [
    DiagonalJacobian(0, 0, SCALE),
    Jacobian(row=0, col=0, dudrow=0.03, dudcol=0.26, dvdrow=0.27, dvdcol=-0.02),
])
def test_sheared_image_matches_truth(jac):
    """deconvolve/shear/reconvolve of a galsim image equals galsim's drawing of
    the sheared galaxy convolved with the target PSF.  With a 47x47 PSF stamp the
    only errors are the truncation of the stamp and of the Moffat wings: < 1e-4
    of the peak (a wrong shear convention or resampling error would give
    ~1e-2: the image changes by ~step * peak)."""
    wcs = _wcs(jac)
    psf = galsim.Moffat(beta=3.5, fwhm=0.9).shear(g1=0.03, g2=-0.02)
    gal = galsim.Exponential(half_light_radius=0.5).shear(g1=0.2, g2=0.1)
    off = (0.3, -0.2)  # (x = col, y = row)
    cen = ((NPIX - 1) / 2 + off[1], (NPIX - 1) / 2 + off[0])
    im = galsim.Convolve(gal, psf).drawImage(nx=NPIX, ny=NPIX, wcs=wcs, offset=off).array
    pim = psf.drawImage(nx=47, ny=47, wcs=wcs).array
    jm = np.array([[jac.dvdrow, jac.dvdcol], [jac.dudrow, jac.dudcol]])
    sigma = 0.5
    sh = EpochShearer(im[None], cen, jm, pim, (23.0, 23.0))
    for g1, g2 in [(0, 0), (0.01, 0), (-0.01, 0), (0, 0.01), (0, -0.01)]:
        out = sh.sheared(g1, g2, "gauss", sigma ** 2, 1.0)[0]
        truth = galsim.Convolve(gal.shear(g1=g1, g2=g2), galsim.Gaussian(sigma=sigma)).drawImage(
            nx=NPIX, ny=NPIX, wcs=wcs, offset=off).array
        err = np.abs(out - truth).max() / truth.max()
        assert err < 1e-4, (g1, g2, err)
    # "dilate": the target is the pixelated PSF dilated by 1 + 2 step
    dil = 1.02
    target = galsim.Convolve(psf, wcs.toWorld(galsim.Pixel(1.0))).dilate(dil)
    for g1, g2 in [(0, 0), (0.01, 0), (0, -0.01)]:
        out = sh.sheared(g1, g2, "dilate", 0.0, dil)[0]
        truth = galsim.Convolve(gal.shear(g1=g1, g2=g2), target).drawImage(
            nx=NPIX, ny=NPIX, wcs=wcs, offset=off, method="no_pixel").array
        err = np.abs(out - truth).max() / truth.max()
        assert err < 1e-4, ("dilate", g1, g2, err)
    # the target PSF image is the Gaussian convolved with the pixel
    tp = draw_target_psf("gauss", (47, 47), (23.0, 23.0), jm, sigma ** 2, 1.0, 1.0)
    tt = galsim.Gaussian(sigma=sigma).drawImage(nx=47, ny=47, wcs=wcs).array
    assert np.abs(tp - tt).max() < 1e-5 * tt.max()


def _psf_obs(psf, n=25, jac_scale=SCALE):
    im = psf.drawImage(nx=n, ny=n, scale=jac_scale).array
    return Observation(im, jacobian=DiagonalJacobian((n - 1) / 2, (n - 1) / 2, jac_scale))


def test_target_psfs():
    """fitgauss and gauss give a round PSF at least as large as the original,
    dilated by (1 + 2 step); dilate scales the original T by (1 + 2 step)^2."""
    psf = galsim.Moffat(beta=3.5, fwhm=0.9).shear(g1=0.05, g2=0.0)
    img = galsim.Convolve(galsim.Exponential(half_light_radius=0.4), psf).drawImage(
        nx=NPIX, ny=NPIX, scale=SCALE).array
    step = 0.01
    T0 = admom(_psf_obs(psf))["T"]
    for mode in ("fitgauss", "gauss", "dilate"):
        obs = Observation(img, jacobian=DiagonalJacobian(23.5, 23.5, SCALE), psf=_psf_obs(psf))
        mc = make_metacal_obs(obs, psf=mode, step=step, rng=np.random.default_rng(1))
        p = mc["noshear"].psf
        am = admom(p)
        if mode == "dilate":
            assert abs(am["T"] / (T0 * (1 + 2 * step) ** 2) - 1) < 2e-3, am["T"]
            assert np.allclose(am["g"], admom(_psf_obs(psf))["g"], atol=1e-3)
        else:
            # round to the precision of the drawing (1e-5) and of admom (etol)
            assert np.hypot(*am["g"]) < 1e-4, (mode, am["g"])
            assert am["T"] > T0 * (1 + 2 * step) ** 2
        # all types share the one target PSF, fitted with psf_model
        for t in METACAL_TYPES:
            assert np.array_equal(mc[t].psf.image, p.image)
            assert mc[t].psf.gmix is not None


def _noise_aniso(image):
    x = image[8:-8, 8:-8]
    v = (x * x).mean()
    return ((x[:, 1:] * x[:, :-1]).mean() - (x[1:, :] * x[:-1, :]).mean()) / v


def test_fixnoise_makes_noise_isotropic():
    """Shearing the deconvolved noise makes its correlations anisotropic; the
    rotated noise field of fixnoise cancels that.  The anisotropy (difference of
    horizontal and vertical neighbour correlations) is measured on 100 pure-noise
    fields, error from their scatter."""
    pim = galsim.Moffat(beta=3.5, fwhm=0.9).drawImage(nx=NPIX - 1, ny=NPIX - 1,
                                                      scale=SCALE).array
    res = {}
    for fix in (False, True):
        rng = np.random.default_rng(11)
        d = []
        for _ in range(100):
            obs = Observation(rng.normal(0, 1, (NPIX, NPIX)), weight=np.ones((NPIX, NPIX)),
                              jacobian=DiagonalJacobian(23.5, 23.5, SCALE),
                              psf=Observation(pim, jacobian=DiagonalJacobian(23, 23, SCALE)))
            mc = make_metacal_obs(obs, psf="gauss", types=("1p", "noshear"), fixnoise=fix,
                                  rng=rng, psf_model="admom")
            d.append(_noise_aniso(mc["1p"].image) - _noise_aniso(mc["noshear"].image))
            if fix:
                assert np.allclose(mc["1p"].weight, 0.5)
        d = np.array(d)
        res[fix] = (d.mean(), d.std() / math.sqrt(d.size))
    log.info("noise anisotropy 1p - noshear: without fixnoise %.4f +- %.4f, with %.4f +- %.4f",
             *res[False], *res[True])
    assert abs(res[False][0]) > 4 * res[False][1], res     # the effect is there...
    assert abs(res[True][0]) < 3 * res[True][1], res       # ...and fixnoise removes it


# --------------------------------------------------------------------------
# structure, multi-epoch / multi-band, bad input
# --------------------------------------------------------------------------

def _galaxy_obs(rng, psf_fwhm=0.9, s2n=100.0, g=(0.0, 0.0), offset=(0.0, 0.0), jac=None):
    psf = galsim.Moffat(beta=3.5, fwhm=psf_fwhm)
    gal = galsim.Exponential(half_light_radius=0.5).shear(g1=g[0], g2=g[1])
    im = galsim.Convolve(gal, psf).drawImage(nx=NPIX, ny=NPIX, scale=SCALE, offset=offset).array
    sigma = np.sqrt((im ** 2).sum()) / s2n
    im = im + rng.normal(0, sigma, im.shape)
    cen = ((NPIX - 1) / 2 + offset[1], (NPIX - 1) / 2 + offset[0])
    return Observation(im, weight=np.full(im.shape, sigma ** -2),
                       jacobian=DiagonalJacobian(cen[0], cen[1], SCALE),
                       psf=_psf_obs(psf))


def test_multiband_multiepoch():
    rng = np.random.default_rng(5)
    g = (0.2, -0.1)
    mb = MultiBandObsList([
        ObsList([_galaxy_obs(rng, 0.8, g=g), _galaxy_obs(rng, 1.1, g=g, offset=(0.3, -0.4))]),
        ObsList([_galaxy_obs(rng, 0.9, g=g, offset=(-0.2, 0.1))]),
    ])
    mc = make_metacal_obs(mb, rng=np.random.default_rng(1))
    assert set(mc) == set(METACAL_TYPES)
    assert [len(b) for b in mc["1p"]] == [2, 1]
    # each epoch keeps its own target PSF size
    T = [mc["noshear"][0][e].psf.gmix.get_T() for e in range(2)]
    assert T[1] > T[0] * 1.2
    res = metacal(mb, model="gauss", rng=np.random.default_rng(2))
    assert res.flags == 0
    for t in METACAL_TYPES:
        r = res[t]
        assert r["flags"] == 0, t
        assert len(r["pars"]) == 5 + 2
        for key in ("T_r", "s2n_r", "gpsf", "Tpsf"):
            assert np.all(np.isfinite(r[key])), (t, key)
        assert np.hypot(*r["gpsf"]) < 1e-3
    # the responses are positive and of order one; the shape is the galaxy's
    R11 = (res["1p"]["g"][0] - res["1m"]["g"][0]) / 0.02
    R22 = (res["2p"]["g"][1] - res["2m"]["g"][1]) / 0.02
    assert 0.3 < R11 < 1.5 and 0.3 < R22 < 1.5, (R11, R22)
    assert np.sign(res["noshear"]["g"][0]) == 1 and np.sign(res["noshear"]["g"][1]) == -1
    assert res["noshear"]["s2n_r"] > 50


def test_single_obs_structure_and_list():
    rng = np.random.default_rng(6)
    obs = _galaxy_obs(rng)
    mc = make_metacal_obs(obs, types=("noshear", "1p"), rng=np.random.default_rng(0))
    assert isinstance(mc["1p"], Observation)
    mc = make_metacal_obs([obs, _galaxy_obs(rng)], types=("noshear",),
                          rng=np.random.default_rng(0))
    assert isinstance(mc["noshear"], ObsList) and len(mc["noshear"]) == 2


def test_metacal_reproducible_with_seed():
    obs = _galaxy_obs(np.random.default_rng(7))
    a = metacal(obs, rng=np.random.default_rng(3))
    b = metacal(obs, rng=np.random.default_rng(3))
    for t in METACAL_TYPES:
        assert np.array_equal(a[t]["pars"], b[t]["pars"])


def test_bad_input_flagged():
    rng = np.random.default_rng(8)
    cases = {}
    o = _galaxy_obs(rng)
    o.psf = Observation(np.zeros((25, 25)), jacobian=DiagonalJacobian(12, 12, SCALE))
    cases["zero-flux psf"] = o
    o = _galaxy_obs(rng)
    o.weight = np.zeros_like(o.image)
    cases["zero weight"] = o
    o = _galaxy_obs(rng)
    o.image = np.full(o.image.shape, np.nan)
    cases["nan image"] = o
    o = _galaxy_obs(rng)
    o.jacobian = Jacobian(row=23.5, col=23.5, dudrow=0, dudcol=0, dvdrow=0, dvdcol=0)
    cases["singular jacobian"] = o
    o = _galaxy_obs(rng)
    o.psf = None
    cases["no psf"] = o
    for name, obs in cases.items():
        t0 = time.time()
        res = metacal(obs, rng=np.random.default_rng(0))
        assert res.flags == METACAL_FAILURE, name
        assert all(res[t]["flags"] != 0 for t in METACAL_TYPES), name
        assert time.time() - t0 < 5.0
    # a bad epoch among good ones is dropped, not fatal
    good = _galaxy_obs(rng)
    res = metacal([good, cases["zero-flux psf"]], rng=np.random.default_rng(0))
    assert res.flags == 0 and res["noshear"]["flags"] == 0


# --------------------------------------------------------------------------
# shear recovery
# --------------------------------------------------------------------------

def shear_rows(nobj: int, seed: int, shear: float = 0.02, s2n: float = 50.0,
               psf_g=(0.01, 0.02), psf_mode: str = "fitgauss", model: str = "gauss",
               step: float = 0.01) -> tuple:
    """Per-object measurements for the metacal shear test on exponential
    galaxies convolved with a Moffat PSF (48x48, 0.263"/pix, T_gal = 1.5 T_psf,
    S/N 50); returns (rows, nfail, seconds), rows = [(g+ - g-)/2, c1 term,
    c2 term, R11, R22] per object.

    Each galaxy is drawn twice rotated by 90 degrees (cancels intrinsic shape
    in c), each with applied shear +g1 and -g1 with the same noise (cancels shape
    and pixel noise in the response to the applied shear).  The metacal response
    is measured on the +g images (full metacal); the -g images need only the
    noshear type, processed with the same random stream so the fixnoise field is
    the same.
    """
    beta, fwhm = 3.5, 0.9
    psf = galsim.Moffat(beta=beta, fwhm=fwhm).shear(g1=psf_g[0], g2=psf_g[1])
    T_psf = galsim.Moffat(beta=beta, fwhm=fwhm).scale_radius ** 2 / (beta - 2)
    scale_radius = math.sqrt(1.5 * T_psf / 6.0)  # exponential: T = 6 r_s^2
    psf_im = psf.drawImage(nx=NPIX - 1, ny=NPIX - 1, scale=SCALE).array
    psf_jac = DiagonalJacobian((NPIX - 2) / 2, (NPIX - 2) / 2, SCALE)
    rng = np.random.default_rng(seed)
    rows = []
    nfail = 0
    t0 = time.time()
    for _ in range(nobj):
        while True:
            e = rng.normal(0.0, 0.2, 2)
            if np.hypot(*e) < 0.7:
                break
        off = rng.uniform(-0.5, 0.5, 2)
        gal0 = galsim.Exponential(scale_radius=scale_radius).shear(g1=e[0], g2=e[1])
        seeds = rng.integers(0, 2**31, size=4)
        obj = []
        for irot, rot in enumerate((0.0, 90.0)):
            gal = gal0.rotate(rot * galsim.degrees)
            nrng = np.random.default_rng(seeds[irot])
            noise = None
            per = {}
            for sign in (1, -1):
                im = galsim.Convolve(gal.shear(g1=sign * shear, g2=0.0), psf).drawImage(
                    nx=NPIX, ny=NPIX, scale=SCALE, offset=off).array
                if noise is None:
                    sigma = math.sqrt((im ** 2).sum()) / s2n
                    noise = nrng.normal(0.0, sigma, im.shape)
                cen = ((NPIX - 1) / 2 + off[1], (NPIX - 1) / 2 + off[0])
                obs = Observation(im + noise, weight=np.full(im.shape, sigma ** -2),
                                  jacobian=DiagonalJacobian(cen[0], cen[1], SCALE),
                                  psf=Observation(psf_im, jacobian=psf_jac))
                types = METACAL_TYPES if sign == 1 else ("noshear",)
                res = metacal(obs, model=model, psf=psf_mode, step=step, types=types,
                              rng=np.random.default_rng(seeds[2 + irot]))
                if res.flags or any(r["flags"] for r in res.values()):
                    nfail += 1
                    per = None
                    break
                per[sign] = res
            if per is None:
                break
            gp = per[1]["noshear"]["g"]
            gm = per[-1]["noshear"]["g"]
            R11 = (per[1]["1p"]["g"][0] - per[1]["1m"]["g"][0]) / (2 * step)
            R22 = (per[1]["2p"]["g"][1] - per[1]["2m"]["g"][1]) / (2 * step)
            obj.append([(gp[0] - gm[0]) / 2, (gp[0] + gm[0]) / 2, (gp[1] + gm[1]) / 2, R11, R22])
        if len(obj) == 2:
            rows.append(np.mean(obj, axis=0))
    return np.array(rows), nfail, time.time() - t0


def shear_estimate(rows: np.ndarray, shear: float = 0.02) -> dict:
    """m = <(g+ - g-)/2> / (shear <R11>) - 1, c = <(g+ + g-)/2> / <R>, with
    errors from the per-object scatter (delta method for the ratio)."""
    n = len(rows)
    num, c1n, c2n, R11, R22 = np.asarray(rows).T
    R = R11.mean()
    m = num.mean() / (shear * R) - 1.0
    sigma_m = np.std(num / shear - (1.0 + m) * R11, ddof=1) / (math.sqrt(n) * R)
    c1 = c1n.mean() / R
    sigma_c1 = np.std(c1n, ddof=1) / (math.sqrt(n) * R)
    c2 = c2n.mean() / R22.mean()
    sigma_c2 = np.std(c2n, ddof=1) / (math.sqrt(n) * R22.mean())
    return dict(m=m, sigma_m=sigma_m, c1=c1, sigma_c1=sigma_c1, c2=c2, sigma_c2=sigma_c2,
                R11=R, R22=R22.mean(), nobj=n)


def shear_study(nobj: int, seed: int, **kw) -> dict:
    """shear_rows + shear_estimate, with failures and timing."""
    rows, nfail, dt = shear_rows(nobj, seed, **kw)
    out = shear_estimate(rows, kw.get("shear", 0.02))
    out.update(nfail=nfail, seconds=dt, ms_per_metacal=1e3 * dt / (4 * nobj))
    return out


def format_study(r: dict) -> str:
    return (f"m = {r['m']:+.4f} +- {r['sigma_m']:.4f}, c1 = {r['c1']:+.5f} +- {r['sigma_c1']:.5f}, "
            f"c2 = {r['c2']:+.5f} +- {r['sigma_c2']:.5f}, <R11> = {r['R11']:.3f}, "
            f"<R22> = {r['R22']:.3f}, nobj = {r['nobj']}, failures = {r.get('nfail', 0)}, "
            f"{r.get('seconds', 0):.0f} s")


# sigma_m is ~0.12 / sqrt(nobj) (pixel noise in R dominates): 600 objects give
# sigma_m ~ 0.005 in 40-80 s on this shared machine; bench/metacal_shear.py
# runs the large study (sigma_m <= 0.004)
NOBJ_CI = 600


def test_shear_recovery():
    r = shear_study(NOBJ_CI, seed=2024)
    msg = format_study(r)
    log.info("metacal shear recovery: %s", msg)
    print("metacal shear recovery:", msg)
    assert r["nfail"] <= 0.01 * NOBJ_CI * 4, msg
    assert abs(r["m"]) < 0.01, msg
    assert abs(r["c1"]) < 3 * r["sigma_c1"], msg
    assert abs(r["c2"]) < 3 * r["sigma_c2"], msg
