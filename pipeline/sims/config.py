"""Configuration schema of the tile simulation (``configs/sim.yaml`` documents it).

Every number that shapes a simulated tile lives here, except the few things the
``ngmixer-sim`` command line names (tile, nobj, bands, nepoch, seed, blend and
star fractions, shear), which override the config values.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

from ..config import Key, load_yaml, validate
from ..errors import ConfigError

_PAIR = (list,)

PSF_SCHEMA = {
    "beta": Key(float, 2.5, "Moffat beta (2.5 renders ~3x faster than 3.0 in galsim)"),
    "fwhm_range": Key(_PAIR, [0.8, 1.2], "uniform range of the per-epoch FWHM, arcsec"),
    "g_sigma": Key(float, 0.01, "per-component Gaussian sigma of the PSF shear"),
    "stamp_size": Key(int, 33, "side of the PSF images stored in the MEDS files (odd)"),
}

WCS_SCHEMA = {
    "shift_max": Key(float, 10.0, "epoch pointing offsets, uniform in +-shift_max arcsec"),
    "rotation_max": Key(float, 2.0, "epoch rotations, uniform in +-rotation_max degrees"),
    "scale_jitter": Key(float, 0.002, "fractional per-epoch jitter of the pixel scale"),
}

LOGNORMAL_SCHEMA = {
    "median": Key(float, 1.0),
    "sigma_ln": Key(float, 0.5, "sigma of the natural log"),
    "min": Key(float, 0.0, "truncation (values are redrawn outside [min, max])"),
    "max": Key(float, 1e30),
}


def _lognormal(median: float, sigma_ln: float, lo: float, hi: float) -> Key:
    return Key(dict, {"median": median, "sigma_ln": sigma_ln, "min": lo, "max": hi},
               schema=LOGNORMAL_SCHEMA)


GALAXY_SCHEMA = {
    "models": Key(dict, {"exp": 0.5, "dev": 0.2, "bd": 0.3},
                  "relative frequency of each model", schema={
                      "exp": Key(float, 0.0), "dev": Key(float, 0.0), "bd": Key(float, 0.0)}),
    "hlr": _lognormal(0.5, 0.4, 0.3, 3.0),
    "flux": _lognormal(2500.0, 1.0, 100.0, 1e6),
    "g_sigma": Key(float, 0.2, "per-component sigma of the intrinsic shape"),
    "g_max": Key(float, 0.8, "intrinsic |g| is redrawn above this"),
    "fracdev_range": Key(_PAIR, [0.1, 0.9], "bulge fraction of 'bd' galaxies, uniform"),
    "bulge_size_ratio": Key(float, 0.5, "bulge hlr / disk hlr of 'bd' galaxies"),
    "dev_trunc": Key(float, 8.0, "de Vaucouleurs profiles are truncated at this many hlr"),
}

STAR_SCHEMA = {
    "flux": _lognormal(5000.0, 1.2, 200.0, 1e6),
}

STAMP_SCHEMA = {
    "sizes": Key(_PAIR, [32, 48, 64, 96, 128, 192, 256], "allowed MEDS box sizes (even)"),
    "factor": Key(float, 5.0, "box side >= 2*factor*r50 of the PSF-convolved object"),
    "render_factor": Key(float, 2.0, "objects are drawn on render_factor x box-size stamps"),
}

DEFECT_SCHEMA = {
    "bad_columns": Key(int, 2, "bad columns per epoch image"),
    "bad_column_frac": Key(_PAIR, [0.2, 1.0], "length of a bad column, fraction of the height"),
    "cosmic_rays": Key(int, 30, "cosmic rays per epoch image"),
    "cosmic_ray_length": Key(_PAIR, [2.0, 15.0], "track length range, pixels"),
    "cosmic_ray_amplitude": Key(_PAIR, [20.0, 200.0], "track brightness range, noise sigmas"),
}

SIM_SCHEMA: dict[str, Key] = {
    # sky geometry
    "pixel_scale": Key(float, 0.263, "arcsec/pixel of the coadd and (on average) the epochs"),
    "ra_center": Key(float, 10.0, "tile centre, degrees"),
    "dec_center": Key(float, 0.0, "tile centre, degrees"),
    "density": Key(float, 12.0, "objects per square arcmin (sets the image size)"),
    "image_size": Key(int, None, "image side in pixels; overrides density when set"),
    "id_offset": Key(int, 1000000, "id = id_offset + index, so id differs from number"),
    # objects
    "star_frac": Key(float, 0.1, "fraction of objects that are stars"),
    "blend_frac": Key(float, 0.0, "fraction placed 1-3 hlr from another object"),
    "shear": Key(_PAIR, [0.0, 0.0], "constant reduced shear applied to all galaxies"),
    "galaxies": Key(dict, {}, schema=GALAXY_SCHEMA),
    "stars": Key(dict, {}, schema=STAR_SCHEMA),
    "band_flux_ratio": Key(dict, {"u": 0.3, "g": 0.55, "r": 1.0, "i": 1.35, "z": 1.6, "Y": 1.7},
                           "mean flux in a band / flux drawn from the flux distribution;"
                           " bands not listed use 1"),
    "color_sigma": Key(float, 0.3, "per-object, per-band colour scatter, magnitudes"),
    # observing conditions
    "psf": Key(dict, {}, schema=PSF_SCHEMA),
    "wcs": Key(dict, {}, schema=WCS_SCHEMA),
    "noise_sigma": Key(dict, {"default": 10.0},
                       "per-pixel noise sigma of one epoch, counts; per band, or 'default'"),
    "noise_jitter": Key(float, 0.1, "fractional per-epoch scatter of the noise sigma"),
    "magzp": Key(float, 30.0, "zero point of every image (counts are comparable)"),
    "defects": Key(dict, {}, schema=DEFECT_SCHEMA),
    "stamps": Key(dict, {}, schema=STAMP_SCHEMA),
    "seg_threshold": Key(float, 1.5, "seg: detection image above this many noise sigmas"),
    "nproc": Key(int, None, "worker processes; null = number of CPUs"),
}


def _pair(cfg: Mapping, name: str, lo: float | None = None, ordered: bool = True) -> None:
    value = cfg
    for part in name.split("."):
        value = value[part]
    if (len(value) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                   for v in value)):
        raise ConfigError(f"key '{name}' must be a list of two numbers, got {value!r}")
    if ordered and value[0] > value[1]:
        raise ConfigError(f"key '{name}' must be [low, high], got {value!r}")
    if lo is not None and value[0] < lo:
        raise ConfigError(f"key '{name}' must be >= {lo}, got {value!r}")


def check_sim_config(cfg: dict, source: str = "config") -> dict:
    """Value checks beyond types (ranges, list shapes); returns ``cfg``."""
    try:
        for name in ("psf.fwhm_range", "galaxies.fracdev_range", "defects.bad_column_frac",
                     "defects.cosmic_ray_length", "defects.cosmic_ray_amplitude"):
            _pair(cfg, name, lo=0.0)
        _pair(cfg, "shear", ordered=False)
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None

    def bad(msg: str) -> None:
        raise ConfigError(f"{source}: {msg}")

    if cfg["pixel_scale"] <= 0:
        bad("key 'pixel_scale' must be > 0")
    for key in ("star_frac", "blend_frac"):
        if not 0.0 <= cfg[key] <= 1.0:
            bad(f"key '{key}' must be in [0, 1], got {cfg[key]!r}")
    if sum(v * v for v in cfg["shear"]) >= 1.0:
        bad(f"key 'shear' must have |g| < 1, got {cfg['shear']!r}")
    models = cfg["galaxies"]["models"]
    if any(v < 0 for v in models.values()) or sum(models.values()) <= 0:
        bad("key 'galaxies.models' needs non-negative weights with a positive sum")
    sizes = cfg["stamps"]["sizes"]
    if not sizes or any((not isinstance(s, int)) or s <= 0 or s % 2 for s in sizes):
        bad(f"key 'stamps.sizes' must be positive even integers, got {sizes!r}")
    if cfg["stamps"]["render_factor"] < 1.0:
        bad("key 'stamps.render_factor' must be >= 1")
    if cfg["psf"]["stamp_size"] < 3 or cfg["psf"]["stamp_size"] % 2 == 0:
        bad("key 'psf.stamp_size' must be an odd integer >= 3")
    if "default" not in cfg["noise_sigma"]:
        cfg["noise_sigma"]["default"] = 10.0
    for band, sigma in cfg["noise_sigma"].items():
        if not isinstance(sigma, (int, float)) or isinstance(sigma, bool) or sigma <= 0:
            bad(f"key 'noise_sigma.{band}' must be a number > 0, got {sigma!r}")
    for band, ratio in cfg["band_flux_ratio"].items():
        if not isinstance(ratio, (int, float)) or isinstance(ratio, bool) or ratio <= 0:
            bad(f"key 'band_flux_ratio.{band}' must be a number > 0, got {ratio!r}")
    for group, key in (("galaxies", "hlr"), ("galaxies", "flux"), ("stars", "flux")):
        dist = cfg[group][key]
        if dist["median"] <= 0 or dist["sigma_ln"] < 0 or dist["min"] > dist["max"] \
                or not dist["min"] <= dist["median"] <= dist["max"]:
            bad(f"key '{group}.{key}' needs median > 0, sigma_ln >= 0, min <= median <= max")
    if cfg["galaxies"]["hlr"]["min"] <= 0:
        bad("key 'galaxies.hlr.min' must be > 0")
    if cfg["density"] <= 0:
        bad("key 'density' must be > 0")
    if cfg["image_size"] is not None and cfg["image_size"] < 64:
        bad("key 'image_size' must be >= 64")
    return cfg


def sim_config(path: str | os.PathLike | None = None,
               overrides: Mapping[str, Any] | None = None) -> dict:
    """Load (or default) and validate a simulation config; apply ``overrides``.

    ``overrides`` are top-level keys (e.g. from the command line) and are
    validated like file values.
    """
    source = os.fspath(path) if path is not None else "sim config"
    data = load_yaml(path) if path is not None else {}
    data = dict(data)
    for key, value in (overrides or {}).items():
        if value is not None:
            data[key] = value
    cfg = validate(data, SIM_SCHEMA, source=source)
    return check_sim_config(cfg, source)
