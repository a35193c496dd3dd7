"""The ``slurm`` system: ``sbatch`` per chunk or one job array per tile.

Status is one ``squeue -h -r -t all`` call for all the jobs (finished jobs stay
visible for ``MinJobAge``); jobs squeue no longer knows are asked of ``sacct`` when
accounting is enabled, and otherwise count as finished, so a chunk without an
``exit_status`` then reads FAILED.
"""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path
from typing import Sequence

from ...errors import PipelineError
from .base import ChunkJob, JobState, QueueSystem, SubmitCommand, array_name

log = logging.getLogger(__name__)

_PENDING = {"PENDING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "RESV_DEL_HOLD",
            "CONFIGURING", "POWER_UP_NODE"}
_RUNNING = {"RUNNING", "COMPLETING", "SUSPENDED", "STOPPED", "SIGNALING", "STAGE_OUT",
            "RESIZING", "UPDATE_DB"}


def slurm_state(name: str) -> JobState:
    """Map a SLURM job state (squeue %T or sacct State) to PENDING/RUNNING/DONE/FAILED."""
    word = name.split()[0].rstrip("+").upper() if name.strip() else ""
    if word in _PENDING:
        return JobState.PENDING
    if word in _RUNNING:
        return JobState.RUNNING
    if word == "COMPLETED":
        return JobState.DONE
    return JobState.FAILED  # FAILED, CANCELLED, TIMEOUT, NODE_FAIL, OUT_OF_MEMORY, ...


def parse_sbatch(stdout: str) -> str:
    """Job id from ``sbatch --parsable`` output (``123`` or ``123;cluster``)."""
    text = stdout.strip().splitlines()[-1] if stdout.strip() else ""
    job_id = text.split(";")[0].strip()
    if not job_id.isdigit():
        raise PipelineError(f"sbatch: unexpected output {stdout.strip()!r}")
    return job_id


def parse_squeue(stdout: str) -> dict[str, str]:
    """``{job id: state}`` from ``squeue -h -r -o %i|%T`` lines (array tasks as A_i)."""
    out = {}
    for line in stdout.splitlines():
        if "|" in line:
            job_id, state = line.split("|", 1)
            out[job_id.strip()] = state.strip()
    return out


class SlurmSystem(QueueSystem):
    """SLURM adapter; ``array=True`` submits one job array per tile."""

    name = "slurm"
    template = "slurm.sh"
    array_template = "slurm-array.sh"
    script_name = "job.slurm"
    options = frozenset({"queue", "walltime", "mem", "cpus", "array", "template_dir",
                         "poll", "submit_threads"})
    default_poll = 5.0

    def __init__(self, *, submit_threads: int = 4, **kw) -> None:
        # a few sbatch calls in flight hide their round trips; slurmctld serialises anyway
        super().__init__(submit_threads=submit_threads, **kw)

    # ---- pure command construction (tests call these)
    def submit_command(self, script: str | os.PathLike) -> SubmitCommand:
        """``sbatch --parsable NAME`` run in the script's folder (SLURM_SUBMIT_DIR)."""
        script = Path(script)
        return SubmitCommand(["sbatch", "--parsable", script.name], cwd=str(script.parent))

    def query_command(self, job_ids: Sequence[str]) -> list[str]:
        return ["squeue", "-h", "-r", "-t", "all", "-o", "%i|%T", "-j", ",".join(job_ids)]

    def cancel_command(self, job_ids: Sequence[str]) -> list[str]:
        return ["scancel", *job_ids]

    def array_values(self, jobs: Sequence[ChunkJob], stem: str) -> dict[str, str | None]:
        """Placeholders of the array template; resources are the largest of the jobs'."""
        return {"name": array_name(jobs), "log": f"{stem}-%a.log",
                "array": f"0-{len(jobs) - 1}", "index": f"{stem}.txt",
                **self.array_resources(jobs)}

    def parse_submit(self, stdout: str) -> str:
        return parse_sbatch(stdout)

    def array_element_id(self, array_id: str, index: int) -> str:
        return f"{array_id}_{index}"

    # ---- status
    def parse_query(self, proc, job_ids):
        if proc.returncode != 0 and "Invalid job id" not in proc.stderr:
            return None
        seen = parse_squeue(proc.stdout)
        missing = [j for j in job_ids if j not in seen]
        if missing:
            seen.update(self._sacct(missing))
        return {job_id: slurm_state(state) if state else JobState.DONE
                for job_id, state in seen.items()}

    def _sacct(self, job_ids: list[str]) -> dict[str, str]:
        """States from accounting for jobs squeue has forgotten ({} without slurmdbd)."""
        try:
            proc = subprocess.run(["sacct", "-n", "-P", "-X", "-o", "JobID,State",
                                   "-j", ",".join(job_ids)],
                                  capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired):
            return {}
        if proc.returncode != 0:
            return {}
        return parse_squeue(proc.stdout)

