"""Neighbour lists and friends-of-friends (FoF) groups.

Two ways to decide that objects i and j are neighbours:

``box`` (the DES ngmixer rule), on the coadd stamps of a MEDS file
    The box of i spans rows ``[orig_start_row, orig_start_row + box_size)`` and
    likewise columns (coadd cutout 0). A box of exactly ``maxsize_to_replace``
    pixels is grown, centred, to ``new_maxsize`` first. In each axis the overlap
    is ``min(end_j - start_i, end_i - start_j)``: the shared length for boxes
    that overlap partially (it also measures how deep a box nested inside
    another sits). i and j are neighbours when the overlap is ``>= buff`` in
    both rows and columns, with ``buff = buff_frac * f(box_i, box_j)`` and f the
    ``min``, ``max`` or sum (``tot``) of the two sizes.

``radius``, on the sky
    Each object gets a radius ``r = clip(radius_mult * size, min_radius,
    max_radius)`` in arcsec, where ``size`` is the ``radius_column`` of
    object_data (e.g. ``iso_radius``, pixels by default) or, when that is null,
    half the stamp side ``box_size / 2`` (pixels); pixels are converted with
    the coadd pixel scale. i and j are neighbours when their great-circle
    separation is ``< r_i + r_j + padding`` (arcsec).

With ``check_seg`` (either method), any other seg id found in i's coadd seg
stamp is also a neighbour of i (ids are mapped to objects by ``number``).
Objects without a coadd cutout (``ncutout == 0``) take part in no pair; they
still appear in both tables (no neighbours, a group of their own). For several
band files the union of the pairs is taken. Lists are symmetric.

FoF groups are the connected components of the neighbour graph, numbered
0..Nfof-1 in order of first appearance when objects are sorted by ``number``.

With ``max_group_size`` N, no group has more than N members (a chunk must
hold its groups; in a crowded tile the components can percolate through the
whole tile). Pairs are taken strongest first, by ``q = separation / (R_i +
R_j)`` (R: the object's radius for the radius method, half its stamp side for
the box method; separations on the sky or in coadd pixels to match; ties by
the pair's numbers), and a pair joins its two groups unless together they
would exceed N members. Components of at most N members come out whole (the
plain FoF groups); a larger one is split, and a pair left across two groups is
never stronger than the pairs that built them, so the closest neighbours stay
together. The rule depends on the whole tile only, never on the chunking. The
neighbour table keeps every pair.

Core algorithms are pure functions on numpy arrays (usable for any
catalogue); :func:`pairs_from_meds` is the thin layer that reads MEDS files.
Both pair searches use a KD-tree (O(N log N)): 100,000 objects take seconds.
"""

from __future__ import annotations

import itertools
import logging
import os
from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from .config import (AT_LEAST_ONE, NON_NEGATIVE, POSITIVE, Key, check_mapping, load_yaml_text,
                     raise_problems)
from .errors import InputFileError
from .fitsfile import atomic_fits, open_fits
from .ngmixer_keys import translate_nbrs

logger = logging.getLogger(__name__)

NBRS_DTYPE = np.dtype([("number", "i8"), ("nbr_number", "i8")])
FOFS_DTYPE = np.dtype([("fofid", "i8"), ("number", "i8")])
NBRS_EXTNAME = "nbrs"
FOFS_EXTNAME = "fofs"
ARCSEC_PER_RAD = 180.0 / np.pi * 3600.0

# ---------------------------------------------------------------------------
# configuration

NBRS_SCHEMA: dict[str, Key] = {
    "method": Key(str, "box", "neighbour rule: 'box' (coadd stamp overlap) or 'radius' (sky)",
                  choices=("box", "radius"), nullable=False),
    # box method
    "buff_type": Key(str, "min", "buffer from the min, max or sum (tot) of the two box sizes",
                     choices=("min", "max", "tot"), nullable=False),
    "buff_frac": Key(float, 0.25, "buffer = buff_frac * buff_type(box_i, box_j), pixels",
                     check=NON_NEGATIVE, nullable=False),
    "maxsize_to_replace": Key(int, None, "boxes of exactly this size are grown (null: none)",
                              check=AT_LEAST_ONE),
    "new_maxsize": Key(int, None, "size the replaced boxes grow to, centred",
                       check=AT_LEAST_ONE),
    # both methods
    "check_seg": Key(bool, True, "also link any other seg id inside the coadd seg stamp",
                     nullable=False),
    # radius method
    "radius_column": Key(str, None, "object_data column holding a radius (null: box_size/2)"),
    "radius_units": Key(str, "pixels", "units of radius_column", choices=("pixels", "arcsec"),
                        nullable=False),
    "radius_mult": Key(float, 1.0, "radius = radius_mult * size", check=NON_NEGATIVE,
                       nullable=False),
    "min_radius": Key(float, 0.0, "lower clip of the radius, arcsec", check=NON_NEGATIVE,
                      nullable=False),
    "max_radius": Key(float, None, "upper clip of the radius, arcsec (null: none)",
                      check=NON_NEGATIVE),
    "padding": Key(float, 0.0, "added to r_i + r_j, arcsec", check=NON_NEGATIVE,
                   nullable=False),
    "pixel_scale": Key(float, None, "arcsec/pixel; null: from the coadd Jacobian columns",
                       check=POSITIVE),
    # groups
    "max_group_size": Key(int, None, "larger FoF groups are split, strongest pairs first "
                          "(null: no limit)", check=AT_LEAST_ONE),
}


