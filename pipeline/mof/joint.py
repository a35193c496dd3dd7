"""Joint MOF: all members of a small group in one least-squares fit.

The data are every member's stamps (raw weights); in each stamp the model is
the sum of all members, each placed and convolved as in
:mod:`pipeline.mof.render`.  Pixels of overlapping stamps therefore enter once
per stamp that holds them, as in the iterative method.  The Jacobian is
block-sparse (a member contributes only to stamps it reaches); its blocks are
accumulated straight into the normal matrix, which for groups of up to
``mof.joint_max_group`` members is small.  Levenberg-Marquardt with the
members' priors (extra residuals) and bounds; afterwards every member is
refitted once with the others subtracted, starting at the joint solution, so
the output columns (s2n, chi2per, ...) mean what they mean for the iterative
method; its ``pars_cov`` is then replaced by the member's block of the joint
covariance, which includes the uncertainty from the neighbours.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from ..gmix.maxlike import DEFAULT_LM_PARS
from ..gmix.models import get_model
from ..gmix.priors_nb import prior_residuals
from ..gmix.render_nb import KIND_BDF, KIND_SHARED
from .joint_nb import stamp_normal
from .render import epoch_key, psf_for, reference_vu
from .subtract import correct_mbobs

logger = logging.getLogger(__name__)

_KINDS = {"shared": KIND_SHARED, "bdf": KIND_BDF}


def psf_table(gmix) -> np.ndarray:
    """Rows (p, dv, du, irr, irc, icc), p normalised and centroid removed."""
    d = gmix.data
    p = d["p"] / d["p"].sum()
    vc = float(np.sum(p * d["row"]))
    uc = float(np.sum(p * d["col"]))
    return np.ascontiguousarray(np.column_stack(
        [p, d["row"] - vc, d["col"] - uc, d["irr"], d["irc"], d["icc"]]))


class _Stamp:
    """One epoch stamp of one member with what every member needs to be drawn on it."""

    def __init__(self, obs, band: int, draws: list):
        w = obs.meta.get("weight_raw", obs.weight)
        self.img = np.ascontiguousarray(obs.image, dtype="f8").ravel()
        self.sqw = np.sqrt(np.asarray(w, dtype="f8")).ravel()
        self.nrow, self.ncol = obs.image.shape
        self.jac = obs.jacobian.jac6
        self.band = band
        # draw d: member dk[d] at (dv[d], du[d]) with PSF rows psf[pstart[d]:+pcount[d]]
        self.dk = np.array([d[0] for d in draws], dtype=np.int64)
        self.dv = np.array([d[1] for d in draws], dtype="f8")
        self.du = np.array([d[2] for d in draws], dtype="f8")
        counts = [d[3].shape[0] for d in draws]
        self.pcount = np.array(counts, dtype=np.int64)
        self.pstart = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        self.psf = np.ascontiguousarray(np.concatenate([d[3] for d in draws]))


class JointProblem:
    """The group's joint chi^2 and normal equations."""

    def __init__(self, fitter, members: list, group: list):
        self.spec = get_model(fitter.mof_model)
        self.kind = _KINDS[self.spec.kind]
        self.nshape = self.spec.nshape
        self.npar = self.spec.npars(fitter.nband)
        self.members = members
        self.nmem = len(members)
        prior = fitter.priors[fitter.mof_model]
        self.prior_arrays = prior.arrays(self.nshape) if prior is not None else None
        lo, hi = [], []
        for m in members:
            plo, phi = (prior.bounds(self.npar, self.nshape) if prior is not None
                        else (np.full(self.npar, -np.inf), np.full(self.npar, np.inf)))
            phi = phi.copy()
            phi[4] = min(phi[4], fitter.max_T(m))
            lo.append(plo)
            hi.append(phi)
        self.lo = np.concatenate(lo)
        self.hi = np.concatenate(hi)
        self.stamps = []
        mms = [m.mm for m in members]
        for i, m in enumerate(members):
            for obslist in m.mbobs:
                for obs in obslist:
                    key = epoch_key(obs)
                    draws = []
                    for k, mk in enumerate(mms):
                        psf = psf_for(mk, key, group)
                        if psf is None:
                            continue
                        v0, u0 = (0.0, 0.0) if k == i else reference_vu(mk, m.mm, obs)
                        draws.append((k, v0, u0, psf_table(psf)))
                    self.stamps.append(_Stamp(obs, key[0], draws))

    def evaluate(self, x: np.ndarray, want_jac: bool = True):
        """(chi2, JtJ, Jtr); chi2 = inf outside the models' domain."""
        n = x.size
        JtJ = np.zeros((n, n))
        Jtr = np.zeros(n)
        chi2 = 0.0
        sp = self.spec
        for st in self.stamps:
            try:
                chi2 += stamp_normal(x, self.npar, self.kind, sp.pvals, sp.fvals, self.nshape,
                                     sp.ndisk, st.band, st.jac, st.img, st.sqw, st.nrow,
                                     st.ncol, st.dk, st.dv, st.du, st.psf, st.pstart,
                                     st.pcount, JtJ, Jtr, want_jac)
            except ZeroDivisionError:
                # an extreme trial step (profile far narrower than a pixel): reject it
                return math.inf, JtJ, Jtr
            if not math.isfinite(chi2):
                return math.inf, JtJ, Jtr
        if self.prior_arrays is not None:
            for k in range(self.nmem):
                sl = slice(k * self.npar, (k + 1) * self.npar)
                pJ = np.zeros((self.npar, self.npar))
                pr = np.zeros(self.npar)
                chi2 += prior_residuals(np.ascontiguousarray(x[sl]), *self.prior_arrays, pJ, pr,
                                        want_jac)
                JtJ[sl, sl] += pJ
                Jtr[sl] += pr
        if not math.isfinite(chi2):
            chi2 = math.inf
        return chi2, JtJ, Jtr


