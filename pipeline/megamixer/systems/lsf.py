"""The ``lsf`` system: ``bsub < job.lsf`` per chunk, or one job array per tile.

Status is one ``bjobs -noheader -a -o "jobid jobindex stat"`` call; cancel is one
``bkill``. The command construction is pure (``submit_command``, ``query_command``,
``cancel_command``) so tests can check it without an LSF cluster.
"""

from __future__ import annotations

import logging
import math
import os
import re
from pathlib import Path
from typing import Sequence

from ...errors import PipelineError
from .base import ChunkJob, JobState, QueueSystem, SubmitCommand, array_name

log = logging.getLogger(__name__)

_BSUB_OUT = re.compile(r"Job <(\d+)>")
_STATES = {"PEND": JobState.PENDING, "PSUSP": JobState.PENDING, "WAIT": JobState.PENDING,
           "RUN": JobState.RUNNING, "USUSP": JobState.RUNNING, "SSUSP": JobState.RUNNING,
           "PROV": JobState.RUNNING, "DONE": JobState.DONE, "EXIT": JobState.FAILED,
           "ZOMBI": JobState.FAILED}


def lsf_state(stat: str) -> JobState | None:
    """Map a bjobs STAT; UNKWN (lost contact with the host) stays unknown (None)."""
    return _STATES.get(stat.strip().upper())


def parse_bsub(stdout: str) -> str:
    """Job id from ``Job <123> is submitted to queue <normal>.``"""
    m = _BSUB_OUT.search(stdout)
    if not m:
        raise PipelineError(f"bsub: unexpected output {stdout.strip()!r}")
    return m.group(1)


def parse_bjobs(stdout: str) -> dict[str, str]:
    """``{job id: stat}`` from ``jobid jobindex stat`` lines; array elements as ``J[i]``."""
    out = {}
    for line in stdout.splitlines():
        parts = line.split()
        if len(parts) != 3 or not parts[0].isdigit():
            continue  # "Job <9> is not found" and other chatter
        job_id, index, stat = parts
        key = job_id if index in ("0", "-") else f"{job_id}[{index}]"
        out[key] = stat
    return out


class LsfSystem(QueueSystem):
    """LSF adapter; ``array=True`` submits one job array per tile."""

    name = "lsf"
    template = "lsf.sh"
    array_template = "lsf-array.sh"
    array_first_index = 1  # LSF element indices start at 1
    script_name = "job.lsf"
    options = frozenset({"queue", "walltime", "mem", "cpus", "array", "template_dir",
                         "poll"})
    default_poll = 10.0

    # ---- formats: -W takes [hours:]minutes, -M takes a value with a unit
    def format_walltime(self, seconds: int) -> str:
        minutes = int(math.ceil(seconds / 60))
        return f"{minutes // 60:02d}:{minutes % 60:02d}"

    def format_mem(self, mb: int) -> str:
        return f"{mb}MB"

    def script_values(self, job: ChunkJob) -> dict[str, str | None]:
        values = super().script_values(job)
        values["sched_log"] = f"{job.log}.lsf"
        return values

    # ---- pure command construction
    def submit_command(self, script: str | os.PathLike) -> SubmitCommand:
        """``bsub < NAME`` in the script's folder (the job's LS_SUBCWD)."""
        script = Path(script)
        return SubmitCommand(["bsub"], cwd=str(script.parent), stdin=script.name)

    def query_command(self, job_ids: Sequence[str]) -> list[str]:
        return ["bjobs", "-noheader", "-a", "-o", "jobid jobindex stat", *job_ids]

    def cancel_command(self, job_ids: Sequence[str]) -> list[str]:
        return ["bkill", *job_ids]

    def array_values(self, jobs: Sequence[ChunkJob], stem: str) -> dict[str, str | None]:
        return {"name": f"{array_name(jobs)}[1-{len(jobs)}]",
                "sched_log": f"{stem}.%I.lsf.log", "index": f"{stem}.txt",
                **self.array_resources(jobs)}

    def parse_submit(self, stdout: str) -> str:
        return parse_bsub(stdout)

    def array_element_id(self, array_id: str, index: int) -> str:
        return f"{array_id}[{index}]"

    # ---- status
    def parse_query(self, proc, job_ids):
        seen = parse_bjobs(proc.stdout)
        if not seen and proc.returncode != 0 and "not found" not in proc.stderr:
            return None
        # UNKWN stays None (unknown); a job LSF has forgotten (older than
        # CLEAN_PERIOD) is absent and counts as finished
        return {job_id: lsf_state(stat) if stat else JobState.DONE
                for job_id, stat in seen.items()}
