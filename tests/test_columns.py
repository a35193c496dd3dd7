"""Catalogue columns ngmixer users can read unchanged, and honest per-model flags.

Real ngmixit runs on a simulated blended tile (max: exp, dev, cm; metacal; MOF
with cm) and a collated catalogue of a real megamixit run are checked against
ngmixer's columns, written out by hand in tests/ngmixer_reference.py, and the
values of the columns against what they meant in ngmixer (recomputed from the
other tables). The flags: every row with ``flags == 0`` and ``{m}_flags == 0``
is a usable fit (finite positive errors, chi2per measured, MOF converged), and
constructed failures (a MOF group stopped before converging, a fit with fewer
weighted pixels than parameters, a singular covariance) carry their bit.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import fitsio
import numpy as np
import pytest
import yaml

from pipeline.columns import dtype_of, undocumented
from pipeline.gmix import flags as F
from tests import ngmixer_reference as ref
from tests.ngmixit_runs import kill_after_checkpoint

REPO = Path(__file__).resolve().parents[1]
NOBJ = 50
BANDS = ("g", "r")
SEED = 8080
MCAL_TYPES = ["noshear", "1p", "1m", "2p", "2m"]
MODELS = ["exp", "dev", "cm"]
USABLE_MOF = F.MOF_NOT_CONVERGED | F.MOF_SKIPPED_IN_CONV_CHECK


def run(module: str, *args, cwd=REPO) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", module, *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=900)
    if proc.returncode != 0:
        raise AssertionError(f"{module} failed ({proc.returncode}): {proc.stderr[-3000:]}")
    return proc


def config(name: str, **changes) -> dict:
    conf = yaml.safe_load((REPO / "configs" / name).read_text())
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(conf.get(key), dict):
            conf[key].update(value)
        else:
            conf[key] = value
    return conf


def mof_cm_config(**mof) -> dict:
    conf = config("fit-mof.yaml", models=MODELS, psf_pars={"model": "coellip2"})
    conf["model_pars"]["dev"] = conf["model_pars"]["cm"] = conf["model_pars"]["exp"]
    conf["mof"].update(mof)
    return conf


CONFIGS = {
    "max": config("fit-max.yaml", psf_pars={"model": "coellip2"}),
    "metacal": config("fit-metacal.yaml"),
    "mof": mof_cm_config(),
    # stopped after one sweep with tolerances nothing meets: nothing converges
    "unconverged": config("fit-mof.yaml", psf_pars={"model": "coellip2"},
                          mof={"method": "iterate", "max_itr": 1, "min_itr": 1,
                               "maxabs_conv": [0.0], "maxfrac_conv": [0.0],
                               "maxerr_conv": 1.0e-12}),
}


@pytest.fixture(scope="module")
def tile(tmp_path_factory):
    d = tmp_path_factory.mktemp("columns")
    run("pipeline.cli.sim", d, "--tile", "C", "--nobj", NOBJ, "--bands", ",".join(BANDS),
        "--nepoch", 2, "--seed", 17, "--blend-frac", 0.5, "--log-level", "WARNING")
    meds = [d / f"C-{b}-meds.fits" for b in BANDS]
    run("pipeline.cli.nbrs", "configs/nbrs.yaml", *meds, "--nbrs-file", d / "nbrs.fits",
        "--fof-file", d / "fof.fits")
    for name, conf in CONFIGS.items():
        (d / f"{name}.yaml").write_text(yaml.safe_dump(conf))
    return {"dir": d, "meds": meds}


@pytest.fixture(scope="module")
def outputs(tile):
    """name -> ngmixit output of the tile with that config (MOF ones with the FoFs)."""
    out = {}
    for name in CONFIGS:
        path = tile["dir"] / f"{name}.fits"
        fof = ["--fof-file", tile["dir"] / "fof.fits"] if "mof" in str(
            CONFIGS[name].get("fitter_type")) else []
        run("pipeline.cli.ngmixit", tile["dir"] / f"{name}.yaml", path, *tile["meds"],
            "--seed", SEED, *fof, "--log-level", "WARNING")
        out[name] = path
    return out


def read(path, ext) -> np.ndarray:
    with fitsio.FITS(str(path)) as fits:
        return fits[ext].read()


def assert_has(table: np.ndarray, expected: list, what: str) -> None:
    """Every expected (name, type code, shape) column, with that type and shape; a
    one-element vector and a scalar are the same FITS column."""
    problems = []
    for name, code, shape in expected:
        if name not in table.dtype.names:
            problems.append(f"missing {name}")
            continue
        dt = table.dtype[name]
        got_shape = () if dt.shape in ((), (1,)) else dt.shape
        want_shape = () if tuple(shape) in ((), (1,)) else tuple(shape)
        if code in ("S", "U"):
            same_type = dt.base.kind in "SU"
        else:
            want = np.dtype(code)
            same_type = dt.base.kind == want.kind and dt.base.itemsize == want.itemsize
        if not same_type or got_shape != want_shape:
            problems.append(f"{name}: {dt.base.str}{list(got_shape)}, ngmixer {code}"
                            f"{list(want_shape)}")
    assert not problems, f"{what}: {'; '.join(problems)}"


# -- columns ---------------------------------------------------------------------

def test_max_output_has_ngmixer_columns(outputs, tile):
    path = outputs["max"]
    model, epochs, meta = (read(path, e) for e in ("model_fits", "epoch_data", "meta_data"))
    assert_has(model, ref.model_fits(MODELS, len(BANDS)), "max model_fits")
    assert_has(epochs, ref.epoch_data("coellip2"), "max epoch_data")
    assert_has(meta, ref.META_DATA, "max meta_data")
    # meta_data in ngmixer's shape: one row per band, the MEDS metadata in each
    assert meta.size == len(BANDS)
    assert [str(b) for b in meta["band"]] == list(BANDS)           # from the MEDS files
    assert [str(f) for f in meta["meds_file"]] == [str(p) for p in tile["meds"]]
    assert set(str(c) for c in meta["ngmixer_config"]) == {"max.yaml"}
    assert np.all(meta["fit_seed"] == SEED)


def test_code_provenance_in_meta_data(outputs):
    import fitsio as fitsio_mod
    import numba
    import galsim
    from pipeline import __version__
    meta = read(outputs["max"], "meta_data")
    assert set(meta["megamixer_version"]) == {__version__}
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    for githash in meta["megamixer_githash"]:
        assert str(githash).split("+")[0] == head              # this checkout's commit
    for name, module in (("numpy", np), ("numba", numba), ("fitsio", fitsio_mod),
                         ("galsim", galsim)):
        assert set(meta[f"{name}_version"]) == {module.__version__}, name


def test_metacal_output_has_ngmixer_columns(outputs):
    model = read(outputs["metacal"], "model_fits")
    assert_has(model, ref.model_fits(["gauss"], len(BANDS), metacal_types=MCAL_TYPES),
               "metacal model_fits")
    assert_has(read(outputs["metacal"], "epoch_data"), ref.epoch_data("gauss"),
               "metacal epoch_data")
    ok = model["mcal_flags"] == 0
    assert ok.sum() > NOBJ / 2
    for t in MCAL_TYPES:
        s = "" if t == "noshear" else f"_{t}"
        cov = model[f"mcal_pars_cov{s}"][ok]
        # the g block of the parameter covariance is mcal_g_cov
        assert np.allclose(cov[:, 2:4, 2:4], model[f"mcal_g_cov{s}"][ok], rtol=1e-12)
        assert np.all(np.diagonal(cov, axis1=1, axis2=2) > 0)


def test_mof_output_has_ngmixer_columns_and_nbrs_data(outputs):
    path = outputs["mof"]
    model, nbrs = read(path, "model_fits"), read(path, "nbrs_data")
    assert_has(model, ref.model_fits(MODELS, len(BANDS), mof=True), "MOF model_fits")
    assert_has(nbrs, ref.nbrs_data("coellip2"), "MOF nbrs_data")
    epochs = read(path, "epoch_data")
    used = epochs[epochs["psf_fit_flags"] == 0]
    sizes = {int(f): int(n) for f, n in zip(*np.unique(model["fofid"], return_counts=True))}
    # fofind: the place of each object in its group
    for f in sizes:
        assert sorted(model["fofind"][model["fofid"] == f]) == list(range(sizes[f]))
    # one row per (object of a group of 2+, epoch used, neighbour or itself), self last
    checked = 0
    for row in model:
        n = sizes[int(row["fofid"])]
        mine = nbrs[nbrs["id"] == row["id"]]
        if n == 1:
            assert mine.size == 0                     # no neighbour: no rows (ngmixer)
            continue
        if row["flags"] & F.PSF_FIT_FAILURE or row["obj_flags"]:
            continue
        nused = int(np.sum(used["id"] == row["id"]))
        assert mine.size == nused * n
        members = set(model["id"][model["fofid"] == row["fofid"]].tolist())
        assert set(mine["nbr_id"].tolist()) == members
        last = mine[n - 1::n]
        assert np.all(last["nbr_id"] == row["id"])
        # the object itself sits at its Jacobian centre: its cutout centre
        eused = used[used["id"] == row["id"]]
        assert np.allclose(last["nbr_psf_fit_pars"], eused["psf_fit_pars"])
        checked += 1
    assert checked >= 10


def test_docs_declarations_are_what_ngmixit_writes(outputs):
    """Every table's columns as written equal the declarations (names, order, types,
    shapes), and every declared column has a meaning: the docs render these."""
    from pipeline.schema import columns_for_config
    for name, path in outputs.items():
        declared = columns_for_config(path.with_suffix(".yaml"), len(BANDS))
        with fitsio.FITS(str(path)) as fits:
            written = {fits[i].get_extname() for i in range(1, len(fits))}
            assert set(declared) <= written
            for table, cols in declared.items():
                assert not undocumented(cols), (name, table)
                if table == "meta_data":          # after the MEDS metadata columns
                    assert {c.name for c in cols} <= set(fits[table].get_colnames())
                    continue
                got = fits[table].read(rows=[0]).dtype if fits[table].get_nrows() else None
                want = dtype_of(cols)
                if got is None:
                    continue
                assert got.names == want.names, (name, table)
                for n in want.names:
                    shape = lambda s: () if s in ((), (1,)) else s    # noqa: E731
                    assert got[n].base.kind == want[n].base.kind, (name, table, n)
                    assert shape(got[n].shape) == shape(want[n].shape), (name, table, n)


# -- values mean what they meant in ngmixer ------------------------------------------------

def test_values_mean_what_ngmixer_meant(outputs):
    model, epochs = read(outputs["max"], "model_fits"), read(outputs["max"], "epoch_data")
    fitted = (model["flags"] & F.PSF_FIT_FAILURE) == 0
    fitted &= model["obj_flags"] == 0
    assert fitted.sum() > NOBJ * 0.8
    for m in MODELS:
        ok = model[f"{m}_flags"] == 0
        assert np.array_equal(model[f"{m}_max_pars"][ok], model[f"{m}_pars"][ok])
        assert np.array_equal(model[f"{m}_max_pars_cov"][ok], model[f"{m}_pars_cov"][ok])
        assert np.array_equal(model[f"{m}_max_flags"], model[f"{m}_flags"])   # no MOF bits
        g2 = np.sum(model[f"{m}_g"][ok] ** 2, axis=1)
        assert np.allclose(model[f"{m}_T_r"][ok], model[f"{m}_T"][ok] * (1 - g2) / (1 + g2))
        assert np.all(model[f"{m}_flags_r"][ok] == 0)
        # the round model's S/N is of the order of the weighted S/N
        ratio = model[f"{m}_s2n_r"][ok] / model[f"{m}_s2n_w"][ok]
        assert 0.7 < np.median(ratio) < 1.3, np.median(ratio)
    for row in model[fitted]:
        e = epochs[(epochs["id"] == row["id"]) & (epochs["psf_fit_flags"] == 0)]
        w = e["wsum"]
        # ngmixer's PSF summaries: weight-sum weighted means over the epochs used
        assert np.isclose(row["psfrec_T"], np.sum(w * e["psf_fit_T"]) / w.sum())
        assert np.allclose(row["psfrec_g"], (w[:, None] * e["psf_fit_g"]).sum(0) / w.sum())
        assert np.isclose(row["mask_frac"], 1 - np.sum(w / e["wmax"]) / np.sum(e["npix"]))
        assert list(row["nimage_use"]) == [int(np.sum(e["band_num"] == b))
                                           for b in range(len(BANDS))]
        # round PSF T from the full mixtures: each Gaussian keeps its area
        p = e["psf_fit_pars"].reshape(len(e), -1, 6)
        det = p[..., 3] * p[..., 5] - p[..., 4] ** 2
        t_round = np.sum(p[..., 0] * 2 * np.sqrt(det), axis=1) / p[..., 0].sum(axis=1)
        for m in MODELS:
            if row[f"{m}_flags"] == 0:
                assert np.isclose(row[f"{m}_psf_T_r"], np.sum(w * t_round) / w.sum())
        # psf_fit_pars is the full mixture: its T is psf_fit_T
        T = np.sum(p[..., 0] * (p[..., 3] + p[..., 5]), axis=1) / p[..., 0].sum(axis=1)
        assert np.allclose(T, e["psf_fit_T"])
        assert np.all(e["psf_counts"] > 0)
    ok = model["cm_flags"] == 0
    assert np.all((model["cm_fracdev"][ok] >= 0) & (model["cm_fracdev"][ok] <= 1))
    inside = ok & (model["cm_fracdev_noclip"] >= 0) & (model["cm_fracdev_noclip"] <= 1)
    assert np.array_equal(model["cm_fracdev"][inside], model["cm_fracdev_noclip"][inside])
    measured = ok & (model["exp_T"] > 0) & (model["dev_T"] > 0)
    assert measured.sum() > NOBJ / 2
    ratio = (model["dev_T"] / model["exp_T"]).astype("f4")
    assert np.allclose(model["cm_TdByTe"][measured], ratio[measured], rtol=1e-6)
    assert np.array_equal(model["cm_TdByTe_noclip"][measured], model["cm_TdByTe"][measured])
    # a star's negative T: no ratio measured, the cm fit uses 1
    assert np.all(model["cm_TdByTe"][ok & ~measured] == 1)
    assert np.all(model["cm_TdByTe_noclip"][ok & ~measured] == F.DEFVAL)


# -- honest flags ------------------------------------------------------------------------------

def usable_rows_are_usable(model: np.ndarray, models: list[str], mof: bool) -> int:
    """Assert the promise of flags == 0 and {m}_flags == 0; returns the rows checked."""
    n = 0
    for m in models:
        use = (model["flags"] == 0) & (model[f"{m}_flags"] == 0)
        rows = model[use]
        n += rows.size
        diag = np.diagonal(rows[f"{m}_pars_cov"], axis1=1, axis2=2)
        gdiag = np.diagonal(rows[f"{m}_g_cov"], axis1=1, axis2=2)
        for what, values in (("pars errors", diag), ("flux_err", rows[f"{m}_flux_err"]),
                             ("T_err", rows[f"{m}_T_err"]), ("g errors", gdiag)):
            v = np.asarray(values)
            assert np.all(np.isfinite(v) & (v > 0) & (v != F.BIGVAL)), (m, what)
        chi2per = rows[f"{m}_chi2per"]
        assert np.all(np.isfinite(chi2per) & (chi2per != F.DEFVAL) & (chi2per > 0)), m
        if mof:
            assert np.all(rows[f"{m}_mof_flags"] & USABLE_MOF == 0), m
        # {m}_flags is {m}_max_flags plus the MOF bit; flags follows the max flags
        extra = model[f"{m}_flags"] & ~model[f"{m}_max_flags"]
        assert np.all((extra == 0) | (extra == F.MOF_UNCONVERGED)), m
        fitted = model[f"{m}_max_flags"] != F.NO_ATTEMPT
        bad = fitted & (model[f"{m}_max_flags"] != 0)
        assert np.all(model["flags"][bad] & F.GAL_FIT_FAILURE), m
    return n


@pytest.mark.parametrize("name, models, mof", [("max", MODELS, False),
                                               ("metacal", ["gauss"], False),
                                               ("mof", MODELS, True),
                                               ("unconverged", ["exp"], True)])
def test_flags_zero_means_a_usable_fit(outputs, name, models, mof):
    model = read(outputs[name], "model_fits")
    n = usable_rows_are_usable(model, models, mof)
    if name != "unconverged":
        assert n > 0.5 * NOBJ * len(models)
    if name == "metacal":
        ok = (model["flags"] == 0) & (model["mcal_flags"] == 0)
        assert ok.sum() > NOBJ / 2
        for t in MCAL_TYPES:
            s = "" if t == "noshear" else f"_{t}"
            gd = np.diagonal(model[f"mcal_g_cov{s}"][ok], axis1=1, axis2=2)
            assert np.all(np.isfinite(gd) & (gd > 0)), t


def test_unconverged_mof_group_gets_the_bit(outputs):
    model = read(outputs["unconverged"], "model_fits")
    sizes = dict(zip(*np.unique(model["fofid"], return_counts=True)))
    grouped = np.array([sizes[f] > 1 for f in model["fofid"]])
    fitted = model["exp_max_flags"] == 0
    target = grouped & fitted & (model["exp_mof_flags"] & F.MOF_SKIPPED_IN_CONV_CHECK == 0)
    assert target.sum() >= 10
    assert np.all(model["exp_mof_flags"][target] & F.MOF_NOT_CONVERGED)
    assert np.all(model["exp_mof_flags"][target] & F.FOFMEM_NOT_CONVERGED)
    assert np.all(model["exp_flags"][target] & F.MOF_UNCONVERGED)
    assert np.all(model["exp_max_flags"][target] & F.MOF_UNCONVERGED == 0)
    assert np.all(model["exp_mof_num_itr"][target] == 1)
    # the fit itself is fine: the object is not flagged, only the model's use
    assert np.all(model["flags"][target] & F.GAL_FIT_FAILURE == 0)
    single = ~grouped & fitted
    assert single.any()
    assert np.all(model["exp_mof_flags"][single] == 0)
    assert np.all(model["exp_flags"][single] == 0)
    assert np.all(model["exp_mof_num_itr"][single] == 0)
    assert np.all(model["exp_mof_abs_diff"][single] == F.DEFVAL)
    # the last sweep's changes: above the (zero) tolerances wherever measured
    d = model["exp_mof_abs_diff"][target]
    assert np.all((d > 0) | (d == F.DEFVAL)) and np.any(d > 0)


def test_fit_with_too_few_pixels_is_flagged(tile, tmp_path):
    """An object whose stamps keep fewer weighted pixels than the model has parameters:
    the priors still give a covariance, but chi2per cannot be measured."""
    from pipeline.meds import MEDS
    meds = []
    with MEDS(tile["meds"][0]) as m:
        cat = m.get_cat()
        box = int(cat["box_size"][3])
    for path in tile["meds"]:
        copy = tmp_path / path.name
        copy.write_bytes(path.read_bytes())
        with fitsio.FITS(str(copy), "rw") as fits:
            cat = fits["object_data"].read()
            for icut in range(1, int(cat["ncutout"][3])):
                start = int(cat["start_row"][3, icut])
                weight = np.zeros(box * box, dtype="f4")
                weight[(box // 2) * box + box // 2] = 1.0e3       # one pixel left
                fits["weight_cutouts"].write(weight, start=start)
        meds.append(copy)
    conf = config("fit-max.yaml", models=["exp"], psf_pars={"model": "coellip2"},
                  max_zero_weight_frac=1.0, region="weight", reject_outliers=False)
    conf["model_pars"] = {"exp": conf["model_pars"]["exp"]}
    (tmp_path / "fit.yaml").write_text(yaml.safe_dump(conf))
    out = tmp_path / "few.fits"
    run("pipeline.cli.ngmixit", tmp_path / "fit.yaml", out, *meds, "--seed", SEED,
        "--log-level", "WARNING")
    row = read(out, "model_fits")[3]
    assert row["obj_flags"] == 0 and row["flags"] & F.PSF_FIT_FAILURE == 0   # it was fitted
    # the engine accepted the fit (4 pixels, 7 parameters, the priors close it): the
    # check catches it, as it caught the trust issue's object (flags 0, chi2per -9999)
    assert row["exp_flags"] == row["exp_max_flags"] == F.NO_CHI2PER
    assert row["exp_chi2per"] == F.DEFVAL and row["exp_dof"] < 0
    assert row["flags"] & F.GAL_FIT_FAILURE
    assert usable_rows_are_usable(read(out, "model_fits"), ["exp"], False) > NOBJ / 2


def test_singular_covariance_gets_the_bit():
    """A real fit whose covariance is made singular (as a joint MOF block or a fit
    with a degenerate parameter would be) is not passed as usable."""
    import galsim
    from pipeline.fitters.base import fit_quality_flags
    from pipeline.fitters.maxlike import MaxLikeFitter
    from pipeline.fitconfig import check_fit_config
    from pipeline.gmix.jacobian import Jacobian
    from pipeline.gmix.maxlike import fit_model
    from pipeline.gmix.observation import MultiBandObsList, Observation, ObsList
    from pipeline.output import base_columns
    from pipeline.rows import new_rows

    rng = np.random.default_rng(5)
    scale, n = 0.263, 41
    psf = galsim.Moffat(beta=2.5, fwhm=0.9)
    gal = galsim.Convolve(galsim.Exponential(half_light_radius=0.6, flux=2000.0), psf)
    image = gal.drawImage(nx=n, ny=n, scale=scale).array
    noise = 1.0
    jac = Jacobian(row=(n - 1) / 2, col=(n - 1) / 2, dudrow=0.0, dudcol=scale,
                   dvdrow=scale, dvdcol=0.0)
    psf_im = psf.drawImage(nx=25, ny=25, scale=scale).array
    psf_obs = Observation(psf_im, weight=np.full(psf_im.shape, 1e6),
                          jacobian=Jacobian(row=12, col=12, dudrow=0.0, dudcol=scale,
                                            dvdrow=scale, dvdcol=0.0))
    obs = Observation(image + rng.normal(0, noise, image.shape),
                      weight=np.full(image.shape, 1 / noise**2), jacobian=jac, psf=psf_obs)
    mbobs = MultiBandObsList([ObsList([obs])])
    conf = check_fit_config({"models": ["exp"], "psf_pars": {"model": "coellip2"}})
    fitter = MaxLikeFitter(conf, 1)
    from pipeline.gmix.psf import fit_psf
    assert fit_psf(psf_obs, model="coellip2", rng=rng)["flags"] == 0
    res = fit_model(mbobs, "exp", rng=rng)
    assert res["flags"] == 0 and fit_quality_flags(res, 6) == 0
    cols = base_columns(1) + fitter.model_columns()
    row = new_rows(dtype_of(cols), 1)[0]
    row["flags"] = 0
    assert fitter.fill_fit(row, "exp", res, mbobs) == 0 and row["exp_flags"] == 0
    # make the covariance singular: the flux is perfectly degenerate with T
    cov = np.array(res["pars_cov"])
    cov[5, :] = cov[4, :] * 0.0
    cov[:, 5] = 0.0
    bad = dict(res, pars_cov=cov, flux_err=np.array([0.0]))
    assert fit_quality_flags(bad, 6) == F.BAD_ERRORS
    row = new_rows(dtype_of(cols), 1)[0]
    row["flags"] = 0
    assert fitter.fill_fit(row, "exp", bad, mbobs) == F.BAD_ERRORS
    assert row["exp_flags"] == row["exp_max_flags"] == F.BAD_ERRORS
    assert row["flags"] & F.GAL_FIT_FAILURE
    nan = dict(res, chi2per=float("nan"))
    assert fit_quality_flags(nan, 6) == F.NO_CHI2PER


# -- the collated catalogue of a real run ----------------------------------------------

@pytest.fixture(scope="module")
def collated(tile):
    """megamixit setup (neighbours, FoFs, chunks) of the tile with MOF and cm, each
    chunk's own ngmixit command run here (a batch job would compile the numba
    kernels into the run's cache first), then megamixit collate."""
    from pipeline.megamixer.layout import RunLayout
    from pipeline.megamixer.tilerecord import TileRecord, chunk_command
    d = tile["dir"]
    (d / "run.yaml").write_text(yaml.safe_dump({
        "run": "cols", "fit_config": "mof.yaml", "nbrs_config": str(REPO / "configs/nbrs.yaml"),
        "bands": list(BANDS), "input_dir": ".", "output_dir": "runs", "chunksize": 20,
        "seed": SEED, "system": "local", "workers": 1}))
    (d / "tiles.txt").write_text("C\n")
    run("pipeline.cli.megamixit", "setup", "run.yaml", "tiles.txt", cwd=d)
    layout = RunLayout(d / "runs" / "cols", "cols")
    rec = TileRecord.load(layout.tile_record("C"))
    assert len(rec.ranges) >= 2
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(REPO)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    for first, last in rec.ranges:
        cmd = chunk_command(rec, layout, int(first), int(last))
        subprocess.run([sys.executable, *cmd[1:]], cwd=layout.chunk_dir("C", first, last),
                       check=True, capture_output=True, env=env)
    run("pipeline.cli.megamixit", "collate", "run.yaml", "tiles.txt", cwd=d)
    return layout.collated("C")


