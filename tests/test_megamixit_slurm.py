"""megamixit end to end on the project's real single-node SLURM cluster.

A small ngmixer-sim tile (48 objects, 2 bands, 2 epochs, 4 chunks of 12) goes
through ``megamixit setup`` -> ``run --system slurm`` (no wait) -> ``status``
while the jobs are queued and running -> ``collate``; the catalogue must equal
one ``ngmixit`` run over the whole tile with the same seed (``time_last_fit``,
a wall-clock stamp, aside). Then one chunk's job is made to fail (an input MEDS
file renamed after setup, the chunk's output deleted): ``status --logs`` shows it
failed with its log tail, ``collate`` refuses naming it, and once the input is
back ``run`` resubmits that chunk only (checked against the submit records and
against SLURM's own job list). Array mode runs from a run tree moved after setup.

Jobs run ``$MEGAMIXER_PYTHON -m pipeline.cli.ngmixit``; the script itself sets
the interpreter (and PYTHONPATH when the package is not installed), so the
end-to-end test submits with ``SBATCH_EXPORT=NONE``: the jobs inherit nothing
from the submitting shell. The tile helpers here are shared with
``test_megamixit_dask.py`` (the tile is simulated once per session).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import fitsio
import numpy as np
import pytest
import yaml

from pipeline.cli.common import run_cli
from pipeline.cli.megamixit import main
from pipeline.megamixer.layout import RunLayout
from pipeline.megamixer.tilerecord import TileRecord

from .test_megamixit_support import REPO, fake_ngmixit_cmds, make_inputs, python_path_env

TILE = "T1"
NOBJ = 48
CHUNKSIZE = 12            # -> 4 chunks
SEED = 777
FIT_CONFIG = """\
models: [exp]
psf_pars: {model: gauss, ntry: 2}
max_pars: {ntry: 1}
"""
POLL_TIMEOUT = 300.0      # s; the whole tile takes ~15 s of wall time on 2 loaded cores


# ---------------------------------------------------------------- shared helpers

def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"]
                                     if env.get("PYTHONPATH") else "")
    return env


def _py(*args, cwd) -> None:
    p = subprocess.run([sys.executable, "-m", *map(str, args)], cwd=cwd, env=_env(),
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]


def sim_tile(tmp_path_factory) -> Path:
    """Folder with ``sim/T1-{g,r}-meds.fits``, ``fit.yaml`` and ``tiles.txt``, made
    once per session (both batch-system test modules use the same tile)."""
    root = tmp_path_factory.getbasetemp() / "mmx-batch-tile"
    if not (root / "tiles.txt").exists():
        root.mkdir(exist_ok=True)
        _py("pipeline.cli.sim", root / "sim", "--tile", TILE, "--nobj", NOBJ, "--bands",
            "g,r", "--nepoch", 2, "--seed", 31, "--blend-frac", 0.3, "--log-level",
            "WARNING", cwd=root)
        (root / "fit.yaml").write_text(FIT_CONFIG)
        (root / "tiles.txt").write_text(f"{TILE}\n")
    return root


def single_reference(root: Path) -> Path:
    """One ngmixit run over the whole tile with the run seed (made once)."""
    out = root / "single.fits"
    if not out.exists():
        meds = [root / "sim" / f"{TILE}-{b}-meds.fits" for b in "gr"]
        _py("pipeline.cli.ngmixit", root / "fit.yaml", out, *meds, "--seed", SEED,
            "--log-level", "WARNING", cwd=root)
    return out


def write_run_config(root: Path, folder: Path, name: str, **kw) -> Path:
    """A run config in ``folder`` using the tile under ``root``."""
    conf = {"run": name, "fit_config": str(root / "fit.yaml"), "bands": ["g", "r"],
            "input_dir": str(root / "sim"), "output_dir": "out", "chunksize": CHUNKSIZE,
            "seed": SEED, "warm_numba_cache": False}   # warming: test_megamixit_e2e
    conf.update(kw)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(conf))
    return path


def mmx(*args) -> int:
    return run_cli(main, [str(a) for a in args] + ["--log-level", "WARNING"])


def read_catalogue(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with fitsio.FITS(str(path)) as f:
        return f["model_fits"].read(), f["epoch_data"].read()


def assert_same_catalogue(a: Path, b: Path) -> None:
    """Equal model_fits and epoch_data columns (b may have more: collate adds
    mags and s2n), wall-clock ``time_*`` columns aside."""
    (am, ae), (bm, be) = read_catalogue(a), read_catalogue(b)
    for ta, tb in ((am, bm), (ae, be)):
        assert len(ta) == len(tb)
        names = [n for n in ta.dtype.names if not n.startswith("time")]
        assert set(names) <= set(tb.dtype.names)
        for n in names:
            assert np.array_equal(ta[n], tb[n], equal_nan=ta[n].dtype.kind == "f"), n


def status_rows(capsys, *args, logs: bool = False) -> tuple[dict, str]:
    """``megamixit status``: {tile: {column: value}} and the whole output; its exit
    code must say the same as the table (0 all done, 1 failed/stuck, 3 in progress)."""
    capsys.readouterr()
    code = mmx("status", *args, *(["--logs"] if logs else []))
    out = capsys.readouterr().out
    lines = out.splitlines()
    head = lines[0].split()
    rows = {}
    for line in lines[1:]:
        words = line.split()
        if len(words) == len(head) and words[1].isdigit():
            rows[words[0]] = {k: (int(v) if v.isdigit() else v)
                              for k, v in zip(head[1:], words[1:])}
    total = {k: sum(r[k] for r in rows.values()) for k in ("chunks", "done", "failed",
                                                           "stuck", "unknown")}
    want = (0 if total["done"] == total["chunks"] else
            1 if total["failed"] + total["stuck"] + total["unknown"] else 3)
    assert code == want, (code, out)
    return rows, out


def submit_records(layout: RunLayout, rec: TileRecord) -> dict[str, dict]:
    """{job name: submit.json} of every chunk of ``rec``."""
    out = {}
    for first, last in rec.ranges:
        path = layout.chunk_dir(rec.tile, first, last) / "submit.json"
        out[layout.job_name(rec.tile, first, last)] = json.loads(path.read_text())
    return out


def exit_files(layout: RunLayout, rec: TileRecord) -> int:
    return sum((layout.chunk_dir(rec.tile, a, b) / "exit_status").exists()
               for a, b in rec.ranges)


# ---------------------------------------------------------------- SLURM helpers

def node_cpus() -> int:
    out = subprocess.run(["sinfo", "-h", "-o", "%c"], capture_output=True, text=True,
                         check=True).stdout
    return int(out.split()[0])


def slurm_jobs_under(folder: Path) -> list[tuple[str, str]]:
    """(job id, job name) of every job SLURM still lists (MinJobAge=3600) whose working
    directory lies under ``folder``: the scheduler's own record of what was submitted."""
    out = subprocess.run(["squeue", "-h", "-r", "-t", "all", "-o", "%i|%j|%Z"],
                         capture_output=True, text=True, check=True).stdout
    jobs = []
    for line in out.splitlines():
        job_id, name, workdir = line.split("|", 2)
        if Path(workdir).is_relative_to(folder):
            jobs.append((job_id, name))
    return jobs


