"""The ``local`` system: run the chunk scripts in a pool of processes on this machine.

``submit`` runs every chunk to completion (``wait`` is implied). While it runs, the
states live in this process; a later process reads ``submit.json``: a chunk whose
submitting process is still alive is pending or running, one whose submitter is
gone without an ``exit_status`` is FAILED (the run was killed).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import threading
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from typing import Mapping, Sequence

from .base import (BatchSystem, ChunkJob, JobState, Progress, SubmitCommand, SubmitRecord,
                   read_exit_status, remove_submit_record, write_submit_record)

log = logging.getLogger(__name__)

#: "host pid start-time" of a running job script (written by jobtemplates/shell.sh)
PID_FILE = "job.pid"

# In-process states of chunks run by this process, keyed by absolute chunk dir, so
# any adapter instance in this process sees them.
_LIVE: dict[str, JobState] = {}
_LIVE_LOCK = threading.Lock()


def _set_live(job: ChunkJob, state: JobState) -> None:
    with _LIVE_LOCK:
        _LIVE[str(job.path)] = state


def live_state(job: ChunkJob) -> JobState | None:
    with _LIVE_LOCK:
        return _LIVE.get(str(job.path))


def process_start_time(pid: int) -> int | None:
    """Kernel start time of ``pid`` (guards against pid reuse), None if not running."""
    try:
        with open(f"/proc/{pid}/stat") as fobj:
            fields = fobj.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if fields[0] == "Z":  # a zombie has finished
        return None
    return int(fields[19])


def script_alive(job: ChunkJob) -> bool:
    """True if the chunk's job script still runs on this host (its ``job.pid``)."""
    try:
        host, pid, start = (job.path / PID_FILE).read_text().split()
    except (OSError, ValueError):
        return False
    return (host == socket.gethostname() and pid.isdigit()
            and process_start_time(int(pid)) == int(start))


def owner_state(job: ChunkJob, rec: SubmitRecord) -> JobState | None:
    """State implied by the process that submitted ``job`` (systems that block in submit).

    PENDING/RUNNING while that process lives (RUNNING once the chunk's log was
    touched after submission); once it has exited, RUNNING while the chunk's own
    script still runs (an orphan of a killed megamixit), else DONE-like "gone";
    None when it ran on another host and cannot be checked.
    """
    state = live_state(job)
    if state is not None and state is not JobState.PENDING:
        return state
    if state is None:
        if rec.host != socket.gethostname():
            return JobState.RUNNING if script_alive(job) else None
        start = process_start_time(rec.pid)
        if (start is None or start != rec.extra.get("pid_start", start)
                or rec.pid == os.getpid()):
            # submitter gone: "no exit_status" then reads FAILED unless the script runs on
            return JobState.RUNNING if script_alive(job) else JobState.DONE
    try:
        touched = (job.path / job.log).stat().st_mtime >= rec.submit_unix
    except OSError:
        touched = False
    return JobState.RUNNING if touched else JobState.PENDING


#: how often the pool's loop looks for a signal noted by its handlers
_SIGNAL_POLL_SECONDS = 0.2


