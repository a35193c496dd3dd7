"""Priors: densities, sampling, residual form for the LM, configuration."""
import math

import numpy as np
import pytest
from scipy import integrate, special

from pipeline.errors import ConfigError
from pipeline.gmix import (CenPrior, FlatPrior, GaussPrior, GPriorBA, LogNormalPrior,
                           TwoSidedErf, make_priors)
from pipeline.gmix import priors_nb


def _residual_chi2(prior, x, idx=(0,)):
    kind, ix, par = _arrays(prior, idx)
    n = len(x)
    JtJ = np.zeros((n, n))
    Jtr = np.zeros(n)
    chi2 = priors_nb.prior_residuals(np.asarray(x, 'f8'), kind, ix, par, JtJ, Jtr, True)
    return chi2, JtJ, Jtr


def _arrays(prior, idx):
    rows = prior.terms(idx)
    return (np.array([r[0] for r in rows], dtype=np.int64),
            np.array([r[1] for r in rows], dtype=np.int64).reshape(-1, 2),
            np.array([r[2] for r in rows], dtype='f8').reshape(-1, 4))


def test_gauss_and_lognormal_densities_and_samples():
    rng = np.random.default_rng(1)
    gp = GaussPrior(2.0, 0.5)
    assert gp.get_lnprob(3.0) - gp.get_lnprob(2.0) == pytest.approx(-2.0)
    s = gp.sample(rng, 20000)
    assert abs(s.mean() - 2.0) < 4 * 0.5 / math.sqrt(20000)
    ln = LogNormalPrior(10.0, 3.0)
    s = ln.sample(rng, 40000)
    assert abs(s.mean() - 10.0) < 4 * 3.0 / math.sqrt(40000)
    assert abs(s.std() - 3.0) < 0.1
    # density integrates to 1 (ln p carries the -ln x Jacobian term)
    norm = integrate.quad(lambda x: math.exp(ln.get_lnprob(x)), 0, 100)[0]
    assert norm * math.exp(0) == pytest.approx(math.sqrt(2 * math.pi) * ln.lnsigma, rel=1e-6)


def test_ba_shape_prior_density_and_samples():
    rng = np.random.default_rng(2)
    sigma = 0.3
    pr = GPriorBA(sigma)
    g = np.array([0.1, 0.5, 0.9])
    expect = 2 * np.log(1 - g ** 2) - g ** 2 / (2 * sigma ** 2)
    assert np.allclose(pr.get_lnprob(g, 0 * g), expect)
    assert pr.get_lnprob(0.8, 0.7) == -np.inf
    s = pr.sample(rng, 40000)
    gabs = np.hypot(s[:, 0], s[:, 1])
    assert np.all(gabs < 1)
    # mean |g| against the density p(|g|) ~ 2 pi g (1-g^2)^2 exp(-g^2 / 2 sigma^2)
    f = lambda x: x * (1 - x * x) ** 2 * math.exp(-x * x / (2 * sigma ** 2))
    mean = integrate.quad(lambda x: x * f(x), 0, 1)[0] / integrate.quad(f, 0, 1)[0]
    assert abs(gabs.mean() - mean) < 4 * gabs.std() / math.sqrt(gabs.size)


def test_two_sided_erf_and_flat():
    pr = TwoSidedErf(0.0, 0.1, 10.0, 1.0)
    x = np.array([-0.3, 0.0, 5.0, 10.0, 12.0])
    expect = (np.log(0.5 * (1 + special.erf((x - 0.0) / 0.1)))
              + np.log(0.5 * (1 + special.erf((10.0 - x) / 1.0))))
    assert np.allclose(pr.get_lnprob(x), expect, rtol=1e-10)
    # far outside: finite and steep (asymptotic branch), no -inf or NaN
    lp = pr.get_lnprob(np.array([-5.0, 60.0]))
    assert np.all(np.isfinite(lp)) and np.all(lp < -1000)
    s = pr.sample(np.random.default_rng(3), 5000)
    assert -0.5 < s.min() and s.max() < 14 and abs(np.median(s) - 5) < 0.5
    fp = FlatPrior(-1, 2)
    assert fp.get_lnprob(3.0) == -np.inf and fp.get_lnprob(0.0) == 0.0
    assert fp.bounds() == (-1.0, 2.0)
    cp = CenPrior(0.0, 0.0, 0.2)
    assert cp.sample(np.random.default_rng(4), 10).shape == (10, 2)


