"""A crowded simulated tile (placement random, DES-like density): neighbours' light in
every stamp, the seg map, groups that stay small, megamixit setup's warning, and MOF
flux accuracy with the example configs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import fitsio
import galsim
import numpy as np
import pytest
import yaml

from pipeline import nbrs as nb
from pipeline.cli.common import run_cli
from pipeline.cli.megamixit import main as megamixit_main
from pipeline.meds import MEDS
from pipeline.sims import plan_tile, render_noiseless_coadd, sim_config, simulate_tile
from pipeline.sims.render import draw_objects

REPO = Path(__file__).resolve().parents[1]
BANDS = ["g", "r"]
SEED = 17


def crowded_cfg(density: float, **kw) -> dict:
    return sim_config(REPO / "configs" / "sim.yaml",
                      dict(placement="random", density=density, **kw))


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """80 objects at 40/arcmin^2, 2 bands, 1 epoch."""
    d = tmp_path_factory.mktemp("crowded")
    cfg = crowded_cfg(40.0, blend_frac=0.1)
    summary = simulate_tile(d, "CR", 80, BANDS, 1, SEED, cfg, nproc=1)
    plan = plan_tile("CR", 80, BANDS, 1, SEED, cfg)
    return {"dir": d, "summary": summary, "plan": plan, "cfg": cfg}


def neighbours_on_stamp(truth, i):
    """Objects whose rendered light (render stamp) reaches object i's coadd box."""
    half_box = truth["box_size"][i] / 2
    reach = truth["render_size"] / 2 + half_box + 1
    near = (np.abs(truth["row"] - truth["row"][i]) < reach) \
        & (np.abs(truth["col"] - truth["col"][i]) < reach)
    near[i] = False
    return np.flatnonzero(near)


def test_stamps_carry_the_neighbours_light(small):
    """Every coadd cutout is the object plus all its neighbours (drawn into the full
    image before cutting) plus noise: with the neighbours drawn alone the residual is
    pure noise; without them it is not, for the objects with bright neighbours."""
    plan, truth = small["plan"], small["plan"].truth
    cond = plan.coadd[1]
    pos = (truth["col"] + 1.0, truth["row"] + 1.0)
    chi2_with, chi2_without, npix, tested = 0.0, [], 0, 0
    with MEDS(small["summary"].meds_paths[1]) as m:
        for i in range(m.size):
            nbrs = neighbours_on_stamp(truth, i)
            if nbrs.size == 0:
                continue
            tested += 1
            box = int(m["box_size"][i])
            r0, c0 = int(m["orig_start_row"][i, 0]), int(m["orig_start_col"][i, 0])
            cutout = m.get_cutout(i, 0)
            weight = m.get_cutout(i, 0, type="weight")

            def model(members):
                image = galsim.ImageF(plan.side, plan.side, wcs=cond.wcs)
                sel = np.asarray(members)
                draw_objects([image], [cond], [(pos[0][sel], pos[1][sel])], truth[sel], 1,
                             plan.cfg)
                full = np.zeros((box, box))
                rs, cs = max(r0, 0), max(c0, 0)
                part = image.array[rs:r0 + box, cs:c0 + box]
                full[rs - r0:rs - r0 + part.shape[0], cs - c0:cs - c0 + part.shape[1]] = part
                return full

            on = weight > 0
            own = model([i])
            everyone = model([i, *nbrs])
            chi2_with += float(np.sum(((cutout - everyone) ** 2 * weight)[on]))
            npix += int(on.sum())
            chi2_without.append(float(np.sum(((cutout - own) ** 2 * weight)[on]) / on.sum()))
    assert tested > 40
    # chi^2 per pixel of pure noise: 1 within a few 1/sqrt(npix)
    assert abs(chi2_with / npix - 1) < 5 * np.sqrt(2.0 / npix)
    assert np.mean(np.array(chi2_without) > 1.5) > 0.2


