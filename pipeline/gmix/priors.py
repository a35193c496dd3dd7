"""Priors on fit parameters, usable three ways: ``get_lnprob`` (ln p up to a
constant), ``sample(rng, n)``, and as extra least-squares residuals for the LM
(``terms(indices)`` -> rows for the numba kernel in priors_nb).

Configuration (YAML ``model_pars``), e.g.::

    cen:     {type: normal2d, width: 0.263}
    g:       {type: ba, sigma: 0.3}
    T:       {type: TwoSidedErf, pars: [-10.0, 0.03, 1.0e6, 1.0e5]}
    counts:  {type: lognormal, mean: 100.0, sigma: 50.0}   # or flat, gauss
    fracdev: {type: normal, mean: 0.5, sigma: 0.1}
"""
import difflib
import math
from typing import Optional, Sequence

import numpy as np

from ..errors import ConfigError
from . import priors_nb


class Prior:
    """Base class of one-parameter priors."""
    ndim = 1

    def get_lnprob(self, x):
        raise NotImplementedError

    def sample(self, rng: np.random.Generator, n: Optional[int] = None):
        raise NotImplementedError

    def terms(self, indices: Sequence[int]) -> list:
        """Rows (kind, (i, j), (p0, p1, p2, p3)) for the LM residual kernel."""
        return []

    def bounds(self):
        return -np.inf, np.inf


class FlatPrior(Prior):
    """Uniform on [minval, maxval]; enters the LM as bounds, not residuals."""

    def __init__(self, minval: float, maxval: float):
        if not maxval > minval:
            raise ConfigError(f"flat prior needs maxval > minval, got [{minval}, {maxval}]")
        self.minval = float(minval)
        self.maxval = float(maxval)

    def get_lnprob(self, x):
        x = np.asarray(x, dtype='f8')
        return np.where((x >= self.minval) & (x <= self.maxval), 0.0, -np.inf)

    def sample(self, rng, n=None):
        return rng.uniform(self.minval, self.maxval, size=n)

    def bounds(self):
        return self.minval, self.maxval


class GaussPrior(Prior):
    """Normal(mean, sigma)."""

    def __init__(self, mean: float, sigma: float):
        if not sigma > 0:
            raise ConfigError(f"gauss prior needs sigma > 0, got {sigma}")
        self.mean = float(mean)
        self.sigma = float(sigma)

    def get_lnprob(self, x):
        return -0.5 * ((np.asarray(x, dtype='f8') - self.mean) / self.sigma) ** 2

    def sample(self, rng, n=None):
        return rng.normal(self.mean, self.sigma, size=n)

    def terms(self, indices):
        return [(priors_nb.GAUSS, (indices[0], 0), (self.mean, self.sigma, 0.0, 0.0))]


class LogNormalPrior(Prior):
    """Log-normal with the given mean and sigma of x itself (not of ln x).

    The LM residual is (ln x - lnmean)/lnsigma, i.e. the prior on ln x."""

    def __init__(self, mean: float, sigma: float):
        if not (mean > 0 and sigma > 0):
            raise ConfigError(f"lognormal prior needs mean > 0 and sigma > 0, got {mean}, {sigma}")
        self.mean = float(mean)
        self.sigma = float(sigma)
        var = math.log1p((sigma / mean) ** 2)
        self.lnsigma = math.sqrt(var)
        self.lnmean = math.log(mean) - 0.5 * var

    def get_lnprob(self, x):
        x = np.asarray(x, dtype='f8')
        with np.errstate(divide='ignore', invalid='ignore'):
            lx = np.log(x)
            lp = -0.5 * ((lx - self.lnmean) / self.lnsigma) ** 2 - lx
        return np.where(x > 0, lp, -np.inf)

    def sample(self, rng, n=None):
        return np.exp(rng.normal(self.lnmean, self.lnsigma, size=n))

    def terms(self, indices):
        eps = self.mean * 1e-6
        return [(priors_nb.LOGNORM, (indices[0], 0), (self.lnmean, self.lnsigma, eps, 0.0))]