def lm_solve(problem: JointProblem, x0: np.ndarray, maxit: int, ftol: float,
             lam: float = 1.0e-3) -> tuple[np.ndarray, np.ndarray, int, bool]:
    """Damped Gauss-Newton; returns (x, JtJ, iterations, converged)."""
    x = np.clip(x0, problem.lo, problem.hi)
    chi2, JtJ, Jtr = problem.evaluate(x)
    if not math.isfinite(chi2):
        return x, JtJ, 0, False
    for it in range(1, maxit + 1):
        diag = np.maximum(np.diag(JtJ), 1e-12 * max(np.max(np.diag(JtJ)), 1e-300))
        try:
            step = np.linalg.solve(JtJ + lam * np.diag(diag), -Jtr)
        except np.linalg.LinAlgError:
            lam *= 10.0
            if lam > 1e12:
                return x, JtJ, it, False
            continue
        xn = np.clip(x + step, problem.lo, problem.hi)
        chi2n, JtJn, Jtrn = problem.evaluate(xn)
        if chi2n <= chi2:
            done = chi2 - chi2n <= ftol * chi2 + 1e-12
            x, chi2, JtJ, Jtr = xn, chi2n, JtJn, Jtrn
            lam = max(lam * 0.1, 1e-12)
            if done:
                return x, JtJ, it, True
        else:
            lam *= 10.0
            if lam > 1e10:
                return x, JtJ, it, True
    return x, JtJ, maxit, False


def joint_fit(fitter, members: list, group: list) -> int:
    """Fit the usable members jointly from their first-pass parameters.

    Returns the number of LM iterations.  Members whose first pass failed are
    left out of the fit (and, as in the iterative method, seg-masked in the
    final fits of the others).
    """
    spec = get_model(fitter.mof_model) if fitter.mof_model != "cm" else None
    active = [m for m in members if m.usable and m.mm.ok]
    if spec is None or spec.kind not in _KINDS or len(active) < 2:
        # nothing to fit jointly: the first pass is final
        for m in members:
            m.converged = True
            m.skipped = m.usable and not m.mm.ok
        return 0
    problem = JointProblem(fitter, active, group)
    x0 = np.concatenate([m.mm.pars for m in active])
    lmp = dict(DEFAULT_LM_PARS)
    lmp.update({k: v for k, v in (fitter.conf["max_pars"]["lm_pars"] or {}).items()
                if k in lmp})
    x, JtJ, niter, ok = lm_solve(problem, x0, int(lmp["maxit"]), float(lmp["ftol"]))
    try:
        cov = np.linalg.inv(JtJ)
    except np.linalg.LinAlgError:
        cov = None
    npar = problem.npar
    for k, m in enumerate(active):
        m.mm.pars = x[k * npar:(k + 1) * npar].copy()
        m.guesses[fitter.mof_model] = m.mm.pars.copy()
    # polish: each member with the others subtracted, from the joint solution
    for k, m in enumerate(active):
        mb = correct_mbobs(m.mm, m.mbobs, group, "subtract", True, fitter.var_fac)
        fitter.fit_sweep_models(m, mb, use_guess=True)
        res = m.results[fitter.mof_model]
        if cov is not None and res.get("flags", 1) == 0:
            block = cov[k * npar:(k + 1) * npar, k * npar:(k + 1) * npar]
            if np.all(np.diag(block) > 0):
                res["pars_cov"] = block
                res["pars_err"] = np.sqrt(np.diag(block))
                fl = slice(problem.nshape, npar)
                res["flux_err"] = res["pars_err"][fl].copy()
                res["T_err"] = float(res["pars_err"][4])
                res["g_cov"] = block[2:4, 2:4].copy()
        # a member whose polished fit failed is a bad fit, not a convergence failure
        m.converged = ok
        m.skipped = not m.mm.ok
    for m in members:
        if not any(m is a for a in active):
            m.skipped = m.usable
    logger.debug("joint fit of %d members: %d iterations, converged=%s", len(active), niter, ok)
    return niter
