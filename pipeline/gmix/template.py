"""PSF-flux (template) fit: the flux of a point source at a fixed position,
a linear least-squares solve per band over all epochs."""
import math

import numpy as np

from . import flags as F
from .observation import get_mb_obs
from .render_nb import render_gmix


def fit_psf_flux(obs, cen=(0.0, 0.0)) -> dict:
    """Per-band PSF flux at sky offset ``cen`` = (v, u) arcsec from each Jacobian centre.

    Returns dict(flags (OR over bands), band_flags, flux, flux_err, s2n) with
    arrays of one entry per band; epochs without a usable PSF mixture, Jacobian
    or weight are skipped.
    """
    mbobs = get_mb_obs(obs)
    nband = len(mbobs)
    flux = np.full(nband, F.DEFVAL)
    err = np.full(nband, F.BIGVAL)
    s2n = np.full(nband, F.DEFVAL)
    bflags = np.zeros(nband, dtype=np.int64)
    for b, obslist in enumerate(mbobs):
        num = 0.0
        den = 0.0
        used = 0
        why = 0
        for o in obslist:
            gm = o.get_psf_gmix()
            if gm is None or not o.jacobian.is_valid() or not np.any(o.weight > 0):
                why |= F.BAD_PSF if gm is None else (
                    F.BAD_JACOBIAN if not o.jacobian.is_valid() else F.NO_DATA)
                continue
            psum = gm.get_flux()
            if not (math.isfinite(psum) and psum > 0) or not gm.is_valid():
                why |= F.BAD_PSF
                continue
            t = gm.copy()
            t.set_flux(1.0)
            t.set_cen(cen[0], cen[1])
            model = np.zeros(o.image.shape)
            render_gmix(t.data, o.jacobian.jac6, model, 1)
            wm = o.weight * model
            num += float(np.sum(wm * o.image))
            den += float(np.sum(wm * model))
            used += 1
        if used == 0:
            bflags[b] = why or F.NO_DATA
            continue
        if not den > 0:
            bflags[b] = F.ZERO_FLUX
            continue
        flux[b] = num / den
        err[b] = 1.0 / math.sqrt(den)
        s2n[b] = flux[b] / err[b]
    return dict(flags=int(np.bitwise_or.reduce(bflags)), band_flags=bflags, flux=flux,
                flux_err=err, s2n=s2n)
