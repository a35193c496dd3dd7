"""Chunk jobs with trivial commands, shared by the batch-system tests and bench."""

from __future__ import annotations

from pathlib import Path

from pipeline.megamixer.systems import ChunkJob


def make_jobs(run_dir: str | Path, n: int, tile: str = "T0001", exit_codes=None,
              command: str = "echo chunk {i} > out.txt", **kw) -> list[ChunkJob]:
    """``n`` chunks of ``tile``; chunk i runs ``command`` then exits ``exit_codes[i]``."""
    exit_codes = exit_codes or {}
    jobs = []
    for i in range(n):
        code = exit_codes.get(i, 0)
        script = command.format(i=i) + (f"; exit {code}" if code else "")
        jobs.append(ChunkJob(name=f"{tile}-test-{i:06d}-{i:06d}", run_dir=str(run_dir),
                             chunk_dir=f"{tile}/chunks/chunk{i:06d}-{i:06d}",
                             command=["sh", "-c", script], **kw))
    return jobs


def read_out(job: ChunkJob) -> str | None:
    path = job.path / "out.txt"
    return path.read_text().strip() if path.exists() else None
