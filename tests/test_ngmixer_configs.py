"""ngmixer's configs run unchanged: fit, neighbour and run configs written in ngmixer's
form (tests/data/ngmixer/, hand-written from the keys ngmixer's code reads) are
accepted; each translated key has the effect of the project's key it maps to;
each value asking for behaviour the project does not have is one line; a run
config naming versions finds its files in ngmixer's $DESDATA layout, fpacked MEDS
files included, end to end through megamixit."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path

import fitsio
import numpy as np
import pytest
import yaml

from pipeline.cli.common import run_cli
from pipeline.cli.megamixit import main as megamixit
from pipeline.errors import ConfigError
from pipeline.fitconfig import check_fit_config, load_fit_config
from pipeline.megamixer.runconfig import load_run_config
from pipeline.nbrs import load_nbrs_config
from pipeline.output import NONDETERMINISTIC_COLUMNS
from pipeline.sims import sim_config, simulate_tile

from .test_megamixit_support import REPO, python_path_env

DATA = REPO / "tests" / "data" / "ngmixer"
BANDS = ["g", "r"]
SEED = 20240
TILE = "20130711064512_DES0001-0001"     # a DES coadd run: coadd tile DES0001-0001
COADD = "DES0001-0001"
MEDS_VERSION = "sim-v01"
FLAGGED = (2, 5)                          # object rows with obj flags set


def project(conf: dict) -> dict:
    out = copy.deepcopy(conf)
    out.pop("_ngmixer", None)
    return out


def one_line(err) -> str:
    text = str(err.value)
    assert "\n" not in text
    return text


# ------------------------------------------------------------------ fit configs


def test_ngmixer_mof_config_is_the_project_config_and_keeps_a_record():
    ngm = load_fit_config(DATA / "ngmix-mof.yaml")
    assert project(ngm) == load_fit_config(DATA / "project-mof.yaml")
    record = ngm["_ngmixer"]
    assert record["original"] == (DATA / "ngmix-mof.yaml").read_text()
    assert "fit_models -> models" in record["notes"]
    assert record["inert"]["read_wcs"] is True
    assert record["inert"]["flag_y1_stellarhalo_masked"] is True
    assert record["inert"]["prop_sat_starpix"] is True
    assert "_ngmixer" not in load_fit_config(DATA / "project-mof.yaml")


MAX = {"fitter_type": "max-ngmix-boot"}
PRIOR = {"type": "TwoSidedErf", "pars": [-1.0, 0.1, 1.0e6, 1.0e5]}


@pytest.mark.parametrize("ngmixer, ours", [
    ({"fitter_type": "max-ngmix-boot"}, {"fitter_type": "max"}),
    ({"fitter_type": "metacal-ngmix-boot", "fit_models": ["gauss"]},
     {"fitter_type": "metacal", "models": ["gauss"], "metacal_pars": {"model": "gauss"}}),
    ({"fit_models": ["exp", "dev"]}, {"models": ["exp", "dev"]}),
    (dict(MAX, model_pars={"dev": {"T": PRIOR}, "exp": {"T": PRIOR}}),
     {"models": ["dev", "exp"], "model_pars": {"dev": {"T": PRIOR}, "exp": {"T": PRIOR}}}),
    ({"imageio": {"io_type": "meds", "psfs": {"type": "infile"}}},
     {"imageio": {"io_type": "meds", "psf_source": "meds"}}),
    ({"region": "mof", "model_nbrs": True}, {"region": "uberseg", "model_nbrs": True}),
    ({"region": "mof"}, {"region": "weight"}),
    ({"region": "seg_and_sky"}, {"region": "cweight"}),
    ({"checkpoints": [0, 10, 30]}, {"checkpoint_seconds": 600}),
    ({"extra_mask_flags": 3}, {"bmask_flags2check": 3}),
    ({"extra_mask_flags": None}, {"bmask_flags2check": 0}),
    ({"model_pars": {"exp": {"cen": {"width": 0.27}}}},
     {"model_pars": {"exp": {"cen": {"type": "normal2d", "width": 0.27}}}}),
    ({"model_pars": {"exp": {"counts": dict(PRIOR, repeat=True)}}},
     {"model_pars": {"exp": {"counts": PRIOR}}}),
    ({"model_pars": {"exp": {"counts": {"type": "flat", "repeat": False,
                                        "pars": [[0, 10], [0, 20]]}}}},
     {"model_pars": {"exp": {"counts": [{"type": "flat", "pars": [0, 10]},
                                        {"type": "flat", "pars": [0, 20]}]}}}),
    ({"model_pars": {"exp": {"counts": {"type": "lognormal", "mean": 100, "sigma": 30,
                                        "repeat": True}}}},
     {"model_pars": {"exp": {"counts": {"type": "lognormal", "mean": 100, "sigma": 30}}}}),
    ({"propagate_star_flags": {"propagate": True, "ignore_when_set": ["EDGE"]}}, {}),
    ({"use_logpars": False, "replace_cov": False, "normalize_psf": True, "do_shear": False,
      "pre_find_center": False, "min_psf_s2n": float("-inf"), "guess_from_nbrs": True,
      "model_nrbs_unmodmask": "nbrs-seg", "collate": {"blinding": None},
      "max_pars": {"use_fracdev_grid": False, "fracdev_range": [0, 1]},
      "metacal_pars": {"symmetrize_psf": False, "nband": 2}, "verbose": True,
      "read_wcs": True, "read_me_wcs": True, "prop_sat_starpix": True, "tilings": None,
      "flag_y1_stellarhalo_masked": True, "cov_pars": {"m": 5, "h": 1e-3}}, {}),
])
def test_each_ngmixer_key_means_the_project_key(ngmixer, ours):
    """Each key translates to the project's setting, or (inert) changes nothing."""
    translated = check_fit_config(ngmixer, "ngmixer.yaml")
    assert translated["_ngmixer"]["notes"]
    assert project(translated) == check_fit_config(ours, "project.yaml")


