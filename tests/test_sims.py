"""Simulated tiles (pipeline.sims) and the ngmixer-sim CLI."""

from __future__ import annotations

import math
from pathlib import Path

import fitsio
import numpy as np
import pytest

from pipeline.cli.common import run_cli
from pipeline.cli.sim import main as sim_main
from pipeline.meds import MEDS
from pipeline.sims import (plan_tile, render_noiseless_coadd, render_noiseless_epoch, sim_config,
                           simulate_tile)
from pipeline.sims.defects import BMASK_BADCOL, BMASK_COSMIC, add_bad_columns, add_cosmic_rays
from pipeline.sims.profiles import object_profile, round_profile
from pipeline.sims.seg import Stamp, make_seg

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "sim.yaml"
TILE, NOBJ, BANDS, NEPOCH, SEED = "SIMT", 40, ["g", "r"], 3, 11
EDGE = 2**30


@pytest.fixture(scope="module")
def cfg():
    return sim_config(CONFIG, {"blend_frac": 0.25, "shear": [0.02, -0.01]})


@pytest.fixture(scope="module")
def run(tmp_path_factory, cfg):
    outdir = tmp_path_factory.mktemp("sim_a")
    summary = simulate_tile(outdir, TILE, NOBJ, BANDS, NEPOCH, SEED, cfg, nproc=1)
    truth = fitsio.read(summary.truth_path, ext="truth")
    return summary, truth


@pytest.fixture(scope="module")
def plan(cfg):
    return plan_tile(TILE, NOBJ, BANDS, NEPOCH, SEED, cfg)


def test_outputs_and_determinism(run, tmp_path, cfg):
    """Same seed -> byte-identical files, whatever the number of worker processes."""
    summary, _ = run
    outdir = Path(summary.truth_path).parent
    names = sorted(p.name for p in outdir.iterdir())
    assert names == sorted([f"{TILE}-g-meds.fits", f"{TILE}-r-meds.fits", f"{TILE}-truth.fits"])
    code = run_cli(sim_main, [str(tmp_path), "--tile", TILE, "--nobj", str(NOBJ), "--bands",
                              ",".join(BANDS), "--nepoch", str(NEPOCH), "--seed", str(SEED),
                              "--blend-frac", "0.25", "--shear", "0.02,-0.01",
                              "--config", str(CONFIG), "--nproc", "2",
                              "--log-level", "WARNING"])
    assert code == 0
    for name in names:
        assert (outdir / name).read_bytes() == (tmp_path / name).read_bytes(), name
    # and a different seed gives a different tile
    other = tmp_path / "other"
    simulate_tile(other, TILE, 5, ["g"], 1, SEED + 1, cfg, nproc=1)
    truth_name = f"{TILE}-truth.fits"
    assert (other / truth_name).read_bytes() != (outdir / truth_name).read_bytes()


def test_meds_match_truth(run):
    summary, truth = run
    for band, path in zip(BANDS, summary.meds_paths):
        with MEDS(path) as m:
            assert m.size == NOBJ
            np.testing.assert_array_equal(m["id"], truth["id"])
            np.testing.assert_array_equal(m["number"], truth["number"])
            np.testing.assert_array_equal(m["box_size"], truth["box_size"])
            assert np.all(m["file_id"][:, 0] == 0)          # cutout 0 is the coadd
            assert np.all(m["ncutout"] >= 1) and np.all(m["ncutout"] <= NEPOCH + 1)
            np.testing.assert_allclose(m["orig_row"][:, 0], truth["row"], atol=1e-6)
            np.testing.assert_allclose(m["orig_col"][:, 0], truth["col"], atol=1e-6)
            assert m.get_meta()["band"][0] == band
            scale = np.sqrt(np.abs(m["dudrow"] * m["dvdcol"] - m["dudcol"] * m["dvdrow"]))
            used = m["file_id"] >= 0
            np.testing.assert_allclose(scale[used], 0.263, rtol=0.01)
            psf = m.get_psf(0, 1)
            assert psf.shape == (33, 33) and abs(psf.sum() - 1) < 1e-4


