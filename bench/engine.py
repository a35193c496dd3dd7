"""Engine benchmark: per-object timings for 200 exp * Moffat galaxies at S/N 50
(48x48 stamps, 0.263"/pixel, T_gal = 1.5 T_psf), numba warmed up first; and the
accuracy of exp fits at low S/N and small sizes.

Run: python bench/engine.py [--nobj 200] [--seed 1] [--lowsn-nobj 2000]
                            [--ngmix-python PY] [--speed-only | --lowsn-only]
Prints median and mean ms/object for the PSF fits (admom, coellip3, coellip3+wing,
em3), the exp and bdf fits, full 5-type metacal with gauss fits, the rendering
time of an 18-Gaussian 48x48 image in microseconds, and the peak memory.  Timings on a
shared machine are noisy: compare medians.

Low S/N and small sizes: for S/N 10 and 20 and T_gal = 1.5, 0.3 and 0.1 T_psf,
``--lowsn-nobj`` stamps per case, drawn by galsim (exponential * Moffat, flux
1000, |g| < 0.6, centre within half a pixel; the fitter draws nothing), fitted
with exp by the engine's default (its own starts), by the previous default
(one start from adaptive moments, damping 1e-3) and, with ``--ngmix-python``,
by ngmix (bench/ngmix_lowsn.py in that interpreter, on the same stamps and PSF
mixture).  Measures over every stamp with a flux error: flux pull = (flux -
1000) / flux_err, its robust width 1.4826 * MAD; outliers = fraction with
flux / 1000 - 1 < -0.15; median and robust scatter of flux / 1000 - 1; errors
and differences (paired, same stamps) from a bootstrap over the stamps.
Truth conventions: T_psf = <r^2> of the untruncated Moffat (beta 3.5, FWHM
0.9"); T_gal = 6 r_s^2 of galsim's exponential (its scale radius r_s) after
the area-preserving shear; the exp mixture's T at the same profile is 1.8%
smaller (the Hogg & Lang truncation), which the flux measures do not involve.
"""
import argparse
import copy
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from pipeline.gmix import (DiagonalJacobian, GMixModel, Observation, fit_model,  # noqa: E402
                           fit_psf, metacal)
from pipeline.gmix import render_nb  # noqa: E402
from tests.test_gmix_fit import (PSF_BETA, PSF_FWHM, SCALE, STAMP,  # noqa: E402
                                 moffat_T, psf_observation, sim_exp)
from tests.test_gmix_lowsn import (bootstrap, fit_now, fit_previous,  # noqa: E402
                                   flux_arrays, flux_measures)

HERE = os.path.dirname(os.path.abspath(__file__))
#: (S/N, T_gal / T_psf) of the low-S/N study
LOWSN_CASES = [(10, 1.5), (10, 0.3), (10, 0.1), (20, 1.5), (20, 0.3), (20, 0.1)]
TRUE_FLUX = 1000.0

def timeit(fn, items):
    """Per-item wall times in ms, and the results."""
    out = []
    times = np.empty(len(items))
    for i, it in enumerate(items):
        t0 = time.perf_counter()
        out.append(fn(it))
        times[i] = (time.perf_counter() - t0) * 1e3
    return times, out