class TwoSidedErf(Prior):
    """Smooth top hat: rises like an erf of width ``width_at_min`` at ``minval`` and
    falls like one of width ``width_at_max`` at ``maxval``."""

    def __init__(self, minval: float, width_at_min: float, maxval: float, width_at_max: float):
        if not (width_at_min > 0 and width_at_max > 0 and maxval > minval):
            raise ConfigError("TwoSidedErf needs widths > 0 and maxval > minval, got "
                              f"{[minval, width_at_min, maxval, width_at_max]}")
        self.par = np.array([minval, width_at_min, maxval, width_at_max], dtype='f8')

    def get_lnprob(self, x):
        x = np.atleast_1d(np.asarray(x, dtype='f8'))
        out = np.array([priors_nb.erf2_lnprob(xi, self.par)[0] for xi in x])
        return out if out.size > 1 else float(out[0])

    def sample(self, rng, n=None):
        m = 1 if n is None else int(n)
        lo = self.par[0] - 5 * self.par[1]
        hi = self.par[2] + 5 * self.par[3]
        out = np.empty(0)
        while out.size < m:
            x = rng.uniform(lo, hi, size=2 * m + 10)
            keep = np.log(rng.uniform(size=x.size)) < np.atleast_1d(self.get_lnprob(x))
            out = np.concatenate([out, x[keep]])
        return out[:m] if n is not None else float(out[0])

    def terms(self, indices):
        return [(priors_nb.ERF2, (indices[0], 0), tuple(self.par))]


class GPriorBA(Prior):
    """Shape prior ``p(g)`` proportional to ``(1 - g^2)^2 exp(-g^2 / (2 sigma^2))``, ``|g| < 1``."""
    ndim = 2

    def __init__(self, sigma: float):
        if not sigma > 0:
            raise ConfigError(f"ba shape prior needs sigma > 0, got {sigma}")
        self.sigma = float(sigma)

    def get_lnprob(self, g1, g2=None):
        if g2 is None:
            g1, g2 = np.asarray(g1)[..., 0], np.asarray(g1)[..., 1]
        gsq = np.asarray(g1, dtype='f8') ** 2 + np.asarray(g2, dtype='f8') ** 2
        with np.errstate(divide='ignore', invalid='ignore'):
            lp = 2.0 * np.log1p(-gsq) - 0.5 * gsq / self.sigma ** 2
        return np.where(gsq < 1.0, lp, -np.inf)

    def sample(self, rng, n=None):
        """(n, 2) array of (g1, g2): Gaussian proposals thinned by (1 - g^2)^2."""
        m = 1 if n is None else int(n)
        out = np.empty((0, 2))
        while out.shape[0] < m:
            g = rng.normal(0.0, self.sigma, size=(2 * m + 10, 2))
            gsq = (g ** 2).sum(axis=1)
            acc = np.zeros(gsq.size, dtype=bool)
            ok = gsq < 1.0
            acc[ok] = rng.uniform(size=ok.sum()) < (1.0 - gsq[ok]) ** 2
            out = np.concatenate([out, g[acc]])
        return out[:m] if n is not None else out[0]

    def terms(self, indices):
        return [(priors_nb.BA, (indices[0], indices[1]), (self.sigma, 0.0, 0.0, 0.0))]


class CenPrior(Prior):
    """2-D normal prior on the centre (v, u)."""
    ndim = 2

    def __init__(self, cen_v: float = 0.0, cen_u: float = 0.0, sigma_v: float = 1.0,
                 sigma_u: Optional[float] = None):
        sigma_u = sigma_v if sigma_u is None else sigma_u
        if not (sigma_v > 0 and sigma_u > 0):
            raise ConfigError(f"centre prior needs width > 0, got {sigma_v}, {sigma_u}")
        self.cen = np.array([cen_v, cen_u], dtype='f8')
        self.sigma = np.array([sigma_v, sigma_u], dtype='f8')

    def get_lnprob(self, v, u=None):
        if u is None:
            v, u = np.asarray(v)[..., 0], np.asarray(v)[..., 1]
        return (-0.5 * ((np.asarray(v) - self.cen[0]) / self.sigma[0]) ** 2
                - 0.5 * ((np.asarray(u) - self.cen[1]) / self.sigma[1]) ** 2)

    def sample(self, rng, n=None):
        size = None if n is None else (int(n), 2)
        return rng.normal(self.cen, self.sigma, size=size)

    def terms(self, indices):
        return [(priors_nb.GAUSS, (indices[0], 0), (self.cen[0], self.sigma[0], 0.0, 0.0)),
                (priors_nb.GAUSS, (indices[1], 0), (self.cen[1], self.sigma[1], 0.0, 0.0))]