def poll_status(capsys, args, layout: RunLayout, rec: TileRecord) -> list[dict]:
    """``megamixit status`` until no chunk is queued or running, checking every table
    against the chunk files and the node: returns the rows seen."""
    cpus = node_cpus()
    n = len(rec.chunks)
    seen = []
    deadline = time.monotonic() + POLL_TIMEOUT
    while True:
        before = exit_files(layout, rec)
        rows, out = status_rows(capsys, *args, logs=True)
        after = exit_files(layout, rec)
        row = rows[rec.tile]
        seen.append(row)
        assert row["chunks"] == n
        assert row["done"] + row["running"] + row["pending"] == n, out
        assert row["failed"] == row["not_submitted"] == row["unknown"] == 0, out
        assert row["running"] <= cpus, row          # one CPU per chunk job
        # a chunk is done once its script wrote exit_status (files only appear)
        assert before <= row["done"] <= after, (before, row, after)
        if len(seen) > 1:
            assert row["done"] >= seen[-2]["done"], seen
        if row["running"] + row["pending"] == 0:
            return seen
        assert time.monotonic() < deadline, f"chunks still active after {POLL_TIMEOUT} s"
        time.sleep(0.5)


@pytest.fixture(scope="module")
def tile(tmp_path_factory):
    return sim_tile(tmp_path_factory)


pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm_cluster")]


# ---------------------------------------------------------------- tests

