"""Starting points of the maximum-likelihood fits.

Without a guess, a fit starts round and at least PSF-sized, centred by
adaptive moments, and its first step sets the best fluxes at that shape (the
LM kernel's flux step); the damping starts higher than from a guess and
relaxes slowly, so the first steps follow the valley rather than jumping to
the shape modulus -> 1, where small, faint objects end with too small T and flux.  A fit
that still ends near the edge of the shape domain is tried again from a round
start twice as large and, with a shape prior, from a shape drawn from it; the
lowest chi2 (with the priors) is kept.  Retries after a failed fit start from
perturbed copies.

The moments, the draws and the perturbations depend only on the data and on
the object's random generator, so a fit is reproducible.
"""
import math

import numpy as np

from .models import ModelSpec
from .render_nb import moment_guess

#: the round start's T is at least this many times the PSF's
ROUND_T_PSF = 1.0
#: the wide start's T, in units of the round start's
WIDE_T = 2.0
#: a solution with a shape modulus above this is tried again from the other starts
G_SUSPECT = 0.9
#: LM damping from these starts (far from the solution): its initial value and
#: its factor per accepted step (0.1 from a given guess)
START_LAMBDA0 = 1.0
START_LAMBDA_DOWN = 0.3


def moments(obs, Tpsf: float):
    """(v, u, T_obs, flux) from Gaussian-weighted moments with a few adaptive
    iterations of the weight; falls back to the PSF size when moments fail."""
    return moment_guess(obs.image, obs.weight, obs.jacobian.jac6, float(Tpsf))


def _band_fluxes(packed, nband: int, flux0: float) -> list:
    return [flux0] + [moments(packed.first[b], packed.Tpsf[b])[3] for b in range(1, nband)]


def moment_start(spec: ModelSpec, packed, nband: int) -> np.ndarray:
    """Start at the moments' centre, size and flux (PSF-deconvolved T, at least
    0.1 T_psf); the start of co-elliptical fits without a guess."""
    v, u, Tobs, flux0 = moments(packed.first[0], packed.Tpsf[0])
    Tpsf = packed.Tpsf[0]
    if Tpsf > 0:
        T = max(Tobs - Tpsf, 0.1 * Tpsf)
    else:
        scale = packed.first[0].jacobian.get_scale()
        T = max(Tobs, 0.5 * scale * scale)
    return _layout(spec, nband, v, u, T, _band_fluxes(packed, nband, flux0))


def round_start(spec: ModelSpec, packed, nband: int) -> np.ndarray:
    """Round start at the moments' centre, T = max(deconvolved moments T,
    ROUND_T_PSF * T_psf); fluxes from the moments (the LM's flux step replaces
    them)."""
    v, u, Tobs, flux0 = moments(packed.first[0], packed.Tpsf[0])
    Tpsf = packed.Tpsf[0]
    scale = packed.first[0].jacobian.get_scale()
    T = max(Tobs - Tpsf, ROUND_T_PSF * Tpsf, 0.5 * scale * scale)
    return _layout(spec, nband, v, u, T, _band_fluxes(packed, nband, flux0))


def _layout(spec: ModelSpec, nband: int, v: float, u: float, T: float,
            fluxes: list) -> np.ndarray:
    g = np.zeros(spec.npars(nband))
    g[0], g[1] = v, u
    if spec.kind == "coellip":
        n = spec.ngauss
        tf = np.geomspace(0.4, 2.5, n) if n > 1 else np.ones(1)
        pf = np.ones(n) / n
        tf /= np.sum(tf * pf)
        g[4:4 + n] = T * tf
        g[4 + n:] = fluxes[0] * pf
        return g
    g[4] = T
    if spec.kind == "bdf":
        g[5] = 0.5
    g[spec.nshape:spec.nshape + nband] = fluxes
    return g


def extra_starts(round0: np.ndarray, prior, rng: np.random.Generator | None) -> list:
    """The starts tried after a suspicious solution: round and WIDE_T times
    larger, and (with a shape prior and a generator) a shape drawn from the
    prior at the round start's size."""
    wide = round0.copy()
    wide[4] = WIDE_T * round0[4]
    out = [wide]
    gprior = getattr(prior, "g", None)
    if gprior is not None and rng is not None:
        drawn = round0.copy()
        drawn[2:4] = np.asarray(gprior.sample(rng, 1), dtype='f8').reshape(-1)[:2]
        out.append(drawn)
    return out


def suspicious(pars: np.ndarray) -> bool:
    """A solution near the edge of the shape domain."""
    return math.hypot(pars[2], pars[3]) > G_SUSPECT


def perturb(g: np.ndarray, spec: ModelSpec, rng, itry: int, scale: float) -> np.ndarray:
    """A copy of start ``g`` perturbed for attempt ``itry`` (0: unperturbed when
    rng is None); perturbations grow with itry."""
    if rng is None:
        return g.copy()
    f = 1.0 + itry
    out = g.copy()
    out[0:2] += rng.uniform(-0.1, 0.1, size=2) * scale * f
    gg = out[2:4] + rng.uniform(-0.05, 0.05, size=2) * f
    gmag = math.hypot(*gg)
    if gmag > 0.9:
        gg *= 0.9 / gmag
    out[2:4] = gg
    rest = slice(4, None)
    out[rest] = out[rest] * (1.0 + rng.uniform(-0.05, 0.05, size=out[rest].size) * f)
    if spec.kind == "bdf":
        out[5] = g[5] + rng.uniform(-0.1, 0.1) * f
    return out
