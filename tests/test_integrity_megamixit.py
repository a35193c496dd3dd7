"""Catalogue integrity of megamixit runs: stale jobs, damaged files, deletion safety,
concurrency and killed processes. Jobs run a stand-in fitter that writes chunk files
with ngmixit's own writer (tests/test_megamixit_support.py), so these stay fast; the
real-fit end to end is in test_megamixit_e2e.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np

from pipeline.cli.common import run_cli
from pipeline.cli.megamixit import main
from pipeline.fileio import temporary_name
from pipeline.fitsfile import read_header, read_table
from pipeline.megamixer import archive as marchive
from pipeline.megamixer.layout import RunLayout
from pipeline.megamixer.tilerecord import TileRecord

from .test_megamixit_support import (REPO, chunk_provenance, fake_ngmixit_cmds,
                                     fake_run_chunks, make_inputs, write_chunk_file)

TILES = {"T1": 23, "T2": 12}
HOSTILE = "survey(y6) [v1]!x+2"


def mmx(*args):
    return run_cli(main, [str(a) for a in args] + ["--log-level", "WARNING"])


def mmx_proc(*args, env=None, **kw):
    env = dict(os.environ if env is None else env, PYTHONPATH=str(REPO))
    return subprocess.Popen([sys.executable, "-m", "pipeline.cli.megamixit",
                             *map(str, args)], env=env, **kw)


def _setup(tmp_path, tiles=TILES, **extra):
    inp = make_inputs(tmp_path, tiles, extra=extra)
    assert mmx("setup", inp["run_config"], inp["tiles"]) == 0
    layout = RunLayout(inp["run_dir"], "run1")
    return inp, layout, {t: TileRecord.load(layout.tile_record(t)) for t in tiles}


def _args(inp):
    return inp["run_config"], inp["tiles"]


def _status(inp, capsys, *extra) -> tuple[int, list[str]]:
    capsys.readouterr()
    code = mmx("status", *_args(inp), *extra)
    return code, capsys.readouterr().out.splitlines()


def files_below(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


# ------------------------------------------------------------------ hostile paths

def test_hostile_output_dir_runs_end_to_end_and_writes_nowhere_else(tmp_path, capsys):
    """An output_dir with characters cfitsio interprets ('(' made it overwrite the
    path before it with a FITS stub) works from setup to verify; nothing is written
    outside the run tree."""
    inp = make_inputs(tmp_path, TILES, extra={"output_dir": f"../{HOSTILE}",
                                             "extra_cmds": fake_ngmixit_cmds(tmp_path),
                                             "workers": 2})
    before = files_below(tmp_path)
    for cmd in ("setup", "run", "collate", "link", "verify"):
        assert mmx(cmd, *_args(inp)) == 0, (cmd, capsys.readouterr().err)
    new = files_below(tmp_path) - before
    assert new and all(p.startswith(f"{HOSTILE}/run1") or p == HOSTILE for p in new), new
    run_dir = tmp_path / HOSTILE / "run1"
    for tile, ids in inp["ids"].items():
        got = read_table(run_dir / "output" / f"{tile}-run1.fits", ext="model_fits")
        assert np.array_equal(got["id"], ids)


# ------------------------------------------------------------------ stale jobs

def test_output_of_an_old_setup_is_rejected_by_name(tmp_path, capsys):
    """setup --clobber --seed 99 while jobs of the old set-up (seed 42) still run: what
    they write must never count as the new set-up's output."""
    inp, layout, old = _setup(tmp_path)
    assert mmx("setup", *_args(inp), "--clobber", "--seed", 99) == 0
    new = {t: TileRecord.load(layout.tile_record(t)) for t in TILES}
    assert new["T1"].setup_id != old["T1"].setup_id and new["T1"].seed == 99
    for t in TILES:   # the old jobs finish now, into the new tree
        fake_run_chunks(layout, old[t], inp["ids"][t])
    code, out = _status(inp, capsys)
    assert code == 1
    assert out[1].split()[:4] == ["T1", "3", "0", "3"]          # none done, all rejected
    assert any("output rejected: stale output of another set-up or input: seed 42 "
               "(expected 99)" in ln for ln in out), out
    capsys.readouterr()
    assert mmx("collate", *_args(inp)) == 2
    err = capsys.readouterr().err
    assert "chunk000000-000009 (stale output of another set-up or input: seed 42 " \
           "(expected 99); setup " in err
    assert not layout.collated("T1").exists()
    assert mmx("verify", *_args(inp)) == 1
    # the jobs of the new set-up replace them
    for t in TILES:
        fake_run_chunks(layout, new[t], inp["ids"][t])
    assert mmx("collate", *_args(inp)) == 0
    assert read_header(layout.collated("T1"), ext=0)["MMXSEED"] == 99
    assert mmx("verify", *_args(inp)) == 0


