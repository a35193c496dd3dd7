"""Chunk jobs for the batch-system adapters."""

from __future__ import annotations

from .layout import JOB_LOG, RunLayout
from .runconfig import RunConfig
from .tilerecord import TileRecord, chunk_command


def get_run_system(conf: RunConfig):
    """The batch-system adapter named by the run config (CLI overrides applied)."""
    from .systems import get_system
    return get_system(conf.system, **conf.system_options())


def chunk_jobs(rec: TileRecord, layout: RunLayout, conf: RunConfig,
               ranges: list[tuple[int, int]] | None = None) -> list:
    """One ``ChunkJob`` per chunk of ``rec`` (or per given ``(first, last)`` range)."""
    from .systems import ChunkJob
    if ranges is None:
        ranges = [(int(a), int(b)) for a, b in rec.ranges]
    # lines given at setup (e.g. --extra-cmds) stay in the scripts that 'run'
    # rewrites, unless the run config or command line gives new ones
    extra_cmds = list(conf.extra_cmds) or list(rec.extra.get("extra_cmds", []))
    jobs = []
    for first, last in ranges:
        jobs.append(ChunkJob(
            name=layout.job_name(rec.tile, first, last),
            run_dir=str(layout.run_dir),
            chunk_dir=layout.chunk_rel(rec.tile, first, last),
            command=chunk_command(rec, layout, first, last),
            log=JOB_LOG,
            walltime=conf.walltime,
            mem=conf.mem,
            queue=conf.queue,
            cpus=1,
            extra_cmds=extra_cmds,
            env={},
        ))
    return jobs
