"""Neighbour rendering and correction on hand-built stamps (pipeline.mof)."""

import numpy as np

from pipeline.gmix import DiagonalJacobian, GMixModel, Observation
from pipeline.mof.render import MemberModel, render_neighbours, render_self
from pipeline.mof.subtract import correct_observation

SCALE = 0.263
PSF = GMixModel([0.0, 0.0, 0.0, 0.0, 0.5, 1.0], "gauss")
KEY = (0, 7)  # band 0, source image (file_id) 7


def _stamp(image=None, seg=None):
    jac = DiagonalJacobian(row=15.5, col=15.5, scale=SCALE)
    psf = Observation(np.zeros((9, 9)), jacobian=DiagonalJacobian(4, 4, SCALE), gmix=PSF)
    meta = {"band": 0, "file_id": 7, "orig_start_row": 100, "orig_start_col": 200}
    if seg is not None:
        meta["coadd_seg"] = seg
    return Observation(np.zeros((32, 32)) if image is None else image,
                       weight=np.full((32, 32), 4.0), jacobian=jac, psf=psf, meta=meta)


def _members():
    central = MemberModel(number=1, ra=10.0, dec=0.0, pars=np.array([0, 0, 0.1, 0, 0.6, 300.0]),
                          ok=True, psf={KEY: PSF}, centre={KEY: (115.5, 215.5)})
    # one arcsec east-west of the central (u = -dRA cos(dec)), with no cutout on this
    # source image: it is placed from the sky and drawn with the nearest member's PSF
    offchip = MemberModel(number=2, ra=10.0 - 1.0 / 3600.0, dec=0.0,
                          pars=np.array([0, 0, -0.2, 0.1, 0.4, 200.0]), ok=True)
    return central, offchip


def _expected(pars, dv, du):
    shifted = np.array(pars, dtype="f8")
    shifted[0] += dv
    shifted[1] += du
    return GMixModel(shifted, "exp").convolve(PSF).make_image(
        (32, 32), DiagonalJacobian(row=15.5, col=15.5, scale=SCALE))


def test_offchip_neighbour_placed_from_sky_with_nearest_psf():
    central, offchip = _members()
    nbrs, skipped = render_neighbours(central, _stamp(), [central, offchip])
    assert skipped == []
    # equal up to floating-point rounding (sky offset in degrees, exp recurrence)
    np.testing.assert_allclose(nbrs, _expected(offchip.pars, 0.0, 1.0), rtol=1e-7, atol=1e-9)
    # its light sits one arcsec (3.8 pixels) to the +u side of the centre
    cols = np.arange(32)
    centroid_u = (np.sum(nbrs.sum(axis=0) * cols) / nbrs.sum() - 15.5) * SCALE
    assert abs(centroid_u - 1.0) < 0.02


def test_subtract_and_frac_recover_the_central_on_noiseless_data():
    central, offchip = _members()
    cen = render_self(central, _stamp())
    nbr = _expected(offchip.pars, 0.0, 1.0)
    obs = _stamp(image=cen + nbr)
    for method in ("subtract", "frac"):
        out = correct_observation(central, obs, [central, offchip], method=method)
        np.testing.assert_allclose(out.image, cen, atol=1e-9 * cen.max())


def test_intrinsic_profile_variance_and_failed_neighbour_mask():
    central, offchip = _members()
    nbr = _expected(offchip.pars, 0.0, 1.0)
    out = correct_observation(central, _stamp(), [central, offchip], var_fac=0.01)
    np.testing.assert_allclose(out.weight, 1.0 / (1.0 / 4.0 + 0.01 * nbr ** 2))
    # a neighbour whose fit failed is not drawn: its seg pixels lose their weight
    seg = np.zeros((32, 32), dtype="i4")
    seg[10:20, 18:24] = 2
    offchip.ok = False
    out = correct_observation(central, _stamp(seg=seg), [central, offchip])
    np.testing.assert_array_equal(out.image, 0.0)
    assert np.all(out.weight[seg == 2] == 0) and np.all(out.weight[seg == 0] == 4.0)
