"""Benchmark of the tile simulation: wall time, per-stage times and objects/s.

    python bench/sims.py [--nobj 1000] [--bands g,r,i] [--nepoch 4] [--nproc 2]
                         [--seed 1] [--blend-frac 0.1] [--placement random]
                         [--density 30] [--config configs/sim.yaml]
                         [--outdir DIR] [--flux-check]

The target (issue 2) is 1000 objects x 3 bands x 4 epochs in under 2 minutes on
2 cores. Stage times: ``plan`` (truth catalogue, placement, conditions),
``render_coadds`` (noiseless coadds, wall), ``seg``, ``epochs_and_meds`` (epoch
rendering, noise, defects and MEDS writing, wall); ``*_cpu`` entries are the
same work summed over the worker processes. ``--flux-check`` also prints how
well aperture sums on a sparse tile's noiseless coadd match the truth fluxes.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from pipeline.sims import plan_tile, render_noiseless_coadd, sim_config, simulate_tile  # noqa: E402


def flux_check(cfg: dict, seed: int) -> None:
    plan = plan_tile("FLUX", 200, ["r"], 1, seed, dict(cfg, density=3.0, blend_frac=0.0))
    t = plan.truth
    half = t["render_size"] // 2
    r0 = np.floor(t["row"] + 0.5).astype(int) - half + 1
    c0 = np.floor(t["col"] + 0.5).astype(int) - half + 1
    r1, c1 = r0 + t["render_size"], c0 + t["render_size"]
    overlap = ((r0[:, None] < r1[None, :]) & (r0[None, :] < r1[:, None])
               & (c0[:, None] < c1[None, :]) & (c0[None, :] < c1[:, None]))
    iso = np.flatnonzero(overlap.sum(axis=1) == 1)
    image = render_noiseless_coadd(plan, 0).astype("f8")
    r0, c0 = np.maximum(r0, 0), np.maximum(c0, 0)  # stamps may run off the image edge
    ratio = np.array([image[r0[i]:r1[i], c0[i]:c1[i]].sum() / t["flux"][i, 0] for i in iso])
    print(f"flux check: {iso.size} isolated objects; aperture/truth - 1: "
          f"median {np.median(ratio - 1):+.2e}, min {np.min(ratio - 1):+.2e}, "
          f"max {np.max(ratio - 1):+.2e}")
    for model in ("exp", "dev", "bd", "star"):
        sel = t["model"][iso] == model
        if sel.any():
            print(f"  {model:5s} n={sel.sum():3d} worst {np.max(np.abs(ratio[sel] - 1)):.2e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nobj", type=int, default=1000)
    parser.add_argument("--bands", default="g,r,i")
    parser.add_argument("--nepoch", type=int, default=4)
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--blend-frac", type=float, default=0.1)
    parser.add_argument("--placement", default=None, help="separated | random")
    parser.add_argument("--density", type=float, default=None, help="objects/arcmin^2")
    parser.add_argument("--config", default=None)
    parser.add_argument("--outdir", default=None, help="keep the files here (default: temp dir)")
    parser.add_argument("--flux-check", action="store_true")
    args = parser.parse_args()

    cfg = sim_config(args.config, {"blend_frac": args.blend_frac, "placement": args.placement,
                                   "density": args.density})
    bands = args.bands.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        outdir = args.outdir or tmp
        t0 = time.perf_counter()
        summary = simulate_tile(outdir, "BENCH", args.nobj, bands, args.nepoch, args.seed, cfg,
                                nproc=args.nproc)
        wall = time.perf_counter() - t0
        size = sum(os.path.getsize(p) for p in summary.meds_paths + [summary.truth_path])
    print(f"{args.nobj} objects x {len(bands)} bands x {args.nepoch} epochs, "
          f"{summary.side}x{summary.side} pixels ({summary.density:.1f}/arcmin^2, "
          f"placement {cfg['placement']}), nproc={args.nproc}, cpus={os.cpu_count()}")
    print(f"wall time {wall:.1f} s, {args.nobj / wall:.1f} objects/s, "
          f"{args.nobj * len(bands) * (args.nepoch + 1) / wall:.0f} object-images/s, "
          f"output {size / 2**20:.0f} MiB")
    for key, value in summary.timings.items():
        print(f"  {key:22s} {value:7.2f} s")
    if args.flux_check:
        flux_check(cfg, args.seed)


if __name__ == "__main__":
    main()
