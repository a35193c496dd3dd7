"""The composite (cm) model: fracdev and TdByTe from exp and dev fits, then a cm fit."""

from __future__ import annotations

import numpy as np

from ..gmix import flags as F
from ..gmix.flags import DEFVAL
from ..gmix.gmix import GMixModel
from ..gmix.maxlike import fit_model


def _render(obs, pars: np.ndarray, model: str, band: int, flux: float) -> np.ndarray:
    gm = GMixModel(pars, model, band=band)
    gm.set_flux(flux)
    if obs.psf is not None and getattr(obs.psf, "gmix", None) is not None:
        gm = gm.convolve(obs.psf.gmix)
    return gm.make_image(obs.image.shape, jacobian=obs.jacobian)


def fit_fracdev(mbobs, exp_pars: np.ndarray, dev_pars: np.ndarray,
                exp_flux: np.ndarray) -> tuple[float, float]:
    """Linear least-squares fracdev: data ~ A*exp + B*dev, fracdev = B/(A+B).

    Both templates are drawn with the exp fit's flux in each band so that A and
    B are fractions of the same total; the error follows from the 2x2 normal
    matrix.
    """
    ata = np.zeros((2, 2))
    atb = np.zeros(2)
    for band, obslist in enumerate(mbobs):
        for obs in obslist:
            w = obs.weight
            use = w > 0
            e = _render(obs, exp_pars, "exp", band, exp_flux[band])[use]
            d = _render(obs, dev_pars, "dev", band, exp_flux[band])[use]
            ww = w[use]
            im = obs.image[use]
            ata += [[np.sum(ww * e * e), np.sum(ww * e * d)], [np.sum(ww * e * d), np.sum(ww * d * d)]]
            atb += [np.sum(ww * e * im), np.sum(ww * d * im)]
    cov = np.linalg.inv(ata)
    a, b = cov @ atb
    tot = a + b
    fracdev = b / tot
    # gradient of b/(a+b) with respect to (a, b)
    grad = np.array([-b, a]) / tot ** 2
    return float(fracdev), float(np.sqrt(grad @ cov @ grad))


def fit_composite(mbobs, results: dict, prior=None, rng=None, ntry: int = 2,
                  lm_pars: dict | None = None) -> dict:
    """Fit cm with fracdev and TdByTe fixed from the exp and dev results."""
    exp, dev = results.get("exp"), results.get("dev")
    if exp is None or dev is None or exp["flags"] != 0 or dev["flags"] != 0:
        return {"flags": F.BAD_GUESS, "pars": None, "message": "cm needs good exp and dev fits"}
    try:
        fracdev, fracdev_err = fit_fracdev(mbobs, np.asarray(exp["pars"]),
                                           np.asarray(dev["pars"]), np.atleast_1d(exp["flux"]))
    except np.linalg.LinAlgError:
        return {"flags": F.LM_SINGULAR, "pars": None, "message": "fracdev fit singular"}
    # a mixture with a negative component is not a valid profile for the engine
    fracdev_noclip = fracdev
    fracdev = float(np.clip(fracdev, 0.0, 1.0))
    measured = exp["T"] > 0 and dev["T"] > 0
    TdByTe_noclip = float(dev["T"] / exp["T"]) if measured else DEFVAL
    TdByTe = TdByTe_noclip if measured else 1.0
    res = fit_model(mbobs, "cm", prior=prior, rng=rng, ntry=ntry, lm_pars=lm_pars or None,
                    guess=np.asarray(exp["pars"]), fracdev=fracdev, TdByTe=TdByTe)
    res.update(fracdev=fracdev, fracdev_noclip=fracdev_noclip, fracdev_err=fracdev_err,
               TdByTe=TdByTe, TdByTe_noclip=TdByTe_noclip)
    return res
