"""A whole DES-like tile through the pipeline on the SLURM test cluster; prints figures.

    python bench/tile.py [--nobj 4000] [--density 30] [--bands g,r,i,z] [--nepoch 4]
                         [--config configs/fit-mof.yaml] [--chunksize 150]
                         [--outdir DIR] [--keep] [--sim-dir DIR]

Stages, each timed: simulate (ngmixer-sim, random placement at DES density) ->
``megamixit setup`` (neighbours, FoF groups, chunks, numba cache warmed in the run
tree) -> ``run --system slurm --wait`` on the project's single-node cluster
(tests/slurm/cluster.sh, started here if needed) -> ``collate`` -> ``verify``.

Figures:

- fitter rate: objects per second per core inside the fitters (the catalogue's
  ``time_last_fit`` summed: fitting only);
- end-to-end rate: objects per second per core from setup to a verified catalogue
  (wall time x the node's cores), and its ratio to the fitter rate (goal >= 90%):
  for this tile alone, and per tile of a survey run, where the numba cache is
  warmed once for all tiles (the same figure without the warming);
- per job: wall time, time outside the fitter (python start, reading, writing),
  peak memory (ngmixit's own log line);
- cold start: the warming of the numba cache at setup, and its share of the run;
- projection: core-hours for a 10,000-tile survey of DES tiles (0.7305 deg^2 each:
  10000 x 10000 pixels of 0.263") at the same density, from the measured
  end-to-end core-seconds per object of a tile in a run, plus one cold start.

The simulation is not part of the end-to-end rate (a survey gets its MEDS files
from its MEDS maker).
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.fitsfile import read_table  # noqa: E402

CLUSTER = REPO / "tests" / "slurm" / "cluster.sh"
DES_TILE_ARCMIN2 = (10000 * 0.263 / 60.0) ** 2
_PEAK = re.compile(r"peak memory (\d+) MB")


def run(cmd: list, env: dict | None = None, cwd: Path | None = None) -> float:
    """Run a command; returns its wall seconds (raises on failure)."""
    t0 = time.perf_counter()
    proc = subprocess.run([str(c) for c in cmd], env=env, cwd=cwd, capture_output=True,
                          text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, cmd[:4]))} failed ({proc.returncode}):\n"
                         f"{proc.stderr[-3000:]}{proc.stdout[-2000:]}")
    return time.perf_counter() - t0


def ensure_cluster() -> tuple[dict, bool]:
    """SLURM_CONF of the test cluster (started if not up) and whether we started it."""
    was_up = subprocess.run(["bash", str(CLUSTER), "status"], capture_output=True).returncode == 0
    out = subprocess.run(["bash", str(CLUSTER), "start"], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"cannot start the SLURM test cluster: {out.stderr.strip()}")
    conf = next(ln.split("=", 1)[1] for ln in out.stdout.splitlines()
                if ln.startswith("SLURM_CONF="))
    return dict(os.environ, SLURM_CONF=conf), not was_up


def node_cpus(env: dict) -> int:
    out = subprocess.run(["sinfo", "-h", "-o", "%c"], capture_output=True, text=True,
                         env=env, check=True).stdout
    return int(out.split()[0])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nobj", type=int, default=4000)
    p.add_argument("--density", type=float, default=30.0, help="objects per arcmin^2")
    p.add_argument("--bands", default="g,r,i,z")
    p.add_argument("--nepoch", type=int, default=4)
    p.add_argument("--config", default=str(REPO / "configs" / "fit-mof.yaml"))
    p.add_argument("--nbrs-config", default=str(REPO / "configs" / "nbrs.yaml"))
    p.add_argument("--chunksize", type=int, default=150, help="FoF groups per chunk")
    p.add_argument("--seed", type=int, default=20261201)
    p.add_argument("--outdir", default=None)
    p.add_argument("--keep", action="store_true", help="keep the output folder")
    p.add_argument("--sim-dir", default=None,
                   help="reuse the MEDS files of an earlier run's sim/ folder (same --nobj, "
                        "--bands, --nepoch, --seed, --density) instead of simulating")
    args = p.parse_args()

    env, started = ensure_cluster()
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [v for v in [env.get("PYTHONPATH")] if v])
    cores = node_cpus(env)
    root = Path(args.outdir or tempfile.mkdtemp(prefix="mmx-tile-"))
    root.mkdir(parents=True, exist_ok=True)
    py = [sys.executable, "-m"]
    try:
        bands = args.bands.split(",")
        sim_dir = root / "sim"
        if args.sim_dir:
            sim_dir = Path(args.sim_dir).resolve()
            missing = [b for b in bands if not (sim_dir / f"DES0001-{b}-meds.fits").is_file()]
            if missing:
                sys.exit(f"--sim-dir {sim_dir}: no DES0001 MEDS file for band(s) {missing}")
            t_sim = float("nan")
        else:
            t_sim = run(py + ["pipeline.cli.sim", sim_dir, "--tile", "DES0001", "--nobj",
                              args.nobj, "--bands", args.bands, "--nepoch", args.nepoch,
                              "--seed", args.seed, "--placement", "random", "--density",
                              args.density, "--log-level", "WARNING"], env=env)
        (root / "run.yaml").write_text(yaml.safe_dump({
            "run": "bench", "fit_config": args.config, "nbrs_config": args.nbrs_config,
            "bands": bands, "input_dir": str(sim_dir), "output_dir": str(root / "out"),
            "chunksize": args.chunksize, "seed": args.seed, "system": "slurm",
            "queue": "debug", "walltime": "02:00:00", "mem": "2G"}))
        (root / "tiles.txt").write_text("DES0001\n")
        mmx = py + ["pipeline.cli.megamixit"]
        cfg = [root / "run.yaml", root / "tiles.txt", "--log-level", "WARNING"]
        t_setup = run(mmx + ["setup"] + cfg, env=env)
        t_run = run(mmx + ["run"] + cfg + ["--wait"], env=env)
        t_collate = run(mmx + ["collate"] + cfg, env=env)
        t_verify = run(mmx + ["verify"] + cfg, env=env)
        report(root, args, cores, t_sim, t_setup, t_run, t_collate, t_verify)
    finally:
        if started:
            subprocess.run(["bash", str(CLUSTER), "stop"], capture_output=True, env=env)
        if not args.keep and args.outdir is None:
            shutil.rmtree(root, ignore_errors=True)


def report(root: Path, args, cores: int, t_sim: float, t_setup: float, t_run: float,
           t_collate: float, t_verify: float) -> None:
    run_dir = root / "out" / "bench"
    cat_path = run_dir / "DES0001" / "DES0001-bench.fits"
    cat = read_table(cat_path, ext="model_fits")
    chunks = read_table(cat_path, ext="chunks")
    nobj = len(cat)
    fit_s = float(np.sum(cat["time_last_fit"]))
    peaks = []
    for log in run_dir.glob("DES0001/chunks/*/job.log"):
        peaks += [int(m.group(1)) for m in _PEAK.finditer(log.read_text(errors="replace"))]
    warm = _warm_seconds(run_dir)
    e2e_wall = t_setup + t_run + t_collate + t_verify
    fitter_rate = nobj / fit_s
    e2e_rate = nobj / (e2e_wall * cores)
    # a survey run warms the cache once for all of its tiles: per tile, the rest
    tile_wall = e2e_wall - warm
    tile_rate = nobj / (tile_wall * cores)
    wall = chunks["wall_seconds"][chunks["wall_seconds"] >= 0]
    fitting = chunks["fit_seconds"][chunks["wall_seconds"] >= 0]
    per_tile = args.density * DES_TILE_ARCMIN2
    core_h = (per_tile * (tile_wall * cores / nobj) * 10_000 + warm) / 3600.0
    ok = float(np.mean(cat["flags"] == 0))
    print(f"tile: {nobj} objects at {args.density:g}/arcmin^2 (random placement), "
          f"{len(args.bands.split(','))} bands x {args.nepoch} epochs, "
          f"{Path(args.config).name}, {len(chunks)} chunks of {args.chunksize} groups, "
          f"{cores} cores; {100 * ok:.1f}% flags 0")
    rows = [
        ("simulate (not in the rate)", "reused" if math.isnan(t_sim) else f"{t_sim:.1f} s"),
        ("setup: nbrs, FoF, chunks, scripts", f"{t_setup - warm:.1f} s"),
        ("setup: warm numba cache (cold start)", f"{warm:.1f} s"),
        ("run --wait on SLURM", f"{t_run:.1f} s"),
        ("collate + verify", f"{t_collate + t_verify:.1f} s"),
        ("fitter rate", f"{fitter_rate:.2f} objects/s/core ({1e3 / fitter_rate:.0f} ms/object)"),
        ("end-to-end rate, this tile alone", f"{e2e_rate:.2f} objects/s/core "
                                             f"({100 * e2e_rate / fitter_rate:.1f}% of the "
                                             f"fitter rate)"),
        ("end-to-end rate, per tile of a run", f"{tile_rate:.2f} objects/s/core "
                                               f"({100 * tile_rate / fitter_rate:.1f}% of the "
                                               f"fitter rate; cold start paid once per run)"),
        ("job wall time, median", f"{np.median(wall):.1f} s, of which "
                                  f"{100 * (1 - np.sum(fitting) / np.sum(wall)):.1f}% outside "
                                  f"the fitter"),
        ("peak memory per job", f"median {np.median(peaks):.0f} MB, max {max(peaks)} MB"
                                if peaks else "n/a"),
        ("cold-start share of the run", f"{100 * warm / e2e_wall:.1f}%"),
        ("10,000 DES tiles at this density", f"{per_tile:,.0f} objects/tile, "
                                             f"{core_h:,.0f} core-hours"),
    ]
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")


def _warm_seconds(run_dir: Path) -> float:
    """Seconds setup spent warming the numba cache (its log line), else 0."""
    import json
    from pipeline.megamixer.software import NUMBA_CACHE, WARM_REPORT
    try:
        return float(json.loads((run_dir / NUMBA_CACHE / WARM_REPORT).read_text())["seconds"])
    except (OSError, ValueError, KeyError):
        return 0.0


if __name__ == "__main__":
    main()
