"""The ``slurm`` system on a real single-node SLURM cluster (tests/slurm/cluster.sh)."""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest

from pipeline.megamixer.systems import ChunkJob, JobState, get_system, read_submit_record
from pipeline.megamixer.systems import slurm as slurm_module
from tests.slurm.chunkjobs import make_jobs, read_out
from tests.slurm.fixtures import slurm_cluster  # noqa: F401  (session fixture)

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm_cluster")]


def scontrol_job(job_id: str) -> dict[str, str]:
    out = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True,
                         text=True, check=True).stdout
    return dict(word.split("=", 1) for word in out.split() if "=" in word)


def test_jobs_run_with_their_directives(tmp_path):
    jobs = make_jobs(tmp_path, 3, exit_codes={1: 3}, walltime="00:10:00", mem="100M",
                     queue="debug", cpus=2,
                     command='echo "chunk {i} $SLURM_CPUS_PER_TASK $GREETING" > out.txt',
                     env={"GREETING": "hello"})
    system = get_system("slurm", poll=1)
    assert system.script_name == "job.slurm"
    records = system.submit(jobs, wait=True)
    states = system.query(jobs)
    assert states == {j.name: (JobState.FAILED if i == 1 else JobState.DONE)
                      for i, j in enumerate(jobs)}
    for i, (job, rec) in enumerate(zip(jobs, records)):
        assert read_out(job) == f"chunk {i} 2 hello"
        assert (job.path / "exit_status").read_text().strip() == ("3" if i == 1 else "0")
        assert read_submit_record(job).job_id == rec.job_id
        info = scontrol_job(rec.job_id)
        assert info["JobName"] == job.name
        assert info["TimeLimit"] == "00:10:00"
        assert info["Partition"] == "debug"
        assert info["MinMemoryNode"] == "100M"
        assert info["NumCPUs"] == "2"
        assert info["StdOut"] == str(job.path / "job.log")
        assert info["JobState"] == ("FAILED" if i == 1 else "COMPLETED")
        assert str(tmp_path) not in (job.path / "job.slurm").read_text()


def test_status_while_running_then_cancelled_is_failed(tmp_path):
    jobs = make_jobs(tmp_path, 2, command="sleep 60")
    system = get_system("slurm")
    system.submit(jobs)
    # a fresh adapter (as in a later `megamixit status`) sees them queued or running
    later = get_system("slurm")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        states = later.query(jobs)
        assert all(s.active for s in states.values()), states
        if all(s is JobState.RUNNING for s in states.values()):
            break
        time.sleep(0.2)
    assert all(s is JobState.RUNNING for s in states.values()), states
    later.cancel(jobs)
    final = later.wait(jobs, poll=0.5, timeout=30)
    assert final == {j.name: JobState.FAILED for j in jobs}
    assert not any((j.path / "exit_status").exists() for j in jobs)


def test_job_that_cannot_start_is_stuck_not_pending_forever(tmp_path, caplog):
    """A wall time above the partition's limit: SLURM keeps the job pending with
    reason PartitionTimeLimit. It reads STUCK (explained once in the log), ``wait``
    returns at once instead of blocking, and a cancel makes it FAILED."""
    stuck = make_jobs(tmp_path, 1, tile="TS", queue="tiny", walltime="00:10:00")
    fine = make_jobs(tmp_path, 1, tile="TF", queue="tiny", walltime=1)
    system = get_system("slurm", poll=0.5)
    system.submit(stuck + fine)
    try:
        t0 = time.monotonic()
        with caplog.at_level("WARNING", logger=slurm_module.__name__):
            final = system.wait(stuck + fine, timeout=60)
        assert final == {stuck[0].name: JobState.STUCK, fine[0].name: JobState.DONE}
        assert time.monotonic() - t0 < 60
        job_id = read_submit_record(stuck[0]).job_id
        assert scontrol_job(job_id)["Reason"] == "PartitionTimeLimit"
        warned = [r.getMessage() for r in caplog.records if "cannot start" in r.getMessage()]
        # slurmctld says PartitionConfig at submission, PartitionTimeLimit after a pass
        assert len(warned) == 1 and job_id in warned[0]
        assert "PartitionConfig" in warned[0] or "PartitionTimeLimit" in warned[0]
    finally:
        system.cancel(stuck)  # a stuck job would otherwise stay queued for good
    assert system.wait(stuck, poll=0.5, timeout=30) == {stuck[0].name: JobState.FAILED}