def test_collated_catalogue_has_ngmixer_and_des_columns(collated):
    model, meta = read(collated, "model_fits"), read(collated, "meta_data")
    assert_has(model, ref.model_fits(MODELS, len(BANDS), mof=True), "collated model_fits")
    assert_has(model, ref.des_collated(MODELS, len(BANDS)), "collated DES columns")
    epochs = read(collated, "epoch_data")
    assert_has(epochs, ref.epoch_data("coellip2") + ref.DES_EPOCH, "collated epochs")
    assert [str(b) for b in epochs["band"]] == [BANDS[i] for i in epochs["band_num"]]
    assert_has(meta, ref.META_DATA, "collated meta_data")
    assert meta.size == len(BANDS)
    zp = np.asarray(meta["magzp_ref"], dtype="f8")
    for m in MODELS + [f"{m}_max" for m in MODELS]:
        flags = model[f"{m}_flags"]
        ok = flags == 0
        assert ok.sum() > 12, m
        flux = model[f"{m}_flux"]
        pos = ok[:, None] & (flux > 0)
        assert np.allclose(model[f"{m}_mag"][pos],
                           (zp[None, :] - 2.5 * np.log10(np.where(pos, flux, 1)))[pos])
        assert np.all(model[f"{m}_mag"][~pos] == -9999)
        fcov = model[f"{m}_flux_cov"]
        assert np.allclose(fcov[ok], model[f"{m}_pars_cov"][ok][:, -2:, -2:])
        var = np.diagonal(fcov[ok], axis1=1, axis2=2)
        assert np.allclose(model[f"{m}_flux_s2n"][ok], flux[ok] / np.sqrt(var))
        T = model[f"{m}_T"]
        assert np.allclose(model[f"{m}_logsb"][ok], np.log10(np.abs(flux[ok] / T[ok, None])))
        assert np.allclose(model[f"{m}_T_s2n"][ok], (T / model[f"{m}_T_err"])[ok])
    usable_rows_are_usable(model, MODELS, True)


