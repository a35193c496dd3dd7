"""The batch-system contract: chunk jobs, job states, submit records, the base adapter.

A system is a thin adapter: it renders a job script from ``jobtemplates/<system>.sh``
into the chunk directory, submits it, and reports each chunk's state by combining
the scheduler's view with the files the job script leaves behind:

- ``<chunk_dir>/submit.json``: who submitted the chunk, when, and under which job id
  (written at submission, so ``status`` works from a later process);
- ``<chunk_dir>/exit_status``: the command's exit code, written atomically by the
  job script as its last act (0 -> DONE, anything else -> FAILED).

A job the scheduler no longer runs that left no ``exit_status`` (killed, cancelled,
node failure) is FAILED, never RUNNING forever. A queued job the scheduler says can
never start as requested (e.g. a wall time above the partition's limit) is STUCK:
not active, so ``wait`` does not block on it.
"""

from __future__ import annotations

import datetime
import json
import logging
import math
import os
import re
import shlex
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, ClassVar, Iterable, Mapping, Sequence

from ...errors import ConfigError, PipelineError
from ...fileio import atomic_path
from .template import load_template, render

log = logging.getLogger(__name__)

SUBMIT_FILE = "submit.json"
EXIT_FILE = "exit_status"
# Names that end up in scheduler directives or shell words: keep them boring.
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.+=-]+$")
_SAFE_PATH = re.compile(r"^[A-Za-z0-9_./+=-]+$")
_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class JobState(str, Enum):
    """State of one chunk job."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    UNKNOWN = "unknown"
    NOT_SUBMITTED = "not_submitted"
    #: queued, but the scheduler will not start it until the request changes
    STUCK = "stuck"

    def __str__(self) -> str:
        return self.value

    @property
    def active(self) -> bool:
        """Queued or running: the job may still write its outputs."""
        return self in (JobState.PENDING, JobState.RUNNING)

    @property
    def alive(self) -> bool:
        """Held by the scheduler in any way, stuck included: it may yet run."""
        return self.active or self is JobState.STUCK


@dataclass
class ChunkJob:
    """One chunk's batch job; all paths but ``run_dir`` are relative."""

    name: str
    run_dir: str
    chunk_dir: str
    command: list[str]
    log: str = "job.log"
    walltime: str | int | None = None
    mem: str | int | None = None
    queue: str | None = None
    cpus: int = 1
    extra_cmds: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not _SAFE_NAME.match(self.name):
            raise ConfigError(f"job name {self.name!r}: use letters, digits and _.+=- only")
        for what, value in (("chunk_dir", self.chunk_dir), ("log", self.log)):
            parts = Path(value).parts
            if (not _SAFE_PATH.match(value) or Path(value).is_absolute() or ".." in parts):
                raise ConfigError(f"job {self.name}: {what} {value!r} must be a plain "
                                  "relative path below the run directory")
        if not self.command:
            raise ConfigError(f"job {self.name}: empty command")
        for key in self.env:
            if not _ENV_KEY.match(key):
                raise ConfigError(f"job {self.name}: bad environment variable name {key!r}")
        if int(self.cpus) < 1:
            raise ConfigError(f"job {self.name}: cpus must be >= 1, got {self.cpus}")

    @property
    def path(self) -> Path:
        """Absolute chunk directory."""
        return Path(self.run_dir) / self.chunk_dir


@dataclass
class SubmitRecord:
    """What was submitted for one chunk; stored as ``<chunk_dir>/submit.json``."""

    name: str
    system: str
    job_id: str | None
    command: list[str]
    cwd: str                      # where the command ran, relative to the run dir
    script: str                   # the submitted script, relative to the run dir
    submit_time: str = ""         # ISO-8601 UTC
    submit_unix: float = 0.0
    array_job_id: str | None = None
    array_index: int | None = None
    host: str = ""
    pid: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SubmitRecord":
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


@dataclass
class SubmitCommand:
    """A submit command: argv run in ``cwd`` with ``stdin`` (a file path) as input."""

    argv: list[str]
    cwd: str
    stdin: str | None = None

    def __str__(self) -> str:
        text = f"(cd {shlex.quote(self.cwd)} && {shlex.join(self.argv)}"
        if self.stdin:
            text += f" < {shlex.quote(self.stdin)}"
        return text + ")"


# ---------------------------------------------------------------- chunk files

