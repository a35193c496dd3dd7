"""Galaxy and star profiles: galsim objects and their exact sizes and moments.

Models: ``exp`` (Sersic n=1), ``dev`` (Sersic n=4, truncated at ``dev_trunc`` hlr,
with the half-light radius and flux those of the truncated profile), ``bd``
(bulge + disk: a truncated dev bulge of hlr ``bulge_size_ratio`` x the disk's
and an exponential disk, with the same shape) and ``star`` (a point source).

``T = Irr + Icc`` (arcsec^2) of the unconvolved profile is computed in closed
form. For a round Sersic profile ``I ∝ exp(-(r/r0)^(1/n))`` truncated at ``R``,
substituting ``t = (r/r0)^(1/n)`` gives

    <r^2> = r0^2 Γ(4n) P(4n, x) / (Γ(2n) P(2n, x)),   x = (R/r0)^(1/n)

(``P`` the regularised lower incomplete gamma function; ``x = inf`` without
truncation), and ``T_round = <r^2>``: for an exponential ``T = 6 r0^2 =
2 * 3 * (hlr/1.6783)^2``. A bulge+disk has the flux-weighted mean of its
components' ``<r^2>``. Shearing by a reduced shear ``g`` (galsim's
area-preserving shear) multiplies ``T`` by ``(1 + |g|^2) / (1 - |g|^2)``.
The ``hlr`` of a composite is that of the round composite profile (found by
root finding); after the shear it is the circularised ``sqrt(a b)`` radius.
"""

from __future__ import annotations

from functools import lru_cache

import galsim
import numpy as np
from scipy.optimize import brentq
from scipy.special import gammainc, gammaln

MODELS = ("exp", "dev", "bd", "star")


def sersic_moment(n: float, r0: float, trunc: float = 0.0) -> float:
    """<r^2> (arcsec^2) of a round Sersic profile with scale radius r0, truncated at trunc."""
    if trunc > 0:
        x = (trunc / r0) ** (1.0 / n)
        ratio = gammainc(4 * n, x) / gammainc(2 * n, x)
    else:
        ratio = 1.0
    return float(r0 ** 2 * np.exp(gammaln(4 * n) - gammaln(2 * n)) * ratio)


def sersic_enclosed(n: float, r0: float, r: np.ndarray | float, trunc: float = 0.0):
    """Fraction of a (truncated) round Sersic profile's flux within radius r."""
    r = np.minimum(r, trunc) if trunc > 0 else r
    frac = gammainc(2 * n, (np.asarray(r) / r0) ** (1.0 / n))
    if trunc > 0:
        frac = frac / gammainc(2 * n, (trunc / r0) ** (1.0 / n))
    return frac


def _dev(hlr: float, trunc_factor: float) -> galsim.GSObject:
    return galsim.DeVaucouleurs(half_light_radius=hlr, trunc=trunc_factor * hlr,
                                flux_untruncated=False)


@lru_cache(maxsize=256)
def _bd_unit(fracdev: float, size_ratio: float, trunc_factor: float) -> tuple[float, float]:
    """(hlr, <r^2>) of a round bulge+disk whose disk has hlr 1."""
    disk = galsim.Exponential(half_light_radius=1.0)
    bulge = _dev(size_ratio, trunc_factor)
    parts = ((1.0, disk.scale_radius, 0.0, 1.0 - fracdev),
             (4.0, bulge.scale_radius, trunc_factor * size_ratio, fracdev))

    def enclosed(r: float) -> float:
        return sum(w * sersic_enclosed(n, r0, r, tr) for n, r0, tr, w in parts) - 0.5

    hlr = brentq(enclosed, 1e-6, 100.0, xtol=1e-12)
    moment = sum(w * sersic_moment(n, r0, tr) for n, r0, tr, w in parts)
    return hlr, moment


def round_profile(model: str, hlr: float, fracdev: float, size_ratio: float,
                  trunc_factor: float) -> tuple[galsim.GSObject, float]:
    """Unit-flux round profile with half-light radius ``hlr`` and its <r^2>."""
    if model == "star":
        return galsim.DeltaFunction(), 0.0
    if model == "exp":
        prof = galsim.Exponential(half_light_radius=hlr)
        return prof, sersic_moment(1.0, prof.scale_radius)
    if model == "dev":
        prof = _dev(hlr, trunc_factor)
        return prof, sersic_moment(4.0, prof.scale_radius, trunc_factor * hlr)
    if model == "bd":
        # round the fraction so the cached unit solution is reused for equal inputs
        unit_hlr, unit_moment = _bd_unit(round(float(fracdev), 12), float(size_ratio),
                                         float(trunc_factor))
        disk_hlr = hlr / unit_hlr
        prof = galsim.Add([
            (1.0 - fracdev) * galsim.Exponential(half_light_radius=disk_hlr),
            fracdev * _dev(size_ratio * disk_hlr, trunc_factor),
        ])
        return prof, unit_moment * disk_hlr ** 2
    raise ValueError(f"unknown model {model!r}")


def sheared_T(T_round: float, g1: float, g2: float) -> float:
    """T of a round profile after galsim's area-preserving shear by (g1, g2)."""
    gsq = g1 * g1 + g2 * g2
    return T_round * (1.0 + gsq) / (1.0 - gsq)


def combine_shears(g1a: float, g2a: float, g1b: float, g2b: float) -> tuple[float, float]:
    """Total reduced shear of a profile sheared by a first, then by b.

    Computed from the moment matrix of a round profile, A A^T with
    A = S_b S_a, so the rotation part of the composition drops out.
    """
    def smat(g1: float, g2: float) -> np.ndarray:
        return np.array([[1 + g1, g2], [g2, 1 - g1]]) / np.sqrt(1 - g1 * g1 - g2 * g2)

    a = smat(g1b, g2b) @ smat(g1a, g2a)
    m = a @ a.T  # [[Iuu, Iuv], [Iuv, Ivv]] up to a factor
    # reduced shear from moments: e = (Iuu - Ivv, 2 Iuv) / T; g = e / (1 + sqrt(1 - e^2))
    tr = m[0, 0] + m[1, 1]
    e1, e2 = (m[0, 0] - m[1, 1]) / tr, 2 * m[0, 1] / tr
    esq = e1 * e1 + e2 * e2
    fac = 1.0 / (1.0 + np.sqrt(max(1.0 - esq, 0.0)))
    return float(e1 * fac), float(e2 * fac)


def object_profile(row: np.void, band: int, cfg: dict) -> galsim.GSObject:
    """The unconvolved galsim profile of truth row ``row`` in band index ``band``."""
    gal_cfg = cfg["galaxies"]
    model = str(row["model"]).strip()
    prof, _ = round_profile(model, float(row["hlr"]), float(row["fracdev"]),
                            gal_cfg["bulge_size_ratio"], gal_cfg["dev_trunc"])
    prof = prof.withFlux(float(row["flux"][band]))
    if model != "star":
        # intrinsic shape first, then the applied (lensing) shear
        prof = prof.shear(g1=float(row["g1_intrinsic"]), g2=float(row["g2_intrinsic"]))
        g1s, g2s = cfg["shear"]
        if g1s != 0.0 or g2s != 0.0:
            prof = prof.shear(g1=float(g1s), g2=float(g2s))
    return prof
