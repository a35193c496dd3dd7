"""Schema of the fit configuration read by ``ngmixit`` (see configs/fit-*.yaml).

Allowed values come from the code that uses them (PSF models and their options
from ``gmix.psf``, galaxy models from ``gmix.models``, prior types and their
parameters from ``gmix.priors``, LM options from ``gmix.maxlike``, metacal
types from ``gmix.metacal``, regions from the MEDS ImageIO, fitter names from
the fitter registry), so a config the schema accepts is one the engine runs.
ngmixer's fit configs are translated first (``pipeline.ngmixer_keys``).
"""

from __future__ import annotations

import os

from .config import (AT_LEAST_ONE, FRACTION, NON_NEGATIVE, POSITIVE, REQUIRED, SEED, Key,
                     Range, check_mapping, check_value, choice_problem, load_yaml_text,
                     raise_problems, unknown_key_problem)
from .fitters.base import fitter_names
from .gmix.maxlike import LM_PARS_TYPES
from .gmix.metacal import METACAL_TYPES, PSF_MODES
from .gmix.models import SIMPLE_MODELS
from .gmix.priors import prior_problems
from .gmix.psf import PSF_MODELS, fit_pars_types
from .imageio.meds_band import REGIONS
from .ngmixer_keys import FIT_KEYS, translate_fit

#: galaxy models ngmixit fits (cm is the composite of exp and dev)
GALAXY_MODELS = SIMPLE_MODELS + ("bdf", "cm")
#: models metacal fits (one LM fit per sheared image)
METACAL_MODELS = SIMPLE_MODELS + ("bdf",)


def _prior_key(doc: str) -> Key:
    return Key((dict, list), None, doc)


PRIOR_KEYS = {
    "cen": _prior_key("centre prior, e.g. {type: normal2d, width: 0.263}"),
    "g": _prior_key("shape prior, e.g. {type: ba, sigma: 0.3}"),
    "T": _prior_key("size prior, e.g. {type: TwoSidedErf, pars: [...]}"),
    "counts": _prior_key("flux prior, one for every band or a list with one per band, "
                         "e.g. {type: flat, pars: [-100, 1e9]}"),
    "fracdev": _prior_key("bdf fracdev prior, e.g. {type: normal, mean: 0.5, sigma: 0.1}"),
}

IMAGEIO_KEYS = {
    "io_type": Key(str, "meds", "input kind", choices=("meds",)),
    "psf_source": Key(str, "meds", "where PSF images come from (the MEDS psf HDU)",
                      choices=("meds",)),
}

PSF_KEYS = {
    "model": Key(str, "coellip3+wing", "PSF model: admom, gauss, turb, coellip1..5, "
                 "em1..em5, or coellipN+wing / emN+wing: the mixture plus a far Gaussian "
                 "holding the light extrapolated beyond the PSF stamp (docs/psf-models.rst)",
                 choices=PSF_MODELS, nullable=False),
    "ntry": Key(int, 4, "attempts with perturbed guesses", check=AT_LEAST_ONE),
    "fit_pars": Key(dict, {}, "extra options of the PSF fitter (e.g. maxiter, tol); which "
                              "ones depends on the model"),
}

MAX_KEYS = {
    "method": Key(str, "lm", "optimiser", choices=("lm",)),
    "ntry": Key(int, 2, "attempts with perturbed guesses", check=AT_LEAST_ONE),
    "lm_pars": Key(dict, {}, "LM options: maxfev (= maxit), ftol, xtol, lambda0",
                   schema={k: Key(t, None, check=POSITIVE, nullable=False)
                           for k, t in LM_PARS_TYPES.items()}, sparse=True),
}

METACAL_KEYS = {
    "types": Key(list, list(METACAL_TYPES), "shear types to produce",
                 items=Key(str, choices=METACAL_TYPES), unique=True, nonempty=True),
    "psf": Key(str, "fitgauss", "reconvolution PSF", choices=PSF_MODES),
    "step": Key(float, 0.01, "applied shear step, in (0, 1)",
                check=Range(0, 1, lo_open=True, hi_open=True)),
    "fixnoise": Key(bool, True, "add rotated noise to cancel correlated noise"),
    "model": Key(str, "gauss", "model fitted to each metacal image", choices=METACAL_MODELS),
}

