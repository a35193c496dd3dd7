"""Metacalibration fitter: the max-likelihood stages, then metacal shear fits."""

from __future__ import annotations

import numpy as np

from ..gmix import flags as F
from ..gmix.metacal import metacal
from .base import register
from .maxlike import MaxLikeFitter, model_npars

TYPES = ("noshear", "1p", "1m", "2p", "2m")


def suffix(mtype: str) -> str:
    """Column suffix of a metacal type: none for noshear, else '_1p' etc."""
    return "" if mtype == "noshear" else f"_{mtype}"


class MetacalFitter(MaxLikeFitter):
    """PSF fits, PSF flux, optional max-likelihood models, then metacal."""

    def __init__(self, conf: dict, nband: int):
        super().__init__(conf, nband)
        self.mconf = conf["metacal_pars"]
        self.types = [t for t in TYPES if t in self.mconf["types"]]

    def model_dtype(self) -> list:
        cols = super().model_dtype()
        npars = model_npars(self.mconf["model"], self.nband)
        cols += [("mcal_flags", "i4"), ("mcal_gpsf", "f8", 2), ("mcal_Tpsf", "f8")]
        for mtype in self.types:
            s = suffix(mtype)
            cols += [(f"mcal_g{s}", "f8", 2), (f"mcal_g_cov{s}", "f8", (2, 2)),
                     (f"mcal_pars{s}", "f8", npars), (f"mcal_T{s}", "f8"),
                     (f"mcal_T_err{s}", "f8"), (f"mcal_T_r{s}", "f8"),
                     (f"mcal_s2n_r{s}", "f8"), (f"mcal_s2n_w{s}", "f8"),
                     (f"mcal_flux{s}", "f8", self.nband), (f"mcal_flux_err{s}", "f8", self.nband)]
        return cols

    def fit_object(self, obj, rng: np.random.Generator, row: np.ndarray,
                   erows: np.ndarray) -> None:
        super().fit_object(obj, rng, row, erows)
        mbobs = obj.extra.get("mbobs_used")
        if mbobs is None:
            row["mcal_flags"] = F.METACAL_FAILURE
            return
        obj.extra["stage"] = "metacal"
        prior = self.priors.get(self.mconf["model"])
        res = metacal(mbobs, model=self.mconf["model"], psf=self.mconf["psf"],
                      step=self.mconf["step"], types=tuple(self.types),
                      fixnoise=self.mconf["fixnoise"], rng=rng, prior=prior,
                      psf_model=self.conf["psf_pars"]["model"]
                      if self.conf["psf_pars"]["model"] in ("gauss", "admom") else "gauss")
        self.fill_metacal(row, res)

    def fill_metacal(self, row: np.ndarray, res: dict) -> None:
        flags = 0
        for mtype in self.types:
            r = res.get(mtype)
            if r is None:
                flags |= F.METACAL_FAILURE
                continue
            s = suffix(mtype)
            flags |= int(r["flags"])
            if r.get("pars") is None:
                continue
            pars = np.asarray(r["pars"])
            npar = row[f"mcal_pars{s}"].size
            row[f"mcal_pars{s}"][:min(npar, pars.size)] = pars[:npar]
            for key in ("g", "g_cov", "T", "T_err", "T_r", "s2n_r", "s2n_w", "flux", "flux_err"):
                if r.get(key) is not None:
                    row[f"mcal_{key}{s}"] = r[key]
        noshear = res.get("noshear")
        if noshear is not None:
            if noshear.get("gpsf") is not None:
                row["mcal_gpsf"] = noshear["gpsf"]
            if noshear.get("Tpsf") is not None:
                row["mcal_Tpsf"] = noshear["Tpsf"]
        row["mcal_flags"] = flags
        if flags:
            row["flags"] |= F.METACAL_FAILURE


register("metacal")(MetacalFitter)
