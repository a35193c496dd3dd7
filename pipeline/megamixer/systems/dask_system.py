"""The ``dask`` system: each chunk's script is a subprocess task on a dask cluster.

The cluster is, in order: a running scheduler at ``scheduler_address``; a
``dask_jobqueue.SLURMCluster`` of ``workers`` one-worker jobs when
``cluster="slurm"``; else a ``LocalCluster`` of ``workers`` processes. ``submit``
waits for completion (the futures live in this process); a later process reads the
chunk files like the local system does. Workers need the run tree on a shared
filesystem, and only ``bash`` (the task is ``subprocess.call``; the package itself
need not be importable on the workers).
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import tempfile
import time
import uuid
from typing import Any, Iterator, Mapping, Sequence

from ...errors import ConfigError, PipelineError
from .base import (BatchSystem, ChunkJob, JobState, Progress, SubmitCommand, SubmitRecord,
                   hms, mem_megabytes, read_exit_status, walltime_seconds,
                   write_submit_record)
from .local import _set_live, live_state, owner_state, process_start_time

log = logging.getLogger(__name__)

CLUSTERS = ("local", "slurm")


def wait_for_slurm_workers(client: Any, cluster: Any, timeout: float,
                           poll: float = 2.0) -> None:
    """Return once a dask-jobqueue worker has joined; raise a one-line error as soon
    as SLURM says every worker job cannot start as requested, or after ``timeout``."""
    from .slurm import SlurmSystem, never_starts, parse_squeue

    query = SlurmSystem().query_command
    deadline = time.monotonic() + timeout
    while True:
        if client.scheduler_info().get("workers"):
            return
        ids = [job.job_id for job in cluster.workers.values() if getattr(job, "job_id", None)]
        seen = {}
        if ids:
            try:
                proc = subprocess.run(query(ids), capture_output=True, text=True, timeout=60)
                seen = parse_squeue(proc.stdout) if proc.returncode == 0 else {}
            except (OSError, subprocess.TimeoutExpired):
                seen = {}
        about = ", ".join(f"job {i}: {st} ({why})" for i, (st, why) in seen.items())
        if seen and all(st == "PENDING" and never_starts(why) for st, why in seen.values()):
            raise PipelineError(f"dask-jobqueue workers cannot start on SLURM ({about}); "
                                "change queue/walltime/mem/cpus")
        if time.monotonic() > deadline:
            raise PipelineError(f"no dask-jobqueue worker started within {timeout:.0f} s"
                                + (f" ({about})" if about else ""))
        time.sleep(poll)


class DaskSystem(BatchSystem):
    """dask.distributed adapter."""

    name = "dask"
    template = "shell.sh"
    script_name = "job.sh"
    options = frozenset({"workers", "scheduler_address", "cluster", "queue", "walltime",
                         "mem", "cpus", "interface", "cluster_options", "template_dir",
                         "poll"})
    default_poll = 1.0

    def __init__(self, *, workers: int | None = None, scheduler_address: str | None = None,
                 cluster: str | None = None, interface: str | None = None,
                 cluster_options: Mapping[str, Any] | None = None, **kw) -> None:
        super().__init__(**kw)
        self.workers = max(1, int(workers or os.cpu_count() or 1))
        self.scheduler_address = scheduler_address
        self.cluster = cluster or "local"
        if self.cluster not in CLUSTERS:
            raise ConfigError(f"dask cluster {self.cluster!r}; allowed: {', '.join(CLUSTERS)}")
        self.interface = interface
        self.cluster_options = dict(cluster_options or {})
        self._futures: dict[str, Any] = {}
        self.connect_timeout = "20s"
        self.worker_timeout = 300.0  # s for the first dask-jobqueue worker to start
        self.log_directory = tempfile.gettempdir()  # set to the run tree on submit

    def submit_command(self, job: ChunkJob) -> SubmitCommand:
        return SubmitCommand(["bash", str(self.script_path(job))], cwd=str(job.path))

    @contextlib.contextmanager
    def client(self) -> Iterator[Any]:
        """A ``distributed.Client`` on the configured cluster; closed on exit."""
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise PipelineError("system dask needs the packages dask and distributed "
                                "(pip install 'megamixer[dask]')") from None
        if self.scheduler_address:
            try:
                client = Client(self.scheduler_address, timeout=self.connect_timeout)
            except (OSError, TimeoutError) as err:
                raise PipelineError(f"dask scheduler {self.scheduler_address}: cannot "
                                    f"connect ({err.__class__.__name__})") from None
            with client:
                yield client
            return
        if self.cluster == "slurm":
            cluster = self._slurm_cluster()
        else:
            opts = dict(n_workers=self.workers, threads_per_worker=1, processes=True,
                        dashboard_address=None)
            opts.update(self.cluster_options)
            cluster = LocalCluster(**opts)
        try:
            with Client(cluster) as client:
                if self.cluster == "slurm":
                    wait_for_slurm_workers(client, cluster, self.worker_timeout)
                yield client
        finally:
            cluster.close()

    def _slurm_cluster(self) -> Any:
        try:
            from dask_jobqueue import SLURMCluster
        except ImportError:
            raise PipelineError("dask cluster 'slurm' needs dask-jobqueue "
                                "(pip install dask-jobqueue)") from None
        wall = walltime_seconds(self.walltime)
        opts: dict[str, Any] = dict(cores=self.cpus or 1, processes=1,
                                    memory=f"{mem_megabytes(self.mem) or 1024}MB",
                                    walltime=hms(wall) if wall else "01:00:00")
        if self.queue:
            opts["queue"] = self.queue
        if self.interface:
            opts["interface"] = self.interface
        # worker jobs' SLURM logs go to the run tree, not the submitting directory
        opts["log_directory"] = self.log_directory
        opts.update(self.cluster_options)
        cluster = SLURMCluster(**opts)
        cluster.scale(jobs=self.workers)
        return cluster

    def _submit(self, jobs: list[ChunkJob], dry_run: bool) -> list[SubmitRecord]:
        where = self.scheduler_address or f"{self.cluster} cluster"
        if dry_run:
            for job in jobs:
                log.info("would run %s on dask (%s)", self.submit_command(job), where)
            return [self.record(j, None, self.submit_command(j), self.script_path(j))
                    for j in jobs]
        self.log_directory = os.path.join(jobs[0].run_dir, "dask-logs")
        # connect first: a cluster that cannot be reached leaves the chunks unsubmitted
        with self.client() as client:
            records = []
            for job in jobs:
                self.prepare(job)
                rec = self.record(job, f"megamixer-{job.name}-{uuid.uuid4().hex[:8]}",
                                  self.submit_command(job), self.script_path(job),
                                  extra={"pid_start": process_start_time(os.getpid()),
                                         "scheduler": where})
                write_submit_record(job, rec)
                _set_live(job, JobState.PENDING)
                records.append(rec)
            self._run(client, jobs, records)
        return records

    def _run(self, client: Any, jobs: list[ChunkJob], records: list[SubmitRecord]) -> None:
        from distributed import as_completed
        progress = Progress(len(jobs), "dask")
        try:
            futures = {}
            for job, rec in zip(jobs, records):
                # subprocess.call keeps workers free of any dependency on this package
                fut = client.submit(subprocess.call, ["bash", str(self.script_path(job))],
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    key=rec.job_id, pure=False)
                futures[fut] = job
                self._futures[job.name] = fut
            for fut in as_completed(futures):
                job = futures[fut]
                try:
                    fut.result()
                except Exception as err:  # worker died, task cancelled, ...
                    log.warning("chunk %s: dask task failed: %s", job.name, err)
                code = read_exit_status(job)
                state = JobState.DONE if code == 0 else JobState.FAILED
                if state is JobState.FAILED:
                    log.warning("chunk %s failed; see %s", job.name, job.path / job.log)
                _set_live(job, state)
                progress.update(job.name, state)
        finally:
            progress.close()
            for job in jobs:
                self._futures.pop(job.name, None)
                state = live_state(job)
                if state is not None and state.active:
                    _set_live(job, JobState.FAILED)

    def _scheduler_states(self, jobs: list[ChunkJob],
                          records: Mapping[str, SubmitRecord | None]
                          ) -> dict[str, JobState | None]:
        return {job.name: owner_state(job, records[job.name]) for job in jobs}

    def cancel(self, jobs: Sequence[ChunkJob]) -> None:
        """Cancel this process's futures (a running script finishes its current chunk)."""
        for job in jobs:
            fut = self._futures.get(job.name)
            if fut is not None:
                fut.cancel()
