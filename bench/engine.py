"""Engine benchmark: per-object timings for 200 exp * Moffat galaxies at S/N 50
(48x48 stamps, 0.263"/pixel, T_gal = 1.5 T_psf), numba warmed up first.

Run: python bench/engine.py [--nobj 200] [--seed 1]
Prints median and mean ms/object for the PSF fits (admom, coellip3, coellip3+wing,
em3), the exp and bdf fits, full 5-type metacal with gauss fits, the rendering
time of an 18-Gaussian 48x48 image in microseconds, and the peak memory.  Timings on a
shared machine are noisy: compare medians.
"""
import argparse
import os
import resource
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from pipeline.gmix import (DiagonalJacobian, GMixModel, Observation, fit_model,  # noqa: E402
                           fit_psf, metacal)
from pipeline.gmix import render_nb  # noqa: E402
from tests.test_gmix_fit import PSF_BETA, PSF_FWHM, SCALE, psf_observation, sim_exp  # noqa: E402



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
    args = ap.parse_args(argv)
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


if __name__ == "__main__":
    main()