_TOLERANCE = Key((int, float), check=NON_NEGATIVE, nullable=False)
MOF_KEYS = {
    "method": Key(str, "iterate", "'iterate' (Gauss-Seidel sweeps) or 'joint'",
                  choices=("iterate", "joint")),
    "joint_max_group": Key(int, 6, "joint mode: larger groups fall back to iterating",
                           check=AT_LEAST_ONE),
    "maxabs_conv": Key(list, None, "per-parameter absolute convergence tolerance",
                       items=_TOLERANCE, nonempty=True),
    "maxfrac_conv": Key(list, None, "per-parameter fractional convergence tolerance",
                        items=_TOLERANCE, nonempty=True),
    "maxerr_conv": Key(float, 0.5, "convergence when |change| <= this many sigma",
                       check=NON_NEGATIVE),
    "max_itr": Key(int, 15, "maximum number of sweeps", check=AT_LEAST_ONE),
    "min_itr": Key(int, 2, "minimum number of sweeps", check=NON_NEGATIVE),
    "min_useg_itr": Key(int, 1, "sweep from which raw weights replace uberseg",
                        check=NON_NEGATIVE),
    "write_convergence_data": Key(bool, False, "write per-sweep parameters"),
    "convergence_model": Key(str, None, "model whose parameters decide convergence",
                             choices=GALAXY_MODELS),
}

FIT_SCHEMA = {
    "fitter_type": Key(str, "max", "fitter registered by name", choices=fitter_names()),
    "imageio": Key(dict, {}, "input options", schema=IMAGEIO_KEYS),
    "fit_me_galaxy": Key(bool, True, "fit the single-epoch cutouts"),
    "fit_coadd_galaxy": Key(bool, False, "fit the coadd cutout"),
    "region": Key(str, "uberseg", "weight region", choices=REGIONS),
    "min_weight": Key(float, 0.0, "weights below this are set to zero"),
    "image_flags2check": Key(int, 0, "bitmask of image_info image_flags that drop an epoch",
                             check=NON_NEGATIVE),
    "bmask_flags2check": Key(int, 2**30, "bmask bits that zero a pixel's weight",
                             check=NON_NEGATIVE),
    "reject_outliers": Key(bool, True, "reject outlier pixels across >= 3 epochs"),
    "max_zero_weight_frac": Key(float, 0.45, "drop an epoch with more zero-weight pixels",
                                check=FRACTION),
    "max_box_size": Key(int, 256, "objects with larger stamps are flagged, not fitted",
                        check=AT_LEAST_ONE),
    "propagate_star_flags": Key(bool, False, "copy object_data flags into obj_flags"),
    "intr_prof_var_fac": Key(float, 0.0, "extra variance fac*model**2 (MOF)",
                             check=NON_NEGATIVE),
    "global_seed": Key(int, None, "seed used when --seed is not given", check=SEED),
    "checkpoint_seconds": Key(float, 600.0, "seconds between checkpoints",
                              check=NON_NEGATIVE),
    "psf_pars": Key(dict, {}, "PSF fitting", schema=PSF_KEYS),
    "max_pars": Key(dict, {}, "max-likelihood fitting", schema=MAX_KEYS),
    "models": Key(list, ["exp"], "galaxy models to fit, e.g. [exp, dev, cm, bdf]",
                  items=Key(str, choices=GALAXY_MODELS, nullable=False), unique=True,
                  nonempty=True),
    "model_pars": Key(dict, {}, "priors per model", keys=GALAXY_MODELS,
                      values_schema=PRIOR_KEYS),
    "metacal_pars": Key(dict, {}, "metacalibration", schema=METACAL_KEYS),
    "model_nbrs": Key(bool, False, "fit groups with neighbours modelled (MOF)"),
    "model_nbrs_method": Key(str, "subtract", "how neighbours are removed",
                             choices=("subtract", "frac")),
    "mof": Key(dict, {}, "multi-object fitting", schema=MOF_KEYS),
    "make_plots": Key(bool, False, "write PNG mosaics for a few objects"),
    "nplots": Key(int, 5, "how many objects --make-plots draws", check=NON_NEGATIVE),
}


