"""megamixit with ``--system lsf``: the job scripts and ``bsub`` calls it makes.

LSF cannot run here, so fake ``bsub``/``bjobs``/``bkill`` executables on PATH
record their argv, working directory and standard input, hand out job ids and
print a bjobs table the test writes. Everything goes through the megamixit CLI:
setup writes ``job.lsf`` per chunk with the expected ``#BSUB`` directives, run
submits each with a bare ``bsub < job.lsf`` from the chunk directory (or one
array per tile), status reads one bjobs call. The scripts are then executed the
way LSF does (a spooled copy run from another folder with ``LS_SUBCWD`` and
``LSB_JOBINDEX`` set), with a stand-in for ngmixit, so the run collates.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import subprocess
import textwrap
from pathlib import Path

import fitsio
import numpy as np
import pytest
import yaml

from pipeline.megamixer.layout import RunLayout
from pipeline.megamixer.tilerecord import TileRecord

from .test_megamixit_slurm import mmx, status_rows, submit_records
from .test_megamixit_support import fake_ngmixit_cmds, make_inputs

FAKE = textwrap.dedent("""\
    #!/usr/bin/env python3
    import json, os, sys
    state = os.environ["FAKE_LSF_DIR"]
    name = os.path.basename(sys.argv[0])
    stdin = sys.stdin.read() if name == "bsub" else None
    with open(os.path.join(state, "calls.jsonl"), "a") as f:
        f.write(json.dumps({"argv": [name] + sys.argv[1:], "cwd": os.getcwd(),
                            "stdin": stdin}) + "\\n")
    if name == "bsub":
        counter = os.path.join(state, "next_id")
        job_id = int(open(counter).read()) if os.path.exists(counter) else 101
        open(counter, "w").write(str(job_id + 1))
        print(f"Job <{job_id}> is submitted to queue <normal>.")
    elif name == "bjobs":
        table = os.path.join(state, "bjobs.out")
        known = open(table).read().splitlines() if os.path.exists(table) else []
        ids = {line.split()[0] for line in known}
        for line in known:
            if line.split()[0] in sys.argv[1:]:
                print(line)
        for arg in sys.argv[1:]:
            if arg.isdigit() and arg not in ids:
                print(f"Job <{arg}> is not found", file=sys.stderr)
