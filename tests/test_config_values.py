"""Config values checked at load time: enumerations and ranges from the engine's own
lists, every problem of a file in one line, hostile values (control characters,
seeds, names, duplicate keys, bad encodings) refused before any work."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import fitsio
import galsim
import numpy as np
import pytest
import yaml

from pipeline.cli.common import run_cli
from pipeline.cli.megamixit import main as megamixit
from pipeline.config import SEED_MAX, load_yaml
from pipeline.errors import ConfigError, InputFileError
from pipeline.fitconfig import GALAXY_MODELS, check_fit_config, load_fit_config
from pipeline.gmix import flags as F
from pipeline.gmix.jacobian import DiagonalJacobian
from pipeline.gmix.observation import Observation
from pipeline.gmix.psf import PSF_MODELS, fit_pars_types, fit_psf, psf_npars
from pipeline.megamixer.runconfig import load_run_config
from pipeline.megamixer.tiles import read_tiles
from pipeline.nbrs import check_nbrs_config
from pipeline.sims import sim_config, simulate_tile

from .test_megamixit_support import REPO, python_path_env


def one_line(err) -> str:
    text = str(err.value)
    assert "\n" not in text
    return text


def fit_error(conf: dict) -> str:
    with pytest.raises(ConfigError) as err:
        check_fit_config(conf, "fit.yaml")
    return one_line(err)


@pytest.fixture(scope="module")
def tile(tmp_path_factory):
    root = tmp_path_factory.mktemp("values")
    cfg = sim_config(None, {"blend_frac": 0.0})
    summary = simulate_tile(root, "T1", 6, ["g"], 2, 3, cfg, nproc=1)
    return {"dir": root, "meds": [str(p) for p in summary.meds_paths]}


# ------------------------------------------------------------------ fit configs


def test_every_problem_of_a_fit_config_in_one_line():
    text = fit_error({"reject_outlier": True, "psf_pars": {"model": "coelip3", "ntri": 3},
                      "models": ["exp", "gausss"], "max_zero_weight_frac": 1.5,
                      "mof": {"min_itr": 5, "max_itr": 2}})
    assert text.startswith("fit.yaml: 6 problems: ")
    for part in ("unknown key 'reject_outlier' (did you mean 'reject_outliers'?)",
                 "unknown key 'psf_pars.ntri' (did you mean 'psf_pars.ntry'?)",
                 "'psf_pars.model' is 'coelip3' (did you mean 'coellip3'?; allowed: admom, ",
                 "'models[1]' is 'gausss' (did you mean 'gauss'?",
                 "'max_zero_weight_frac' must be in [0, 1], got 1.5",
                 "'mof.min_itr' (5) must be <= 'mof.max_itr' (2)"):
        assert part in text


@pytest.mark.parametrize("model", ["coelip3", "gausss", "em9", "em0", "coellip0", "EM3"])
def test_misspelt_psf_models_refused(model):
    assert f"'psf_pars.model' is '{model}'" in fit_error({"psf_pars": {"model": model}})


def _moffat_psf_obs() -> Observation:
    image = galsim.Moffat(beta=2.5, fwhm=0.9).drawImage(nx=25, ny=25, scale=0.263).array
    return Observation(image, weight=np.full(image.shape, 1e6),
                       jacobian=DiagonalJacobian(row=12.0, col=12.0, scale=0.263))


def test_every_allowed_psf_model_is_fitted_by_the_engine():
    """The schema's list is the engine's: each model fits, and its parameter vector has
    the length of the psf_fit_pars column."""
    for model in PSF_MODELS:
        conf = check_fit_config({"psf_pars": {"model": model}})
        res = fit_psf(_moffat_psf_obs(), model=conf["psf_pars"]["model"], ntry=4,
                      rng=np.random.default_rng(1))
        assert res["flags"] == 0, (model, res["message"])
        assert np.asarray(res["pars"]).size == psf_npars(model), model


def test_psf_fit_pars_depend_on_the_model():
    for model in ("coellip2", "em3", "admom"):
        allowed = fit_pars_types(model)
        good = {k: (100 if t is int else 1e-4) for k, t in allowed.items()}
        check_fit_config({"psf_pars": {"model": model, "fit_pars": good}})
    text = fit_error({"psf_pars": {"model": "em3", "fit_pars": {"maxfev": 10, "tol": -1}}})
    assert "unknown key 'psf_pars.fit_pars.maxfev'" in text and "PSF model 'em3'" in text
    assert "'psf_pars.fit_pars.tol' must be > 0, got -1" in text
    text = fit_error({"max_pars": {"lm_pars": {"maxfev": 0, "xtoll": 1e-5}}})
    assert "'max_pars.lm_pars.maxfev' must be > 0, got 0" in text
    assert "unknown key 'max_pars.lm_pars.xtoll' (did you mean 'max_pars.lm_pars.xtol'?)" in text


def test_priors_types_parameter_counts_and_values():
    text = fit_error({"models": ["exp", "bdf"], "model_pars": {
        "exp": {"T": {"type": "TwoSidedErf", "pars": [1, 2, 3]},
                "g": {"type": "baa", "sigma": 0.3},
                "counts": {"type": "flat", "pars": [5, 1]}},
        "bdf": {"fracdev": {"type": "normal", "mean": 0.5}, "cen": {"widht": 0.2,
                                                                    "type": "normal2d"}},
        "expp": {}}})
    for part in ("'model_pars.exp.T.pars' must be a list of 4 numbers for a TwoSidedErf prior",
                 "'model_pars.exp.g.type': unknown prior type 'baa' (did you mean 'ba'?",
                 "'model_pars.exp.counts': flat prior needs maxval > minval",
                 "'model_pars.bdf.fracdev' (normal prior) is missing 'sigma'",
                 "unknown key 'model_pars.bdf.cen.widht' (did you mean "
                 "'model_pars.bdf.cen.width'?)",
                 "unknown key 'model_pars.expp' (did you mean 'exp'?)"):
        assert part in text
    assert "cm takes fracdev from a linear fit" in fit_error({
        "models": ["exp", "dev", "cm"],
        "model_pars": {"cm": {"fracdev": {"type": "normal", "mean": 0.5, "sigma": 0.1}}}})


def test_cross_key_rules_are_problems_of_the_same_list():
    text = fit_error({"models": ["cm", "exp"], "mof": {"convergence_model": "dev"},
                      "fit_me_galaxy": False})
    assert text.startswith("fit.yaml: 3 problems")
    assert "model 'cm' needs 'exp' and 'dev' listed before it" in text
    assert "'mof.convergence_model' is 'dev', which is not in 'models'" in text
    assert "one of 'fit_me_galaxy' and 'fit_coadd_galaxy' must be true" in text
    assert "'metacal_pars.model' is 'cm'" in fit_error(
        {"fitter_type": "metacal", "metacal_pars": {"model": "cm"}})


def test_galaxy_models_are_the_engines():
    from pipeline.gmix.models import SIMPLE_MODELS, get_model
    for model in GALAXY_MODELS:
        if model != "cm":
            assert get_model(model).name == model
    assert set(SIMPLE_MODELS) < set(GALAXY_MODELS)


def test_example_configs_load():
    for name in ("fit-max", "fit-metacal", "fit-mof"):
        load_fit_config(REPO / "configs" / f"{name}.yaml")
    load_run_config(REPO / "configs" / "run-example.yaml")
    sim_config(REPO / "configs" / "sim.yaml")


def test_ngmixit_refuses_a_misspelt_value_before_fitting(tile, tmp_path):
    conf = tmp_path / "fit.yaml"
    conf.write_text("psf_pars: {model: coelip3}\nmodels: [exp]\n")
    out = tmp_path / "out.fits"
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli.ngmixit", conf, out,
                           *tile["meds"], "--seed", "1"], capture_output=True, text=True,
                          cwd=REPO)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: {conf}: 'psf_pars.model' is 'coelip3' (did you mean 'coellip3'?; allowed: "
        f"{', '.join(PSF_MODELS)})"]
    assert list(tmp_path.iterdir()) == [conf]


# ------------------------------------------------------------------ run / nbrs / sim configs


def write_run_config(tmp_path, **keys):
    conf = {"run": "r1", "fit_config": "fit.yaml", "bands": ["g"], "output_dir": "out",
            "chunksize": 5}
    conf.update(keys)
    (tmp_path / "fit.yaml").write_text("models: [exp]\npsf_pars: {model: gauss}\n")
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(conf))
    return path


def test_run_config_values_all_reported(tmp_path):
    path = write_run_config(tmp_path, chunksize=0, bands=["g", "g"], walltime="2 hours",
                            mem="lots", system="slrum", dask_cluster="slurn",
                            max_flagged_frac=1.5, workers=0, max_group_size_per_chunk=-2)
    with pytest.raises(ConfigError) as err:
        load_run_config(path)
    text = one_line(err)
    assert text.startswith(f"{path}: 9 problems: ")
    for part in ("'chunksize' must be >= 1, got 0", "'bands' lists 'g' twice",
                 "'walltime' is invalid: walltime '2 hours'", "'mem' is invalid: mem 'lots'",
                 "'system' is 'slrum' (did you mean 'slurm'?",
                 "'dask_cluster' is 'slurn' (did you mean 'slurm'?",
                 "'max_flagged_frac' must be in [0, 1], got 1.5", "'workers' must be >= 1",
                 "'max_group_size_per_chunk' must be >= 1"):
        assert part in text


def test_max_flagged_frac_default_and_value(tmp_path):
    assert load_run_config(write_run_config(tmp_path)).max_flagged_frac == 0.1
    assert load_run_config(write_run_config(tmp_path, max_flagged_frac=0.5)).max_flagged_frac \
        == 0.5


def test_nbrs_and_sim_configs_report_all_problems(tmp_path):
    with pytest.raises(ConfigError) as err:
        check_nbrs_config({"buff_frac": -1, "buff_type": "mn", "maxsize_to_replace": 256,
                           "pixel_scale": 0}, "nbrs.yaml")
    text = one_line(err)
    assert text.startswith("nbrs.yaml: 4 problems")
    assert "'buff_type' is 'mn' (did you mean 'min'?" in text
    path = tmp_path / "sim.yaml"
    path.write_text("star_frac: 2\npsf: {stamp_size: 32, fwhm_range: [1.2, 0.8]}\n"
                    "noise_sigma: {g: -1}\nstamps: {sizes: [32, 33]}\n")
    with pytest.raises(ConfigError) as err:
        sim_config(path)
    text = one_line(err)
    for part in ("'star_frac' must be in [0, 1], got 2", "'psf.stamp_size' must be odd",
                 "'psf.fwhm_range' must be [low, high]", "'noise_sigma.g' must be > 0",
                 "'stamps.sizes' must be even"):
        assert part in text


# ------------------------------------------------------------------ hostile values


def mmx(*args) -> int:
    return run_cli(megamixit, [str(a) for a in args] + ["--log-level", "WARNING"])


def test_newline_in_queue_refused_in_file_and_on_the_command_line(tmp_path, capsys):
    tiles = tmp_path / "tiles.txt"
    tiles.write_text("T1\n")
    path = write_run_config(tmp_path, queue="debug\ntouch /tmp/pwned", seed=1)
    assert mmx("setup", path, tiles) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {path}: 'queue' holds a control character ('\\n'): "
                   f"'debug\\ntouch /tmp/pwned'"]
    path = write_run_config(tmp_path, seed=1)
    assert mmx("setup", path, tiles, "--queue", "debug\n#SBATCH -p other",
               "--walltime", "01:00:00\n", "--mem", "2G\n") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: command line: 3 problems: --queue holds")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("keys, problem", [
    ({"queue": "a b"}, "'queue' must be a queue or partition name"),
    ({"run": "r9\n"}, "'run' holds a control character"),
    ({"run": "-r"}, "'run' must be a plain name"),
    ({"bands": ["g\t"]}, "'bands[0]' holds a control character"),
    ({"output_dir": "out\r"}, "'output_dir' holds a control character"),
    ({"input_dir": "in\x00"}, "'input_dir' holds a control character"),
    ({"meds_pattern": "{input_dir}/{tile}-{bnd}.fits"}, "'meds_pattern' may use only"),
    ({"meds_pattern": "{input_dir}/{tile}\n{band}"}, "'meds_pattern' holds a control"),
    ({"seed": -1}, "'seed' must be in [0, 9223372036854775807], got -1"),
    ({"seed": 2**63}, "'seed' must be in [0, 9223372036854775807]"),
    ({"walltime": "02:00:00\n"}, "'walltime' holds a control character"),
])
def test_hostile_run_config_values(tmp_path, keys, problem):
    with pytest.raises(ConfigError) as err:
        load_run_config(write_run_config(tmp_path, **keys))
    assert problem in one_line(err)


def test_spaces_and_brackets_in_paths_are_fine(tmp_path):
    conf = load_run_config(write_run_config(tmp_path, output_dir="my out [v1](a)",
                                            input_dir="in put"))
    assert conf.output_dir.name == "my out [v1](a)"
    assert conf.meds_paths("T1")[0].parent.name == "in put"


def test_extra_cmds_stay_verbatim(tmp_path):
    lines = ["source $HOME/env/bin/activate", "export X='a\tb'"]
    conf = load_run_config(write_run_config(tmp_path, extra_cmds=lines))
    assert conf.extra_cmds == lines


@pytest.mark.parametrize("seed", [-1, 2**63])
def test_seed_range_on_every_command_line(tmp_path, tile, capsys, seed):
    tiles = tmp_path / "tiles.txt"
    tiles.write_text("T1\n")
    assert mmx("setup", write_run_config(tmp_path), tiles, "--seed", seed) == 2
    assert f"--seed must be in [0, {SEED_MAX}], got {seed}" in capsys.readouterr().err
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli.ngmixit", tmp_path / "fit.yaml",
                           tmp_path / "o.fits", *tile["meds"], "--seed", str(seed)],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: --seed must be in [0, {SEED_MAX}], got {seed}"]
    assert f"'global_seed' must be in [0, {SEED_MAX}]" in fit_error({"global_seed": seed})


def test_largest_seed_runs(tile, tmp_path):
    """The seed range is what the per-object streams and the meta_data column take."""
    out = tmp_path / "o.fits"
    (tmp_path / "fit.yaml").write_text("models: [exp]\npsf_pars: {model: gauss}\n")
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli.ngmixit", tmp_path / "fit.yaml",
                           out, *tile["meds"], "--seed", str(SEED_MAX), "--log-level",
                           "WARNING"], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert int(fitsio.read(str(out), ext="meta_data")["fit_seed"][0]) == SEED_MAX
    fits = fitsio.read(str(out), ext="model_fits")
    assert np.mean(fits["flags"] == 0) > 0.5
    assert not np.any(fits["flags"] & F.UTTER_FAILURE)


@pytest.mark.parametrize("line, problem", [
    ("-x", "line 2: bad tile name '-x'"),
    ("output", "line 2: bad tile name 'output'"),
    ("T\x07", "line 2: control character '\\x07'"),
    ("T2 a.fits\x0b", "line 2: control character '\\x0b'"),
])
def test_tile_names(tmp_path, line, problem):
    conf = load_run_config(write_run_config(tmp_path))
    tiles = tmp_path / "tiles.txt"
    tiles.write_text(f"T1\n{line}\n")
    with pytest.raises(InputFileError) as err:
        read_tiles(tiles, conf, check_files=False)
    assert problem in one_line(err)


def test_duplicate_keys_and_encodings(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("run: a\npsf_pars:\n  model: gauss\n  model: em3\n")
    with pytest.raises(InputFileError) as err:
        load_yaml(path)
    assert one_line(err) == (f"{path}: invalid YAML at line 4: duplicate key 'model' "
                             f"(first on line 3)")
    path.write_bytes(b"run: a\n# caf\xe9\n")
    with pytest.raises(InputFileError) as err:
        load_yaml(path)
    assert one_line(err) == f"{path}: config is not UTF-8 text (byte 0xe9 at offset 12)"
    conf = load_run_config(write_run_config(tmp_path))
    tiles = tmp_path / "tiles.txt"
    tiles.write_bytes(b"T1\nT\xff2\n")
    with pytest.raises(InputFileError) as err:
        read_tiles(tiles, conf, check_files=False)
    assert one_line(err) == f"{tiles}: tiles file is not UTF-8 text (offset 4)"


def test_job_scripts_get_only_checked_values(tmp_path, monkeypatch):
    """A valid queue and walltime reach the SLURM script as given; nothing else does."""
    python_path_env(monkeypatch)
    from pipeline.megamixer.jobs import chunk_jobs
    from pipeline.megamixer.layout import RunLayout
    from pipeline.megamixer.systems import get_system
    from pipeline.megamixer.tilerecord import TileRecord
    conf = load_run_config(write_run_config(tmp_path, queue="debug,long", walltime=90,
                                            system="slurm", seed=1))
    layout = RunLayout(conf.run_dir, conf.run)
    rec = TileRecord(tile="T1", run="r1", bands=["g"], meds=["/m/T1-g.fits"], seed=1,
                     nobj=3, ngroups=3, chunks=[[0, 2, 3]], setup_id="s", catalog="c",
                     config="f", inputs="i")
    job = chunk_jobs(rec, layout, conf)[0]
    (layout.run_dir / job.chunk_dir).mkdir(parents=True)
    system = get_system("slurm", **conf.system_options())
    script = Path(system.write_script(job)).read_text()
    assert "#SBATCH -p debug,long\n" in script and "#SBATCH -t 01:30:00\n" in script
