"""``megamixit verify``: check collated catalogues against their MEDS files."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import InputFileError
from ..fitsfile import open_fits
from .layout import RunLayout
from .medsinfo import meds_ids
from .tilerecord import TileRecord


@dataclass
class VerifyResult:
    tile: str
    nobj: int = 0
    nflagged: int = 0
    flag_bits: dict[int, int] = field(default_factory=dict)   # bit value -> objects
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def flag_bits(flags: np.ndarray) -> dict[int, int]:
    """Objects per set bit value (one pass per bit, not per row)."""
    flags = np.asarray(flags, dtype=np.int64)
    out = {}
    for bit in range(63):
        n = int(np.count_nonzero(flags & (1 << bit)))
        if n:
            out[1 << bit] = n
    return out


def verify_tile(layout: RunLayout, rec: TileRecord) -> VerifyResult:
    """Readable; ids equal to the MEDS ids in order; row count; no duplicate; flags."""
    res = VerifyResult(rec.tile)
    path = layout.collated(rec.tile)
    if not path.exists():
        res.problems.append(f"{path}: not collated")
        return res
    try:
        with open_fits(path) as fits:
            ids = np.asarray(fits["model_fits"].read_column("id"), dtype=np.int64)
            cols = fits["model_fits"].get_colnames()
            flags = fits["model_fits"].read_column("flags") if "flags" in cols else None
    except Exception as err:  # any failure to read is the finding
        res.problems.append(f"{path}: unreadable ({str(err).strip().splitlines()[0]})")
        return res
    res.nobj = int(ids.size)
    if ids.size != rec.nobj:
        res.problems.append(f"{path}: {ids.size} rows, tile has {rec.nobj} objects")
    uniq, counts = np.unique(ids, return_counts=True)
    if np.any(counts > 1):
        res.problems.append(f"{path}: {int(np.sum(counts > 1))} duplicate id(s), "
                            f"e.g. {int(uniq[counts > 1][0])}")
    try:
        for mpath in rec.meds_paths(layout.run_dir):
            expected = meds_ids(mpath)
            if expected.size != ids.size or np.any(expected != ids):
                res.problems.append(f"{path}: ids differ from {mpath} (count or order)")
    except InputFileError as err:
        res.problems.append(str(err))
    if flags is None:
        res.problems.append(f"{path}: no 'flags' column")
    else:
        res.nflagged = int(np.count_nonzero(flags))
        res.flag_bits = flag_bits(flags)
    return res


def format_results(results: list[VerifyResult]) -> str:
    """A table of verify results, then one line per problem."""
    lines = [f"{'tile':<20} {'objects':>8} {'flagged':>8} {'status':>7}  flag bits (value:count)"]
    for r in results:
        bits = " ".join(f"{b}:{n}" for b, n in sorted(r.flag_bits.items())) or "-"
        lines.append(f"{r.tile:<20} {r.nobj:>8} {r.nflagged:>8} "
                     f"{'ok' if r.ok else 'FAILED':>7}  {bits}")
    for r in results:
        lines.extend(f"problem: {p}" for p in r.problems)
    return "\n".join(lines)
