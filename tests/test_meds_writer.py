"""write_meds: round trip against the source pixels and WCS, spec conformance via fitsio."""

from __future__ import annotations

import glob
import os

import fitsio
import galsim
import numpy as np
import pytest

from pipeline.errors import InputFileError
from pipeline.meds import MEDS, AffineWCS, GalsimWCS, MedsInputError, SourceImage, write_meds

EDGE = 2**30


def _catalog(ra, dec, box, extra=True):
    dtype = [("id", "i8"), ("ra", "f8"), ("dec", "f8"), ("box_size", "i8")]
    if extra:
        dtype += [("flux", "f4"), ("shape", "f8", (3,))]
    cat = np.zeros(len(ra), dtype=dtype)
    cat["id"] = 1000 + np.arange(len(ra))
    cat["ra"], cat["dec"], cat["box_size"] = ra, dec, box
    if extra:
        cat["flux"] = np.arange(len(ra)) * 1.5
        cat["shape"] = np.arange(3 * len(ra)).reshape(-1, 3)
    return cat


def _affine_setup(rng, with_psf=True):
    """A coadd and two epochs with rotated/sheared affine WCSs, objects incl. edges."""
    wcss = [AffineWCS(35.0, -5.0, 60.0, 55.0, 0.0, 0.263, 0.263, 0.0),
            # rotated by ~30 deg and sheared, different scale
            AffineWCS(35.0, -5.0, 48.3, 70.1, 0.13, 0.22, 0.24, -0.11),
            AffineWCS(35.0, -5.0, 20.0, 30.0, -0.27, 0.02, 0.01, 0.25)]
    shapes = [(120, 110), (100, 140), (80, 90)]
    images = []
    for i, (wcs, shape) in enumerate(zip(wcss, shapes)):
        im = rng.normal(size=shape)
        psf = None
        if with_psf:
            # constant PSF on the coadd, position-dependent (encodes the position) on epochs
            psf = (np.arange(25.0).reshape(5, 5) if i == 0 else
                   (lambda r, c, i=i: np.full((7, 7), 1000.0 * i + r + c / 1000.0)))
        images.append(SourceImage(
            image=im, wcs=wcs, weight=rng.uniform(0.5, 2.0, shape),
            seg=rng.integers(0, 5, shape).astype("i4"),
            bmask=rng.integers(0, 3, shape).astype("i4"),
            noise=rng.normal(size=shape), psf=psf, image_path=f"img{i}.fits",
            magzp=30.0 + 0.1 * i, image_id=-1 if i else 77))
    # object pixel positions on the coadd: interior, near every edge, and one off the coadd
    rows = np.array([60.2, 3.7, 117.9, 50.0, 1.1, 60.0, -30.0])
    cols = np.array([55.6, 50.0, 100.3, 1.4, 108.8, 60.0, 50.0])
    ra, dec = wcss[0].image_to_sky(rows, cols)
    cat = _catalog(ra, dec, [32, 16, 24, 16, 20, 48, 16])
    return cat, images


def _expected_stamp(arr, shape, r0, c0, box, fill):
    out = np.full((box, box), fill, dtype="f8")
    for r in range(box):  # loops fine in a test: tiny stamps, independent of the writer
        for c in range(box):
            rr, cc = r0 + r, c0 + c
            if 0 <= rr < shape[0] and 0 <= cc < shape[1]:
                out[r, c] = arr[rr, cc]
    return out


@pytest.fixture(scope="module")
def affine_file(tmp_path_factory):
    rng = np.random.default_rng(42)
    cat, images = _affine_setup(rng)
    path = str(tmp_path_factory.mktemp("meds") / "affine-meds.fits")
    write_meds(path, cat, images, metadata={"band": "r", "tilename": "DES0000+0000",
                                             "config": {"a": 1}, "medsconf": "y6"})
    return path, cat, images