def test_seg_centre_pixels(run):
    """The coadd seg gives each object's centre pixel (rounded and truncated) its number."""
    summary, truth = run
    with MEDS(summary.meds_paths[0]) as m:
        for i in range(m.size):
            seg = m.get_cutout(i, 0, type="seg")
            r, c = m["cutout_row"][i, 0], m["cutout_col"][i, 0]
            assert seg[int(r), int(c)] == truth["number"][i]
            assert seg[int(math.floor(r + 0.5)), int(math.floor(c + 0.5))] == truth["number"][i]


def test_seg_dominant_object():
    """Pixels above threshold go to the object contributing most flux there."""
    rows, cols = np.mgrid[0:40, 0:40]
    blob = lambda r0, c0, f, s: f * np.exp(-((rows - r0) ** 2 + (cols - c0) ** 2) / (2 * s * s))
    a, b = blob(20, 12, 100.0, 3.0), blob(20, 26, 30.0, 2.0)
    seg = make_seg((40, 40), [Stamp(0, 0, a), Stamp(0, 0, b)], np.array([7, 9]),
                   np.array([20.0, 20.0]), np.array([12.0, 26.0]), noise_sigma=1.0, threshold=2.0)
    above = (a + b) > 2.0
    expect = np.where(above, np.where(a >= b, 7, 9), 0)
    expect[20, 12], expect[20, 26] = 7, 9
    np.testing.assert_array_equal(seg, expect)


def test_noise_and_weight(run, plan):
    """Cutouts = noiseless image + noise whose variance is 1/weight, coadd and epochs;
    defects (bmask bits) have zero weight."""
    summary, _ = run
    iband = 1
    noiseless = [render_noiseless_coadd(plan, iband)] + [
        render_noiseless_epoch(plan, iband, e) for e in range(NEPOCH)]
    pulls = [[] for _ in noiseless]
    nflag = 0
    with MEDS(summary.meds_paths[iband]) as m:
        for i in range(m.size):
            box = int(m["box_size"][i])
            for k in range(int(m["ncutout"][i])):
                f = int(m["file_id"][i, k])
                r0, c0 = int(m["orig_start_row"][i, k]), int(m["orig_start_col"][i, k])
                bm = m.get_cutout(i, k, type="bmask")
                wt = m.get_cutout(i, k, type="weight")
                good = bm == 0  # on the image (off-image pixels carry EDGE) and no defect
                full = np.zeros((box, box), dtype="f8")
                rs, cs = max(r0, 0), max(c0, 0)
                part = noiseless[f][rs:r0 + box, cs:c0 + box]
                full[rs - r0:rs - r0 + part.shape[0], cs - c0:cs - c0 + part.shape[1]] = part
                resid = m.get_cutout(i, k) - full
                pulls[f].append((resid * np.sqrt(wt))[good])
                flagged = (bm & (BMASK_BADCOL | BMASK_COSMIC)) != 0
                nflag += int(flagged.sum())
                assert np.all(wt[flagged] == 0) and np.all(wt[(bm & EDGE) != 0] == 0)
                assert np.all(wt[good] > 0)
    for f, chunks in enumerate(pulls):
        p = np.concatenate(chunks)
        # mean and std of N unit normals have standard errors 1/sqrt(N), 1/sqrt(2N): 5 of those
        assert abs(p.mean()) < 5 / math.sqrt(p.size), f
        assert abs(p.std() - 1) < 5 / math.sqrt(2 * p.size), f
    assert nflag > 0


