"""PSF fitting: adaptive moments, LM fits of gauss/turb/coellipN, EM with N Gaussians,
and the wing models ``coellipN+wing`` / ``emN+wing`` (see ``wing.py``).

``fit_psf`` never raises for bad data: a zero-flux, non-finite or zero-weight
PSF image gives a result with the PSF_FIT_FAILURE bit set and ``psf_obs.gmix``
left untouched.  On success ``psf_obs.gmix`` is the fitted mixture in (v, u)
arcsec relative to the Jacobian centre, with the image's flux (wing models:
plus the light estimated beyond the stamp).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..interrupts import reraise_if_interrupted
from .admom import admom_arrays, obs_arrays
from .em import fit_em
from .flags import BAD_INPUT, PSF_FIT_FAILURE
from .wing import estimate_wing, flux_weight, mixture

logger = logging.getLogger(__name__)

LM_PSF_MODELS = ("gauss", "turb")
EM_MODELS = tuple(f"em{n}" for n in range(1, 6))

# starting coellipN mixtures relative to the admom size and flux: a compact
# core plus progressively broader wings, as PSF profiles have
_COELLIP_START = {
    1: ((1.0,), (1.0,)),
    2: ((0.6, 2.0), (0.6, 0.4)),
    3: ((0.4, 1.1, 3.5), (0.35, 0.5, 0.15)),
    4: ((0.3, 0.8, 2.0, 5.0), (0.2, 0.4, 0.3, 0.1)),
    5: ((0.2, 0.5, 1.1, 2.5, 6.0), (0.1, 0.3, 0.35, 0.2, 0.05)),
}
COELLIP_MODELS = tuple(f"coellip{n}" for n in sorted(_COELLIP_START))
WING_SUFFIX = "+wing"
#: a coellipN or emN mixture fitted with the light beyond the stamp extrapolated
#: into one more (far) Gaussian; LM fits use flux weights (``wing.py``)
WING_MODELS = tuple(m + WING_SUFFIX for m in COELLIP_MODELS + EM_MODELS)
#: every PSF model ``fit_psf`` fits (configs are validated against this list)
PSF_MODELS = ("admom",) + LM_PSF_MODELS + COELLIP_MODELS + EM_MODELS + WING_MODELS


def split_wing(model: str) -> tuple[str, bool]:
    """(base model, whether it has the far wing Gaussian) of a PSF model name."""
    if model.endswith(WING_SUFFIX):
        return model[:-len(WING_SUFFIX)], True
    return model, False


class PSFResult(dict):
    """flags (0 or PSF_FIT_FAILURE), fit_flags (the underlying fitter's flags),
    model, pars, g, T, flux, numiter/nfev, and ``gmix`` on success."""

    def get_gmix(self):
        return self.get("gmix")


def _failure(model: str, why: str, fit_flags: int = 0) -> PSFResult:
    logger.debug("PSF fit (%s) failed: %s", model, why)
    return PSFResult(flags=PSF_FIT_FAILURE, fit_flags=int(fit_flags), model=model,
                     pars=None, g=np.full(2, np.nan), T=np.nan, flux=np.nan,
                     gmix=None, message=why)


def _success(model: str, gmix, pars, fit_flags: int = 0, **extra) -> PSFResult:
    g1, g2, T = gmix.get_g1g2T()
    return PSFResult(flags=0, fit_flags=int(fit_flags), model=model,
                     pars=np.asarray(pars), g=np.array([g1, g2]), T=float(T),
                     flux=float(gmix.get_flux()), gmix=gmix, message="", **extra)


def _valid_gmix(gmix) -> bool:
    if gmix is None or not gmix.is_valid():
        return False
    g1, g2, T = gmix.get_g1g2T()
    return bool(np.isfinite(T) and T > 0 and np.isfinite(g1) and np.isfinite(g2)
                and g1 * g1 + g2 * g2 < 1.0 and gmix.get_flux() > 0)


def lm_guess(model: str, am: dict, flux: float, rng: np.random.Generator | None,
             scale: float, jitter: float) -> np.ndarray:
    """Starting parameters for an LM PSF model from adaptive moments, perturbed
    by ``jitter`` (fractional size/flux, and absolute shape) when rng is given."""
    v, u, g1, g2, T = am["pars"][:5]

    def rnd(n=None):
        if rng is None or jitter == 0:
            return np.zeros(n) if n else 0.0
        return rng.uniform(-1.0, 1.0, size=n)

    v = v + 0.1 * scale * rnd() * (jitter > 0)
    u = u + 0.1 * scale * rnd() * (jitter > 0)
    g1 = float(np.clip(g1 + jitter * 0.2 * rnd(), -0.5, 0.5))
    g2 = float(np.clip(g2 + jitter * 0.2 * rnd(), -0.5, 0.5))
    if model.startswith("coellip"):
        n = int(model[len("coellip"):])
        tf, ff = _COELLIP_START.get(n, (tuple(np.geomspace(0.3, 5.0, n)), (1.0 / n,) * n))
        Ts = T * np.asarray(tf) * (1.0 + jitter * rnd(n))
        Fs = flux * np.asarray(ff) * (1.0 + jitter * rnd(n))
        return np.concatenate([[v, u, g1, g2], Ts, Fs])
    # admom T of a peaked profile underestimates the full second moment
    Tg = T * (1.2 if model == "turb" else 1.0) * (1.0 + jitter * rnd())
    return np.array([v, u, g1, g2, Tg, flux * (1.0 + jitter * rnd())])


def _fit_lm(target, model: str, am: dict, flux: float, ntry: int,
            rng: np.random.Generator | None, scale: float,
            lm_pars: dict | None = None) -> PSFResult:
    """LM fit of the (unconvolved) Observation ``target``: the PSF stamp, or for a
    wing model the stamp less the far Gaussian's light, with flux weights."""
    from .gmix import GMixModel
    from .maxlike import fit_model

    last_flags = 0
    for itry in range(ntry):
        guess = lm_guess(model, am, flux, rng, scale, jitter=0.0 if itry == 0 else 0.1)
        try:
            res = fit_model(target, model, guess=guess, rng=rng, ntry=1, lm_pars=lm_pars)
        except Exception as err:  # a fitter bug must not kill the object
            reraise_if_interrupted(err)
            logger.warning("PSF %s fit raised %r", model, err)
            last_flags = BAD_INPUT
            continue
        last_flags = int(res["flags"])
        if last_flags != 0:
            continue
        try:
            gmix = GMixModel(res["pars"], model)
        except ValueError:
            continue
        if _valid_gmix(gmix):
            flux, err = float(res["flux"][0]), float(res["flux_err"][0])
            s2n = flux / err if err > 0 and math.isfinite(flux / err) else np.nan
            return _success(model, gmix, res["pars"], nfev=res.get("nfev", 0), ntry=itry + 1,
                            chi2per=res.get("chi2per", np.nan), s2n=s2n)
    return _failure(model, f"LM fit failed in {ntry} tries", last_flags)


def _fit_em(psf_obs, ngauss: int, am: dict | None, ntry: int,
            rng: np.random.Generator | None, em_pars: dict) -> PSFResult:
    model = f"em{ngauss}"
    last_flags = 0
    guess_T = am["T"] if am is not None else None
    for itry in range(ntry):
        res = fit_em(psf_obs, ngauss, rng=rng if itry > 0 else None, guess_T=guess_T,
                     **em_pars)
        last_flags = res["flags"]
        if last_flags != 0:
            continue
        gmix = res.get_gmix()
        if _valid_gmix(gmix):
            return _success(model, gmix, res["pars"].ravel(), last_flags,
                            numiter=res["numiter"], ntry=itry + 1)
    return _failure(model, f"EM failed in {ntry} tries", last_flags)


# options accepted in ``fit_pars`` (the psf_pars.fit_pars config section) and their types
_ADMOM_KEYS = {"maxiter": int, "etol": float, "Ttol": float}
_EM_KEYS = {"maxiter": int, "tol": float}


def fit_pars_types(model: str) -> dict[str, type]:
    """Options ``fit_psf`` takes for ``model`` (name -> int or float; all positive)."""
    model = split_wing(model)[0]
    if model == "admom":
        return dict(_ADMOM_KEYS)
    if model in EM_MODELS:
        return dict(_EM_KEYS)
    from .maxlike import LM_PARS_TYPES
    return dict(LM_PARS_TYPES)


def psf_ngauss(model: str) -> int:
    """Gaussians in a PSF model's mixture (its full parameters: 6 per Gaussian)."""
    model, wing = split_wing(model)
    if model in EM_MODELS:
        n = int(model[2:])
    elif model.startswith("coellip"):
        n = int(model[len("coellip"):])
    elif model == "admom":
        n = 1
    else:
        from .models import get_model
        n = get_model(model).ngauss
    return n + wing


def psf_npars(model: str) -> int:
    """Length of a PSF model's parameter vector (EM: the flat mixture, 6 per Gaussian;
    wing models: the base model's, then the far Gaussian's 6)."""
    model, wing = split_wing(model)
    if model in EM_MODELS:
        n = 6 * int(model[2:])
    elif model.startswith("coellip"):
        n = 4 + 2 * int(model[len("coellip"):])
    else:
        n = 6
    return n + 6 * wing


def _check_fit_pars(model: str, fit_pars: dict) -> tuple:
    allowed = tuple(fit_pars_types(model))
    unknown = sorted(set(fit_pars) - set(allowed))
    if unknown:
        raise ConfigError(f"psf_pars.fit_pars: {', '.join(unknown)} not valid for PSF model "
                          f"'{model}' (valid: {', '.join(allowed)})")
    return allowed


def _coellip_n(model: str) -> int:
    """N of a "coellipN" name, 0 for any other name."""
    if not model.startswith("coellip"):
        return 0
    try:
        return int(model[len("coellip"):])
    except ValueError:
        return 0


def _with_wing(res: PSFResult, model: str, far, stamp_flux: float) -> PSFResult:
    """The base fit's result with the far Gaussian ``far`` (a wing.Wing) appended."""
    gmix = mixture(np.vstack([res["gmix"].get_full_pars().reshape(-1, 6), far.pars]))
    extra = {k: v for k, v in res.items() if k not in _RESULT_KEYS}
    return _success(model, gmix, np.concatenate([np.ravel(res["pars"]), far.pars]),
                    res["fit_flags"], wing_frac=far.flux / stamp_flux, wing_slope=far.slope,
                    **extra)


_RESULT_KEYS = ("flags", "fit_flags", "model", "pars", "g", "T", "flux", "gmix", "message")


def fit_psf(psf_obs: Any, model: str = "coellip3", ntry: int = 4,
            rng: np.random.Generator | None = None, guess_T: float | None = None,
            **fit_pars) -> PSFResult:
    """Fit a PSF Observation with ``model`` ("admom", "gauss", "turb", "coellipN",
    "em1".."em5", or a wing model "coellipN+wing" / "emN+wing"); on success set
    ``psf_obs.gmix``.

    ntry: attempts from an admom-based guess, jittered on retries (LM also
    perturbs each start with ``rng``; EM's first try is deterministic).
    guess_T: starting size in arcsec^2 for adaptive moments.
    fit_pars: admom (maxiter, etol, Ttol), EM (maxiter, tol) or LM (maxfev,
    ftol, xtol, lambda0) options; others raise ConfigError.
    Wing models fit the base model to the stamp minus the far Gaussian's light
    in it (LM with ``wing.flux_weight``), then append the far Gaussian; their
    result also holds ``wing_frac`` (light put beyond the stamp / the stamp's)
    and ``wing_slope`` (the measured n of the rho^-n wings, nan if none).
    """
    from .observation import Observation

    model = str(model)
    base, wing = split_wing(model)
    _check_fit_pars(model, fit_pars)
    image, weight, jac, problem = obs_arrays(psf_obs)
    if problem:
        return _failure(model, problem)
    flux = float(image[weight > 0].sum())
    if not (flux > 0.0) or not np.isfinite(flux):
        return _failure(model, "PSF image has no positive flux")
    scale = math.sqrt(abs(jac[2] * jac[5] - jac[3] * jac[4]))

    am_kw = {k: fit_pars[k] for k in _ADMOM_KEYS if k in fit_pars and model == "admom"}
    am = admom_arrays(image, weight, jac, guess_T=guess_T, **am_kw)
    if am["flags"] != 0:
        am_ok = None
        # a fallback start: centred, round, 2-pixel sigma (or guess_T)
        Tg = guess_T if guess_T else 8.0 * scale * scale
        am_start = {"pars": np.array([0.0, 0.0, 0.0, 0.0, Tg, flux]), "T": Tg,
                    "Irr": 0.5 * Tg, "Irc": 0.0, "Icc": 0.5 * Tg}
    else:
        am_ok = am
        am_start = am

    if wing and base not in EM_MODELS and _coellip_n(base) < 1:
        return _failure(model, f"unknown PSF model '{model}'")
    if wing:
        far = estimate_wing(image, weight, jac, am_start["pars"][:2],
                            (am_start["Irr"], am_start["Irc"], am_start["Icc"]))
        image = image - far.inside
        target = Observation.from_clean(image, weight if base in EM_MODELS
                                        else flux_weight(image, weight), psf_obs.jacobian)
        fit_flux = flux - float(far.inside[weight > 0].sum())
    else:
        far = None
        target = Observation.from_clean(image, weight, psf_obs.jacobian)
        fit_flux = flux

    if base == "admom" and not wing:
        if am_ok is None:
            return _failure(model, "adaptive moments failed", am["flags"])
        res = _success(model, am.get_gmix(), am["pars"], numiter=am["numiter"], s2n=am["s2n"])
    elif base in EM_MODELS:
        res = _fit_em(target, int(base[2:]), am_ok, max(ntry, 1), rng, dict(fit_pars))
    elif (base in LM_PSF_MODELS and not wing) or _coellip_n(base) >= 1:
        res = _fit_lm(target, base, am_start, fit_flux, max(ntry, 1), rng, scale,
                      dict(fit_pars) or None)
    else:
        return _failure(model, f"unknown PSF model '{model}'")

    if res["flags"] == 0 and far is not None:
        res = _with_wing(res, model, far, flux)
    elif res["flags"] != 0:
        res["model"] = model
    if res["flags"] == 0:
        psf_obs.gmix = res["gmix"]
    return res


def fit_psfs(obs: Any, model: str = "coellip3", ntry: int = 4,
             rng: np.random.Generator | None = None, guess_T: float | None = None,
             **fit_pars) -> list:
    """Fit the PSF of every epoch of an Observation / ObsList / MultiBandObsList.

    Returns one list of PSFResult per band (epochs in order); an epoch without
    a PSF observation gets a failed result.
    """
    from .observation import get_mb_obs

    out = []
    for obslist in get_mb_obs(obs):
        band = []
        for ep in obslist:
            if ep.psf is None:
                band.append(_failure(model, "epoch has no PSF observation"))
                continue
            band.append(fit_psf(ep.psf, model=model, ntry=ntry, rng=rng, guess_T=guess_T,
                                **fit_pars))
        out.append(band)
    return out
