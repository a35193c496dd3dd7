"""The ``dask`` system: chunks as subprocess tasks on a local dask cluster (and on SLURM)."""

from __future__ import annotations

import time

import pytest

pytest.importorskip("distributed")

from pipeline.megamixer.systems import JobState, get_system, read_submit_record  # noqa: E402
from tests.slurm.chunkjobs import make_jobs, read_out  # noqa: E402
from tests.slurm.fixtures import slurm_cluster  # noqa: E402,F401


def test_local_dask_cluster_runs_chunks(tmp_path):
    jobs = make_jobs(tmp_path, 4, exit_codes={1: 3}, env={"WHO": "dask"},
                     command='echo "chunk {i} $WHO" > out.txt')
    system = get_system("dask", workers=2)
    t0 = time.perf_counter()
    records = system.submit(jobs)  # starts a LocalCluster, waits for all chunks
    elapsed = time.perf_counter() - t0
    states = system.query(jobs)
    assert states == {j.name: (JobState.FAILED if i == 1 else JobState.DONE)
                      for i, j in enumerate(jobs)}
    for i, job in enumerate(jobs):
        assert read_out(job) == f"chunk {i} dask"
        assert read_submit_record(job).job_id == records[i].job_id
    # a later process (a fresh adapter) reads the same states from the chunk files
    assert get_system("dask").query(jobs) == states
    print(f"\ndask LocalCluster(2): 4 chunks in {elapsed:.1f} s including cluster start")


def test_scheduler_address_and_killed_script_is_failed(tmp_path):
    from distributed import LocalCluster
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster:
        jobs = make_jobs(tmp_path, 2, command="echo chunk {i} > out.txt")
        system = get_system("dask", scheduler_address=cluster.scheduler_address)
        system.submit(jobs)
        assert system.query(jobs) == {j.name: JobState.DONE for j in jobs}
        # a job script killed mid-way (as by the OOM killer) never writes exit_status
        dead = make_jobs(tmp_path / "b", 1, command="kill -9 $PPID")
        system.submit(dead)
        assert system.query(dead)[dead[0].name] is JobState.FAILED
        assert not (dead[0].path / "exit_status").exists()


@pytest.mark.slurm
def test_dask_jobqueue_on_the_slurm_cluster(tmp_path, slurm_cluster):  # noqa: F811
    pytest.importorskip("dask_jobqueue")
    jobs = make_jobs(tmp_path, 3, command='echo "chunk {i} $SLURM_JOB_ID" > out.txt')
    system = get_system("dask", cluster="slurm", workers=1, queue="debug", mem="500M",
                        walltime="00:10:00", interface="lo")
    system.submit(jobs)
    assert system.query(jobs) == {j.name: JobState.DONE for j in jobs}
    for i, job in enumerate(jobs):
        words = read_out(job).split()
        assert words[:2] == ["chunk", str(i)] and words[2].isdigit()  # ran inside a slurm job


def test_unreachable_scheduler_is_one_line_error_and_submits_nothing(tmp_path):
    from pipeline.errors import PipelineError
    jobs = make_jobs(tmp_path, 1)
    system = get_system("dask", scheduler_address="tcp://127.0.0.1:9")
    system.connect_timeout = "2s"
    with pytest.raises(PipelineError, match="tcp://127.0.0.1:9: cannot connect"):
        system.submit(jobs)
    assert system.query(jobs) == {jobs[0].name: JobState.NOT_SUBMITTED}


@pytest.mark.slurm
def test_dask_jobqueue_workers_that_cannot_start_fail_fast(tmp_path, slurm_cluster):  # noqa: F811
    """Worker jobs asking the 1-minute 'tiny' partition for 10 minutes never start:
    the submit fails within seconds naming SLURM's reason, submits no chunk and
    leaves no worker job queued."""
    pytest.importorskip("dask_jobqueue")
    import subprocess
    import time

    from pipeline.errors import PipelineError
    jobs = make_jobs(tmp_path, 2)
    system = get_system("dask", cluster="slurm", workers=1, queue="tiny", mem="500M",
                        walltime="00:10:00", interface="lo")
    t0 = time.monotonic()
    with pytest.raises(PipelineError, match=r"cannot start on SLURM \(job \d+: PENDING "
                                            r"\((PartitionTimeLimit|PartitionConfig)\)"):
        system.submit(jobs)
    assert time.monotonic() - t0 < 60
    assert system.query(jobs) == {j.name: JobState.NOT_SUBMITTED for j in jobs}
    queued = subprocess.run(["squeue", "-h", "-p", "tiny", "-t", "PENDING,RUNNING", "-o", "%j"],
                            capture_output=True, text=True).stdout.split()
    assert "dask-worker" not in queued, queued


@pytest.mark.slurm
def test_dask_jobqueue_workers_still_queued_time_out(tmp_path, slurm_cluster):  # noqa: F811
    """Worker jobs held back for a reason that clears by itself (a start time an hour
    ahead): after ``worker_timeout`` the submit fails naming the reason."""
    pytest.importorskip("dask_jobqueue")
    from pipeline.errors import PipelineError
    jobs = make_jobs(tmp_path, 1)
    system = get_system("dask", cluster="slurm", workers=1, queue="debug", mem="500M",
                        walltime="00:10:00", interface="lo",
                        cluster_options={"job_extra_directives": ["--begin=now+3600"]})
    system.worker_timeout = 4.0
    with pytest.raises(PipelineError, match=r"no dask-jobqueue worker started within 4 s "
                                            r"\(job \d+: PENDING \(BeginTime\)\)"):
        system.submit(jobs)
    assert system.query(jobs) == {jobs[0].name: JobState.NOT_SUBMITTED}
