"""Chunk jobs for the batch-system adapters."""

from __future__ import annotations

from .layout import JOB_LOG, RunLayout
from .runconfig import RunConfig
from .software import job_env
from .tilerecord import TileRecord, chunk_command


def get_run_system(conf: RunConfig):
    """The batch-system adapter named by the run config (CLI overrides applied)."""
    from .systems import get_system
    return get_system(conf.system, **conf.system_options())


def chunk_jobs(rec: TileRecord, layout: RunLayout, conf: RunConfig,
               ranges: list[tuple[int, int]] | None = None) -> list:
    """One ``ChunkJob`` per chunk of ``rec`` (or per given ``(first, last)`` range).

    The job's extra commands are the tile record's (set at setup, replaced by
    ``run --extra-cmds``), so every script of a chunk says the same.
    """
    from .systems import ChunkJob
    if ranges is None:
        ranges = [(int(a), int(b)) for a, b in rec.ranges]
    extra_cmds = list(rec.extra.get("extra_cmds", []))
    env = job_env(rec.extra.get("software", {}), rec.extra.get("numba_cache", False))
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
            env=env,
        ))
    return jobs


# script name -> the system that runs it
SCRIPT_SYSTEMS = {"job.sh": "local", "job.slurm": "slurm", "job.lsf": "lsf"}


def update_extra_cmds(conf: RunConfig, layout: RunLayout, rec: TileRecord) -> bool:
    """Adopt new ``extra_cmds`` (run config or ``--extra-cmds``) in the tile record and
    rewrite every job script its chunks hold, so all scripts of a chunk say the same.
    Returns True if anything changed."""
    from .systems import get_system
    new = list(conf.extra_cmds)
    if not new or new == list(rec.extra.get("extra_cmds", [])):
        return False
    rec.extra["extra_cmds"] = new
    rec.save(layout.tile_record(rec.tile))
    for job in chunk_jobs(rec, layout, conf):
        for script, name in SCRIPT_SYSTEMS.items():
            if (job.path / script).exists():
                get_system(name, **conf.system_options()).write_script(job)
    return True


def query_by_submitter(jobs: list) -> dict:
    """``{job name: (system, state)}``, each job asked of the system that submitted it
    (its ``submit.json``); never-submitted jobs are asked of the local system."""
    from .systems import get_system, read_submit_record
    groups: dict[str, list] = {}
    for job in jobs:
        rec = read_submit_record(job)
        groups.setdefault(rec.system if rec is not None else "local", []).append(job)
    out = {}
    for name, group in groups.items():
        system = get_system(name)
        for job_name, state in system.query(group).items():
            out[job_name] = (system, state)
    return out
