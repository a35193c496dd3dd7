"""Rendering a FoF group's members onto one another's stamps.

Every member of a group is described by a :class:`MemberModel`: its current
parameters (``[v, u, g1, g2, T, F_b...]``, v/u relative to its own Jacobian
centre), the model name, its sky position, and per epoch (keyed by
``(band, file_id)``) its PSF mixture and its centre in that source image.

Placement of member k on a stamp of member i (band b, source image f):

* when k has its own cutout on f, its centre in the source image
  (``orig_row``, ``orig_col``) is moved into i's stamp by subtracting i's
  ``orig_start_row/col``; the exact epoch astrometry is kept;
* otherwise (k is off that chip, or not cut out there) its offset from i on the
  sky (from ra/dec: u = -dRA cos(dec), v = dDec, arcsec) is placed through i's
  epoch Jacobian.

Then the fitted offset (v_k, u_k) is added, the profile is convolved with k's
own PSF mixture on f, or, when k has no cutout on f, with the PSF of the
group member nearest to k on the sky that does (i itself always does), and
rendered through i's Jacobian.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..gmix.gmix import GMix, GMixModel, GMixRangeError

ARCSEC_PER_DEG = 3600.0


@dataclass
class MemberModel:
    """What is needed to draw one group member anywhere in the group."""

    number: int
    ra: float
    dec: float
    model: str = "exp"
    pars: np.ndarray | None = None
    ok: bool = False                     # pars usable for rendering
    fracdev: float | None = None         # cm only
    TdByTe: float | None = None
    psf: dict = field(default_factory=dict)      # (band, file_id) -> GMix
    centre: dict = field(default_factory=dict)   # (band, file_id) -> (orig_row, orig_col)

    def gmix(self, band: int) -> GMix:
        return GMixModel(self.pars, self.model, band=band, fracdev=self.fracdev,
                         TdByTe=self.TdByTe)


def epoch_key(obs) -> tuple[int, int]:
    return int(obs.meta["band"]), int(obs.meta["file_id"])


def sky_offset(ra: float, dec: float, ra0: float, dec0: float) -> tuple[float, float]:
    """(v, u) arcsec of (ra, dec) relative to (ra0, dec0), MEDS sign convention."""
    dra = (ra - ra0 + 180.0) % 360.0 - 180.0
    u = -dra * math.cos(math.radians(dec0)) * ARCSEC_PER_DEG
    v = (dec - dec0) * ARCSEC_PER_DEG
    return v, u


def reference_vu(member: MemberModel, central: MemberModel, obs) -> tuple[float, float]:
    """(v, u) in the central's epoch frame of the member's reference position."""
    key = epoch_key(obs)
    jac = obs.jacobian
    if key in member.centre:
        row, col = member.centre[key]
        r = row - obs.meta["orig_start_row"]
        c = col - obs.meta["orig_start_col"]
        v, u = jac.get_vu(r, c)
        return float(v), float(u)
    return sky_offset(member.ra, member.dec, central.ra, central.dec)


def psf_for(member: MemberModel, key: tuple[int, int], group: list[MemberModel]) -> GMix | None:
    """The member's PSF on epoch ``key``, else that of the nearest member having one."""
    if key in member.psf:
        return member.psf[key]
    best, best_d = None, math.inf
    for other in group:
        if other is member or key not in other.psf:
            continue
        v, u = sky_offset(other.ra, other.dec, member.ra, member.dec)
        d = v * v + u * u
        if d < best_d:
            best, best_d = other.psf[key], d
    return best


def render_member(member: MemberModel, central: MemberModel, obs,
                  group: list[MemberModel]) -> np.ndarray | None:
    """The member's convolved model on the central's stamp ``obs`` (None if not drawable)."""
    if not member.ok or member.pars is None:
        return None
    key = epoch_key(obs)
    psf = psf_for(member, key, group)
    if psf is None:
        return None
    v0, u0 = reference_vu(member, central, obs)
    pars = np.array(member.pars, dtype="f8", copy=True)
    pars[0] += v0
    pars[1] += u0
    try:
        gm = GMixModel(pars, member.model, band=key[0], fracdev=member.fracdev,
                       TdByTe=member.TdByTe).convolve(psf)
    except (GMixRangeError, ValueError):
        return None
    return gm.make_image(obs.image.shape, obs.jacobian)


def render_self(central: MemberModel, obs) -> np.ndarray | None:
    """The central's own convolved model on its stamp (for the ``frac`` method)."""
    if not central.ok or central.pars is None or obs.psf is None or obs.psf.gmix is None:
        return None
    try:
        gm = central.gmix(int(obs.meta["band"])).convolve(obs.psf.gmix)
    except (GMixRangeError, ValueError):
        return None
    return gm.make_image(obs.image.shape, obs.jacobian)


def render_neighbours(central: MemberModel, obs, group: list[MemberModel]
                      ) -> tuple[np.ndarray, list[MemberModel]]:
    """Sum of all drawable neighbours on ``obs``, and the neighbours that were not drawable."""
    total = np.zeros(obs.image.shape)
    skipped = []
    for member in group:
        if member is central:
            continue
        image = render_member(member, central, obs, group)
        if image is None:
            skipped.append(member)
        else:
            total += image
    return total, skipped