def test_aperture_flux_matches_truth(cfg):
    """Aperture sums of isolated objects on the noiseless coadd equal the truth flux (1%)."""
    # a sparse tile, so that many objects are isolated out to their whole drawn stamp
    plan = plan_tile("F", 30, BANDS, 1, SEED, dict(cfg, density=3.0, blend_frac=0.0))
    truth = plan.truth
    half = truth["render_size"] // 2
    r0 = np.floor(truth["row"] + 0.5).astype(int) - half + 1
    c0 = np.floor(truth["col"] + 0.5).astype(int) - half + 1
    r1, c1 = r0 + truth["render_size"], c0 + truth["render_size"]
    overlap = ((r0[:, None] < r1[None, :]) & (r0[None, :] < r1[:, None])
               & (c0[:, None] < c1[None, :]) & (c0[None, :] < c1[:, None]))
    isolated = overlap.sum(axis=1) == 1
    assert isolated.sum() >= 10
    for b in range(len(BANDS)):
        image = render_noiseless_coadd(plan, b).astype("f8")
        for i in np.flatnonzero(isolated):
            measured = image[max(r0[i], 0):r1[i], max(c0[i], 0):c1[i]].sum()
            assert abs(measured / truth["flux"][i, b] - 1) < 0.01, (i, truth["model"][i])
        assert abs(image.sum() / truth["flux"][:, b].sum() - 1) < 0.01


@pytest.mark.parametrize("model", ["exp", "dev", "bd"])
def test_T_and_g_are_moments_of_the_profile(plan, model):
    """Truth T = Irr+Icc and g of the unconvolved, sheared profile, measured on a galsim
    image: surface brightness sampled at fine pixel centres, r^2-weighted sums divided by
    the known unit flux (the sampled sum itself is biased by the de Vaucouleurs cusp,
    while r^2 I is not) about the known centre."""
    truth = plan.truth
    sel = np.flatnonzero(truth["model"] == model)
    i = int(sel[np.argmin(truth["hlr"][sel])])  # the smallest: the fastest to draw finely
    prof = object_profile(truth[i], 0, plan.cfg).withFlux(1.0)
    scale = 0.02
    half = max(12 * truth["hlr"][i], 14 * math.sqrt(truth["T"][i]))
    size = int(2 * half / scale) // 2 * 2
    im = prof.drawImage(nx=size, ny=size, scale=scale, method="no_pixel").array.astype("f8")
    y, x = (np.mgrid[0:size, 0:size] - (size - 1) / 2.0) * scale
    ixx, iyy, ixy = (im * x * x).sum(), (im * y * y).sum(), (im * x * y).sum()
    T = ixx + iyy
    e1, e2 = (ixx - iyy) / T, 2 * ixy / T
    g = 1 / (1 + math.sqrt(1 - e1 * e1 - e2 * e2))
    assert T == pytest.approx(truth["T"][i], rel=2e-3)
    assert e1 * g == pytest.approx(truth["g1"][i], abs=1e-3)
    assert e2 * g == pytest.approx(truth["g2"][i], abs=1e-3)


def test_round_exponential_T():
    hlr = 0.7
    prof, moment = round_profile("exp", hlr, 0.0, 0.5, 8.0)
    assert moment == pytest.approx(2 * (hlr / 1.6783) ** 2 * 3, rel=1e-4)
    assert prof.calculateHLR(scale=0.01, size=1024) == pytest.approx(hlr, rel=5e-3)