class JointPrior:
    """Priors of a full parameter vector [v, u, g1, g2, T, (fracdev), F_b...].

    Any of the parts may be None (no prior).  ``counts`` is one prior used for
    every band, or a list with one per band.
    """

    def __init__(self, cen=None, g=None, T=None, counts=None, fracdev=None, nband: int = 1):
        self.cen = cen
        self.g = g
        self.T = T
        self.fracdev = fracdev
        self.nband = int(nband)
        if counts is None or isinstance(counts, Prior):
            counts = [counts] * self.nband
        if len(counts) != self.nband:
            raise ConfigError(f"{len(counts)} counts priors for {self.nband} bands")
        self.counts = list(counts)

    def _parts(self, nshape: int):
        parts = [(self.cen, (0, 1)), (self.g, (2, 3)), (self.T, (4,))]
        if nshape == 6:
            parts.append((self.fracdev, (5,)))
        for b, c in enumerate(self.counts):
            parts.append((c, (nshape + b,)))
        return [(p, ix) for p, ix in parts if p is not None]

    def arrays(self, nshape: int):
        """(kind, idx, par) arrays for the LM kernel."""
        rows = []
        for p, ix in self._parts(nshape):
            rows.extend(p.terms(ix))
        kind = np.array([r[0] for r in rows], dtype=np.int64)
        idx = np.array([r[1] for r in rows], dtype=np.int64).reshape(-1, 2)
        par = np.array([r[2] for r in rows], dtype='f8').reshape(-1, 4)
        return kind, idx, par

    def bounds(self, npar: int, nshape: int):
        lo = np.full(npar, -np.inf)
        hi = np.full(npar, np.inf)
        for p, ix in self._parts(nshape):
            if p.ndim == 1:
                lo[ix[0]], hi[ix[0]] = p.bounds()
        return lo, hi

    def get_lnprob(self, pars, nshape: int = 5) -> float:
        pars = np.asarray(pars, dtype='f8')
        lp = 0.0
        for p, ix in self._parts(nshape):
            if p.ndim == 2:
                lp += float(p.get_lnprob(pars[ix[0]], pars[ix[1]]))
            else:
                lp += float(p.get_lnprob(pars[ix[0]]))
        return lp

    def sample(self, rng, n: int, nshape: int = 5) -> np.ndarray:
        """(n, npar) samples; parameters without a prior are NaN."""
        out = np.full((n, nshape + self.nband), np.nan)
        for p, ix in self._parts(nshape):
            s = p.sample(rng, n)
            if p.ndim == 2:
                out[:, ix[0]] = s[:, 0]
                out[:, ix[1]] = s[:, 1]
            else:
                out[:, ix[0]] = s
        return out


# ---- configuration ----------------------------------------------------------------
# Prior types by name: parameter -> length (0: one number, n: a list of n numbers).
# Config validation and construction both read this table, so they cannot drift.
PRIOR_PARAMS = {
    "flat": {"pars": 2},
    "gauss": {"mean": 0, "sigma": 0},
    "lognormal": {"mean": 0, "sigma": 0},
    "twosidederf": {"pars": 4},
    "normal2d": {"width": 0, "mean": 2},
    "ba": {"sigma": 0},
    "flat2d": {},
}
_OPTIONAL = {("normal2d", "mean")}
_ONE_D_TYPES = ("flat", "gauss", "lognormal", "twosidederf")
#: prior types each slot of ``model_pars.<model>`` takes
SLOT_TYPES = {"cen": ("normal2d",), "g": ("ba", "flat2d"), "T": _ONE_D_TYPES,
              "counts": _ONE_D_TYPES, "fracdev": _ONE_D_TYPES}
#: the names written in configs (case does not matter), where they differ from the keys
DISPLAY = {"twosidederf": "TwoSidedErf", "flat2d": "flat"}
_ALIASES = {"normal": "gauss", "gaussian": "gauss", "two-sided-erf": "twosidederf",
            "two_sided_erf": "twosidederf", "log-normal": "lognormal", "uniform": "flat"}
# 2-D slots: the names each takes for its types
_SLOT_ALIASES = {"cen": {"normal2d": "normal2d", "gauss": "normal2d", "gauss2d": "normal2d",
                         "normal": "normal2d", "gaussian": "normal2d", "cen": "normal2d"},
                 "g": {"ba": "ba", "flat": "flat2d"}}


def _check_keys(d: dict, allowed: set, where: str) -> None:
    for k in d:
        if k not in allowed:
            close = difflib.get_close_matches(str(k), sorted(allowed), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"{where}: unknown key '{k}'{hint}")


