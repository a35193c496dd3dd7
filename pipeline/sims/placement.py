"""Where the objects of a simulated tile go: blend groups, tile size, positions.

Blends: a ``blend_frac`` fraction of the objects ("secondaries") are each
attached to a randomly chosen "primary" at a distance of 1-3 x the larger
half-light radius of the pair (stars count with half the mean PSF FWHM; never
closer than ``MIN_SEP_PIX`` pixels, so every object keeps its own centre
pixels); a primary and its secondaries form a blend group, placed as one unit.

Tile size: the image side is ``image_size`` when set, else the side (in whole
pixels, nearest) of a square of ``nobj / density`` arcmin^2, so the realised
density is the requested one up to that rounding (within ``1/side``
relative; ``TilePlan.density`` holds it). Nothing is changed silently: a
request the placement cannot meet is a one-line ``ConfigError``.

``placement: separated``
    Units are isolated: no light drawn for one unit (its objects' render stamps,
    ``render_size`` squares) falls on another unit's stamps (``box_size``
    squares), which stay at least ``SEP_GAP_PIX`` apart and inside the image.
    Units are placed one by one, largest first, at random positions where they
    meet no unit placed before. A random sequential packing jams well below full
    cover, so the exclusion squares (halfway between stamp and render stamp,
    exact for two equal units) may cover at most ``SEP_MAX_COVER`` of the image:
    a denser request is refused, naming the maximum density for these objects.

``placement: random``
    Units are placed uniformly at random (real tiles), so stamps overlap freely
    and neighbours' light enters every stamp. With ``clustering.frac`` > 0 that
    fraction of the units is gathered in clusters of ``clustering.members``
    units: cluster centres are uniform over the tile and a member's offset from
    its cluster centre is a circular Gaussian of ``clustering.sigma`` arcsec per
    axis, wrapped around the tile edges (periodic), so the mean density stays
    uniform. Two objects of different units are never closer than
    ``MIN_SEP_PIX`` (detection would not split them; each keeps its centre
    pixel in the seg map): a unit that lands too close to an earlier one, or
    with a member off the image, is drawn again.

Every draw comes from the tile's placement stream, so a seed gives the same
placement every time.
"""

from __future__ import annotations

import logging
import math
from typing import NamedTuple

import numpy as np
from scipy.spatial import cKDTree

from ..errors import ConfigError
from .catalog import rng_for

log = logging.getLogger(__name__)

STREAM_PLACE = 5

MIN_SEP_PIX = 3.0      # object centres at least this far apart: distinct centre pixels
SEP_GAP_PIX = 1.0      # separated: pixels between two units' stamps (integer stamps never touch)
SEP_MAX_COVER = 0.5    # separated: largest fraction of the image the exclusion squares cover
SEP_TRIES = 20000      # separated: random candidate positions per unit before giving up
RANDOM_ROUNDS = 1000   # random: redraw rounds for units too close to another
PLACEMENTS = ("separated", "random")


class Units(NamedTuple):
    """Blend groups ("units") of a tile: what is placed as one."""

    primary: np.ndarray      # (nunit,) object index of each unit's primary
    unit: np.ndarray         # (nobj,) unit index of each object
    offset: np.ndarray       # (nobj, 2) row, col offset (pixels) from the unit's primary

    def members(self, k: int) -> np.ndarray:
        return np.flatnonzero(self.unit == k)


def tile_side(nobj: int, cfg: dict) -> int:
    """Image side in pixels: ``image_size``, else the nearest whole side for ``density``."""
    if cfg["image_size"] is not None:
        return int(cfg["image_size"])
    side = math.sqrt(nobj / cfg["density"]) * 60.0 / cfg["pixel_scale"]
    return max(round(side), 1)


def realised_density(nobj: int, side: int, cfg: dict) -> float:
    """Objects per arcmin^2 of an image of ``side`` pixels."""
    return nobj / (side * cfg["pixel_scale"] / 60.0) ** 2


