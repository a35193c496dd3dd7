"""megamixit commands on real FITS inputs, with chunk outputs written as jobs would.

The real-fit end to end (ngmixit jobs) is in test_megamixit_e2e.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile

import fitsio
import numpy as np
import pytest
import yaml

from pipeline.cli.common import run_cli
from pipeline.cli.megamixit import main
from pipeline.megamixer.layout import RunLayout
from pipeline.megamixer.tilerecord import TileRecord

from .test_megamixit_support import REPO, fake_run_chunks, make_inputs

TILES = {"T1": 23, "T2": 12}


def mmx(*args):
    return run_cli(main, [str(a) for a in args] + ["--log-level", "WARNING"])


def _setup(tmp_path, tiles=TILES, **kw):
    inp = make_inputs(tmp_path, tiles, **kw)
    assert mmx("setup", inp["run_config"], inp["tiles"]) == 0
    layout = RunLayout(inp["run_dir"], "run1")
    recs = {t: TileRecord.load(layout.tile_record(t)) for t in tiles}
    return inp, layout, recs


def _fake_all(inp, layout, recs, skip=None):
    for t, rec in recs.items():
        fake_run_chunks(layout, rec, inp["ids"][t], skip=(skip or {}).get(t, ()))


def test_setup_layout_and_relative_paths(tmp_path, capsys):
    inp, layout, recs = _setup(tmp_path)
    out = capsys.readouterr().out
    assert "set up 2 tile(s), 35 objects, 5 chunks" in out
    run_dir = inp["run_dir"]
    for name in ("run-config.yaml", "fit-config.yaml", "tiles.txt"):
        assert (run_dir / name).is_file()
    assert (run_dir / "tiles.txt").read_text() == "T1\nT2\n"
    assert (run_dir / "fit-config.yaml").read_text() == "models: [exp]\n"
    copy = yaml.safe_load((run_dir / "run-config.yaml").read_text())
    assert copy["output_dir"] == ".." and copy["fit_config"] == "fit-config.yaml"
    assert copy["seed"] == 42
    assert recs["T1"].ranges.tolist() == [[0, 9], [10, 19], [20, 22]]
    assert recs["T2"].ranges.tolist() == [[0, 9], [10, 11]]
    assert [c[2] for c in recs["T1"].chunks] == [10, 10, 3]
    # inputs outside <output_dir>: absolute in the record
    assert recs["T1"].meds == [str(inp["inputs"] / f"T1-{b}-meds.fits") for b in "gr"]
    script = (layout.chunk_dir("T1", 10, 19) / "job.sh").read_text()
    assert '"${MEGAMIXER_PYTHON}" -m pipeline.cli.ngmixit ../../../fit-config.yaml ' \
           "T1-run1-000010-000019.fits" in script
    # jobs use the interpreter that ran setup, and the run's numba cache
    assert f"export MEGAMIXER_PYTHON={sys.executable}\n" in script
    assert "NUMBA_CACHE_DIR" not in script            # warm_numba_cache: false
    setup_id = recs["T1"].setup_id
    assert f"--fof-range 10,19 --seed 42 --log-level INFO --tag run=run1 --tag tile=T1 " \
           f"--tag setup={setup_id}" in script
    assert str(run_dir) not in script                       # nothing pins the run tree
    assert sorted(p.name for p in layout.chunks_dir("T2").iterdir()) == \
        ["chunk000000-000009", "chunk000010-000011"]


def test_setup_inputs_beside_run_are_relative_and_clobber(tmp_path, capsys):
    inp = make_inputs(tmp_path, {"T1": 5}, extra={"input_dir": "../out/meds"})
    shutil.copytree(inp["inputs"], tmp_path / "out" / "meds")
    assert mmx("setup", inp["run_config"], inp["tiles"]) == 0
    layout = RunLayout(inp["run_dir"], "run1")
    rec = TileRecord.load(layout.tile_record("T1"))
    assert rec.meds == ["../meds/T1-g-meds.fits", "../meds/T1-r-meds.fits"]
    script = (layout.chunk_dir("T1", 0, 4) / "job.sh").read_text()
    assert "../../../../meds/T1-g-meds.fits ../../../../meds/T1-r-meds.fits" in script
    capsys.readouterr()
    assert mmx("setup", inp["run_config"], inp["tiles"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {inp['run_dir']}: tile(s) already set up: T1 (use --clobber to redo)"
    # a different chunk size needs --clobber and replaces the old chunk dirs
    assert mmx("setup", inp["run_config"], inp["tiles"], "--clobber") == 0
    conf = yaml.safe_load(inp["run_config"].read_text())
    conf["chunksize"] = 2
    inp["run_config"].write_text(yaml.safe_dump(conf))
    # output of the first set-up's jobs is stale for the new one
    fake_run_chunks(layout, rec, inp["ids"]["T1"])
    capsys.readouterr()
    assert mmx("collate", inp["run_config"], inp["tiles"]) == 2
    err = capsys.readouterr().err
    new = TileRecord.load(layout.tile_record("T1"))
    assert "chunk000000-000004 (stale output of another set-up or input: " in err
    assert f"setup {rec.setup_id} (expected {new.setup_id})" in err
    rec = new
    fake_run_chunks(layout, rec, inp["ids"]["T1"])
    assert mmx("collate", inp["run_config"], inp["tiles"]) == 0
    assert mmx("link", inp["run_config"], inp["tiles"]) == 0
    assert mmx("setup", inp["run_config"], inp["tiles"], "--clobber") == 0
    assert not layout.collated("T1").exists() and not layout.link("T1").is_symlink()
    assert sorted(p.name for p in layout.chunks_dir("T1").iterdir()) == \
        ["chunk000000-000001", "chunk000002-000003", "chunk000004-000004"]


def test_setup_with_max_group_size_uses_fof_file(tmp_path):
    """nbrs_config path: FoF files are built into <tile>/ and drive the chunking."""
    pytest.importorskip("pipeline.nbrs")
    from pipeline.megamixer import setup as msetup

    inp = make_inputs(tmp_path, {"T1": 12}, extra={"nbrs_config": "nbrs.yaml",
                                                  "chunksize": 3,
                                                  "max_group_size_per_chunk": 2})
    (tmp_path / "cfg" / "nbrs.yaml").write_text("{}\n")
    fofid = np.array([0, 0, 0, 1, 2, 3, 3, 4, 5, 6, 7, 8])

    def fake_build(conf, meds, catalog, nbrs_path, fof_path):   # grouping is nbrs.py's job
        from .test_megamixit_support import write_fof_file
        write_fof_file(fof_path, fofid)
        write_fof_file(nbrs_path, fofid)

    mp = pytest.MonkeyPatch()
    mp.setattr(msetup, "build_nbrs", fake_build)
    try:
        assert mmx("setup", inp["run_config"], inp["tiles"]) == 0
    finally:
        mp.undo()
    layout = RunLayout(inp["run_dir"], "run1")
    rec = TileRecord.load(layout.tile_record("T1"))
    assert rec.ngroups == 9 and rec.fof_file == "T1/T1-run1-fofs.fits"
    # group 0 (3 members > 2) alone; the rest on the regular grid of 3 groups
    assert rec.ranges.tolist() == [[0, 0], [1, 2], [3, 5], [6, 8]]
    assert [c[2] for c in rec.chunks] == [3, 2, 4, 3]
    script = (layout.chunk_dir("T1", 3, 5) / "job.sh").read_text()
    assert "--fof-file ../../../T1/T1-run1-fofs.fits" in script
    assert "--nbrs-file ../../../T1/T1-run1-nbrs.fits" in script
    assert (inp["run_dir"] / "nbrs-config.yaml").is_file()


def test_run_dry_run_submits_nothing(tmp_path, capsys):
    inp, layout, recs = _setup(tmp_path)
    _fake_all(inp, layout, recs, skip={"T1": (1,)})
    for t, rec in recs.items():                     # T2 chunks: none done
        for a, b in rec.ranges:
            if t == "T2":
                layout.chunk_file(t, a, b).unlink()
    capsys.readouterr()
    assert mmx("run", inp["run_config"], inp["tiles"], "--dry-run", "--missing") == 0
    out = capsys.readouterr().out
    assert out.count("would submit") == 3
    assert "would submit T1-run1-000010-000019 in T1/chunks/chunk000010-000019" in out
    assert "3 chunk(s) would be submitted with system 'local' (2 done, 0 active)" in out
    assert not list(inp["run_dir"].rglob("submit.json"))
    assert mmx("run", inp["run_config"], inp["tiles"], "--dry-run", "--clobber",
               "--tile", "T2") == 0
    assert capsys.readouterr().out.count("would submit") == 2


def test_status_collate_verify_link(tmp_path, capsys):
    inp, layout, recs = _setup(tmp_path)
    _fake_all(inp, layout, recs, skip={"T1": (1, 2)})
    failed = layout.chunk_dir("T1", 10, 19)
    (failed / "exit_status").write_text("1\n")
    (failed / "job.log").write_text("start\nTraceback: boom\nexit status 1\n")
    capsys.readouterr()
    assert mmx("status", inp["run_config"], inp["tiles"], "--logs") == 1   # a chunk failed
    out = capsys.readouterr().out.splitlines()
    t1 = out[1].split()
    assert t1 == ["T1", "3", "1", "1", "0", "0", "0", "1", "0", "no"]
    assert out[2].split() == ["T2", "2", "2", "0", "0", "0", "0", "0", "0", "no"]
    assert any("failed chunk T1-run1-000010-000019" in ln for ln in out)
    assert "    Traceback: boom" in out

    assert mmx("collate", inp["run_config"], inp["tiles"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: tile T1: 2 of 3 chunk(s) without valid output: "
                          "chunk000010-000019 (failed with exit status 1), "
                          "chunk000020-000022 (never run); see 'megamixit status --logs'")
    assert "\n" not in err
    assert layout.collated("T2").exists() and not layout.collated("T1").exists()

    fake_run_chunks(layout, recs["T1"], inp["ids"]["T1"])
    assert mmx("collate", inp["run_config"], inp["tiles"]) == 0
    out = capsys.readouterr().out
    assert "collated T1: 23 objects from 3 chunks" in out
    assert mmx("verify", inp["run_config"], inp["tiles"]) == 0
    out = capsys.readouterr().out.splitlines()
    nflag = int(np.sum(inp["ids"]["T1"] % 19 == 0))
    assert out[1].split()[:3] == ["T1", "23", str(nflag)] and out[1].split()[4] == "ok"

    assert mmx("link", inp["run_config"], inp["tiles"]) == 0
    link = inp["run_dir"] / "output" / "T1-run1.fits"
    assert link.is_symlink() and os.readlink(link) == "../T1/T1-run1.fits"
    assert np.array_equal(fitsio.read(str(link), ext="model_fits")["id"], inp["ids"]["T1"])
    assert mmx("link", inp["run_config"], inp["tiles"]) == 0       # idempotent

    # verify finds a catalogue that was rewritten by hand (no checksums, no provenance)
    m = fitsio.read(str(layout.collated("T2")), ext="model_fits")
    fitsio.write(str(layout.collated("T2")), m[::-1], extname="model_fits", clobber=True)
    capsys.readouterr()
    assert mmx("verify", inp["run_config"], inp["tiles"]) == 1
    out = capsys.readouterr().out
    assert "T2-run1.fits: HDU 0: no FITS checksum" in out


def test_moved_run_directory_still_collates(tmp_path, capsys):
    inp, layout, recs = _setup(tmp_path)
    _fake_all(inp, layout, recs)
    moved = tmp_path / "elsewhere" / "deep" / "run1"
    moved.parent.mkdir(parents=True)
    shutil.move(str(inp["run_dir"]), str(moved))
    args = (moved / "run-config.yaml", moved / "tiles.txt")
    assert mmx("collate", *args) == 0
    assert mmx("link", *args) == 0
    assert mmx("verify", *args) == 0
    got = fitsio.read(str(moved / "output" / "T2-run1.fits"), ext="model_fits")
    assert np.array_equal(got["id"], inp["ids"]["T2"])
    assert not inp["run_dir"].exists()


def test_archive_and_clean(tmp_path, capsys):
    inp, layout, recs = _setup(tmp_path)
    _fake_all(inp, layout, recs)
    (layout.chunk_dir("T1", 0, 9) / "job.log").write_text("ok\n")
    assert mmx("archive", inp["run_config"], inp["tiles"]) == 2
    assert "tile T1: refusing to archive: " in capsys.readouterr().err
    assert mmx("clean", inp["run_config"], inp["tiles"], "--tile", "T2") == 2
    assert "refusing to clean (use --clobber to drop uncollated results)" in \
        capsys.readouterr().err
    assert mmx("collate", inp["run_config"], inp["tiles"]) == 0
    assert mmx("archive", inp["run_config"], inp["tiles"], "--tile", "T1") == 0
    arc = layout.archive("T1")
    with tarfile.open(arc) as tar:
        names = sorted(tar.getnames())
    assert "chunk000000-000009/job.log" in names and "chunk000000-000009/job.sh" in names
    assert not any(n.endswith(".fits") for n in names)
    assert sorted(p.name for p in layout.chunks_dir("T1").iterdir()) == [arc.name]
    capsys.readouterr()
    assert mmx("status", inp["run_config"], inp["tiles"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].split() == ["T1", "3", "3", "0", "0", "0", "0", "0", "0", "archived"]
    assert mmx("run", inp["run_config"], inp["tiles"], "--dry-run") == 0
    assert "0 chunk(s) would be submitted" in capsys.readouterr().out
    assert mmx("clean", inp["run_config"], inp["tiles"], "--tile", "T2") == 0
    assert not list(layout.chunks_dir("T2").rglob("*.fits"))
    assert list(layout.chunks_dir("T2").rglob("job.sh"))


def _cli(*args, cwd):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "pipeline.cli.megamixit", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, env=env, timeout=120)


def test_bad_input_one_line_errors(tmp_path):
    inp = make_inputs(tmp_path, {"T1": 5, "T2": 5}, extra={"chunk_size": 4})
    cases = []
    p = _cli("setup", inp["run_config"], inp["tiles"], cwd=tmp_path)
    cases.append((p, "unknown key 'chunk_size' (did you mean 'chunksize'?)"))
    conf = yaml.safe_load(inp["run_config"].read_text())
    del conf["chunk_size"]
    inp["run_config"].write_text(yaml.safe_dump(conf))
    (inp["inputs"] / "T2-r-meds.fits").unlink()
    p = _cli("setup", inp["run_config"], inp["tiles"], cwd=tmp_path)
    cases.append((p, "T2-r-meds.fits: MEDS file of tile 'T2' band 'r' not found"))
    dup = tmp_path / "dup.txt"
    dup.write_text("T1\nT1\n")
    p = _cli("setup", inp["run_config"], dup, cwd=tmp_path)
    cases.append((p, "dup.txt: line 2: duplicate tile 'T1' (first on line 1)"))
    p = _cli("setup", inp["run_config"], inp["tiles"], "--tile", "T1", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    p = _cli("collate", inp["run_config"], inp["tiles"], "--tile", "T1", cwd=tmp_path)
    cases.append((p, "tile T1: no valid chunk output (0 of 1 chunks): chunk000000-000004 "
                     "(never run); see 'megamixit status --logs'"))
    p = _cli("collate", inp["run_config"], inp["tiles"], "--tile", "T2", cwd=tmp_path)
    cases.append((p, "tile 'T2' is not set up in"))
    for p, want in cases:
        assert p.returncode == 2, (p.returncode, p.stderr)
        assert "Traceback" not in p.stderr
        errlines = [ln for ln in p.stderr.splitlines() if ln.startswith("error")]
        assert len(errlines) == 1 and p.stderr.endswith(errlines[0] + "\n"), p.stderr
        assert want in errlines[0], (want, errlines[0])
    assert not (inp["run_dir"] / "T1" / "T1-run1.fits").exists()


def test_run_local_failed_chunk_rerun_and_collate(tmp_path, capsys):
    """The local system runs real job scripts (a stand-in fitter, see support): a failing
    chunk shows in status, blocks collate, and is the only one resubmitted."""
    from .test_megamixit_support import fake_ngmixit_cmds
    inp, layout, recs = _setup(tmp_path, extra={"extra_cmds": fake_ngmixit_cmds(tmp_path),
                                                "workers": 2})
    bad = layout.chunk_dir("T1", 10, 19)
    (bad / "FAIL").write_text("")
    capsys.readouterr()
    assert mmx("run", inp["run_config"], inp["tiles"]) == 1
    out = capsys.readouterr().out
    assert "submitted 5 chunk(s) with system 'local'" in out and "4 done, 1 failed" in out
    assert mmx("status", inp["run_config"], inp["tiles"], "--logs") == 1
    out = capsys.readouterr().out
    assert out.splitlines()[1].split() == ["T1", "3", "2", "1", "0", "0", "0", "0", "0", "no"]
    assert "fake ngmixit: failing on purpose" in out
    assert mmx("collate", inp["run_config"], inp["tiles"], "--tile", "T1") == 2
    assert "chunk000010-000019 (failed with exit status 1)" in capsys.readouterr().err
    (bad / "FAIL").unlink()
    assert mmx("run", inp["run_config"], inp["tiles"]) == 0
    assert "submitted 1 chunk(s) with system 'local' in" in capsys.readouterr().out
    assert mmx("collate", inp["run_config"], inp["tiles"]) == 0
    for t in TILES:
        got = fitsio.read(str(layout.collated(t)), ext="model_fits")
        assert np.array_equal(got["id"], inp["ids"][t])
        chunks = fitsio.read(str(layout.collated(t)), ext="chunks")
        assert np.all(chunks["wall_seconds"] >= 0) and np.all(chunks["fit_seconds"] >= 0)
    capsys.readouterr()
    assert mmx("verify", inp["run_config"], inp["tiles"]) == 0
    out = capsys.readouterr().out
    for t in TILES:       # the per-tile QA figure
        qa = layout.qa_figure(t)
        assert f"QA figure: {qa}" in out
        assert qa.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and qa.stat().st_size > 20000
    assert mmx("run", inp["run_config"], inp["tiles"]) == 0
    assert "nothing to submit (0 chunk(s) done, 0 active, 2 tile(s) collated)" in \
        capsys.readouterr().out


def test_cli_overrides_extra_cmds_and_seed(tmp_path, capsys):
    inp = make_inputs(tmp_path, {"T1": 4})
    extra = tmp_path / "extra.sh"
    extra.write_text("source /opt/venv/bin/activate\n\nexport OMP_NUM_THREADS=1\n")
    assert mmx("setup", inp["run_config"], inp["tiles"], "--extra-cmds", extra,
               "--seed", 7, "--walltime", "00:30:00") == 0
    layout = RunLayout(inp["run_dir"], "run1")
    script = (layout.chunk_dir("T1", 0, 3) / "job.sh").read_text()
    assert "source /opt/venv/bin/activate\nexport OMP_NUM_THREADS=1\n" in script
    assert "--seed 7 " in script
    copy = yaml.safe_load((inp["run_dir"] / "run-config.yaml").read_text())
    assert copy["seed"] == 7 and copy["walltime"] == "00:30:00"
    capsys.readouterr()
    assert mmx("run", inp["run_config"], inp["tiles"], "--dry-run") == 0
    assert mmx("run", inp["run_config"], inp["tiles"], "--seed", 7, "--dry-run") == 0
    assert mmx("run", inp["run_config"], inp["tiles"], "--seed", 8, "--dry-run") == 2
    assert "tile T1 was set up with seed 7, not 8" in capsys.readouterr().err
    # 'run' rewrites the scripts from chunk_jobs: without a new --extra-cmds the
    # setup's lines must survive
    from pipeline.megamixer.jobs import chunk_jobs
    from pipeline.megamixer.runconfig import load_run_config
    from pipeline.megamixer.tilerecord import TileRecord
    rec = TileRecord.load(layout.tile_record("T1"))
    jobs = chunk_jobs(rec, layout, load_run_config(inp["run_config"]))
    assert jobs[0].extra_cmds == ["source /opt/venv/bin/activate", "export OMP_NUM_THREADS=1"]


def test_new_extra_cmds_reach_every_script_of_a_chunk(tmp_path, capsys):
    """--extra-cmds given at 'run' rewrote job.slurm but not job.sh: now the tile record
    takes the new lines and every job script a chunk holds is rewritten."""
    from .test_megamixit_support import fake_ngmixit_cmds
    inp = make_inputs(tmp_path, {"T1": 4}, extra={"system": "slurm", "queue": "debug"})
    assert mmx("setup", inp["run_config"], inp["tiles"]) == 0
    layout = RunLayout(inp["run_dir"], "run1")
    chunk = layout.chunk_dir("T1", 0, 3)
    assert (chunk / "job.slurm").exists() and not (chunk / "job.sh").exists()
    extra = tmp_path / "extra.sh"
    extra.write_text("\n".join(["echo new-environment-line"] + fake_ngmixit_cmds(tmp_path))
                     + "\n")
    assert mmx("run", inp["run_config"], inp["tiles"], "--system", "local",
               "--extra-cmds", extra) == 0
    for script in ("job.sh", "job.slurm"):
        assert "echo new-environment-line\n" in (chunk / script).read_text(), script
    rec = TileRecord.load(layout.tile_record("T1"))
    assert rec.extra["extra_cmds"][0] == "echo new-environment-line"
    assert "new-environment-line" in (chunk / "job.log").read_text()