def read_submit_record(job: ChunkJob) -> SubmitRecord | None:
    """The chunk's ``submit.json``, or ``None`` if absent or unreadable."""
    try:
        with open(job.path / SUBMIT_FILE) as fobj:
            return SubmitRecord.from_dict(json.load(fobj))
    except (OSError, ValueError, TypeError):
        return None


def write_submit_record(job: ChunkJob, rec: SubmitRecord) -> None:
    with atomic_path(job.path / SUBMIT_FILE) as tmp:
        with open(tmp, "w") as fobj:
            fobj.write(rec.to_json())


def remove_submit_record(job: ChunkJob) -> None:
    try:
        os.unlink(job.path / SUBMIT_FILE)
    except FileNotFoundError:
        pass


def read_exit_status(job: ChunkJob) -> int | None:
    """The exit code the job script wrote, or ``None`` if it did not finish."""
    try:
        text = (job.path / EXIT_FILE).read_text().strip()
    except OSError:
        return None
    try:
        return int(text)
    except ValueError:
        return 255  # a garbled status is a failure, not "still running"


def clear_exit_status(job: ChunkJob) -> None:
    """Remove a previous attempt's status (and the half-written ``.exit_status.PID``
    a killed job may leave) so a resubmitted chunk reads as queued."""
    for name in [EXIT_FILE] + [n for n in _listdir(job.path) if n.startswith(f".{EXIT_FILE}.")]:
        try:
            os.unlink(job.path / name)
        except FileNotFoundError:
            pass


def _listdir(path: Path) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


_VAR_WORD = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*\}$")


def command_line(argv: Sequence[str]) -> str:
    """The command as one shell line: every word quoted, except a leading ``${VAR}``
    (the interpreter variable the script defines), which is expanded."""
    if argv and _VAR_WORD.match(argv[0]):
        return f'"{argv[0]}" ' + shlex.join(argv[1:])
    return shlex.join(argv)


def export_line(key: str, value: str) -> str:
    """``export KEY=value`` with the value quoted; ``PYTHONPATH`` is prepended to the
    inherited one, and a relative path is made absolute against the job's folder."""
    quoted = shlex.quote(value)
    if key == "PYTHONPATH":
        return f'export PYTHONPATH={quoted}"${{PYTHONPATH:+:${{PYTHONPATH}}}}"'
    if value.startswith("../") or value.startswith("./"):
        return f'export {key}="${{PWD}}"/{quoted}'
    return f"export {key}={quoted}"


def merge_state(sched: JobState | None, exit_code: int | None) -> JobState:
    """Combine the scheduler's view with the chunk's exit_status file.

    ``sched`` is PENDING/RUNNING while the scheduler holds the job, DONE or FAILED
    once it has finished (or is gone), ``None`` when the scheduler could not be asked.
    The file wins whenever it exists: the script writes it as its last act.
    """
    if exit_code is not None:
        return JobState.DONE if exit_code == 0 else JobState.FAILED
    if sched is None:
        return JobState.UNKNOWN
    if sched.active or sched is JobState.STUCK:
        return sched
    # finished or gone without an exit_status: killed, cancelled, node failure
    return JobState.FAILED


# ---------------------------------------------------------------- resources

_WALLTIME = re.compile(r"^(?:(\d+)-)?(\d+):(\d{1,2})(?::(\d{1,2}))?$")
_MEM = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*$", re.IGNORECASE)


def walltime_seconds(value: str | int | None) -> int | None:
    """Wall time in seconds from ``"HH:MM:SS"``, ``"HH:MM"``, ``"D-HH:MM:SS"`` or minutes."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ConfigError(f"walltime {value!r}: expected HH:MM:SS or minutes")
    if isinstance(value, int):
        if value <= 0:
            raise ConfigError(f"walltime {value}: must be positive")
        return value * 60
    text = str(value).strip()
    if text.isdigit():
        return walltime_seconds(int(text))
    m = _WALLTIME.match(text)
    if not m:
        raise ConfigError(f"walltime {value!r}: expected HH:MM:SS, HH:MM or minutes")
    days, hours, minutes, seconds = (int(g) if g else 0 for g in m.groups())
    total = ((days * 24 + hours) * 60 + minutes) * 60 + seconds
    if total <= 0:
        raise ConfigError(f"walltime {value!r}: must be positive")
    return total


def hms(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def mem_megabytes(value: str | int | None) -> int | None:
    """Memory in MB from ``"2G"``, ``"500M"``, ``"2GB"``, ``"1.5g"`` or a number of MB."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ConfigError(f"mem {value!r}: expected e.g. 2G, 500M or MB")
    if isinstance(value, (int, float)):
        mb = float(value)
    else:
        m = _MEM.match(str(value))
        if not m:
            raise ConfigError(f"mem {value!r}: expected e.g. 2G, 500M or a number of MB")
        scale = {"": 1.0, "K": 1 / 1024, "M": 1.0, "G": 1024.0, "T": 1024.0 ** 2}
        mb = float(m.group(1)) * scale[m.group(2).upper()]
    if mb <= 0:
        raise ConfigError(f"mem {value!r}: must be positive")
    return int(math.ceil(mb))


