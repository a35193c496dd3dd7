"""Configuration schema of the tile simulation (``configs/sim.yaml`` documents it).

Every number that shapes a simulated tile lives here, except the few things the
``ngmixer-sim`` command line names (tile, nobj, bands, nepoch, seed, blend and
star fractions, shear), which override the config values.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

from ..config import (AT_LEAST_ONE, FRACTION, NON_NEGATIVE, POSITIVE, Key, Range,
                      check_mapping, load_yaml, raise_problems)
from .placement import PLACEMENTS

_NUM = Key((int, float), nullable=False)


def _pair(lo: float | None = 0.0, ordered: bool = True, doc: str = "",
          default: list | None = None) -> Key:
    """A [low, high] (or any, unordered) pair of numbers."""
    def check(value: list) -> str | None:
        if any(not isinstance(v, (int, float)) or isinstance(v, bool) for v in value):
            return None  # the element checks report it
        if ordered and value[0] > value[1]:
            return f"must be [low, high], got {value!r}"
        if lo is not None and min(value) < lo:
            return f"must be >= {lo}, got {value!r}"
        return None
    return Key(list, default, doc, items=_NUM, length=2, check=check)


PSF_SCHEMA = {
    "beta": Key(float, 2.5, "Moffat beta (2.5 renders ~3x faster than 3.0 in galsim)",
                check=POSITIVE),
    "fwhm_range": _pair(doc="uniform range of the per-epoch FWHM, arcsec", default=[0.8, 1.2]),
    "g_sigma": Key(float, 0.01, "per-component Gaussian sigma of the PSF shear",
                   check=NON_NEGATIVE),
    "stamp_size": Key(int, 33, "side of the PSF images stored in the MEDS files (odd)",
                      check=Range(3)),
}

WCS_SCHEMA = {
    "shift_max": Key(float, 10.0, "epoch pointing offsets, uniform in +-shift_max arcsec",
                     check=NON_NEGATIVE),
    "rotation_max": Key(float, 2.0, "epoch rotations, uniform in +-rotation_max degrees",
                        check=NON_NEGATIVE),
    "scale_jitter": Key(float, 0.002, "fractional per-epoch jitter of the pixel scale",
                        check=Range(0, 1, hi_open=True)),
}

LOGNORMAL_SCHEMA = {
    "median": Key(float, 1.0, check=POSITIVE),
    "sigma_ln": Key(float, 0.5, "sigma of the natural log", check=NON_NEGATIVE),
    "min": Key(float, 0.0, "truncation (values are redrawn outside [min, max])"),
    "max": Key(float, 1e30),
}


def _lognormal(median: float, sigma_ln: float, lo: float, hi: float) -> Key:
    return Key(dict, {"median": median, "sigma_ln": sigma_ln, "min": lo, "max": hi},
               schema=LOGNORMAL_SCHEMA)


GALAXY_SCHEMA = {
    "models": Key(dict, {"exp": 0.5, "dev": 0.2, "bd": 0.3},
                  "relative frequency of each model", schema={
                      "exp": Key(float, 0.0, check=NON_NEGATIVE),
                      "dev": Key(float, 0.0, check=NON_NEGATIVE),
                      "bd": Key(float, 0.0, check=NON_NEGATIVE)}),
    "hlr": _lognormal(0.5, 0.4, 0.3, 3.0),
    "flux": _lognormal(2500.0, 1.0, 100.0, 1e6),
    "g_sigma": Key(float, 0.2, "per-component sigma of the intrinsic shape", check=POSITIVE),
    "g_max": Key(float, 0.8, "intrinsic |g| is redrawn above this",
                 check=Range(0, 1, lo_open=True, hi_open=True)),
    "fracdev_range": _pair(doc="bulge fraction of 'bd' galaxies, uniform", default=[0.1, 0.9]),
    "bulge_size_ratio": Key(float, 0.5, "bulge hlr / disk hlr of 'bd' galaxies",
                            check=POSITIVE),
    "dev_trunc": Key(float, 8.0, "de Vaucouleurs profiles are truncated at this many hlr",
                     check=POSITIVE),
}

STAR_SCHEMA = {
    "flux": _lognormal(5000.0, 1.2, 200.0, 1e6),
}

STAMP_SCHEMA = {
    "sizes": Key(list, [32, 48, 64, 96, 128, 192, 256], "allowed MEDS box sizes (even)",
                 items=Key(int, check=Range(2), nullable=False), nonempty=True),
    "factor": Key(float, 5.0, "box side >= 2*factor*r50 of the PSF-convolved object",
                  check=POSITIVE),
    "render_factor": Key(float, 2.0, "objects are drawn on render_factor x box-size stamps",
                         check=Range(1)),
}

DEFECT_SCHEMA = {
    "bad_columns": Key(int, 2, "bad columns per epoch image", check=NON_NEGATIVE),
    "bad_column_frac": _pair(doc="length of a bad column, fraction of the height",
                             default=[0.2, 1.0]),
    "cosmic_rays": Key(int, 30, "cosmic rays per epoch image", check=NON_NEGATIVE),
    "cosmic_ray_length": _pair(doc="track length range, pixels", default=[2.0, 15.0]),
    "cosmic_ray_amplitude": _pair(doc="track brightness range, noise sigmas",
                                  default=[20.0, 200.0]),
}

CLUSTERING_SCHEMA = {
    "frac": Key(float, 0.0, "fraction of the placement units (objects, blend groups) in "
                "clusters", check=FRACTION, nullable=False),
    "members": Key(int, 20, "placement units per cluster", check=AT_LEAST_ONE,
                   nullable=False),
    "sigma": Key(float, 15.0, "Gaussian sigma per axis of a cluster's profile, arcsec",
                 check=POSITIVE, nullable=False),
}

SIM_SCHEMA: dict[str, Key] = {
    # sky geometry
    "pixel_scale": Key(float, 0.263, "arcsec/pixel of the coadd and (on average) the epochs",
                       check=POSITIVE),
    "ra_center": Key(float, 10.0, "tile centre, degrees", check=Range(0, 360, hi_open=True)),
    "dec_center": Key(float, 0.0, "tile centre, degrees", check=Range(-90, 90)),
    "density": Key(float, 6.0, "objects per square arcmin (sets the image size)",
                   check=POSITIVE, nullable=False),
    "image_size": Key(int, None, "image side in pixels; overrides density when set",
                      check=Range(64)),
    "placement": Key(str, "separated", "'separated': groups isolated (no light on another "
                     "group's stamps); 'random': uniform (optionally clustered), stamps "
                     "overlap as on the sky",
                     choices=PLACEMENTS, nullable=False),
    "clustering": Key(dict, {}, "placement random: a fraction of the objects in Gaussian "
                      "clusters", schema=CLUSTERING_SCHEMA),
    "id_offset": Key(int, 1000000, "id = id_offset + index, so id differs from number",
                     check=NON_NEGATIVE),
    # objects
    "star_frac": Key(float, 0.1, "fraction of objects that are stars", check=FRACTION),
    "blend_frac": Key(float, 0.0, "fraction placed 1-3 hlr from another", check=FRACTION),
    "shear": _pair(lo=None, ordered=False, doc="constant reduced shear applied to all galaxies",
                   default=[0.0, 0.0]),
    "galaxies": Key(dict, {}, schema=GALAXY_SCHEMA),
    "stars": Key(dict, {}, schema=STAR_SCHEMA),
    "band_flux_ratio": Key(dict, {"u": 0.3, "g": 0.55, "r": 1.0, "i": 1.35, "z": 1.6, "Y": 1.7},
                           "mean flux in a band / flux drawn from the flux distribution;"
                           " bands not listed use 1", values=Key((int, float), check=POSITIVE,
                                                                 nullable=False)),
    "color_sigma": Key(float, 0.3, "per-object, per-band colour scatter, magnitudes",
                       check=NON_NEGATIVE),
    # observing conditions
    "psf": Key(dict, {}, schema=PSF_SCHEMA),
    "wcs": Key(dict, {}, schema=WCS_SCHEMA),
    "noise_sigma": Key(dict, {"default": 10.0},
                       "per-pixel noise sigma of one epoch, counts; per band, or 'default'",
                       values=Key((int, float), check=POSITIVE, nullable=False)),
    "noise_jitter": Key(float, 0.1, "fractional per-epoch scatter of the noise sigma",
                        check=Range(0, 1, hi_open=True)),
    "magzp": Key(float, 30.0, "zero point of every image (counts are comparable)"),
    "defects": Key(dict, {}, schema=DEFECT_SCHEMA),
    "stamps": Key(dict, {}, schema=STAMP_SCHEMA),
    "seg_threshold": Key(float, 1.5, "seg: detection image above this many noise sigmas",
                         check=POSITIVE),
    "nproc": Key(int, None, "worker processes; null = number of CPUs", check=AT_LEAST_ONE),
}


def _cross_problems(cfg: dict) -> list[str]:
    """Rules between values (the schema checked each value alone)."""
    problems = []
    shear = cfg.get("shear")
    if isinstance(shear, list) and all(isinstance(v, (int, float)) for v in shear) \
            and sum(v * v for v in shear) >= 1.0:
        problems.append(f"'shear' must have |g| < 1, got {shear!r}")
    for name in ("galaxies.fracdev_range", "defects.bad_column_frac"):
        group, key = name.split(".")
        pair = cfg.get(group, {}).get(key)
        if isinstance(pair, list) and all(isinstance(v, (int, float)) for v in pair) \
                and max(pair) > 1:
            problems.append(f"'{name}' must lie in [0, 1], got {pair!r}")
    models = cfg.get("galaxies", {}).get("models", {})
    values = [v for v in models.values() if isinstance(v, (int, float))]
    if len(values) == len(models) and sum(values) <= 0:
        problems.append("'galaxies.models' needs weights with a positive sum")
    sizes = cfg.get("stamps", {}).get("sizes")
    if isinstance(sizes, list) and any(isinstance(v, int) and v % 2 for v in sizes):
        problems.append(f"'stamps.sizes' must be even, got {sizes!r}")
    stamp = cfg.get("psf", {}).get("stamp_size")
    if isinstance(stamp, int) and stamp % 2 == 0:
        problems.append(f"'psf.stamp_size' must be odd, got {stamp}")
    for group, key in (("galaxies", "hlr"), ("galaxies", "flux"), ("stars", "flux")):
        dist = cfg.get(group, {}).get(key, {})
        lo, med, hi = dist.get("min"), dist.get("median"), dist.get("max")
        if all(isinstance(v, (int, float)) for v in (lo, med, hi)) and not lo <= med <= hi:
            problems.append(f"'{group}.{key}' needs min <= median <= max, got "
                            f"{lo!r}, {med!r}, {hi!r}")
    clustered = cfg.get("clustering", {}).get("frac")
    if isinstance(clustered, (int, float)) and clustered > 0 \
            and cfg.get("placement") == "separated":
        problems.append("'clustering.frac' needs placement: random (separated placement "
                        "keeps every group's stamps apart)")
    hlr_min = cfg.get("galaxies", {}).get("hlr", {}).get("min")
    if isinstance(hlr_min, (int, float)) and hlr_min <= 0:
        problems.append(f"'galaxies.hlr.min' must be > 0, got {hlr_min!r}")
    return problems


def check_sim_config(cfg: dict, source: str = "config") -> dict:
    """Schema, value and cross-value checks (every problem in one ConfigError);
    returns the config with defaults."""
    problems: list[str] = []
    out = check_mapping(cfg, SIM_SCHEMA, problems)
    problems += _cross_problems(out)
    raise_problems(source, problems)
    out["noise_sigma"].setdefault("default", 10.0)
    return out


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
    return check_sim_config(data, source)
