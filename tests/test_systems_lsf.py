"""The ``lsf`` system: generated scripts and exact submit/status/cancel commands.

LSF cannot run here, so fake ``bsub``/``bjobs``/``bkill`` executables on PATH record
their arguments, standard input and working directory; the generated scripts are
then executed with bash the way LSF would (a spooled copy run elsewhere, with
LS_SUBCWD and LSB_JOBINDEX set) to check they do their job.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from pipeline.megamixer.systems import JobState, get_system, read_submit_record
from tests.slurm.chunkjobs import make_jobs, read_out

FAKE = textwrap.dedent("""\
    #!/usr/bin/env python3
    import json, os, sys
    log = os.environ["FAKE_LSF_LOG"]
    stdin = sys.stdin.read() if "{name}" == "bsub" else None
    with open(log, "a") as f:
        f.write(json.dumps({{"argv": sys.argv, "cwd": os.getcwd(), "stdin": stdin}}) + "\\n")
    if "{name}" == "bsub":
        n = sum(1 for _ in open(log))
        print(f"Job <{{100 + n}}> is submitted to queue <normal>.")
    elif "{name}" == "bjobs":
        sys.stdout.write(open(os.environ["FAKE_BJOBS_OUT"]).read())
        for line in open(os.environ["FAKE_BJOBS_OUT"] + ".missing"):
            print(f"Job <{{line.strip()}}> is not found", file=sys.stderr)
""")


@pytest.fixture
def fake_lsf(tmp_path, monkeypatch):
    """PATH with fake LSF commands; returns a reader of the recorded calls."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name in ("bsub", "bjobs", "bkill"):
        path = bindir / name
        path.write_text(FAKE.format(name=name))
        path.chmod(0o755)
    log = tmp_path / "lsf-calls.jsonl"
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_LSF_LOG", str(log))
    monkeypatch.setenv("FAKE_BJOBS_OUT", str(tmp_path / "bjobs.out"))

    def calls():
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text().splitlines()]
    return calls


def directives(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("#BSUB")]


def run_like_lsf(script: Path, subcwd: Path, spool: Path, **env) -> int:
    """Run a spooled copy of ``script`` from another folder, as LSF does."""
    spool.mkdir(exist_ok=True)
    copy = spool / f"{script.name}.{len(list(spool.iterdir()))}"
    shutil.copy(script, copy)
    full = {**os.environ, "LS_SUBCWD": str(subcwd), **env}
    return subprocess.run(["bash", str(copy)], cwd=spool, env=full).returncode


def test_script_directives_and_submit_command(tmp_path, fake_lsf):
    jobs = make_jobs(tmp_path / "run", 2, exit_codes={1: 3}, walltime="01:30:30",
                     mem="2G", queue="long", cpus=2, extra_cmds=["echo setup"])
    system = get_system("lsf")
    assert system.script_name == "job.lsf"
    records = system.submit(jobs)
    script = (jobs[0].path / "job.lsf").read_text()
    assert directives(script) == [
        f"#BSUB -J {jobs[0].name}",
        "#BSUB -oo job.log.lsf",
        "#BSUB -n 2",
        "#BSUB -W 01:31",     # LSF takes [hours:]minutes: 1:30:30 rounds up
        "#BSUB -q long",
        "#BSUB -M 2048MB",
    ]
    assert 'cd "${MEGAMIXER_CHUNK_DIR:-${LS_SUBCWD' in script
    assert str(tmp_path) not in script
    calls = fake_lsf()
    assert [c["argv"][1:] for c in calls] == [[], []]          # plain `bsub < job.lsf`
    assert [c["cwd"] for c in calls] == [str(j.path) for j in jobs]
    assert calls[0]["stdin"] == script
    assert [r.job_id for r in records] == ["101", "102"]
    assert read_submit_record(jobs[1]).job_id == "102"
    assert records[0].command == ["bsub"]

    # the script, run as LSF runs it, works from its submission folder
    spool = tmp_path / "spool"
    for i, job in enumerate(jobs):
        assert run_like_lsf(job.path / "job.lsf", job.path, spool) == (3 if i else 0)
        assert read_out(job) == f"chunk {i}"
        assert (job.path / "exit_status").read_text().strip() == str(3 if i else 0)
        assert "setup" in (job.path / "job.log").read_text()


