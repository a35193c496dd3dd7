"""Neighbour-corrected observations of one group member.

``subtract``: image - sum of neighbours.  ``frac``: image * cen / (cen + nbrs),
the central's share of the flux in each pixel (pixels where both models are 0
keep the data).  Neighbours that cannot be drawn (failed fits) get their coadd
seg pixels zero-weighted instead.  ``intr_prof_var_fac`` > 0 adds the variance
``fac * nbrs**2``: the subtracted profile is only a model of the neighbour.
"""

from __future__ import annotations

import numpy as np

from ..gmix.observation import MultiBandObsList, Observation, ObsList
from .render import MemberModel, render_neighbours, render_self


def base_weight(obs, raw: bool) -> np.ndarray:
    """The region (uberseg) weight, or the raw weight kept by the ImageIO."""
    if raw and "weight_raw" in obs.meta:
        return obs.meta["weight_raw"]
    return obs.weight


def correct_observation(central: MemberModel, obs, group: list[MemberModel],
                        method: str = "subtract", raw_weight: bool = True,
                        var_fac: float = 0.0) -> Observation:
    """A copy of ``obs`` with the group's other members removed."""
    nbrs, skipped = render_neighbours(central, obs, group)
    weight = np.array(base_weight(obs, raw_weight), dtype="f8", copy=True)
    image = obs.image
    if method == "frac":
        cen = render_self(central, obs)
        if cen is not None:
            tot = cen + nbrs
            frac = np.divide(cen, tot, out=np.ones_like(tot), where=tot > 0)
            image = image * frac
        else:
            image = image - nbrs
    else:
        image = image - nbrs
    if var_fac > 0:
        use = weight > 0
        weight[use] = 1.0 / (1.0 / weight[use] + var_fac * nbrs[use] ** 2)
    seg = obs.meta.get("coadd_seg")
    if skipped and seg is not None:
        bad = np.isin(seg, [m.number for m in skipped])
        weight[bad] = 0.0
    return Observation(image, weight=weight, jacobian=obs.jacobian, psf=obs.psf,
                       meta=obs.meta)


def correct_mbobs(central: MemberModel, mbobs: MultiBandObsList, group: list[MemberModel],
                  method: str = "subtract", raw_weight: bool = True,
                  var_fac: float = 0.0) -> MultiBandObsList:
    """:func:`correct_observation` on every epoch of every band."""
    out = MultiBandObsList()
    for obslist in mbobs:
        out.append(ObsList(correct_observation(central, obs, group, method, raw_weight, var_fac)
                           for obs in obslist))
    return out


def uncorrected_mbobs(mbobs: MultiBandObsList, raw_weight: bool) -> MultiBandObsList:
    """The observations with the chosen weight and no neighbour model (first pass)."""
    if not raw_weight:
        return mbobs
    out = MultiBandObsList()
    for obslist in mbobs:
        out.append(ObsList(Observation(o.image, weight=base_weight(o, True), jacobian=o.jacobian,
                                       psf=o.psf, meta=o.meta) for o in obslist))
    return out