def test_round_trip_pixels_and_jacobian(affine_file):
    path, cat, images = affine_file
    with MEDS(path) as m:
        assert m.size == cat.size
        for iobj in range(m.size):
            box = int(m["box_size"][iobj])
            expect_files = []
            for i, src in enumerate(images):
                row, col = src.wcs.sky_to_image(cat["ra"][iobj], cat["dec"][iobj])
                nrow, ncol = src.image.shape
                if -0.5 <= row[()] < nrow - 0.5 and -0.5 <= col[()] < ncol - 0.5:
                    expect_files.append(i)
            assert list(m["file_id"][iobj, :m["ncutout"][iobj]]) == expect_files
            for icut, i in enumerate(expect_files):
                src = images[i]
                row, col = (float(x) for x in src.wcs.sky_to_image(cat["ra"][iobj],
                                                                    cat["dec"][iobj]))
                r0, c0 = int(np.floor(row)) - box // 2 + 1, int(np.floor(col)) - box // 2 + 1
                assert m["orig_start_row"][iobj, icut] == r0
                assert m["orig_start_col"][iobj, icut] == c0
                np.testing.assert_allclose(m["orig_row"][iobj, icut], row, rtol=0, atol=1e-9)
                for t, fill in (("image", 0), ("weight", 0), ("seg", 0), ("bmask", EDGE),
                                ("noise", 0)):
                    want = _expected_stamp(getattr(src, t), src.image.shape, r0, c0, box, fill)
                    got = m.get_cutout(iobj, icut, type=t)
                    # f4 on disk: exact for the ints, float32 rounding for the floats
                    np.testing.assert_array_equal(got, want.astype(got.dtype))
                jac = m.get_jacobian(iobj, icut)
                assert jac["row0"] == pytest.approx(row - r0, abs=1e-9)
                assert jac["col0"] == pytest.approx(col - c0, abs=1e-9)
                # the centre lands near the stamp centre (box-1)/2
                assert abs(jac["row0"] - (box - 1) / 2) <= 0.5 + 1e-9
                mat = src.wcs.matrix
                assert [jac[k] for k in ("dudrow", "dudcol", "dvdrow", "dvdcol")] == \
                    pytest.approx(mat.ravel().tolist(), abs=1e-12)
                psf = m.get_psf(iobj, icut)
                want_psf = (images[0].psf if i == 0 else src.psf(row, col)).astype("f4")
                np.testing.assert_array_equal(psf, want_psf)
                assert m["psf_cutout_row"][iobj, icut] == (psf.shape[0] - 1) / 2


def test_spec_conformance_with_plain_fitsio(affine_file):
    path, cat, images = affine_file
    with fitsio.FITS(path) as f:
        names = [h.get_extname() for h in f]
        assert names == ["", "object_data", "image_info", "metadata", "image_cutouts",
                         "weight_cutouts", "seg_cutouts", "bmask_cutouts", "noise_cutouts",
                         "psf"]
        obj = f["object_data"].read()
        info = f["image_info"].read()
        meta = f["metadata"].read()
        dims = {n: f[n].get_dims() for n in names[4:]}
        dtypes = {n: f[n][0:1].dtype for n in names[4:]}
    nmax = obj["file_id"].shape[1]
    assert nmax >= 2
    want = {"id": "i8", "number": "i8", "box_size": "i8", "ra": "f8", "dec": "f8",
            "ncutout": "i8", "file_id": "i8", "start_row": "i8", "orig_row": "f8",
            "orig_col": "f8", "orig_start_row": "i8", "orig_start_col": "i8",
            "cutout_row": "f8", "cutout_col": "f8", "dudrow": "f8", "dudcol": "f8",
            "dvdrow": "f8", "dvdcol": "f8", "psf_start_row": "i8", "psf_cutout_row": "f8",
            "psf_cutout_col": "f8"}
    for col, dt in want.items():
        assert obj.dtype[col].base.str[1:] == np.dtype(dt).str[1:], col
    # psf sizes differ between images, so the row/col size variant is used
    assert obj["psf_row_size"].shape == (cat.size, nmax)
    assert "psf_box_size" not in obj.dtype.names
    # passthrough columns, number defaults to index+1
    np.testing.assert_array_equal(obj["flux"], cat["flux"])
    np.testing.assert_array_equal(obj["shape"], cat["shape"])
    np.testing.assert_array_equal(obj["number"], np.arange(1, cat.size + 1))
    npix = int(np.sum(obj["ncutout"] * obj["box_size"] ** 2))
    for n in names[4:9]:
        assert dims[n] == [npix]
    assert {n: dt.str[1:] for n, dt in dtypes.items()} == {
        "image_cutouts": "f4", "weight_cutouts": "f4", "seg_cutouts": "i4",
        "bmask_cutouts": "i4", "noise_cutouts": "f4", "psf": "f4"}
    # cutout 0 is the coadd for every object on the coadd; unused slots hold -9999
    on = obj["ncutout"] > 0
    assert np.all(obj["file_id"][on, 0] == 0)
    assert obj["ncutout"][-1] == 0  # the object off the coadd (and off the epochs)
    slots = np.arange(nmax)[None, :] >= obj["ncutout"][:, None]
    for col in ("file_id", "start_row", "orig_row", "cutout_row", "dudrow", "psf_start_row"):
        assert np.all(obj[col][slots] == -9999), col
    # objects are contiguous and in table order
    used = ~slots
    starts = obj["start_row"][used]
    assert np.all(np.diff(starts) > 0) and starts[0] == 0
    # image_info: coadd first, DES scale convention, JSON WCS
    assert info.size == 3 and info["image_path"][0] == "img0.fits"
    assert list(info["image_id"]) == [77, 1, 2]
    np.testing.assert_allclose(info["scale"], 10 ** (0.4 * (30.0 - info["magzp"])), rtol=1e-6)
    assert np.all(info["position_offset"] == 1.0)
    assert '"wcs_type": "affine"' in info["wcs"][1]
    assert meta.size == 1 and meta["magzp_ref"][0] == 30.0
    assert meta["band"][0] == "r" and meta["tilename"][0] == "DES0000+0000"
    assert meta["config"][0] == '{"a": 1}'