@pytest.mark.parametrize("prior,x,idx", [
    (GaussPrior(1.0, 0.3), [1.4], (0,)),
    (LogNormalPrior(2.0, 0.5), [2.7], (0,)),
    (TwoSidedErf(0.0, 0.2, 5.0, 0.5), [-0.1], (0,)),
    (TwoSidedErf(0.0, 0.2, 5.0, 0.5), [5.3], (0,)),
    (GPriorBA(0.3), [0.2, -0.35], (0, 1)),
    (GPriorBA(0.3), [1e-4, 2e-4], (0, 1)),
    (CenPrior(0.1, -0.1, 0.2), [0.3, 0.05], (0, 1)),
])
def test_residual_form_matches_lnprob_and_derivatives(prior, x, idx):
    x = np.array(x, dtype='f8')
    chi2, JtJ, Jtr = _residual_chi2(prior, x, idx)
    # r^2 = -2 ln p + const: compare differences between two points
    x2 = x + 0.01

    def lnp(v):
        if len(idx) == 2:
            return float(prior.get_lnprob(v[0], v[1]))
        return float(prior.get_lnprob(v[0]))

    chi2b = _residual_chi2(prior, x2, idx)[0]
    if not isinstance(prior, LogNormalPrior):  # lognormal residual is the ln-x prior
        assert chi2b - chi2 == pytest.approx(-2 * (lnp(x2) - lnp(x)), rel=1e-6, abs=1e-9)
    # J^T r = gradient of chi2 / 2 (finite differences)
    for i in range(x.size):
        h = 1e-6
        xp = x.copy()
        xm = x.copy()
        xp[i] += h
        xm[i] -= h
        grad = (_residual_chi2(prior, xp, idx)[0] - _residual_chi2(prior, xm, idx)[0]) / (4 * h)
        assert Jtr[i] == pytest.approx(grad, rel=1e-5, abs=1e-8)


def test_make_priors_from_config_and_errors():
    cfg = {"cen": {"type": "normal2d", "width": 0.263},
           "g": {"type": "ba", "sigma": 0.3},
           "T": {"type": "TwoSidedErf", "pars": [-10.0, 0.03, 1.0e6, 1.0e5]},
           "counts": {"type": "lognormal", "mean": 100.0, "sigma": 50.0},
           "fracdev": {"type": "normal", "mean": 0.5, "sigma": 0.1}}
    jp = make_priors(cfg, nband=3)
    kind, idx, par = jp.arrays(nshape=6)
    # cen (2) + g (1) + T (1) + fracdev (1) + 3 counts
    assert kind.size == 8
    assert set(idx[kind == priors_nb.LOGNORM, 0]) == {6, 7, 8}
    pars = np.array([0.0, 0.0, 0.1, 0.1, 1.0, 0.5, 90.0, 100.0, 110.0])
    assert np.isfinite(jp.get_lnprob(pars, nshape=6))
    s = jp.sample(np.random.default_rng(1), 5, nshape=6)
    assert s.shape == (5, 9) and np.all(np.isfinite(s))
    flat = make_priors({"T": {"type": "flat", "pars": [0.0, 10.0]}}, nband=1)
    lo, hi = flat.bounds(6, 5)
    assert lo[4] == 0.0 and hi[4] == 10.0
    with pytest.raises(ConfigError, match="unknown prior type 'lognorml'.*lognormal"):
        make_priors({"T": {"type": "lognorml", "mean": 1, "sigma": 1}}, nband=1)
    with pytest.raises(ConfigError, match="did you mean 'counts'"):
        make_priors({"cuonts": {"type": "flat", "pars": [0, 1]}}, nband=1)
    with pytest.raises(ConfigError, match="sigma"):
        make_priors({"g": {"type": "ba"}}, nband=1)
    with pytest.raises(ConfigError):
        make_priors({"T": {"type": "gauss", "mean": 1, "sigma": -1}}, nband=1)
