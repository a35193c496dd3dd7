"""Benchmark: neighbour lists + FoF groups for a synthetic DES-like tile.

Default: 100,000 objects on a 10000 x 10000 pixel coadd (0.263"/pixel, about
0.53 deg^2, a DES tile's size and a deep-survey density), stamp sizes drawn
from the MEDS sizes 32..256 weighted to small objects, 20% of objects placed
2-12 pixels from another (blends). Times the box method (ngmixer defaults:
buff_type min, buff_frac 0.25, 256 -> 384) and the radius method (size
estimate box_size/2; and an iso_radius-like column with padding), each
including the FoF build and the output tables. No seg check (that is I/O).

    python bench/nbrs.py [--nobj 100000] [--seed 1]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from pipeline.nbrs import (box_pairs, make_fofs_table, make_nbrs_table, radius_pairs,
                           replace_maxsize, sky_radii, summarize)

SIZES = np.array([32, 48, 64, 96, 128, 192, 256])
SIZE_PROB = np.array([0.75, 0.12, 0.06, 0.035, 0.02, 0.01, 0.005])
PIXEL_SCALE = 0.263


def synthetic_tile(nobj: int, seed: int, npix: int = 10000) -> dict:
    rng = np.random.default_rng(seed)
    row = rng.uniform(0, npix, nobj)
    col = rng.uniform(0, npix, nobj)
    nblend = int(0.2 * nobj)
    host = rng.integers(0, nobj - nblend, nblend)
    dist = rng.uniform(2, 12, nblend)
    ang = rng.uniform(0, 2 * np.pi, nblend)
    row[nobj - nblend:] = row[host] + dist * np.cos(ang)
    col[nobj - nblend:] = col[host] + dist * np.sin(ang)
    box = rng.choice(SIZES, nobj, p=SIZE_PROB)
    start_row = row.astype(np.int64) - box // 2 + 1
    start_col = col.astype(np.int64) - box // 2 + 1
    dec0 = -30.0
    dec = dec0 + (row - npix / 2) * PIXEL_SCALE / 3600.0
    ra = 50.0 - (col - npix / 2) * PIXEL_SCALE / 3600.0 / np.cos(np.radians(dec0))
    iso_radius = box / 8.0 * rng.uniform(0.7, 1.3, nobj)  # pixels
    return dict(start_row=start_row, start_col=start_col, box=box, ra=ra, dec=dec,
                iso_radius=iso_radius, number=np.arange(1, nobj + 1))


def timed(label: str, func) -> None:
    t0 = time.perf_counter()
    pairs = func()
    t1 = time.perf_counter()
    nbrs = make_nbrs_table(CAT["number"], *pairs)
    fofs = make_fofs_table(CAT["number"], *pairs)
    t2 = time.perf_counter()
    print(f"{label:38s} pairs {t1 - t0:6.2f} s  tables+FoF {t2 - t1:5.2f} s  "
          f"total {t2 - t0:6.2f} s  | {summarize(fofs, pairs[0].size).line()} "
          f"| {len(nbrs)} nbrs rows")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nobj", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    global CAT
    CAT = synthetic_tile(args.nobj, args.seed)
    c = CAT
    print(f"{args.nobj} synthetic objects, seed {args.seed} (timings on a shared machine are noisy)")
    # warm-up on a small catalogue so import/first-call costs are not timed
    box_pairs(c["start_row"][:100], c["start_col"][:100], c["box"][:100])

    def box():
        r, col, s = replace_maxsize(c["start_row"], c["start_col"], c["box"], 256, 384)
        return box_pairs(r, col, s, "min", 0.25)

    def radius_box():
        return radius_pairs(c["ra"], c["dec"], sky_radii(0.5 * c["box"] * PIXEL_SCALE))

    def radius_iso():
        return radius_pairs(c["ra"], c["dec"],
                            sky_radii(c["iso_radius"] * PIXEL_SCALE, 1.0, 0.5, 10.0), 1.0)

    timed("box (min, 0.25, 256->384)", box)
    timed("radius (box_size/2)", radius_box)
    timed("radius (iso_radius, pad 1\", 0.5-10\")", radius_iso)


CAT: dict = {}

if __name__ == "__main__":
    main()