def test_same_inputs_give_identical_bytes(tmp_path):
    for name in ("a.fits", "b.fits"):
        cat, images = _affine_setup(np.random.default_rng(3))
        write_meds(tmp_path / name, cat, images, metadata={"band": "i"})
    assert (tmp_path / "a.fits").read_bytes() == (tmp_path / "b.fits").read_bytes()


def test_nmax_and_psf_box_size_variant(tmp_path):
    rng = np.random.default_rng(5)
    wcs = AffineWCS(10.0, 20.0, 30.0, 30.0)
    images = [SourceImage(rng.normal(size=(60, 60)), wcs, psf=np.eye(9)) for _ in range(4)]
    ra, dec = wcs.image_to_sky(np.array([30.0, 10.0]), np.array([30.0, 12.0]))
    cat = _catalog(ra, dec, [8, 8], extra=False)
    cat_num = np.zeros(2, dtype=cat.dtype.descr + [("number", "i4")])
    for n in cat.dtype.names:
        cat_num[n] = cat[n]
    cat_num["number"] = [7, 9]
    write_meds(tmp_path / "n.fits", cat_num, images, nmax=3)
    with MEDS(tmp_path / "n.fits") as m:
        assert m["file_id"].shape == (2, 3)
        assert list(m["ncutout"]) == [3, 3]  # capped at nmax, first images kept
        assert list(m["file_id"][0]) == [0, 1, 2]
        assert list(m["number"]) == [7, 9]
        assert m["psf_box_size"][0] == 9 and "psf_row_size" not in m.get_cat().dtype.names
        np.testing.assert_array_equal(m.get_psf(1, 2), np.eye(9))
    # one image: still nmax=2 so array columns stay arrays
    write_meds(tmp_path / "one.fits", cat, images[:1])
    with fitsio.FITS(tmp_path / "one.fits") as f:
        assert f["object_data"]["start_row"][:].shape == (2, 2)
    with pytest.raises(MedsInputError, match="nmax"):
        write_meds(tmp_path / "x.fits", cat, images, nmax=1)