""")


@pytest.fixture
def lsf(tmp_path, monkeypatch):
    """Fake LSF on PATH; returns its state folder (calls.jsonl, bjobs.out)."""
    state = tmp_path / "fake-lsf"
    bindir = state / "bin"
    bindir.mkdir(parents=True)
    for name in ("bsub", "bjobs", "bkill"):
        (bindir / name).write_text(FAKE)
        (bindir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_LSF_DIR", str(state))
    return state


def calls(state: Path, name: str | None = None) -> list[dict]:
    path = state / "calls.jsonl"
    out = [json.loads(ln) for ln in path.read_text().splitlines()] if path.exists() else []
    return [c for c in out if name is None or c["argv"][0] == name]


def directives(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.startswith("#BSUB")]


def run_like_lsf(script_text: str, subcwd: Path, spool: Path, **env: str) -> int:
    """Run the submitted script text as LSF does: a spooled copy, another cwd."""
    spool.mkdir(exist_ok=True)
    copy = spool / f"job.{len(list(spool.iterdir()))}"
    copy.write_text(script_text)
    full = {**os.environ, "LS_SUBCWD": str(subcwd), "LSB_JOBID": "1", **env}
    return subprocess.run(["bash", str(copy)], cwd=spool, env=full,
                          stdin=subprocess.DEVNULL).returncode


def _inputs(tmp_path: Path, **extra) -> dict:
    conf = {"system": "lsf", "queue": "long", "walltime": "01:30:30", "mem": "2G"}
    conf.update(extra)
    inp = make_inputs(tmp_path, {"TL": 25, "TM": 8}, chunksize=10, extra=conf)
    # job-environment lines: a marker and the ngmixit stand-in (via --extra-cmds)
    extra_file = tmp_path / "extra-cmds.sh"
    extra_file.write_text("\n".join(["echo job-environment-ready"]
                                    + fake_ngmixit_cmds(tmp_path)) + "\n")
    inp["extra_file"] = extra_file
    return inp


def test_lsf_scripts_submit_status_and_resubmit(tmp_path, lsf, capsys):
    inp = _inputs(tmp_path)
    args = (inp["run_config"], inp["tiles"], "--extra-cmds", inp["extra_file"])
    assert mmx("setup", *args) == 0
    layout = RunLayout(inp["run_dir"], "run1")
    recs = {t: TileRecord.load(layout.tile_record(t)) for t in ("TL", "TM")}
    assert [len(r.chunks) for r in recs.values()] == [3, 1]
    jobs = [(t, a, b) for t, r in recs.items() for a, b in r.ranges]
    extra_lines = inp["extra_file"].read_text().splitlines()

    # ---- setup's scripts: directives, environment lines, the chunk's ngmixit command
    for tile, a, b in jobs:
        name = layout.job_name(tile, a, b)
        text = (layout.chunk_dir(tile, a, b) / "job.lsf").read_text()
        assert directives(text) == [f"#BSUB -J {name}", "#BSUB -oo job.log.lsf",
                                    "#BSUB -n 1",
                                    "#BSUB -W 01:31",      # [hours:]minutes, rounded up
                                    "#BSUB -q long", "#BSUB -M 2048MB"]
        lines = text.splitlines()
        assert lines[0] == "#!/usr/bin/env bash"
        i = lines.index(extra_lines[0])
        assert lines[i:i + len(extra_lines)] == extra_lines
        meds = [str(inp["inputs"] / f"{tile}-{band}-meds.fits") for band in "gr"]
        # the interpreter: set before the extra lines, which may change it
        assert f"export MEGAMIXER_PYTHON={sys.executable}" in lines[:i]
        assert shlex.split(lines[i + len(extra_lines)]) == [
            "${MEGAMIXER_PYTHON}", "-m", "pipeline.cli.ngmixit", "../../../fit-config.yaml",
            f"{tile}-run1-{a:06d}-{b:06d}.fits", *meds, "--fof-range", f"{a},{b}",
            "--seed", "42", "--log-level", "INFO", "--tag", "run=run1", "--tag",
            f"tile={tile}", "--tag", f"setup={recs[tile].setup_id}"]
        assert str(layout.run_dir) not in text       # the run tree can move

    # ---- dry run: says what it would do, calls nothing, writes nothing
    capsys.readouterr()
    assert mmx("run", *args, "--dry-run") == 0
    out = capsys.readouterr().out
    assert "dry run: 4 chunk(s) would be submitted with system 'lsf'" in out
    assert calls(lsf) == []
    assert not any((layout.chunk_dir(t, a, b) / "submit.json").exists() for t, a, b in jobs)

    # ---- run: one bare `bsub < job.lsf` per chunk from its folder; CLI overrides win
    (lsf / "bjobs.out").write_text("".join(f"{i} 0 PEND\n" for i in range(101, 105)))
    capsys.readouterr()
    assert mmx("run", *args, "--queue", "short", "--walltime", "45", "--mem", "500M") == 0
    assert "submitted 4 chunk(s) with system 'lsf' in" in capsys.readouterr().out
    bsubs = calls(lsf, "bsub")
    assert [c["argv"] for c in bsubs] == [["bsub"]] * 4
    assert [c["cwd"] for c in bsubs] == [str(layout.chunk_dir(t, a, b)) for t, a, b in jobs]
    for c, (tile, a, b) in zip(bsubs, jobs):
        assert c["stdin"] == (layout.chunk_dir(tile, a, b) / "job.lsf").read_text()
        assert directives(c["stdin"])[2:] == ["#BSUB -n 1", "#BSUB -W 00:45",
                                              "#BSUB -q short", "#BSUB -M 500MB"]
    ids = {n: r["job_id"] for rec in recs.values()
           for n, r in submit_records(layout, rec).items()}
    assert list(ids.values()) == ["101", "102", "103", "104"]

    # ---- status: one bjobs call for all jobs; 101 runs, 102 waits, 103 and 104
    # are unknown to LSF without an exit_status (killed): failed
    (lsf / "bjobs.out").write_text("101 0 RUN\n102 0 PEND\n")
    n_before = len(calls(lsf))
    rows, _ = status_rows(capsys, *args)
    new = calls(lsf)[n_before:]
    assert [c["argv"] for c in new] == [["bjobs", "-noheader", "-a", "-o",
                                         "jobid jobindex stat", "101", "102", "103", "104"]]
    assert {k: rows["TL"][k] for k in ("running", "pending", "failed")} == \
        {"running": 1, "pending": 1, "failed": 1}
    assert rows["TM"]["failed"] == 1

    # ---- LSF runs the submitted scripts; the third chunk of TL fails
    (layout.chunk_dir("TL", *recs["TL"].ranges[2]) / "FAIL").write_text("")
    spool = tmp_path / "spool"
    for c, (tile, a, b) in zip(bsubs, jobs):
        code = run_like_lsf(c["stdin"], Path(c["cwd"]), spool)
        assert code == (1 if (tile, a) == ("TL", 20) else 0)
        assert "job-environment-ready" in (layout.chunk_dir(tile, a, b) / "job.log").read_text()
    (lsf / "bjobs.out").write_text("101 0 DONE\n102 0 DONE\n103 0 EXIT\n104 0 DONE\n")
    rows, out = status_rows(capsys, *args, logs=True)
    assert (rows["TL"]["done"], rows["TL"]["failed"], rows["TM"]["done"]) == (2, 1, 1)
    assert "fake ngmixit: failing on purpose" in out.split("--- failed chunk TL-run1-000020")[1]
    capsys.readouterr()
    assert mmx("collate", *args) == 2
    assert "chunk000020-000024 (failed with exit status 1)" in capsys.readouterr().err

    # ---- run again: only the failed chunk is submitted; it then succeeds
    (layout.chunk_dir("TL", 20, 24) / "FAIL").unlink()
    (lsf / "bjobs.out").write_text("101 0 DONE\n102 0 DONE\n103 0 EXIT\n104 0 DONE\n"
                                   "105 0 PEND\n")
    n_bsub = len(calls(lsf, "bsub"))
    assert mmx("run", *args) == 0
    again = calls(lsf, "bsub")[n_bsub:]
    assert [c["cwd"] for c in again] == [str(layout.chunk_dir("TL", 20, 24))]
    assert run_like_lsf(again[0]["stdin"], Path(again[0]["cwd"]), spool) == 0
    assert mmx("collate", *args) == 0
    for tile in recs:
        model = fitsio.read(str(layout.collated(tile)), ext="model_fits")
        assert np.array_equal(model["id"], inp["ids"][tile])       # every object once


def test_lsf_array_one_bsub_per_tile(tmp_path, lsf, capsys):
    inp = _inputs(tmp_path, array=True)
    args = (inp["run_config"], inp["tiles"], "--extra-cmds", inp["extra_file"])
    assert mmx("setup", *args) == 0
    (lsf / "bjobs.out").write_text("101 1 PEND\n101 2 PEND\n101 3 PEND\n102 1 PEND\n")
    assert mmx("run", *args) == 0
    layout = RunLayout(inp["run_dir"], "run1")
    bsubs = calls(lsf, "bsub")
    assert [c["argv"] for c in bsubs] == [["bsub"], ["bsub"]]          # one per tile
    assert [c["cwd"] for c in bsubs] == [str(layout.chunks_dir(t) / "arrays")
                                         for t in ("TL", "TM")]
    # the array is named after its chunks' common prefix (a lone chunk's whole name)
    for c, (label, n) in zip(bsubs, (("TL-run1", 3), ("TM-run1-000000-000007", 1))):
        d = directives(c["stdin"])
        stem = Path(d[1].split()[2]).name.split(".")[0]
        assert d == [f'#BSUB -J "{label}-array[1-{n}]"', f"#BSUB -oo {stem}.%I.lsf.log",
                     "#BSUB -n 1", "#BSUB -W 01:31", "#BSUB -q long", "#BSUB -M 2048MB"]
    rec = TileRecord.load(layout.tile_record("TL"))
    sub = submit_records(layout, rec)
    assert [(r["job_id"], r["array_index"]) for r in sub.values()] == \
        [("101[1]", 1), ("101[2]", 2), ("101[3]", 3)]
    # each element, run as LSF would, runs its own chunk; then the tile collates
    arrays = layout.chunks_dir("TL") / "arrays"
    for k in (1, 2, 3):
        assert run_like_lsf(bsubs[0]["stdin"], arrays, tmp_path / "spool",
                            LSB_JOBINDEX=str(k)) == 0
    (lsf / "bjobs.out").write_text("101 1 DONE\n101 2 DONE\n101 3 DONE\n")
    rows, _ = status_rows(capsys, *args, "--tile", "TL")
    assert rows["TL"]["done"] == 3
    assert calls(lsf, "bjobs")[-1]["argv"][-1] == "101"    # the array asked by its id
    assert mmx("collate", *args, "--tile", "TL") == 0
    assert yaml.safe_load((layout.run_dir / "run-config.yaml").read_text())["array"] is True