def _cross_problems(conf: Mapping[str, Any]) -> list[str]:
    def num(key):
        value = conf.get(key)
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    problems = []
    if (conf.get("maxsize_to_replace") is None) != (conf.get("new_maxsize") is None):
        problems.append("'maxsize_to_replace' and 'new_maxsize' must be given together")
    elif None not in (num("new_maxsize"), num("maxsize_to_replace")) \
            and num("new_maxsize") < num("maxsize_to_replace"):
        problems.append("'new_maxsize' must be >= 'maxsize_to_replace'")
    if None not in (num("max_radius"), num("min_radius")) and num("max_radius") < num("min_radius"):
        problems.append("'max_radius' must be >= 'min_radius'")
    return problems


def check_nbrs_config(conf: Mapping[str, Any], source: str = "config",
                      text: str | None = None) -> dict:
    """Validate a neighbour config (ngmixer's nested ``nbrs:`` form accepted; schema,
    value ranges, cross-key rules: every problem in one ConfigError); return it with
    defaults. A translated ngmixer config keeps ``_ngmixer`` (original text, notes)."""
    tr = translate_nbrs(dict(conf))
    problems = list(tr.problems)
    out = check_mapping(tr.data, NBRS_SCHEMA, problems, also_known=("nbrs", "run"))
    problems += _cross_problems(out)
    raise_problems(source, problems)
    if tr.translated:
        out["_ngmixer"] = tr.record(text if text is not None else "")
    return out


def load_nbrs_config(path: str | os.PathLike) -> dict:
    """Load and validate a neighbour config YAML file."""
    text, data = load_yaml_text(path)
    return check_nbrs_config(data, source=os.fspath(path), text=text)


# ---------------------------------------------------------------------------
# pair helpers