def report(name, times, results=None, ok=None):
    extra = ""
    if ok is not None:
        extra = f"  ok {np.mean(ok):.3f}"
    print(f"{name:<22s} median {np.median(times):8.3f} ms   mean {np.mean(times):8.3f} ms{extra}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nobj", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--lowsn-nobj", type=int, default=2000, help="stamps per low-S/N case")
    ap.add_argument("--ngmix-python", help="an interpreter that imports ngmix: fit the "
                    "low-S/N stamps with ngmix too (bench/ngmix_lowsn.py)")
    only = ap.add_mutually_exclusive_group()
    only.add_argument("--speed-only", action="store_true")
    only.add_argument("--lowsn-only", action="store_true")
    args = ap.parse_args(argv)
    if not args.lowsn_only:
        speed(args)
    if not args.speed_only:
        lowsn(args)


def speed(args) -> None:
    rng = np.random.default_rng(args.seed)

    import galsim
    psf_obs, _ = psf_observation(rng=rng)
    sims = sim_exp(rng, args.nobj, psf_obs=psf_obs)
    # per-object PSF images (S/N ~ 1000) to fit
    pim = galsim.Moffat(beta=PSF_BETA, fwhm=PSF_FWHM).drawImage(nx=25, ny=25, scale=SCALE).array
    psig = pim.max() / 1000.0
    psf_items = [Observation(pim + rng.normal(0, psig, pim.shape),
                             weight=np.full(pim.shape, 1 / psig ** 2),
                             jacobian=DiagonalJacobian(12, 12, SCALE)) for _ in range(args.nobj)]
    obs_items = [o for o, _ in sims]

    # warm up (numba caches on disk; first calls still load/compile)
    fit_model(obs_items[0], "exp", rng=rng)
    fit_model(obs_items[0], "bdf", rng=rng)
    fit_model(psf_items[0], "coellip3", rng=rng)
    print(f"{args.nobj} objects, 48x48, S/N 50, exp * Moffat(beta={PSF_BETA}, fwhm={PSF_FWHM})")

    for model in ["admom", "coellip3", "coellip3+wing", "em3"]:
        fit_psf(psf_items[0], model, rng=rng)
        t, res = timeit(lambda o: fit_psf(o, model, rng=rng), psf_items)
        report(f"psf {model}", t, ok=[r["flags"] == 0 for r in res])

    t, res = timeit(lambda o: fit_model(o, "exp", rng=rng), obs_items)
    report("exp fit", t, ok=[r["flags"] == 0 for r in res])
    print(f"{'':22s} mean nfev {np.mean([r['nfev'] for r in res]):.1f}")
    # the example configs' PSF model: 4 Gaussians, so 24 in the convolved exp
    wing_psf = copy.copy(psf_obs)
    assert fit_psf(wing_psf, "coellip3+wing", rng=rng)["flags"] == 0
    wing_items = [Observation(o.image, weight=o.weight, jacobian=o.jacobian, psf=wing_psf)
                  for o in obs_items]
    fit_model(wing_items[0], "exp", rng=rng)
    t, res = timeit(lambda o: fit_model(o, "exp", rng=rng), wing_items)
    report("exp fit, wing PSF", t, ok=[r["flags"] == 0 for r in res])
    t, res = timeit(lambda o: fit_model(o, "bdf", rng=rng), obs_items)
    report("bdf fit", t, ok=[r["flags"] == 0 for r in res])

    metacal(obs_items[0], model="gauss", psf="fitgauss", rng=rng)
    t, res = timeit(lambda o: metacal(o, model="gauss", psf="fitgauss", rng=rng), obs_items)
    report("metacal 5 types gauss", t, ok=[getattr(r, "flags", 1) == 0 for r in res])

    gal = GMixModel([0.1, -0.2, 0.2, -0.1, 0.9, 100.0], "exp")
    psf = GMixModel([0, 0, 0.0, 0.05, 0.3, 0.6, 1.2, 0.5, 0.3, 0.2], "coellip3")
    conv = gal.convolve(psf)
    jac = DiagonalJacobian(23.5, 23.5, SCALE)
    im = np.zeros((48, 48))
    render_nb.render_gmix(conv.data, jac.jac6, im, 1)
    n = 2000
    t = np.empty(n)
    for i in range(n):
        t0 = time.perf_counter()
        render_nb.render_gmix(conv.data, jac.jac6, im, 1)
        t[i] = time.perf_counter() - t0
    print(f"{'render 18 gauss 48x48':<22s} median {np.median(t) * 1e6:8.1f} us   "
          f"mean {np.mean(t) * 1e6:8.1f} us (kernel)")
    t = np.empty(n // 4)
    for i in range(t.size):
        t0 = time.perf_counter()
        conv.make_image((48, 48), jac)
        t[i] = time.perf_counter() - t0
    print(f"{'  via GMix.make_image':<22s} median {np.median(t) * 1e6:8.1f} us")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(f"peak memory {peak:.0f} MB (max RSS)")


def lowsn(args) -> None:
    """The low-S/N and small-size study (see the module docstring)."""
    rng = np.random.default_rng(args.seed)
    psf_obs, _ = psf_observation(rng=rng)
    Tpsf_fit = psf_obs.gmix.get_T()
    print(f"\nexp fits at low S/N and small sizes: {args.lowsn_nobj} galsim stamps per case, "
          f"T_psf = {moffat_T():.4f} arcsec^2 (Moffat <r^2>; coellip3 fit {Tpsf_fit:.4f})")
    print("pull width = 1.4826 MAD of (flux - true)/flux_err; outliers = flux/true - 1 < -0.15;"
          " bias, scatter = median, 1.4826 MAD of flux/true - 1; +- bootstrap errors")
    fit_now(sim_exp(rng, 1, s2n=20, psf_obs=psf_obs)[0][0], 0, 0)    # warm up
    with tempfile.TemporaryDirectory() as tmp:
        for icase, (s2n, t_ratio) in enumerate(LOWSN_CASES):
            case_rng = np.random.default_rng([args.seed, icase])
            sims = sim_exp(case_rng, args.lowsn_nobj, s2n=s2n, psf_obs=psf_obs,
                           t_ratio=t_ratio)
            obs = [o for o, _ in sims]
            print(f"\nS/N {s2n}, T_gal = {t_ratio} T_psf = {sims[0][1]['T']:.4f} arcsec^2")
            print(f"  {'method':<34s}{'pull width':>15s}{'outliers':>16s}{'bias':>18s}"
                  f"{'scatter':>16s}{'flagged':>9s}{'nfev':>7s}{'ms/fit':>8s}")
            rows = {}
            for name, fit in (("engine (own starts)", lambda o, i: fit_now(o, args.seed, i)),
                              ("previous default (moments start)",
                               lambda o, i: fit_previous(o, args.seed, i, Tpsf_fit))):
                t0 = time.perf_counter()
                res = [fit(o, i) for i, o in enumerate(obs)]
                ms = (time.perf_counter() - t0) / len(obs) * 1e3
                flux, err = flux_arrays(res)
                flagged = np.mean([r["flags"] != 0 for r in res])
                extra = f"{flagged:9.3f}{np.mean([r['nfev'] for r in res]):7.1f}{ms:8.2f}"
                rows[name] = (flux, err)
                _print_row(name, flux, err, extra)
            if args.ngmix_python:
                flux, err, extra, label = _ngmix(args.ngmix_python, obs, psf_obs, tmp)
                rows[label] = (flux, err)
                _print_row(label, flux, err, extra)
            names = list(rows)
            for other in names[1:]:
                _print_diff(f"engine - {other.split(' (')[0]}", rows[names[0]], rows[other])


def _print_row(name, flux, err, extra="") -> None:
    m = flux_measures(flux, err, TRUE_FLUX)
    e = bootstrap(lambda f, s: flux_measures(f, s, TRUE_FLUX), (flux, err))
    cells = "".join(f"{m[k]:+9.4f} +-{e[k]:.4f}" if k == "bias" else f"{m[k]:8.3f} +-{e[k]:.3f}"
                    for k in ("width", "outliers", "bias", "scatter"))
    print(f"  {name:<34s}{cells}{extra}")


def _print_diff(name, a, b) -> None:
    """Paired differences (same stamps): a - b."""
    def diff(fa, ea, fb, eb):
        ma, mb = flux_measures(fa, ea, TRUE_FLUX), flux_measures(fb, eb, TRUE_FLUX)
        return {k: ma[k] - mb[k] for k in ma if k != "n"}
    ok = np.isfinite(a[1]) & np.isfinite(b[1])
    arrays = (a[0][ok], a[1][ok], b[0][ok], b[1][ok])
    d, e = diff(*arrays), bootstrap(diff, arrays)
    cells = "".join(f"{d[k]:+9.4f} +-{e[k]:.4f}" if k == "bias" else f"{d[k]:+8.3f} +-{e[k]:.3f}"
                    for k in ("width", "outliers", "bias", "scatter"))
    print(f"  {name:<34s}{cells}")


def _ngmix(python: str, obs, psf_obs, tmp: str):
    """ngmix's fits of the same stamps in a child interpreter: (flux, flux_err,
    extra cells, label); failed fits have NaN flux and error."""
    stamps = os.path.join(tmp, "stamps.npz")
    out = os.path.join(tmp, "ngmix.npz")
    np.savez(stamps, images=np.array([o.image for o in obs]),
             weights=np.array([o.weight for o in obs]), psf_pars=psf_obs.gmix.get_full_pars(),
             psf_image=psf_obs.image, scale=SCALE, cen=(STAMP - 1) / 2.0)
    proc = subprocess.run([python, os.path.join(HERE, "ngmix_lowsn.py"), stamps, out],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"ngmix child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    d = np.load(out)
    flux, err = d["flux"], d["flux_err"]
    extra = f"{np.mean(d['flags'] != 0):9.3f}{'':>7s}{float(d['seconds']) * 1e3:8.2f}"
    return flux, err, extra, f"ngmix {d['version']} (Fitter, ntry 2)"


if __name__ == "__main__":
    main()
