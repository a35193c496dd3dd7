"""Maximum-likelihood fits of mixture models (Levenberg-Marquardt with analytic
derivatives, priors as extra residuals, bounds), single or multi-epoch,
single or multi-band (shared centre/shape/T, one flux per band).

Data problems never raise: they give a FitResult with non-zero ``flags`` (bits
in flags.py) and a ``message``.
"""
import logging
import math
from typing import Optional

import numpy as np

from . import flags as F
from . import lm_nb
from . import starts as S
from .gmix import GMixModel
from .models import ModelSpec, get_model
from .observation import get_mb_obs
from .gmix_nb import psf_table
from .render_nb import KIND_BDF, KIND_COELLIP, KIND_SHARED

log = logging.getLogger(__name__)

DEFAULT_LM_PARS = {"maxit": 200, "ftol": 1.0e-5, "xtol": 1.0e-6, "lambda0": 1.0e-3}
#: options accepted in ``lm_pars`` (``maxfev`` is ngmix's name of ``maxit``); all positive
LM_PARS_TYPES = {"maxit": int, "maxfev": int, "ftol": float, "xtol": float, "lambda0": float}
_KINDS = {"shared": KIND_SHARED, "bdf": KIND_BDF, "coellip": KIND_COELLIP}
_EMPTY_PRIOR = (np.zeros(0, dtype=np.int64), np.zeros((0, 2), dtype=np.int64),
                np.zeros((0, 4)))
_NO_PSF = np.array([[1.0, 0.0, 0.0, 0.0, 0.0, 0.0]])  # a delta function: fit unconvolved
#: a solution with a shape modulus above this is flagged SHAPE_AT_LIMIT
G_LIMIT = 0.999


class FitResult(dict):
    """Result of a fit: a dict with flags (0 = ok), pars, pars_cov, pars_err, g,
    g_cov, T, T_err, flux, flux_err (per band), s2n_w, chi2per, dof, nfev, model,
    message; ``get_gmix(band)`` gives the fitted (unconvolved) mixture."""

    def get_gmix(self, band: int = 0):
        return GMixModel(self["pars"], self["spec"], band=band)

    @property
    def flags(self) -> int:
        return self["flags"]


# ---------------------------------------------------------------------------
# packing observations for the kernels
# ---------------------------------------------------------------------------
class _Packed:
    """Flat arrays of all usable epochs, as the numba kernels want them."""

    def __init__(self, mbobs, nband):
        self.nband = nband
        self.flags = 0
        self.message = ""
        imgs, sqws, info, jacs, psfs = [], [], [], [], []
        self.first = [None] * nband      # first usable obs per band (for guesses)
        self.Tpsf = [0.0] * nband
        self.nepoch_used = np.zeros(nband, dtype=int)
        off = 0
        prow = 0
        for b, obslist in enumerate(mbobs):
            bflags = 0
            for obs in obslist:
                eflag, ptab, Tpsf = self._check(obs)
                if eflag:
                    bflags |= eflag
                    continue
                w = obs.weight
                img = obs.image
                imgs.append(img.ravel())
                sqws.append(np.sqrt(w).ravel())
                nrow, ncol = img.shape
                info.append((off, nrow, ncol, b, prow, ptab.shape[0]))
                jacs.append(obs.jacobian.jac6)
                psfs.append(ptab)
                off += img.size
                prow += ptab.shape[0]
                self.nepoch_used[b] += 1
                if self.first[b] is None:
                    self.first[b] = obs
                    self.Tpsf[b] = Tpsf
            if self.nepoch_used[b] == 0:
                self.flags |= bflags if bflags else F.NO_DATA
                self.message = f"band {b}: no usable epoch ({', '.join(F.flag_names(bflags or F.NO_DATA))})"
        if self.flags:
            return
        self.img = np.concatenate(imgs)
        self.sqw = np.concatenate(sqws)
        self.ep_info = np.array(info, dtype=np.int64)
        self.ep_jac = np.array(jacs, dtype='f8')
        self.psf_tab = np.concatenate(psfs)

    @staticmethod
    def _check(obs):
        """(flag, psf table, psf T) of one epoch; flag 0 if usable."""
        if not obs.jacobian.is_valid():
            return F.BAD_JACOBIAN, None, 0.0
        if not (obs.weight > 0).any():
            return F.NO_DATA, None, 0.0
        gm = obs.get_psf_gmix()
        if gm is None:
            return 0, _NO_PSF, 0.0
        bad, tab, T = psf_table(gm.data)
        if bad:
            return F.BAD_PSF, None, 0.0
        return 0, tab, T


