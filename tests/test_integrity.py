"""Catalogue integrity under hostile paths, wrong inputs, faults and interrupts (ngmixit).

Each test reproduces one way a run could lose or corrupt results and checks it
now fails with one line, or recovers, without wrong output. The megamixit half
is in test_integrity_megamixit.py.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import fitsio
import numpy as np
import pytest

from pipeline.fitsfile import read_table
from pipeline.identity import catalog_header, tile_catalog
from pipeline.nbrs import FOFS_DTYPE, write_fofs
from pipeline.output import NONDETERMINISTIC_COLUMNS

from .ngmixit_runs import kill_after_checkpoint, ngmixit

SEED = 4242
FIT_CONFIG = """\
fitter_type: max
region: weight
psf_pars: {model: coellip3, ntry: 2}
max_pars: {ntry: 1}
models: [exp]
model_pars:
  exp:
    cen: {type: normal2d, width: 0.263}
    g: {type: ba, sigma: 0.3}
"""
HOSTILE = "survey(y6) [v1]!x+2 $HOME"


def _sim(outdir: Path, tile: str, nobj: int, seed: int) -> list[Path]:
    subprocess.run([sys.executable, "-m", "pipeline.cli.sim", str(outdir), "--tile", tile,
                    "--nobj", str(nobj), "--bands", "g,r", "--nepoch", "2", "--seed",
                    str(seed), "--blend-frac", "0.3", "--log-level", "WARNING"], check=True)
    return [outdir / f"{tile}-{b}-meds.fits" for b in "gr"]


@pytest.fixture(scope="module")
def tiles(tmp_path_factory):
    """Two tiles with the same objects' ids and count but other positions, with their
    FoF files, and a fit config."""
    root = tmp_path_factory.mktemp("integrity")
    out = {"root": root, "conf": root / "fit.yaml"}
    out["conf"].write_text(FIT_CONFIG)
    (root / "nbrs.yaml").write_text("method: box\nbuff_frac: 0.25\n")
    for tile, seed in (("A", 3), ("B", 4)):
        meds = _sim(root / "sim", tile, 40, seed)
        fof = root / f"{tile}-fofs.fits"
        subprocess.run([sys.executable, "-m", "pipeline.cli.nbrs", str(root / "nbrs.yaml"),
                        *map(str, meds), "--nbrs-file", str(root / f"{tile}-nbrs.fits"),
                        "--fof-file", str(fof), "--log-level", "WARNING"], check=True)
        out[tile] = {"meds": meds, "fof": fof, "nbrs": root / f"{tile}-nbrs.fits"}
    return out


def one_error_line(proc) -> str:
    """The single 'error: ...' line a failed command must print (no traceback)."""
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1 and proc.stderr.rstrip().endswith(lines[0]), proc.stderr
    return lines[0]


@pytest.fixture(scope="module")
def reference(tiles):
    """Tile A fitted once, uninterrupted, with its FoF groups."""
    out = tiles["root"] / "ref-A.fits"
    ngmixit(tiles["conf"], out, *tiles["A"]["meds"], "--fof-file", tiles["A"]["fof"],
            "--seed", SEED)
    return out


def same_catalogue(a: Path, b: Path) -> None:
    for ext in ("model_fits", "epoch_data"):
        ta, tb = read_table(a, ext=ext), read_table(b, ext=ext)
        names = [n for n in ta.dtype.names if n not in NONDETERMINISTIC_COLUMNS]
        assert ta.dtype.names == tb.dtype.names
        for n in names:
            assert np.array_equal(ta[n], tb[n]), (ext, n)


def files_below(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


# ------------------------------------------------------------------ hostile names

def test_hostile_paths_write_only_where_asked(tiles, reference, tmp_path):
    """cfitsio must never see a name it can reinterpret: '(' would make it write a
    FITS stub to the path before it, '[' select an extension, '!' clobber, '$' expand."""
    folder = tmp_path / HOSTILE
    folder.mkdir()
    meds = []
    for path in tiles["A"]["meds"]:
        copy = folder / f"in(1)[2] {path.name}"
        shutil.copy(path, copy)
        meds.append(copy)
    fof = folder / "fofs[1].fits"
    shutil.copy(tiles["A"]["fof"], fof)
    out = folder / "out(put)[1].fits+1"
    before = files_below(tmp_path)
    ngmixit(tiles["conf"], out, *meds, "--fof-file", fof, "--seed", SEED)
    assert files_below(tmp_path) - before == {f"{HOSTILE}/{out.name}"}
    same_catalogue(out, reference)


# ------------------------------------------------------------------ wrong inputs

def test_fof_file_of_another_tile_is_refused(tiles, tmp_path):
    """Same object count and numbers, other tile: silently wrong fits before."""
    out = tmp_path / "out.fits"
    proc = ngmixit(tiles["conf"], out, *tiles["A"]["meds"], "--fof-file", tiles["B"]["fof"],
                   "--seed", SEED, check=False)
    line = one_error_line(proc)
    assert line == (f"error: {tiles['B']['fof']}: FoF file was built for another object "
                    f"catalogue than {tiles['A']['meds'][0]} (catalogue digest differs): "
                    f"wrong tile?")
    proc = ngmixit(tiles["conf"], out, *tiles["A"]["meds"], "--fof-file", tiles["A"]["fof"],
                   "--nbrs-file", tiles["B"]["nbrs"], "--seed", SEED, check=False)
    assert "neighbour file was built for another object catalogue" in one_error_line(proc)
    assert not out.exists()


def test_bands_of_different_tiles_sharing_ids_are_refused(tiles, tmp_path):
    out = tmp_path / "out.fits"
    proc = ngmixit(tiles["conf"], out, tiles["A"]["meds"][0], tiles["B"]["meds"][1],
                   "--seed", SEED, check=False)
    line = one_error_line(proc)
    assert f"{tiles['B']['meds'][1]}: positions differ from {tiles['A']['meds'][0]}" in line
    assert "bands of different tiles?" in line
    assert not out.exists()


def test_legacy_fof_file_without_digest_is_checked_by_content(tiles, tmp_path):
    """ngmixer's FoF files carry no digest: accepted (with a warning) when every object
    of the MEDS files is listed, refused when numbers are foreign."""
    fofs = fitsio.read(str(tiles["A"]["fof"]), ext=1)
    legacy = tmp_path / "legacy-fofs.fits"
    fitsio.write(str(legacy), fofs, clobber=True)
    out = tmp_path / "out.fits"
    proc = ngmixit(tiles["conf"], out, *tiles["A"]["meds"], "--fof-file", legacy,
                   "--seed", SEED, "--fof-range", "0,2")
    assert "carries no catalogue digest" in proc.stderr
    fofs["number"] += 1000
    fitsio.write(str(legacy), fofs, clobber=True)
    proc = ngmixit(tiles["conf"], tmp_path / "o2.fits", *tiles["A"]["meds"], "--fof-file",
                   legacy, "--seed", SEED, check=False)
    assert "FoF numbers are not in the MEDS file" in one_error_line(proc)


def test_output_must_not_overwrite_an_input(tiles, tmp_path):
    meds = tmp_path / "copy-meds.fits"
    shutil.copy(tiles["A"]["meds"][0], meds)
    size = meds.stat().st_size
    proc = ngmixit(tiles["conf"], meds, meds, "--seed", SEED, check=False)
    assert one_error_line(proc) == f"error: {meds}: the output would overwrite an input file"
    assert meds.stat().st_size == size


# ------------------------------------------------------------------ checkpoints

def _singleton_fofs(meds: list[Path], path: Path) -> Path:
    """A FoF file of this very catalogue with every object alone (valid, other groups)."""
    cat = tile_catalog(meds)
    fofs = np.zeros(cat.size, dtype=FOFS_DTYPE)
    order = np.argsort(cat.number)
    fofs["number"] = cat.number[order]
    fofs["fofid"] = np.arange(cat.size)
    write_fofs(path, fofs, header=catalog_header(cat))
    return path


def test_resume_after_changing_the_fof_file_starts_over(tiles, reference, tmp_path):
    """The checkpoint key covers the FoF/nbrs/MOF/obj-flags files: a checkpoint of
    other groups must not be resumed (it gave duplicate and missing ids before)."""
    out = tmp_path / "out.fits"
    ckpt = tmp_path / "out-checkpoint.fits"
    single = _singleton_fofs(tiles["A"]["meds"], tmp_path / "single-fofs.fits")
    kill_after_checkpoint([tiles["conf"], out, *tiles["A"]["meds"], "--fof-file", single,
                           "--seed", SEED, "--checkpoint-seconds", 0], ckpt)
    proc = ngmixit(tiles["conf"], out, *tiles["A"]["meds"], "--fof-file", tiles["A"]["fof"],
                   "--seed", SEED)
    assert "ignoring checkpoint" in proc.stderr and "resuming" not in proc.stderr
    same_catalogue(out, reference)
    assert not ckpt.exists()


@pytest.mark.parametrize("content", [b"", b"SIMPLE  =                    T" + b" " * 50])
def test_unreadable_checkpoint_is_set_aside(tiles, reference, tmp_path, content):
    out = tmp_path / "out.fits"
    ckpt = tmp_path / "out-checkpoint.fits"
    ckpt.write_bytes(content)
    proc = ngmixit(tiles["conf"], out, *tiles["A"]["meds"], "--fof-file", tiles["A"]["fof"],
                   "--seed", SEED)
    assert "unreadable checkpoint" in proc.stderr and "starting over" in proc.stderr
    same_catalogue(out, reference)
    aside = list(tmp_path.glob("out-checkpoint.fits.unreadable-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == content


# ------------------------------------------------------------------ interrupts

def _start(args: list, **kw) -> tuple[subprocess.Popen, list[str]]:
    """Start ngmixit; returns the process and a list filled with its stderr lines."""
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli.ngmixit", *map(str, args)],
                            stderr=subprocess.PIPE, text=True, **kw)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True).start()
    return proc, lines


def _wait_for(lines: list[str], text: str, proc, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not any(text in ln for ln in lines):
        assert proc.poll() is None, "".join(lines)
        assert time.monotonic() < deadline, f"no {text!r} in {''.join(lines)}"
        time.sleep(0.01)


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_checkpoints_and_the_rerun_resumes_identically(tiles, reference, tmp_path,
                                                                  sig, code):
    """A signal is never a fit failure: the run saves its finished groups whatever
    checkpoint_seconds says, exits 130/143, and the rerun gives the same catalogue."""
    out = tmp_path / "out.fits"
    args = [tiles["conf"], out, *tiles["A"]["meds"], "--fof-file", tiles["A"]["fof"],
            "--seed", SEED, "--checkpoint-seconds", 1e6, "--log-level", "DEBUG"]
    proc, lines = _start(args)
    # at once: the 40 objects take well under a second to fit, and the signal must
    # land while groups remain
    _wait_for(lines, "fitting groups", proc)
    proc.send_signal(sig)
    assert proc.wait(timeout=300) == code
    time.sleep(0.1)
    err = "".join(lines)
    assert "failed" not in err and "UTTER" not in err, err
    assert f"error: interrupted by {signal.Signals(sig).name}: stopped; checkpoint" in err
    assert not out.exists()
    assert (tmp_path / "out-checkpoint.fits").exists()
    rerun = ngmixit(*args)
    assert "resuming from checkpoint" in rerun.stderr
    same_catalogue(out, reference)
    assert not (tmp_path / "out-diagnostics.jsonl").exists()


def test_second_interrupt_stops_at_once_without_flagging(tiles, reference, tmp_path):
    out = tmp_path / "out.fits"
    args = [tiles["conf"], out, *tiles["A"]["meds"], "--fof-file", tiles["A"]["fof"],
            "--seed", SEED, "--checkpoint-seconds", 1e6]
    proc, lines = _start(args)
    _wait_for(lines, "fitting groups", proc)    # at once, as above
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=300) == 130
    ngmixit(*args)
    same_catalogue(out, reference)
    flags = fitsio.read(str(out), ext="model_fits")["flags"]
    assert not np.any(flags & (1 << 29)), "an interrupt was recorded as UTTER_FAILURE"


# ------------------------------------------------------------------ output faults

@contextlib.contextmanager
def readonly_folder(path: Path):
    """``path`` made unwritable: a read-only bind mount for root (who ignores
    permissions), mode 555 otherwise."""
    path.mkdir()
    if os.geteuid() != 0:
        path.chmod(0o555)
        try:
            yield path
        finally:
            path.chmod(0o755)
        return
    for cmd in (["mount", "--bind", str(path), str(path)],
                ["mount", "-o", "remount,bind,ro", str(path)]):
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            subprocess.run(["umount", str(path)], capture_output=True)
            pytest.skip(f"root cannot make a read-only folder here ({proc.stderr.strip()})")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


def test_unwritable_output_folder_fails_before_fitting(tiles, tmp_path):
    """Checked before any fit: one line naming the folder, nothing written."""
    with readonly_folder(tmp_path / "readonly") as outdir:
        start = time.monotonic()
        proc = ngmixit(tiles["conf"], outdir / "out.fits", *tiles["A"]["meds"], "--seed",
                       SEED, check=False)
        line = one_error_line(proc)
        assert line.startswith(f"error: {outdir}: cannot write output here: "), line
        assert "fitting groups" not in proc.stderr
        assert os.listdir(outdir) == []
        assert time.monotonic() - start < 60


def test_disk_full_is_one_line_and_leaves_nothing(tiles, tmp_path):
    """A write that fails midway (here: the file-size limit, as a full disk or quota
    would) gives one line naming the file; no partial output, no temporaries."""
    out = tmp_path / "out.fits"
    ngmixit(tiles["conf"], tmp_path / "warm.fits", *tiles["A"]["meds"], "--seed", SEED,
            "--fof-range", "0,0")   # kernels compiled and cached before the limit applies

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))

    proc = ngmixit(tiles["conf"], out, *tiles["A"]["meds"], "--seed", SEED, check=False,
                   preexec_fn=limit)
    line = one_error_line(proc)
    assert line.startswith(f"error: {out}: cannot write: "), line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["warm.fits"]


def test_fifo_as_input_fails_fast(tiles, tmp_path):
    fifo = tmp_path / "pipe-meds.fits"
    os.mkfifo(fifo)
    start = time.monotonic()
    proc = ngmixit(tiles["conf"], tmp_path / "out.fits", fifo, "--seed", SEED, check=False,
                   timeout=120)
    assert "not a regular file" in one_error_line(proc)
    assert time.monotonic() - start < 60
