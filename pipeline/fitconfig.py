"""Schema of the fit configuration read by ``ngmixit`` (see configs/fit-*.yaml)."""

from __future__ import annotations

import os

from .config import REQUIRED, Key, load_config
from .errors import ConfigError

PRIOR_KEYS = {
    "cen": Key(dict, None, "centre prior, e.g. {type: normal2d, width: 0.263}"),
    "g": Key(dict, None, "shape prior, e.g. {type: ba, sigma: 0.3}"),
    "T": Key(dict, None, "size prior, e.g. {type: TwoSidedErf, pars: [...]}"),
    "counts": Key(dict, None, "flux prior, e.g. {type: flat, pars: [-100, 1e9]}"),
    "fracdev": Key(dict, None, "bdf/cm fracdev prior, e.g. {type: normal, mean: 0.5, sigma: 0.1}"),
}

IMAGEIO_KEYS = {
    "io_type": Key(str, "meds", "input kind", choices=("meds",)),
    "psf_source": Key(str, "meds", "where PSF images come from (the MEDS psf HDU)",
                      choices=("meds",)),
}

PSF_KEYS = {
    "model": Key(str, "coellip3", "PSF model: admom, gauss, turb, coellip2/3, em1..em5"),
    "ntry": Key(int, 4, "attempts with perturbed guesses"),
    "fit_pars": Key(dict, {}, "extra options for the PSF fitter (e.g. maxiter, tol)"),
}

MAX_KEYS = {
    "method": Key(str, "lm", "optimiser", choices=("lm",)),
    "ntry": Key(int, 2, "attempts with perturbed guesses"),
    "lm_pars": Key(dict, {}, "LM options: maxfev, ftol, xtol"),
}

METACAL_KEYS = {
    "types": Key(list, ["noshear", "1p", "1m", "2p", "2m"], "shear types to produce"),
    "psf": Key(str, "fitgauss", "reconvolution PSF", choices=("fitgauss", "gauss", "dilate")),
    "step": Key(float, 0.01, "applied shear step"),
    "fixnoise": Key(bool, True, "add rotated noise to cancel correlated noise"),
    "model": Key(str, "gauss", "model fitted to each metacal image"),
}

MOF_KEYS = {
    "method": Key(str, "iterate", "'iterate' (Gauss-Seidel sweeps) or 'joint'",
                  choices=("iterate", "joint")),
    "joint_max_group": Key(int, 6, "joint mode: larger groups fall back to iterating"),
    "maxabs_conv": Key(list, None, "per-parameter absolute convergence tolerance"),
    "maxfrac_conv": Key(list, None, "per-parameter fractional convergence tolerance"),
    "maxerr_conv": Key(float, 0.5, "convergence when |change| <= this many sigma"),
    "max_itr": Key(int, 15, "maximum number of sweeps"),
    "min_itr": Key(int, 2, "minimum number of sweeps"),
    "min_useg_itr": Key(int, 1, "sweep from which raw weights replace uberseg"),
    "write_convergence_data": Key(bool, False, "write per-sweep parameters"),
    "convergence_model": Key(str, None, "model whose parameters decide convergence"),
}

FIT_SCHEMA = {
    "fitter_type": Key(str, "max", "fitter registered by name",
                       choices=("max", "metacal", "mof")),
    "imageio": Key(dict, {}, "input options", schema=IMAGEIO_KEYS),
    "fit_me_galaxy": Key(bool, True, "fit the single-epoch cutouts"),
    "fit_coadd_galaxy": Key(bool, False, "fit the coadd cutout"),
    "region": Key(str, "uberseg", "weight region",
                  choices=("weight", "cweight", "uberseg", "cweight-nearest")),
    "min_weight": Key(float, 0.0, "weights below this are set to zero"),
    "image_flags2check": Key(int, 0, "bitmask of image_info image_flags that drop an epoch"),
    "bmask_flags2check": Key(int, 2**30, "bmask bits that zero a pixel's weight"),
    "reject_outliers": Key(bool, True, "reject outlier pixels across >= 3 epochs"),
    "max_zero_weight_frac": Key(float, 0.45, "drop an epoch with more zero-weight pixels"),
    "max_box_size": Key(int, 256, "objects with larger stamps are flagged, not fitted"),
    "propagate_star_flags": Key(bool, False, "copy object_data flags into obj_flags"),
    "intr_prof_var_fac": Key(float, 0.0, "extra variance fac*model**2 (MOF)"),
    "global_seed": Key(int, None, "seed used when --seed is not given"),
    "checkpoints": Key(list, None, "checkpoint times in minutes (ngmixer style)"),
    "checkpoint_seconds": Key(float, 600.0, "seconds between checkpoints"),
    "psf_pars": Key(dict, {}, "PSF fitting", schema=PSF_KEYS),
    "max_pars": Key(dict, {}, "max-likelihood fitting", schema=MAX_KEYS),
    "models": Key(list, ["exp"], "galaxy models to fit, e.g. [exp, dev, cm, bdf]"),
    "model_pars": Key(dict, {}, "priors per model", values_schema=PRIOR_KEYS),
    "metacal_pars": Key(dict, {}, "metacalibration", schema=METACAL_KEYS),
    "model_nbrs": Key(bool, False, "fit groups with neighbours modelled (MOF)"),
    "model_nbrs_method": Key(str, "subtract", "how neighbours are removed",
                             choices=("subtract", "frac")),
    "mof": Key(dict, {}, "multi-object fitting", schema=MOF_KEYS),
    "make_plots": Key(bool, False, "write PNG mosaics for a few objects"),
    "nplots": Key(int, 5, "how many objects --make-plots draws"),
}

KNOWN_MODELS = ("gauss", "exp", "dev", "cm", "bdf", "turb")


def load_fit_config(path: str | os.PathLike) -> dict:
    """Load and validate a fit config; check cross-key consistency."""
    conf = load_config(path, FIT_SCHEMA)
    source = os.fspath(path)
    for model in conf["models"]:
        if model not in KNOWN_MODELS:
            raise ConfigError(f"{source}: key 'models' has unknown model {model!r}; "
                              f"known: {', '.join(KNOWN_MODELS)}")
    for model in conf["model_pars"]:
        if model not in KNOWN_MODELS:
            raise ConfigError(f"{source}: key 'model_pars.{model}' is not a known model")
    if "cm" in conf["models"] and not ({"exp", "dev"} <= set(conf["models"])):
        raise ConfigError(f"{source}: model 'cm' needs 'exp' and 'dev' listed before it")
    bad = set(conf["metacal_pars"]["types"]) - {"noshear", "1p", "1m", "2p", "2m"}
    if bad:
        raise ConfigError(f"{source}: key 'metacal_pars.types' has unknown types {sorted(bad)}")
    if not (conf["fit_me_galaxy"] or conf["fit_coadd_galaxy"]):
        raise ConfigError(f"{source}: one of 'fit_me_galaxy' and 'fit_coadd_galaxy' must be true")
    if conf["fitter_type"] == "mof":
        conf["model_nbrs"] = True
    return conf


__all__ = ["FIT_SCHEMA", "load_fit_config", "REQUIRED"]