def _placement_hlr(cat: np.ndarray, cfg: dict) -> np.ndarray:
    psf_hlr = 0.25 * sum(cfg["psf"]["fwhm_range"])  # half the mean FWHM
    return np.where(cat["is_star"], psf_hlr, cat["hlr"])


def blend_units(cat: np.ndarray, rng: np.random.Generator, cfg: dict) -> Units:
    """Choose the secondaries and their offsets from their primaries (module doc);
    fills ``blend_parent`` and ``blend_dist`` of the secondaries."""
    nobj = len(cat)
    scale = cfg["pixel_scale"]
    nblend = round(cfg["blend_frac"] * nobj)
    if nblend > nobj - 1:
        log.warning("blend_frac %.3f leaves no primary; using %d blended objects",
                    cfg["blend_frac"], nobj - 1)
        nblend = nobj - 1
    secondary = np.zeros(nobj, dtype=bool)
    secondary[rng.choice(nobj, size=nblend, replace=False)] = True
    primaries = np.flatnonzero(~secondary)
    hlr = _placement_hlr(cat, cfg)

    offset = np.zeros((nobj, 2))
    unit = np.full(nobj, -1, dtype=np.int64)
    unit[primaries] = np.arange(primaries.size)
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
        unit[s] = unit[parent]
        members[parent].append(int(s))
        cat["blend_parent"][s] = cat["number"][parent]
        cat["blend_dist"][s] = dist / reach
    return Units(primaries, unit, offset)


# ------------------------------------------------------------------ separated


def _unit_extents(units: Units, half: np.ndarray) -> np.ndarray:
    """(nunit, 4) row_lo, row_hi, col_lo, col_hi around each unit's primary of the
    squares of half side ``half`` (per object) centred on its members."""
    nunit = units.primary.size
    ext = np.empty((nunit, 4))
    for axis in (0, 1):
        low, high = np.full(nunit, np.inf), np.full(nunit, -np.inf)
        np.minimum.at(low, units.unit, units.offset[:, axis] - half)
        np.maximum.at(high, units.unit, units.offset[:, axis] + half)
        ext[:, 2 * axis], ext[:, 2 * axis + 1] = low, high
    return ext


def _separated_extents(cat: np.ndarray, units: Units) -> tuple[np.ndarray, ...]:
    """Per unit: stamp extents, drawn-light (render stamp) extents, both grown by half
    the gap, and the packing extents halfway between them (the exclusion zone of two
    equal units)."""
    box = 0.5 * cat["box_size"].astype("f8") + 0.5 * SEP_GAP_PIX
    light = 0.5 * cat["render_size"].astype("f8") + 0.5 * SEP_GAP_PIX
    return (_unit_extents(units, box), _unit_extents(units, light),
            _unit_extents(units, 0.5 * (box + light)))


def separated_max_density(cat: np.ndarray, units: Units, cfg: dict) -> float:
    """Highest density (objects/arcmin^2) at which ``placement: separated`` is tried:
    the packing extents then cover ``SEP_MAX_COVER`` of the image."""
    pack = _separated_extents(cat, units)[2]
    area = float(np.sum((pack[:, 1] - pack[:, 0]) * (pack[:, 3] - pack[:, 2])))
    arcmin2 = area / SEP_MAX_COVER * (cfg["pixel_scale"] / 60.0) ** 2
    return len(cat) / arcmin2


def _overlap(a: np.ndarray, b: np.ndarray) -> bool:
    return a[0] < b[1] and b[0] < a[1] and a[2] < b[3] and b[2] < a[3]


