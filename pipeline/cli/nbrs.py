"""``ngmixer-meds-make-nbrs-data``: neighbour lists and friends-of-friends groups.

    ngmixer-meds-make-nbrs-data NBRS_CONFIG MEDS [MEDS ...] --nbrs-file F --fof-file F
        [--plot P.png] [--log-level LEVEL]

One MEDS file per band (same objects in each); the neighbour pairs are the
union over bands. The rules and config keys are described in
``pipeline/nbrs.py`` and ``configs/nbrs.yaml``. Everything is checked before
anything is written; each output is written under a temporary name and
renamed, so a failed run leaves no partial file.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Sequence

import numpy as np

from .. import nbrs as nb
from ..errors import InputFileError, PipelineError
from ..fileio import atomic_path, check_writable
from ..identity import catalog_header, tile_catalog
from ..provenance import file_digest
from .common import add_log_level, run_cli, setup_logging

logger = logging.getLogger("pipeline.cli.nbrs")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ngmixer-meds-make-nbrs-data",
        description="Build neighbour lists and friends-of-friends groups from MEDS files.")
    parser.add_argument("config", metavar="NBRS_CONFIG", help="neighbour config (YAML)")
    parser.add_argument("meds", metavar="MEDS", nargs="+", help="MEDS file(s), one per band")
    parser.add_argument("--nbrs-file", required=True, help="output neighbour table (FITS)")
    parser.add_argument("--fof-file", required=True, help="output FoF table (FITS)")
    parser.add_argument("--plot", metavar="PNG", default=None,
                        help="also draw the FoF groups on the sky into this PNG")
    add_log_level(parser)
    return parser


def _check_outputs(args: argparse.Namespace) -> None:
    outs = [args.nbrs_file, args.fof_file] + ([args.plot] if args.plot else [])
    if len({os.path.abspath(p) for p in outs}) != len(outs):
        raise PipelineError("--nbrs-file, --fof-file and --plot must be different files")
    inputs = {os.path.abspath(p) for p in [args.config, *args.meds]}
    for p in outs:
        if os.path.abspath(p) in inputs:
            raise InputFileError(p, "output would overwrite an input file")
    for p in outs:
        check_writable(p)
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise PipelineError("--plot needs matplotlib, which is not installed") from None


def plot_groups(path: str, ra: np.ndarray, dec: np.ndarray, fof_ids: np.ndarray,
                pair_i: np.ndarray, pair_j: np.ndarray) -> None:
    """PNG of all objects on the sky; groups of >= 2 members coloured and linked.

    ``fof_ids`` is per object in the same order as ``ra``/``dec``; pairs index them.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection

    counts = np.bincount(fof_ids)
    multi = counts[fof_ids] >= 2
    cmap = plt.get_cmap("tab20")
    colours = cmap((fof_ids % 20) / 19.0)
    fig, ax = plt.subplots(figsize=(8, 8))
    ax.scatter(ra[~multi], dec[~multi], s=2, c="0.6", lw=0, label="single")
    ax.scatter(ra[multi], dec[multi], s=6, c=colours[multi], lw=0, label="in a group")
    if pair_i.size:
        segs = np.stack((np.column_stack((ra[pair_i], dec[pair_i])),
                         np.column_stack((ra[pair_j], dec[pair_j]))), axis=1)
        ax.add_collection(LineCollection(segs, colors=colours[pair_i], linewidths=0.6))
    ax.invert_xaxis()  # east to the left, as on the sky
    ax.set_xlabel("RA [deg]")
    ax.set_ylabel("Dec [deg]")
    ngroup = int(np.count_nonzero(counts >= 2))
    ax.set_title(f"{ra.size} objects, {counts.size} FoF groups, {ngroup} with >= 2 members")
    ax.legend(loc="upper right", markerscale=3, fontsize="small")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    conf = nb.load_nbrs_config(args.config)
    _check_outputs(args)
    header = catalog_header(tile_catalog(args.meds), file_digest(args.config))
    groups = nb.build_groups(args.meds, conf)
    fofs = groups.fofs_table()
    nb.write_nbrs(args.nbrs_file, groups.nbrs_table(), header=header)
    nb.write_fofs(args.fof_file, fofs, header=header)
    if args.plot:
        plot_groups(args.plot, groups.ra, groups.dec, groups.fofid, groups.pair_i,
                    groups.pair_j)
    print(nb.summarize(fofs, groups.pair_i.size).line())
    return 0


def entry() -> None:
    sys.exit(run_cli(main))


if __name__ == "__main__":
    entry()