@pytest.mark.parametrize("conf, problem", [
    ({"fitter_type": "isamp-ngmix-boot"},
     "'fitter_type' is 'isamp-ngmix-boot': ngmixer's importance sampling fitter is not "
     "supported (supported: max-ngmix-boot, metacal-ngmix-boot, or max, metacal, mof)"),
    ({"imageio": {"io_type": "meds-des-y3"}},
     "'imageio.io_type' is 'meds-des-y3': survey-specific ngmixer ImageIO classes are not "
     "supported (supported: meds)"),
    ({"imageio": {"psfs": {"type": "piff"}}},
     "'imageio.psfs.type' is 'piff': only PSF images stored in the MEDS file are supported "
     "(supported: infile)"),
    ({"use_logpars": True}, "'use_logpars' is True: fits in log(T)/log(flux) are not "
                            "supported (supported: false)"),
    ({"replace_cov": True}, "'replace_cov' is True: replacing the LM covariance"),
    ({"normalize_psf": False}, "'normalize_psf' is False: PSF fluxes with an unnormalised PSF"),
    ({"min_psf_s2n": 5}, "'min_psf_s2n' is 5: a PSF-flux S/N cut before fitting is not "
                         "supported (supported: null)"),
    ({"target_noise": 0.01}, "'target_noise' is 0.01: adding noise"),
    ({"max_zero_weight_frac": "one-over-side"}, "'max_zero_weight_frac' is 'one-over-side'"),
    ({"model_pars": {"exp": {"T": {"type": "cosmos_exp"}}}},
     "'model_pars.exp.T.type' is 'cosmos_exp': ngmixer's fitted COSMOS / GMixND priors"),
    ({"fit_models": ["exp", "dev", "cm"],
      "model_pars": {"cm": {"fracdev": {"file": "~/fracdev-gmixnd.fits"}}}},
     "'model_pars.cm.fracdev': cm takes fracdev from a linear fit of the exp and dev models"),
    ({"metacal_pars": {"symmetrize_psf": True}},
     "'metacal_pars.symmetrize_psf' is True: symmetrising the PSF is not supported "
     "(supported: False)"),
    ({"metacal_pars": {"model_pars": {"gauss": {}}}}, "'metacal_pars.model_pars' is "),
    ({"max_pars": {"use_fracdev_grid": True}}, "'max_pars.use_fracdev_grid' is True"),
    ({"collate": {"blinding": {"type": "y3"}}},
     "'collate.blinding' is {'type': 'y3'}: blinding catalogues is not supported"),
    ({"fit_coadd_galaxy": True, "use_coadd_prefix": True}, "'use_coadd_prefix' is True"),
    ({"fit_models": ["exp"], "models": ["exp"]},
     "'fit_models' (ngmixer) and 'models' are the same setting: give one"),
    ({"fit_modles": ["exp"]}, "unknown key 'fit_modles' (did you mean 'fit_models'?)"),
])
def test_unsupported_ngmixer_values_are_one_line(conf, problem, tmp_path):
    path = tmp_path / "ngmix.yaml"
    path.write_text(yaml.safe_dump(conf))
    with pytest.raises(ConfigError) as err:
        load_fit_config(path)
    text = one_line(err)
    assert text.startswith(f"{path}: ") and problem in text