class LocalSystem(BatchSystem):
    """A pool of ``workers`` processes on this machine (default: all cores)."""

    name = "local"
    template = "shell.sh"
    script_name = "job.sh"
    options = frozenset({"workers", "walltime", "mem", "queue", "cpus", "template_dir",
                         "poll"})
    default_poll = 1.0

    def __init__(self, *, workers: int | None = None, **kw) -> None:
        super().__init__(**kw)
        self.workers = max(1, int(workers or os.cpu_count() or 1))
        self._procs: dict[str, subprocess.Popen] = {}
        self._records: dict[str, SubmitRecord] = {}
        self._lock = threading.Lock()
        self._cancelled = threading.Event()

    def submit_command(self, job: ChunkJob) -> SubmitCommand:
        """``bash job.sh`` in the chunk dir (the script cds to its own folder anyway)."""
        return SubmitCommand(["bash", self.script_name], cwd=str(job.path))

    def _submit(self, jobs: list[ChunkJob], dry_run: bool) -> list[SubmitRecord]:
        records = []
        for job in jobs:
            cmd = self.submit_command(job)
            if dry_run:
                log.info("would run %s", cmd)
                records.append(self.record(job, None, cmd, self.script_path(job)))
                continue
            self.prepare(job)
            # written when the chunk starts: a chunk the pool never reached (Ctrl-C, a
            # killed megamixit) must read "not submitted", not "failed"
            remove_submit_record(job)
            rec = self.record(job, f"{socket.gethostname()}:{os.getpid()}", cmd,
                              self.script_path(job),
                              extra={"pid_start": process_start_time(os.getpid())})
            self._records[job.name] = rec
            _set_live(job, JobState.PENDING)
            records.append(rec)
        if not dry_run:
            self._run_pool(jobs)
        return records

    def _run_pool(self, jobs: list[ChunkJob]) -> None:
        self._cancelled.clear()
        progress = Progress(len(jobs), "local")
        pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="chunk")
        order = {job.name: i for i, job in enumerate(jobs)}
        received: list[int] = []
        old_handlers = {}
        if threading.current_thread() is threading.main_thread():
            # Ctrl-C and SIGTERM (e.g. megamixit's own batch job timing out) only note
            # the signal: raised asynchronously, the exception could land inside the
            # pool's locks, leave one held and the pool waiting forever; the loop
            # below acts on it between waits
            for sig in (signal.SIGINT, signal.SIGTERM):
                old_handlers[sig] = signal.signal(sig, lambda signum, _: received.append(signum))
        try:
            futures = {pool.submit(self._run_one, job): job for job in jobs}
            pending = set(futures)
            while pending:
                if received:
                    if received[0] == signal.SIGINT:
                        raise KeyboardInterrupt
                    raise SystemExit(128 + received[0])
                done, pending = wait(pending, timeout=_SIGNAL_POLL_SECONDS,
                                     return_when=FIRST_COMPLETED)
                for fut in sorted(done, key=lambda f: order[futures[f].name]):
                    job = futures[fut]
                    state = fut.result()
                    if state is JobState.FAILED:
                        log.warning("chunk %s failed; see %s", job.name, job.path / job.log)
                    progress.update(job.name, state)
        except BaseException:
            # Ctrl-C or an internal error: stop queued chunks, terminate running ones
            self._cancelled.set()
            self.cancel(jobs)
            raise
        finally:
            # a second Ctrl-C while the chunks stop acts at once again
            for sig, old in old_handlers.items():
                signal.signal(sig, old)
            pool.shutdown(wait=True, cancel_futures=True)
            progress.close()

    def _run_one(self, job: ChunkJob) -> JobState:
        if self._cancelled.is_set():
            _set_live(job, JobState.NOT_SUBMITTED)
            return JobState.NOT_SUBMITTED
        _set_live(job, JobState.RUNNING)
        write_submit_record(job, self._records[job.name])
        script = str(self.script_path(job))
        proc = subprocess.Popen(["bash", script], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                start_new_session=True)
        with self._lock:
            self._procs[job.name] = proc
            # a Ctrl-C that came between the start and this registration found no
            # process to stop: stop it here, or the pool would wait for it forever
            cancelled = self._cancelled.is_set()
        if cancelled:
            _terminate_group(proc)
        _, err = proc.communicate()
        with self._lock:
            self._procs.pop(job.name, None)
        code = read_exit_status(job)
        if code is None and err:
            log.warning("chunk %s: %s", job.name, err.decode(errors="replace").strip()[-500:])
        state = (JobState.DONE if code == 0 else JobState.FAILED)
        _set_live(job, state)
        return state

    def _scheduler_states(self, jobs: list[ChunkJob],
                          records: Mapping[str, SubmitRecord | None]
                          ) -> dict[str, JobState | None]:
        return {job.name: owner_state(job, records[job.name]) for job in jobs}

    def cancel(self, jobs: Sequence[ChunkJob]) -> None:
        """Terminate this process's running chunks (their process groups)."""
        names = {job.name for job in jobs}
        with self._lock:
            procs = [p for n, p in self._procs.items() if n in names]
        for proc in procs:
            _terminate_group(proc)
        for job in jobs:
            if live_state(job) is JobState.PENDING:
                _set_live(job, JobState.NOT_SUBMITTED)


def _terminate_group(proc: subprocess.Popen) -> None:
    """SIGTERM a chunk's process group (started in its own session)."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
