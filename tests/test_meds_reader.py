"""MEDS reader on files built with plain fitsio (independent of the writer)."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap

import fitsio
import numpy as np
import pytest

from pipeline.errors import InputFileError
from pipeline.meds import MEDS

NMAX = 3


def _handmade(path, compress=None, metadata=True, number=False, psf_variant="box",
              bmask_offset=None):
    """Objects with 0..3 cutouts; cutout (i, k) pixel (r, c) = 1e4*i + 100*k + r + c/100."""
    box = np.array([4, 6, 4, 8])
    ncut = np.array([2, 3, 0, 1])
    dtype = [("id", "i8"), ("box_size", "i4"), ("ra", "f8"), ("dec", "f8"), ("ncutout", "i4"),
             ("file_id", "i4", NMAX), ("start_row", "i8", NMAX), ("cutout_row", "f8", NMAX),
             ("cutout_col", "f8", NMAX), ("dudrow", "f8", NMAX), ("dudcol", "f8", NMAX),
             ("dvdrow", "f8", NMAX), ("dvdcol", "f8", NMAX), ("psf_start_row", "i8", NMAX),
             ("psf_cutout_row", "f8", NMAX), ("psf_cutout_col", "f8", NMAX)]
    if number:
        dtype.append(("number", "i4"))
    if psf_variant == "box":
        dtype.append(("psf_box_size", "i4"))
    else:
        dtype += [("psf_row_size", "i4", NMAX), ("psf_col_size", "i4", NMAX)]
    obj = np.zeros(4, dtype=dtype)
    obj["id"] = [10, 11, 12, 13]
    obj["box_size"], obj["ncutout"] = box, ncut
    if number:
        obj["number"] = [5, 6, 7, 8]
    pixels, segs, psfs = [], [], []
    start, pstart = 0, 0
    for i in range(4):
        obj["start_row"][i] = obj["file_id"][i] = obj["psf_start_row"][i] = -9999
        for k in range(ncut[i]):
            rr, cc = np.mgrid[0:box[i], 0:box[i]]
            pixels.append((1e4 * i + 100 * k + rr + cc / 100.0).ravel())
            segs.append(np.full(box[i] ** 2, i + 1))
            obj["start_row"][i, k] = start
            obj["file_id"][i, k] = k
            obj["cutout_row"][i, k] = obj["cutout_col"][i, k] = box[i] / 2 - 0.5 + 0.01 * k
            obj["dudrow"][i, k], obj["dudcol"][i, k] = 0.01 * k, 0.263
            obj["dvdrow"][i, k], obj["dvdcol"][i, k] = 0.27, -0.02 * k
            prow, pcol = (5, 5) if psf_variant == "box" else (5 + 2 * k, 3)
            psfs.append(np.full(prow * pcol, 10.0 * i + k))
            obj["psf_start_row"][i, k] = pstart
            if psf_variant != "box":
                obj["psf_row_size"][i, k], obj["psf_col_size"][i, k] = prow, pcol
            start += box[i] ** 2
            pstart += prow * pcol
    if psf_variant == "box":
        obj["psf_box_size"] = 5
    info = np.zeros(3, dtype=[("image_path", "S20"), ("image_ext", "S3"), ("image_id", "S8"),
                              ("magzp", "f4")])
    info["image_path"] = ["coadd.fits", "se1.fits  ", "se2.fits"]
    info["image_ext"] = "sci"
    info["image_id"] = ["c", "e1", "e2"]
    with fitsio.FITS(str(path), "rw", clobber=True) as f:
        f.write(obj, extname="object_data")
        f.write(info, extname="image_info")
        if metadata:
            f.write(np.array([(30.0, "r")], dtype=[("magzp_ref", "f8"), ("band", "S1")]),
                    extname="metadata")
        # tile compression: ints with the chosen algorithm; floats lossless (cfitsio
        # allows only gzip for that), so the pixels can be compared exactly
        fkw = {} if compress is None else {"compress": "gzip", "qlevel": None}
        ikw = {} if compress is None else {"compress": compress}
        f.write(np.concatenate(pixels).astype("f4"), extname="image_cutouts", **fkw)
        f.write(np.concatenate(segs).astype("i2"), extname="seg_cutouts", **ikw)
        bmask = np.concatenate(segs).astype("i2") * 0 + 3
        if bmask_offset is not None:  # unsigned: cfitsio stores it scaled (BZERO)
            bmask = bmask.astype("u2") + bmask_offset
        f.write(bmask, extname="bmask_cutouts", **ikw)
        f.write(np.concatenate(psfs).astype("f8"), extname="psf")
    return obj


def _truth(i, k, box):
    rr, cc = np.mgrid[0:box, 0:box]
    return (1e4 * i + 100 * k + rr + cc / 100.0).astype("f4")


@pytest.mark.parametrize("compress", [None, "gzip", "rice"])
def test_cutouts_mosaic_and_lists(tmp_path, compress):
    path = tmp_path / "hand.fits"
    obj = _handmade(path, compress=compress)
    with fitsio.FITS(str(path)) as f:
        assert f["seg_cutouts"].is_compressed() == (compress is not None)
    with MEDS(path) as m:
        assert m.size == 4 and len(m) == 4
        assert m.cutout_types == ("image", "seg", "bmask")
        assert m.has_cutout_type("seg") and not m.has_cutout_type("weight")
        for i in range(4):
            box = obj["box_size"][i]
            for k in range(obj["ncutout"][i]):
                np.testing.assert_array_equal(m.get_cutout(i, k), _truth(i, k, box))
                seg = m.get_cutout(i, k, type="seg")
                assert seg.dtype.kind == "i" and np.all(seg == i + 1)
            if obj["ncutout"][i] == 0:
                continue
            mosaic = m.get_mosaic(i)
            assert mosaic.shape == (obj["ncutout"][i] * box, box)
            lst = m.get_cutout_list(i)
            assert len(lst) == obj["ncutout"][i]
            for k, stamp in enumerate(lst):
                np.testing.assert_array_equal(stamp, _truth(i, k, box))
                np.testing.assert_array_equal(mosaic[k * box:(k + 1) * box], stamp)
            picks = list(range(obj["ncutout"][i]))[::-1]
            stack = m.get_cutout_stack(i, picks)
            assert stack.shape == (len(picks), box, box)
            for stamp, k in zip(stack, picks):
                np.testing.assert_array_equal(stamp, _truth(i, k, box))
        # no cutouts: the reference reader's ValueError (get_cutout_stack takes empty lists)
        for call in (m.get_mosaic, m.get_cutout_list):
            with pytest.raises(ValueError, match="object 2 has no cutouts"):
                call(2)
        assert m.get_cutout_stack(2, []).shape == (0, 4, 4) and m.get_psf_list(2) == []


def test_tables_number_and_strings(tmp_path):
    path = tmp_path / "hand.fits"
    obj = _handmade(path)
    with MEDS(path) as m:
        np.testing.assert_array_equal(m["number"], [1, 2, 3, 4])  # absent -> index+1
        np.testing.assert_array_equal(m["id"], obj["id"])
        assert "number" in m.get_cat().dtype.names
        assert m.get_image_path(1) == "se1.fits"
        assert m.get_image_info()["image_id"][2] == "e2"
        meta = m.get_meta()
        assert meta["magzp_ref"][0] == 30.0 and meta["band"][0] == "r"
        assert m.nmax == NMAX
        # picklable (for dask/multiprocessing workers): reopens from the path
        m2 = pickle.loads(pickle.dumps(m))
        np.testing.assert_array_equal(m2.get_cutout(1, 2), m.get_cutout(1, 2))
        m2.close()
    _handmade(path, number=True, metadata=False)
    with MEDS(path) as m:
        np.testing.assert_array_equal(m["number"], [5, 6, 7, 8])
        assert m.get_meta() is None


@pytest.mark.parametrize("variant", ["box", "rowcol"])
def test_psf_and_jacobian(tmp_path, variant):
    path = tmp_path / "hand.fits"
    obj = _handmade(path, psf_variant=variant)
    with MEDS(path) as m:
        for i in range(4):
            psfs = m.get_psf_list(i)
            assert len(psfs) == obj["ncutout"][i]
            for k, psf in enumerate(psfs):
                shape = (5, 5) if variant == "box" else (5 + 2 * k, 3)
                assert psf.shape == shape and np.all(psf == 10.0 * i + k)
            if obj["ncutout"][i] == 0:
                with pytest.raises(ValueError, match="no cutouts"):
                    m.get_jacobian_list(i)
                continue
            for k, jac in enumerate(m.get_jacobian_list(i)):
                assert jac == {"row0": obj["cutout_row"][i, k], "col0": obj["cutout_col"][i, k],
                               "dudrow": 0.01 * k, "dudcol": 0.263,
                               "dvdrow": 0.27, "dvdcol": -0.02 * k}
                np.testing.assert_array_equal(m.get_jacobian_matrix(i, k),
                                              [[0.01 * k, 0.263], [0.27, -0.02 * k]])
            picks = list(range(obj["ncutout"][i]))[::-1]
            for psf, k in zip(m.get_psf_stack(i, picks), picks):
                np.testing.assert_array_equal(psf, m.get_psf(i, k))
            table = m.get_jacobian_array(i, picks)
            assert table.shape == (len(picks), 6)
            for row, k in zip(table, picks):
                jac = m.get_jacobian(i, k)
                assert list(row) == [jac[f] for f in ("row0", "col0", "dudrow", "dudcol",
                                                      "dvdrow", "dvdcol")]


def test_direct_reads_match_cfitsio_for_every_layout(tmp_path):
    """Plain HDUs are read with pread at their data offset; scaled HDUs (BZERO) and
    gzip-wrapped files go through cfitsio. All give the same stamps."""
    import gzip
    import shutil

    plain = tmp_path / "hand.fits"
    obj = _handmade(plain)
    # the same file with an unsigned (BZERO-scaled) bmask HDU
    scaled = tmp_path / "scaled.fits"
    _handmade(scaled, bmask_offset=40000)
    with fitsio.FITS(str(scaled)) as f:
        assert f["bmask_cutouts"].read_header()["BZERO"] == 32768
    wrapped = tmp_path / "hand.fits.gz"
    with open(plain, "rb") as src, gzip.open(wrapped, "wb") as dst:
        shutil.copyfileobj(src, dst)
    with MEDS(plain) as ref, MEDS(scaled) as sc, MEDS(wrapped) as gz:
        for i in range(4):
            cuts = range(obj["ncutout"][i])
            for kind in ("image", "seg", "bmask"):
                want = np.stack([fitsio.read(str(plain), ext=f"{kind}_cutouts")[
                    obj["start_row"][i, k]:obj["start_row"][i, k] + obj["box_size"][i] ** 2]
                    for k in cuts]) if len(cuts) else None
                for m in (ref, sc, gz):
                    got = m.get_cutout_stack(i, cuts, kind)
                    if want is None:
                        assert got.shape[0] == 0
                        continue
                    expect = want.reshape(got.shape)
                    if m is sc and kind == "bmask":
                        expect = expect.astype("i8") + 40000
                    np.testing.assert_array_equal(got, expect)
            for m in (sc, gz):
                for a, b in zip(m.get_psf_stack(i, cuts), ref.get_psf_stack(i, cuts)):
                    np.testing.assert_array_equal(a, b)


def test_index_and_type_errors_are_one_line(tmp_path):
    path = tmp_path / "hand.fits"
    _handmade(path)
    with MEDS(path) as m:
        cases = [(lambda: m.get_cutout(4, 0), "object index 4 out of range"),
                 (lambda: m.get_cutout(-1, 0), "object index -1 out of range"),
                 (lambda: m.get_cutout(0, 2), "cutout index 2 out of range for object 0"),
                 (lambda: m.get_cutout(2, 0), "ncutout=0"),
                 (lambda: m.get_cutout(0, 0, type="weight"), "no 'weight_cutouts' HDU"),
                 (lambda: m.get_cweight_cutout(0, 0), "no 'weight_cutouts' HDU"),
                 (lambda: m["nonesuch"], "no 'nonesuch' column"),
                 (lambda: m.get_image_path(3), "file_id 3 out of range")]
        for call, text in cases:
            with pytest.raises(InputFileError) as err:
                call()
            msg = str(err.value)
            assert text in msg and msg.startswith(str(path)) and "\n" not in msg


def _write_big(path, nobj, ncut, box):
    """A MEDS file written with plain fitsio in chunks; stamp k holds the value k."""
    npix = box * box
    obj = np.zeros(nobj, dtype=[("id", "i8"), ("box_size", "i8"), ("ncutout", "i8"),
                                ("start_row", "i8", ncut)])
    obj["box_size"], obj["ncutout"] = box, ncut
    obj["start_row"] = np.arange(nobj * ncut).reshape(nobj, ncut) * npix
    with fitsio.FITS(str(path), "rw", clobber=True) as f:
        f.write(obj, extname="object_data")
        f.write(np.zeros(1, dtype=[("image_path", "S4")]), extname="image_info")
        f.create_image_hdu(dims=[nobj * ncut * npix], dtype="f4", extname="image_cutouts")
        hdu = f["image_cutouts"]
        chunk = 200
        for s in range(0, nobj * ncut, chunk):
            vals = np.arange(s, min(s + chunk, nobj * ncut), dtype="f4")
            hdu.write(np.repeat(vals, npix), start=s * npix)


def test_reading_every_cutout_uses_bounded_memory(tmp_path):
    """Read all stamps of a 350 MB file: peak memory stays a small fraction of the file.

    The reading runs in a fresh subprocess so ru_maxrss (peak RSS) measures
    only the reader on top of the imports; tracemalloc sees every numpy buffer.
    """
    path = tmp_path / "big.fits"
    nobj, ncut, box = 2000, 5, 96
    _write_big(path, nobj, ncut, box)
    file_mb = os.path.getsize(path) / 2**20
    assert file_mb >= 300
    script = textwrap.dedent(f"""
        import json, resource, sys, tracemalloc
        import numpy as np
        from pipeline.meds import MEDS
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        tracemalloc.start()
        bad = 0
        with MEDS({str(path)!r}) as m:
            for i in range(m.size):
                for k in range({ncut}):
                    bad += int(np.any(m.get_cutout(i, k) != i * {ncut} + k))
                bad += int(m.get_mosaic(i).shape != ({ncut * box}, {box}))
        peak = tracemalloc.get_traced_memory()[1]
        rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        json.dump({{"bad": bad, "traced_peak": peak, "rss0_kb": rss0,
                    "rss_growth_kb": rss1 - rss0}}, sys.stdout)
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.path.dirname(os.path.dirname(os.path.abspath(__file__)))]
        + os.environ.get("PYTHONPATH", "").split(os.pathsep)))
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    print("memory:", res, f"file {file_mb:.0f} MB")
    assert res["bad"] == 0
    # a mosaic is 180 KB; allow a few MB of python/fitsio overhead, << the 350 MB file
    assert res["traced_peak"] < 5 * 2**20, res
    assert res["rss_growth_kb"] < 30 * 1024, res
