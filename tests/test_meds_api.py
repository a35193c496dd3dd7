"""The reference meds.MEDS API on hand-built files: regions worked by hand (project
rules and reference=True), seg interpolation rounding, exceptions, return types,
PSF column variants and fpacked files."""

from __future__ import annotations

import shutil
import subprocess

import fitsio
import numpy as np
import pytest

from pipeline.errors import InputFileError
from pipeline.meds import MEDS, split_mosaic
from tests.test_meds_integrity import NOBJ, _tile, _without_card

BOX = 8
# the coadd seg stamp of objects 0 (number 1) and 1 (number 2): the neighbour (2) in
# columns 0-1, object 1 in columns 5-7, sky between; column 3 is equally near both,
# and the stamp centre (3, 3) is sky
SEG = np.array([[2, 2, 0, 0, 0, 1, 1, 1]] * BOX, dtype="i4")
WEIGHT = (1.0 + np.arange(BOX * BOX)).reshape(BOX, BOX).astype("f4")
# the epoch's own seg stamp of object 0: one pixel of object 2 in the corner
EPOCH_SEG = np.zeros((BOX, BOX), "i4")
EPOCH_SEG[0, 0] = 2
EPOCH_SEG[3:5, 3:5] = 1
# coadd pixels 0.25", epoch pixels 0.125" (both exact in binary): epoch row r maps to
# coadd row 3.5 + (r - 4)/2, which is an exact half for even r
JAC_COADD = (3.5, 3.5, 0.0, 0.25, 0.25, 0.0)
JAC_EPOCH = (4.0, 4.0, 0.0, 0.125, 0.125, 0.0)
PSF_ROWS, PSF_COLS = [5, 7, 3], [5, 5, 3]


def _columns(keep_cols):
    mask = np.zeros((BOX, BOX), bool)
    mask[:, list(keep_cols)] = True
    return mask


@pytest.fixture(scope="module")
def handmade(tmp_path_factory):
    """Three objects with a coadd and one epoch cutout each; object 2 has a seg
    stamp of distinct values (for the interpolation test); PSF sizes per object
    (1-D psf_row_size/psf_col_size columns)."""
    path = tmp_path_factory.mktemp("api") / "hand-meds.fits"
    nobj, nmax, npix = 3, 2, BOX * BOX
    obj = np.zeros(nobj, dtype=[
        ("id", "i8"), ("number", "i8"), ("box_size", "i8"), ("ncutout", "i8"),
        ("file_id", "i8", nmax), ("start_row", "i8", nmax), ("cutout_row", "f8", nmax),
        ("cutout_col", "f8", nmax), ("dudrow", "f8", nmax), ("dudcol", "f8", nmax),
        ("dvdrow", "f8", nmax), ("dvdcol", "f8", nmax), ("psf_row_size", "i4"),
        ("psf_col_size", "i4"), ("psf_start_row", "i8", nmax)])
    obj["id"], obj["number"] = [70, 71, 72], [1, 2, 3]
    obj["box_size"], obj["ncutout"] = BOX, 2
    obj["file_id"] = [0, 1]
    obj["start_row"] = np.arange(nobj * nmax).reshape(nobj, nmax) * npix
    for k, jac in enumerate((JAC_COADD, JAC_EPOCH)):
        for name, value in zip(("cutout_row", "cutout_col", "dudrow", "dudcol", "dvdrow",
                                "dvdcol"), jac):
            obj[name][:, k] = value
    obj["psf_row_size"], obj["psf_col_size"] = PSF_ROWS, PSF_COLS
    psf_npix = np.repeat(np.array(PSF_ROWS) * PSF_COLS, nmax)
    obj["psf_start_row"] = (np.cumsum(psf_npix) - psf_npix).reshape(nobj, nmax)
    seg = np.stack([SEG, EPOCH_SEG, SEG, EPOCH_SEG,
                    np.arange(npix).reshape(BOX, BOX), np.where(EPOCH_SEG == 1, 3, 0)]
                   ).astype("i4")
    psf = np.concatenate([np.full(n, 10.0 * i + 1, "f4") for i, n in enumerate(psf_npix)])
    info = np.zeros(2, dtype=[("image_path", "S12"), ("magzp", "f4")])
    info["image_path"] = ["coadd.fits  ", "epoch1.fits"]
    info["magzp"] = [30.0, 29.5]
    with fitsio.FITS(str(path), "rw", clobber=True) as f:
        f.write(obj, extname="object_data")
        f.write(info, extname="image_info")
        f.write(np.tile(WEIGHT, (2 * nobj, 1)).ravel(), extname="image_cutouts")
        f.write(np.tile(WEIGHT, (2 * nobj, 1)).ravel(), extname="weight_cutouts")
        f.write(seg.ravel(), extname="seg_cutouts")
        f.write(psf, extname="psf")
    return path


