"""The MEDS ImageIO: weight regions, masks and bookkeeping against the reader."""

import subprocess
import sys

import numpy as np
import pytest

from pipeline.fitconfig import FIT_SCHEMA
from pipeline.config import validate
from pipeline.imageio.meds_io import MedsImageIO
from pipeline.meds import MEDS


@pytest.fixture(scope="module")
def blended(tmp_path_factory):
    out = tmp_path_factory.mktemp("blend")
    subprocess.run([sys.executable, "-m", "pipeline.cli.sim", str(out), "--tile", "B",
                    "--nobj", "30", "--bands", "g", "--nepoch", "3", "--seed", "3",
                    "--blend-frac", "0.6", "--log-level", "WARNING"], check=True,
                   capture_output=True)
    return out / "B-g-meds.fits"


@pytest.mark.parametrize("region", ["uberseg", "cweight"])
def test_region_weights_match_the_reader(blended, region):
    conf = validate({"region": region, "reject_outliers": False,
                     "max_zero_weight_frac": 1.0}, FIT_SCHEMA)
    io = MedsImageIO([str(blended)], conf)
    nzeroed = 0
    with MEDS(blended) as m:
        for index in range(m.size):
            obj = io.get_object(index, index)
            assert obj.mbobs is not None
            for obs in obj.mbobs[0]:
                icut = obs.meta["cutout_index"]
                ref = (m.get_uberseg(index, icut) if region == "uberseg"
                       else m.get_cweight_cutout(index, icut))
                bmask = m.get_cutout(index, icut, "bmask")
                ref[(bmask & conf["bmask_flags2check"]) != 0] = 0
                np.testing.assert_array_equal(obs.weight, ref)
                raw = obs.meta["weight_raw"]
                assert np.all(raw >= obs.weight)
                nzeroed += int(np.sum((raw > 0) & (obs.weight == 0)))
    assert nzeroed > 0, "the blended tile should hand some pixels to neighbours"


def test_observations_carry_the_reader_values(blended):
    """Per epoch: pixels, Jacobians (stamp and PSF), the coadd seg MOF masks with and
    the epoch table rows, against the reader's per-cutout accessors."""
    conf = validate({"region": "uberseg", "reject_outliers": False, "model_nbrs": True,
                     "max_zero_weight_frac": 1.0}, FIT_SCHEMA)
    io = MedsImageIO([str(blended)], conf)
    with MEDS(blended) as m:
        scale = m.get_image_info()["scale"]
        for index in range(m.size):
            obj = io.get_object(index, index)
            assert len(obj.epochs) == len(obj.mbobs[0]) == m["ncutout"][index] - 1
            for obs, row in zip(obj.mbobs[0], obj.epochs):
                icut = obs.meta["cutout_index"]
                assert row["cutout_index"] == icut and row["file_id"] == obs.meta["file_id"]
                np.testing.assert_allclose(
                    obs.image, m.get_cutout(index, icut) * scale[row["file_id"]], rtol=1e-6)
                jac = m.get_jacobian(index, icut)
                assert obs.jacobian.get_cen() == (jac["row0"], jac["col0"])
                assert (obs.jacobian.dudrow, obs.jacobian.dvdcol) == (jac["dudrow"],
                                                                      jac["dvdcol"])
                assert obs.psf.jacobian.get_cen() == (
                    m["psf_cutout_row"][index, icut], m["psf_cutout_col"][index, icut])
                assert obs.psf.jacobian.dudcol == jac["dudcol"]
                np.testing.assert_array_equal(obs.meta["coadd_seg"],
                                              m.interpolate_coadd_seg(index, icut))
                assert row["pixel_scale"] == pytest.approx(obs.jacobian.get_scale(), rel=1e-12)
                assert row["wsum"] == pytest.approx(obs.weight.sum(), rel=1e-12)


def test_prefetch_is_a_hint_that_changes_nothing(blended):
    """Prefetching groups (the runner asks for the next group while fitting one)
    leaves the observations as they were and ignores indices out of range."""
    conf = validate({"region": "uberseg"}, FIT_SCHEMA)
    with MedsImageIO([str(blended)], conf) as plain, MedsImageIO([str(blended)], conf) as io:
        assert io._bands[0].stamp_types() == ("image", "weight", "bmask", "seg", "psf")
        for igroup in (-1, io.ngroups, io.ngroups + 5):
            io.prefetch_group(igroup)
        for igroup in range(io.ngroups):
            io.prefetch_group(igroup + 1)
            for a, b in zip(io.get_group(igroup), plain.get_group(igroup)):
                assert (a.mbobs is None) == (b.mbobs is None)
                if a.mbobs is not None:
                    for oa, ob in zip(a.mbobs[0], b.mbobs[0]):
                        np.testing.assert_array_equal(oa.weight, ob.weight)
                        np.testing.assert_array_equal(oa.image, ob.image)
        io.meds[0].prefetch(10**6, ("image",))   # a bad index is ignored


