"""Benchmark: MOF on crowded simulated tiles (placement random) at DES densities.

For each density: simulate a tile (``--nobj`` objects, 2 bands, 3 epochs,
exponential galaxies and 10% stars, Moffat PSF with wings), build neighbours
and groups with the example config (``configs/nbrs.yaml``) and with ngmixer's
box rule, fit both with MOF (``configs/fit-mof.yaml``), and fit every object
alone as a reference. Prints per grouping: the largest group, the share of
objects in groups of 2+, MOF CPU time per object, and for the galaxies with
S/N > 30 the share with flags 0, the median flux error per band and the share
with |error| > 10%.

Truth conventions: the true flux is the total flux of the galsim profile in the
band (all of its light, PSF wings included); the fitted flux is ``exp_flux``, the
exp model's total flux with the PSF mixture normalised to one (light in the PSF
wings the mixture misses is missing from it). S/N is that of the noiseless
coadd stamps, summed over bands in quadrature.

    python bench/crowded.py [--nobj 1000] [--density 20,30,40] [--seed 7]
                            [--workdir DIR] [--clustered 0.3]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import fitsio
import numpy as np

REPO = Path(__file__).resolve().parents[1]
BANDS = ("g", "r")
NGMIXER_NBRS = "method: box\nmaxsize_to_replace: 256\nnew_maxsize: 384\ncheck_seg: true\n"


def run(*args) -> float:
    t0 = time.perf_counter()
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    subprocess.run([sys.executable, "-m", *map(str, args)], check=True, cwd=REPO, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def accuracy(out: Path, truth: np.ndarray) -> dict:
    cat = fitsio.read(out, ext="model_fits")
    index = {int(i): k for k, i in enumerate(truth["id"])}
    t = truth[[index[int(i)] for i in cat["id"]]]
    sel = ~t["is_star"] & (np.sqrt(np.sum(t["s2n"] ** 2, axis=1)) > 30)
    ok = (cat["flags"][sel] == 0) & (cat["exp_flags"][sel] == 0)
    err = cat["exp_flux"][sel][ok] / t["flux"][sel][ok] - 1
    return {"n": int(sel.sum()), "ok": float(ok.mean()), "median": np.median(err, axis=0),
            "outliers": float(np.mean(np.abs(err) > 0.1)),
            "ms": 1e3 * float(np.sum(cat["time_last_fit"])) / len(cat)}


def group_stats(fof_file: Path) -> str:
    fofid = fitsio.read(fof_file, ext="fofs")["fofid"]
    sizes = np.bincount(fofid)
    return f"largest {sizes.max():4d}, in 2+ {100 * np.mean(sizes[fofid] >= 2):4.1f}%"


def one_density(d: Path, density: float, args) -> None:
    d.mkdir(parents=True, exist_ok=True)
    sim = d / "sim.yaml"
    sim.write_text(f"placement: random\ndensity: {density}\ngalaxies:\n  models: {{exp: 1.0}}\n"
                   f"clustering: {{frac: {args.clustered}, members: 20, sigma: 15.0}}\n")
    meds = [d / f"C-{b}-meds.fits" for b in BANDS]
    wall = run("pipeline.cli.sim", d, "--tile", "C", "--nobj", args.nobj, "--bands",
               ",".join(BANDS), "--nepoch", 3, "--seed", args.seed, "--config", sim,
               "--nproc", 2)
    truth = fitsio.read(d / "C-truth.fits")
    print(f"\ndensity {density:g}/arcmin^2 (clustered fraction {args.clustered}): "
          f"{args.nobj} objects simulated in {wall:.1f} s")
    (d / "ngmixer-nbrs.yaml").write_text(NGMIXER_NBRS)
    cases = [("example (radius box/4, max 25)", REPO / "configs" / "nbrs.yaml"),
             ("ngmixer (box + seg)", d / "ngmixer-nbrs.yaml"),
             ("every object alone", None)]
    for label, conf in cases:
        tag = label.split()[0]
        extra = []
        stats = "largest    1, in 2+  0.0%"
        if conf is not None:
            fof = d / f"{tag}-fofs.fits"
            run("pipeline.cli.nbrs", conf, *meds, "--nbrs-file", d / f"{tag}-nbrs.fits",
                "--fof-file", fof)
            extra = ["--fof-file", fof]
            stats = group_stats(fof)
        out = d / f"{tag}-mof.fits"
        run("pipeline.cli.ngmixit", REPO / "configs" / "fit-mof.yaml", out, *meds, *extra,
            "--seed", 3)
        a = accuracy(out, truth)
        med = " ".join(f"{100 * m:+.2f}%" for m in a["median"])
        print(f"  {label:32s} {stats}, {a['ms']:5.1f} ms/object; {a['n']} galaxies S/N>30: "
              f"flags 0 {100 * a['ok']:.1f}%, median flux error (g r) {med}, "
              f"|error|>10% {100 * a['outliers']:.1f}%", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nobj", type=int, default=1000)
    parser.add_argument("--density", default="20,30,40")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--clustered", type=float, default=0.0,
                        help="clustering.frac of the simulated tiles")
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()
    root = Path(args.workdir or tempfile.mkdtemp(prefix="bench-crowded-"))
    print(__doc__.split("\n\n")[2].replace("\n", " "))
    for density in (float(x) for x in args.density.split(",")):
        one_density(root / f"d{density:g}", density, args)


if __name__ == "__main__":
    main()
