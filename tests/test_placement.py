"""Placement of simulated objects (pipeline.sims.placement): density, random and
clustered placement, separated placement and its limit, config errors."""

from __future__ import annotations

import math
from pathlib import Path

import fitsio
import numpy as np
import pytest
import yaml

from pipeline.cli.common import run_cli
from pipeline.cli.sim import main as sim_main
from pipeline.errors import ConfigError
from pipeline.sims import plan_tile, sim_config
from pipeline.sims.catalog import draw_properties, rng_for
from pipeline.sims.placement import (MIN_SEP_PIX, STREAM_PLACE, blend_units,
                                     separated_max_density)

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "sim.yaml"
SCALE = 0.263


def cfg_with(**kw):
    return sim_config(CONFIG, kw)


def stamp_overlaps(truth):
    """(n, n) bool: the integer MEDS-like coadd stamps of i and j overlap."""
    half = truth["box_size"] // 2
    r0 = np.floor(truth["row"]).astype(int) - half + 1
    c0 = np.floor(truth["col"]).astype(int) - half + 1
    r1, c1 = r0 + truth["box_size"], c0 + truth["box_size"]
    return ((r0[:, None] < r1[None, :]) & (r0[None, :] < r1[:, None])
            & (c0[:, None] < c1[None, :]) & (c0[None, :] < c1[:, None]))


def unit_of(truth):
    """Blend unit of each object (its primary's number)."""
    return np.where(truth["blend_parent"] >= 0, truth["blend_parent"], truth["number"])


@pytest.mark.parametrize("density", [20.0, 30.0, 40.0])
def test_random_placement_honours_density(density):
    nobj = 300
    plan = plan_tile("R", nobj, ["r"], 1, 4, cfg_with(placement="random", density=density,
                                                        blend_frac=0.1))
    t = plan.truth
    assert plan.side == round(math.sqrt(nobj / density) * 60 / SCALE)
    # the side is whole pixels: the density is the requested one to within 1/side
    assert abs(plan.density / density - 1) < 1.0 / plan.side
    assert abs(nobj / (plan.side * SCALE / 60) ** 2 - plan.density) < 1e-9
    for axis in ("row", "col"):
        assert np.all(t[axis] >= -0.5) and np.all(t[axis] < plan.side - 0.5)
    # no two objects of different units closer than MIN_SEP_PIX; blends kept
    d = np.hypot(t["row"][:, None] - t["row"][None, :], t["col"][:, None] - t["col"][None, :])
    units = unit_of(t)
    other = units[:, None] != units[None, :]
    assert d[other].min() >= MIN_SEP_PIX
    assert np.sum(t["blend_parent"] >= 0) == 30
    # stamps overlap as on the sky, unlike the separated placement
    assert np.mean(stamp_overlaps(t).sum(axis=1) > 1) > 0.3


def test_random_placement_is_reproducible_and_uniform():
    cfg = cfg_with(placement="random", density=30.0)
    plan = plan_tile("U", 2000, ["r"], 1, 21, cfg)
    a, side = plan.truth, plan.side
    b = plan_tile("U", 2000, ["r"], 1, 21, cfg).truth
    c = plan_tile("U", 2000, ["r"], 1, 22, cfg).truth
    np.testing.assert_array_equal(a["row"], b["row"])
    np.testing.assert_array_equal(a["col"], b["col"])
    assert not np.array_equal(a["row"], c["row"])
    # counts in 5x5 cells: Pearson chi^2 with 24 dof stays below 60 (p ~ 1e-4)
    cells = (np.floor((a["row"] + 0.5) / side * 5) * 5 + np.floor((a["col"] + 0.5) / side * 5))
    counts = np.bincount(cells.astype(int), minlength=25)
    expect = 2000 / 25
    assert np.sum((counts - expect) ** 2 / expect) < 60
    # the share of stamps holding another object's centre is the Poisson one,
    # 1 - exp(-density * stamp area), within 5 standard errors
    contains = (np.abs(a["row"][:, None] - a["row"][None, :]) < a["box_size"][:, None] / 2) \
        & (np.abs(a["col"][:, None] - a["col"][None, :]) < a["box_size"][:, None] / 2)
    got = np.mean(contains.sum(axis=1) > 1)
    area = (a["box_size"] * SCALE / 60.0) ** 2
    # objects near the edges see less of the tile: count the area on the image only
    frac_on = (np.clip(a["row"] + a["box_size"] / 2, None, side - 0.5)
               - np.clip(a["row"] - a["box_size"] / 2, -0.5, None)) \
        * (np.clip(a["col"] + a["box_size"] / 2, None, side - 0.5)
           - np.clip(a["col"] - a["box_size"] / 2, -0.5, None)) / a["box_size"] ** 2
    want = np.mean(1 - np.exp(-plan.density * area * frac_on))
    assert abs(got - want) < 5 * math.sqrt(want * (1 - want) / 2000)