def test_resumed_mof_run_keeps_nbrs_data(tile, outputs):
    """A MOF run killed after a checkpoint and resumed writes the same nbrs_data (and
    MOF tables) as one uninterrupted run: the checkpoint holds the fitter's tables."""
    out = tile["dir"] / "killed.fits"
    ckpt = tile["dir"] / "killed-checkpoint.fits"
    args = [tile["dir"] / "mof.yaml", out, *tile["meds"], "--seed", SEED, "--fof-file",
            tile["dir"] / "fof.fits", "--checkpoint-seconds", "0"]
    kill_after_checkpoint(args, ckpt, cwd=REPO)
    rerun = run("pipeline.cli.ngmixit", *[str(a) for a in args])
    assert "resuming from checkpoint" in rerun.stderr
    for ext in ("nbrs_data", "model_fits"):
        got, want = read(out, ext), read(outputs["mof"], ext)
        assert got.dtype == want.dtype and got.size == want.size, ext
        for name in want.dtype.names:
            if name == "time_last_fit":
                continue
            if want.dtype[name].base.kind == "f":
                # fitted in other processes: equal but for the last bits (known issue)
                assert np.allclose(got[name], want[name], rtol=1e-10, atol=0), (ext, name)
            else:
                assert np.array_equal(got[name], want[name]), (ext, name)