def test_all_unsupported_values_reported_together():
    with pytest.raises(ConfigError) as err:
        check_fit_config({"fitter_type": "max-ngmix-boot", "use_logpars": True,
                          "replace_cov": True, "psf_pars": {"model": "coelip3"}}, "f.yaml")
    assert one_line(err).startswith("f.yaml: 3 problems: ")


# ------------------------------------------------------------------ tile and ngmixit runs


def _fpack(src: Path, dest: Path) -> None:
    """A tile-compressed copy, as DES MEDS files were distributed (lossless here)."""
    if shutil.which("fpack"):
        subprocess.run(["fpack", "-g", "-q", "0", "-O", str(dest), str(src)], check=True)
        return
    with fitsio.FITS(str(src)) as fin, fitsio.FITS(str(dest), "rw", clobber=True) as out:
        for hdu in fin[1:]:
            kw = {"compress": "GZIP_2", "qlevel": None} if hdu.get_exttype() == "IMAGE_HDU" \
                else {}
            out.write(hdu.read(), extname=hdu.get_extname(), header=hdu.read_header(), **kw)


def _py(*args, cwd, env=None) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


@pytest.fixture(scope="module")
def tile(tmp_path_factory):
    """A simulated blended tile, its neighbours from ngmixer's nbrs config, and the same
    files in a $DESDATA tree (fpacked MEDS)."""
    root = tmp_path_factory.mktemp("ngmixer")
    cfg = sim_config(None, {"blend_frac": 0.4})
    summary = simulate_tile(root / "sim", COADD, 30, BANDS, 2, 5, cfg, nproc=1)
    meds = [str(p) for p in summary.meds_paths]
    _py("pipeline.cli.nbrs", DATA / "nbrs-ngmixer.yaml", *meds, "--nbrs-file",
        root / "nbrs.fits", "--fof-file", root / "fofs.fits", "--log-level", "WARNING",
        cwd=REPO)
    ids = fitsio.read(meds[0], ext="object_data", columns=["id"])["id"]
    flags = np.zeros(len(ids), dtype=[("id", "i8"), ("flags", "i4")])
    flags["id"] = ids
    flags["flags"][list(FLAGGED)] = 1
    fitsio.write(str(root / "obj-flags.fits"), flags)

    des = root / "desdata"
    mdir = des / "meds" / MEDS_VERSION / TILE
    mdir.mkdir(parents=True)
    for band, path in zip(BANDS, meds):
        _fpack(Path(path), mdir / f"{COADD}-{band}-meds-{MEDS_VERSION}.fits.fz")
    extra = des / "EXTRA" / "meds" / MEDS_VERSION
    for folder, tag, src in (("nbrs-data", "nbrslist", "nbrs.fits"),
                             ("nbrs-data", "nbrsfofs", "fofs.fits"),
                             ("obj-flags-data", "flags", "obj-flags.fits")):
        dest = extra / folder / "v001" / TILE / f"{COADD}-meds-{MEDS_VERSION}-{tag}-v001.fits"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(root / src, dest)
    return {"root": root, "meds": meds, "desdata": des, "ids": ids}


def _read(path) -> np.ndarray:
    cat = fitsio.read(str(path), ext="model_fits")
    return cat[[n for n in cat.dtype.names if n not in NONDETERMINISTIC_COLUMNS]]


@pytest.fixture(scope="module")
def reference(tile):
    """ngmixit with the project's form of the config on the plain MEDS files."""
    out = tile["root"] / "project.fits"
    _py("pipeline.cli.ngmixit", DATA / "project-mof.yaml", out, *tile["meds"],
        "--fof-file", tile["root"] / "fofs.fits", "--nbrs-file", tile["root"] / "nbrs.fits",
        "--obj-flags", tile["root"] / "obj-flags.fits", "--seed", SEED,
        "--log-level", "WARNING", cwd=REPO)
    return _read(out)


