"""Round measures of a fitted model: ``T_r``, ``s2n_r``, ``psf_T_r`` (ngmix's meaning).

The round model is the fitted profile with its shear removed as if it were a
shear (``T_r = T (1 - g^2) / (1 + g^2)``); ``s2n_r`` is the S/N of that round
model convolved with each epoch's round PSF, through the weight maps only
(``sqrt(sum w m^2)`` over every epoch of every band); ``psf_T_r`` is the
weight-sum weighted mean T of the round PSFs.  Round quantities do not depend
on the object's orientation, which makes them the ones to select on for shear.
A fit with T < 0 (a star's can be: the PSF holds it) has its T_r; its round
S/N is measured when the round model convolved with the PSF is a valid mixture.
"""

from __future__ import annotations

import math

import numpy as np

from . import flags as F
from .gmix import GMix, GMixModel, GMixRangeError


def round_gmix(gmix: GMix) -> GMix:
    """Round version of a mixture: each component keeps its area (det)."""
    new = gmix.copy()
    d = new.data
    s = np.sqrt(d["irr"] * d["icc"] - d["irc"] ** 2)
    d["irr"] = s
    d["icc"] = s
    d["irc"] = 0.0
    new.set_norms()
    return new


def psf_means(mbobs) -> tuple[np.ndarray, float]:
    """Weight-sum weighted mean (g, T) of the epochs' PSF mixtures."""
    gs = np.zeros(2)
    Ts = 0.0
    wsum = 0.0
    for obslist in mbobs:
        for ob in obslist:
            w = float(ob.weight.sum())
            g1, g2, T = ob.psf.gmix.get_g1g2T()
            gs += w * np.array([g1, g2])
            Ts += w * T
            wsum += w
    return gs / wsum, Ts / wsum


def round_measures(pars, mbobs, model: str, fracdev: float | None = None,
                   TdByTe: float | None = None) -> dict:
    """``{flags, T_r, s2n_r, psf_T_r}`` of a model fitted to ``mbobs``.

    ``pars``: the fitted ``[v, u, g1, g2, T, (fracdev,) flux per band]``.  Flags
    (model family): BAD_PSF when an epoch has no PSF mixture, NO_DATA when the
    weights hold no signal, BAD_MODEL when the round model cannot be built.
    """
    out = {"flags": 0, "T_r": F.DEFVAL, "s2n_r": F.DEFVAL, "psf_T_r": F.DEFVAL}
    pars = np.asarray(pars, dtype="f8")
    nband = len(mbobs)
    g1, g2, T = pars[2], pars[3], pars[4]
    gsq = g1 * g1 + g2 * g2
    if not (np.all(np.isfinite(pars)) and gsq < 1.0):
        out["flags"] = F.BAD_MODEL
        return out
    T_r = T * (1.0 - gsq) / (1.0 + gsq)
    out["T_r"] = float(T_r)
    nshape = pars.size - nband
    s2n_sq = psf_T = wsum = 0.0
    try:
        for iband, obslist in enumerate(mbobs):
            bpars = np.concatenate([pars[:nshape], [pars[nshape + iband]]])
            bpars[2] = bpars[3] = 0.0
            bpars[4] = T_r
            gm0 = GMixModel(bpars, model, fracdev=fracdev, TdByTe=TdByTe)
            for ob in obslist:
                if ob.psf is None or getattr(ob.psf, "gmix", None) is None:
                    out["flags"] = F.BAD_PSF
                    return out
                psf_round = round_gmix(ob.psf.gmix)
                m = gm0.convolve(psf_round).make_image(ob.image.shape, ob.jacobian)
                s2n_sq += float((m * m * ob.weight).sum())
                w = float(ob.weight.sum())
                psf_T += w * psf_round.get_T()
                wsum += w
    except (GMixRangeError, ValueError):
        out["flags"] = F.BAD_MODEL
        return out
    if not (s2n_sq > 0.0 and wsum > 0.0 and math.isfinite(s2n_sq)):
        out["flags"] = F.NO_DATA
        return out
    out["s2n_r"] = math.sqrt(s2n_sq)
    out["psf_T_r"] = psf_T / wsum
    return out
