"""The batch-system contract on the ``local`` system, plus templates and the registry."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pipeline.errors import ConfigError
from pipeline.megamixer.systems import ChunkJob, JobState, get_system, read_submit_record
from pipeline.megamixer.systems.base import mem_megabytes, walltime_seconds
from pipeline.megamixer.systems.local import process_start_time
from pipeline.megamixer.systems.template import load_template, placeholders, template_dir
from tests.slurm.chunkjobs import make_jobs, read_out

REPO = Path(__file__).resolve().parents[1]
TEMPLATES = ["shell.sh", "slurm.sh", "slurm-array.sh", "lsf.sh", "lsf-array.sh"]


@pytest.mark.parametrize("name", TEMPLATES)
def test_template_documents_every_placeholder(name):
    _, text = load_template(name)
    doc = "\n".join(line for line in text.splitlines() if line.startswith("##"))
    used = placeholders(text)
    assert used, f"{name} uses no placeholders"
    undocumented = [p for p in used if f"##   {p} " not in doc and f" {p}," not in doc
                    and f" {p}:" not in doc]
    assert not undocumented, f"{name}: placeholders not documented: {undocumented}"


def test_local_runs_chunks_and_reports_states(tmp_path):
    jobs = make_jobs(tmp_path, 5, exit_codes={3: 3},
                     command='echo "chunk {i} $GREETING $(cat extra.txt)" > out.txt',
                     extra_cmds=["echo from-extra > extra.txt"], env={"GREETING": "hi there"})
    system = get_system("local", workers=2)
    assert system.script_name == "job.sh"
    records = system.submit(jobs)
    assert [r.name for r in records] == [j.name for j in jobs]
    states = system.query(jobs)
    assert states == {j.name: (JobState.FAILED if i == 3 else JobState.DONE)
                      for i, j in enumerate(jobs)}
    for i, job in enumerate(jobs):
        assert read_out(job) == f"chunk {i} hi there from-extra"
        assert (job.path / "exit_status").read_text().strip() == ("3" if i == 3 else "0")
        logtext = (job.path / "job.log").read_text()
        assert f"exit status {3 if i == 3 else 0}" in logtext
        rec = json.loads((job.path / "submit.json").read_text())
        assert rec["system"] == "local" and rec["name"] == job.name
        assert rec["cwd"] == job.chunk_dir
    # the scripts carry no absolute path: the tree can be moved
    for job in jobs:
        assert str(tmp_path) not in (job.path / "job.sh").read_text()


def test_workers_run_in_parallel(tmp_path):
    # each chunk records when it starts and ends; two workers must overlap two chunks
    jobs = make_jobs(tmp_path, 2, command="date +%s.%N > t0; sleep 1; date +%s.%N > t1")
    get_system("local", workers=2).submit(jobs)
    (a0, a1), (b0, b1) = [(float((j.path / "t0").read_text()), float((j.path / "t1").read_text()))
                          for j in jobs]
    assert max(a0, b0) < min(a1, b1), "the two chunks did not run at the same time"


def test_moved_run_tree_still_runs(tmp_path):
    jobs = make_jobs(tmp_path / "run", 2, command="cat ../../input.txt > out.txt")
    (tmp_path / "run" / "T0001").mkdir(parents=True)
    (tmp_path / "run" / "T0001" / "input.txt").write_text("payload\n")
    system = get_system("local", workers=1)
    system.submit(jobs)
    shutil.move(tmp_path / "run", tmp_path / "moved")
    moved = [ChunkJob(**{**j.__dict__, "run_dir": str(tmp_path / "moved")}) for j in jobs]
    # the old scripts, run in place after the move, still work
    for job in moved:
        (job.path / "out.txt").unlink()
        subprocess.run(["bash", str(job.path / "job.sh")], check=True)
        assert read_out(job) == "payload"
    assert system.query(moved) == {j.name: JobState.DONE for j in moved}


def test_resubmission_clears_old_status(tmp_path):
    jobs = make_jobs(tmp_path, 1, exit_codes={0: 2})
    system = get_system("local")
    system.submit(jobs)
    assert system.query(jobs)[jobs[0].name] is JobState.FAILED
    fixed = make_jobs(tmp_path, 1)
    system.submit(fixed)
    assert system.query(fixed)[fixed[0].name] is JobState.DONE
    log = (fixed[0].path / "job.log").read_text()
    assert "exit status 2" in log and "exit status 0" in log  # attempts are appended


def test_not_submitted_and_dry_run_write_nothing(tmp_path):
    jobs = make_jobs(tmp_path, 2)
    system = get_system("local")
    assert system.query(jobs) == {j.name: JobState.NOT_SUBMITTED for j in jobs}
    records = system.submit(jobs, dry_run=True)
    assert [r.job_id for r in records] == [None, None]
    assert records[0].command == ["bash", "job.sh"]
    assert not (tmp_path / "T0001").exists()


def test_ctrl_c_between_a_chunks_start_and_its_registration_still_stops_it(tmp_path,
                                                                            monkeypatch):
    """Ctrl-C can reach the pool after a chunk's process started but before the worker
    thread registered it: the chunk must still be stopped, or the run waits for it."""
    import threading

    from pipeline.megamixer.systems import local

    job = make_jobs(tmp_path, 1, command="echo $$ > pid; sleep 600")[0]
    system = get_system("local")
    real_popen = subprocess.Popen

    def popen_then_ctrl_c(*args, **kwargs):
        proc = real_popen(*args, **kwargs)
        _wait_pid(job, proc)
        # what the main thread does on KeyboardInterrupt, before the registration
        system._cancelled.set()
        system.cancel([job])
        return proc

    monkeypatch.setattr(local.subprocess, "Popen", popen_then_ctrl_c)
    runner = threading.Thread(target=system.submit, args=([job],), daemon=True)
    start = time.monotonic()
    runner.start()
    runner.join(timeout=30)
    pid = int((job.path / "pid").read_text())
    if runner.is_alive():
        os.killpg(os.getpgid(pid), signal.SIGKILL)
        raise AssertionError("the pool kept waiting for a chunk started before the Ctrl-C")
    assert time.monotonic() - start < 30
    assert system.query([job])[job.name] is JobState.FAILED


@pytest.mark.parametrize("signum,raised", [(signal.SIGINT, KeyboardInterrupt),
                                            (signal.SIGTERM, SystemExit)])
def test_signal_to_the_pool_stops_running_and_queued_chunks(tmp_path, signum, raised):
    """A signal while the pool waits is acted on from its loop (never raised inside
    the pool's locks): the running chunk is stopped, the queued one never starts."""
    import threading

    jobs = make_jobs(tmp_path, 2, command="echo $$ > pid; sleep 600")
    system = get_system("local", workers=1)
    def signal_once_started():
        _wait_pid(jobs[0])
        os.kill(os.getpid(), signum)

    threading.Thread(target=signal_once_started, daemon=True).start()
    start = time.monotonic()
    with pytest.raises(raised) as err:
        system.submit(jobs)
    assert time.monotonic() - start < 20
    if raised is SystemExit:
        assert err.value.code == 128 + signum
    assert system.query(jobs) == {jobs[0].name: JobState.FAILED,
                                  jobs[1].name: JobState.NOT_SUBMITTED}


_SUBMITTER = textwrap.dedent("""
    import sys
    from pipeline.megamixer.systems import get_system
    from tests.slurm.chunkjobs import make_jobs
    jobs = make_jobs(sys.argv[1], 1, command="echo $$ > pid; sleep 60")
    get_system("local").submit(jobs)
""")


def _wait_pid(job: ChunkJob, submitter: subprocess.Popen | None = None,
              timeout: float = 30) -> int:
    """The chunk command's pid, once it has written it (kills the submitter on failure)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = (job.path / "pid").read_text().strip() if (job.path / "pid").exists() else ""
        if text:
            return int(text)
        time.sleep(0.05)
    if submitter is not None:
        submitter.kill()
    raise AssertionError(f"chunk {job.name} never started")


def test_later_process_sees_running_then_failed_when_killed(tmp_path):
    """A chunk whose submitting process was killed reads FAILED, not RUNNING forever."""
    proc = subprocess.Popen([sys.executable, "-c", _SUBMITTER, str(tmp_path)], cwd=REPO)
    job = make_jobs(tmp_path, 1)[0]
    pid = _wait_pid(job, proc)
    try:
        system = get_system("local")
        assert system.query([job])[job.name] is JobState.RUNNING
        assert read_submit_record(job).pid == proc.pid
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        os.killpg(os.getpgid(pid), signal.SIGKILL)  # the chunk's own process group
    assert _settled(job) is JobState.FAILED
    assert not (job.path / "exit_status").exists()


def _settled(job: ChunkJob, timeout: float = 10) -> JobState:
    """The job's state once a killed process has really gone (the kernel takes a moment)."""
    deadline = time.monotonic() + timeout
    while True:
        state = get_system("local").query([job])[job.name]
        if state is not JobState.RUNNING or time.monotonic() > deadline:
            return state
        time.sleep(0.05)


_ORPHAN = textwrap.dedent("""
    import sys
    from pipeline.megamixer.systems import get_system
    from tests.slurm.chunkjobs import make_jobs
    jobs = make_jobs(sys.argv[1], 1, command="echo $$ > pid; while [ ! -e go ]; do sleep 0.05; done")
    get_system("local").submit(jobs)
""")


def test_chunk_outliving_a_killed_megamixit_reads_running_then_done(tmp_path):
    """kill -9 of the submitting process leaves its chunk running: a later process
    must see it running (not failed, so 'run' does not start it twice), then done."""
    proc = subprocess.Popen([sys.executable, "-c", _ORPHAN, str(tmp_path)], cwd=REPO)
    job = make_jobs(tmp_path, 1)[0]
    pid = _wait_pid(job, proc)
    try:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert get_system("local").query([job])[job.name] is JobState.RUNNING
        (job.path / "go").write_text("")
        deadline = time.monotonic() + 30
        while not (job.path / "exit_status").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert get_system("local").query([job])[job.name] is JobState.DONE
    finally:
        try:
            os.killpg(os.getpgid(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_registry_errors_are_one_line():
    with pytest.raises(ConfigError, match="did you mean 'slurm'"):
        get_system("slurn")
    with pytest.raises(ConfigError, match="unknown batch-system option 'wrokers'.*'workers'"):
        get_system("local", wrokers=2)
    with pytest.raises(ConfigError, match="walltime '2h'"):
        get_system("slurm", walltime="2h")
    # options meant for other systems are ignored; None means unset
    system = get_system("slurm", workers=4, scheduler_address=None, dask_cluster="slurm",
                        queue="debug", array=True)
    assert system.array and system.queue == "debug"
    with pytest.raises(ConfigError, match="plain relative path"):
        ChunkJob(name="a", run_dir="/x", chunk_dir="/abs/chunk", command=["true"])
    with pytest.raises(ConfigError, match="plain relative path"):
        ChunkJob(name="a", run_dir="/x", chunk_dir="t/../../up", command=["true"])


def test_resource_parsing():
    assert walltime_seconds("02:30:00") == 9000
    assert walltime_seconds("1-00:00:00") == 86400
    assert walltime_seconds("01:30") == 5400
    assert walltime_seconds(90) == 5400  # minutes, as in the run config
    assert mem_megabytes("2G") == 2048
    assert mem_megabytes("500MB") == 500
    assert mem_megabytes("1.5g") == 1536
    assert mem_megabytes(4000) == 4000
    for bad in ("2 hours", "-1"):
        with pytest.raises(ConfigError):
            walltime_seconds(bad)
    with pytest.raises(ConfigError):
        mem_megabytes("lots")


def test_template_dir_is_the_repos():
    assert template_dir() == REPO / "jobtemplates"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_run_stops_its_chunks(tmp_path, sig):
    """Ctrl-C or SIGTERM of the submitter terminates running chunks; they read FAILED."""
    proc = subprocess.Popen([sys.executable, "-c", _SUBMITTER, str(tmp_path)], cwd=REPO,
                            stderr=subprocess.DEVNULL)
    job = make_jobs(tmp_path, 1)[0]
    pid = _wait_pid(job, proc)
    proc.send_signal(sig)
    assert proc.wait(timeout=10) != 0
    deadline = time.monotonic() + 5
    while process_start_time(pid) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process_start_time(pid) is None, "the chunk outlived its submitter"
    assert get_system("local").query([job])[job.name] is JobState.FAILED