def _resolve_type(ptype: str, slot: str) -> str | None:
    """The PRIOR_PARAMS key of a configured type name for ``slot`` (None: unknown)."""
    name = ptype.lower()
    if slot in _SLOT_ALIASES:
        return _SLOT_ALIASES[slot].get(name)
    key = _ALIASES.get(name, name)
    return key if key in SLOT_TYPES.get(slot, _ONE_D_TYPES) else None


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def prior_problems(cfg, slot: str, where: str) -> list[str]:
    """Everything wrong with one prior's config (type, parameter names and counts,
    values), as messages naming ``where``; empty when it can be built."""
    if cfg is None:
        return []
    if not isinstance(cfg, dict):
        return [f"'{where}' must be a mapping with a 'type', got {cfg!r}"]
    if "type" not in cfg:
        return [f"'{where}' is missing 'type'"]
    ptype = str(cfg["type"])
    key = _resolve_type(ptype, slot)
    if key is None:
        known = [DISPLAY.get(t, t) for t in SLOT_TYPES.get(slot, _ONE_D_TYPES)]
        close = difflib.get_close_matches(ptype, known, n=1)
        hint = f"did you mean '{close[0]}'?; " if close else ""
        return [f"'{where}.type': unknown prior type {ptype!r} ({hint}allowed for '{slot}': "
                f"{', '.join(known)})"]
    params = PRIOR_PARAMS[key]
    problems = []
    for name, value in cfg.items():
        if name == "type":
            continue
        if name not in params:
            close = difflib.get_close_matches(str(name), list(params), n=1)
            hint = f" (did you mean '{where}.{close[0]}'?)" if close else ""
            problems.append(f"unknown key '{where}.{name}'{hint} for a {ptype} prior "
                            f"(takes: {', '.join(params) or 'nothing'})")
            continue
        length = params[name]
        if length == 0 and not _is_number(value):
            problems.append(f"'{where}.{name}' must be a number, got {value!r}")
        elif length and not (isinstance(value, list) and len(value) == length
                             and all(_is_number(v) for v in value)):
            problems.append(f"'{where}.{name}' must be a list of {length} numbers for a "
                            f"{ptype} prior, got {value!r}")
    for name in params:
        if name not in cfg and (key, name) not in _OPTIONAL:
            problems.append(f"'{where}' ({ptype} prior) is missing '{name}'")
    if not problems:
        try:
            _build(key, cfg)
        except ConfigError as err:
            problems.append(f"'{where}': {err}")
    return problems


def _build(key: str, cfg: dict) -> Optional[Prior]:
    if key == "flat":
        return FlatPrior(*cfg["pars"])
    if key == "gauss":
        return GaussPrior(cfg["mean"], cfg["sigma"])
    if key == "lognormal":
        return LogNormalPrior(cfg["mean"], cfg["sigma"])
    if key == "twosidederf":
        return TwoSidedErf(*cfg["pars"])
    if key == "normal2d":
        mean = cfg.get("mean", [0.0, 0.0])
        return CenPrior(mean[0], mean[1], float(cfg["width"]))
    if key == "ba":
        return GPriorBA(float(cfg["sigma"]))
    return None  # flat2d: no prior on the shape


def make_prior(cfg: dict, what: str, ndim: int = 1) -> Optional[Prior]:
    """One prior from a dict with a ``type`` key; ``what`` names its slot (cen, g,
    T, counts, fracdev) in errors."""
    problems = prior_problems(cfg, what, f"prior '{what}'")
    if problems:
        raise ConfigError(problems[0])
    if cfg is None:
        return None
    return _build(_resolve_type(str(cfg["type"]), what), cfg)


def make_priors(model_pars_config: dict, nband: int) -> JointPrior:
    """JointPrior from a model's ``model_pars`` config (keys cen, g, T, counts/flux,
    fracdev); ConfigError for unknown keys or prior types."""
    cfg = dict(model_pars_config or {})
    _check_keys(cfg, {"cen", "g", "T", "counts", "flux", "fracdev"}, "model_pars")
    counts_cfg = cfg.get("counts", cfg.get("flux"))
    if isinstance(counts_cfg, list):
        counts = [make_prior(c, "counts") for c in counts_cfg]
    else:
        counts = make_prior(counts_cfg, "counts")
    return JointPrior(cen=make_prior(cfg.get("cen"), "cen", 2),
                      g=make_prior(cfg.get("g"), "g", 2),
                      T=make_prior(cfg.get("T"), "T"),
                      counts=counts,
                      fracdev=make_prior(cfg.get("fracdev"), "fracdev"),
                      nband=nband)
