"""Max-likelihood fitter: PSF fits per epoch, PSF flux per band, then the listed models."""

from __future__ import annotations

import logging

import numpy as np

from .. import columns as C
from ..columns import Column, vec
from ..gmix import flags as F
from ..gmix.maxlike import fit_model
from ..gmix.observation import MultiBandObsList, ObsList
from ..gmix.priors import make_priors
from ..gmix.psf import fit_psf, psf_ngauss, psf_npars
from ..gmix.template import fit_psf_flux
from .base import BaseFitter, fill_model, fit_columns, register
from .composite import fit_composite

logger = logging.getLogger(__name__)

def model_npars(model: str, nband: int) -> int:
    """Parameters of a galaxy model fitted to ``nband`` bands."""
    return 6 + nband if model == "bdf" else 5 + nband


def psf_flux_fraction(psf_obs) -> float:
    """The fitted mixture's flux over the PSF stamp's light (1 when unknown).

    Models are convolved with the mixture normalised to unit flux, so a point
    source's flux comes out low by the light the mixture misses. Below 1: the
    mixture misses light inside the stamp; above 1 for ``+wing`` models, which add
    the light extrapolated beyond the stamp (a diagnostic of the PSF model,
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
    def model_columns(self) -> list[Column]:
        nb = self.nband
        cols = [
            Column("psf_flags", "i4", vec(nb), C.BITS, "flags of the PSF flux fit per band "
                   "(model bits)"),
            Column("psf_flux", "f8", vec(nb), C.FLUX, "PSF flux per band: the amplitude of "
                   "the unit-flux PSF mixtures fitted to every epoch"),
            Column("psf_flux_err", "f8", vec(nb), C.FLUX, "error on psf_flux"),
            Column("psf_flux_s2n", "f8", vec(nb), C.NONE, "psf_flux / psf_flux_err"),
            Column("psfrec_T", "f8", (), C.ARCSEC2, "weight-sum (wsum) weighted mean T of "
                   "the PSF mixtures of the epochs used"),
            Column("psfrec_g", "f8", vec(2), C.NONE, "weight-sum weighted mean g of the PSF "
                   "mixtures of the epochs used"),
        ]
        for model in self.models:
            cols += fit_columns(model, model_npars(model, nb), nb)
            if model == "cm":
                cols += CM_COLUMNS
        return cols

    def epoch_columns(self) -> list[Column]:
        return [
            Column("psf_fit_flags", "i4", (), C.BITS, "PSF fit flags: 0 ok, else the PSF "
                   "fit's model flags, or PSF_FIT_FAILURE when the epoch has no PSF image "
                   "(a flagged epoch is not used)"),
            Column("psf_model_s2n", "f8", (), C.NONE, "S/N of the PSF fit's flux (LM models "
                   "and admom; -9999 for EM)"),
            Column("psf_counts", "f8", (), C.FLUX, "sum of the PSF stamp"),
            Column("psf_fit_g", "f8", vec(2), C.NONE, "g of the fitted PSF mixture"),
            Column("psf_fit_T", "f8", (), C.ARCSEC2, "T of the fitted PSF mixture"),
            Column("psf_fit_pars", "f8", vec(6 * psf_ngauss(self.psf_model)), C.PSF_FULL,
                   "the fitted PSF mixture, full parameters of every Gaussian (row = v, "
                   "col = u, relative to the PSF stamp's Jacobian centre)"),
            Column("psf_fit_model_pars", "f8", vec(psf_npars(self.psf_model)), C.NONE,
                   "the PSF fit's own parameters (coellipN: v, u, g1, g2, T_i, F_i; EM: "
                   "the mixture; admom/gauss/turb: v, u, g1, g2, T, flux)"),
            Column("psf_fit_flux_frac", "f8", (), C.NONE, "the fitted mixture's flux over "
                   "the PSF stamp's light (above 1 for +wing models: the light they "
                   "extrapolate beyond the stamp)"),
        ]

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

        Fills the epoch columns, ``nimage_use``, ``mask_frac`` and ``psfrec_*``
        (weighted by the epochs' weight sums, as ngmixer). Returns the
        observations that remain, or None when a band has none.
        """
        pconf = self.conf["psf_pars"]
        kept = MultiBandObsList()
        used = []
        iepoch = 0
        for band, obslist in enumerate(mbobs):
            band_kept = ObsList()
            for obs in obslist:
                erow = erows[iepoch]
                iepoch += 1
                if obs.psf is None:
                    erow["psf_fit_flags"] = F.PSF_FIT_FAILURE
                    continue
                erow["psf_counts"] = float(obs.psf.image.sum())
                res = fit_psf(obs.psf, model=self.psf_model, ntry=pconf["ntry"], rng=rng,
                              **pconf["fit_pars"])
                erow["psf_fit_flags"] = res["flags"]
                if res["flags"] != 0:
                    continue
                self._fill_psf_epoch(erow, res, obs.psf)
                used.append(erow)
                band_kept.append(obs)
            row["nimage_use"][band] = len(band_kept)
            if len(band_kept) == 0:
                return None
            kept.append(band_kept)
        used = np.array(used)
        wsum = used["wsum"]
        row["psfrec_T"] = float(np.sum(wsum * used["psf_fit_T"]) / wsum.sum())
        row["psfrec_g"] = np.sum(wsum[:, None] * used["psf_fit_g"], axis=0) / wsum.sum()
        has_max = used["wmax"] > 0
        if has_max.any():
            row["mask_frac"] = 1.0 - float(np.sum(wsum[has_max] / used["wmax"][has_max])
                                           / np.sum(used["npix"][has_max]))
        return kept

    @staticmethod
    def _fill_psf_epoch(erow: np.ndarray, res: dict, psf_obs) -> None:
        erow["psf_fit_g"] = res["g"]
        erow["psf_fit_T"] = res["T"]
        erow["psf_fit_pars"] = psf_obs.gmix.get_full_pars()
        pars = np.asarray(res.get("pars", psf_obs.gmix.get_full_pars()))
        n = min(pars.size, erow["psf_fit_model_pars"].size)
        erow["psf_fit_model_pars"][:n] = pars[:n]
        s2n = res.get("s2n")
        if s2n is not None and np.isfinite(s2n):
            erow["psf_model_s2n"] = s2n
        erow["psf_fit_flux_frac"] = psf_flux_fraction(psf_obs)

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
            else:
                res = fit_model(mbobs, model, prior=self.priors[model], rng=rng,
                                ntry=mpars["ntry"], lm_pars=mpars["lm_pars"] or None)
            results[model] = res
            self.fill_fit(row, model, res, mbobs)
        obj.extra["results"] = results
        return results

    @staticmethod
    def fill_fit(row: np.ndarray, model: str, res: dict, mbobs, extra_flags: int = 0) -> int:
        """Fill one model's columns (cm's fracdev ones too); flag the object when the
        fit is not usable. Returns the model's max flags."""
        flags = fill_model(row, model, res, mbobs, extra_flags)
        if model == "cm":
            for key in ("fracdev", "fracdev_noclip", "fracdev_err", "TdByTe",
                        "TdByTe_noclip"):
                value = res.get(key)
                if value is not None and np.isfinite(value):
                    row[f"cm_{key}"] = value
        if flags != 0:
            row["flags"] |= F.GAL_FIT_FAILURE
        return flags


CM_COLUMNS = [
    Column("cm_fracdev", "f4", (), C.NONE, "fraction of the flux in the dev component of "
           "the composite model, clipped to [0, 1] (fixed in the cm fit)"),
    Column("cm_fracdev_noclip", "f4", (), C.NONE, "fracdev before clipping"),
    Column("cm_fracdev_err", "f4", (), C.NONE, "error on fracdev (linear fit of the exp and "
           "dev templates)"),
    Column("cm_TdByTe", "f4", (), C.NONE, "T of the dev fit over T of the exp fit, as used "
           "in the cm fit (1 when either T is not positive)"),
    Column("cm_TdByTe_noclip", "f4", (), C.NONE, "T_dev / T_exp as measured (-9999 when "
           "either T is not positive)"),
]

register("max")(MaxLikeFitter)

__all__ = ["MaxLikeFitter", "CM_COLUMNS", "model_npars"]
