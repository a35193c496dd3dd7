"""The megamixit commands: glue between parsed options and the megamixer modules.

Each command returns the process exit code; bad input raises a one-line
``PipelineError``. Only final summaries and the status table are printed.
"""

from __future__ import annotations

import logging
import time
from argparse import Namespace
from collections import Counter

from ..errors import PipelineError
from .archive import archive_tile, clean_tile
from .collate import collate_tile
from .jobs import chunk_jobs, get_run_system, update_extra_cmds
from .layout import RunLayout
from .link import link_tiles
from .lock import run_lock
from .qa import write_qa
from .run import plan_run
from .runconfig import RunConfig
from .setup import setup_run
from .status import exit_code as status_exit_code
from .status import format_status, tile_statuses
from .tilerecord import TileRecord, load_record
from .tiles import Tile, check_meds
from .verify import DEFAULT_MAX_FLAGGED_FRAC, format_results, verify_tile

logger = logging.getLogger(__name__)


def _records(layout: RunLayout, tiles: list[Tile]) -> list[TileRecord]:
    return [load_record(layout, t.name) for t in tiles]


def _jobs(conf: RunConfig, layout: RunLayout, recs: list[TileRecord]) -> dict:
    return {rec.tile: chunk_jobs(rec, layout, conf) for rec in recs}


def cmd_setup(conf: RunConfig, tiles: list[Tile], args: Namespace) -> int:
    check_meds(tiles, conf, args.tiles)
    with run_lock(conf.run_dir, "set up"):
        recs = setup_run(conf, tiles, clobber=args.clobber)
    nchunk = sum(len(r.chunks) for r in recs)
    nobj = sum(r.nobj for r in recs)
    print(f"set up {len(recs)} tile(s), {nobj} objects, {nchunk} chunks in "
          f"{conf.run_dir}")
    return 0


def cmd_run(conf: RunConfig, tiles: list[Tile], args: Namespace) -> int:
    layout = RunLayout(conf.run_dir, conf.run)
    recs = _records(layout, tiles)
    if args.dry_run:
        return _run(conf, layout, recs, args)
    with run_lock(conf.run_dir, "run"):
        return _run(conf, layout, recs, args)


def _run(conf: RunConfig, layout: RunLayout, recs: list[TileRecord], args: Namespace) -> int:
    system = get_run_system(conf)
    if not args.dry_run:
        for rec in recs:
            if update_extra_cmds(conf, layout, rec):
                logger.info("tile %s: job scripts now run the new extra_cmds", rec.tile)
    jobs = _jobs(conf, layout, recs)
    plan = plan_run(conf, layout, recs, system, jobs, clobber=args.clobber, seed=args.seed)
    for tile in plan.skipped_tiles:
        logger.info("tile %s is collated; not resubmitting (use --clobber)", tile)
    if plan.skipped_active:
        logger.info("%d chunk(s) already queued or running; not resubmitted",
                    plan.skipped_active)
    if args.dry_run:
        for job in plan.stuck:
            print(f"would cancel {job.name}: queued but cannot start")
        for job in plan.jobs:
            print(f"would submit {job.name} in {job.chunk_dir}: {' '.join(job.command)}")
        system.submit(plan.jobs, dry_run=True)
        print(f"dry run: {len(plan.jobs)} chunk(s) would be submitted with system "
              f"'{conf.system}' ({plan.skipped_done} done, {plan.skipped_active} active)")
        return 0
    t0 = time.monotonic()
    if plan.stuck:
        logger.warning("cancelling %d queued chunk(s) that cannot start, to resubmit them",
                       len(plan.stuck))
        system.cancel(plan.stuck)
    if plan.jobs:
        system.submit(plan.jobs)
    watched = plan.jobs + plan.active
    if args.wait and watched:
        # chunks queued by an earlier 'run' are waited for too
        system.wait(watched)
    elapsed = time.monotonic() - t0
    if not plan.jobs and not (args.wait and plan.active):
        print(f"nothing to submit ({plan.skipped_done} chunk(s) done, "
              f"{plan.skipped_active} active, {len(plan.skipped_tiles)} tile(s) collated)")
        uncollated = [r.tile for r in recs if r.tile not in plan.skipped_tiles]
        if uncollated and not plan.active:
            print(f"tile(s) with every chunk done but no complete catalogue: "
                  f"{', '.join(uncollated)} (run 'megamixit collate')")
        return 0
    states = Counter(str(s) for s in system.query(watched).values())
    summary = ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
    waited = f" (and waited for {plan.skipped_active} already active)" if plan.active else ""
    print(f"submitted {len(plan.jobs)} chunk(s) with system '{conf.system}' "
          f"in {elapsed:.1f} s: {summary}{waited}")
    if states.get("stuck"):
        print(f"{states['stuck']} chunk(s) are queued but cannot start as requested (see the "
              f"warnings above); change queue/walltime/mem/cpus in {args.run_config} and "
              f"run again")
    return 1 if states.get("failed") or states.get("stuck") else 0


