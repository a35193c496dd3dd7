"""megamixit: chunked ngmixit runs of many tiles (setup, run, status, collate, ...).

    megamixit COMMAND RUN_CONFIG TILES [options]
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from ..errors import PipelineError
from .common import add_log_level, run_cli, setup_logging

COMMANDS = ("setup", "run", "status", "collate", "verify", "link", "archive", "clean")
logger = logging.getLogger("megamixit")

HELP = {
    "setup": "layout, config copies, chunk lists, job scripts, numba cache (refuses to "
             "redo without --clobber, which first stops the old set-up's jobs)",
    "run": "submit chunks without valid output (all with --clobber); --wait, --dry-run",
    "status": "chunk states per tile; exit 0 all done, 1 failed/stuck, 3 in progress; "
              "--logs adds failed chunks' log tails",
    "collate": "one catalogue per tile from valid chunks, every object exactly once "
               "(--skip-errors: marked incomplete)",
    "verify": "read and check every HDU of the catalogues, the flagged fraction "
              "(max_flagged_frac); draw <tile>-<run>-qa.png",
    "link": "relative symlinks of complete catalogues into <run>/output/",
    "archive": "tar.gz logs and job scripts of verified tiles, remove chunk work files",
    "clean": "remove chunk outputs and logs of verified tiles (--clobber: even if not "
             "collated)",
}
EXIT_CODES = ("exit status: 0 success; 1 a check failed (verify, status: failed or stuck "
              "chunks; run: a chunk failed); 2 bad input or refused (one 'error:' line); 3 "
              "status: chunks still queued, running or not submitted; 130/143 interrupted")


def build_parser() -> argparse.ArgumentParser:
    epilog = ("commands:\n" + "\n".join(f"  {c:<8} {HELP[c]}" for c in COMMANDS)
              + "\n\n" + EXIT_CODES)
    p = argparse.ArgumentParser(
        prog="megamixit", description="Chunked ngmixit runs of many tiles.", epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=COMMANDS, metavar="COMMAND", help="see below")
    p.add_argument("run_config", metavar="RUN_CONFIG", help="run config (YAML)")
    p.add_argument("tiles", metavar="TILES", help="tiles file: one tile per line")
    p.add_argument("--system", choices=("local", "slurm", "lsf", "dask"),
                   help="batch system (overrides the run config)")
    p.add_argument("--queue", help="queue / partition")
    p.add_argument("--walltime", help="job wall time, e.g. 02:00:00")
    p.add_argument("--mem", help="job memory, e.g. 4G")
    p.add_argument("--extra-cmds", metavar="FILE",
                   help="file of shell lines put in every job script (replaces extra_cmds)")
    p.add_argument("--seed", type=int, help="run seed (setup; must match later)")
    p.add_argument("--workers", type=int, help="local/dask worker processes")
    p.add_argument("--tile", action="append", metavar="NAME",
                   help="restrict to this tile (repeatable)")
    p.add_argument("--clobber", action="store_true",
                   help="setup: redo; run: resubmit all chunks; clean: allow uncollated")
    p.add_argument("--missing", action="store_true",
                   help="run only chunks without output (the default)")
    p.add_argument("--skip-errors", action="store_true",
                   help="collate: leave out missing/unreadable chunks")
    p.add_argument("--wait", action="store_true", help="run: block until jobs finish")
    p.add_argument("--dry-run", action="store_true", help="run: show what would be submitted")
    p.add_argument("--logs", action="store_true", help="status: log tails of failed chunks")
    add_log_level(p)
    return p


def _overrides(args: argparse.Namespace) -> dict:
    from ..megamixer.runconfig import read_extra_cmds
    over = {"system": args.system, "queue": args.queue, "walltime": args.walltime,
            "mem": args.mem, "seed": args.seed, "workers": args.workers}
    if args.extra_cmds:
        over["extra_cmds"] = read_extra_cmds(args.extra_cmds)
    return over


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    from ..megamixer import commands
    from ..megamixer.runconfig import load_run_config
    from ..megamixer.tiles import read_tiles, select_tiles

    if args.workers is not None and args.workers < 1:
        raise PipelineError("--workers must be >= 1")
    conf = load_run_config(args.run_config, _overrides(args))
    tiles = read_tiles(args.tiles, conf, check_files=False)
    tiles = select_tiles(tiles, args.tile, args.tiles)
    return commands.dispatch(args.command, conf, tiles, args)


def entry() -> None:
    sys.exit(run_cli(main))


if __name__ == "__main__":
    entry()