def test_slurm_end_to_end_failed_chunk_resubmitted(tile, tmp_path, monkeypatch, capsys):
    # the jobs get nothing from this environment: the script must find the software
    monkeypatch.setenv("SBATCH_EXPORT", "NONE")
    # a private copy of the inputs: one file is renamed below
    inputs = tmp_path / "inputs"
    shutil.copytree(tile / "sim", inputs)
    conf = write_run_config(tile, tmp_path, "g2slurm", input_dir=str(inputs),
                            system="slurm", queue="debug", walltime="00:10:00", mem="500M")
    args = (conf, tile / "tiles.txt")
    assert mmx("setup", *args) == 0
    layout = RunLayout(tmp_path / "out" / "g2slurm", "g2slurm")
    rec = TileRecord.load(layout.tile_record(TILE))
    assert len(rec.chunks) == 4
    names = [layout.job_name(TILE, a, b) for a, b in rec.ranges]

    # ---- submit without waiting; status while queued/running, until all are done
    capsys.readouterr()
    assert mmx("run", *args) == 0
    assert "submitted 4 chunk(s) with system 'slurm'" in capsys.readouterr().out
    ids0 = {n: r["job_id"] for n, r in submit_records(layout, rec).items()}
    assert all(i.isdigit() for i in ids0.values()) and len(set(ids0.values())) == 4
    assert sorted(slurm_jobs_under(tmp_path)) == sorted((i, n) for n, i in ids0.items())
    seen = poll_status(capsys, args, layout, rec)
    # 4 jobs of seconds each on a 2-CPU node cannot all be over by the first status
    assert seen[0]["running"] + seen[0]["pending"] >= 1, seen[0]
    assert seen[-1]["done"] == 4
    capsys.readouterr()
    assert mmx("run", *args, "--wait") == 0            # nothing left to do
    assert "nothing to submit (4 chunk(s) done, 0 active" in capsys.readouterr().out

    # ---- chunk 1 fails: its input is gone after setup, its output deleted, rerun
    k = 1
    first, last = rec.ranges[k]
    hidden = inputs / "hidden-r.fits"
    (inputs / f"{TILE}-r-meds.fits").rename(hidden)
    layout.chunk_file(TILE, first, last).unlink()
    capsys.readouterr()
    assert mmx("run", *args, "--wait") == 1            # the resubmitted chunk failed
    assert "submitted 1 chunk(s) with system 'slurm'" in capsys.readouterr().out
    ids1 = {n: r["job_id"] for n, r in submit_records(layout, rec).items()}
    assert [n for n in names if ids1[n] != ids0[n]] == [names[k]]
    rows, out = status_rows(capsys, *args, logs=True)
    assert (rows[TILE]["done"], rows[TILE]["failed"]) == (3, 1)
    tail = out.split(f"--- failed chunk {names[k]}:", 1)[1]
    assert f"{TILE}-r-meds.fits: MEDS file not found" in tail   # ngmixit's own error
    assert "exit status 2" in tail
    capsys.readouterr()
    assert mmx("collate", *args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"{layout.chunk_name(first, last)} (failed with exit status 2)" in err
    assert not layout.collated(TILE).exists()

    # ---- input restored: run resubmits that chunk only, then collate succeeds
    hidden.rename(inputs / f"{TILE}-r-meds.fits")
    capsys.readouterr()
    assert mmx("run", *args, "--wait") == 0
    assert "submitted 1 chunk(s) with system 'slurm' in" in capsys.readouterr().out
    ids2 = {n: r["job_id"] for n, r in submit_records(layout, rec).items()}
    assert [n for n in names if ids2[n] != ids1[n]] == [names[k]]
    # SLURM's own list: chunk k was submitted three times, the others once
    counts = {n: 0 for n in names}
    for _, name in slurm_jobs_under(tmp_path):
        counts[name] += 1
    assert counts == {n: (3 if n == names[k] else 1) for n in names}
    rows, _ = status_rows(capsys, *args)
    assert (rows[TILE]["done"], rows[TILE]["failed"]) == (4, 0)
    assert mmx("collate", *args) == 0
    assert_same_catalogue(single_reference(tile), layout.collated(TILE))


def test_slurm_array_from_moved_run_tree(tile, tmp_path, monkeypatch, capsys):
    """``array: true``: one job array for the tile, submitted from a run tree moved
    after setup; the catalogue is again the single run's."""
    python_path_env(monkeypatch)
    conf = write_run_config(tile, tmp_path, "g2array", system="slurm", array=True,
                            walltime="00:10:00")
    assert mmx("setup", conf, tile / "tiles.txt") == 0
    moved = tmp_path / "elsewhere" / "g2array"
    moved.parent.mkdir()
    shutil.move(str(tmp_path / "out" / "g2array"), str(moved))
    args = (moved / "run-config.yaml", moved / "tiles.txt")
    capsys.readouterr()
    assert mmx("run", *args, "--wait") == 0
    assert "submitted 4 chunk(s) with system 'slurm' in" in capsys.readouterr().out
    layout = RunLayout(moved, "g2array")
    rec = TileRecord.load(layout.tile_record(TILE))
    recs = submit_records(layout, rec)
    array_ids = {r["array_job_id"] for r in recs.values()}
    assert len(array_ids) == 1
    aid = array_ids.pop()
    assert [(r["array_index"], r["job_id"]) for r in recs.values()] == \
        [(i, f"{aid}_{i}") for i in range(4)]
    # SLURM ran the array's 4 tasks from the moved tree
    tasks = slurm_jobs_under(moved)
    assert sorted(i for i, _ in tasks) == [f"{aid}_{i}" for i in range(4)]
    assert not slurm_jobs_under(tmp_path / "out")
    rows, _ = status_rows(capsys, *args)
    assert rows[TILE]["done"] == 4
    assert mmx("collate", *args) == 0
    assert_same_catalogue(single_reference(tile), layout.collated(TILE))


def test_run_wait_waits_for_chunks_already_queued(tmp_path, monkeypatch, capsys):
    inp = make_inputs(tmp_path, {"TW": 4}, chunksize=2,
                      extra={"system": "slurm",
                             "extra_cmds": fake_ngmixit_cmds(tmp_path) + ["sleep 3"]})
    args = (inp["run_config"], inp["tiles"])
    assert mmx("setup", *args) == 0
    assert mmx("run", *args) == 0
    assert mmx("run", *args, "--wait") == 0
    rows, _ = status_rows(capsys, *args)
    assert rows["TW"]["done"] == 2, rows


def test_run_with_an_impossible_request_stops_waiting_then_resubmits(tmp_path, capsys):
    """Chunks asking the 1-minute 'tiny' partition for 10 minutes stay pending
    forever in SLURM: ``run --wait`` returns at once with exit 1 and says why,
    ``status`` counts them stuck, and a ``run`` with a corrected queue cancels the
    stuck jobs and resubmits them."""
    inp = make_inputs(tmp_path, {"TS": 4}, chunksize=2,
                      extra={"system": "slurm", "queue": "tiny", "walltime": "00:10:00",
                             "extra_cmds": fake_ngmixit_cmds(tmp_path)})
    args = (inp["run_config"], inp["tiles"])
    assert mmx("setup", *args) == 0
    capsys.readouterr()
    t0 = time.monotonic()
    assert mmx("run", *args, "--wait") == 1
    assert time.monotonic() - t0 < 60
    out = capsys.readouterr().out
    assert "2 stuck" in out and "cannot start" in out
    rows, _ = status_rows(capsys, *args)
    assert rows["TS"]["stuck"] == 2 and rows["TS"]["done"] == 0
    layout = RunLayout(inp["run_dir"], "run1")
    rec = TileRecord.load(layout.tile_record("TS"))
    stuck_ids = [r["job_id"] for r in submit_records(layout, rec).values()]
    assert mmx("run", *args, "--queue", "debug", "--wait") == 0
    rows, _ = status_rows(capsys, *args)
    assert rows["TS"]["done"] == 2 and rows["TS"]["stuck"] == 0
    states = subprocess.run(["squeue", "-h", "-t", "all", "-o", "%i|%T", "-j",
                             ",".join(stuck_ids)], capture_output=True, text=True).stdout
    assert all(line.endswith("|CANCELLED") for line in states.split()), states


def test_setup_clobber_cancels_the_old_setups_queued_jobs(tmp_path, capsys):
    """Set up again (new seed) while jobs of the old set-up wait in the queue: they are
    cancelled before anything is rewritten, so none can write into the new tree."""
    inp = make_inputs(tmp_path, {"TC": 4}, chunksize=2,
                      extra={"system": "slurm", "queue": "tiny", "walltime": "00:10:00",
                             "extra_cmds": fake_ngmixit_cmds(tmp_path)})
    args = (inp["run_config"], inp["tiles"])
    assert mmx("setup", *args) == 0
    assert mmx("run", *args) == 1                  # queued, stuck: they can never start here
    layout = RunLayout(inp["run_dir"], "run1")
    old = TileRecord.load(layout.tile_record("TC"))
    old_ids = [r["job_id"] for r in submit_records(layout, old).values()]
    states = subprocess.run(["squeue", "-h", "-t", "all", "-o", "%T", "-j",
                             ",".join(old_ids)], capture_output=True, text=True).stdout
    assert states.split() == ["PENDING", "PENDING"], states
    assert mmx("setup", *args, "--clobber", "--seed", 99, "--queue", "debug") == 0
    states = subprocess.run(["squeue", "-h", "-t", "all", "-o", "%i|%T", "-j",
                             ",".join(old_ids)], capture_output=True, text=True).stdout
    assert all(line.endswith("|CANCELLED") for line in states.split()), states
    new = TileRecord.load(layout.tile_record("TC"))
    assert new.seed == 99 and new.setup_id != old.setup_id
    assert not any((layout.chunk_dir("TC", a, b) / "submit.json").exists()
                   for a, b in new.ranges)
    assert mmx("run", *args, "--seed", 99, "--queue", "debug", "--wait") == 0
    assert mmx("collate", *args, "--seed", 99) == 0
