"""The main job: a simulated tile through the whole pipeline on this machine.

simulate (ngmixer-sim) -> neighbours and FoF groups (ngmixer-meds-make-nbrs-data,
run by ``megamixit setup``) -> chunks -> local run -> collate -> link, then a
summary against the simulation's truth and a PNG of the run.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import time
from typing import Sequence

import numpy as np

from .cli.common import add_log_level, run_cli, setup_logging
from .megamixer.layout import RunLayout
from .resources import shipped_dir

logger = logging.getLogger("megamixer-demo")

CONFIG_DIR = str(shipped_dir("configs"))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="megamixer-demo",
        description="Simulate a tile and run the whole pipeline on it locally.")
    p.add_argument("outdir", help="directory for the simulation and the run (created)")
    p.add_argument("--nobj", type=int, default=300)
    p.add_argument("--bands", default="g,r")
    p.add_argument("--nepoch", type=int, default=3)
    p.add_argument("--blend-frac", type=float, default=0.3)
    p.add_argument("--chunksize", type=int, default=40)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--fit-config", default=os.path.join(CONFIG_DIR, "fit-mof.yaml"),
                   help="fit config (default: configs/fit-mof.yaml)")
    p.add_argument("--seed", type=int, default=20261122)
    add_log_level(p)
    return p


def _write_run_files(args, outdir: str, tile: str) -> tuple[str, str]:
    fit_conf = os.path.join(outdir, "fit.yaml")
    shutil.copyfile(args.fit_config, fit_conf)
    shutil.copyfile(os.path.join(CONFIG_DIR, "nbrs.yaml"), os.path.join(outdir, "nbrs.yaml"))
    run_conf = os.path.join(outdir, "run.yaml")
    with open(run_conf, "w") as fobj:
        fobj.write(
            "run: demo\n"
            "fit_config: fit.yaml\n"
            "nbrs_config: nbrs.yaml\n"
            f"bands: [{args.bands}]\n"
            "input_dir: sims\n"
            "output_dir: runs\n"
            f"chunksize: {args.chunksize}\n"
            f"seed: {args.seed}\n"
            "system: local\n"
            f"workers: {args.workers}\n")
    tiles = os.path.join(outdir, "tiles.txt")
    with open(tiles, "w") as fobj:
        fobj.write(f"{tile}\n")
    return run_conf, tiles


def summarize(collated: str, truth_path: str, png: str, elapsed: float) -> dict:
    """Match the catalogue to truth, print a summary, draw flux and s2n panels."""
    from .fitsfile import read_table
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cat = read_table(collated, ext="model_fits")
    truth = read_table(truth_path)
    order = np.argsort(truth["id"])
    idx = order[np.searchsorted(truth["id"], cat["id"], sorter=order)]
    truth = truth[idx]
    model = next(m for m in ("cm", "bdf", "exp", "dev", "gauss")
                 if f"{m}_flux" in cat.dtype.names)
    ok = cat["flags"] == 0
    flux = np.atleast_2d(cat[f"{model}_flux"].T).T
    tflux = np.atleast_2d(truth["flux"].T).T
    gal = ok & (truth["is_star"] == 0) & (cat[f"{model}_flags"] == 0)
    # the profile family the model describes exactly (exp fits of dev galaxies are
    # biased by model mismatch, not by the pipeline)
    same = gal & (np.char.strip(truth["model"].astype(str)) == ("exp" if model == "cm" else model))
    frac = flux[same, 0] / tflux[same, 0] - 1
    s2n = cat[f"{model}_s2n_w"][ok]
    summary = {"objects": len(cat), "success_frac": float(ok.mean()),
               "median_flux_frac_err": float(np.median(frac)) if same.any() else np.nan,
               "nsame": int(same.sum()),
               "seconds": elapsed, "model": model}

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    ax = axes[0]
    profile = "exp" if model == "cm" else model
    other = gal & ~same
    ax.loglog(tflux[other, 0], flux[other, 0], ".", ms=3, color="0.65",
              label=f"other profiles ({other.sum()})")
    ax.loglog(tflux[same, 0], flux[same, 0], ".", ms=4, color="C0",
              label=f"{profile} profiles ({same.sum()}): median error "
                    f"{summary['median_flux_frac_err']:+.3f}")
    lim = [tflux[gal, 0].min(), tflux[gal, 0].max()]
    ax.plot(lim, lim, "k-", lw=0.8)
    ax.set_xlabel("true flux (band 0)")
    ax.set_ylabel(f"{model} flux")
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(f"{gal.sum()} galaxies with flags 0", fontsize=10)
    ax = axes[1]
    ax.hist(np.log10(np.clip(s2n, 1, None)), bins=40)
    ax.set_xlabel(f"log10 {model}_s2n_w")
    ax.set_ylabel("objects")
    ax.set_title(f"{len(cat)} objects, {100 * ok.mean():.1f}% flags 0, {elapsed:.0f} s")
    fig.tight_layout()
    fig.savefig(png, dpi=90)
    plt.close(fig)
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    from .cli import megamixit, sim

    outdir = os.path.abspath(args.outdir)
    os.makedirs(outdir, exist_ok=True)
    tile = "DEMO0001"
    t0 = time.monotonic()
    sim_args = [os.path.join(outdir, "sims"), "--tile", tile, "--nobj", str(args.nobj),
                "--bands", args.bands, "--nepoch", str(args.nepoch), "--seed", str(args.seed),
                "--blend-frac", str(args.blend_frac), "--log-level", args.log_level]
    if sim.main(sim_args):
        return 1
    run_conf, tiles = _write_run_files(args, outdir, tile)
    common = [run_conf, tiles, "--log-level", args.log_level]
    for command in (["setup", "--clobber"], ["run", "--wait"], ["status"], ["collate"],
                    ["link"], ["verify"]):
        logger.info("megamixit %s", " ".join(command))
        code = megamixit.main([command[0]] + common + command[1:])
        if code:
            return code
    elapsed = time.monotonic() - t0
    layout = RunLayout(os.path.join(outdir, "runs", "demo"), "demo")
    collated = str(layout.collated(tile))
    png = os.path.join(outdir, "demo-summary.png")
    summary = summarize(collated, os.path.join(outdir, "sims", f"{tile}-truth.fits"), png,
                        elapsed)
    print(f"megamixer demo: {summary['objects']} objects, "
          f"{100 * summary['success_frac']:.1f}% with flags 0, median {summary['model']} "
          f"flux error {summary['median_flux_frac_err']:+.4f} for the {summary['nsame']} "
          f"galaxies with that profile, {elapsed:.1f} s total")
    print(f"catalogue: {collated}")
    print(f"links:     {layout.output_dir}")
    print(f"plot:      {png}")
    print(f"QA:        {layout.qa_figure(tile)}")
    return 0


def entry() -> None:
    sys.exit(run_cli(main))


if __name__ == "__main__":
    entry()