# ---------------------------------------------------------------- progress

class Progress:
    """A tqdm bar when stderr is a terminal, log lines otherwise."""

    def __init__(self, total: int, desc: str):
        self.total, self.done, self.desc = total, 0, desc
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm
            self.bar = tqdm(total=total, desc=desc, unit="chunk", file=sys.stderr)

    def update(self, name: str, state: JobState) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix_str(f"{name}: {state}", refresh=False)
        else:
            log.info("%s %s: %s (%d/%d)", self.desc, name, state, self.done, self.total)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# ---------------------------------------------------------------- base adapter

def now_utc() -> tuple[str, float]:
    t = time.time()
    iso = datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%S.%fZ")
    return iso, t


class BatchSystem:
    """Base adapter: script rendering, submit records, state merging, waiting.

    Subclasses set ``name``, ``template``, ``script_name``, ``options`` and implement
    ``_submit`` (and ``_scheduler_states``/``cancel`` for real schedulers).
    Per-job resources (``ChunkJob.walltime`` ...) win over the system defaults.
    """

    name: ClassVar[str] = "base"
    template: ClassVar[str] = "shell.sh"
    script_name: ClassVar[str] = "job.sh"
    #: options ``get_system`` passes to this system; other known options are ignored
    options: ClassVar[frozenset[str]] = frozenset()
    #: seconds between state polls in ``wait`` (grows from 0.2 s up to this)
    default_poll: ClassVar[float] = 5.0

    def __init__(self, *, queue: str | None = None, walltime: str | int | None = None,
                 mem: str | int | None = None, cpus: int | None = None,
                 template_dir: str | None = None, poll: float | None = None) -> None:
        self.queue = queue
        self.walltime = walltime
        self.mem = mem
        self.cpus = cpus
        self.template_dir = template_dir
        self.poll = float(poll) if poll is not None else self.default_poll
        walltime_seconds(walltime)  # validate early: a bad value is a config error
        mem_megabytes(mem)

    # ---- resources (job field first, then the system default)
    def job_walltime(self, job: ChunkJob) -> int | None:
        return walltime_seconds(job.walltime if job.walltime is not None else self.walltime)

    def job_mem(self, job: ChunkJob) -> int | None:
        return mem_megabytes(job.mem if job.mem is not None else self.mem)

    def job_queue(self, job: ChunkJob) -> str | None:
        return job.queue if job.queue is not None else self.queue

    def job_cpus(self, job: ChunkJob) -> int:
        if job.cpus != 1 or self.cpus is None:
            return int(job.cpus)
        return int(self.cpus)

    # ---- scripts
    def format_walltime(self, seconds: int) -> str:
        return hms(seconds)

    def format_mem(self, mb: int) -> str:
        return f"{mb}M"

    def script_values(self, job: ChunkJob) -> dict[str, str | None]:
        """Placeholder values for the per-chunk template."""
        wall = self.job_walltime(job)
        mem = self.job_mem(job)
        env = "\n".join(export_line(k, str(v)) for k, v in job.env.items())
        return {
            "name": job.name,
            "chunk_dir": job.chunk_dir,
            "log": job.log,
            "walltime": self.format_walltime(wall) if wall else None,
            "mem": self.format_mem(mem) if mem else None,
            "queue": self.job_queue(job),
            "cpus": str(self.job_cpus(job)),
            "extra_cmds": "\n".join(job.extra_cmds) if job.extra_cmds else None,
            "env": env or None,
            "command": command_line(job.command),
            "exit_file": EXIT_FILE,
        }

    def render_script(self, job: ChunkJob) -> str:
        path, text = load_template(self.template, self.template_dir)
        return render(text, self.script_values(job), source=path)

    def script_path(self, job: ChunkJob) -> Path:
        return job.path / self.script_name

    def write_script(self, job: ChunkJob) -> str:
        """Render the job script into the chunk directory; returns its path."""
        text = self.render_script(job)
        path = self.script_path(job)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            with open(tmp, "w") as fobj:
                fobj.write(text)
            os.chmod(tmp, 0o755)
        return str(path)

    def prepare(self, job: ChunkJob) -> None:
        """Write the script and forget the previous attempt's exit status."""
        self.write_script(job)
        clear_exit_status(job)

    def record(self, job: ChunkJob, job_id: str | None, cmd: SubmitCommand,
               script: Path, **kw: Any) -> SubmitRecord:
        iso, unix = now_utc()
        run_dir = Path(job.run_dir)
        return SubmitRecord(
            name=job.name, system=self.name, job_id=job_id, command=list(cmd.argv),
            cwd=os.path.relpath(cmd.cwd, run_dir), script=os.path.relpath(script, run_dir),
            submit_time=iso, submit_unix=unix, host=socket.gethostname(), pid=os.getpid(),
            **kw)

    # ---- job arrays (schedulers that have them set these)
    array_template: ClassVar[str] = ""
    #: index of an array's first element (0 for SLURM, 1 for LSF)
    array_first_index: ClassVar[int] = 0

    def array_values(self, jobs: Sequence[ChunkJob], stem: str) -> dict[str, str | None]:
        """Placeholders of the array template (subclasses add naming and logs)."""
        return self.array_resources(jobs)

    def array_resources(self, jobs: Sequence[ChunkJob]) -> dict[str, str | None]:
        """One array's resources: the largest of its jobs'; a single queue."""
        walls = [w for w in (self.job_walltime(j) for j in jobs) if w]
        mems = [m for m in (self.job_mem(j) for j in jobs) if m]
        queues = {self.job_queue(j) for j in jobs}
        if len(queues) > 1:
            raise PipelineError(f"{jobs[0].name}: one job array cannot use several "
                                f"queues ({', '.join(sorted(map(str, queues)))})")
        return {
            "script": self.script_name,
            "walltime": self.format_walltime(max(walls)) if walls else None,
            "mem": self.format_mem(max(mems)) if mems else None,
            "queue": queues.pop(),
            "cpus": str(max(self.job_cpus(j) for j in jobs)),
        }

    def parse_submit(self, stdout: str) -> str:
        """The job id in the submit command's output."""
        raise NotImplementedError

    def array_element_id(self, array_id: str, index: int) -> str:
        raise NotImplementedError

    def _submit_array(self, jobs: list[ChunkJob], dry_run: bool) -> list[SubmitRecord]:
        """One array for jobs sharing a parent folder (a tile's ``chunks/``).

        The array script and an index file (one chunk script per line, relative
        to the folder) go to ``chunks/arrays/``; element k runs line k.
        """
        folder = jobs[0].path.parent / "arrays"
        stem = array_stem()
        script = folder / f"{stem}{Path(self.script_name).suffix}"
        cmd = self.submit_command(script)
        first = self.array_first_index
        if dry_run:
            log.info("would submit %s (array of %d chunks)", cmd, len(jobs))
            return [self.record(j, None, cmd, script, array_index=i)
                    for i, j in enumerate(jobs, start=first)]
        path, text = load_template(self.array_template, self.template_dir)
        body = render(text, self.array_values(jobs, stem), source=path)
        folder.mkdir(parents=True, exist_ok=True)
        for job in jobs:
            self.prepare(job)
        with atomic_path(folder / f"{stem}.txt") as tmp:
            with open(tmp, "w") as fobj:
                fobj.writelines(os.path.relpath(j.path, folder) + "\n" for j in jobs)
        with atomic_path(script) as tmp:
            with open(tmp, "w") as fobj:
                fobj.write(body)
        array_id = self.parse_submit(run_command(cmd, str(script)).stdout)
        records = []
        for i, job in enumerate(jobs, start=first):
            rec = self.record(job, self.array_element_id(array_id, i), cmd, script,
                              array_job_id=array_id, array_index=i)
            write_submit_record(job, rec)
            records.append(rec)
        log.info("submitted %d chunks as %s array %s", len(jobs), self.name, array_id)
        return records

    # ---- the contract
    def submit(self, jobs: Sequence[ChunkJob], wait: bool = False,
               dry_run: bool = False) -> list[SubmitRecord]:
        """Submit ``jobs``; with ``dry_run`` only log and return what would be run."""
        jobs = list(jobs)
        _check_unique(jobs)
        if not jobs:
            return []
        records = self._submit(jobs, dry_run=dry_run)
        if wait and not dry_run:
            self.wait(jobs)
        return records

    def _submit(self, jobs: list[ChunkJob], dry_run: bool) -> list[SubmitRecord]:
        raise NotImplementedError

    def query(self, jobs: Sequence[ChunkJob]) -> dict[str, JobState]:
        """State of every job: scheduler view (asked first) merged with the chunk files."""
        jobs = list(jobs)
        records = {job.name: read_submit_record(job) for job in jobs}
        mine = [job for job in jobs
                if records[job.name] is not None and records[job.name].system == self.name]
        sched = self._scheduler_states(mine, records) if mine else {}
        states = {}
        for job in jobs:
            code = read_exit_status(job)
            rec = records[job.name]
            if rec is None:
                states[job.name] = (JobState.NOT_SUBMITTED if code is None
                                    else merge_state(None, code))
            elif rec.system != self.name:
                # submitted by another system: only the file can tell
                states[job.name] = merge_state(None, code)
            else:
                states[job.name] = merge_state(sched.get(job.name), code)
        return states

    def _scheduler_states(self, jobs: list[ChunkJob],
                          records: Mapping[str, SubmitRecord | None]
                          ) -> dict[str, JobState | None]:
        """Scheduler's view per job name: PENDING/RUNNING/DONE/FAILED, None if unknown."""
        raise NotImplementedError

    def cancel(self, jobs: Sequence[ChunkJob]) -> None:
        raise NotImplementedError

    def wait(self, jobs: Sequence[ChunkJob], poll: float | None = None,
             timeout: float | None = None) -> dict[str, JobState]:
        """Block until no job is pending or running; returns the final states.

        Polls quickly at first (short jobs finish in about a second) and backs off
        to ``poll`` seconds so long runs do not hammer the scheduler.
        """
        jobs = list(jobs)
        poll = self.poll if poll is None else float(poll)
        start = time.monotonic()
        delay = min(0.2, poll)
        while True:
            states = self.query(jobs)
            active = [n for n, s in states.items() if s.active]
            if not active:
                return states
            if timeout is not None and time.monotonic() - start > timeout:
                raise PipelineError(f"timed out after {timeout:.0f} s waiting for "
                                    f"{len(active)} job(s), e.g. {active[0]}")
            time.sleep(delay)
            delay = min(poll, delay * 1.5)