def test_clustered_placement():
    """A fraction of the units sits in Gaussian clusters of the documented sigma."""
    sigma = 6.0
    cfg = cfg_with(placement="random", density=20.0, blend_frac=0.1,
                   clustering={"frac": 0.5, "members": 10, "sigma": sigma})
    plan = plan_tile("K", 1000, ["r"], 1, 8, cfg)
    t = plan.truth
    primaries = t["blend_parent"] < 0
    assert np.sum(t["cluster"][primaries] >= 0) == round(0.5 * primaries.sum())
    # secondaries share their primary's cluster
    index = {int(n): k for k, n in enumerate(t["number"])}
    for s in np.flatnonzero(~primaries):
        assert t["cluster"][s] == t["cluster"][index[int(t["blend_parent"][s])]]
    # pairwise offsets of the primaries of a cluster (wrapped): sigma * sqrt(2) per axis
    diffs = []
    for k in np.unique(t["cluster"][t["cluster"] >= 0]):
        members = np.flatnonzero((t["cluster"] == k) & primaries)
        for axis in ("row", "col"):
            d = t[axis][members][:, None] - t[axis][members][None, :]
            d = (d + plan.side / 2) % plan.side - plan.side / 2
            diffs.append(d[np.triu_indices(members.size, 1)])
    spread = np.std(np.concatenate(diffs)) * SCALE / math.sqrt(2)
    assert spread == pytest.approx(sigma, rel=0.1)
    # clustering shows in the nearest-neighbour distances of the clustered objects
    d = np.hypot(t["row"][:, None] - t["row"][None, :], t["col"][:, None] - t["col"][None, :])
    np.fill_diagonal(d, np.inf)
    nearest = d.min(axis=1)
    clustered = primaries & (t["cluster"] >= 0)
    loose = primaries & (t["cluster"] < 0)
    assert np.median(nearest[clustered]) < 0.6 * np.median(nearest[loose])


def test_separated_placement_isolates_groups_at_the_density_asked():
    """No light drawn for one group (render stamps) on another group's stamps."""
    cfg = cfg_with(placement="separated", density=8.0, blend_frac=0.3)
    plan = plan_tile("S", 300, ["r"], 1, 5, cfg)
    t = plan.truth
    assert abs(plan.density / 8.0 - 1) < 1.0 / plan.side
    units = unit_of(t)
    other = units[:, None] != units[None, :]
    assert not np.any(stamp_overlaps(t) & other)
    reach = (t["box_size"][:, None] + t["render_size"][None, :]) / 2   # i's stamp, j's light
    light = (np.abs(t["row"][:, None] - t["row"][None, :]) < reach) \
        & (np.abs(t["col"][:, None] - t["col"][None, :]) < reach)
    assert not np.any(light & other)
    half = t["box_size"] / 2
    assert np.all(t["row"] - half >= -0.5) and np.all(t["row"] + half <= plan.side - 0.5)


def test_separated_placement_refuses_what_it_cannot_meet():
    """Above the maximum: one line with the maximum; just below it: honoured."""
    nobj, seed = 200, 6
    cfg = cfg_with(placement="separated", blend_frac=0.0)
    cat = draw_properties(nobj, ["r"], seed, cfg)
    top = separated_max_density(cat, blend_units(cat, rng_for(seed, STREAM_PLACE), cfg), cfg)
    assert 5 < top < 12
    with pytest.raises(ConfigError) as err:
        plan_tile("S", nobj, ["r"], 1, seed, dict(cfg, density=1.02 * top))
    msg = str(err.value)
    assert "\n" not in msg and f"up to {top:.2f} objects/arcmin^2" in msg
    assert "placement: random" in msg
    plan = plan_tile("S", nobj, ["r"], 1, seed, dict(cfg, density=0.98 * top))
    assert abs(plan.density / (0.98 * top) - 1) < 1.0 / plan.side
    # a fixed image that is too small names the side needed, which then works
    with pytest.raises(ConfigError, match=r"needs >= (\d+) pixels") as err:
        plan_tile("S", nobj, ["r"], 1, seed, dict(cfg, image_size=400))
    need = int(str(err.value).split("needs >= ")[1].split()[0])
    assert plan_tile("S", nobj, ["r"], 1, seed, dict(cfg, image_size=need)).side == need
    # the same request is no problem for random placement
    plan = plan_tile("S", nobj, ["r"], 1, seed, dict(cfg, placement="random", density=40.0))
    assert abs(plan.density / 40.0 - 1) < 1.0 / plan.side


@pytest.mark.parametrize("values, message", [
    ({"placement": "randm"}, "'placement' is 'randm' (did you mean 'random'?"),
    ({"clustering": {"frac": 0.2}}, "'clustering.frac' needs placement: random"),
    ({"placement": "random", "clustering": {"sigma": 0}}, "'clustering.sigma' must be > 0"),
    ({"placement": "random", "clustering": {"member": 3}},
     "unknown key 'clustering.member' (did you mean 'clustering.members'?)"),
    ({"density": None}, "key 'density' must be a number"),
])
def test_placement_config_errors(tmp_path, values, message):
    path = tmp_path / "sim.yaml"
    path.write_text(yaml.safe_dump(values))
    with pytest.raises(ConfigError) as err:
        sim_config(path)
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value)
    assert "\n" not in str(err.value)


def test_cli_placement_and_density(tmp_path, capsys):
    code = run_cli(sim_main, [str(tmp_path), "--tile", "C", "--nobj", "12", "--bands", "g",
                              "--nepoch", "1", "--seed", "3", "--density", "35",
                              "--placement", "random", "--nproc", "1", "--log-level",
                              "WARNING"])
    assert code == 0
    out = capsys.readouterr().out
    header = fitsio.read_header(tmp_path / "C-truth.fits", ext="truth")
    side = header["IMSIZE"]
    assert side == round(math.sqrt(12 / 35) * 60 / SCALE)
    assert header["PLACEMNT"] == "random"
    assert header["DENSITY"] == pytest.approx(12 / (side * SCALE / 60) ** 2, rel=1e-6)
    assert f"({header['DENSITY']:.2f}/arcmin^2, placement random)" in out
    code = run_cli(sim_main, [str(tmp_path / "x"), "--tile", "C", "--nobj", "100", "--bands",
                              "g", "--nepoch", "1", "--seed", "3", "--density", "60"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: sim config: placement 'separated' cannot "
                                        "meet density 60") and "\n" not in err
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").iterdir())