REGIONS = {
    # object 0 (number 1): the project's seg id is its number; the reference's is the
    # coadd seg under the centre (3, 3): sky, so its cweight drops every labelled pixel
    (0, "cweight"): ([2, 3, 4, 5, 6, 7], [2, 3, 4]),
    (0, "restrict"): ([5, 6, 7], [2, 3, 4]),
    # column 3 is a tie: the project keeps it (ties go to the object); the reference
    # hands it to the first labelled pixel in row-major order, column 1 (object 2)
    (0, "uberseg"): ([3, 4, 5, 6, 7], [4]),
    (1, "cweight"): ([0, 1, 2, 3, 4], [2, 3, 4]),
    (1, "uberseg"): ([0, 1, 2, 3], [2, 3]),
}


@pytest.mark.parametrize("reference", [False, True])
def test_regions_worked_by_hand(handmade, reference):
    with MEDS(handmade) as m:
        for (iobj, kind), cols in REGIONS.items():
            keep = _columns(cols[reference])
            if kind == "cweight":
                got = m.get_cweight_cutout(iobj, 0, reference=reference)
                cseg = m.get_cseg_cutout(iobj, 0, reference=reference)
                np.testing.assert_array_equal(cseg, np.where(keep, iobj + 1, 0))
                assert cseg.dtype == np.dtype("i4")
            elif kind == "restrict":
                got = m.get_cweight_cutout(iobj, 0, restrict_to_seg=True, reference=reference)
            else:
                got = m.get_uberseg(iobj, 0, reference=reference)
                for fast in (True, False):
                    np.testing.assert_array_equal(
                        m.get_cweight_cutout_nearest(iobj, 0, fast=fast, reference=reference),
                        got)
            assert got.dtype == np.dtype("f4"), (iobj, kind)
            np.testing.assert_array_equal(got, np.where(keep, WEIGHT, 0), err_msg=str(kind))
        # mosaics and lists are the per-cutout results stacked
        for iobj in (0, 1):
            mosaic = m.get_cweight_mosaic(iobj, reference=reference)
            assert mosaic.shape == (2 * BOX, BOX)
            for k, stamp in enumerate(m.get_cweight_cutout_list(iobj, reference=reference)):
                np.testing.assert_array_equal(stamp, m.get_cweight_cutout(
                    iobj, k, reference=reference))
                np.testing.assert_array_equal(mosaic[k * BOX:(k + 1) * BOX], stamp)
            for k, stamp in enumerate(m.get_uberseg_list(iobj, reference=reference)):
                np.testing.assert_array_equal(stamp, m.get_uberseg(iobj, k, reference=reference))
            for k, stamp in enumerate(split_mosaic(m.get_cseg_mosaic(iobj, reference=reference))):
                np.testing.assert_array_equal(stamp, m.get_cseg_cutout(iobj, k,
                                                                       reference=reference))


