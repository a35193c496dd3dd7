"""Benchmark: neighbour lists and FoF groups of DES-like tiles at survey densities.

Each tile has 100,000 objects (a DES tile's count) placed uniformly at random at
the given density (objects/arcmin^2; 0.263"/pixel), plus ``--blend-frac`` of
them placed 2-12 pixels from another (close pairs). Stamp sizes are drawn from
the MEDS sizes 32..256 weighted to small objects (75% 32, 12% 48, 6% 64, 3.5%
96, 2% 128, 1% 192, 0.5% 256), an assumption standing in for a DES size
distribution. For every rule it prints the time (pairs + groups + tables), the
largest group, the fraction of objects in groups of 2+, and the share of
objects in groups of each size; for rules with ``max_group_size`` also the
share of the neighbour pairs left across two groups ("cut") and of the close
pairs (closer than 2", about two PSF FWHM) among them. No seg check (that is I/O).

    python bench/nbrs.py [--nobj 100000] [--density 20,30,40] [--seed 1]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from pipeline.nbrs import (check_nbrs_config, fof_labels, link_ratios, make_nbrs_table,  # noqa: E402
                           pairs_from_catalog, separation_arcsec, split_labels,
                           unit_vectors)

SIZES = np.array([32, 48, 64, 96, 128, 192, 256])
SIZE_PROB = np.array([0.75, 0.12, 0.06, 0.035, 0.02, 0.01, 0.005])
PIXEL_SCALE = 0.263
CLOSE_ARCSEC = 2.0
BINS = [(1, 1), (2, 2), (3, 5), (6, 10), (11, 25), (26, 50), (51, 200), (201, None)]

RULES = [
    ("box (ngmixer: min 0.25, 256->384)",
     dict(method="box", maxsize_to_replace=256, new_maxsize=384)),
    ("box, max_group_size 50",
     dict(method="box", maxsize_to_replace=256, new_maxsize=384, max_group_size=50)),
    ("radius R = box/2", dict(method="radius")),
    ("radius R = box/4", dict(method="radius", radius_mult=0.5)),
    ("radius R = box/4, max_radius 8\"", dict(method="radius", radius_mult=0.5, max_radius=8.0)),
    ("radius R = box/4, max_group_size 25",
     dict(method="radius", radius_mult=0.5, max_group_size=25)),
    ("radius R = box/4, max 8\", max_group_size 25",
     dict(method="radius", radius_mult=0.5, max_radius=8.0, max_group_size=25)),
]


def synthetic_tile(nobj: int, density: float, seed: int, blend_frac: float) -> np.ndarray:
    """object_data-like table (coadd cutout only) of a random tile at ``density``."""
    rng = np.random.default_rng(seed)
    npix = np.sqrt(nobj / density) * 60.0 / PIXEL_SCALE
    row = rng.uniform(0, npix, nobj)
    col = rng.uniform(0, npix, nobj)
    nblend = int(blend_frac * nobj)
    host = rng.integers(0, nobj - nblend, nblend)
    dist = rng.uniform(2, 12, nblend)
    ang = rng.uniform(0, 2 * np.pi, nblend)
    row[nobj - nblend:] = row[host] + dist * np.cos(ang)
    col[nobj - nblend:] = col[host] + dist * np.sin(ang)
    box = rng.choice(SIZES, nobj, p=SIZE_PROB)
    cat = np.zeros(nobj, dtype=[("number", "i8"), ("ncutout", "i8"), ("box_size", "i8"),
                                ("orig_start_row", "i8"), ("orig_start_col", "i8"),
                                ("ra", "f8"), ("dec", "f8")])
    cat["number"] = np.arange(1, nobj + 1)
    cat["ncutout"] = 1
    cat["box_size"] = box
    cat["orig_start_row"] = np.floor(row).astype(np.int64) - box // 2 + 1
    cat["orig_start_col"] = np.floor(col).astype(np.int64) - box // 2 + 1
    dec0 = -30.0
    cat["dec"] = dec0 + (row - npix / 2) * PIXEL_SCALE / 3600.0
    cat["ra"] = 50.0 - (col - npix / 2) * PIXEL_SCALE / 3600.0 / np.cos(np.radians(dec0))
    return cat


def size_shares(labels: np.ndarray) -> list[float]:
    """Share of the objects in groups of each size bin."""
    counts = np.bincount(labels)
    per_obj = counts[labels]
    return [float(np.mean((per_obj >= lo) & (per_obj <= (np.inf if hi is None else hi))))
            for lo, hi in BINS]


def run_rule(cat: np.ndarray, conf: dict) -> dict:
    conf = check_nbrs_config(dict(conf, check_seg=False, pixel_scale=PIXEL_SCALE))
    t0 = time.perf_counter()
    pi, pj = pairs_from_catalog(cat, conf)
    numbers = cat["number"]
    if conf["max_group_size"] is None:
        labels = fof_labels(numbers, pi, pj)
    else:
        labels = split_labels(numbers, pi, pj, link_ratios(cat, conf, pi, pj),
                              conf["max_group_size"])
    make_nbrs_table(numbers, pi, pj)
    out = {"time": time.perf_counter() - t0, "npairs": pi.size, "labels": labels}
    cut = labels[pi] != labels[pj]
    xyz = unit_vectors(cat["ra"], cat["dec"])
    close = separation_arcsec(xyz[pi], xyz[pj]) < CLOSE_ARCSEC
    out["cut"] = float(np.mean(cut)) if pi.size else 0.0
    out["close_cut"] = float(np.mean(cut[close])) if close.any() else 0.0
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nobj", type=int, default=100_000)
    parser.add_argument("--density", default="20,30,40", help="objects/arcmin^2, comma list")
    parser.add_argument("--blend-frac", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    # warm-up (numba compilation, first calls) so it is not timed
    small = synthetic_tile(200, 30.0, 0, args.blend_frac)
    run_rule(small, dict(method="box", max_group_size=2))
    head = " ".join(f"{lo}-{hi}" if hi != lo else f"{lo}" for lo, hi in BINS).replace("-None", "+")
    print(f"{args.nobj} objects, blend_frac {args.blend_frac}, seed {args.seed}; "
          f"shares of objects in groups of size {head}")
    for density in (float(d) for d in args.density.split(",")):
        cat = synthetic_tile(args.nobj, density, args.seed, args.blend_frac)
        print(f"\ndensity {density:g}/arcmin^2:")
        print(f"  {'rule':46s} {'time':>6s} {'pairs':>7s} {'largest':>8s} {'in 2+':>6s} "
              f"{'cut':>6s} {'close cut':>9s}  group-size shares (%)")
        for label, conf in RULES:
            r = run_rule(cat, conf)
            counts = np.bincount(r["labels"])
            shares = " ".join(f"{100 * s:5.1f}" for s in size_shares(r["labels"]))
            print(f"  {label:46s} {r['time']:5.2f}s {r['npairs']:7d} {counts.max():8d} "
                  f"{100 * np.mean(counts[r['labels']] >= 2):5.1f}% {100 * r['cut']:5.1f}% "
                  f"{100 * r['close_cut']:8.2f}%  {shares}", flush=True)


if __name__ == "__main__":
    main()
