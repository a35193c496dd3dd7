"""Damaged MEDS files are refused when opened (and by ngmixit before fitting), with
one line naming the file, the object and the problem."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import fitsio
import numpy as np
import pytest

from pipeline.config import validate
from pipeline.errors import InputFileError
from pipeline.fitconfig import FIT_SCHEMA
from pipeline.imageio.meds_io import MedsImageIO
from pipeline.meds import MEDS, AffineWCS, SourceImage, write_meds

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOBJ = 12


def _tile(path, with_psf=True, with_seg=True, with_weight=True, box=16):
    """A small tile written by the project's writer: 3 images, PSF stamps."""
    rng = np.random.default_rng(5)
    wcss = [AffineWCS(20.0, 1.0, 40.0, 40.0, 0.0, 0.263, 0.263, 0.0),
            AffineWCS(20.0, 1.0, 42.0, 37.0, 0.02, 0.26, 0.25, -0.03),
            AffineWCS(20.0, 1.0, 38.5, 41.2, -0.26, 0.01, 0.02, 0.26)]
    images = []
    for wcs in wcss:
        shape = (80, 80)
        images.append(SourceImage(
            rng.normal(size=shape), wcs,
            weight=np.ones(shape) if with_weight else None,
            seg=rng.integers(0, 3, shape).astype("i4") if with_seg else None,
            bmask=np.zeros(shape, "i4"),
            psf=np.full((9, 9), 1 / 81.0) if with_psf else None))
    cat = np.zeros(NOBJ, dtype=[("id", "i8"), ("ra", "f8"), ("dec", "f8"), ("box_size", "i8")])
    cat["id"] = 100 + np.arange(NOBJ)
    cat["ra"], cat["dec"] = wcss[0].image_to_sky(rng.uniform(20, 60, NOBJ),
                                                 rng.uniform(20, 60, NOBJ))
    cat["box_size"] = box
    write_meds(path, cat, images)
    return path


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    return _tile(tmp_path_factory.mktemp("integrity") / "good-meds.fits")


def _hdu_ends(path):
    with fitsio.FITS(str(path)) as f:
        return [(h.get_extname(), h.get_offsets()["data_end"]) for h in f]


def _assert_one_line(err, path, *texts):
    msg = str(err.value)
    assert msg.startswith(f"{path}: ") and "\n" not in msg, msg
    for text in texts:
        assert text in msg, msg


def _without_card(data: bytes, key: str) -> bytes:
    """The file as a maker that writes no ``key`` cards would have written it."""
    name = key.ljust(8).encode() + b"="
    while name in data:
        at = data.index(name)
        data = data[:at] + b"COMMENT".ljust(80) + data[at + 80:]
    return data


def _without_nextend(data: bytes) -> bytes:
    return _without_card(data, "NEXTEND")


def test_writer_records_extension_count_and_fpack_tiles(good):
    with fitsio.FITS(str(good)) as f:
        assert f[0].read_header()["NEXTEND"] == len(f) - 1 == 8
        for hdu in list(f)[4:]:
            assert hdu.read_header()["FZTILE"] == "(10240,1)"


def test_truncation_at_every_hdu_boundary_is_an_error(good, tmp_path):
    """Cut after each HDU: never a file that opens (it would fit nothing, or quietly
    lose its weight region or PSFs); with NEXTEND the message says truncated."""
    data = good.read_bytes()
    ends = _hdu_ends(good)
    assert ends[-1][1] == len(data)
    for k, (name, end) in enumerate(ends[:-1]):
        path = tmp_path / f"cut-after-{k}-{name or 'primary'}.fits"
        path.write_bytes(data[:end])
        with pytest.raises(OSError) as err:  # InputIOError: also an InputFileError
            MEDS(path)
        assert isinstance(err.value, InputFileError)
        _assert_one_line(err, path, "truncated file", f"{k} of the 8 extensions")
        # the same cut of a file without NEXTEND still fails to open: required
        # HDUs are missing, or PSF columns point into a 'psf' HDU that is gone
        bare = tmp_path / f"bare-{k}.fits"
        bare.write_bytes(_without_nextend(data)[:end])
        with pytest.raises(OSError) as err:
            MEDS(bare)
        _assert_one_line(err, bare)
        assert ("no 'psf' HDU (truncated file?)" in str(err.value)
                or "not a MEDS file" in str(err.value)), err.value


