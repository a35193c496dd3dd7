"""Max-likelihood fitter: PSF fits per epoch, PSF flux per band, then the listed models."""

from __future__ import annotations

import logging

import numpy as np

from ..gmix import flags as F
from ..gmix.maxlike import fit_model
from ..gmix.observation import MultiBandObsList, ObsList
from ..gmix.priors import make_priors
from ..gmix.psf import fit_psf, psf_npars
from ..gmix.template import fit_psf_flux
from ..rows import DEFVAL
from .base import BaseFitter, fill_model, model_columns, register
from .composite import fit_composite

logger = logging.getLogger(__name__)

def model_npars(model: str, nband: int) -> int:
    return 6 + nband if model == "bdf" else 5 + nband


def psf_flux_fraction(psf_obs) -> float:
    """Fraction of the PSF stamp's light its fitted mixture holds (1 when unknown).

    Models are convolved with the mixture normalised to unit flux, so a point
    source's flux comes out low by this fraction; a galaxy's by less, as its fit
    takes part of the wing light into its size (a diagnostic of the PSF model,
    recorded per epoch as ``psf_fit_flux_frac``)."""
    stamp = float(psf_obs.image[psf_obs.weight > 0].sum())
    frac = psf_obs.gmix.get_flux() / stamp if stamp > 0 else 1.0
    return frac if np.isfinite(frac) and frac > 0 else 1.0


class MaxLikeFitter(BaseFitter):
    """PSF fits, PSF fluxes and max-likelihood model fits for every object."""

    def __init__(self, conf: dict, nband: int):
        super().__init__(conf, nband)
        self.models = list(conf["models"])
        self.priors = {m: make_priors({k: v for k, v in (conf["model_pars"].get(m) or {}).items() if v is not None}, nband)
                       for m in self.models}
        self.psf_model = conf["psf_pars"]["model"]

    # -- columns ---------------------------------------------------------
    def model_dtype(self) -> list:
        nb = self.nband
        cols = [("psfrec_T", "f8"), ("psfrec_g", "f8", 2),
                ("psf_flags", "i4", nb), ("psf_flux", "f8", nb), ("psf_flux_err", "f8", nb),
                ("psf_flux_s2n", "f8", nb)]
        for model in self.models:
            cols += model_columns(model, model_npars(model, nb), nb)
            if model == "cm":
                cols += [("cm_fracdev", "f8"), ("cm_fracdev_err", "f8"), ("cm_TdByTe", "f8")]
        return cols

    def epoch_dtype(self) -> list:
        return [("psf_fit_flags", "i4"), ("psf_fit_g", "f8", 2), ("psf_fit_T", "f8"),
                ("psf_fit_pars", "f8", psf_npars(self.psf_model)),
                ("psf_fit_flux_frac", "f8")]

    # -- fitting ---------------------------------------------------------
    def fit_object(self, obj, rng: np.random.Generator, row: np.ndarray,
                   erows: np.ndarray) -> None:
        """Fit one object; sets ``row['flags']`` bits for failed stages."""
        obj.extra["stage"] = "psf"
        mbobs = self.fit_psfs(obj.mbobs, rng, row, erows)
        if mbobs is None:
            row["flags"] |= F.PSF_FIT_FAILURE
            return
        obj.extra["mbobs_used"] = mbobs
        obj.extra["stage"] = "psf_flux"
        self.fit_psf_fluxes(mbobs, row)
        self.fit_models(obj, mbobs, rng, row)

    def fit_psfs(self, mbobs: MultiBandObsList, rng: np.random.Generator, row: np.ndarray,
                 erows: np.ndarray) -> MultiBandObsList | None:
        """Fit every epoch's PSF; drop epochs whose PSF fit failed.

        Returns the observations that remain, or None when a band has none.
        """
        pconf = self.conf["psf_pars"]
        kept = MultiBandObsList()
        Ts, gs = [], []
        iepoch = 0
        for obslist in mbobs:
            band_kept = ObsList()
            for obs in obslist:
                erow = erows[iepoch]
                iepoch += 1
                if obs.psf is None:
                    erow["psf_fit_flags"] = F.PSF_FIT_FAILURE
                    continue
                res = fit_psf(obs.psf, model=self.psf_model, ntry=pconf["ntry"], rng=rng,
                              **pconf["fit_pars"])
                erow["psf_fit_flags"] = res["flags"]
                if res["flags"] != 0:
                    continue
                erow["psf_fit_g"] = res["g"]
                erow["psf_fit_T"] = res["T"]
                pars = np.asarray(res.get("pars", obs.psf.gmix.get_full_pars()))
                n = min(pars.size, erow["psf_fit_pars"].size)
                erow["psf_fit_pars"][:n] = pars[:n]
                erow["psf_fit_flux_frac"] = psf_flux_fraction(obs.psf)
                Ts.append(res["T"])
                gs.append(res["g"])
                band_kept.append(obs)
            if len(band_kept) == 0:
                return None
            kept.append(band_kept)
        row["psfrec_T"] = float(np.mean(Ts))
        row["psfrec_g"] = np.mean(np.asarray(gs), axis=0)
        return kept

    def fit_psf_fluxes(self, mbobs: MultiBandObsList, row: np.ndarray) -> None:
        res = fit_psf_flux(mbobs)
        row["psf_flags"] = res["band_flags"]
        row["psf_flux"] = res["flux"]
        row["psf_flux_err"] = res["flux_err"]
        row["psf_flux_s2n"] = res["s2n"]
        if res["flags"] != 0:
            row["flags"] |= F.PSF_FLUX_FIT_FAILURE

    def fit_models(self, obj, mbobs: MultiBandObsList, rng: np.random.Generator,
                   row: np.ndarray) -> dict:
        """Fit each configured model; returns the results by model name."""
        mpars = self.conf["max_pars"]
        results: dict = {}
        for model in self.models:
            obj.extra["stage"] = f"model:{model}"
            if model == "cm":
                res = fit_composite(mbobs, results, prior=self.priors[model], rng=rng,
                                    ntry=mpars["ntry"], lm_pars=mpars["lm_pars"])
                for key in ("fracdev", "fracdev_err", "TdByTe"):
                    if res.get(key) is not None:
                        row[f"cm_{key}"] = res[key]
            else:
                res = fit_model(mbobs, model, prior=self.priors[model], rng=rng,
                                ntry=mpars["ntry"], lm_pars=mpars["lm_pars"] or None)
            results[model] = res
            fill_model(row, model, res, row["psfrec_T"])
            if res["flags"] != 0:
                row["flags"] |= F.GAL_FIT_FAILURE
        obj.extra["results"] = results
        return results


register("max")(MaxLikeFitter)

__all__ = ["MaxLikeFitter", "DEFVAL"]