def test_setup_clobber_refuses_while_a_megamixit_runs_the_old_chunks(tmp_path, capsys):
    inp = make_inputs(tmp_path, {"T1": 6}, extra={"extra_cmds": fake_ngmixit_cmds(tmp_path),
                                                  "chunksize": 3, "workers": 1})
    assert mmx("setup", *_args(inp)) == 0
    gate = tmp_path / "go"
    env = dict(os.environ, MMX_WAIT_FOR=str(gate))
    proc = mmx_proc("run", *_args(inp), env=env, stderr=subprocess.PIPE, text=True)
    layout = RunLayout(inp["run_dir"], "run1")
    try:
        _wait(lambda: (layout.chunk_dir("T1", 0, 2) / "job.pid").exists(), proc)
        capsys.readouterr()
        assert mmx("setup", *_args(inp), "--clobber", "--seed", 7) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"error: {inp['run_dir']}: cannot set up: another megamixit is "
                              f"working on this run (pid {proc.pid} on ")
    finally:
        gate.write_text("")
        proc.wait(timeout=120)
    assert TileRecord.load(layout.tile_record("T1")).seed == 42


def _wait(cond, proc=None, timeout=60.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process ended early: {proc.returncode}")
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


# ------------------------------------------------------------------ damaged files

def _cut_after_hdu(path: Path, hdu: int) -> None:
    """Truncate a FITS file exactly at the end of HDU ``hdu`` (0 = primary)."""
    import fitsio
    with fitsio.FITS(str(path)) as fits:
        end = fits[hdu].get_offsets()["data_end"]
    with open(path, "r+b") as fobj:
        fobj.truncate(end)


def test_chunk_cut_at_an_hdu_boundary_is_not_done(tmp_path, capsys):
    inp, layout, recs = _setup(tmp_path)
    for t, rec in recs.items():
        fake_run_chunks(layout, rec, inp["ids"][t])
    cut = layout.chunk_file("T1", 10, 19)
    _cut_after_hdu(cut, 1)                          # model_fits kept, epoch_data lost
    code, out = _status(inp, capsys)
    assert code == 1 and out[1].split()[:4] == ["T1", "3", "2", "1"]
    capsys.readouterr()
    assert mmx("run", *_args(inp), "--dry-run") == 0
    assert "would submit T1-run1-000010-000019" in capsys.readouterr().out
    assert mmx("collate", *_args(inp)) == 2
    assert "chunk000010-000019 (has 2 HDUs but was written with 4 (truncated?))" in \
        capsys.readouterr().err


def test_bit_flip_in_a_chunk_is_caught_by_its_checksum(tmp_path, capsys):
    inp, layout, recs = _setup(tmp_path, {"T1": 8})
    fake_run_chunks(layout, recs["T1"], inp["ids"]["T1"])
    path = layout.chunk_file("T1", 0, 7)
    data = bytearray(path.read_bytes())
    data[-100] ^= 0x10                               # inside meta_data's data
    path.write_bytes(bytes(data))
    assert mmx("collate", *_args(inp)) == 2
    assert "meta_data: data checksum failed" in capsys.readouterr().err


def test_truncated_catalogue_fails_verify_and_clean_deletes_nothing(tmp_path, capsys):
    """A catalogue cut inside epoch_data read as ok before, and clean then deleted every
    chunk file: epoch_data and meta_data were lost for good."""
    inp, layout, recs = _setup(tmp_path)
    for t, rec in recs.items():
        fake_run_chunks(layout, rec, inp["ids"][t])
    assert mmx("collate", *_args(inp)) == 0
    cat = layout.collated("T1")
    import fitsio
    with fitsio.FITS(str(cat)) as fits:
        offsets = fits["epoch_data"].get_offsets()
        mid = (offsets["data_start"] + offsets["data_end"]) // 2
    with open(cat, "r+b") as fobj:
        fobj.truncate(mid)
    capsys.readouterr()
    assert mmx("verify", *_args(inp)) == 1
    assert "T1-run1.fits" in capsys.readouterr().out
    before = files_below(layout.chunks_dir("T1"))
    assert mmx("clean", *_args(inp), "--tile", "T1") == 2
    assert "tile T1: refusing to clean" in capsys.readouterr().err
    assert mmx("archive", *_args(inp), "--tile", "T1") == 2
    assert files_below(layout.chunks_dir("T1")) == before
    assert mmx("collate", *_args(inp)) == 0          # the chunks were kept: collate again
    assert mmx("verify", *_args(inp)) == 0


def test_incomplete_catalogue_and_a_late_chunk(tmp_path, capsys):
    """collate --skip-errors, then a late chunk, then clean: the late chunk's objects
    were deleted before. Now the catalogue is marked incomplete and nothing that holds
    results not in a complete catalogue is removed."""
    inp, layout, recs = _setup(tmp_path)
    for t, rec in recs.items():
        fake_run_chunks(layout, rec, inp["ids"][t], skip=(2,) if t == "T1" else ())
    assert mmx("collate", *_args(inp), "--skip-errors") == 0
    cat = layout.collated("T1")
    assert read_header(cat, ext=0)["MMXCOMPL"] is False
    rec = TileRecord.load(layout.tile_record("T1"))
    assert rec.collation["complete"] is False
    assert rec.collation["missing"] == ["chunk000020-000022"]
    code, out = _status(inp, capsys)
    assert out[1].split()[-1] == "incomplete"
    capsys.readouterr()
    assert mmx("verify", *_args(inp)) == 1
    assert "incomplete: collated without 1 chunk(s) (chunk000020-000022)" in \
        capsys.readouterr().out
    assert mmx("clean", *_args(inp), "--tile", "T1") == 2
    assert mmx("link", *_args(inp)) == 2
    capsys.readouterr()
    assert mmx("run", *_args(inp), "--dry-run") == 0
    out = capsys.readouterr().out
    assert "would submit T1-run1-000020-000022" in out and "nothing to submit" not in out
    # the late chunk arrives: still not cleanable (the catalogue does not hold it)
    late = recs["T1"].ranges[2]
    write_chunk_file(layout.chunk_file("T1", *late), inp["ids"]["T1"][20:23], ["g", "r"],
                     chunk_provenance(recs["T1"], *late))
    capsys.readouterr()
    assert mmx("run", *_args(inp), "--dry-run") == 0
    assert "0 chunk(s) would be submitted" in capsys.readouterr().out
    assert mmx("clean", *_args(inp), "--tile", "T1") == 2
    assert len(list(layout.chunks_dir("T1").rglob("*.fits"))) == 3
    assert mmx("collate", *_args(inp)) == 0
    assert mmx("verify", *_args(inp)) == 0
    assert mmx("clean", *_args(inp), "--tile", "T1") == 0
    assert not list(layout.chunks_dir("T1").rglob("*.fits"))


def test_chunk_rewritten_after_collate_blocks_clean(tmp_path, capsys):
    """A chunk file that is not the one the catalogue holds (e.g. rerun with --clobber
    after collate) is not deleted."""
    inp, layout, recs = _setup(tmp_path, {"T1": 8})
    fake_run_chunks(layout, recs["T1"], inp["ids"]["T1"])
    assert mmx("collate", *_args(inp)) == 0
    time.sleep(0.01)
    fake_run_chunks(layout, recs["T1"], inp["ids"]["T1"])   # new timings: other checksums
    capsys.readouterr()
    assert mmx("clean", *_args(inp)) == 2
    assert "chunk000000-000007 holds output the catalogue does not (written after " \
           "collate?)" in capsys.readouterr().err
    assert layout.chunk_file("T1", 0, 7).exists()


# ------------------------------------------------------------------ deletion safety

def test_clean_never_follows_a_symlinked_chunk_folder(tmp_path, capsys):
    inp, layout, recs = _setup(tmp_path, {"T1": 8})
    fake_run_chunks(layout, recs["T1"], inp["ids"]["T1"])
    assert mmx("collate", *_args(inp)) == 0
    chunk = layout.chunk_dir("T1", 0, 7)
    outside = tmp_path / "precious"
    chunk.rename(outside)                           # the real folder now lives outside
    chunk.symlink_to(outside)
    before = files_below(outside)
    capsys.readouterr()
    assert mmx("clean", *_args(inp), "--clobber") == 2
    assert "not a real folder inside the run folder" in capsys.readouterr().err
    assert mmx("archive", *_args(inp)) == 2
    assert files_below(outside) == before


def test_setup_never_deletes_a_folder_it_did_not_make(tmp_path, capsys):
    inp = make_inputs(tmp_path, {"T1": 8})
    notes = inp["run_dir"] / "T1" / "chunks" / "my-notes.txt"
    notes.parent.mkdir(parents=True)
    notes.write_text("do not delete")
    assert mmx("setup", *_args(inp)) == 2
    assert "exists but tile 'T1' has no record" in capsys.readouterr().err
    assert notes.read_text() == "do not delete"
    assert mmx("setup", *_args(inp), "--clobber") == 0
    assert notes.read_text() == "do not delete"
    # a clobbering set-up removes its own files, never the user's
    assert mmx("setup", *_args(inp), "--clobber") == 0
    assert notes.read_text() == "do not delete"


def test_interrupted_archive_rerun_keeps_every_log(tmp_path, capsys, monkeypatch):
    inp, layout, recs = _setup(tmp_path, {"T1": 23})
    fake_run_chunks(layout, recs["T1"], inp["ids"]["T1"])
    for a, b in recs["T1"].ranges:
        (layout.chunk_dir("T1", a, b) / "job.log").write_text(f"log of {a}-{b}\n")
    assert mmx("collate", *_args(inp)) == 0
    calls = []
    real = marchive.remove_folder_if_empty

    def interrupted(folder, run_dir):        # Ctrl-C after the first folder was removed
        calls.append(folder)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(folder, run_dir)

    monkeypatch.setattr(marchive, "remove_folder_if_empty", interrupted)
    assert mmx("archive", *_args(inp)) == 130
    assert len(calls) == 2 and layout.archive("T1").exists()
    monkeypatch.setattr(marchive, "remove_folder_if_empty", real)
    assert mmx("archive", *_args(inp)) == 0
    with tarfile.open(layout.archive("T1")) as tar:
        logs = {m.name: tar.extractfile(m).read().decode() for m in tar.getmembers()
                if m.name.endswith("job.log")}
    assert logs == {f"chunk{a:06d}-{b:06d}/job.log": f"log of {a}-{b}\n"
                    for a, b in recs["T1"].ranges}
    assert sorted(p.name for p in layout.chunks_dir("T1").iterdir()) == \
        [layout.archive("T1").name]


# ------------------------------------------------------------------ concurrency

def test_a_second_megamixit_on_the_same_run_is_refused(tmp_path, capsys):
    """Two 'run' at once ran every chunk twice (locally) or submitted each twice (SLURM)."""
    inp, layout, recs = _setup(tmp_path, {"T1": 6})
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; sys.path.insert(0, sys.argv[2]); "
         "from pipeline.megamixer.lock import run_lock\n"
         "with run_lock(sys.argv[1], 'run'):\n    print('locked', flush=True); "
         "time.sleep(60)", str(inp["run_dir"]), str(REPO)], stdout=subprocess.PIPE,
        text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        capsys.readouterr()
        for cmd in ("run", "collate", "clean", "archive", "link", "setup"):
            assert mmx(cmd, *_args(inp)) == 2, cmd
            err = capsys.readouterr().err.strip()
            assert err.startswith(f"error: {inp['run_dir']}: cannot ") and \
                f"another megamixit is working on this run (pid {holder.pid} on " in err, err
            assert "\n" not in err
        assert mmx("status", *_args(inp)) == 3       # readers need no lock
        assert not list(inp["run_dir"].rglob("submit.json"))
    finally:
        holder.kill()
        holder.wait()
    assert mmx("run", *_args(inp), "--dry-run") == 0