def _patched(good, tmp_path, name, change):
    """A copy of the good file with object_data column(s) changed in place."""
    path = tmp_path / f"{name}.fits"
    shutil.copyfile(good, path)
    with fitsio.FITS(str(path), "rw") as f:
        obj = f["object_data"].read()
        change(obj)
        for col in obj.dtype.names:
            f["object_data"].write_column(col, obj[col])
    return path


def _set(col, value, i=4, k=None):
    def change(obj):
        if k is None:
            obj[col][i] = value(obj) if callable(value) else value
        else:
            obj[col][i, k] = value(obj) if callable(value) else value
    return change


PATCHES = {
    # cutout 1 of object 4 starts where object 3's first cutout starts
    "overlap": (_set("start_row", lambda o: o["start_row"][3, 0], k=1),
                ["object 4 (id 104) cutout 1", "overlaps object 3 (id 103) cutout 0"]),
    "past_end": (_set("start_row", 10**7, k=1),
                 ["object 4 (id 104) cutout 1: start_row",
                  "runs past the end of 'image_cutouts'"]),
    "negative_start": (_set("start_row", -256, k=0),
                       ["object 4 (id 104) cutout 0: start_row -256 is negative"]),
    "odd_box": (_set("box_size", 17), ["object 4 (id 104): box_size 17 is not a positive even"]),
    "negative_box": (_set("box_size", -16), ["object 4 (id 104): box_size -16 is not"]),
    "bigger_box": (_set("box_size", 18), ["object 4 (id 104) cutout", "overlaps"]),
    "ncutout_too_large": (_set("ncutout", 7), ["object 4 (id 104): ncutout 7 is outside [0, 3]"]),
    "ncutout_negative": (_set("ncutout", -1), ["object 4 (id 104): ncutout -1 is outside"]),
    "file_id": (_set("file_id", 3, k=0),
                ["object 4 (id 104) cutout 0: file_id 3 is not a row of image_info (0..2)"]),
    "psf_past_end": (_set("psf_start_row", lambda o: o["psf_start_row"].max() + 10, k=0),
                     ["object 4 (id 104) cutout 0: psf_start_row",
                      "runs past the end of 'psf'"]),
    "psf_negative": (_set("psf_start_row", -3, k=1),
                     ["object 4 (id 104) cutout 1: psf_start_row -3 is negative"]),
}


@pytest.mark.parametrize("case", sorted(PATCHES))
def test_damaged_layout_is_refused_at_open(good, tmp_path, case):
    change, texts = PATCHES[case]
    path = _patched(good, tmp_path, case, change)
    with pytest.raises(InputFileError) as err:
        MEDS(path)
    assert isinstance(err.value, OSError)
    _assert_one_line(err, path, *texts)


def test_psf_box_size_zero_is_refused(tmp_path):
    path = _tile(tmp_path / "t.fits")
    with fitsio.FITS(str(path), "rw") as f:
        assert "psf_box_size" in f["object_data"].get_colnames()
        f["object_data"].write_column("psf_box_size", np.zeros(NOBJ, "i4"))
    with pytest.raises(InputFileError) as err:
        MEDS(path)
    _assert_one_line(err, path, "object 0 (id 100) cutout 0: PSF stamp size 0x0 is not positive")


def _conf(**kw):
    return validate(kw, FIT_SCHEMA)


