"""Config validation: unknown keys, types, required keys, YAML errors."""

import subprocess
import sys

import pytest

from pipeline.config import REQUIRED, Key, load_config, validate
from pipeline.errors import ConfigError, InputFileError
from pipeline.fitconfig import load_fit_config

SCHEMA = {
    "run": Key(str, REQUIRED),
    "chunksize": Key(int, 10),
    "psf_pars": Key(dict, {}, schema={"model": Key(str, "gauss"), "ntry": Key(int, 4)}),
    "model_pars": Key(dict, {}, values_schema={"g": Key(dict, None)}),
    "scale": Key(float, 1.0),
}


def test_defaults_filled_and_nested():
    out = validate({"run": "r1", "psf_pars": {"ntry": 2}, "scale": 2}, SCHEMA)
    assert out == {"run": "r1", "chunksize": 10, "psf_pars": {"model": "gauss", "ntry": 2},
                   "model_pars": {}, "scale": 2}


def test_unknown_key_suggests_closest():
    with pytest.raises(ConfigError, match=r"cfg.yaml: unknown key 'chunksise' "
                                          r"\(did you mean 'chunksize'\?\)"):
        validate({"run": "r", "chunksise": 3}, SCHEMA, source="cfg.yaml")


def test_unknown_nested_key_names_full_path():
    with pytest.raises(ConfigError, match=r"unknown key 'psf_pars.ntri' .*'psf_pars.ntry'"):
        validate({"run": "r", "psf_pars": {"ntri": 3}}, SCHEMA)
    with pytest.raises(ConfigError, match=r"unknown key 'model_pars.exp.gg'"):
        validate({"run": "r", "model_pars": {"exp": {"gg": {}}}}, SCHEMA)


def test_wrong_type_and_missing_required():
    with pytest.raises(ConfigError, match=r"key 'chunksize' must be an integer, got 'ten'"):
        validate({"run": "r", "chunksize": "ten"}, SCHEMA)
    with pytest.raises(ConfigError, match=r"key 'chunksize' must be an integer, got True"):
        validate({"run": "r", "chunksize": True}, SCHEMA)
    with pytest.raises(ConfigError, match=r"missing required key 'run'"):
        validate({}, SCHEMA)


def test_invalid_yaml_is_one_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("run: [unclosed\n")
    with pytest.raises(InputFileError) as err:
        load_config(path, SCHEMA)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_example_fit_configs_validate():
    for name in ("configs/fit-max.yaml", "configs/fit-metacal.yaml"):
        conf = load_fit_config(name)
        assert conf["models"]


def test_ngmixit_misspelled_key_one_line_error(tmp_path):
    conf = tmp_path / "fit.yaml"
    conf.write_text("fitter_type: max\nmodles: [exp]\n")
    out = tmp_path / "out.fits"
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli.ngmixit", str(conf), str(out),
                           str(tmp_path / "missing.fits")], capture_output=True, text=True)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines == [f"error: {conf}: unknown key 'modles' (did you mean 'models'?)"]
    assert not out.exists()
