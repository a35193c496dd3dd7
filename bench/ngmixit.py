"""Benchmark ngmixit: objects per second per core and the share of time outside the fitters.

Simulates a fixed tile (default 1000 objects, 3 bands, 4 epochs, seed 1), then runs
the max-likelihood config and the metacal config over it in one process each (one
core). Time inside the fitter (``fitter.fit_group``) is measured against the whole
wall time; the rest is split into reading MEDS slices and building the observations
(``ImageIO.get_object``) and everything else (output rows, random streams, writing).

    python bench/ngmixit.py [--nobj 1000] [--workdir /tmp/bench-ngmixit]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

CONFIGS = {
    "fit-max (coellip3+wing, exp+dev+cm)": os.path.join(ROOT, "configs", "fit-max.yaml"),
    "max, bdf only (coellip3 PSF)": None,
    "fit-metacal (gauss PSF, 5 types)": os.path.join(ROOT, "configs", "fit-metacal.yaml"),
}

BDF_CONFIG = """\
fitter_type: max
psf_pars: {model: coellip3, ntry: 4}
models: [bdf]
model_pars:
  bdf:
    cen: {type: normal2d, width: 0.263}
    g: {type: ba, sigma: 0.3}
    fracdev: {type: normal, mean: 0.5, sigma: 0.5}
"""


def _timed(owner, method: str) -> list[float]:
    """Wrap ``owner.method`` so the returned one-element list accumulates its time."""
    total = [0.0]
    original = getattr(owner, method)

    def timed(*args, **kw):
        t0 = time.perf_counter()
        try:
            return original(*args, **kw)
        finally:
            total[0] += time.perf_counter() - t0

    setattr(owner, method, timed)
    return total


def run_one(label: str, conf: str, meds: list[str], out: str) -> dict:
    from pipeline.runner import Run, RunOptions
    run = Run(conf, out, meds, RunOptions(seed=1, progress=False, checkpoint_seconds=1e9))
    inside = _timed(run.fitter, "fit_group")
    reading = _timed(run.io, "get_object")
    # warm the numba caches on a few groups outside the timing
    warm = Run(conf, out + ".warm.fits", meds, RunOptions(seed=1, progress=False,
                                                          fof_range=(0, 2)))
    warm.execute()
    os.unlink(out + ".warm.fits")
    t0 = time.perf_counter()
    run.execute()
    wall = time.perf_counter() - t0
    nobj = run.last - run.first + 1
    return {"label": label, "nobj": nobj, "wall": wall, "fit": inside[0],
            "rate": nobj / wall, "ms": 1000 * wall / nobj,
            "overhead": 1 - inside[0] / wall, "read_ms": 1000 * reading[0] / nobj,
            "rest_ms": 1000 * (wall - inside[0] - reading[0]) / nobj}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nobj", type=int, default=1000)
    p.add_argument("--workdir", default="/tmp/bench-ngmixit")
    p.add_argument("--only", help="substring of the config label to run")
    args = p.parse_args()
    os.makedirs(args.workdir, exist_ok=True)
    bands = ["g", "r", "i"]
    meds = [os.path.join(args.workdir, f"B-{b}-meds.fits") for b in bands]
    if not all(os.path.exists(m) for m in meds):
        subprocess.run([sys.executable, "-m", "pipeline.cli.sim", args.workdir, "--tile", "B",
                        "--nobj", str(args.nobj), "--bands", ",".join(bands), "--nepoch", "4",
                        "--seed", "1", "--log-level", "WARNING"], check=True)
    bdf = os.path.join(args.workdir, "fit-bdf.yaml")
    with open(bdf, "w") as fobj:
        fobj.write(BDF_CONFIG)
    print(f"ngmixit benchmark: {args.nobj} objects, 3 bands x 4 epochs, one process")
    print(f"{'config':36s} {'objects/s':>10s} {'ms/object':>10s} {'outside fitter':>15s} "
          f"{'read+build ms':>14s} {'other ms':>9s}")
    for label, conf in CONFIGS.items():
        if args.only and args.only not in label:
            continue
        conf = conf or bdf
        res = run_one(label, conf, meds, os.path.join(args.workdir, "out.fits"))
        print(f"{label:36s} {res['rate']:10.2f} {res['ms']:10.1f} "
              f"{100 * res['overhead']:14.1f}% {res['read_ms']:14.2f} {res['rest_ms']:9.2f}",
              flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak:.0f} MB")


if __name__ == "__main__":
    main()