def test_every_flag_bit_is_documented():
    """Bits are unique within their family, every named bit is described, and every
    family says which columns hold it (tests/test_docs.py checks the rendered page)."""
    families = F.FLAG_DOCS
    assert set(families) == set(F.FLAG_FAMILIES)
    for fam, rows in families.items():
        values = [v for _, v, _, _ in rows]
        assert len(set(values)) == len(values), fam
        for name, value, meaning, where in rows:
            assert getattr(F, name) == value and meaning and where, name
            assert value & (value - 1) == 0, name                 # a single bit
    assert {n for n, *_ in families["model"]} == set(F.ENGINE_FLAG_NAMES.values())
    documented = {n for rows in families.values() for n, *_ in rows}
    bits = {n for n, v in vars(F).items() if n.isupper() and isinstance(v, int)
            and n not in ("FIT_BITS",) and v > 0}
    assert bits <= documented, bits - documented
    assert F.FIT_BITS == sum(v for n, v, *_ in families["model"] if n != "MOF_UNCONVERGED")


def test_collated_catalogue_carries_the_fitters_tables(collated, tile):
    """ngmixer's collation kept MOF's nbrs_data: every chunk's rows, each object's rows
    together and in MEDS order, verified like the other HDUs."""
    from pipeline.fitsfile import verify_fits
    nbrs = read(collated, "nbrs_data")
    assert_has(nbrs, ref.nbrs_data("coellip2"), "collated nbrs_data")
    chunks = sorted(collated.parent.glob("chunks/*/C-cols-*.fits"))
    per_chunk = [read(c, "nbrs_data") for c in chunks]
    assert len(nbrs) == sum(len(t) for t in per_chunk) > 0
    ids = read(collated, "model_fits")["id"]
    pos = np.searchsorted(np.sort(ids), nbrs["id"])
    order = np.argsort(ids)[pos]
    assert np.all(np.diff(order) >= 0)                      # MEDS order, grouped by object
    assert sorted(map(tuple, np.concatenate(per_chunk)[["id", "nbr_id"]].tolist())) == \
        sorted(map(tuple, nbrs[["id", "nbr_id"]].tolist()))
    found = verify_fits(collated)
    assert list(found.nrows)[-1] == "chunks" and "nbrs_data" in found.nrows


def test_unmeasured_errors_are_9999_for_every_metacal_type():
    from pipeline.rows import default_row
    row = default_row(np.dtype([("mcal_g_cov", "f8", (2, 2)), ("mcal_g_cov_1p", "f8", (2, 2)),
                                ("mcal_T_err_2m", "f8"), ("mcal_T_2m", "f8"),
                                ("mcal_flux_err_1m", "f8", 2)]))
    assert np.all(row["mcal_g_cov"] == 9999) and np.all(row["mcal_g_cov_1p"] == 9999)
    assert row["mcal_T_err_2m"] == 9999 and row["mcal_T_2m"] == -9999
    assert np.all(row["mcal_flux_err_1m"] == 9999)