def test_nbrs_cli_reads_ngmixer_nbrs_config(tile, tmp_path):
    conf = load_nbrs_config(DATA / "nbrs-ngmixer.yaml")
    assert conf["_ngmixer"]["inert"] == {"run": "nbrs001"}
    flat = {k: v for k, v in conf.items() if k != "_ngmixer"}
    (tmp_path / "flat.yaml").write_text(yaml.safe_dump(flat))
    _py("pipeline.cli.nbrs", tmp_path / "flat.yaml", *tile["meds"], "--nbrs-file",
        tmp_path / "n.fits", "--fof-file", tmp_path / "f.fits", "--log-level", "WARNING",
        cwd=REPO)
    for name, ours in (("nbrs.fits", "n.fits"), ("fofs.fits", "f.fits")):
        assert np.array_equal(fitsio.read(str(tile["root"] / name)),
                              fitsio.read(str(tmp_path / ours)))
    assert len(fitsio.read(str(tmp_path / "n.fits"))) > 0


def test_ngmixit_with_the_ngmixer_config_fits_the_same_catalogue(tile, reference):
    out = tile["root"] / "ngmixer.fits"
    _py("pipeline.cli.ngmixit", DATA / "ngmix-mof.yaml", out, *tile["meds"],
        "--fof-file", tile["root"] / "fofs.fits", "--nbrs-file", tile["root"] / "nbrs.fits",
        "--obj-flags", tile["root"] / "obj-flags.fits", "--seed", SEED,
        "--log-level", "WARNING", cwd=REPO)
    cat = _read(out)
    assert cat.dtype == reference.dtype
    for name in reference.dtype.names:
        assert np.array_equal(cat[name], reference[name], equal_nan=True), name
    ok = cat["flags"] == 0
    assert ok.sum() == len(cat) - len(FLAGGED)            # MOF fitted every other object
    meta = yaml.safe_load(fitsio.read(str(out), ext="meta_data")["fit_config"][0])
    assert meta["_ngmixer"]["original"] == (DATA / "ngmix-mof.yaml").read_text()
    assert meta["region"] == "uberseg" and meta["models"] == ["exp"]


# ------------------------------------------------------------------ run configs


def test_ngmixer_run_config_keys(tmp_path, monkeypatch):
    monkeypatch.setenv("NGMIXER_OUTPUT_DIR", str(tmp_path / "outputs"))
    monkeypatch.setenv("MY_CONFIGS", str(tmp_path / "cfgs"))
    path = tmp_path / "run-x.yaml"
    base = {"run": "x1", "bands": ["g"], "num_fofs_per_chunk": 7}
    path.write_text(yaml.safe_dump(dict(base, ngmix_config="${MY_CONFIGS}/ngmix-x1.yaml",
                                        concat_type="concat-des")))
    conf = load_run_config(path)
    assert conf.chunksize == 7
    assert conf.fit_config == tmp_path / "cfgs" / "ngmix-x1.yaml"
    assert conf.run_dir == tmp_path / "outputs" / "x1"
    assert conf.ngmixer["inert"] == {"concat_type": "concat-des"}
    # ngmixer's default fit config names: beside the run config, or in $NGMIXER_CONFIG_DIR
    path.write_text(yaml.safe_dump(base))
    assert load_run_config(path).fit_config == tmp_path / "ngmix-x1.yaml"
    monkeypatch.setenv("NGMIXER_CONFIG_DIR", str(tmp_path / "cdir"))
    assert load_run_config(path).fit_config == tmp_path / "cdir" / "ngmix_config" / \
        "ngmix-x1.yaml"
    for extra, problem in (
            ({"concat_type": "concat-forcephot"}, "'concat_type' is 'concat-forcephot': not "
                                                  "supported (supported: concat, concat-des, "
                                                  "concat-metacal-des)"),
            ({"ngmix_config": "$NOT_SET_ANYWHERE/a.yaml"},
             "'ngmix_config' is '$NOT_SET_ANYWHERE/a.yaml': environment variable "
             "NOT_SET_ANYWHERE is not set"),
            ({"chunksize": 3}, "'num_fofs_per_chunk' (ngmixer) and 'chunksize' are the same "
                               "setting: give one"),
            ({"num_fof_per_chunk": 3}, "unknown key 'num_fof_per_chunk' (did you mean "
                                       "'num_fofs_per_chunk'?)"),
            ({"nbrs_version": "v1"}, "'nbrs_version' locates files in ngmixer's $DESDATA "
                                     "layout, which needs 'meds_version'"),
            ({"meds_version": "v1", "meds_pattern": "{tile}-{band}.fits"},
             "'meds_version' (ngmixer's $DESDATA layout) and 'meds_pattern' both")):
        path.write_text(yaml.safe_dump(dict(base, **extra)))
        with pytest.raises(ConfigError) as err:
            load_run_config(path)
        assert problem in one_line(err)


