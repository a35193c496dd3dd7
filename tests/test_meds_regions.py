"""cweight, uberseg and outlier rejection (definitions: docs/meds.rst)."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.meds import MEDS, AffineWCS, SourceImage, write_meds
from pipeline.meds.regions import (cweight, map_coadd_seg, object_segid, reject_outliers,
                                   uberseg)

# two objects: 1 on the left, 2 on the right, sky between (no sky pixel is equidistant)
SEG = np.array([[1, 1, 0, 0, 0, 0, 2, 2],
                [1, 1, 0, 0, 0, 0, 2, 2],
                [1, 0, 0, 0, 0, 0, 0, 2],
                [1, 1, 0, 0, 0, 0, 2, 2]], dtype="i4")
WEIGHT = 1.0 + np.arange(32.0).reshape(4, 8)
CWEIGHT_KEEP = np.array([[1, 1, 1, 1, 1, 1, 0, 0],
                         [1, 1, 1, 1, 1, 1, 0, 0],
                         [1, 1, 1, 1, 1, 1, 1, 0],
                         [1, 1, 1, 1, 1, 1, 0, 0]], dtype=bool)
# sky columns 2-3 are nearer object 1, columns 4-5 nearer object 2 (worked by hand)
UBERSEG_KEEP = np.array([[1, 1, 1, 1, 0, 0, 0, 0]] * 4, dtype=bool)


def test_hand_made_two_object_stamp():
    segid = object_segid(SEG, 1.6, 0.9)
    assert segid == 1
    np.testing.assert_array_equal(cweight(WEIGHT, SEG, segid), WEIGHT * CWEIGHT_KEEP)
    np.testing.assert_array_equal(uberseg(WEIGHT, SEG, segid), WEIGHT * UBERSEG_KEEP)
    # seen from object 2 the picture mirrors
    np.testing.assert_array_equal(uberseg(WEIGHT, SEG, 2), WEIGHT * UBERSEG_KEEP[:, ::-1])
    # inputs are not modified
    assert WEIGHT[0, 7] == 8.0


def test_lone_object_and_segid_fallback():
    lone = np.where(SEG == 2, 0, SEG)
    np.testing.assert_array_equal(uberseg(WEIGHT, lone, 1), WEIGHT)
    np.testing.assert_array_equal(cweight(WEIGHT, lone, 1), WEIGHT)
    # centre on sky: the seg id falls back to the object's number if it is in the stamp
    assert object_segid(SEG, 2.0, 1.0) == 0
    assert object_segid(SEG, 2.0, 1.0, number=2) == 2
    assert object_segid(SEG, 2.0, 1.0, number=9) == 0
    # close blend: the centre pixel belongs to the neighbour, the object keeps its region
    assert object_segid(SEG, 1.6, 0.9, number=2) == 2


def test_epoch_mapping_through_jacobians():
    """An epoch rotated by 90 degrees sees the coadd seg rotated; a finer one, scaled."""
    s = 0.263
    jc = dict(row0=1.5, col0=3.5, dudrow=0.0, dudcol=s, dvdrow=s, dvdcol=0.0)
    # epoch (dr, dc) -> coadd (-dc, dr): M_e = M_c . [[0, -1], [1, 0]]
    je = dict(row0=3.5, col0=1.5, dudrow=s, dudcol=0.0, dvdrow=0.0, dvdcol=-s)
    mapped = map_coadd_seg(SEG, jc, je, (8, 4))
    r, c = np.mgrid[0:8, 0:4]
    np.testing.assert_array_equal(mapped, SEG[(1.5 - (c - 1.5)).astype(int), r])
    np.testing.assert_array_equal(uberseg(np.ones((8, 4)), SEG, 1, jc, je),
                                  UBERSEG_KEEP[(3 - c), r].astype(float))
    # epoch pixels half the size: offsets halve; beyond the coadd stamp: clipped
    jh = dict(row0=3.5, col0=7.5, dudrow=0.0, dudcol=s / 2, dvdrow=s / 2, dvdcol=0.0)
    mapped = map_coadd_seg(SEG, jc, jh, (8, 16))
    r, c = np.mgrid[0:8, 0:16]
    rr = np.clip(np.floor(1.5 + (r - 3.5) / 2 + 0.5).astype(int), 0, 3)
    cc = np.clip(np.floor(3.5 + (c - 7.5) / 2 + 0.5).astype(int), 0, 7)
    np.testing.assert_array_equal(mapped, SEG[rr, cc])


def _disk_seg(wcs, shape, disks):
    """Seg map of sky disks (ra, dec, radius arcsec, id) drawn through a WCS."""
    r, c = np.mgrid[0:shape[0], 0:shape[1]]
    ra, dec = wcs.image_to_sky(r, c)
    seg = np.zeros(shape, dtype="i4")
    dist = np.full(shape, np.inf)
    for ra0, dec0, rad, ident in disks:
        d = np.hypot((ra - ra0) * np.cos(np.radians(dec0)), dec - dec0) * 3600 - rad
        seg[d < 0] = ident
        dist = np.minimum(dist, np.abs(d))
    return seg, dist


def test_reader_uberseg_matches_sky_footprints(tmp_path):
    """The coadd seg mapped onto a rotated, sheared epoch matches the sky footprints
    drawn directly on that epoch, except within one epoch pixel of a disk edge."""
    coadd = AffineWCS(20.0, 0.0, 40.0, 40.0, 0.0, 0.263, 0.263, 0.0)
    epoch = AffineWCS(20.0, 0.0, 35.0, 45.0, 0.05, -0.26, 0.25, 0.09)
    cat = np.zeros(2, dtype=[("id", "i8"), ("number", "i4"), ("ra", "f8"), ("dec", "f8"),
                             ("box_size", "i8")])
    cat["ra"], cat["dec"] = coadd.image_to_sky(np.array([40.3, 44.1]), np.array([38.2, 45.6]))
    cat["id"], cat["number"], cat["box_size"] = [1, 2], [1, 2], 32
    disks = [(cat["ra"][0], cat["dec"][0], 1.0, 1), (cat["ra"][1], cat["dec"][1], 0.8, 2)]
    images = []
    for wcs in (coadd, epoch):
        seg, _ = _disk_seg(wcs, (80, 80), disks)
        images.append(SourceImage(np.zeros((80, 80)), wcs, weight=np.ones((80, 80)), seg=seg))
    write_meds(tmp_path / "seg.fits", cat, images)
    with MEDS(tmp_path / "seg.fits") as m:
        assert list(m["ncutout"]) == [2, 2]
        jc, je = m.get_jacobian(0, 0), m.get_jacobian(0, 1)
        mapped = map_coadd_seg(m.get_cutout(0, 0, "seg"), jc, je, (32, 32))
        direct = m.get_cutout(0, 1, "seg")
        r0, c0 = m["orig_start_row"][0, 1], m["orig_start_col"][0, 1]
        _, dist = _disk_seg(epoch, (80, 80), disks)
        # nearest-pixel resampling moves a point by <= half a coadd pixel diagonal
        near_edge = dist[r0:r0 + 32, c0:c0 + 32] < 0.263 * np.sqrt(2) / 2
        assert np.all((mapped == direct) | near_edge)
        assert (mapped == 2).sum() > 10 and (mapped == 1).sum() > 10
        useg = m.get_uberseg(0, 1)
        assert np.all(useg[mapped == 2] == 0) and np.all(useg[mapped == 1] == 1)
        np.testing.assert_array_equal(
            useg, uberseg(m.get_cutout(0, 1, "weight"), m.get_cutout(0, 0, "seg"), 1, jc, je))
        np.testing.assert_array_equal(m.get_cweight_cutout(0, 1), np.where(mapped == 2, 0, 1))
        assert np.all(m.get_uberseg(1, 0)[m.get_cutout(1, 0, "seg") == 1] == 0)
        assert len(m.get_uberseg_list(1)) == 2 and len(m.get_cweight_cutout_list(1)) == 2


def test_reject_outliers():
    rng = np.random.default_rng(7)
    nep, shape, sigma = 6, (32, 32), 0.5
    r, c = np.mgrid[0:32, 0:32]
    star = 5e4 * np.exp(-((r - 15.7) ** 2 + (c - 16.2) ** 2) / 8.0)
    images, weights = [], []
    for k in range(nep):
        # 5% epoch-to-epoch amplitude differences on a bright star: kept thanks to A
        images.append(star * (1 + 0.05 * (k - 2.5) / 2.5) + rng.normal(0, sigma, shape))
        weights.append(np.full(shape, 1 / sigma**2))
    images[2][5, 9] += 40 * sigma  # a cosmic ray
    weights[4][0, 0] = 0.0
    nrej = reject_outliers(images, weights)
    # noise-only pixels: (im - median) has std ~1.2 sigma, so 5 sigma is a > 4 sigma
    # event (p ~ 1e-5 for 6144 pixels): the cosmic ray is the only rejection
    assert nrej == 1 and weights[2][5, 9] == 0
    assert sum(int((w == 0).sum()) for w in weights) == 2
    # without the A term the bright star's amplitude differences would be rejected
    w2 = [np.full(shape, 1 / sigma**2) for _ in range(nep)]
    assert reject_outliers(images, w2, A=0.0) > 10
    # fewer than 3 epochs: nothing to compare against
    w3 = [np.ones(shape), np.ones(shape)]
    assert reject_outliers(images[:2], w3) == 0 and all(np.all(w == 1) for w in w3)
    with pytest.raises(ValueError, match="same-shape"):
        reject_outliers(images[:2] + [np.zeros((4, 4))], [np.ones(shape)] * 2 + [np.ones((4, 4))])


def test_uberseg_distances_match_scipys_exact_transform():
    """The nearest-object rule's own distance kernel against scipy's exact
    Euclidean distance transform, on random stamps (labels scattered and in
    blobs, odd shapes, ties included)."""
    from scipy.ndimage import distance_transform_edt

    from pipeline.meds.regions import region_keep

    rng = np.random.default_rng(7)
    for trial in range(600):
        nepoch, nrow, ncol = rng.integers(1, 5), rng.integers(1, 60), rng.integers(1, 60)
        if trial % 2:
            segs = rng.integers(0, 4, (nepoch, nrow, ncol))
        else:
            segs = np.zeros((nepoch, nrow, ncol), dtype="i4")
            rows, cols = np.ogrid[:nrow, :ncol]
            for _ in range(rng.integers(1, 6)):
                r0, c0, rad = rng.integers(0, nrow), rng.integers(0, ncol), rng.integers(1, 12)
                segs[:, (rows - r0) ** 2 + (cols - c0) ** 2 < rad ** 2] = rng.integers(1, 4)
        expected = ~((segs != 0) & (segs != 1))
        for k in range(nepoch):
            own, other = segs[k] == 1, (segs[k] != 1) & (segs[k] != 0)
            if own.any() and other.any():
                expected[k] &= distance_transform_edt(~own) <= distance_transform_edt(~other)
        np.testing.assert_array_equal(region_keep(segs, 1, nearest=True), expected)


def test_uberseg_rule_matches_brute_force_distances():
    """The distance transforms against every own/other pixel pair, on random stamps
    with many equally near sky pixels (integer squared distances tie often)."""
    from pipeline.meds.regions import region_keep

    rng = np.random.default_rng(11)
    nchecked = 0
    for trial in range(200):
        nrow, ncol = rng.integers(1, 25, 2)
        nsky = int(rng.integers(1, 12))
        segs = rng.choice([0] * nsky + [1, 2, 3], size=(2, nrow, ncol)).astype("i4")
        keep = region_keep(segs, 1, nearest=True)
        grid = np.indices((nrow, ncol)).reshape(2, -1).T
        for k in range(2):
            own = np.argwhere(segs[k] == 1)
            other = np.argwhere((segs[k] != 1) & (segs[k] != 0))
            if len(own) == 0 or len(other) == 0:
                expected = segs[k] == 1
                expected |= segs[k] == 0
            else:
                d_own = ((grid[:, None] - own[None]) ** 2).sum(-1).min(1)
                d_other = ((grid[:, None] - other[None]) ** 2).sum(-1).min(1)
                expected = (d_own <= d_other).reshape(nrow, ncol) & (segs[k] != 2) \
                    & (segs[k] != 3)
                nchecked += 1
            np.testing.assert_array_equal(keep[k], expected, err_msg=f"trial {trial}")
    assert nchecked > 100
