"""Output rows with the conventional defaults for unfit quantities.

A number that was not measured is -9999 (:data:`DEFVAL`), its error 9999
(:data:`BIGVAL`), and a flags column starts as NO_ATTEMPT: a row that no fitter
touched can never pass for a fit.
"""

from __future__ import annotations

import functools
import re

import numpy as np

from .gmix import flags as F
from .gmix.flags import BIGVAL, DEFVAL

_METACAL_SUFFIX = re.compile(r"_[12][pm]$")


def default_row(dtype: np.dtype) -> np.ndarray:
    """One row with the conventional defaults for unfit quantities."""
    row = np.zeros(1, dtype=dtype)
    for name in dtype.names:
        kind = dtype[name].base.kind
        if name.endswith("flags") or name.endswith("_flags_r"):
            row[name] = F.NO_ATTEMPT
        elif kind == "f":
            base = _METACAL_SUFFIX.sub("", name)      # mcal_g_cov_1p is an error too
            is_err = base.endswith("_err") or base.endswith("_cov")
            row[name] = BIGVAL if is_err else DEFVAL
        elif kind in "iu" and not name.endswith("num_itr"):
            row[name] = DEFVAL if kind == "i" else 0
    return row[0]


@functools.lru_cache(maxsize=16)
def _default(dtype: np.dtype) -> np.ndarray:
    return default_row(dtype)


def new_rows(dtype: np.dtype, n: int) -> np.ndarray:
    """``n`` rows holding the conventional defaults (-9999, 9999, NO_ATTEMPT)."""
    rows = np.empty(n, dtype=dtype)
    if n:
        rows[:] = _default(np.dtype(dtype))
    return rows