def cmd_status(conf: RunConfig, tiles: list[Tile], args: Namespace) -> int:
    layout = RunLayout(conf.run_dir, conf.run)
    recs = _records(layout, tiles)
    system = get_run_system(conf)
    statuses = tile_statuses(layout, recs, system, _jobs(conf, layout, recs))
    print(format_status(statuses, logs=args.logs))
    return status_exit_code(statuses)


def _per_tile(recs: list[TileRecord], func, what: str) -> tuple[list, list[str]]:
    """Run ``func`` on every tile; collect one-line errors so other tiles still proceed."""
    done, errors = [], []
    for rec in recs:
        try:
            done.append(func(rec))
        except PipelineError as err:  # reported once, at the end, by _raise_errors
            errors.append(str(err))
    return done, errors


def _raise_errors(errors: list[str], what: str) -> None:
    if len(errors) == 1:
        raise PipelineError(errors[0])
    if errors:
        raise PipelineError(f"{what} failed for {len(errors)} tiles: " + "; ".join(errors))


def cmd_collate(conf: RunConfig, tiles: list[Tile], args: Namespace) -> int:
    layout = RunLayout(conf.run_dir, conf.run)
    recs = _records(layout, tiles)
    t0 = time.monotonic()
    with run_lock(conf.run_dir, "collate"):
        done, errors = _per_tile(recs, lambda r: collate_tile(layout, r, args.skip_errors),
                                 "collate")
    for s in done:
        extra = f", {s.nskipped} chunk(s) skipped, {s.nmissing_obj} objects missing" \
            if s.nskipped or s.nmissing_obj else ""
        print(f"collated {s.tile}: {s.nobj} objects from {s.nchunks - s.nskipped} chunks, "
              f"{s.nflagged} flagged{extra} -> {s.path}")
    _raise_errors(errors, "collate")
    logger.info("collate took %.2f s", time.monotonic() - t0)
    return 0


def cmd_verify(conf: RunConfig, tiles: list[Tile], args: Namespace) -> int:
    layout = RunLayout(conf.run_dir, conf.run)
    limit = getattr(conf, "max_flagged_frac", None)
    limit = DEFAULT_MAX_FLAGGED_FRAC if limit is None else limit
    results = [verify_tile(layout, rec, limit) for rec in _records(layout, tiles)]
    print(format_results(results))
    for res in results:
        if res.nobj:   # a readable catalogue: draw it, whatever verify found
            try:
                fig = write_qa(layout.collated(res.tile), layout.qa_figure(res.tile),
                               f"tile {res.tile}, run {conf.run}: "
                               f"{'ok' if res.ok else 'FAILED verify'}")
            except (PipelineError, OSError, ValueError) as err:
                logger.warning("tile %s: no QA figure: %s", res.tile, err)
                continue
            print(f"QA figure: {fig}")
    return 0 if all(r.ok for r in results) else 1


def cmd_link(conf: RunConfig, tiles: list[Tile], args: Namespace) -> int:
    layout = RunLayout(conf.run_dir, conf.run)
    recs = _records(layout, tiles)
    with run_lock(conf.run_dir, "link"):
        links = link_tiles(layout, recs)
    print(f"linked {len(links)} collated file(s) into {layout.output_dir}")
    return 0


def cmd_archive(conf: RunConfig, tiles: list[Tile], args: Namespace) -> int:
    layout = RunLayout(conf.run_dir, conf.run)
    with run_lock(conf.run_dir, "archive"):
        done, errors = _per_tile(_records(layout, tiles), lambda r: archive_tile(layout, r),
                                 "archive")
    print(f"archived {sum(1 for d in done if d is not None)} tile(s)")
    _raise_errors(errors, "archive")
    return 0


def cmd_clean(conf: RunConfig, tiles: list[Tile], args: Namespace) -> int:
    layout = RunLayout(conf.run_dir, conf.run)
    with run_lock(conf.run_dir, "clean"):
        done, errors = _per_tile(_records(layout, tiles),
                                 lambda r: clean_tile(layout, r, clobber=args.clobber), "clean")
    print(f"removed {sum(done)} chunk work file(s) from {len(done)} tile(s)")
    _raise_errors(errors, "clean")
    return 0


COMMANDS = {"setup": cmd_setup, "run": cmd_run, "status": cmd_status,
            "collate": cmd_collate, "verify": cmd_verify, "link": cmd_link,
            "archive": cmd_archive, "clean": cmd_clean}


def dispatch(command: str, conf: RunConfig, tiles: list[Tile], args: Namespace) -> int:
    return COMMANDS[command](conf, tiles, args)
