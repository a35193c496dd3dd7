"""Model definitions: mixture coefficients and parameter layouts.

Parameters (ngmix order): ``[v, u, g1, g2, T, flux_band0, flux_band1, ...]``;
``bdf`` inserts ``fracdev`` after T; ``coellipN`` is ``[v, u, g1, g2, T_1..T_N,
F_1..F_N]`` (one band).  v, u are arcsec offsets from the Jacobian centre, g is
the reduced-shear ellipticity, T = Irr + Icc of the whole mixture (arcsec^2).

Coefficients
------------
exp (6 Gaussians) and dev (10 Gaussians) are the Hogg & Lang (2013, PASP 125,
719) mixture approximations of the SDSS "lux" exponential and de Vaucouleurs
profiles.  They are stored here as ``pvals`` (flux fractions) and ``fvals``
(component variance as a fraction of T) and renormalised on import so that
``sum(pvals) == 1`` and ``sum(pvals * fvals) == 1``: component i of a profile
with flux F and size T has flux ``pvals[i] F`` and ``T_i = fvals[i] T``, so T is
exactly the second moment Irr+Icc of the mixture.  (For the exponential this
is T = 6 h^2 for scale length h in the untruncated limit; the lux truncation
makes the mixture T slightly smaller than that.)  ``turb`` is the
three-Gaussian approximation of a Kolmogorov profile used for PSFs.
"""
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError


def _normalise(pvals, fvals):
    p = np.asarray(pvals, dtype='f8')
    f = np.asarray(fvals, dtype='f8')
    p = p / p.sum()
    f = f / np.sum(p * f)
    return p, f


PVALS_EXP, FVALS_EXP = _normalise(
    [0.00061601229677880041, 0.0079461395724623237, 0.053280454055540001,
     0.21797364640726541, 0.45496740582554868, 0.26521634184240478],
    [0.002467115141477932, 0.018147435573256168, 0.07944063151366336,
     0.27137669897479122, 0.79782256866993773, 2.1623306025075739])

PVALS_DEV, FVALS_DEV = _normalise(
    [6.5288960012625658e-05, 0.00044199216814302695, 0.0020859587871659754,
     0.0075913681418996841, 0.02260266219257237, 0.056532254390212859,
     0.11939049233042602, 0.20969545753234975, 0.29254151133139222,
     0.28905301416582552],
    [3.068330909892871e-07, 3.551788624668698e-06, 2.542810833482682e-05,
     0.0001466508940804874, 0.0007457199853069548, 0.003544702600428794,
     0.01648881157673708, 0.07893194619504579, 0.4203787615506401,
     3.055782252301236])

PVALS_TURB, FVALS_TURB = _normalise(
    [0.596510042804182, 0.4034898268889178, 1.303069003078001e-07],
    [0.5793612389470884, 1.621860687127999, 7.019347162356363])

PVALS_GAUSS, FVALS_GAUSS = np.ones(1), np.ones(1)

SIMPLE_MODELS = ("gauss", "turb", "exp", "dev")
MODEL_NAMES = SIMPLE_MODELS + ("bdf", "cm", "coellipN")


@dataclass(frozen=True)
class ModelSpec:
    """How a model's parameters map to mixture components.

    kind: "shared" (gauss/turb/exp/dev/cm), "bdf" or "coellip".
    nshape: number of parameters before the fluxes.
    ndisk: for bdf, the number of exp components (the rest are dev).
    """
    name: str
    kind: str
    ngauss: int
    pvals: np.ndarray
    fvals: np.ndarray
    nshape: int
    ndisk: int = 0

    def npars(self, nband: int = 1) -> int:
        if self.kind == "coellip":
            return self.nshape + self.ngauss
        return self.nshape + nband

    @property
    def fracdev_index(self) -> int:
        return 5 if self.kind == "bdf" else -1


def cm_coefficients(fracdev: float, TdByTe: float):
    """pvals, fvals of the composite model at fixed fracdev and TdByTe.

    T (the parameter) is the whole mixture's T = (1-fracdev) Te + fracdev Td,
    with Td = TdByTe * Te.
    """
    fd = float(fracdev)
    tf = 1.0 / ((1.0 - fd) + fd * float(TdByTe))
    pvals = np.concatenate([(1.0 - fd) * PVALS_EXP, fd * PVALS_DEV])
    fvals = np.concatenate([FVALS_EXP * tf, FVALS_DEV * TdByTe * tf])
    return pvals, fvals


def get_model(name: str, fracdev=None, TdByTe=None) -> ModelSpec:
    """The ModelSpec for a model name (``coellip3`` etc. for co-elliptical)."""
    name = str(name)
    table = {"gauss": (PVALS_GAUSS, FVALS_GAUSS), "turb": (PVALS_TURB, FVALS_TURB),
             "exp": (PVALS_EXP, FVALS_EXP), "dev": (PVALS_DEV, FVALS_DEV)}
    if name in table:
        p, f = table[name]
        return ModelSpec(name, "shared", p.size, p, f, 5)
    if name == "bdf":
        p = np.concatenate([PVALS_EXP, PVALS_DEV])
        f = np.concatenate([FVALS_EXP, FVALS_DEV])
        return ModelSpec(name, "bdf", p.size, p, f, 6, ndisk=PVALS_EXP.size)
    if name == "cm":
        if fracdev is None or TdByTe is None:
            raise ConfigError("model cm needs fracdev and TdByTe (from exp and dev fits)")
        p, f = cm_coefficients(fracdev, TdByTe)
        return ModelSpec(name, "shared", p.size, p, f, 5)
    if name.startswith("coellip"):
        try:
            n = int(name[len("coellip"):])
        except ValueError:
            n = 0
        if n < 1:
            raise ConfigError(f"bad coellip model '{name}': use coellipN with N >= 1")
        return ModelSpec(name, "coellip", n, np.ones(n), np.ones(n), 4 + n)
    raise ConfigError(f"unknown model '{name}'; known: {', '.join(MODEL_NAMES)}")