def test_seg_map_in_crowded_areas(small):
    """Each seg pixel names the object whose noiseless light (sum of the bands) is the
    largest there, where the sum of all objects is above the threshold; 0 elsewhere;
    every object's centre pixels carry its number."""
    plan, truth = small["plan"], small["plan"].truth
    cfg = plan.cfg
    stamps = [render_noiseless_coadd(plan, b, keep_stamps=True)[1] for b in range(len(BANDS))]
    det = np.zeros((len(truth), plan.side, plan.side))
    for k in range(len(truth)):
        for band_stamps in stamps:
            s = band_stamps[k]
            det[k][s.slices] += s.array
    total = det.sum(axis=0)
    sigma = np.sqrt(sum(c.noise_sigma ** 2 for c in plan.coadd))
    expect = np.where(total > cfg["seg_threshold"] * sigma,
                      truth["number"][np.argmax(det, axis=0)], 0)
    nshared = 0
    with MEDS(small["summary"].meds_paths[0]) as m:
        for i in range(m.size):
            box = int(m["box_size"][i])
            r0, c0 = int(m["orig_start_row"][i, 0]), int(m["orig_start_col"][i, 0])
            seg = m.get_cutout(i, 0, type="seg")
            rs, cs = max(r0, 0), max(c0, 0)
            want = expect[rs:r0 + box, cs:c0 + box]
            got = seg[rs - r0:rs - r0 + want.shape[0], cs - c0:cs - c0 + want.shape[1]]
            # centre pixels of objects inside the stamp are forced to their number
            forced = np.zeros(want.shape, bool)
            for k in range(len(truth)):
                for off in (0.5, 0.0):
                    r = int(np.floor(truth["row"][k] + off)) - rs
                    c = int(np.floor(truth["col"][k] + off)) - cs
                    if 0 <= r < want.shape[0] and 0 <= c < want.shape[1]:
                        forced[r, c] = True
                        assert got[r, c] == truth["number"][k]
            np.testing.assert_array_equal(got[~forced], want[~forced])
            nshared += len(set(np.unique(got).tolist()) - {0, int(truth["number"][i])}) > 0
    assert nshared > 0.3 * len(truth)   # crowded: many stamps hold other objects' seg


def megamixit_inputs(root: Path, meds_dir: Path, nbrs_yaml: str, limit: int) -> Path:
    cfg = root / "cfg"
    cfg.mkdir(parents=True)
    (cfg / "fit.yaml").write_text("models: [exp]\n")
    (cfg / "nbrs.yaml").write_text(nbrs_yaml)
    (cfg / "tiles.txt").write_text("CR\n")
    (cfg / "run.yaml").write_text(yaml.safe_dump({
        "run": "r1", "fit_config": "fit.yaml", "nbrs_config": "nbrs.yaml", "bands": BANDS,
        "input_dir": str(meds_dir), "output_dir": str(root / "out"), "chunksize": 10,
        "max_group_size_per_chunk": limit, "seed": 1}))
    return cfg


def test_setup_warns_when_the_largest_group_exceeds_a_chunk(small, tmp_path, capsys):
    ngmixer = "method: box\nmaxsize_to_replace: 256\nnew_maxsize: 384\ncheck_seg: true\n"
    meds = [str(p) for p in small["summary"].meds_paths]
    largest = int(np.bincount(nb.build_groups(meds, nb.check_nbrs_config(
        yaml.safe_load(ngmixer))).fofid).max())
    assert largest > 4
    cfg = megamixit_inputs(tmp_path / "a", small["dir"], ngmixer, 4)
    code = run_cli(megamixit_main, ["setup", str(cfg / "run.yaml"), str(cfg / "tiles.txt"),
                                    "--log-level", "WARNING"])
    assert code == 0
    warnings = [ln for ln in capsys.readouterr().err.splitlines() if "WARNING" in ln]
    assert len(warnings) == 1
    assert (f"tile CR: largest FoF group has {largest} objects ({100 * largest / 80:.1f}% "
            f"of 80), more than max_group_size_per_chunk 4") in warnings[0]
    # groups split to the chunk limit: no warning
    cfg = megamixit_inputs(tmp_path / "b", small["dir"], ngmixer + "max_group_size: 4\n", 4)
    code = run_cli(megamixit_main, ["setup", str(cfg / "run.yaml"), str(cfg / "tiles.txt"),
                                    "--log-level", "WARNING"])
    assert code == 0
    assert "WARNING" not in capsys.readouterr().err
    fofs = nb.read_fofs(tmp_path / "b" / "out" / "r1" / "CR" / "CR-r1-fofs.fits")
    assert np.bincount(fofs["fofid"]).max() <= 4