def test_unset_resources_drop_their_lines(tmp_path, fake_lsf):
    job = make_jobs(tmp_path, 1)[0]
    text = Path(get_system("lsf").write_script(job)).read_text()
    assert directives(text) == [f"#BSUB -J {job.name}", "#BSUB -oo job.log.lsf", "#BSUB -n 1"]
    assert "{{" not in text and "##" not in text


def test_array_one_bsub_per_tile(tmp_path, fake_lsf):
    jobs = make_jobs(tmp_path, 3, tile="TA", exit_codes={2: 4}, walltime=30)
    jobs += make_jobs(tmp_path, 1, tile="TB", walltime=30)
    system = get_system("lsf", array=True, queue="short")
    records = system.submit(jobs)
    calls = fake_lsf()
    assert len(calls) == 2
    arrays = tmp_path / "TA" / "chunks" / "arrays"
    assert calls[0]["cwd"] == str(arrays)
    text = calls[0]["stdin"]
    assert directives(text)[0] == '#BSUB -J "TA-test-array[1-3]"'
    assert "#BSUB -W 00:30" in directives(text) and "#BSUB -q short" in directives(text)
    assert [r.job_id for r in records] == ["101[1]", "101[2]", "101[3]", "102[1]"]
    assert [r.array_index for r in records] == [1, 2, 3, 1]
    index = next(arrays.glob("*.txt"))
    assert index.read_text().split() == [f"../chunk{i:06d}-{i:06d}" for i in range(3)]
    # each element, run as LSF would, runs its own chunk
    script = Path(arrays / records[0].script.split("/")[-1])
    for k in (1, 2, 3):
        code = run_like_lsf(script, arrays, tmp_path / "spool", LSB_JOBINDEX=str(k))
        assert code == (4 if k == 3 else 0)
    for i, job in enumerate(jobs[:3]):
        assert read_out(job) == f"chunk {i}"
    assert read_out(jobs[3]) is None  # tile TB's array did not run


def test_status_is_one_bjobs_call(tmp_path, fake_lsf):
    jobs = make_jobs(tmp_path, 6)
    system = get_system("lsf")
    system.submit(jobs)  # ids 101..106
    # 101 done with exit_status 0; 102 EXIT; 103 running; 104 pending;
    # 105 forgotten by LSF without exit_status (killed); 106 DONE but its file says 2
    (jobs[0].path / "exit_status").write_text("0\n")
    (jobs[5].path / "exit_status").write_text("2\n")
    (tmp_path / "bjobs.out").write_text(
        "101 0 DONE\n102 0 EXIT\n103 0 RUN\n104 0 PEND\n106 0 DONE\n")
    (tmp_path / "bjobs.out.missing").write_text("105\n")
    n_before = len(fake_lsf())
    states = system.query(jobs)
    calls = fake_lsf()[n_before:]
    assert len(calls) == 1
    assert calls[0]["argv"][1:] == ["-noheader", "-a", "-o", "jobid jobindex stat",
                                    "101", "102", "103", "104", "105", "106"]
    assert [states[j.name] for j in jobs] == [
        JobState.DONE, JobState.FAILED, JobState.RUNNING, JobState.PENDING,
        JobState.FAILED, JobState.FAILED]


def test_array_status_and_cancel(tmp_path, fake_lsf):
    jobs = make_jobs(tmp_path, 3)
    system = get_system("lsf", array=True)
    system.submit(jobs)  # array 101
    (tmp_path / "bjobs.out").write_text("101 1 RUN\n101 2 PEND\n101 3 EXIT\n")
    (tmp_path / "bjobs.out.missing").write_text("")
    states = system.query(jobs)
    assert [states[j.name] for j in jobs] == [JobState.RUNNING, JobState.PENDING,
                                              JobState.FAILED]
    assert fake_lsf()[-1]["argv"][-1] == "101"  # one id for the whole array
    system.cancel(jobs[:2])
    assert fake_lsf()[-1]["argv"] == [str(Path(fake_lsf()[-1]["argv"][0])), "101[1]", "101[2]"]


def test_dry_run_calls_nothing(tmp_path, fake_lsf):
    jobs = make_jobs(tmp_path, 2)
    records = get_system("lsf", array=True).submit(jobs, dry_run=True)
    assert fake_lsf() == []
    assert all(r.job_id is None for r in records)
    assert not (tmp_path / "T0001").exists()
