"""The truth catalogue of a simulated tile: object properties.

Each object's intrinsic properties (star or galaxy, model, size, flux, colours,
shape) come from its own random stream, derived from ``(seed, index)``, so
they do not depend on how many other objects there are. Positions come from
one tile-level stream (:mod:`pipeline.sims.placement`).
"""

from __future__ import annotations

import math
import zlib

import numpy as np

from .profiles import combine_shears, round_profile, sheared_T

# stream tags for numpy SeedSequences: (seed, tag, ...)
STREAM_OBJECT = 1
STREAM_COLOR = 2


def band_key(band: str) -> int:
    """Stable integer for a band name (for per-band random streams)."""
    return zlib.crc32(band.encode())


def rng_for(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFFFFFFFFFF,
                                                         *[int(k) for k in keys]]))


def truth_dtype(nband: int) -> np.dtype:
    return np.dtype([
        ("id", "i8"), ("number", "i4"), ("ra", "f8"), ("dec", "f8"),
        ("row", "f8"), ("col", "f8"), ("box_size", "i4"), ("render_size", "i4"),
        ("model", "U4"), ("is_star", "bool"), ("flux", "f8", (nband,)),
        ("mag", "f8", (nband,)), ("s2n", "f8", (nband,)),
        ("hlr", "f8"), ("T", "f8"), ("fracdev", "f8"),
        ("g1", "f8"), ("g2", "f8"), ("g1_intrinsic", "f8"), ("g2_intrinsic", "f8"),
        ("psf_fwhm", "f8", (nband,)),
        ("blend_group", "i8"), ("blend_parent", "i8"), ("blend_dist", "f8"),
        ("cluster", "i8"),
    ])


def _lognormal(rng: np.random.Generator, dist: dict) -> float:
    for _ in range(1000):
        value = dist["median"] * math.exp(dist["sigma_ln"] * rng.standard_normal())
        if dist["min"] <= value <= dist["max"]:
            return value
    return float(np.clip(dist["median"], dist["min"], dist["max"]))


def box_size_for(r50: float, cfg: dict) -> int:
    """Smallest allowed stamp with side >= 2 * factor * r50 (r50 in arcsec)."""
    need = 2.0 * cfg["stamps"]["factor"] * r50 / cfg["pixel_scale"]
    sizes = sorted(cfg["stamps"]["sizes"])
    for size in sizes:
        if size >= need:
            return size
    return sizes[-1]


def draw_properties(nobj: int, bands: list[str], seed: int, cfg: dict) -> np.ndarray:
    """Per-object intrinsic properties (no positions yet)."""
    gal, stars = cfg["galaxies"], cfg["stars"]
    names = [m for m in ("exp", "dev", "bd") if gal["models"][m] > 0]
    weights = np.array([gal["models"][m] for m in names], dtype="f8")
    cum = np.cumsum(weights / weights.sum())
    g1s, g2s = (float(v) for v in cfg["shear"])
    fwhm_hi = cfg["psf"]["fwhm_range"][1]
    render_factor = cfg["stamps"]["render_factor"]
    ratios = [float(cfg["band_flux_ratio"].get(b, 1.0)) for b in bands]

    cat = np.zeros(nobj, dtype=truth_dtype(len(bands)))
    cat["id"] = cfg["id_offset"] + np.arange(nobj)
    cat["number"] = np.arange(1, nobj + 1)
    for i in range(nobj):
        rng = rng_for(seed, STREAM_OBJECT, i)
        row = cat[i]
        is_star = rng.random() < cfg["star_frac"]
        model_u, g_a, g_b = rng.random(), rng.standard_normal(), rng.standard_normal()
        if is_star:
            model, hlr, fracdev = "star", 0.0, 0.0
            flux = _lognormal(rng, stars["flux"])
            g1i = g2i = 0.0
        else:
            model = names[min(int(np.searchsorted(cum, model_u, side="right")), len(names) - 1)]
            hlr = _lognormal(rng, gal["hlr"])
            flux = _lognormal(rng, gal["flux"])
            fracdev = {"exp": 0.0, "dev": 1.0}.get(model)
            if fracdev is None:
                fracdev = rng.uniform(*gal["fracdev_range"])
            g1i, g2i = g_a * gal["g_sigma"], g_b * gal["g_sigma"]
            while g1i * g1i + g2i * g2i >= gal["g_max"] ** 2:
                g1i, g2i = rng.normal(0.0, gal["g_sigma"], 2)
        row["model"], row["is_star"], row["hlr"], row["fracdev"] = model, is_star, hlr, fracdev
        row["g1_intrinsic"], row["g2_intrinsic"] = g1i, g2i
        if is_star:
            row["g1"] = row["g2"] = row["T"] = 0.0
        else:
            _, moment = round_profile(model, hlr, fracdev, gal["bulge_size_ratio"],
                                      gal["dev_trunc"])
            g1t, g2t = combine_shears(g1i, g2i, g1s, g2s)
            row["g1"], row["g2"] = g1t, g2t
            row["T"] = sheared_T(moment, g1t, g2t)
        for b, band in enumerate(bands):
            color = rng_for(seed, STREAM_COLOR, i, band_key(band)).standard_normal()
            row["flux"][b] = flux * ratios[b] * 10.0 ** (-0.4 * cfg["color_sigma"] * color)
        # stamp from the convolved half-light radius, approximated in quadrature
        r50 = math.hypot(hlr, 0.5 * fwhm_hi)
        box = box_size_for(r50, cfg)
        row["box_size"] = box
        row["render_size"] = 2 * int(math.ceil(0.5 * render_factor * box))
    cat["mag"] = cfg["magzp"] - 2.5 * np.log10(cat["flux"])
    cat["blend_group"] = -1
    cat["blend_parent"] = -1
    cat["blend_dist"] = -9999.0
    cat["cluster"] = -1
    return cat
