"""Metacalibration fitter: the max-likelihood stages, then metacal shear fits."""

from __future__ import annotations

import numpy as np

from .. import columns as C
from ..columns import Column, mat, vec
from ..gmix import flags as F
from ..gmix.metacal import metacal
from .base import fit_quality_flags, register
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

    def model_columns(self) -> list[Column]:
        cols = super().model_columns()
        nb = self.nband
        npars = model_npars(self.mconf["model"], nb)
        pu = C.pars_unit(self.mconf["model"])
        cols.append(Column("mcal_flags", "i8", (), C.BITS, "metacal flags: 0 = every "
                           "metacal type fitted and usable (model bits, METACAL_FAILURE)"))
        for mtype in self.types:
            s = suffix(mtype)
            what = f"of the {mtype} metacal image"
            cols += [
                Column(f"mcal_g{s}", "f8", vec(2), C.NONE, f"reduced shear g {what}"),
                Column(f"mcal_g_cov{s}", "f8", mat(2), C.NONE, f"covariance of g {what}"),
                Column(f"mcal_pars{s}", "f8", vec(npars), pu, f"best-fit parameters {what}"),
                Column(f"mcal_pars_cov{s}", "f8", mat(npars), C.PARS_COV,
                       f"covariance of the parameters {what}"),
            ]
            if mtype == "noshear":
                cols += [
                    Column("mcal_gpsf", "f8", vec(2), C.NONE, "weight-sum weighted mean g of "
                           "the reconvolution PSF (noshear)"),
                    Column("mcal_Tpsf", "f8", (), C.ARCSEC2, "weight-sum weighted mean T of "
                           "the reconvolution PSF (noshear)"),
                ]
            cols += [
                Column(f"mcal_T{s}", "f8", (), C.ARCSEC2, f"T {what}"),
                Column(f"mcal_T_err{s}", "f8", (), C.ARCSEC2, f"error on T {what}"),
                Column(f"mcal_T_r{s}", "f8", (), C.ARCSEC2, f"T of the round model {what}"),
                Column(f"mcal_s2n_r{s}", "f8", (), C.NONE, f"round S/N {what}"),
                Column(f"mcal_s2n_w{s}", "f8", (), C.NONE, f"weighted S/N {what}"),
                Column(f"mcal_flux{s}", "f8", vec(nb), C.FLUX, f"flux per band {what}"),
                Column(f"mcal_flux_err{s}", "f8", vec(nb), C.FLUX,
                       f"error on the flux per band {what}"),
            ]
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
            npar = row[f"mcal_pars{s}"].size
            flags |= int(r["flags"]) | fit_quality_flags(r, npar)
            if r.get("pars") is None or int(r["flags"]) != 0:
                continue
            row[f"mcal_pars{s}"] = r["pars"]
            for key in ("pars_cov", "g", "g_cov", "T", "T_err", "T_r", "s2n_r", "s2n_w",
                        "flux", "flux_err"):
                value = r.get(key)
                if value is not None and np.all(np.isfinite(value)):
                    row[f"mcal_{key}{s}"] = value
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
