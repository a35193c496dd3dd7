"""Benchmark: time per object of MOF (joint, iterate) vs single-object fits on a
simulated blended tile, plus flux accuracy of bright blended galaxies.

    python bench/mof.py [--nobj 300] [--workdir DIR] [--nbrs-nobj 100000]

Prints one line per method: CPU seconds per object (sum of time_last_fit, which
the driver measures per group / members) and the median |dflux/flux| of blended
galaxies with S/N > 30.  Timings on a shared machine are noisy.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import fitsio
import numpy as np

CONFIG = """\
fitter_type: {fitter}
model_nbrs: {nbrs}
region: uberseg
psf_pars: {{model: coellip2, ntry: 2}}
max_pars: {{ntry: 1}}
models: [exp]
model_pars:
  exp:
    cen: {{type: normal2d, width: 0.263}}
    g: {{type: ba, sigma: 0.3}}
    T: {{type: TwoSidedErf, pars: [-10.0, 0.03, 1.0e+6, 1.0e+5]}}
    counts: {{type: TwoSidedErf, pars: [-1.0e+4, 1.0, 1.0e+9, 1.0e+8]}}
"""
MOF_BLOCK = ("mof: {{method: {method}, joint_max_group: 6, maxerr_conv: {maxerr}, max_itr: 25, "
             "min_useg_itr: {useg}}}\n")


def run(*args) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", *map(str, args)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def accuracy(out: str, truth: np.ndarray) -> tuple[float, int]:
    cat = fitsio.read(out, ext="model_fits")
    index = {int(i): k for k, i in enumerate(truth["id"])}
    t = truth[[index[int(i)] for i in cat["id"]]]
    s2n = np.sqrt(np.sum(t["s2n"] ** 2, axis=1))
    sel = (t["blend_group"] >= 0) & ~t["is_star"] & (s2n > 30) & (cat["exp_flags"] == 0)
    return float(np.median(np.abs(cat["exp_flux"][sel] / t["flux"][sel] - 1))), int(sel.sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nobj", type=int, default=300)
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--nbrs-nobj", type=int, default=100_000,
                        help="objects for the neighbour/FoF build benchmark (0: skip)")
    args = parser.parse_args()
    d = args.workdir or tempfile.mkdtemp(prefix="bench-mof-")
    os.makedirs(d, exist_ok=True)
    meds = [os.path.join(d, f"B-{b}-meds.fits") for b in ("g", "r")]
    if not all(os.path.exists(p) for p in meds):
        run("pipeline.cli.sim", d, "--tile", "B", "--nobj", args.nobj, "--bands", "g,r",
            "--nepoch", 3, "--seed", 11, "--blend-frac", 0.5)
    fof = os.path.join(d, "fof.fits")
    tnbrs = run("pipeline.cli.nbrs", "configs/nbrs.yaml", *meds, "--nbrs-file",
                os.path.join(d, "nbrs.fits"), "--fof-file", fof)
    print(f"neighbours + FoF for {args.nobj} objects: {tnbrs:.1f} s wall")
    truth = fitsio.read(os.path.join(d, "B-truth.fits"))
    # min_useg_itr: the sweep from which raw weights replace uberseg (1, as in ngmixer;
    # 100: uberseg throughout)
    cases = [("single (max, uberseg)", "max", "false", None, None, None),
             ("MOF joint", "mof", "true", "joint", 0.5, 1),
             ("MOF iterate", "mof", "true", "iterate", 0.1, 1),
             ("MOF iterate, uberseg kept", "mof", "true", "iterate", 0.1, 100)]
    for label, fitter, nbrs, method, maxerr, useg in cases:
        conf = os.path.join(d, f"{fitter}-{method}-{useg}.yaml")
        text = CONFIG.format(fitter=fitter, nbrs=nbrs)
        if method:
            text += MOF_BLOCK.format(method=method, maxerr=maxerr, useg=useg)
        with open(conf, "w") as fobj:
            fobj.write(text)
        out = os.path.join(d, f"{fitter}-{method}-{useg}.fits")
        extra = ["--fof-file", fof] if method else []
        try:
            wall = run("pipeline.cli.ngmixit", conf, out, *meds, *extra, "--seed", 1)
        except subprocess.CalledProcessError as err:
            print(f"{label:26s} failed ({err.returncode})")
            continue
        cat = fitsio.read(out, ext="model_fits")
        per_obj = float(np.sum(cat["time_last_fit"])) / len(cat)
        err, n = accuracy(out, truth)
        print(f"{label:26s} {1e3 * per_obj:7.1f} ms/object (fit), {wall:6.1f} s wall; "
              f"median |dflux/flux| of {n} bright blended galaxies {err:.3f}")
    if args.nbrs_nobj:
        print(f"neighbour and FoF build on {args.nbrs_nobj} synthetic objects (bench/nbrs.py):",
              flush=True)
        subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), "nbrs.py"),
                        "--nobj", str(args.nbrs_nobj)], check=True)


if __name__ == "__main__":
    main()