def test_killed_megamixit_leaves_chunks_that_read_running(tmp_path, capsys):
    """kill -9 of a local 'megamixit run': its chunks go on; status must say running and
    'run' must not start them a second time; they end done."""
    inp = make_inputs(tmp_path, {"T1": 6}, extra={"extra_cmds": fake_ngmixit_cmds(tmp_path),
                                                  "chunksize": 3, "workers": 2})
    assert mmx("setup", *_args(inp)) == 0
    layout = RunLayout(inp["run_dir"], "run1")
    gate = tmp_path / "go"
    proc = mmx_proc("run", *_args(inp), env=dict(os.environ, MMX_WAIT_FOR=str(gate)),
                    stderr=subprocess.DEVNULL)
    chunks = [layout.chunk_dir("T1", 0, 2), layout.chunk_dir("T1", 3, 5)]
    try:
        _wait(lambda: all((c / "job.pid").exists() for c in chunks), proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        code, out = _status(inp, capsys)
        assert code == 3 and out[1].split()[:6] == ["T1", "2", "0", "0", "2", "0"]
        capsys.readouterr()
        assert mmx("run", *_args(inp), "--dry-run") == 0
        assert "0 chunk(s) would be submitted with system 'local' (0 done, 2 active)" in \
            capsys.readouterr().out
    finally:
        gate.write_text("")
    _wait(lambda: all((c / "exit_status").exists() for c in chunks))
    code, out = _status(inp, capsys)
    assert code == 0 and out[1].split()[:3] == ["T1", "2", "2"]


def test_ctrl_c_of_run_leaves_unstarted_chunks_not_submitted(tmp_path, capsys):
    inp = make_inputs(tmp_path, {"T1": 9}, extra={"extra_cmds": fake_ngmixit_cmds(tmp_path),
                                                  "chunksize": 3, "workers": 1})
    assert mmx("setup", *_args(inp)) == 0
    layout = RunLayout(inp["run_dir"], "run1")
    proc = mmx_proc("run", *_args(inp), "--wait",
                    env=dict(os.environ, MMX_WAIT_FOR=str(tmp_path / "never")),
                    stderr=subprocess.DEVNULL)
    _wait(lambda: (layout.chunk_dir("T1", 0, 2) / "job.pid").exists(), proc)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    code, out = _status(inp, capsys)
    # the running chunk was stopped (failed); the two never started are not submitted
    assert out[1].split()[:8] == ["T1", "3", "0", "1", "0", "0", "0", "2"], out


# ------------------------------------------------------------------ litter

def test_next_command_removes_litter_of_killed_writers(tmp_path, capsys):
    inp, layout, recs = _setup(tmp_path, {"T1": 8}, extra_cmds=fake_ngmixit_cmds(tmp_path))
    cat = layout.collated("T1")
    stale = temporary_name(cat).name.replace(f"-{os.getpid()}-", "-999999999-")
    (cat.parent / stale).write_text("half a catalogue")
    chunk = layout.chunk_dir("T1", 0, 7)
    (chunk / ".exit_status.4242").write_text("0")
    assert mmx("run", *_args(inp)) == 0
    assert not (chunk / ".exit_status.4242").exists()
    assert mmx("collate", *_args(inp)) == 0
    assert not (cat.parent / stale).exists()
    assert sorted(p.name for p in cat.parent.iterdir() if p.name.startswith(".")) == []
