"""Convergence test of the MOF sweeps (keys ``mof.*conv``: docs/configs.rst).

A member has converged when, for every parameter i, at least one of
``|new-old| <= maxabs_conv[i]``, ``|new/old - 1| <= maxfrac_conv[i]``,
``|new-old| / sigma_i <= maxerr_conv`` holds.  Tolerance lists shorter than
the parameter vector repeat their last entry (so one value covers every band's
flux).
"""

from __future__ import annotations

import numpy as np

# [v, u, g1, g2, T, flux...]: 1 mas in position, 1e-3 in shape, and a
# per-mille change in size or flux is far below any statistical error.
DEFAULT_MAXABS = [1.0e-3, 1.0e-3, 1.0e-3, 1.0e-3, 1.0e-4, 0.0]
DEFAULT_MAXFRAC = [0.0, 0.0, 0.0, 0.0, 1.0e-3, 1.0e-3]


def expand(tol: list | None, default: list, npars: int) -> np.ndarray:
    """Per-parameter tolerances of length ``npars`` (last entry repeated)."""
    vals = list(default if tol is None else tol)
    if not vals:
        return np.zeros(npars)
    vals = vals[:npars] + [vals[-1]] * max(0, npars - len(vals))
    return np.asarray(vals, dtype="f8")


def parameter_diffs(old: np.ndarray, new: np.ndarray, err: np.ndarray | None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(|new-old|, |new/old-1|, |new-old|/err)`` per parameter; inf where undefined
    (old = 0, no positive finite error)."""
    old = np.asarray(old, dtype="f8")
    new = np.asarray(new, dtype="f8")
    diff = np.abs(new - old)
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(old != 0, np.abs(new / old - 1.0), np.inf)
        if err is None:
            rel = np.full(diff.shape, np.inf)
        else:
            err = np.asarray(err, dtype="f8")
            rel = np.where((err > 0) & np.isfinite(err), diff / err, np.inf)
    return diff, frac, rel


def member_converged(old: np.ndarray, new: np.ndarray, err: np.ndarray | None,
                     maxabs: np.ndarray, maxfrac: np.ndarray, maxerr: float) -> bool:
    """True when every parameter passes one of the three tests."""
    diff, frac, rel = parameter_diffs(old, new, err)
    ok = (diff <= maxabs) | (frac <= maxfrac)
    if maxerr is not None:
        ok |= rel <= maxerr
    return bool(np.all(ok))


class ConvergenceTest:
    """Configured from the ``mof`` config block."""

    def __init__(self, mof_conf: dict, npars: int):
        self.maxabs = expand(mof_conf.get("maxabs_conv"), DEFAULT_MAXABS, npars)
        self.maxfrac = expand(mof_conf.get("maxfrac_conv"), DEFAULT_MAXFRAC, npars)
        self.maxerr = mof_conf.get("maxerr_conv")
        self.min_itr = int(mof_conf.get("min_itr", 1))

    def __call__(self, old, new, err) -> bool:
        return member_converged(old, new, err, self.maxabs, self.maxfrac, self.maxerr)