def test_seg_interpolation_rounds_halves_up_or_to_even(handmade):
    """Epoch pixel r maps to coadd pixel 3.5 + (r - 4)/2: halves at even r. The
    project rounds them up, the reference (reference=True) to even."""
    r = np.arange(BOX)
    up = np.floor(3.5 + (r - 4) / 2 + 0.5).astype(int)
    even = np.rint(3.5 + (r - 4) / 2).astype(int)
    assert np.any(up != even)
    coadd = np.arange(BOX * BOX).reshape(BOX, BOX)
    with MEDS(handmade) as m:
        np.testing.assert_array_equal(m.interpolate_coadd_seg(2, 0), coadd)
        np.testing.assert_array_equal(m.interpolate_coadd_seg(2, 1), coadd[np.ix_(up, up)])
        np.testing.assert_array_equal(m.interpolate_coadd_seg(2, 1, reference=True),
                                      coadd[np.ix_(even, even)])
        mosaic = m.interpolate_coadd_seg_mosaic(2)
        np.testing.assert_array_equal(mosaic[BOX:], coadd[np.ix_(up, up)])


def test_cseg_weight_circle(handmade):
    """The epoch seg has object 2 at (0, 0): the weight is kept inside the circle
    through it, about the object (4, 4) or the stamp centre (3.5, 3.5)."""
    rows, cols = np.mgrid[0:BOX, 0:BOX]
    with MEDS(handmade) as m:
        for canonical, (r0, c0) in ((False, (4.0, 4.0)), (True, (3.5, 3.5))):
            got = m.get_cseg_weight(0, 1, use_canonical_cen=canonical)
            r2 = (rows - r0) ** 2 + (cols - c0) ** 2
            assert got.dtype == np.dtype("f8")
            np.testing.assert_array_equal(got, np.where(r2 < r2[0, 0], WEIGHT, 0))
        # no other object in the epoch's own seg stamp of object 2: the weight as is
        alone = m.get_cseg_weight(2, 1)
        assert alone.dtype == np.dtype("f4")
        np.testing.assert_array_equal(alone, WEIGHT)


def test_accessors_and_return_types(handmade):
    with MEDS(handmade) as m:
        assert m.get_number(1) == 2
        assert m.get_cutout_rowcol(0, 1) == (4.0, 4.0)
        mat = m.get_jacobian_matrix(0, 1)
        assert isinstance(mat, np.matrix)
        np.testing.assert_array_equal(mat, [[0.0, 0.125], [0.125, 0.0]])
        assert m.get_source_path(1, 0) == "coadd.fits" and m.get_source_path(1, 1) == "epoch1.fits"
        info = m.get_source_info(1, 1)
        assert isinstance(info, np.void) and info["magzp"] == np.float32(29.5)
        for iobj, (nrow, ncol) in enumerate(zip(PSF_ROWS, PSF_COLS)):
            psfs = m.get_cutout_list(iobj, type="psf")
            assert len(psfs) == 2
            for k, psf in enumerate(psfs):
                assert psf.shape == (nrow, ncol)
                np.testing.assert_array_equal(psf, 10.0 * (2 * iobj + k) + 1)
                np.testing.assert_array_equal(m.get_cutout(iobj, k, type="psf"), psf)


def test_object_stacks_and_jacobian_table(handmade):
    """The bulk accessors the ImageIO uses agree with the per-cutout ones and cannot
    be modified through (they are shared by later calls)."""
    with MEDS(handmade) as m:
        for iobj in range(m.size):
            ncut = int(m["ncutout"][iobj])
            for kind in ("image", "weight", "seg"):
                stack = m.get_object_stack(iobj, kind)
                assert stack.shape == (ncut, BOX, BOX) and not stack.flags.writeable
                for k in range(ncut):
                    np.testing.assert_array_equal(stack[k], m.get_cutout(iobj, k, kind))
            cutout = m.get_cutout(iobj, 0)
            cutout[:] = -1.0   # a copy: the shared stack is untouched
            assert not np.any(m.get_object_stack(iobj)[0] == -1.0)
        table = m.jacobian_table()
        assert table.shape == (m.size, m.nmax, 6) and not table.flags.writeable
        np.testing.assert_array_equal(table[0, 1], JAC_EPOCH)
        np.testing.assert_array_equal(table[0, :2], m.get_jacobian_array(0, [0, 1]))
        with pytest.raises(ValueError, match="no 'bmask_cutouts' HDU|cutout types"):
            m.get_object_stack(0, "bmask")


