"""ngmixer-sim: simulate a survey tile as one MEDS file per band plus a truth catalogue.

    ngmixer-sim OUTDIR --tile NAME --nobj N --bands g,r,i --nepoch E --seed S
        [--blend-frac F] [--star-frac F] [--shear g1,g2] [--density D]
        [--placement separated|random] [--config sim.yaml] [--nproc P] [--log-level L]

Writes ``OUTDIR/NAME-BAND-meds.fits`` per band and ``OUTDIR/NAME-truth.fits``.
Command-line values override the config file (``configs/sim.yaml`` documents it).
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from ..errors import ConfigError
from .common import add_log_level, run_cli, setup_logging

log = logging.getLogger("ngmixer-sim")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ngmixer-sim",
        description="Simulate a survey tile (galsim) as one MEDS file per band "
                    "(OUTDIR/NAME-BAND-meds.fits) and a truth catalogue (OUTDIR/NAME-truth.fits).")
    parser.add_argument("outdir", help="output directory (created if missing)")
    parser.add_argument("--tile", required=True, help="tile name, used in the file names")
    parser.add_argument("--nobj", required=True, type=int, help="number of objects")
    parser.add_argument("--bands", required=True, help="comma-separated band names, e.g. g,r,i")
    parser.add_argument("--nepoch", required=True, type=int, help="single-epoch images per band")
    parser.add_argument("--seed", required=True, type=int,
                        help="random seed (same seed, same files)")
    parser.add_argument("--blend-frac", type=float, default=None,
                        help="fraction of objects placed 1-3 half-light radii from another")
    parser.add_argument("--star-frac", type=float, default=None, help="fraction of stars")
    parser.add_argument("--shear", default=None, help="constant applied shear 'g1,g2'")
    parser.add_argument("--density", type=float, default=None,
                        help="objects per arcmin^2 (sets the image size)")
    parser.add_argument("--placement", default=None,
                        help="'separated' (groups isolated) or 'random' "
                             "(uniform, stamps overlap as on the sky)")
    parser.add_argument("--config", default=None, help="simulation config (YAML)")
    parser.add_argument("--nproc", type=int, default=None,
                        help="worker processes (default: config 'nproc', else "
                             "the number of CPUs); the output does not depend on it")
    add_log_level(parser)
    return parser


def _parse_bands(text: str) -> list[str]:
    bands = [b.strip() for b in text.split(",")]
    if not bands or any(not b or not b.isalnum() for b in bands):
        raise ConfigError(f"--bands {text!r}: give comma-separated band names like g,r,i")
    if len(set(bands)) != len(bands):
        raise ConfigError(f"--bands {text!r}: a band is repeated")
    return bands


def _parse_shear(text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 2:
        raise ConfigError(f"--shear {text!r}: give two numbers 'g1,g2'")
    return values


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    from ..sims import sim_config, simulate_tile

    from ..config import check_seed, plain_name
    bad = plain_name(args.tile)
    if bad:
        raise ConfigError(f"--tile {bad}")
    check_seed(args.seed)
    bands = _parse_bands(args.bands)
    if args.nobj <= 0:
        raise ConfigError(f"--nobj must be > 0, got {args.nobj}")
    if args.nepoch <= 0:
        raise ConfigError(f"--nepoch must be > 0, got {args.nepoch}")
    if args.nproc is not None and args.nproc <= 0:
        raise ConfigError(f"--nproc must be > 0, got {args.nproc}")
    overrides = {"blend_frac": args.blend_frac, "star_frac": args.star_frac,
                 "shear": _parse_shear(args.shear), "density": args.density,
                 "placement": args.placement}
    cfg = sim_config(args.config, overrides)
    summary = simulate_tile(args.outdir, args.tile, args.nobj, bands, args.nepoch, args.seed,
                            cfg, nproc=args.nproc)
    t = summary.timings
    print(f"ngmixer-sim: tile {args.tile}: {summary.nobj} objects, {len(bands)} band(s) x "
          f"{args.nepoch} epoch(s), {summary.side}x{summary.side} pixels "
          f"({summary.density:.2f}/arcmin^2, placement {cfg['placement']}), "
          f"{t['total']:.1f} s ({summary.nobj / t['total']:.1f} objects/s)")
    for path in summary.meds_paths + [summary.truth_path]:
        print(f"  {path}")
    return 0


def entry() -> None:
    sys.exit(run_cli(main))


if __name__ == "__main__":
    entry()