class _UnitGrid:
    """Placed units binned by primary position in square cells wider than any two
    units' reach, so a new unit can only meet units of its own and the 8 surrounding
    cells."""

    def __init__(self, cell: float) -> None:
        self.cell = max(cell, 1.0)
        self.cells: dict[tuple[int, int], list[tuple[np.ndarray, np.ndarray]]] = {}

    def _key(self, pos: np.ndarray) -> tuple[int, int]:
        return int(pos[0] // self.cell), int(pos[1] // self.cell)

    def free(self, pos: np.ndarray, box: np.ndarray, light: np.ndarray) -> bool:
        """No light of the new unit on placed stamps, none of theirs on its stamps."""
        i, j = self._key(pos)
        for di in (-1, 0, 1):
            for dj in (-1, 0, 1):
                for other_box, other_light in self.cells.get((i + di, j + dj), ()):
                    if _overlap(box, other_light) or _overlap(light, other_box):
                        return False
        return True

    def add(self, pos: np.ndarray, box: np.ndarray, light: np.ndarray) -> None:
        self.cells.setdefault(self._key(pos), []).append((box, light))


def place_separated(cat: np.ndarray, units: Units, side: int, rng: np.random.Generator,
                    cfg: dict) -> np.ndarray:
    """Primary positions (nunit, 2) with no unit's drawn light on another's stamps
    (module doc)."""
    nobj = len(cat)
    box, light, pack = _separated_extents(cat, units)
    height, width = box[:, 1] - box[:, 0], box[:, 3] - box[:, 2]
    what = (f"image_size {side}" if cfg["image_size"] is not None
            else f"density {cfg['density']:g}")
    widest = float(np.max(np.maximum(height, width))) - SEP_GAP_PIX
    if widest > side:
        raise ConfigError(f"sim config: placement 'separated' with {what}: the tile of "
                          f"{nobj} objects is {side} pixels wide, too small for a "
                          f"{widest:.0f}-pixel group of stamps; lower density, or set "
                          f"image_size")
    top = separated_max_density(cat, units, cfg)
    if cfg["image_size"] is None and cfg["density"] > top:
        raise ConfigError(f"sim config: placement 'separated' cannot meet density "
                          f"{cfg['density']:g}: these {nobj} objects fit apart (no object's "
                          f"light on another group's stamps) up to {top:.2f} "
                          f"objects/arcmin^2; lower density, or use placement: random")
    if cfg["image_size"] is not None and realised_density(nobj, side, cfg) > top:
        need = math.ceil(side * math.sqrt(realised_density(nobj, side, cfg) / top))
        raise ConfigError(f"sim config: placement 'separated' cannot fit these {nobj} "
                          f"objects apart (no object's light on another group's stamps) "
                          f"in image_size {side}: it needs >= {need} pixels, or use "
                          f"placement: random")
    area = (pack[:, 1] - pack[:, 0]) * (pack[:, 3] - pack[:, 2])
    order = sorted(range(units.primary.size), key=lambda k: (-area[k], k))
    grid = _UnitGrid(2.0 * float(np.max(np.abs(light))))
    centres = np.empty((units.primary.size, 2))
    lo, hi = -0.5, side - 0.5  # the pixel grid in 0-offset coordinates
    for k in order:
        # the unit's stamps (without the gap) inside the image
        rlo, rhi, clo, chi = box[k] + np.array([0.5, -0.5, 0.5, -0.5]) * SEP_GAP_PIX
        hit = None
        for _ in range(0, SEP_TRIES, 64):
            cand = np.column_stack((rng.uniform(lo - rlo, hi - rhi, 64),
                                    rng.uniform(lo - clo, hi - chi, 64)))
            hit = next((c for c in cand if grid.free(c, box[k] + np.repeat(c, 2),
                                                     light[k] + np.repeat(c, 2))), None)
            if hit is not None:
                break
        if hit is None:
            raise ConfigError(f"sim config: placement 'separated' could not place {nobj} "
                              f"objects apart at {what} (random packing jammed; at most "
                              f"about {top:.2f} objects/arcmin^2 for these objects); lower "
                              f"density, or use placement: random")
        grid.add(hit, box[k] + np.repeat(hit, 2), light[k] + np.repeat(hit, 2))
        centres[k] = hit
    return centres


# ------------------------------------------------------------------ random


def _cluster_plan(nunit: int, side: int, rng: np.random.Generator, cfg: dict
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Cluster index of each unit (-1: not clustered) and the cluster centres."""
    clus = cfg["clustering"]
    which = np.full(nunit, -1, dtype=np.int64)
    nclustered = round(clus["frac"] * nunit)
    if nclustered == 0:
        return which, np.zeros((0, 2))
    ncluster = max(1, math.ceil(nclustered / clus["members"]))
    chosen = np.sort(rng.choice(nunit, size=nclustered, replace=False))
    which[chosen] = np.arange(nclustered) % ncluster
    centres = rng.uniform(-0.5, side - 0.5, size=(ncluster, 2))
    return which, centres


def _draw_units(idx: np.ndarray, which: np.ndarray, ccentres: np.ndarray, side: int,
                sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Positions of units ``idx``: uniform, or around their cluster centre (wrapped)."""
    pos = rng.uniform(-0.5, side - 0.5, size=(idx.size, 2))
    near = rng.standard_normal((idx.size, 2)) * sigma
    clustered = which[idx] >= 0
    if np.any(clustered):
        wrapped = ccentres[which[idx[clustered]]] + near[clustered] + 0.5
        pos[clustered] = np.mod(wrapped, side) - 0.5
    return pos


def place_random(cat: np.ndarray, units: Units, side: int, rng: np.random.Generator,
                 cfg: dict) -> np.ndarray:
    """Primary positions (nunit, 2), uniform or clustered (module doc); fills the
    ``cluster`` column."""
    nunit = units.primary.size
    which, ccentres = _cluster_plan(nunit, side, rng, cfg)
    cat["cluster"] = which[units.unit]
    sigma = cfg["clustering"]["sigma"] / cfg["pixel_scale"]
    centres = _draw_units(np.arange(nunit), which, ccentres, side, sigma, rng)
    for _ in range(RANDOM_ROUNDS):
        pos = centres[units.unit] + units.offset
        off = np.any((pos < -0.5) | (pos >= side - 0.5), axis=1)
        redo = set(units.unit[off].tolist())
        close = cKDTree(pos).query_pairs(MIN_SEP_PIX, output_type="ndarray")
        ui, uj = units.unit[close[:, 0]], units.unit[close[:, 1]]
        other = ui != uj
        redo.update(np.maximum(ui[other], uj[other]).tolist())  # the later unit moves
        if not redo:
            return centres
        idx = np.array(sorted(redo), dtype=np.int64)
        centres[idx] = _draw_units(idx, which, ccentres, side, sigma, rng)
    raise ConfigError(f"sim config: placement 'random' could not keep {len(cat)} objects "
                      f"{MIN_SEP_PIX:g} pixels apart in a {side}x{side} image (density or "
                      f"clustering too tight): lower density, or raise clustering.sigma")


# ------------------------------------------------------------------ both


def place_objects(cat: np.ndarray, seed: int, cfg: dict) -> int:
    """Assign blend groups and coadd positions (in place); return the image side."""
    rng = rng_for(seed, STREAM_PLACE)
    units = blend_units(cat, rng, cfg)
    side = tile_side(len(cat), cfg)
    if cfg["placement"] == "separated":
        centres = place_separated(cat, units, side, rng, cfg)
    else:
        centres = place_random(cat, units, side, rng, cfg)
    pos = centres[units.unit] + units.offset
    cat["row"], cat["col"] = pos[:, 0], pos[:, 1]
    # blend groups (units of 2+) numbered 0.. in object order
    counts = np.bincount(units.unit, minlength=units.primary.size)
    grouped = counts[units.unit] >= 2
    if np.any(grouped):
        _, first = np.unique(units.unit[grouped], return_index=True)
        labels = units.unit[grouped][np.sort(first)]
        remap = np.full(units.primary.size, -1, dtype=np.int64)
        remap[labels] = np.arange(labels.size)
        cat["blend_group"][grouped] = remap[units.unit[grouped]]
    log.info("placement %s: %d objects on %dx%d pixels, %.2f objects/arcmin^2",
             cfg["placement"], len(cat), side, side, realised_density(len(cat), side, cfg))
    return side
