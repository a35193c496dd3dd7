"""Fitter interface, registry and shared output-column helpers.

A fitter turns one FoF group of :class:`~pipeline.imageio.base.FitObject` into
one output row per object. It declares its columns (``model_columns``, with
unit and meaning) so the driver can allocate the output table before any fit
runs; values it does not set keep the defaults (-9999, errors 9999, flags
NO_ATTEMPT).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable

import logging

import numpy as np

from .. import columns as C
from ..columns import Column, mat, vec
from ..diagnostics import diagnostic
from ..errors import ConfigError
from ..gmix import flags as F
from ..gmix.flags import BIGVAL, DEFVAL
from ..gmix.roundstats import round_measures
from ..interrupts import reraise_if_interrupted

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


def fit_columns(m: str, npars: int, nband: int) -> list[Column]:
    """Columns of one max-likelihood model fit ``m``: ngmixer's, then the project's."""
    pu = C.pars_unit(m)
    return [
        Column(f"{m}_flags", "i4", (), C.BITS, "model flags: 0 = usable fit of this model "
               "(engine bits, the quality check, and MOF_UNCONVERGED with MOF)"),
        Column(f"{m}_pars", "f8", vec(npars), pu, "best-fit parameters"),
        Column(f"{m}_pars_cov", "f8", mat(npars), C.PARS_COV, "covariance of the parameters "
               "(with MOF joint fits: the member's block of the joint covariance)"),
        Column(f"{m}_g", "f8", vec(2), C.NONE, "reduced shear (g1, g2) of the model"),
        Column(f"{m}_g_cov", "f8", mat(2), C.NONE, "covariance of g"),
        Column(f"{m}_max_flags", "i4", (), C.BITS, "flags of the maximum-likelihood fit "
               "itself (model flags without MOF_UNCONVERGED)"),
        Column(f"{m}_max_pars", "f8", vec(npars), pu, "maximum-likelihood parameters (the "
               "same as pars: every fit here is maximum likelihood)"),
        Column(f"{m}_max_pars_cov", "f8", mat(npars), C.PARS_COV, "covariance of max_pars"),
        Column(f"{m}_s2n_w", "f8", (), C.NONE, "S/N of the model weighted by itself: "
               "sum(w m d) / sqrt(sum(w m^2)) over every epoch"),
        Column(f"{m}_chi2per", "f8", (), C.NONE, "chi2 per degree of freedom"),
        Column(f"{m}_dof", "f8", (), C.NONE, "degrees of freedom: weighted pixels minus "
               "parameters"),
        Column(f"{m}_flags_r", "i4", (), C.BITS, "flags of the round measures (model bits; "
               "0 = T_r, s2n_r, psf_T_r measured)"),
        Column(f"{m}_s2n_r", "f8", (), C.NONE, "S/N of the round model convolved with the "
               "round PSFs, from the weight maps: sqrt(sum w m^2)"),
        Column(f"{m}_T_r", "f8", (), C.ARCSEC2, "T of the round model: T (1-g^2)/(1+g^2)"),
        Column(f"{m}_psf_T_r", "f8", (), C.ARCSEC2, "weight-sum weighted mean T of the "
               "round PSF mixtures"),
        Column(f"{m}_T", "f8", (), C.ARCSEC2, "T = <x^2> + <y^2> of the unconvolved model"),
        Column(f"{m}_T_err", "f8", (), C.ARCSEC2, "error on T"),
        Column(f"{m}_flux", "f8", vec(nband), C.FLUX, "total flux per band"),
        Column(f"{m}_flux_err", "f8", vec(nband), C.FLUX, "error on the flux per band"),
        Column(f"{m}_nfev", "i4", (), C.NONE, "model evaluations of the fit (all tries)"),
    ]


def fit_quality_flags(res: dict, npars: int) -> int:
    """Bits for a fit the engine reports as good but whose numbers cannot be used.

    BAD_ERRORS: a covariance of the wrong shape, or a parameter, flux, T or shape
    error that is not finite and positive; NO_CHI2PER: chi2per not measured.
    """
    if int(res.get("flags", 0)) != 0 or res.get("pars") is None:
        return 0
    flags = 0
    cov = res.get("pars_cov")
    errs = [np.atleast_1d(np.asarray(res.get(k, np.nan), dtype="f8")).ravel()
            for k in ("flux_err", "T_err")]
    if cov is None or np.shape(cov) != (npars, npars):
        flags |= F.BAD_ERRORS
    else:
        errs.append(np.diag(np.asarray(cov, dtype="f8")))
    if res.get("g_cov") is not None:
        errs.append(np.diag(np.asarray(res["g_cov"], dtype="f8")))
    for e in errs:
        if not np.all(np.isfinite(e) & (e > 0) & (e != BIGVAL)):
            flags |= F.BAD_ERRORS
    chi2per = float(res.get("chi2per", DEFVAL))
    if not np.isfinite(chi2per) or chi2per == DEFVAL:
        flags |= F.NO_CHI2PER
    return flags


def fill_model(row: np.ndarray, m: str, res: dict, mbobs, extra_flags: int = 0) -> int:
    """Copy a fit result into model ``m``'s columns; returns its max flags.

    ``mbobs``: the observations fitted (for the round measures); ``extra_flags``:
    bits of the fitter about the fit itself (e.g. AT_SIZE_BOUND). A failed fit
    leaves the columns at their defaults.
    """
    npars = row[f"{m}_pars"].shape[0]
    flags = int(res.get("flags", F.GAL_FIT_FAILURE)) | int(extra_flags) \
        | fit_quality_flags(res, npars)
    row[f"{m}_flags"] = row[f"{m}_max_flags"] = flags
    pars = res.get("pars")
    if pars is None or int(res.get("flags", 1)) != 0:
        return flags
    pars = np.asarray(pars, dtype="f8")
    if pars.size != npars:
        flags |= F.BAD_MODEL
        row[f"{m}_flags"] = row[f"{m}_max_flags"] = flags
        return flags
    row[f"{m}_pars"] = row[f"{m}_max_pars"] = pars
    cov = res.get("pars_cov")
    if cov is not None and np.shape(cov) == (npars, npars):
        row[f"{m}_pars_cov"] = row[f"{m}_max_pars_cov"] = cov
    for key in ("g", "g_cov", "T", "T_err", "flux", "flux_err", "s2n_w", "chi2per", "dof",
                "nfev"):
        value = res.get(key)
        if value is not None and np.all(np.isfinite(value)):
            row[f"{m}_{key}"] = value
    cm = {"fracdev": res.get("fracdev"), "TdByTe": res.get("TdByTe")} if m == "cm" else {}
    rnd = round_measures(pars, mbobs, m, **cm)
    row[f"{m}_flags_r"] = rnd["flags"]
    for key in ("s2n_r", "T_r", "psf_T_r"):
        row[f"{m}_{key}"] = rnd[key]
    return flags


class BaseFitter(ABC):
    """A fitter registered by name; one output row per object."""

    name = "base"

    def __init__(self, conf: dict, nband: int):
        self.conf = conf
        self.nband = nband

    @abstractmethod
    def model_columns(self) -> list[Column]:
        """Columns this fitter adds to ``model_fits``."""

    def epoch_columns(self) -> list[Column]:
        """Columns this fitter adds to ``epoch_data``."""
        return []

    def extra_columns(self) -> dict[str, list[Column]]:
        """Columns of the additional output extensions (name -> columns)."""
        return {}

    def setup(self, run) -> None:
        """Hook called once by the driver before fitting (e.g. to read MOF inputs)."""

    def extra_tables(self) -> dict[str, np.ndarray]:
        """Additional output extensions (name -> table)."""
        return {}

    def resume_extra(self, tables: dict[str, np.ndarray | None]) -> None:
        """Take back the extra tables of a checkpoint (rows of the groups done)."""

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
