"""The truth catalogue of a simulated tile: object properties and placement.

Each object's intrinsic properties (star or galaxy, model, size, flux, colours,
shape) come from its own random stream, derived from ``(seed, index)``, so
they do not depend on how many other objects there are. Placement uses one
tile-level stream.

Placement: a ``blend_frac`` fraction of the objects ("secondaries") are each
attached to a randomly chosen "primary" at a distance of 1-3 x the larger
half-light radius of the pair (stars count with half the mean PSF FWHM;
never closer than 3 pixels, so every object keeps its own centre pixels); a
primary and its secondaries form a blend group. Groups are then placed at
random, largest first, so that no two groups' stamps overlap: objects outside
blends are isolated.
"""

from __future__ import annotations

import logging
import math
import zlib

import numpy as np

from ..errors import ConfigError
from .profiles import combine_shears, round_profile, sheared_T

log = logging.getLogger(__name__)

# stream tags for numpy SeedSequences: (seed, tag, ...)
STREAM_OBJECT = 1
STREAM_COLOR = 2
STREAM_PLACE = 5

MIN_SEP_PIX = 3.0  # blended centres at least this far apart: distinct centre pixels
MAX_COVER = 0.30   # enlarge the tile beyond this covering fraction of group discs


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
    return cat


def _placement_hlr(cat: np.ndarray, cfg: dict) -> np.ndarray:
    psf_hlr = 0.25 * sum(cfg["psf"]["fwhm_range"])  # half the mean FWHM
    return np.where(cat["is_star"], psf_hlr, cat["hlr"])


class _DiscGrid:
    """Placed discs binned in square cells of side >= twice the largest radius, so a
    new disc can only overlap discs in its own and the 8 surrounding cells."""

    def __init__(self, cell: float) -> None:
        self.cell = max(cell, 1.0)
        self.cells: dict[tuple[int, int], list[tuple[float, float, float]]] = {}

    def _key(self, pos: np.ndarray) -> tuple[int, int]:
        return int(pos[0] // self.cell), int(pos[1] // self.cell)

    def fits(self, pos: np.ndarray, r: float) -> bool:
        i, j = self._key(pos)
        for di in (-1, 0, 1):
            for dj in (-1, 0, 1):
                for (y, x, rr) in self.cells.get((i + di, j + dj), ()):
                    if (pos[0] - y) ** 2 + (pos[1] - x) ** 2 <= (r + rr) ** 2:
                        return False
        return True

    def add(self, pos: np.ndarray, r: float) -> None:
        self.cells.setdefault(self._key(pos), []).append((float(pos[0]), float(pos[1]), r))


def place_objects(cat: np.ndarray, seed: int, cfg: dict) -> int:
    """Assign blend groups and coadd positions (in place); return the image side."""
    nobj = len(cat)
    scale = cfg["pixel_scale"]
    rng = rng_for(seed, STREAM_PLACE)
    nblend = int(round(cfg["blend_frac"] * nobj))
    if nblend > nobj - 1:
        log.warning("blend_frac %.3f leaves no primary; using %d blended objects",
                    cfg["blend_frac"], nobj - 1)
        nblend = nobj - 1
    secondary = np.zeros(nobj, dtype=bool)
    secondary[rng.choice(nobj, size=nblend, replace=False)] = True
    primaries = np.flatnonzero(~secondary)
    hlr = _placement_hlr(cat, cfg)

    # offsets (pixels) of every object from its group's primary
    offset = np.zeros((nobj, 2))
    group = np.where(secondary, -1, np.arange(nobj))
    members: dict[int, list[int]] = {int(p): [int(p)] for p in primaries}
    for s in np.flatnonzero(secondary):
        parent = int(primaries[rng.integers(len(primaries))])
        reach = max(hlr[parent], hlr[s]) / scale
        lo = max(reach, MIN_SEP_PIX)
        for _ in range(100):
            dist = rng.uniform(lo, max(3.0 * reach, lo))
            phi = rng.uniform(0.0, 2.0 * math.pi)
            cand = offset[parent] + dist * np.array([math.sin(phi), math.cos(phi)])
            others = offset[members[parent]]
            if np.all(np.hypot(*(others - cand).T) >= MIN_SEP_PIX):
                break
        offset[s] = cand
        group[s] = parent
        members[parent].append(int(s))
        cat["blend_parent"][s] = cat["number"][parent]
        cat["blend_dist"][s] = dist / reach

    # disc radius of each group: its members' stamp half-diagonals around the primary
    half_diag = cat["box_size"] / math.sqrt(2.0)
    radius = {p: max(float(np.hypot(*offset[m]) + half_diag[m]) for m in mem)
              for p, mem in members.items()}
    order = sorted(radius, key=lambda p: (-radius[p], p))
    rad = np.array([radius[p] for p in order])

    if cfg["image_size"] is not None:
        side = int(cfg["image_size"])
    else:
        side = math.sqrt(nobj / cfg["density"]) * 60.0 / scale
        side = max(side, math.sqrt(math.pi * np.sum(rad ** 2) / MAX_COVER), 2.2 * rad.max())
        side = int(math.ceil(side / 16.0) * 16)  # a tidy size

    grid = _DiscGrid(2.0 * float(rad.max()))
    for k, p in enumerate(order):
        r = rad[k]
        if side - 2 * r <= 0:
            raise ConfigError(f"image_size {side} too small for a stamp of radius {r:.0f} pix")
        for _ in range(200):
            cand = rng.uniform(r, side - 1 - r, size=(16, 2))
            ok = [j for j in range(len(cand)) if grid.fits(cand[j], r)]
            if ok:
                centre = cand[ok[0]]
                break
        else:
            raise ConfigError(f"cannot place {nobj} objects without overlapping stamps in a "
                              f"{side}x{side} image; lower nobj or density, or raise image_size")
        grid.add(centre, r)
        for m in members[p]:
            cat["row"][m], cat["col"][m] = centre + offset[m]
        if len(members[p]) > 1:
            cat["blend_group"][members[p]] = k
    # number the groups 0.. in object order so the labels do not depend on the packing order
    grouped = cat["blend_group"] >= 0
    if grouped.any():
        _, first = np.unique(cat["blend_group"][grouped], return_index=True)
        labels = cat["blend_group"][grouped][np.sort(first)]
        remap = {int(old): new for new, old in enumerate(labels)}
        cat["blend_group"][grouped] = [remap[int(g)] for g in cat["blend_group"][grouped]]
    return side