def _flagged(spec, nband, flags, message, model) -> FitResult:
    npar = spec.npars(nband) if spec is not None else 5 + nband
    return FitResult(
        flags=int(flags), message=message, model=model, spec=spec,
        pars=np.full(npar, F.DEFVAL), pars_cov=np.full((npar, npar), F.BIGVAL),
        pars_err=np.full(npar, F.BIGVAL), g=np.full(2, F.DEFVAL),
        g_cov=np.full((2, 2), F.BIGVAL), T=F.DEFVAL, T_err=F.BIGVAL,
        flux=np.full(nband, F.DEFVAL), flux_err=np.full(nband, F.BIGVAL),
        s2n_w=F.DEFVAL, chi2per=F.DEFVAL, dof=0, npix=0, nfev=0, niter=0, ntry=0)


def _derived(res: FitResult, spec: ModelSpec, nband: int) -> None:
    pars = res["pars"]
    cov = res["pars_cov"]
    if spec.kind == "coellip":
        n = spec.ngauss
        Ts = pars[4:4 + n]
        Fs = pars[4 + n:]
        Ftot = Fs.sum()
        T = float(np.sum(Ts * Fs) / Ftot) if Ftot != 0 else F.DEFVAL
        grad_T = np.zeros(pars.size)
        grad_F = np.zeros(pars.size)
        if Ftot != 0:
            grad_T[4:4 + n] = Fs / Ftot
            grad_T[4 + n:] = (Ts - T) / Ftot
        grad_F[4 + n:] = 1.0
        res["T"] = T
        res["T_err"] = float(math.sqrt(max(grad_T @ cov @ grad_T, 0.0)))
        res["flux"] = np.array([Ftot])
        res["flux_err"] = np.array([math.sqrt(max(grad_F @ cov @ grad_F, 0.0))])
    else:
        res["T"] = float(pars[4])
        res["T_err"] = float(res["pars_err"][4])
        fl = slice(spec.nshape, spec.nshape + nband)
        res["flux"] = pars[fl].copy()
        res["flux_err"] = res["pars_err"][fl].copy()
        res["flux_cov"] = cov[fl, fl].copy()
        if spec.kind == "bdf":
            res["fracdev"] = float(pars[5])
            res["fracdev_err"] = float(res["pars_err"][5])
    res["g"] = pars[2:4].copy()
    res["g_cov"] = cov[2:4, 2:4].copy()


def fit_model(obs, model, prior=None, guess=None, rng: Optional[np.random.Generator] = None,
              ntry: int = 2, lm_pars: Optional[dict] = None, bounds=None,
              fracdev: Optional[float] = None, TdByTe: Optional[float] = None) -> FitResult:
    """Fit ``model`` to an Observation, a list of epochs or a list of bands.

    prior: a priors.JointPrior (or None); guess: starting parameters, perturbed
    by rng (else the engine's own starts, pipeline.gmix.starts: a round,
    PSF-sized start, and more starts when the fit ends near a shape modulus of 1, the lowest
    chi2 kept); ntry: attempts until a fit succeeds (retries start perturbed,
    more each time); bounds: (lo, hi) arrays (None entries = unbounded);
    fracdev, TdByTe: the fixed parameters of model "cm".  Each epoch is
    convolved with its own ``obs.psf.gmix``; without a PSF mixture the model is
    fit unconvolved.  A fit whose shape modulus ends above G_LIMIT gets SHAPE_AT_LIMIT,
    one whose T ends at a bound AT_SIZE_BOUND.
    """
    spec = model if isinstance(model, ModelSpec) else get_model(model, fracdev, TdByTe)
    name = spec.name
    try:
        mbobs = get_mb_obs(obs)
    except ValueError as err:
        return _flagged(spec, 1, F.BAD_INPUT, str(err), name)
    nband = len(mbobs)
    if spec.kind == "coellip" and nband != 1:
        return _flagged(spec, nband, F.BAD_INPUT, f"{name} fits one band only", name)
    try:
        return _fit(mbobs, spec, nband, prior, guess, rng, ntry, lm_pars, bounds)
    except (ValueError, ArithmeticError, np.linalg.LinAlgError) as err:
        log.debug("fit of %s failed: %s", name, err)
        return _flagged(spec, nband, F.BAD_INPUT, f"fit failed: {err}", name)