def test_stack_kernel_matches_the_numpy_definition():
    """The fused per-band kernel against the step-by-step numpy definition: scaling,
    bad pixels (non-finite, low weight, bmask bits), region, outliers, counts."""
    from pipeline.gmix.observation import psf_images_and_weights
    from pipeline.imageio.meds_band_nb import prepare_stack_nb
    from pipeline.meds.regions import outlier_mask

    rng = np.random.default_rng(7)
    n, shape = 4, (12, 10)
    image = rng.normal(10.0, 1.0, (n,) + shape).astype("f4")
    image[1, 3, 3] = 500.0                      # an outlier
    image[2, 0, :3] = np.nan
    weight = rng.uniform(0.5, 2.0, (n,) + shape).astype("f4")
    weight[0, 5, :] = -1.0
    weight[3, 2, 2] = np.inf
    bmask = np.where(rng.uniform(size=(n,) + shape) < 0.05, 2**30, 0).astype("i4")
    bmask[0, 0, 0] = 4                           # a bit nobody checks
    keep = rng.uniform(size=(n,) + shape) < 0.8
    scale = np.array([1.0, 2.0, 0.5, 1.5])

    images, raw, weights, nbad, nzero, npos, wsum, wmax = prepare_stack_nb(
        image, weight, bmask, True, 2**30, keep, True, scale, 0.0, True, 5.0, 0.3)

    ref_im = image.astype("f8") * scale[:, None, None]
    ref_raw = weight.astype("f8") / scale[:, None, None] ** 2
    nonfinite = ~(np.isfinite(ref_im) & np.isfinite(ref_raw))
    ref_raw[nonfinite | ~(ref_raw >= 0) | ((bmask & 2**30) != 0)] = 0.0
    ref_w = np.where(keep, ref_raw, 0.0)
    out = outlier_mask(ref_im, ref_raw)
    assert out[1, 3, 3]
    ref_raw[out] = 0.0
    ref_w[out] = 0.0
    ref_im[nonfinite] = 0.0
    np.testing.assert_array_equal(images, ref_im)
    np.testing.assert_array_equal(raw, ref_raw)
    np.testing.assert_array_equal(weights, ref_w)
    np.testing.assert_array_equal(nbad, nonfinite.sum(axis=(1, 2)))
    np.testing.assert_array_equal(nzero, (ref_raw <= 0).sum(axis=(1, 2)))
    np.testing.assert_array_equal(npos, (ref_w > 0).sum(axis=(1, 2)))
    np.testing.assert_allclose(wsum, ref_w.sum(axis=(1, 2)), rtol=1e-13)
    np.testing.assert_array_equal(wmax, ref_w.max(axis=(1, 2)))

    # PSF stamps: non-finite pixels get weight 0, the weight follows the peak
    stamps = np.ones((2, 5, 5))
    stamps[0, 2, 2], stamps[1, 0, 0] = 4.0, np.nan
    ims, wts, bad = psf_images_and_weights(stamps, rel_noise=0.01)
    assert list(bad) == [0, 1] and ims[1, 0, 0] == 0.0 and wts[1, 0, 0] == 0.0
    np.testing.assert_allclose(wts[0], 1.0 / 0.04 ** 2)
    np.testing.assert_allclose(wts[1, 1:], 1.0 / 0.01 ** 2)


def test_observation_from_clean_takes_arrays_as_given():
    from pipeline.gmix.jacobian import DiagonalJacobian
    from pipeline.gmix.observation import Observation

    image, weight = np.ones((4, 4)), np.full((4, 4), 2.0)
    obs = Observation.from_clean(image, weight, DiagonalJacobian(scale=0.263))
    assert obs.image is image and obs.weight is weight and obs.meta["nbad"] == 0
    with pytest.raises(ValueError, match="float64"):
        Observation.from_clean(image.astype("f4"), weight, DiagonalJacobian())
    with pytest.raises(ValueError, match="one shape"):
        Observation.from_clean(image, np.ones((3, 4)), DiagonalJacobian())