@pytest.mark.parametrize("state, reason, expected", [
    ("PENDING", "Priority", JobState.PENDING),
    ("PENDING", "Resources", JobState.PENDING),
    ("PENDING", "JobHeldUser", JobState.PENDING),          # the user may release it
    ("PENDING", "QOSMaxJobsPerUserLimit", JobState.PENDING),  # clears as jobs finish
    ("PENDING", "AssocGrpCpuLimit", JobState.PENDING),
    ("PENDING", "PartitionTimeLimit", JobState.STUCK),
    ("PENDING", "PartitionConfig", JobState.STUCK),
    ("PENDING", "QOSMaxWallDurationPerJobLimit", JobState.STUCK),
    ("PENDING", "AssocMaxCpuPerJobLimit", JobState.STUCK),
    ("PENDING", "BadConstraints", JobState.STUCK),
    ("PENDING", "DependencyNeverSatisfied", JobState.STUCK),
    ("RUNNING", "None", JobState.RUNNING),
    ("CANCELLED", "PartitionTimeLimit", JobState.FAILED),
])
def test_pending_reasons(state, reason, expected):
    assert slurm_module.slurm_state(state, reason) is expected
    parsed = slurm_module.parse_squeue(f"12_3|{state}|{reason}\n99|COMPLETED\n")
    assert parsed == {"12_3": (state, reason), "99": ("COMPLETED", "")}


def test_arrays_one_per_tile(tmp_path):
    jobs = (make_jobs(tmp_path, 3, tile="TA", exit_codes={2: 3}, walltime=5)
            + make_jobs(tmp_path, 2, tile="TB", walltime=5))
    system = get_system("slurm", array=True, poll=1)
    records = system.submit(jobs, wait=True)
    array_ids = {r.array_job_id for r in records}
    assert len(array_ids) == 2  # one array per tile
    assert [r.array_index for r in records] == [0, 1, 2, 0, 1]
    states = system.query(jobs)
    for job in jobs:
        failed = job.name.startswith("TA") and job.name.endswith("2")
        assert states[job.name] is (JobState.FAILED if failed else JobState.DONE)
        i = int(job.name.rsplit("-", 1)[1])
        assert read_out(job) == f"chunk {i}"
    info = scontrol_job(records[0].job_id)
    assert info["TimeLimit"] == "00:05:00"
    index = (tmp_path / "TA" / "chunks" / "arrays").glob("*.txt")
    assert next(index).read_text().split() == [f"../chunk{i:06d}-{i:06d}" for i in range(3)]


def test_failed_chunk_resubmitted_reads_active_then_done(tmp_path):
    (tmp_path / "input.txt").write_text("ok\n")
    jobs = make_jobs(tmp_path, 2, command="cat ../../../input.txt > out.txt")
    system = get_system("slurm", poll=1)
    (tmp_path / "input.txt").rename(tmp_path / "input.bak")
    system.submit(jobs, wait=True)
    assert system.query(jobs) == {j.name: JobState.FAILED for j in jobs}
    (tmp_path / "input.bak").rename(tmp_path / "input.txt")
    system.submit(jobs[:1])
    # the old exit_status is gone at submission: the chunk is queued, not failed
    assert system.query(jobs[:1])[jobs[0].name] is not JobState.FAILED
    final = system.wait(jobs, poll=0.5, timeout=60)
    assert final == {jobs[0].name: JobState.DONE, jobs[1].name: JobState.FAILED}


def test_moved_run_tree_runs(tmp_path):
    jobs = make_jobs(tmp_path / "run", 1, command="cat ../../marker > out.txt")
    (tmp_path / "run" / "T0001").mkdir(parents=True)
    (tmp_path / "run" / "T0001" / "marker").write_text("here\n")
    system = get_system("slurm", poll=1)
    system.write_script(jobs[0])
    shutil.move(tmp_path / "run", tmp_path / "moved")
    moved = ChunkJob(**{**jobs[0].__dict__, "run_dir": str(tmp_path / "moved")})
    # submit the script written before the move, as `megamixit run` would
    job_id = subprocess.run(["sbatch", "--parsable", "job.slurm"], cwd=moved.path,
                            capture_output=True, text=True, check=True).stdout.strip()
    deadline = time.monotonic() + 30
    while not (moved.path / "exit_status").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert (moved.path / "exit_status").read_text().strip() == "0", job_id
    assert read_out(moved) == "here"


def test_overhead_and_batched_status(tmp_path, monkeypatch):
    n = 12
    jobs = make_jobs(tmp_path, n, command="true")
    system = get_system("slurm", poll=0.5)
    t0 = time.perf_counter()
    system.submit(jobs)
    t_submit = time.perf_counter() - t0
    calls = []
    real_run = subprocess.run

    def counting_run(argv, *a, **kw):
        calls.append(argv[0])
        return real_run(argv, *a, **kw)

    monkeypatch.setattr(slurm_module.subprocess, "run", counting_run)
    system.query(jobs)
    assert calls == ["squeue"], "status must be one squeue call for all jobs"
    final = system.wait(jobs, timeout=120)
    t_total = time.perf_counter() - t0
    assert set(final.values()) == {JobState.DONE}
    print(f"\nslurm: submit {1e3 * t_submit / n:.1f} ms/chunk, "
          f"submit-to-all-done {1e3 * t_total / n:.0f} ms/chunk ({n} chunks, 2 cores)")
    # sbatch is a single RPC to a local slurmctld (tens of ms); a second per chunk
    # would mean something is serialised or sleeping
    assert t_submit / n < 1.0