def _fit(mbobs, spec, nband, prior, guess, rng, ntry, lm_pars, bounds) -> FitResult:
    name = spec.name
    packed = _Packed(mbobs, nband)
    if packed.flags:
        return _flagged(spec, nband, packed.flags, packed.message, name)
    lmp = dict(DEFAULT_LM_PARS)
    if lm_pars:
        unknown = set(lm_pars) - set(LM_PARS_TYPES)
        if unknown:
            raise ValueError(f"unknown lm_pars {sorted(unknown)}; known: {sorted(DEFAULT_LM_PARS)}")
        lmp.update(lm_pars)
        if "maxfev" in lm_pars:
            lmp["maxit"] = lm_pars["maxfev"]
    npar = spec.npars(nband)
    lo = np.full(npar, -np.inf)
    hi = np.full(npar, np.inf)
    pr_arrays = _EMPTY_PRIOR
    if prior is not None:
        pr_arrays = prior.arrays(spec.nshape)
        plo, phi = prior.bounds(npar, spec.nshape)
        lo = np.maximum(lo, plo)
        hi = np.minimum(hi, phi)
    if bounds is not None:
        blo, bhi = bounds
        if blo is not None:
            lo = np.maximum(lo, np.where(np.isnan(np.asarray(blo, 'f8')), -np.inf, blo))
        if bhi is not None:
            hi = np.minimum(hi, np.where(np.isnan(np.asarray(bhi, 'f8')), np.inf, bhi))
    if guess is not None:
        base = np.asarray(guess, dtype='f8').ravel()
        if base.size != npar:
            return _flagged(spec, nband, F.BAD_INPUT,
                            f"guess has {base.size} pars, {name} needs {npar}", name)
    own_lambda0 = float(lmp["lambda0"]) if lm_pars and "lambda0" in lm_pars else None
    run = _Runner(spec, packed, lo, hi, lmp, pr_arrays, own_lambda0)
    scale = packed.first[0].jacobian.get_scale()
    if guess is not None or spec.kind == "coellip":
        if guess is None:
            base = S.moment_start(spec, packed, nband)
        res, _ = run.retries(base, rng, ntry, scale, own=False)
        return _final_flags(res, spec, lo, hi)
    round0 = S.round_start(spec, packed, nband)
    res, best = run.retries(round0, rng, ntry, scale, own=True)
    if res["flags"] != 0 or S.suspicious(res["pars"]):
        for start in S.extra_starts(round0, prior, rng):
            r, obj = run.once(start, own=True)
            if r["flags"] == 0 and (res["flags"] != 0 or obj < best):
                res, best = r, obj
        res["nfev"], res["ntry"] = run.nfev, run.ntry
    return _final_flags(res, spec, lo, hi)


