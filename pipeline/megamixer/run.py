"""``megamixit run``: submit the chunks that have no output (or all with clobber)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from ..errors import ConfigError
from .layout import RunLayout
from .runconfig import RunConfig
from .chunkcheck import check_chunk
from .status import chunk_state
from .tilerecord import TileRecord

logger = logging.getLogger(__name__)


@dataclass
class RunPlan:
    jobs: list            # ChunkJob to submit, tiles in order
    skipped_done: int     # chunks with output
    active: list          # ChunkJob already queued or running (not resubmitted)
    skipped_tiles: list   # tiles already collated
    stuck: list = field(default_factory=list)  # queued jobs that cannot start: cancel, resubmit

    @property
    def skipped_active(self) -> int:
        return len(self.active)


def check_seed(seed: int | None, recs: list[TileRecord]) -> None:
    """A seed given on the command line must be the one the tiles were set up with
    (the job commands carry the setup seed)."""
    if seed is None:
        return
    for rec in recs:
        if rec.seed != seed:
            raise ConfigError(f"tile {rec.tile} was set up with seed {rec.seed}, not "
                              f"{seed} (run 'megamixit setup --clobber' to change it)")


def plan_run(conf: RunConfig, layout: RunLayout, recs: list[TileRecord], system,
             jobs_by_tile: dict, clobber: bool = False, seed: int | None = None) -> RunPlan:
    """Which chunks to submit: those without output that are not queued or running
    (a queued job that cannot start is cancelled and resubmitted, so a corrected
    queue or wall time takes effect); every chunk with ``clobber`` (even of
    collated tiles)."""
    check_seed(seed, recs)
    plan = RunPlan([], 0, [], [])
    todo = []
    for rec in recs:
        if not clobber and rec.complete_catalogue and layout.collated(rec.tile).exists():
            plan.skipped_tiles.append(rec.tile)
            continue
        todo.append(rec)
    candidates = [j for rec in todo for j in jobs_by_tile[rec.tile]]
    states = system.query(candidates) if candidates else {}
    for rec in todo:
        for job, (first, last) in zip(jobs_by_tile[rec.tile], rec.ranges):
            output = check_chunk(layout, rec, int(first), int(last))
            state = chunk_state(states.get(job.name, "unknown"), output)
            if state in ("pending", "running"):
                plan.active.append(job)
            elif state == "done" and not clobber:
                plan.skipped_done += 1
            else:
                if state == "stuck":
                    plan.stuck.append(job)
                plan.jobs.append(job)
    return plan