def cross_problems(conf: dict) -> list[str]:
    """Problems between keys of a schema-checked fit config (one list, all at once)."""
    problems: list[str] = []
    models = [m for m in conf.get("models") or [] if m in GALAXY_MODELS]
    if "cm" in models:
        before = models[:models.index("cm")]
        if not {"exp", "dev"} <= set(before):
            problems.append("model 'cm' needs 'exp' and 'dev' listed before it in 'models'")
    psf = conf.get("psf_pars", {})
    if psf.get("model") in PSF_MODELS and isinstance(psf.get("fit_pars"), dict):
        allowed = fit_pars_types(psf["model"])
        for key, value in psf["fit_pars"].items():
            name = f"psf_pars.fit_pars.{key}"
            if key not in allowed:
                problems.append(unknown_key_problem(name, key, allowed, "psf_pars.fit_pars.")
                                + f" for PSF model '{psf['model']}' (valid: "
                                  f"{', '.join(allowed)})")
                continue
            check_value(name, value, Key(allowed[key], None, check=POSITIVE, nullable=False),
                        problems)
    for model, slots in (conf.get("model_pars") or {}).items():
        for slot, prior in (slots or {}).items():
            where = f"model_pars.{model}.{slot}"
            if model == "cm" and slot == "fracdev" and prior is not None:
                problems.append(f"'{where}': cm takes fracdev from a linear fit of the exp and "
                                f"dev models; a fracdev prior applies to bdf only")
                continue
            for i, one in enumerate(prior if isinstance(prior, list) else [prior]):
                if isinstance(prior, list) and slot != "counts":
                    problems.append(f"'{where}' must be one prior (a mapping with a 'type'), "
                                    f"got a list")
                    break
                sub = f"{where}[{i}]" if isinstance(prior, list) else where
                problems.extend(prior_problems(one, slot, sub))
    mc = conf.get("metacal_pars", {})
    if conf.get("fitter_type") == "metacal" and mc.get("model") == "cm":
        problems.append(choice_problem("metacal_pars.model", "cm", METACAL_MODELS))
    mof = conf.get("mof", {})
    if isinstance(mof.get("min_itr"), int) and isinstance(mof.get("max_itr"), int) \
            and mof["min_itr"] > mof["max_itr"]:
        problems.append(f"'mof.min_itr' ({mof['min_itr']}) must be <= 'mof.max_itr' "
                        f"({mof['max_itr']})")
    mofm = mof.get("convergence_model")
    if mofm is not None and mofm in GALAXY_MODELS and conf.get("models") \
            and mofm not in conf["models"]:
        problems.append(f"'mof.convergence_model' is {mofm!r}, which is not in 'models' "
                        f"{conf['models']}")
    if not (conf.get("fit_me_galaxy", True) or conf.get("fit_coadd_galaxy", False)):
        problems.append("one of 'fit_me_galaxy' and 'fit_coadd_galaxy' must be true")
    return problems


def check_fit_config(data: dict, source: str = "config", text: str | None = None) -> dict:
    """Validate a fit config mapping (ngmixer's keys translated first); every problem is
    reported in one ConfigError. A translated config keeps ``_ngmixer``: the original
    text, the translation notes and the inert keys (written to meta_data with the
    config)."""
    tr = translate_fit(data)
    problems = list(tr.problems)
    conf = check_mapping(tr.data, FIT_SCHEMA, problems, also_known=FIT_KEYS)
    problems += cross_problems(conf)
    raise_problems(source, problems)
    if conf["fitter_type"] == "mof":
        conf["model_nbrs"] = True
    if tr.translated:
        conf["_ngmixer"] = tr.record(text if text is not None else "")
    return conf


def load_fit_config(path: str | os.PathLike) -> dict:
    """Load and validate a fit config file (see :func:`check_fit_config`)."""
    text, data = load_yaml_text(path)
    return check_fit_config(data, os.fspath(path), text)


__all__ = ["FIT_SCHEMA", "GALAXY_MODELS", "check_fit_config", "load_fit_config", "REQUIRED"]