class QueueSystem(BatchSystem):
    """A scheduler driven by commands (SLURM, LSF): one batched status query for
    all jobs, one cancel call. Subclasses give the commands and parse the output."""

    def __init__(self, *, array: bool = False, submit_threads: int = 1, **kw) -> None:
        super().__init__(**kw)
        self.array = bool(array)
        # a few submit calls in flight hide their round trips
        self.submit_threads = max(1, int(submit_threads))

    def _submit(self, jobs: list[ChunkJob], dry_run: bool) -> list[SubmitRecord]:
        if self.array:
            records = []
            for group in group_by_parent(jobs):
                records.extend(self._submit_array(group, dry_run))
            return records
        if dry_run:
            out = []
            for job in jobs:
                cmd = self.submit_command(self.script_path(job))
                log.info("would submit %s", cmd)
                out.append(self.record(job, None, cmd, self.script_path(job)))
            return out
        if self.submit_threads == 1:
            return [self._submit_one(job) for job in jobs]
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(max_workers=self.submit_threads) as pool:
            return list(pool.map(self._submit_one, jobs))

    def _submit_one(self, job: ChunkJob) -> SubmitRecord:
        self.prepare(job)
        cmd = self.submit_command(self.script_path(job))
        proc = run_command(cmd, str(self.script_path(job)))
        rec = self.record(job, self.parse_submit(proc.stdout), cmd, self.script_path(job))
        write_submit_record(job, rec)
        log.debug("submitted %s as %s job %s", job.name, self.name, rec.job_id)
        return rec

    def query_command(self, job_ids: Sequence[str]) -> list[str]:
        raise NotImplementedError

    def cancel_command(self, job_ids: Sequence[str]) -> list[str]:
        raise NotImplementedError

    def parse_query(self, proc: subprocess.CompletedProcess,
                    job_ids: list[str]) -> dict[str, JobState | None] | None:
        """Job id -> state (None: unknown) from the query's output; None if the
        scheduler failed."""
        raise NotImplementedError

    def _scheduler_states(self, jobs: list[ChunkJob],
                          records: Mapping[str, SubmitRecord | None]
                          ) -> dict[str, JobState | None]:
        wanted = {j.name: records[j.name] for j in jobs
                  if records[j.name] is not None and records[j.name].job_id}
        if not wanted:
            return {}
        # an array's id lists all its elements: one entry per array
        ids = sorted({r.array_job_id or r.job_id for r in wanted.values()})
        cmd = self.query_command(ids)
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as err:
            log.warning("%s failed: %s", cmd[0], err)
            return {}
        seen = self.parse_query(proc, [r.job_id for r in wanted.values()])
        if seen is None:
            log.warning("%s failed: %s", cmd[0], proc.stderr.strip())
            return {}  # scheduler unreachable: states stay UNKNOWN unless files tell
        # a job the scheduler no longer knows has finished and been purged
        return {name: seen[rec.job_id] if rec.job_id in seen else JobState.DONE
                for name, rec in wanted.items()}

    def cancel(self, jobs: Sequence[ChunkJob]) -> None:
        """Cancel the jobs' ids (array elements individually) in one call."""
        ids = []
        for job in jobs:
            rec = read_submit_record(job)
            if rec is not None and rec.system == self.name and rec.job_id:
                ids.append(rec.job_id)
        if ids:
            cmd = self.cancel_command(ids)
            run_command(SubmitCommand(cmd, cwd=os.getcwd()), cmd[0])


