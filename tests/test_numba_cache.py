"""numba's machine-code cache: same bits with a cold, warm or partly warm cache,
a warmed cache folder that leaves nothing to compile, and the cold-compile log line.

Every run is a fresh process with its own NUMBA_CACHE_DIR, as batch jobs are."""

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

from pipeline import nbrs as nb
from pipeline.jitcache import warm_cache
from pipeline.output import NONDETERMINISTIC_COLUMNS

ROOT = Path(__file__).resolve().parents[1]
COLD_LINE = "compiling numba kernels (first run with cache folder"

# ngmixit in a child that records what numba compiles (pipeline.jitlog)
CHILD = """
import json, sys
from pipeline.cli.ngmixit import main
from pipeline.jitlog import CompileRecorder
with CompileRecorder() as rec:
    main(sys.argv[2:])
json.dump([c.name for c in rec.compiled], open(sys.argv[1], "w"))
"""


@pytest.fixture(scope="module")
def tile(tmp_path_factory):
    """12 objects, 2 bands x 3 epochs, half blended, with neighbour and FoF files."""
    d = tmp_path_factory.mktemp("cachetile")
    subprocess.run([sys.executable, "-m", "pipeline.cli.sim", str(d), "--tile", "K",
                    "--nobj", "12", "--bands", "g,r", "--nepoch", "3", "--seed", "11",
                    "--blend-frac", "0.5", "--star-frac", "0.1", "--log-level", "WARNING"],
                   check=True, stdout=subprocess.DEVNULL)
    meds = [str(d / f"K-{b}-meds.fits") for b in "gr"]
    numbers, _, _, pi, pj = nb.pairs_from_meds(meds, nb.load_nbrs_config(ROOT / "configs" / "nbrs.yaml"))
    nb.write_nbrs(d / "K-nbrs.fits", nb.make_nbrs_table(numbers, pi, pj))
    nb.write_fofs(d / "K-fofs.fits", nb.make_fofs_table(numbers, pi, pj))
    return {"dir": d, "meds": meds, "nbrs": str(d / "K-nbrs.fits"), "fofs": str(d / "K-fofs.fits")}


def ngmixit(tile, config, out, cache, *extra):
    """Run ngmixit with NUMBA_CACHE_DIR=cache; (names compiled, stderr, seconds)."""
    record = str(out) + ".compiled.json"
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache))
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", CHILD, record, str(config), str(out),
                           *tile["meds"], "--seed", "5", "--no-progress", *extra],
                          env=env, capture_output=True, text=True)
    seconds = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(record) as fobj:
        return json.load(fobj), proc.stderr, seconds


def assert_same_bits(a, b):
    for ext in ("model_fits", "epoch_data"):
        x, y = fitsio.read(a, ext=ext), fitsio.read(b, ext=ext)
        assert x.dtype == y.dtype and len(x) == len(y)
        for name in x.dtype.names:
            if name in NONDETERMINISTIC_COLUMNS:
                continue
            assert np.asarray(x[name]).tobytes() == np.asarray(y[name]).tobytes(), \
                f"{ext}.{name} differs between {a} and {b}"


def test_cold_warm_and_partly_warm_cache_give_the_same_bits(tile, tmp_path):
    config = ROOT / "configs" / "fit-max.yaml"
    cache = tmp_path / "cache"
    cold, cold_err, _ = ngmixit(tile, config, tmp_path / "cold.fits", cache)
    assert cold, "the empty cache folder compiled nothing"
    assert cold_err.count(COLD_LINE) == 1 and str(cache) in cold_err
    warm, warm_err, _ = ngmixit(tile, config, tmp_path / "warm.fits", cache)
    assert warm == [] and COLD_LINE not in warm_err
    assert_same_bits(tmp_path / "cold.fits", tmp_path / "warm.fits")
    # The LM kernel recompiled against callees loaded from the cache: the mix
    # whose machine code differed from a cold compile when kernels used fastmath.
    partial = tmp_path / "partial"
    shutil.copytree(cache, partial)
    dropped = [p for p in partial.rglob("lm_nb.*")]
    assert dropped
    for p in dropped:
        p.unlink()
    mixed, _, _ = ngmixit(tile, config, tmp_path / "mixed.fits", partial)
    assert any(name.startswith("pipeline.gmix.lm_nb.") for name in mixed)
    assert_same_bits(tmp_path / "cold.fits", tmp_path / "mixed.fits")


def test_warmed_cache_folder_leaves_nothing_to_compile(tile, tmp_path):
    conf = yaml.safe_load((ROOT / "configs" / "fit-mof.yaml").read_text())
    cache = tmp_path / "run" / "numba-cache"
    report = warm_cache(cache, conf)
    assert report.cache_dir == cache.resolve() and report.compiled > 0
    ours = [k for k in report.kernels if k.startswith("pipeline.")]
    # one specialisation per kernel: callers pass one dtype and layout each
    assert len(ours) == len(set(ours)), sorted(ours)
    assert any(p.suffix == ".nbc" for p in cache.rglob("*"))
    compiled, err, seconds = ngmixit(tile, ROOT / "configs" / "fit-mof.yaml",
                                     tmp_path / "mof.fits", cache,
                                     "--fof-file", tile["fofs"], "--nbrs-file", tile["nbrs"])
    assert compiled == [] and COLD_LINE not in err
    # a cold compile of these kernels takes 15-45 s; loading them well under that
    assert seconds < report.seconds, (seconds, report.seconds)
    assert warm_cache(cache, conf).compiled == 0


def test_warm_cache_reports_a_bad_config_in_one_line(tmp_path):
    from pipeline.errors import PipelineError

    conf = yaml.safe_load((ROOT / "configs" / "fit-max.yaml").read_text())
    conf["modles"] = conf.pop("models")
    with pytest.raises(PipelineError) as err:
        warm_cache(tmp_path / "cache", conf)
    msg = str(err.value)
    assert "\n" not in msg and "modles" in msg and str(tmp_path / "cache") in msg
