"""Timings of PSF fits and full metacal, per object (numba warmed up first).

``bench/engine.py`` imports ``bench_psf`` and ``bench_metacal``; run this file
directly for a stand-alone report on 200 simulated objects:

    python bench/engine_psf.py [--nobj 200] [--seed 1]

Timings on a shared 2-core machine are noisy: compare medians.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import math
import os
import pstats
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pipeline.gmix import DiagonalJacobian, Observation  # noqa: E402
from pipeline.gmix.metacal import metacal  # noqa: E402
from pipeline.gmix.psf import fit_psf  # noqa: E402


def _stats(times_s: list, nfail: int) -> dict:
    t = np.asarray(times_s) * 1e3
    return {"median_ms": float(np.median(t)), "mean_ms": float(np.mean(t)), "nfail": int(nfail),
            "n": int(t.size)}


def _psf_of(obs):
    return obs.psf if getattr(obs, "psf", None) is not None else obs


def bench_psf(obs_list, models=("admom", "coellip3", "coellip3+wing", "em3"), ntry: int = 4,
              seed: int = 1) -> dict:
    """{model: {median_ms, mean_ms, nfail, n}} for fit_psf on each object's PSF
    (copies are fitted, so the callers' PSF mixtures are untouched)."""
    out = {}
    for model in models:
        rng = np.random.default_rng(seed)
        fit_psf(_psf_of(obs_list[0]).copy(), model, ntry=ntry, rng=rng)  # warm-up / compile
        psfs = [_psf_of(o).copy() for o in obs_list]
        times = []
        nfail = 0
        for p in psfs:
            t0 = time.perf_counter()
            res = fit_psf(p, model, ntry=ntry, rng=rng)
            times.append(time.perf_counter() - t0)
            nfail += res["flags"] != 0
        out[model] = _stats(times, nfail)
    return out


def bench_metacal(obs_list, model: str = "gauss", psf: str = "fitgauss", seed: int = 1,
                  profile: bool = False) -> dict:
    """{median_ms, mean_ms, nfail, n} for full 5-type metacal with ``model`` fits;
    with profile=True also 'profile': the top functions by internal time."""
    rng = np.random.default_rng(seed)
    metacal(obs_list[0], model=model, psf=psf, rng=rng)  # warm-up
    times = []
    nfail = 0
    prof = cProfile.Profile() if profile else None
    for o in obs_list:
        t0 = time.perf_counter()
        if prof:
            prof.enable()
        res = metacal(o, model=model, psf=psf, rng=rng)
        if prof:
            prof.disable()
        times.append(time.perf_counter() - t0)
        nfail += res.flags != 0 or any(r["flags"] != 0 for r in res.values())
    out = _stats(times, nfail)
    if prof:
        s = io.StringIO()
        pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(12)
        out["profile"] = s.getvalue()
    return out


def make_objects(nobj: int, seed: int, s2n: float = 50.0, npix: int = 48,
                 scale: float = 0.263) -> list:
    """Exponential galaxies (T = 1.5 T_psf, random shapes and sub-pixel offsets)
    convolved with a Moffat PSF, S/N 50; each with a 25x25 PSF stamp."""
    import galsim

    rng = np.random.default_rng(seed)
    beta, fwhm = 3.5, 0.9
    moffat = galsim.Moffat(beta=beta, fwhm=fwhm)
    T_psf = moffat.scale_radius ** 2 / (beta - 2)
    r_s = math.sqrt(1.5 * T_psf / 6.0)
    objs = []
    for _ in range(nobj):
        pg = rng.normal(0, 0.02, 2)
        psf = moffat.shear(g1=pg[0], g2=pg[1])
        e = rng.normal(0, 0.2, 2)
        if np.hypot(*e) > 0.7:
            e *= 0.5
        off = rng.uniform(-0.5, 0.5, 2)
        gal = galsim.Exponential(scale_radius=r_s).shear(g1=e[0], g2=e[1])
        im = galsim.Convolve(gal, psf).drawImage(nx=npix, ny=npix, scale=scale, offset=off).array
        sigma = math.sqrt((im ** 2).sum()) / s2n
        im = im + rng.normal(0, sigma, im.shape)
        pim = psf.drawImage(nx=25, ny=25, scale=scale).array
        cen = ((npix - 1) / 2 + off[1], (npix - 1) / 2 + off[0])
        objs.append(Observation(im, weight=np.full(im.shape, sigma ** -2),
                                jacobian=DiagonalJacobian(cen[0], cen[1], scale),
                                psf=Observation(pim, jacobian=DiagonalJacobian(12, 12, scale))))
    return objs


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nobj", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--profile", action="store_true", help="print where metacal spends time")
    args = ap.parse_args(argv)
    objs = make_objects(args.nobj, args.seed)
    print(f"{args.nobj} objects: exp x Moffat, 48x48, 0.263\"/pix, T_gal = 1.5 T_psf, S/N 50")
    for model, st in bench_psf(objs).items():
        print(f"  PSF fit {model:13s} median {st['median_ms']:7.2f} ms  mean {st['mean_ms']:7.2f} ms"
              f"  failures {st['nfail']}")
    for psf in ("fitgauss", "gauss"):
        st = bench_metacal(objs, psf=psf, profile=args.profile and psf == "fitgauss")
        print(f"  metacal (5 types, gauss fits, psf={psf}) median {st['median_ms']:7.2f} ms"
              f"  mean {st['mean_ms']:7.2f} ms  failures {st['nfail']}")
        if "profile" in st:
            print(st["profile"])


if __name__ == "__main__":
    main()