def test_desdata_files_are_required(tile, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("DESDATA", raising=False)
    monkeypatch.setenv("NGMIXER_OUTPUT_DIR", str(tmp_path))
    tiles = tmp_path / "tiles.txt"
    tiles.write_text(f"{TILE}\n")
    run = DATA / "run-mof.yaml"
    assert run_cli(megamixit, ["setup", str(run), str(tiles), "--seed", "1"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {run}: 'meds_version' locates files under $DESDATA, which is not set")
    des = tmp_path / "des"
    shutil.copytree(tile["desdata"], des)
    monkeypatch.setenv("DESDATA", str(des))
    fof = next(des.glob("EXTRA/meds/*/nbrs-data/v001/*/*nbrsfofs*"))
    fof.unlink()
    assert run_cli(megamixit, ["setup", str(run), str(tiles), "--seed", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {fof}: fof file of tile '{TILE}' not found ($DESDATA layout of "
                   f"{run})"]
    assert not (tmp_path / "sim-mof001").exists()


@pytest.mark.slow
def test_megamixit_end_to_end_with_ngmixer_run_config(tile, reference, tmp_path, monkeypatch,
                                                      capsys):
    """setup, run (local), collate, link, verify with ngmixer's run config and fit config,
    inputs found in $DESDATA (fpacked MEDS, nbrs/FoF and object-flags files); the
    catalogue equals ngmixit's on the plain files."""
    python_path_env(monkeypatch)
    monkeypatch.setenv("DESDATA", str(tile["desdata"]))
    monkeypatch.setenv("NGMIXER_OUTPUT_DIR", str(tmp_path))
    tiles = tmp_path / "tiles.txt"
    tiles.write_text(f"{TILE}\n")
    run = DATA / "run-mof.yaml"
    for command in ("setup", "run", "collate", "link", "verify"):
        extra = ["--seed", str(SEED)] if command == "setup" else []
        assert run_cli(megamixit, [command, str(run), str(tiles), "--log-level", "WARNING",
                                   *extra]) == 0, capsys.readouterr().err
    run_dir = tmp_path / "sim-mof001"
    record = yaml.safe_load((run_dir / "tiles" / f"{TILE}.json").read_text())
    assert record["meds"][0].endswith(f"meds/{MEDS_VERSION}/{TILE}/{COADD}-g-meds-"
                                      f"{MEDS_VERSION}.fits.fz")
    assert record["fof_file"].endswith(f"{COADD}-meds-{MEDS_VERSION}-nbrsfofs-v001.fits")
    assert record["nbrs_file"].endswith(f"{COADD}-meds-{MEDS_VERSION}-nbrslist-v001.fits")
    assert record["obj_flags_file"].endswith(f"{COADD}-meds-{MEDS_VERSION}-flags-v001.fits")
    assert len(record["chunks"]) > 1                          # 8 FoF groups per chunk
    job = next((run_dir / TILE / "chunks").glob("chunk*/job.sh")).read_text()
    assert "--fof-file" in job and "--nbrs-file" in job and "--obj-flags" in job
    link = run_dir / "output" / f"{TILE}-sim-mof001.fits"
    assert os.readlink(link) == f"../{TILE}/{TILE}-sim-mof001.fits"
    cat = _read(link)
    assert np.array_equal(cat["id"], tile["ids"])             # MEDS order, every object once
    ref = reference[np.argsort(reference["id"])]              # ngmixit writes FoF order
    for name in reference.dtype.names:                        # collate adds columns
        assert np.array_equal(cat[name], ref[name], equal_nan=True), name