def _flatten_ball(results: Sequence, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Turn cKDTree.query_ball_point lists into (query index, match index) arrays."""
    lens = np.fromiter(map(len, results), dtype=np.int64, count=n)
    j = np.fromiter(itertools.chain.from_iterable(results), dtype=np.int64, count=int(lens.sum()))
    i = np.repeat(np.arange(n, dtype=np.int64), lens)
    return i, j


def canonical_pairs(i: np.ndarray, j: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Unique unordered pairs ``(a, b)`` with ``a < b``, sorted; self pairs dropped."""
    i = np.asarray(i, dtype=np.int64)
    j = np.asarray(j, dtype=np.int64)
    keep = i != j
    a = np.minimum(i[keep], j[keep])
    b = np.maximum(i[keep], j[keep])
    key = np.unique(a * np.int64(n) + b)
    return key // n, key % n


def union_pairs(pair_list: Sequence[tuple[np.ndarray, np.ndarray]], n: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """Union of several pair lists over the same ``n`` objects."""
    if not pair_list:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    i = np.concatenate([p[0] for p in pair_list])
    j = np.concatenate([p[1] for p in pair_list])
    return canonical_pairs(i, j, n)


def _valid_index(n: int, valid: np.ndarray | None) -> np.ndarray:
    if valid is None:
        return np.arange(n, dtype=np.int64)
    valid = np.asarray(valid, dtype=bool)
    if valid.shape != (n,):
        raise ValueError(f"valid has shape {valid.shape}, expected ({n},)")
    return np.flatnonzero(valid)


# ---------------------------------------------------------------------------
# box method


def replace_maxsize(start_row: np.ndarray, start_col: np.ndarray, box_size: np.ndarray,
                    maxsize_to_replace: int | None, new_maxsize: int | None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Grow boxes of exactly ``maxsize_to_replace`` to ``new_maxsize``, keeping the centre."""
    row = np.array(start_row, dtype=np.int64)
    col = np.array(start_col, dtype=np.int64)
    size = np.array(box_size, dtype=np.int64)
    if maxsize_to_replace is None or new_maxsize is None:
        return row, col, size
    hit = size == maxsize_to_replace
    shift = (new_maxsize - maxsize_to_replace) // 2
    row[hit] -= shift
    col[hit] -= shift
    size[hit] = new_maxsize
    return row, col, size


def box_buffer(size_i: np.ndarray, size_j: np.ndarray, buff_type: str, buff_frac: float
               ) -> np.ndarray:
    """The overlap (pixels) two boxes need to be neighbours."""
    if buff_type == "min":
        base = np.minimum(size_i, size_j)
    elif buff_type == "max":
        base = np.maximum(size_i, size_j)
    elif buff_type == "tot":
        base = size_i + size_j
    else:
        raise ValueError(f"buff_type must be min, max or tot, got {buff_type!r}")
    return buff_frac * base


def box_pairs(start_row: np.ndarray, start_col: np.ndarray, box_size: np.ndarray,
              buff_type: str = "min", buff_frac: float = 0.25,
              valid: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of boxes that overlap by ``>= buff`` in rows and columns (module docstring).

    Boxes are ``[start, start + size)`` in both axes (apply :func:`replace_maxsize`
    first if wanted). Returns unique pairs ``(a, b)``, ``a < b``, as indices into the
    input arrays; objects with ``valid`` False are left out.
    """
    if buff_frac < 0:
        raise ValueError("buff_frac must be >= 0")
    n = len(box_size)
    idx = _valid_index(n, valid)
    if idx.size < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    r0 = np.asarray(start_row, dtype=np.int64)[idx]
    c0 = np.asarray(start_col, dtype=np.int64)[idx]
    sz = np.asarray(box_size, dtype=np.int64)[idx]
    centres = np.column_stack((r0 + 0.5 * sz, c0 + 0.5 * sz))
    # Neighbours have |centre_i - centre_j| <= (s_i + s_j)/2 in both axes, so a
    # Chebyshev ball of radius s_i around i finds every neighbour j with
    # s_j <= s_i; each pair is therefore found from its larger member.
    tree = cKDTree(centres)
    found = tree.query_ball_point(centres, r=sz + 0.5, p=np.inf, return_sorted=False)
    qi, qj = _flatten_ball(found, idx.size)
    keep = qi != qj
    qi, qj = qi[keep], qj[keep]
    ov_row = np.minimum(r0[qj] + sz[qj] - r0[qi], r0[qi] + sz[qi] - r0[qj])
    ov_col = np.minimum(c0[qj] + sz[qj] - c0[qi], c0[qi] + sz[qi] - c0[qj])
    buff = box_buffer(sz[qi], sz[qj], buff_type, buff_frac)
    ok = (ov_row >= buff) & (ov_col >= buff)
    return canonical_pairs(idx[qi[ok]], idx[qj[ok]], n)


# ---------------------------------------------------------------------------
# seg method


def seg_pairs(numbers: np.ndarray, owner: np.ndarray, seg_ids: np.ndarray,
              valid: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Pairs from seg ids seen in stamps.

    ``owner[k]`` is the index of the object in whose coadd seg stamp the id
    ``seg_ids[k]`` was seen (repeats are fine). Ids <= 0, the owner's own number,
    numbers not in the catalogue and objects with ``valid`` False are ignored.
    """
    numbers = np.asarray(numbers, dtype=np.int64)
    n = numbers.size
    owner = np.asarray(owner, dtype=np.int64)
    seg_ids = np.asarray(seg_ids, dtype=np.int64)
    order = np.argsort(numbers, kind="stable")
    pos = np.searchsorted(numbers, seg_ids, sorter=order)
    pos = np.clip(pos, 0, max(n - 1, 0))
    known = (seg_ids > 0) & (n > 0)
    if n:
        known &= numbers[order[pos]] == seg_ids
    other = order[pos]
    if valid is not None:
        valid = np.asarray(valid, dtype=bool)
        known &= valid[owner] & valid[other]
    nunknown = int(np.count_nonzero((seg_ids > 0) & ~known))
    if nunknown:
        logger.debug("seg: %d seg ids not linked (unknown number or no coadd)", nunknown)
    return canonical_pairs(owner[known], other[known], n)


# ---------------------------------------------------------------------------
# radius method


def sky_radii(size_arcsec: np.ndarray, radius_mult: float = 1.0, min_radius: float = 0.0,
              max_radius: float | None = None) -> np.ndarray:
    """``clip(radius_mult * size, min_radius, max_radius)``, arcsec."""
    r = radius_mult * np.asarray(size_arcsec, dtype=np.float64)
    return np.clip(r, min_radius, np.inf if max_radius is None else max_radius)


def unit_vectors(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """(N, 3) unit vectors for ra, dec in degrees."""
    ra = np.radians(np.asarray(ra, dtype=np.float64))
    dec = np.radians(np.asarray(dec, dtype=np.float64))
    cd = np.cos(dec)
    return np.column_stack((cd * np.cos(ra), cd * np.sin(ra), np.sin(dec)))


def separation_arcsec(xyz1: np.ndarray, xyz2: np.ndarray) -> np.ndarray:
    """Great-circle separation of unit vectors, arcsec (atan2 form: accurate at all angles)."""
    cross = np.linalg.norm(np.cross(xyz1, xyz2), axis=-1)
    dot = np.sum(xyz1 * xyz2, axis=-1)
    return np.arctan2(cross, dot) * ARCSEC_PER_RAD


def radius_pairs(ra: np.ndarray, dec: np.ndarray, radius: np.ndarray, padding: float = 0.0,
                 valid: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Pairs with separation ``< radius_i + radius_j + padding`` (all in arcsec).

    ra, dec in degrees. Returns unique pairs ``(a, b)``, ``a < b``.
    """
    n = len(ra)
    idx = _valid_index(n, valid)
    if idx.size < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    xyz = unit_vectors(np.asarray(ra)[idx], np.asarray(dec)[idx])
    rad = np.asarray(radius, dtype=np.float64)[idx]
    if np.any(~np.isfinite(rad)) or np.any(rad < 0):
        raise ValueError("radii must be finite and >= 0")
    # A pair with r_j <= r_i has separation < 2 r_i + padding: query each object
    # with that angle (as a 3-d chord, slightly enlarged against rounding) so
    # every pair is found from its larger member; the exact test follows.
    theta = np.minimum((2.0 * rad + padding) / ARCSEC_PER_RAD, np.pi)
    chord = 2.0 * np.sin(0.5 * theta) * (1.0 + 1e-9) + 1e-12
    tree = cKDTree(xyz)
    found = tree.query_ball_point(xyz, r=chord, return_sorted=False)
    qi, qj = _flatten_ball(found, idx.size)
    keep = qi != qj
    qi, qj = qi[keep], qj[keep]
    sep = separation_arcsec(xyz[qi], xyz[qj])
    ok = sep < rad[qi] + rad[qj] + padding
    return canonical_pairs(idx[qi[ok]], idx[qj[ok]], n)


# ---------------------------------------------------------------------------
# tables and FoF groups


def _check_numbers(numbers: np.ndarray) -> np.ndarray:
    numbers = np.asarray(numbers, dtype=np.int64)
    if numbers.ndim != 1:
        raise ValueError("numbers must be 1-d")
    if np.unique(numbers).size != numbers.size:
        raise ValueError("object numbers are not unique")
    return numbers


def make_nbrs_table(numbers: np.ndarray, pair_i: np.ndarray, pair_j: np.ndarray) -> np.ndarray:
    """Symmetric neighbour table from unordered index pairs.

    One row per (object, neighbour) in both directions; an object without
    neighbours gets one row with ``nbr_number = -1``. Rows sorted by
    ``number`` then ``nbr_number``.
    """
    numbers = _check_numbers(numbers)
    n = numbers.size
    pi = np.asarray(pair_i, dtype=np.int64)
    pj = np.asarray(pair_j, dtype=np.int64)
    src = np.concatenate((pi, pj))
    dst = np.concatenate((pj, pi))
    lonely = np.flatnonzero(np.bincount(src, minlength=n) == 0)
    out = np.empty(src.size + lonely.size, dtype=NBRS_DTYPE)
    out["number"] = np.concatenate((numbers[src], numbers[lonely]))
    out["nbr_number"] = np.concatenate((numbers[dst], np.full(lonely.size, -1, np.int64)))
    order = np.lexsort((out["nbr_number"], out["number"]))
    return out[order]


def pairs_from_nbrs_table(nbrs: np.ndarray, numbers: np.ndarray | None = None
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inverse of :func:`make_nbrs_table`: ``(numbers, pair_i, pair_j)``.

    ``numbers`` defaults to the sorted unique numbers in the table; a
    neighbour number missing from it raises ``ValueError``.
    """
    if numbers is None:
        numbers = np.unique(nbrs["number"])
    numbers = _check_numbers(numbers)
    has = nbrs["nbr_number"] >= 0
    order = np.argsort(numbers, kind="stable")
    a, b = nbrs["number"][has], nbrs["nbr_number"][has]
    ia = order[np.clip(np.searchsorted(numbers, a, sorter=order), 0, numbers.size - 1)]
    ib = order[np.clip(np.searchsorted(numbers, b, sorter=order), 0, numbers.size - 1)]
    if np.any(numbers[ia] != a) or np.any(numbers[ib] != b):
        raise ValueError("neighbour table refers to numbers not in the catalogue")
    pi, pj = canonical_pairs(ia, ib, numbers.size)
    return numbers, pi, pj


def _renumber(labels: np.ndarray, numbers: np.ndarray) -> np.ndarray:
    """Group labels renumbered 0..N-1 in order of first appearance by number."""
    by_number = np.argsort(numbers, kind="stable")
    uniq, inverse = np.unique(labels, return_inverse=True)
    _, first = np.unique(inverse[by_number], return_index=True)
    remap = np.empty(uniq.size, np.int64)
    remap[np.argsort(first)] = np.arange(uniq.size)
    return remap[inverse.reshape(-1)]


def fof_labels(numbers: np.ndarray, pair_i: np.ndarray, pair_j: np.ndarray) -> np.ndarray:
    """FoF id per object (input order): connected components of the pair graph,
    renumbered 0..Nfof-1 in order of first appearance when sorted by number."""
    numbers = _check_numbers(numbers)
    n = numbers.size
    if n == 0:
        return np.zeros(0, np.int64)
    pi = np.asarray(pair_i, dtype=np.int64)
    pj = np.asarray(pair_j, dtype=np.int64)
    graph = coo_matrix((np.ones(pi.size, np.int8), (pi, pj)), shape=(n, n)).tocsr()
    _, labels = connected_components(graph, directed=False)
    return _renumber(labels, numbers)


def split_labels(numbers: np.ndarray, pair_i: np.ndarray, pair_j: np.ndarray,
                 ratio: np.ndarray, max_size: int) -> np.ndarray:
    """Group id per object (input order, numbered as :func:`fof_labels`) with no group
    above ``max_size`` members: pairs in order of ``ratio`` (smaller first; ties by the
    numbers of the pair) join their groups unless the result would exceed ``max_size``
    (module docstring). Without such a component this equals :func:`fof_labels`."""
    from .nbrs_nb import capped_union_nb

    numbers = _check_numbers(numbers)
    if max_size < 1:
        raise ValueError("max_size must be >= 1")
    if numbers.size == 0:
        return np.zeros(0, np.int64)
    pi = np.asarray(pair_i, dtype=np.int64)
    pj = np.asarray(pair_j, dtype=np.int64)
    ratio = np.asarray(ratio, dtype=np.float64)
    if ratio.shape != pi.shape or np.any(np.isnan(ratio)):
        raise ValueError("ratio must hold one number per pair")
    lo, hi = np.minimum(numbers[pi], numbers[pj]), np.maximum(numbers[pi], numbers[pj])
    order = np.lexsort((hi, lo, ratio))
    roots = capped_union_nb(numbers.size, pi[order], pj[order], int(max_size))
    return _renumber(roots, numbers)


def make_fofs_table(numbers: np.ndarray, pair_i: np.ndarray, pair_j: np.ndarray) -> np.ndarray:
    """FoF table (``fofid``, ``number``), rows sorted by number."""
    numbers = _check_numbers(numbers)
    labels = fof_labels(numbers, pair_i, pair_j)
    order = np.argsort(numbers, kind="stable")
    out = np.empty(numbers.size, dtype=FOFS_DTYPE)
    out["fofid"] = labels[order]
    out["number"] = numbers[order]
    return out


def fofs_from_nbrs(nbrs: np.ndarray) -> np.ndarray:
    """FoF table from a neighbour table (every object must have a row)."""
    numbers, pi, pj = pairs_from_nbrs_table(nbrs)
    return make_fofs_table(numbers, pi, pj)


class FofBounds(NamedTuple):
    """Members of FoF groups in group order.

    Rows of the FoF table belonging to group k are ``order[start[k]:end[k]]``
    (in number order); groups ``a..b`` inclusive are the contiguous slice
    ``order[start[a]:end[b]]``.
    """

    order: np.ndarray
    start: np.ndarray
    end: np.ndarray


def fof_group_bounds(fofs: np.ndarray) -> FofBounds:
    """Index a FoF table by group: see :class:`FofBounds`.

    Requires fofids 0..Nfof-1 with no empty group (as written by this module).
    """
    fofid = np.asarray(fofs["fofid"], dtype=np.int64)
    if fofid.size == 0:
        z = np.zeros(0, np.int64)
        return FofBounds(z, z, z)
    if fofid.min() < 0:
        raise ValueError("negative fofid")
    counts = np.bincount(fofid)
    if np.any(counts == 0):
        raise ValueError(f"fofids are not contiguous: {int(np.sum(counts == 0))} ids unused")
    # within a group keep number order (tables are sorted by number)
    order = np.lexsort((np.asarray(fofs["number"]), fofid))
    end = np.cumsum(counts)
    return FofBounds(order, end - counts, end)


def fof_members(fofs: np.ndarray, first: int, last: int,
                numbers: np.ndarray | None = None,
                bounds: FofBounds | None = None) -> np.ndarray:
    """Indices of the objects in FoF groups ``first..last`` (inclusive), group by group.

    Without ``numbers`` the indices are rows of ``fofs``; with ``numbers`` (e.g. the
    MEDS ``number`` column) they are positions in that array, for a MEDS file
    whose object order differs from the FoF table's. Pass ``bounds`` from
    :func:`fof_group_bounds` to avoid recomputing it for every chunk.
    """
    b = fof_group_bounds(fofs) if bounds is None else bounds
    nfof = b.start.size
    if not (0 <= first <= last < nfof):
        raise ValueError(f"FoF range {first},{last} outside 0..{nfof - 1}")
    rows = b.order[b.start[first]:b.end[last]]
    if numbers is None:
        return rows
    numbers = np.asarray(numbers, dtype=np.int64)
    want = np.asarray(fofs["number"], dtype=np.int64)[rows]
    order = np.argsort(numbers, kind="stable")
    pos = order[np.clip(np.searchsorted(numbers, want, sorter=order), 0, max(numbers.size - 1, 0))]
    if numbers.size == 0 or np.any(numbers[pos] != want):
        raise ValueError("FoF table has numbers missing from the object catalogue")
    return pos


class FofSummary(NamedTuple):
    nobj: int
    npairs: int
    ngroups: int
    ngroups_multi: int
    largest: int

    def line(self) -> str:
        frac = self.ngroups_multi / self.ngroups if self.ngroups else 0.0
        return (f"{self.nobj} objects, {self.npairs} neighbour pairs, {self.ngroups} FoF groups, "
                f"{self.ngroups_multi} with >=2 members ({100 * frac:.1f}%), "
                f"largest group {self.largest}")


def summarize(fofs: np.ndarray, npairs: int) -> FofSummary:
    """Counts for the one-line CLI summary."""
    counts = np.bincount(fofs["fofid"]) if len(fofs) else np.zeros(0, np.int64)
    return FofSummary(len(fofs), int(npairs), int(counts.size),
                      int(np.count_nonzero(counts >= 2)), int(counts.max(initial=0)))


# ---------------------------------------------------------------------------
# file I/O


def write_nbrs(path: str | os.PathLike, nbrs: np.ndarray, clobber: bool = True,
               header: list[dict] | None = None) -> None:
    """Write a neighbour table atomically as FITS extension ``nbrs``.

    ``header``: records naming what the table was built from
    (:func:`pipeline.identity.catalog_header`), checked by ngmixit.
    """
    _write_table(path, nbrs.astype(NBRS_DTYPE, copy=False), NBRS_EXTNAME, clobber, header)


def write_fofs(path: str | os.PathLike, fofs: np.ndarray, clobber: bool = True,
               header: list[dict] | None = None) -> None:
    """Write a FoF table atomically as FITS extension ``fofs`` (``header`` as above)."""
    _write_table(path, fofs.astype(FOFS_DTYPE, copy=False), FOFS_EXTNAME, clobber, header)


def _write_table(path, data: np.ndarray, extname: str, clobber: bool,
                 header: list[dict] | None) -> None:
    with atomic_fits(path, clobber=clobber) as fits:
        fits.write(data, extname=extname, header=header)


def _read_table(path, extname: str, columns: Sequence[str]) -> np.ndarray:
    """Read table ``extname`` (or HDU 1 of an unnamed legacy file) with ``columns``."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise InputFileError(path, f"{extname} file not found")
    try:
        with open_fits(path) as fits:
            if extname in fits:
                hdu = fits[extname]
            elif len(fits) > 1 and fits[1].get_extname() == "":
                hdu = fits[1]  # ngmixer wrote these tables without an extension name
            else:
                raise InputFileError(path, f"no '{extname}' extension")
            if hdu.get_exttype() == "IMAGE_HDU":
                raise InputFileError(path, f"extension '{extname}' is not a table")
            names = [c.lower() for c in hdu.get_colnames()]
            missing = [c for c in columns if c not in names]
            if missing:
                raise InputFileError(path, f"'{extname}' table lacks column(s) {', '.join(missing)}")
            raw = hdu.read(columns=list(columns), lower=True)
    except InputFileError:
        raise
    except (OSError, ValueError) as err:
        msg = str(err).strip().splitlines()
        raise InputFileError(path, f"cannot read FITS {extname} table: "
                                   f"{msg[0] if msg else type(err).__name__}") from None
    out = np.empty(len(raw), dtype=[(c, "i8") for c in columns])
    for c in columns:
        if raw[c].ndim != 1 or raw[c].dtype.kind not in "iu":
            raise InputFileError(path, f"column '{c}' must be a scalar integer column")
        out[c] = raw[c]
    return out


def read_nbrs(path: str | os.PathLike) -> np.ndarray:
    """Read a neighbour file (``number``, ``nbr_number``); bad files -> one-line error."""
    nbrs = _read_table(path, NBRS_EXTNAME, ("number", "nbr_number"))
    if np.any(nbrs["number"] < 0):
        raise InputFileError(path, "negative object number in nbrs table")
    return nbrs


def read_fofs(path: str | os.PathLike) -> np.ndarray:
    """Read a FoF file (``fofid``, ``number``) and check it is usable for chunking."""
    fofs = _read_table(path, FOFS_EXTNAME, ("fofid", "number"))
    if len(fofs) == 0:
        raise InputFileError(path, "fofs table is empty")
    if np.unique(fofs["number"]).size != len(fofs):
        raise InputFileError(path, "fofs table lists an object number more than once")
    if fofs["fofid"].min() < 0:
        raise InputFileError(path, "negative fofid in fofs table")
    if np.any(np.bincount(fofs["fofid"]) == 0):
        raise InputFileError(path, "fofids are not contiguous 0..N-1")
    return fofs


# ---------------------------------------------------------------------------
# MEDS layer


def _coadd_pixel_scale(cat: np.ndarray, path: str) -> np.ndarray:
    names = cat.dtype.names
    need = ("dudrow", "dudcol", "dvdrow", "dvdcol")
    if not all(c in names for c in need):
        raise InputFileError(path, "object_data has no Jacobian columns; set 'pixel_scale' "
                                   "in the neighbour config")
    det = cat["dudrow"][:, 0] * cat["dvdcol"][:, 0] - cat["dudcol"][:, 0] * cat["dvdrow"][:, 0]
    return np.sqrt(np.abs(det))


def _radius_arcsec(cat: np.ndarray, conf: Mapping[str, Any], path: str,
                   valid: np.ndarray) -> np.ndarray:
    col = conf["radius_column"]
    if col is None:
        size, units = 0.5 * cat["box_size"].astype(np.float64), "pixels"
    else:
        if col not in cat.dtype.names:
            raise InputFileError(path, f"object_data has no column '{col}' (radius_column)")
        size, units = np.asarray(cat[col], dtype=np.float64), conf["radius_units"]
        if size.ndim != 1:
            raise InputFileError(path, f"radius_column '{col}' must be a scalar column")
    if units == "pixels":
        scale = conf["pixel_scale"] if conf["pixel_scale"] is not None else \
            _coadd_pixel_scale(cat, path)
        size = size * scale
    bad = valid & ~(np.isfinite(size) & (size >= 0))
    if np.any(bad):
        # e.g. a -9999 sentinel: fall back to min_radius rather than failing the tile
        logger.warning("%s: %d objects have an invalid radius; using min_radius", path,
                       int(bad.sum()))
        size = np.where(bad, 0.0, size)
    return sky_radii(np.where(valid, size, 0.0), conf["radius_mult"], conf["min_radius"],
                     conf["max_radius"])


def _seg_ids_from_meds(m, path: str, numbers: np.ndarray, valid: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
    if not m.has_cutout_type("seg"):
        raise InputFileError(path, "check_seg is true but the file has no seg cutouts "
                                   "(set check_seg: false)")
    owners, ids = [], []
    for iobj in np.flatnonzero(valid):
        seg = m.get_cutout(int(iobj), 0, type="seg")
        u = np.unique(seg)
        u = u[(u > 0) & (u != numbers[iobj])]
        if u.size:
            owners.append(np.full(u.size, iobj, np.int64))
            ids.append(u.astype(np.int64))
    if not ids:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(owners), np.concatenate(ids)


def catalog_numbers(cat: np.ndarray) -> np.ndarray:
    """Object ``number`` column, or index+1 when absent (docs/meds.rst)."""
    if "number" in cat.dtype.names:
        return np.asarray(cat["number"], dtype=np.int64)
    return np.arange(1, len(cat) + 1, dtype=np.int64)


def _coadd_starts(cat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Coadd (cutout 0) stamp corners."""
    if cat["orig_start_row"].ndim == 2:
        return cat["orig_start_row"][:, 0], cat["orig_start_col"][:, 0]
    return cat["orig_start_row"], cat["orig_start_col"]


def link_ratios(cat: np.ndarray, conf: Mapping[str, Any], pair_i: np.ndarray,
                pair_j: np.ndarray, path: str = "catalogue") -> np.ndarray:
    """``q = separation / (R_i + R_j)`` of each pair, the strength order of the group
    split (module docstring): box method in coadd pixels with R half the (replaced)
    stamp side, radius method on the sky with R the radius. Pairs of objects whose
    R are both 0 get ``inf``."""
    pi = np.asarray(pair_i, dtype=np.int64)
    pj = np.asarray(pair_j, dtype=np.int64)
    if conf["method"] == "box":
        srow, scol = _coadd_starts(cat)
        row, col, size = replace_maxsize(srow, scol, cat["box_size"],
                                         conf["maxsize_to_replace"], conf["new_maxsize"])
        reach = 0.5 * size
        centre = np.column_stack((row + reach, col + reach))
        sep = np.hypot(*(centre[pi] - centre[pj]).T)
    else:
        valid = np.zeros(len(cat), dtype=bool)
        valid[pi] = valid[pj] = True
        reach = _radius_arcsec(cat, conf, path, valid)
        xyz = unit_vectors(cat["ra"], cat["dec"])
        sep = separation_arcsec(xyz[pi], xyz[pj])
    denom = reach[pi] + reach[pj]
    return np.divide(sep, denom, out=np.full(sep.shape, np.inf), where=denom > 0)


def pairs_from_catalog(cat: np.ndarray, conf: Mapping[str, Any], path: str = "catalogue",
                       seg_ids: tuple[np.ndarray, np.ndarray] | None = None
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Neighbour pairs for one band's object_data table (+ optional seg ids).

    ``seg_ids`` = ``(owner index, seg id)`` arrays, used when ``check_seg`` is on.
    """
    numbers = catalog_numbers(cat)
    n = len(cat)
    srow, scol = _coadd_starts(cat)
    valid = (np.asarray(cat["ncutout"]) > 0) & (srow != -9999) & (scol != -9999)
    found = []
    if conf["method"] == "box":
        row, col, size = replace_maxsize(srow, scol, cat["box_size"],
                                         conf["maxsize_to_replace"], conf["new_maxsize"])
        found.append(box_pairs(row, col, size, conf["buff_type"], conf["buff_frac"], valid))
    else:
        radius = _radius_arcsec(cat, conf, path, valid)
        found.append(radius_pairs(cat["ra"], cat["dec"], radius, conf["padding"], valid))
    if conf["check_seg"] and seg_ids is not None:
        found.append(seg_pairs(numbers, seg_ids[0], seg_ids[1], valid))
    return union_pairs(found, n)


REQUIRED_COLUMNS = ("ncutout", "box_size", "orig_start_row", "orig_start_col", "ra", "dec")


def pairs_from_meds(paths: Sequence[str | os.PathLike], conf: Mapping[str, Any]
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Read band MEDS files and return ``(numbers, ra, dec, pair_i, pair_j)``.

    All files must list the same objects (same count and numbers); the pairs
    are the union over files.
    """
    from .meds import MEDS

    numbers = ra = dec = None
    found = []
    first_path = None
    for p in paths:
        path = os.fspath(p)
        if not os.path.exists(path):
            raise InputFileError(path, "MEDS file not found")
        with MEDS(path) as m:
            cat = m.get_cat()
            missing = [c for c in REQUIRED_COLUMNS if c not in cat.dtype.names]
            if missing:
                raise InputFileError(path, f"object_data lacks column(s) {', '.join(missing)}")
            these = catalog_numbers(cat)
            if numbers is None:
                numbers, ra, dec, first_path = these, np.asarray(cat["ra"]), \
                    np.asarray(cat["dec"]), path
                if np.unique(numbers).size != numbers.size:
                    raise InputFileError(path, "object 'number' values are not unique")
            elif these.size != numbers.size:
                raise InputFileError(path, f"has {these.size} objects but {first_path} has "
                                           f"{numbers.size}")
            elif np.any(these != numbers):
                raise InputFileError(path, f"object numbers differ from {first_path}")
            seg = None
            if conf["check_seg"]:
                valid = np.asarray(cat["ncutout"]) > 0
                seg = _seg_ids_from_meds(m, path, these, valid)
            found.append(pairs_from_catalog(cat, conf, path, seg))
            logger.info("%s: %d objects, %d pairs", path, these.size, found[-1][0].size)
    if numbers is None:
        raise ValueError("no MEDS files given")
    pi, pj = union_pairs(found, numbers.size)
    return numbers, ra, dec, pi, pj


class Groups(NamedTuple):
    """Neighbour pairs and groups of a tile (per object arrays in MEDS order)."""

    numbers: np.ndarray
    ra: np.ndarray
    dec: np.ndarray
    pair_i: np.ndarray
    pair_j: np.ndarray
    fofid: np.ndarray

    def fofs_table(self) -> np.ndarray:
        """FoF table (``fofid``, ``number``), rows sorted by number."""
        order = np.argsort(self.numbers, kind="stable")
        out = np.empty(self.numbers.size, dtype=FOFS_DTYPE)
        out["fofid"], out["number"] = self.fofid[order], self.numbers[order]
        return out

    def nbrs_table(self) -> np.ndarray:
        return make_nbrs_table(self.numbers, self.pair_i, self.pair_j)


def build_groups(paths: Sequence[str | os.PathLike], conf: Mapping[str, Any]) -> Groups:
    """Neighbour pairs from band MEDS files and the FoF groups, split to at most
    ``max_group_size`` members when set (module docstring)."""
    numbers, ra, dec, pi, pj = pairs_from_meds(paths, conf)
    labels = fof_labels(numbers, pi, pj)
    cap = conf.get("max_group_size")
    if cap is not None and labels.size and np.bincount(labels).max() > cap:
        from .meds import MEDS

        path = os.fspath(paths[0])
        with MEDS(path) as m:
            ratio = link_ratios(m.get_cat(), conf, pi, pj, path)
        largest = int(np.bincount(labels).max())
        labels = split_labels(numbers, pi, pj, ratio, cap)
        logger.info("groups split to at most %d members (largest FoF component %d)", cap,
                    largest)
    return Groups(numbers, ra, dec, pi, pj, labels)