def test_errors_are_the_reference_builtins(handmade, tmp_path):
    no_psf = _tile(tmp_path / "nopsf.fits", with_psf=False)
    with MEDS(handmade) as m, MEDS(no_psf) as n:
        requests = [lambda: m.get_cutout(3, 0), lambda: m.get_cutout(0, 2),
                    lambda: m.get_cutout(0, 0, type="noise"), lambda: m["nonesuch"],
                    lambda: m.get_mosaic(0, type="psf"), lambda: n.get_psf(0, 0),
                    lambda: n.get_cutout_list(0, type="psf")]
        for call in requests:
            with pytest.raises(ValueError) as err:
                call()
            assert isinstance(err.value, InputFileError) and "\n" not in str(err.value)
    for path in (tmp_path / "missing.fits", tmp_path):
        with pytest.raises(OSError) as err:
            MEDS(path)
        assert isinstance(err.value, InputFileError)


@pytest.mark.skipif(shutil.which("fpack") is None, reason="fpack (libcfitsio-bin) not installed")
def test_fpacked_file_reads_like_the_original(tmp_path):
    """fpack tiles the stamp HDUs by the writer's FZTILE; integer stamps come back
    exactly, float ones within fpack's quantisation."""
    plain = _tile(tmp_path / "t-meds.fits")
    subprocess.run(["fpack", str(plain)], check=True)
    packed = tmp_path / "t-meds.fits.fz"
    with fitsio.FITS(str(packed)) as f:
        assert f["image_cutouts"].is_compressed()
        assert f["image_cutouts"].read_header()["ZTILE1"] == 10240
    with MEDS(plain) as a, MEDS(packed) as b:
        assert b.size == NOBJ and b.cutout_types == a.cutout_types
        for i in range(a.size):
            for k in range(int(a["ncutout"][i])):
                for kind in ("seg", "bmask"):
                    np.testing.assert_array_equal(b.get_cutout(i, k, kind),
                                                  a.get_cutout(i, k, kind))
                np.testing.assert_allclose(b.get_cutout(i, k), a.get_cutout(i, k), atol=0.2)
                np.testing.assert_allclose(b.get_psf(i, k), a.get_psf(i, k), rtol=0.05)
            np.testing.assert_array_equal(b.get_uberseg_list(i) != 0, a.get_uberseg_list(i) != 0)


@pytest.mark.skipif(shutil.which("fpack") is None, reason="fpack (libcfitsio-bin) not installed")
def test_whole_hdu_tiles_are_reported(tmp_path, monkeypatch, caplog):
    """A stamp HDU fpacked as one tile (fpack's default for a file without FZTILE)
    inflates the whole HDU for every stamp: the reader says so when it opens."""
    from pipeline.meds import reader

    plain = _tile(tmp_path / "w-meds.fits", box=32)  # stamp HDUs of ~30000 pixels
    bare = tmp_path / "whole.fits"
    bare.write_bytes(_without_card(plain.read_bytes(), "FZTILE"))
    for path in (plain, bare):
        subprocess.run(["fpack", str(path)], check=True)
    monkeypatch.setattr(reader, "WHOLE_TILE_WARN", 5000)  # the test file is small
    with caplog.at_level("WARNING", logger="pipeline.meds.reader"):
        MEDS(tmp_path / "w-meds.fits.fz").close()
        assert not caplog.records
        MEDS(tmp_path / "whole.fits.fz").close()
    warned = {r.getMessage().split("'")[1] for r in caplog.records}
    # (the psf HDU, 2916 pixels, is below the threshold)
    assert warned == {"image_cutouts", "weight_cutouts", "seg_cutouts", "bmask_cutouts"}
    assert "fpack -t 10240" in caplog.records[0].getMessage()