def test_blends_honour_blend_frac(cfg):
    nobj, frac = 60, 0.3
    cfg = dict(cfg, blend_frac=frac)
    truth = plan_tile("B", nobj, ["i"], 1, 3, cfg).truth
    secondary = truth["blend_parent"] >= 0
    assert secondary.sum() == round(frac * nobj)
    index = {int(n): k for k, n in enumerate(truth["number"])}
    psf_hlr = 0.25 * sum(cfg["psf"]["fwhm_range"])
    hlr = np.where(truth["is_star"], psf_hlr, truth["hlr"])
    for s in np.flatnonzero(secondary):
        p = index[int(truth["blend_parent"][s])]
        dist = math.hypot(truth["row"][s] - truth["row"][p], truth["col"][s] - truth["col"][p])
        reach = max(hlr[s], hlr[p]) / cfg["pixel_scale"]
        assert 1.0 - 1e-9 <= dist / reach <= 3.0 + 1e-9 and dist >= 3.0
        assert truth["blend_group"][s] == truth["blend_group"][p] >= 0
    # objects outside blend groups have stamps overlapping no other stamp
    half = truth["box_size"] / 2
    dr = np.abs(truth["row"][:, None] - truth["row"][None, :])
    dc = np.abs(truth["col"][:, None] - truth["col"][None, :])
    overlap = (dr < half[:, None] + half[None, :]) & (dc < half[:, None] + half[None, :])
    lone = truth["blend_group"] < 0
    assert np.all(overlap[lone].sum(axis=1) == 1)
    assert np.all(plan_tile("B", nobj, ["i"], 1, 3, dict(cfg, blend_frac=0.0))
                  .truth["blend_group"] == -1)


def test_object_properties(cfg):
    """Per-object streams: the first objects do not depend on nobj; bands differ in flux."""
    small = plan_tile("P", 20, ["g", "r", "i"], 2, 5, cfg).truth
    big = plan_tile("P", 50, ["g", "r", "i"], 2, 5, cfg).truth
    for col in ("model", "hlr", "flux", "g1", "g2", "T", "box_size"):
        np.testing.assert_array_equal(small[col], big[col][:20])
    assert np.all(np.unique(big["box_size"]) % 2 == 0)
    assert np.all(np.isin(big["box_size"], cfg["stamps"]["sizes"]))
    gal = ~big["is_star"]
    assert np.all(big["T"][gal] > 0) and np.all(big["T"][~gal] == 0)
    assert np.all(big["flux"] > 0)
    assert np.ptp(np.log(big["flux"][:, 1] / big["flux"][:, 0])) > 0.1  # colours vary
    assert np.median(big["flux"][:, 2] / big["flux"][:, 0]) > 1.5       # i brighter than g


def test_defects_flag_and_zero_weight():
    rng = np.random.default_rng(0)
    image = np.zeros((200, 150), dtype="f4")
    weight = np.ones_like(image)
    bmask = np.zeros(image.shape, dtype="i4")
    add_bad_columns(image, weight, bmask, rng, 3, (0.2, 1.0), sigma=1.0)
    add_cosmic_rays(image, weight, bmask, rng, 10, (2.0, 15.0), (20.0, 200.0), sigma=1.0)
    flagged = bmask != 0
    assert np.count_nonzero(bmask & BMASK_COSMIC) >= 10
    assert 3 <= np.unique(np.nonzero(bmask & BMASK_BADCOL)[1]).size <= 3
    np.testing.assert_array_equal(weight == 0, flagged)
    np.testing.assert_array_equal(image != 0, flagged)


@pytest.mark.parametrize("args, message", [
    (["--bands", "g,,r"], "--bands"),
    (["--bands", "g,g"], "repeated"),
    (["--nobj", "0"], "--nobj must be > 0"),
    (["--nepoch", "-1"], "--nepoch must be > 0"),
    (["--shear", "0.1"], "--shear"),
    (["--config", "BADCFG"], "unknown key 'galaxies.hrl' (did you mean 'galaxies.hlr'?)"),
])
def test_cli_errors_are_one_line(tmp_path, capsys, args, message):
    bad_cfg = tmp_path / "bad.yaml"
    bad_cfg.write_text("galaxies:\n  hrl: {median: 0.5}\n")
    argv = {"--tile": "X", "--nobj": "3", "--bands": "g", "--nepoch": "1", "--seed": "1"}
    for key, value in zip(args[::2], args[1::2]):
        argv[key] = str(bad_cfg) if value == "BADCFG" else value
    flat = [str(tmp_path / "out")] + [x for kv in argv.items() for x in kv]
    code = run_cli(sim_main, flat)
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and message in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