def test_galsim_tan_wcs_centroid_and_jacobian(tmp_path):
    """Objects drawn by galsim at known sky positions sit at (cutout_row, cutout_col)."""
    centre = galsim.CelestialCoord(52.0 * galsim.degrees, -28.0 * galsim.degrees)
    affine = galsim.AffineTransform(-0.21, 0.12, 0.14, 0.23, origin=galsim.PositionD(64.5, 60.5))
    wcs = galsim.TanWCS(affine, centre)
    image = galsim.ImageF(128, 120, wcs=wcs)
    rng = np.random.default_rng(11)
    # a 3x2 grid (arcsec) with random sub-pixel jitter: neighbours >= 20 pixels apart
    du = np.repeat([-6.0, 0.0, 6.0], 2) + rng.uniform(-0.5, 0.5, 6)
    dv = np.tile([-5.0, 5.0], 3) + rng.uniform(-0.5, 0.5, 6)
    coords = [centre.deproject(u * galsim.arcsec, v * galsim.arcsec) for u, v in zip(du, dv)]
    for coord in coords:
        pos = wcs.toImage(coord)
        galsim.Gaussian(sigma=0.5).drawImage(image, center=pos, add_to_image=True)
    ra = np.array([c.ra.deg for c in coords])
    dec = np.array([c.dec.deg for c in coords])
    cat = _catalog(ra, dec, [32] * len(coords), extra=False)
    src = SourceImage(image.array.copy(), GalsimWCS(wcs), weight=np.ones(image.array.shape))
    write_meds(tmp_path / "g.fits", cat, [src])
    with MEDS(tmp_path / "g.fits") as m:
        for iobj, coord in enumerate(coords):
            stamp = m.get_cutout(iobj, 0).astype("f8")
            jac = m.get_jacobian(iobj, 0)
            # centroid within 10 pixels (5 sigma) of the stated centre: the truncated
            # light (~1e-5) and neighbours (>= 20 pixels away) shift it by << 1e-3 pixel
            rr, cc = np.mgrid[0:32, 0:32]
            w = stamp * ((rr - jac["row0"]) ** 2 + (cc - jac["col0"]) ** 2 < 10.0**2)
            assert (w * rr).sum() / w.sum() == pytest.approx(jac["row0"], abs=2e-3)
            assert (w * cc).sum() / w.sum() == pytest.approx(jac["col0"], abs=2e-3)
            # Jacobian against finite differences of the galsim WCS (x=col+1, y=row+1)
            x = m["orig_col"][iobj, 0] + 1
            y = m["orig_row"][iobj, 0] + 1
            h = 0.01

            def uv(xx, yy):
                u, v = coord.project(wcs.toWorld(galsim.PositionD(xx, yy)))
                return np.array([u / galsim.arcsec, v / galsim.arcsec])
            ddrow = (uv(x, y + h) - uv(x, y - h)) / (2 * h)
            ddcol = (uv(x + h, y) - uv(x - h, y)) / (2 * h)
            np.testing.assert_allclose([jac["dudrow"], jac["dvdrow"]], ddrow, atol=1e-6)
            np.testing.assert_allclose([jac["dudcol"], jac["dvdcol"]], ddcol, atol=1e-6)


def test_galsim_euclidean_wcs_is_tangent_plane():
    """A Euclidean galsim WCS + world_origin behaves like the matching TanWCS."""
    origin = galsim.CelestialCoord(150.0 * galsim.degrees, 2.0 * galsim.degrees)
    affine = galsim.AffineTransform(0.25, 0.03, -0.02, 0.26, origin=galsim.PositionD(40, 30))
    eu = GalsimWCS(affine, world_origin=origin)
    tan = GalsimWCS(galsim.TanWCS(affine, origin))
    ra = 150.0 + np.array([-0.002, 0.0, 0.003])
    dec = 2.0 + np.array([0.001, -0.002, 0.0])
    np.testing.assert_allclose(eu.sky_to_image(ra, dec), tan.sky_to_image(ra, dec), atol=1e-6)
    # the world origin (u=v=0) is the affine origin: x=40, y=30 -> col=39, row=29
    row, col = eu.sky_to_image(np.array([150.0]), np.array([2.0]))
    assert (row[0], col[0]) == pytest.approx((29.0, 39.0), abs=1e-9)
    # Jacobian: d/drow is d/dy, d/dcol is d/dx
    assert [j[0] for j in eu.jacobian(np.array([5.0]), np.array([6.0]))] == \
        pytest.approx([0.03, 0.25, 0.26, -0.02])


def test_bad_writer_inputs_leave_no_file(tmp_path):
    rng = np.random.default_rng(8)
    cat, images = _affine_setup(rng)
    odd = cat.copy()
    odd["box_size"][2] = 17
    with pytest.raises(MedsInputError, match="row 2: box_size 17"):
        write_meds(tmp_path / "odd.fits", odd, images)
    with pytest.raises(MedsInputError, match="no 'ra' column"):
        write_meds(tmp_path / "nora.fits", cat[["id", "dec", "box_size"]], images)
    # a PSF function that changes shape fails mid-write: no final file, no temp file
    calls = []

    def bad_psf(row, col):
        calls.append(1)
        return np.ones((5, 5) if len(calls) < 3 else (7, 7))
    images[1].psf = bad_psf
    with pytest.raises(MedsInputError, match="PSF"):
        write_meds(tmp_path / "bad.fits", cat, images)
    assert os.listdir(tmp_path) == []
    # existing output without clobber
    (tmp_path / "exists.fits").write_bytes(b"x")
    images[1].psf = None
    with pytest.raises(InputFileError, match="exists"):
        write_meds(tmp_path / "exists.fits", cat, images)
    write_meds(tmp_path / "exists.fits", cat, images, clobber=True)
    assert glob.glob(str(tmp_path / ".*tmp")) == []
