"""ngmixit: fit a MEDS tile, or one chunk of FoF groups of it."""

from __future__ import annotations

import argparse
import cProfile
import io
import logging
import os
import pstats
import sys
from typing import Sequence

from .common import add_log_level, run_cli, setup_logging

logger = logging.getLogger("ngmixit")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ngmixit",
        description="Fit galaxy models to the objects of MEDS files (one file per band, "
                    "same objects in the same order), or to a range of their FoF groups.")
    p.add_argument("config", help="fit config (YAML), see configs/fit-*.yaml")
    p.add_argument("out", help="output FITS file (written atomically)")
    p.add_argument("meds", nargs="+", help="MEDS files, one per band")
    p.add_argument("--fof-range", help="first,last FoF group to fit (inclusive, 0-based); "
                   "groups come from --fof-file, else one object per group")
    p.add_argument("--fof-file", help="FoF table (fofid, number)")
    p.add_argument("--nbrs-file", help="neighbour table (number, nbr_number), for MOF")
    p.add_argument("--mof-file", help="earlier MOF output: subtract neighbours in one pass")
    p.add_argument("--obj-flags", help="table (id, flags) of objects to skip")
    p.add_argument("--seed", type=int, help="run seed (always give one to be reproducible)")
    p.add_argument("--work-dir", help="write the output here first, then move it into place")
    p.add_argument("--checkpoint-seconds", type=float,
                   help="seconds between checkpoints (0 = after every group); "
                        "default from the config")
    p.add_argument("--make-plots", action="store_true",
                   help="write PNG mosaics (data, model, residual) for a few objects")
    p.add_argument("--profile", action="store_true",
                   help="profile the run; stats to OUT-profile.txt")
    p.add_argument("--progress", dest="progress", action="store_true", default=None,
                   help="force a progress bar (default: only on a terminal)")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE",
                   help="provenance tag recorded in the output header (repeatable; "
                        "megamixit passes run, tile and setup)")
    add_log_level(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    from ..config import check_seed
    from ..jitlog import log_cold_compiles
    from ..provenance import parse_tags
    from ..runner import Run, RunOptions, parse_range
    if args.seed is not None:
        check_seed(args.seed)
    log_cold_compiles()
    opts = RunOptions(
        fof_range=parse_range(args.fof_range) if args.fof_range else None,
        fof_file=args.fof_file, nbrs_file=args.nbrs_file, mof_file=args.mof_file,
        obj_flags_file=args.obj_flags, seed=args.seed, work_dir=args.work_dir,
        checkpoint_seconds=args.checkpoint_seconds, make_plots=args.make_plots or None,
        progress=args.progress, tags=parse_tags(args.tag))
    run = Run(args.config, args.out, args.meds, opts)
    if run.conf["make_plots"]:
        opts.make_plots = True
    if not args.profile:
        run.execute()
        return 0
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        run.execute()
    finally:
        profiler.disable()
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(40)
        base = os.path.splitext(args.out)[0]
        with open(f"{base}-profile.txt", "w") as fobj:
            fobj.write(text.getvalue())
        logger.info("profile written to %s-profile.txt", base)
    return 0


def entry() -> None:
    sys.exit(run_cli(main))


if __name__ == "__main__":
    entry()