def test_imageio_refuses_files_missing_what_the_config_needs(tmp_path):
    no_psf = _tile(tmp_path / "nopsf.fits", with_psf=False)
    with pytest.raises(InputFileError) as err:
        MedsImageIO([str(no_psf)], _conf())
    _assert_one_line(err, no_psf, "no PSF stamps: the file has no 'psf' HDU, which "
                                  "imageio.psf_source 'meds' needs")
    no_seg = _tile(tmp_path / "noseg.fits", with_seg=False)
    with pytest.raises(InputFileError) as err:
        MedsImageIO([str(no_seg)], _conf(region="uberseg"))
    _assert_one_line(err, no_seg, "no 'seg_cutouts' HDU, which region 'uberseg' needs")
    with MedsImageIO([str(no_seg)], _conf(region="weight")) as io:  # seg not needed
        assert io.get_object(0, 0).mbobs is not None
    no_weight = _tile(tmp_path / "noweight.fits", with_weight=False)
    with pytest.raises(InputFileError) as err:
        MedsImageIO([str(no_weight)], _conf(region="weight"))
    _assert_one_line(err, no_weight, "no 'weight_cutouts' HDU, which every fit needs")


def _ngmixit(tmp_path, *meds, timeout=120):
    conf = tmp_path / "fit.yaml"
    conf.write_text("fitter_type: max\nmodels: [exp]\n")
    out = tmp_path / "out.fits"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli.ngmixit", str(conf), str(out),
                           *map(str, meds), "--seed", "1"], capture_output=True, text=True,
                          env=env, timeout=timeout, check=False)
    return proc, out, time.monotonic() - t0


def test_imageio_refuses_image_flags2check_without_image_flags(good, tmp_path):
    path = tmp_path / "noflags.fits"
    shutil.copy(good, path)
    with fitsio.FITS(str(path), "rw") as f:
        colnum = f["image_info"].get_colnames().index("image_flags") + 1
        f["image_info"].write_key(f"TTYPE{colnum}", "other_flags")
    with pytest.raises(InputFileError) as err:
        MedsImageIO([str(path)], _conf(image_flags2check=1))
    _assert_one_line(err, path, "image_info has no 'image_flags' column, which "
                                "image_flags2check needs")
    with MedsImageIO([str(path)], _conf(image_flags2check=0)) as io:  # not needed
        assert io.get_object(0, 0).mbobs is not None


def test_ngmixit_refuses_a_fifo_fast(tmp_path):
    fifo = tmp_path / "meds.fits"
    os.mkfifo(fifo)
    proc, out, seconds = _ngmixit(tmp_path, fifo)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"error: {fifo}: not a regular file (FIFO, device or socket)"], proc.stderr
    assert seconds < 60 and not out.exists()


@pytest.mark.parametrize("damage", ["psf_hdu_lost", "no_psf_at_all"])
def test_ngmixit_stops_before_fitting_without_psf_stamps(good, tmp_path, damage):
    """Was: rc 0 and every object flagged. Now: exit 2, one line, no output."""
    path = tmp_path / f"{damage}.fits"
    if damage == "psf_hdu_lost":
        ends = dict(_hdu_ends(good))
        path.write_bytes(_without_nextend(good.read_bytes())[:ends["bmask_cutouts"]])
        text = "has PSF columns (psf_start_row) but the file has no 'psf' HDU"
    else:
        _tile(path, with_psf=False)
        text = "no PSF stamps: the file has no 'psf' HDU, which imageio.psf_source 'meds' needs"
    proc, out, _ = _ngmixit(tmp_path, path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: ") and text in lines[0], \
        proc.stderr
    assert not out.exists()


def test_psf_hdu_without_layout_columns_is_refused_by_ngmixit_io(good, tmp_path):
    """The converse of lost PSF stamps: a 'psf' HDU that object_data does not index."""
    from numpy.lib import recfunctions

    path = tmp_path / "psf-unindexed.fits"
    with fitsio.FITS(str(good)) as src, fitsio.FITS(str(path), "rw", clobber=True) as dst:
        for hdu in list(src)[1:]:
            data = hdu.read()
            if hdu.get_extname() == "object_data":
                data = recfunctions.drop_fields(data, ["psf_start_row"], usemask=False)
            dst.write(data, extname=hdu.get_extname())
    with MEDS(path) as m:  # opens (nothing points past an HDU) but serves no PSF
        assert not m.has_psf()
        with pytest.raises(ValueError, match="no psf_start_row or PSF size columns"):
            m.get_psf(0, 0)
    with pytest.raises(InputFileError) as err:
        MedsImageIO([str(path)], _conf())
    _assert_one_line(err, path, "no PSF stamps: 'object_data' has no psf_start_row")
