"""Fitter interface, registry and shared output-column helpers.

A fitter turns one FoF group of :class:`~pipeline.imageio.base.FitObject` into
one output row per object. It declares its columns (``model_dtype``) so the
driver can allocate the output table before any fit runs; values it does not
set keep the defaults (-9999, errors 9999, flags NO_ATTEMPT).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable

import logging

import numpy as np

from ..diagnostics import diagnostic
from ..errors import ConfigError
from ..gmix import flags as F
from ..interrupts import reraise_if_interrupted
from ..rows import DEFVAL

logger = logging.getLogger(__name__)

_REGISTRY: dict[str, type["BaseFitter"]] = {}


def register(name: str) -> Callable[[type], type]:
    """Class decorator registering a fitter under ``fitter_type: name``."""
    def deco(cls: type) -> type:
        _REGISTRY[name] = cls
        cls.name = name
        return cls
    return deco


def fitter_names() -> tuple[str, ...]:
    """Every registered fitter name (the values ``fitter_type`` takes)."""
    from . import maxlike, metacal, mof  # noqa: F401  (registration side effects)
    return tuple(sorted(_REGISTRY))


def get_fitter(conf: dict, nband: int) -> "BaseFitter":
    """Instantiate the fitter named by ``conf['fitter_type']``."""
    from . import maxlike, metacal  # noqa: F401  (registration side effects)
    name = "mof" if conf.get("model_nbrs") else conf["fitter_type"]
    if name == "mof":
        from . import mof  # noqa: F401
    if name not in _REGISTRY:
        raise ConfigError(f"fit config: unknown fitter_type {name!r}; "
                          f"known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name](conf, nband)


def model_columns(prefix: str, npars: int, nband: int) -> list:
    """Columns of one max-likelihood model fit, named as ngmixer names them (docs/outputs.rst)."""
    p = prefix
    return [
        (f"{p}_flags", "i4"), (f"{p}_pars", "f8", npars), (f"{p}_pars_cov", "f8", (npars, npars)),
        (f"{p}_g", "f8", 2), (f"{p}_g_cov", "f8", (2, 2)), (f"{p}_T", "f8"), (f"{p}_T_err", "f8"),
        (f"{p}_flux", "f8", nband), (f"{p}_flux_err", "f8", nband), (f"{p}_s2n_w", "f8"),
        (f"{p}_chi2per", "f8"), (f"{p}_dof", "f8"), (f"{p}_T_r", "f8"), (f"{p}_s2n_r", "f8"),
        (f"{p}_psf_T_r", "f8"), (f"{p}_nfev", "i4"),
    ]


def fill_model(row: np.ndarray, prefix: str, res: dict, psf_T: float) -> None:
    """Copy a FitResult into the model's columns (partial results on failure)."""
    row[f"{prefix}_flags"] = int(res.get("flags", F.GAL_FIT_FAILURE))
    if res.get("pars") is None:
        return
    pars = np.asarray(res["pars"])
    npars = row[f"{prefix}_pars"].shape[0]
    row[f"{prefix}_pars"][:min(npars, pars.size)] = pars[:npars]
    cov = res.get("pars_cov")
    if cov is not None and np.shape(cov) == (pars.size, pars.size) and pars.size == npars:
        row[f"{prefix}_pars_cov"] = cov
    for key in ("g", "g_cov", "T", "T_err", "flux", "flux_err", "s2n_w", "chi2per", "dof",
                "nfev"):
        value = res.get(key)
        if value is not None:
            row[f"{prefix}_{key}"] = value
    g = np.asarray(res.get("g", [0.0, 0.0]), dtype="f8")
    T = float(res.get("T", DEFVAL))
    gsq = float(np.sum(g ** 2))
    if T != DEFVAL and gsq < 1:
        # A round version of a sheared profile has T_r = T (1-g^2)/(1+g^2).
        row[f"{prefix}_T_r"] = T * (1 - gsq) / (1 + gsq)
    row[f"{prefix}_s2n_r"] = res.get("s2n_r", res.get("s2n_w", DEFVAL))
    row[f"{prefix}_psf_T_r"] = psf_T


class BaseFitter(ABC):
    """A fitter registered by name; one output row per object."""

    name = "base"

    def __init__(self, conf: dict, nband: int):
        self.conf = conf
        self.nband = nband

    @abstractmethod
    def model_dtype(self) -> list:
        """Columns (numpy dtype entries) this fitter adds to ``model_fits``."""

    def epoch_dtype(self) -> list:
        """Columns this fitter adds to ``epoch_data``."""
        return []

    def setup(self, run) -> None:
        """Hook called once by the driver before fitting (e.g. to read MOF inputs)."""

    def extra_tables(self) -> dict[str, np.ndarray]:
        """Additional output extensions (name -> table)."""
        return {}

    def fit_object(self, obj, rng: np.random.Generator, row: np.ndarray,
                   erows: np.ndarray) -> None:
        """Fit one object (fitters that fit objects independently implement this)."""
        raise NotImplementedError

    def fit_group(self, objects: list, rngs: list[np.random.Generator],
                  rows: np.ndarray, epoch_rows: list[np.ndarray],
                  diagnostics: list) -> None:
        """Fit one FoF group, filling ``rows`` (one per object) and ``epoch_rows``.

        ``epoch_rows[i]`` is the epoch_data table of object i (already holding
        the ImageIO's columns); the fitter fills its own epoch columns. An
        exception while fitting one object flags it (UTTER_FAILURE), records a
        diagnostic, and the others go on.
        """
        for obj, rng, row, erows in zip(objects, rngs, rows, epoch_rows):
            if obj.mbobs is None:
                continue
            try:
                self.fit_object(obj, rng, row, erows)
            except Exception as err:  # noqa: BLE001 - the run must go on
                reraise_if_interrupted(err)
                stage = obj.extra.get("stage", "fit")
                row["flags"] |= F.UTTER_FAILURE
                diagnostics.append(diagnostic(obj, stage, err))
                logger.warning("object id=%d failed in stage %s: %s", obj.id, stage, err)
