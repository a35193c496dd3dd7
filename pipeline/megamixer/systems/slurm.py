"""The ``slurm`` system: ``sbatch`` per chunk or one job array per tile.

Status is one ``squeue -h -r -t all`` call for all the jobs (finished jobs stay
visible for ``MinJobAge``); jobs squeue no longer knows are asked of ``sacct`` when
accounting is enabled, and otherwise count as finished, so a chunk without an
``exit_status`` then reads FAILED. A pending job whose reason says it cannot start
as requested (``PartitionTimeLimit``, ``QOSMaxWallDurationPerJobLimit``,
``BadConstraints``, ...) is STUCK, and the reason is logged once per job.
"""

from __future__ import annotations

import logging
import os
import re
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
# Pending reasons that need a change of the request (or of the site's limits): the
# job would wait forever. Counting limits (jobs per user, group CPU totals) and
# held jobs clear by themselves or by the user and are plain PENDING.
_NEVER_STARTS = {"BadConstraints", "PartitionConfig", "PartitionNodeLimit",
                 "PartitionTimeLimit", "InvalidAccount", "InvalidQOS", "AccountNotAllowed",
                 "QOSNotAllowed", "DependencyNeverSatisfied"}
_PER_JOB_LIMIT = re.compile(r"^(Assoc|QOS)Max\w*Per(Job|Node)\w*$")


def never_starts(reason: str) -> bool:
    """True for a SLURM pending reason that means the job cannot start as requested."""
    reason = reason.strip().strip("()")
    return reason in _NEVER_STARTS or bool(_PER_JOB_LIMIT.match(reason))


def slurm_state(name: str, reason: str = "") -> JobState:
    """Map a SLURM job state (squeue %T or sacct State) and, for pending jobs, the
    pending reason (squeue %r) to PENDING/RUNNING/DONE/FAILED/STUCK."""
    word = name.split()[0].rstrip("+").upper() if name.strip() else ""
    if word in _PENDING:
        return JobState.STUCK if never_starts(reason) else JobState.PENDING
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


def parse_squeue(stdout: str) -> dict[str, tuple[str, str]]:
    """``{job id: (state, reason)}`` from ``squeue -h -r -o %i|%T|%r`` lines (array
    tasks as A_i; also reads sacct's ``JobID|State`` lines, reason "")."""
    out = {}
    for line in stdout.splitlines():
        if "|" in line:
            job_id, state, *rest = line.split("|", 2)
            out[job_id.strip()] = (state.strip(), rest[0].strip() if rest else "")
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
        self._reported: set[str] = set()  # stuck jobs already explained in the log

    # ---- pure command construction (tests call these)
    def submit_command(self, script: str | os.PathLike) -> SubmitCommand:
        """``sbatch --parsable NAME`` run in the script's folder (SLURM_SUBMIT_DIR)."""
        script = Path(script)
        return SubmitCommand(["sbatch", "--parsable", script.name], cwd=str(script.parent))

    def query_command(self, job_ids: Sequence[str]) -> list[str]:
        return ["squeue", "-h", "-r", "-t", "all", "-o", "%i|%T|%r", "-j", ",".join(job_ids)]

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
        states = {job_id: slurm_state(state, reason) if state else JobState.DONE
                  for job_id, (state, reason) in seen.items()}
        for job_id, state in states.items():
            if state is JobState.STUCK and job_id not in self._reported:
                self._reported.add(job_id)
                log.warning("SLURM job %s cannot start: %s (the request exceeds a partition, "
                            "QOS or account limit: change queue/walltime/mem/cpus, then run "
                            "again)", job_id, seen[job_id][1])
        return states

    def _sacct(self, job_ids: list[str]) -> dict[str, tuple[str, str]]:
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

