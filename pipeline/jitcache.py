"""Warm a numba cache folder for a fit config, so that jobs pointed at it
(NUMBA_CACHE_DIR) load machine code instead of compiling it.

The honest way to hit every kernel specialisation a chunk needs is to fit one:
a tiny simulated tile (8 objects, 2 bands, 3 epochs, blends and stars) goes
through ngmixit's real driver with the given config, in a child process whose
NUMBA_CACHE_DIR is the folder to fill. numba keys its cache by source file and
CPU: the folder serves every job that runs this installation on the same kind
of CPU (see docs/numba-cache.rst).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml

from .errors import PipelineError

_NOBJ = 8
_BANDS = ("g", "r")
_NEPOCH = 3   # >= 3: outlier rejection runs


@dataclass(frozen=True)
class WarmReport:
    """What warming a cache folder did."""

    cache_dir: Path
    seconds: float        # wall time of the child process
    compiled: int         # specialisations compiled (0: the folder was already warm)
    kernels: tuple        # their names, module.function


def warm_cache(cache_dir: Path, fit_config: Mapping[str, Any],
               env: Mapping[str, str] | None = None) -> WarmReport:
    """Fill ``cache_dir`` with every numba specialisation a chunk of ``fit_config``
    (a fit config mapping, as in ``configs/fit-*.yaml``) needs; returns what was compiled.

    Raises PipelineError (one line) when the config is invalid or the fit fails."""
    cache_dir = Path(cache_dir).resolve()
    cache_dir.mkdir(parents=True, exist_ok=True)
    root = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, **(env or {}), NUMBA_CACHE_DIR=str(cache_dir))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    with tempfile.TemporaryDirectory(prefix="warm-") as work:
        conf = os.path.join(work, "fit.yaml")
        with open(conf, "w") as fobj:
            yaml.safe_dump(dict(fit_config), fobj)
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "pipeline.jitcache", conf, work],
                              env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        why = lines[-1] if lines else f"exit status {proc.returncode}"
        raise PipelineError(f"warming the numba cache {cache_dir} failed: {why}")
    names = tuple(json.loads(proc.stdout.strip().splitlines()[-1]))
    return WarmReport(cache_dir, seconds, len(names), names)


def _fit_tiny_tile(conf_path: str, work: str) -> list:
    """Simulate a tiny tile in ``work`` and fit it with ngmixit's driver; return
    the names of the kernel specialisations compiled meanwhile."""
    from . import nbrs as nb
    from .jitlog import CompileRecorder
    from .resources import shipped_dir
    from .runner import Run, RunOptions
    from .sims import sim_config, simulate_tile

    cfg = sim_config(None, {"blend_frac": 0.5, "star_frac": 0.2, "shear": None})
    summary = simulate_tile(work, "W", _NOBJ, list(_BANDS), _NEPOCH, 1, cfg, nproc=1)
    meds = [str(p) for p in summary.meds_paths]
    nconf = nb.load_nbrs_config(shipped_dir("configs") / "nbrs.yaml")
    numbers, _, _, pi, pj = nb.pairs_from_meds(meds, nconf)
    nbrs_file = os.path.join(work, "W-nbrs.fits")
    fof_file = os.path.join(work, "W-fofs.fits")
    nb.write_nbrs(nbrs_file, nb.make_nbrs_table(numbers, pi, pj))
    nb.write_fofs(fof_file, nb.make_fofs_table(numbers, pi, pj))
    opts = RunOptions(fof_file=fof_file, nbrs_file=nbrs_file, seed=1, progress=False)
    with CompileRecorder() as rec:
        Run(conf_path, os.path.join(work, "W-fit.fits"), meds, opts).execute()
    return [c.name for c in rec.compiled]


if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.WARNING)
    print(json.dumps(_fit_tiny_tile(sys.argv[1], sys.argv[2])))