def _check_unique(jobs: Iterable[ChunkJob]) -> None:
    seen: set[str] = set()
    for job in jobs:
        if job.name in seen:
            raise ConfigError(f"job {job.name} given twice")
        seen.add(job.name)


def run_command(cmd: SubmitCommand, what: str, timeout: float = 120.0
                ) -> subprocess.CompletedProcess:
    """Run a scheduler command; failure -> one-line ``PipelineError`` naming ``what``."""
    stdin = open(Path(cmd.cwd) / cmd.stdin) if cmd.stdin else subprocess.DEVNULL
    try:
        proc = subprocess.run(cmd.argv, cwd=cmd.cwd, stdin=stdin, capture_output=True,
                              text=True, timeout=timeout)
    except FileNotFoundError:
        raise PipelineError(f"{what}: {cmd.argv[0]} not found on PATH") from None
    except subprocess.TimeoutExpired:
        raise PipelineError(f"{what}: {cmd.argv[0]} timed out after {timeout:.0f} s") from None
    finally:
        if cmd.stdin:
            stdin.close()
    if proc.returncode != 0:
        msg = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()[-1]
        raise PipelineError(f"{what}: {cmd.argv[0]} failed (exit {proc.returncode}): {msg}")
    return proc


def group_by_parent(jobs: Sequence[ChunkJob]) -> list[list[ChunkJob]]:
    """Jobs grouped by (run dir, folder holding the chunk dirs): one array per tile."""
    groups: dict[tuple[str, str], list[ChunkJob]] = {}
    for job in jobs:
        key = (job.run_dir, str(Path(job.chunk_dir).parent))
        groups.setdefault(key, []).append(job)
    return list(groups.values())


def array_stem() -> str:
    """A unique, sortable name for a job-array's files."""
    return "array-" + datetime.datetime.now().strftime("%Y%m%dT%H%M%S%f") + f"-{os.getpid()}"


def array_name(jobs: Sequence[ChunkJob]) -> str:
    """``<common prefix up to a '-'>-array``, e.g. ``DES0001-run1-array``."""
    names = [j.name for j in jobs]
    prefix = os.path.commonprefix(names)
    if len(names) > 1 and "-" in prefix:
        prefix = prefix[:prefix.rindex("-")]
    prefix = prefix.rstrip("-_.")
    return f"{prefix or 'megamixer'}-array"
