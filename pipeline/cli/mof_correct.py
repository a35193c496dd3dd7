"""``ngmixer-meds-mof-nbrs-correct MOF_FILE OUTDIR MEDS...``: neighbour-subtracted MEDS files."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from .common import add_log_level, run_cli, setup_logging


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Write neighbour-subtracted MEDS files (one per band, same names, in "
                    "OUTDIR) from a MOF output. Neighbours whose fit failed are masked: "
                    "weight 0 and bmask bit 2**21.")
    parser.add_argument("mof_file", help="ngmixit output of a MOF run (model_fits)")
    parser.add_argument("outdir", help="directory for the corrected MEDS files")
    parser.add_argument("meds", nargs="+", help="MEDS files, one per band, as fitted")
    parser.add_argument("--model", default=None,
                        help="model to draw (default: the first with *_mof_flags columns)")
    parser.add_argument("--psf-model", default="coellip2",
                        help="PSF model fitted to each cutout's PSF (default coellip2)")
    add_log_level(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    from ..mof.correct import write_corrected_meds
    paths = write_corrected_meds(args.mof_file, args.outdir, args.meds, model=args.model,
                                 psf_model=args.psf_model)
    print(f"wrote {len(paths)} corrected MEDS file(s) to {args.outdir}")
    return 0


def entry() -> None:
    sys.exit(run_cli(main))


if __name__ == "__main__":
    entry()