class _Runner:
    """LM runs of one fit problem, counting evaluations and attempts.

    From a given guess (near the solution) the damping starts at lm_pars'
    lambda0 and drops 10 times per accepted step; from the engine's own starts
    it starts at starts.START_LAMBDA0 (or lm_pars' lambda0 when given), drops
    slowly, and the first step sets the fluxes."""

    def __init__(self, spec, packed, lo, hi, lmp, pr_arrays, own_lambda0):
        self.spec = spec
        self.packed = packed
        self.lo, self.hi = lo, hi
        self.lmp = lmp
        self.pr_arrays = pr_arrays
        self.own_lambda0 = S.START_LAMBDA0 if own_lambda0 is None else own_lambda0
        self.nfev = 0
        self.ntry = 0

    def once(self, start, own: bool):
        """(result, objective = chi2 + prior terms) of one LM run from ``start``."""
        spec, packed, lmp = self.spec, self.packed, self.lmp
        lam0, lam_down = ((self.own_lambda0, S.START_LAMBDA_DOWN) if own
                          else (float(lmp["lambda0"]), 0.1))
        pars, JtJ, stats, obj, nfev, niter, status = lm_nb.lm_fit(
            start, self.lo, self.hi, int(lmp["maxit"]), float(lmp["ftol"]),
            float(lmp["xtol"]), lam0, _KINDS[spec.kind], spec.pvals, spec.fvals,
            spec.nshape, spec.ndisk, packed.img, packed.sqw, packed.ep_info, packed.ep_jac,
            packed.psf_tab, *self.pr_arrays, own, lam_down)
        self.nfev += nfev
        self.ntry += 1
        res = _make_result(spec, packed.nband, pars, JtJ, stats, self.nfev, niter, status,
                           self.ntry)
        return res, obj

    def retries(self, base, rng, ntry: int, scale: float, own: bool):
        """Runs from ``base`` until one succeeds, at most ntry: the first from
        base itself when it is the engine's own start, the others perturbed by
        rng (more at each retry); the last (result, objective)."""
        for itry in range(max(1, int(ntry))):
            if own and itry == 0:
                start = base.copy()
            elif rng is None:
                start = S.perturb(base, self.spec, np.random.default_rng(itry) if itry else None,
                                  itry, scale)
            else:
                start = S.perturb(base, self.spec, rng, itry, scale)
            res, obj = self.once(start, own)
            if res["flags"] == 0:
                break
        return res, obj


def _final_flags(res: FitResult, spec: ModelSpec, lo, hi) -> FitResult:
    """Flag a fit that succeeded but whose shape ended at the edge of its domain
    (SHAPE_AT_LIMIT) or whose T ended at a bound (AT_SIZE_BOUND)."""
    if res["flags"] != 0:
        return res
    pars = res["pars"]
    msgs = []
    gmag = math.hypot(pars[2], pars[3])
    if gmag > G_LIMIT:
        res["flags"] |= F.SHAPE_AT_LIMIT
        msgs.append(f"|g| = {gmag:.4f} at the edge of its domain")
    if spec.kind != "coellip":
        T = pars[4]
        tol = 1e-3 * max(abs(T), 1e-12)
        if T <= lo[4] + tol or T >= hi[4] - tol:
            res["flags"] |= F.AT_SIZE_BOUND
            msgs.append(f"T = {T:.4g} at its bound")
    if msgs:
        res["message"] = "; ".join(msgs)
    return res


def _make_result(spec, nband, pars, JtJ, stats, nfev, niter, status, ntry) -> FitResult:
    flags = 0
    msgs = []
    if status & lm_nb.ST_BAD_START:
        flags |= F.BAD_GUESS
        msgs.append("model invalid at the starting point")
    if status & lm_nb.ST_MAXIT:
        flags |= F.LM_MAXIT
        msgs.append("iteration limit reached")
    if status & lm_nb.ST_SINGULAR:
        flags |= F.LM_SINGULAR
        msgs.append("normal matrix singular")
    if status & lm_nb.ST_NONFINITE:
        flags |= F.NONFINITE
        msgs.append("non-finite parameters")
    npar = pars.size
    cov = np.full((npar, npar), F.BIGVAL)
    perr = np.full(npar, F.BIGVAL)
    if not (status & (lm_nb.ST_BAD_START | lm_nb.ST_NONFINITE)):
        cst, c, e = lm_nb.covariance(JtJ)
        if cst == 0:
            cov, perr = c, e
        else:
            flags |= F.COV_NOT_POSDEF
            msgs.append("covariance singular" if cst == 1 else "covariance not positive")
    npix = int(stats[3])
    dof = npix - npar
    res = FitResult(
        flags=flags, message="; ".join(msgs) if msgs else "ok", model=spec.name, spec=spec,
        pars=pars.copy(), pars_cov=cov, pars_err=perr,
        s2n_w=float(stats[1] / math.sqrt(stats[2])) if stats[2] > 0 else F.DEFVAL,
        chi2per=float(stats[0] / dof) if dof > 0 else F.DEFVAL, dof=dof, npix=npix,
        chi2=float(stats[0]), nfev=int(nfev), niter=int(niter), ntry=int(ntry))
    _derived(res, spec, nband)
    return res
