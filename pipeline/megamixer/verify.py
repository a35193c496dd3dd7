"""``megamixit verify``: full check of collated catalogues, and their flag fractions.

A tile passes when its catalogue passes :func:`~.catalogue.check_catalogue`
(every HDU read and checksummed, complete, of the current set-up, ids equal to
the MEDS ids) and at most ``max_flagged_frac`` of its objects have non-zero
``flags`` (a run that fitted nothing never reads "ok").
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .catalogue import check_catalogue
from .layout import RunLayout
from .tilerecord import TileRecord

DEFAULT_MAX_FLAGGED_FRAC = 0.1


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

    @property
    def flagged_frac(self) -> float:
        return self.nflagged / self.nobj if self.nobj else 0.0


def flag_bits(flags: np.ndarray) -> dict[int, int]:
    """Objects per set bit value (one pass per bit, not per row)."""
    flags = np.asarray(flags, dtype=np.int64)
    out = {}
    for bit in range(63):
        n = int(np.count_nonzero(flags & (1 << bit)))
        if n:
            out[1 << bit] = n
    return out


def verify_tile(layout: RunLayout, rec: TileRecord,
                max_flagged_frac: float = DEFAULT_MAX_FLAGGED_FRAC) -> VerifyResult:
    """Full catalogue check plus the flagged-object fraction against its limit."""
    check = check_catalogue(layout, rec)
    res = VerifyResult(rec.tile, nobj=check.nobj, problems=list(check.problems))
    if check.flags is not None:
        res.nflagged = int(np.count_nonzero(check.flags))
        res.flag_bits = flag_bits(check.flags)
        if res.nobj and res.flagged_frac > max_flagged_frac:
            res.problems.append(f"tile {rec.tile}: {res.nflagged} of {res.nobj} objects "
                                f"({100 * res.flagged_frac:.1f}%) have non-zero flags, more "
                                f"than max_flagged_frac {100 * max_flagged_frac:.1f}%")
    return res


def format_results(results: list[VerifyResult]) -> str:
    """A table of verify results, then one line per problem."""
    lines = [f"{'tile':<20} {'objects':>8} {'flagged':>8} {'%':>6} {'status':>7}  "
             f"flag bits (value:count)"]
    for r in results:
        bits = " ".join(f"{b}:{n}" for b, n in sorted(r.flag_bits.items())) or "-"
        lines.append(f"{r.tile:<20} {r.nobj:>8} {r.nflagged:>8} {100 * r.flagged_frac:>6.1f} "
                     f"{'ok' if r.ok else 'FAILED':>7}  {bits}")
    for r in results:
        lines.extend(f"problem: {p}" for p in r.problems)
    return "\n".join(lines)
