"""Local end to end: ngmixer-sim tiles -> megamixit setup/run/status/collate/link/verify.

Real ngmixit jobs run through the local system. The collated catalogue must hold
every object once and equal a single ngmixit run over the tile with the same
seed, and equal a run with other chunks (FoF groups, big groups alone) and
another worker count; time columns (``time_last_fit``) are wall-clock stamps and
are left out of the comparisons. The run tree is moved between setup and run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import fitsio
import numpy as np
import pytest
import yaml

from pipeline.cli.common import run_cli
from pipeline.cli.megamixit import main

from pipeline.megamixer.tilerecord import TileRecord

from .test_megamixit_support import REPO, python_path_env

pytestmark = pytest.mark.slow

NOBJ = 60
TILES = {"TA": 10, "TB": 11}        # tile -> sim seed
SEED = 4242
FIT_CONFIG = """\
models: [exp]
psf_pars: {model: gauss, ntry: 2}
max_pars: {ntry: 1}
"""


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"]
                                     if env.get("PYTHONPATH") else "")
    return env


def _py(*args, cwd):
    p = subprocess.run([sys.executable, "-m", *map(str, args)], cwd=cwd, env=_env(),
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    return p


def mmx(*args):
    return run_cli(main, [str(a) for a in args] + ["--log-level", "WARNING"])


@pytest.fixture(scope="module")
def sims(tmp_path_factory):
    root = tmp_path_factory.mktemp("mmx_e2e")
    for tile, seed in TILES.items():
        _py("pipeline.cli.sim", root / "sim", "--tile", tile, "--nobj", NOBJ, "--bands", "g,r",
            "--nepoch", 2, "--seed", seed, "--blend-frac", 0.4, "--log-level", "WARNING",
            cwd=root)
    (root / "fit.yaml").write_text(FIT_CONFIG)
    (root / "tiles.txt").write_text("".join(f"{t}\n" for t in TILES))
    return root


def _run_config(root, name, **kw):
    conf = {"run": name, "fit_config": "fit.yaml", "bands": ["g", "r"], "input_dir": "sim",
            "output_dir": "out", "chunksize": 25, "seed": SEED, "workers": 2}
    conf.update(kw)
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(conf))
    return path


def _read(path):
    with fitsio.FITS(str(path)) as f:
        return f["model_fits"].read(), f["epoch_data"].read()


def _assert_same(a, b, skip=()):
    names = [n for n in a.dtype.names if "time" not in n and n not in skip]
    assert set(names) <= set(b.dtype.names)
    for n in names:
        assert np.array_equal(a[n], b[n], equal_nan=a[n].dtype.kind == "f"), n


def test_local_end_to_end(sims, monkeypatch, capsys):
    # jobs find the software by themselves (the interpreter that ran setup), and load
    # the kernels setup compiled into the run's numba cache
    monkeypatch.delenv("PYTHONPATH", raising=False)
    root = sims
    conf = _run_config(root, "runA")
    assert mmx("setup", conf, root / "tiles.txt") == 0
    # move the run tree: the job scripts and records must not care
    moved = root / "moved" / "runA"
    moved.parent.mkdir()
    shutil.move(str(root / "out" / "runA"), str(moved))
    args = (moved / "run-config.yaml", moved / "tiles.txt")
    capsys.readouterr()
    assert mmx("run", *args) == 0
    assert "submitted 6 chunk(s) with system 'local'" in capsys.readouterr().out
    assert mmx("status", *args) == 0
    lines = capsys.readouterr().out.splitlines()
    for line, tile in zip(lines[1:3], TILES):
        assert line.split() == [tile, "3", "3", "0", "0", "0", "0", "0", "0", "no"]
    assert mmx("collate", *args) == 0
    assert mmx("link", *args) == 0
    assert mmx("verify", *args) == 0
    assert (moved / "numba-cache").is_dir()
    for log in moved.glob("*/chunks/*/job.log"):
        text = log.read_text()
        assert "fitting groups" in text and "compiling numba kernels" not in text, log

    for tile in TILES:
        meds = [root / "sim" / f"{tile}-{b}-meds.fits" for b in "gr"]
        ids = fitsio.read(str(meds[0]), ext="object_data", columns=["id"])["id"]
        link = moved / "output" / f"{tile}-runA.fits"
        assert os.readlink(link) == f"../{tile}/{tile}-runA.fits"
        model, epoch = _read(link)
        assert np.array_equal(model["id"], ids)                      # every object once
        assert "exp_mag" in model.dtype.names and "exp_flux_s2n" in model.dtype.names
        # a single ngmixit run over the whole tile, same seed
        single = root / f"single-{tile}.fits"
        _py("pipeline.cli.ngmixit", root / "fit.yaml", single, *meds, "--seed", SEED,
            "--log-level", "WARNING", cwd=root)
        smodel, sepoch = _read(single)
        assert np.array_equal(smodel["id"], ids)
        _assert_same(smodel, model)
        _assert_same(sepoch, epoch)
        ok = model["flags"] == 0
        assert ok.mean() > 0.5
        good = ok & (model["exp_flux"][:, 0] > 0)
        assert np.allclose(model["exp_mag"][good, 0],
                           30.0 - 2.5 * np.log10(model["exp_flux"][good, 0]))


def test_other_chunking_and_workers_same_catalogue(sims, monkeypatch):
    """FoF chunks (neighbour files built by setup), big groups alone, one worker."""
    python_path_env(monkeypatch)
    root = sims
    conf = _run_config(root, "runB", chunksize=20, max_group_size_per_chunk=3, workers=1,
                       nbrs_config=str(REPO / "configs" / "nbrs.yaml"),
                       warm_numba_cache=False)
    args = (conf, root / "tiles.txt", "--tile", "TB")
    assert mmx("setup", *args) == 0
    assert mmx("run", *args) == 0
    assert mmx("collate", *args) == 0
    b_model, b_epoch = _read(root / "out" / "runB" / "TB" / "TB-runB.fits")
    single = root / "single-TB.fits"
    if not single.exists():           # this test alone: make the reference
        meds = [root / "sim" / f"TB-{b}-meds.fits" for b in "gr"]
        _py("pipeline.cli.ngmixit", root / "fit.yaml", single, *meds, "--seed", SEED,
            "--log-level", "WARNING", cwd=root)
    s_model, s_epoch = _read(single)
    # fofid/fofind reflect the FoF file here, one group per object without one
    _assert_same(s_model, b_model, skip=("fofid", "fofind"))
    _assert_same(s_epoch, b_epoch)
    rec = TileRecord.load(root / "out" / "runB" / "tiles" / "TB.json")
    assert any(a == b and n > 3 for a, b, n in rec.chunks)            # a big group alone
    assert rec.ngroups < NOBJ and len(rec.chunks) >= 3                 # real FoF groups