# ---------------------------------------------------------------------------
# MOF accuracy on a crowded tile


def run(module, *args, cwd=REPO):
    proc = subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=cwd,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise AssertionError(f"{module} failed ({proc.returncode}): {proc.stderr[-3000:]}")
    return proc


def flux_errors(out: Path, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(flux/truth - 1 per band, flags == 0) of the S/N > 30 galaxies.

    Truth: the total flux of the galsim profile in each band (all of its light,
    PSF wings included); S/N: of the noiseless coadd stamps, summed over bands in
    quadrature."""
    cat = fitsio.read(out, ext="model_fits")
    index = {int(i): k for k, i in enumerate(truth["id"])}
    t = truth[[index[int(i)] for i in cat["id"]]]
    sel = ~t["is_star"] & (np.sqrt(np.sum(t["s2n"] ** 2, axis=1)) > 30)
    ok = (cat["flags"][sel] == 0) & (cat["exp_flags"][sel] == 0)
    return cat["exp_flux"][sel] / t["flux"][sel] - 1, ok


def test_mof_recovers_fluxes_on_a_crowded_tile(tmp_path):
    """300 exponential galaxies and stars at 30/arcmin^2 (2 bands, 3 epochs, Moffat PSF
    with wings), the example nbrs and MOF configs: median flux error within +-2% in
    each band for S/N > 30 galaxies, >= 95% of them flags 0, and few outliers, which
    fits without the neighbours modelled have three times as many of."""
    sim = tmp_path / "sim.yaml"
    sim.write_text("placement: random\ndensity: 30\ngalaxies:\n  models: {exp: 1.0}\n")
    run("pipeline.cli.sim", tmp_path, "--tile", "M", "--nobj", 300, "--bands", ",".join(BANDS),
        "--nepoch", 3, "--seed", 7, "--config", sim)
    meds = [tmp_path / f"M-{b}-meds.fits" for b in BANDS]
    run("pipeline.cli.nbrs", "configs/nbrs.yaml", *meds, "--nbrs-file", tmp_path / "nbrs.fits",
        "--fof-file", tmp_path / "fofs.fits")
    fofs = nb.read_fofs(tmp_path / "fofs.fits")
    sizes = np.bincount(fofs["fofid"])
    assert np.mean(sizes[fofs["fofid"]] >= 2) > 0.3 and sizes.max() <= 25
    truth = fitsio.read(tmp_path / "M-truth.fits")
    run("pipeline.cli.ngmixit", "configs/fit-mof.yaml", tmp_path / "mof.fits", *meds,
        "--fof-file", tmp_path / "fofs.fits", "--seed", 3)
    err, ok = flux_errors(tmp_path / "mof.fits", truth)
    assert ok.size > 100 and ok.mean() >= 0.95
    median = np.median(err[ok], axis=0)
    assert np.all(np.abs(median) < 0.02), median
    outliers = np.mean(np.abs(err[ok]) > 0.1)
    assert outliers < 0.15
    # the same fits with every object alone (no FoF file): neighbours' light unmodelled
    run("pipeline.cli.ngmixit", "configs/fit-mof.yaml", tmp_path / "alone.fits", *meds,
        "--seed", 3)
    err_alone, ok_alone = flux_errors(tmp_path / "alone.fits", truth)
    assert np.mean(np.abs(err_alone[ok_alone]) > 0.1) > 3 * outliers
