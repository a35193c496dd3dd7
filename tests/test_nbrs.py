"""Neighbour lists and FoF groups (pipeline.nbrs, ngmixer-meds-make-nbrs-data)."""

from __future__ import annotations

import os

import fitsio
import numpy as np
import pytest

from pipeline import nbrs as nb
from pipeline.cli import nbrs as cli
from pipeline.cli.common import run_cli
from pipeline.errors import ConfigError, InputFileError

PIXEL_SCALE = 0.263


def pairs_set(pairs):
    return set(zip(pairs[0].tolist(), pairs[1].tolist()))


def box_conf(**kw):
    conf = dict(method="box", buff_type="min", buff_frac=0.25, maxsize_to_replace=None,
                new_maxsize=None, check_seg=False)
    conf.update(kw)
    return nb.check_nbrs_config(conf)


# ---------------------------------------------------------------------------
# hand-built MEDS files (coadd cutout only), written with plain fitsio


def write_meds(path, objects, segmap, with_seg=True, nmax=2, extra_cols=()):
    """objects: dicts with number, row0, col0, box, ncutout (0 or 1), [extra].

    Coadd seg stamps are cut from ``segmap`` (0 off the image). ra/dec follow a
    simple tangent-plane WCS at 0.263"/pixel.
    """
    n = len(objects)
    dtype = [("id", "i8"), ("number", "i8"), ("box_size", "i8"), ("ra", "f8"), ("dec", "f8"),
             ("ncutout", "i8"), ("file_id", "i8", nmax), ("start_row", "i8", nmax),
             ("orig_row", "f8", nmax), ("orig_col", "f8", nmax),
             ("orig_start_row", "i8", nmax), ("orig_start_col", "i8", nmax),
             ("cutout_row", "f8", nmax), ("cutout_col", "f8", nmax),
             ("dudrow", "f8", nmax), ("dudcol", "f8", nmax), ("dvdrow", "f8", nmax),
             ("dvdcol", "f8", nmax)] + [(c, "f8") for c in extra_cols]
    cat = np.zeros(n, dtype=dtype)
    for name in dtype[6:18]:
        cat[name[0]] = -9999
    seg_parts, start = [], 0
    for k, o in enumerate(objects):
        box = o["box"]
        cat["id"][k] = 1000 + o["number"]
        cat["number"][k] = o["number"]
        cat["box_size"][k] = box
        cat["ncutout"][k] = o["ncutout"]
        crow, ccol = o["row0"] + box / 2 - 0.5, o["col0"] + box / 2 - 0.5
        cat["dec"][k] = -30.0 + crow * PIXEL_SCALE / 3600
        cat["ra"][k] = 50.0 - ccol * PIXEL_SCALE / 3600 / np.cos(np.radians(30.0))
        for c in extra_cols:
            cat[c][k] = o[c]
        if o["ncutout"] == 0:
            continue
        cat["file_id"][k, 0] = 0
        cat["start_row"][k, 0] = start
        cat["orig_row"][k, 0], cat["orig_col"][k, 0] = crow, ccol
        cat["orig_start_row"][k, 0], cat["orig_start_col"][k, 0] = o["row0"], o["col0"]
        cat["cutout_row"][k, 0] = cat["cutout_col"][k, 0] = box / 2 - 0.5
        cat["dudrow"][k, 0], cat["dvdcol"][k, 0] = 0.0, 0.0
        cat["dudcol"][k, 0], cat["dvdrow"][k, 0] = -PIXEL_SCALE, PIXEL_SCALE
        stamp = np.zeros((box, box), "i4")
        r0, c0 = o["row0"], o["col0"]
        rs, cs = max(r0, 0), max(c0, 0)
        re, ce = min(r0 + box, segmap.shape[0]), min(c0 + box, segmap.shape[1])
        if re > rs and ce > cs:
            stamp[rs - r0:re - r0, cs - c0:ce - c0] = segmap[rs:re, cs:ce]
        seg_parts.append(stamp.ravel())
        start += box * box
    seg = np.concatenate(seg_parts) if seg_parts else np.zeros(0, "i4")
    info = np.zeros(1, dtype=[("image_path", "S20"), ("image_id", "i8"), ("image_flags", "i8"),
                              ("magzp", "f4"), ("scale", "f4"), ("position_offset", "f8")])
    info["image_path"] = "coadd.fits"
    meta = np.zeros(1, dtype=[("magzp_ref", "f8")])
    meta["magzp_ref"] = 30.0
    with fitsio.FITS(path, "rw", clobber=True) as f:
        f.write(cat, extname="object_data")
        f.write(info, extname="image_info")
        f.write(meta, extname="metadata")
        f.write(np.zeros(seg.size, "f4"), extname="image_cutouts")
        if with_seg:
            f.write(seg, extname="seg_cutouts")
    return path


def paint(segmap, number, row0, col0, box):
    """Seg pixels of an object: the inner half of its stamp (clipped to the map)."""
    q = box // 4
    segmap[max(row0 + q, 0):row0 + box - q, max(col0 + q, 0):col0 + box - q] = number


def tile_objects():
    """Five objects on a 400x400 coadd.

    1-2-3 form a chain of 32-pixel stamps (1-2 and 2-3 overlap by 16 pixels, 1-3
    touch only at a corner); 4 is far away but its seg pixels reach into 5's
    stamp (5's stamp does not overlap 4's); 6 has no coadd cutout and sits on top
    of 1 (must be ignored).
    """
    objs = [dict(number=1, row0=10, col0=10, box=32, ncutout=1),
            dict(number=2, row0=26, col0=26, box=32, ncutout=1),
            dict(number=3, row0=42, col0=42, box=32, ncutout=1),
            dict(number=4, row0=200, col0=200, box=64, ncutout=1),
            dict(number=5, row0=270, col0=200, box=32, ncutout=1),
            dict(number=6, row0=12, col0=12, box=32, ncutout=0)]
    segmap = np.zeros((400, 400), "i4")
    for o in objs[:5]:
        paint(segmap, o["number"], o["row0"], o["col0"], o["box"])
    segmap[262:275, 210:220] = 4  # object 4's isophote extends into 5's stamp
    segmap[20:22, 20:22] = 6      # seg id of the cutout-less object inside 1's stamp
    return objs, segmap


# ---------------------------------------------------------------------------
# box method


def test_overlapping_stamps_are_neighbours_distant_ones_are_not():
    row = np.array([0, 16, 500])
    col = np.array([0, 16, 500])
    size = np.array([32, 32, 32])
    assert pairs_set(nb.box_pairs(row, col, size)) == {(0, 1)}


@pytest.mark.parametrize("buff_type,buff_frac,need", [
    ("min", 0.25, 8), ("max", 0.25, 16), ("tot", 0.25, 24), ("min", 0.5, 16), ("min", 0.0, 0)])
def test_buff_type_and_frac_at_the_boundary(buff_type, buff_frac, need):
    # box A: 32 px at (0, 0); box B: 64 px shifted down so the row overlap is
    # 32 - shift; columns overlap fully. Neighbours iff overlap >= buff.
    for overlap in (need, need - 1):
        shift = 32 - overlap
        pairs = nb.box_pairs(np.array([0, shift]), np.array([0, 0]), np.array([32, 64]),
                             buff_type, buff_frac)
        assert (pairs_set(pairs) == {(0, 1)}) == (overlap >= need), (overlap, need)
    # the same overlap in rows but none in columns is not enough
    pairs = nb.box_pairs(np.array([0, 32 - need]), np.array([0, 40]), np.array([32, 64]),
                         buff_type, buff_frac)
    assert pairs[0].size == 0


def test_maxsize_replacement_grows_capped_stamps_centred():
    # two 256 stamps 250 px apart overlap by only 6 < 64; grown to 384 they
    # overlap by 134 rows; a 128 stamp is untouched.
    row, col, size = nb.replace_maxsize(np.array([0, 250, 0]), np.array([0, 0, 1000]),
                                        np.array([256, 256, 128]), 256, 384)
    assert size.tolist() == [384, 384, 128]
    assert row.tolist() == [-64, 186, 0] and col.tolist() == [-64, -64, 1000]
    before = nb.box_pairs(np.array([0, 250]), np.array([0, 0]), np.array([256, 256]))
    after = nb.box_pairs(row[:2], col[:2], size[:2])
    assert before[0].size == 0 and pairs_set(after) == {(0, 1)}


def brute_box(row, col, size, buff_type, buff_frac, valid):
    end_r, end_c = row + size, col + size
    ov_r = np.minimum(end_r[None, :] - row[:, None], end_r[:, None] - row[None, :])
    ov_c = np.minimum(end_c[None, :] - col[:, None], end_c[:, None] - col[None, :])
    buff = nb.box_buffer(size[:, None], size[None, :], buff_type, buff_frac)
    ok = (ov_r >= buff) & (ov_c >= buff) & valid[:, None] & valid[None, :]
    i, j = np.nonzero(np.triu(ok, 1))
    return set(zip(i.tolist(), j.tolist()))


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("buff_type", ["min", "max", "tot"])
def test_box_method_matches_brute_force(seed, buff_type):
    rng = np.random.default_rng(seed)
    n = 400
    size = rng.choice([32, 48, 64, 128, 256], n, p=[0.5, 0.2, 0.15, 0.1, 0.05])
    row = rng.integers(-50, 1500, n)
    col = rng.integers(-50, 1500, n)
    valid = rng.random(n) > 0.1
    got = pairs_set(nb.box_pairs(row, col, size, buff_type, 0.25, valid))
    want = brute_box(row, col, size, buff_type, 0.25, valid)
    assert len(want) > 50 and got == want


# ---------------------------------------------------------------------------
# radius method


def haversine_arcsec(ra1, dec1, ra2, dec2):
    ra1, dec1, ra2, dec2 = map(np.radians, (ra1, dec1, ra2, dec2))
    h = np.sin((dec2 - dec1) / 2) ** 2 + np.cos(dec1) * np.cos(dec2) * np.sin((ra2 - ra1) / 2) ** 2
    return np.degrees(2 * np.arcsin(np.sqrt(np.clip(h, 0, 1)))) * 3600


@pytest.mark.parametrize("seed,ra0,dec0", [(1, 0.0, -30.0), (2, 150.0, 10.0), (3, 359.99, 0.0),
                                           (4, 0.0, 89.99), (5, 80.0, -60.0)])
def test_radius_method_matches_brute_force(seed, ra0, dec0):
    # a patch ~0.03 deg across (straddling RA 0 or the pole in two cases) with
    # radii 0.2-12 arcsec, so that a few hundred objects have many pairs
    rng = np.random.default_rng(seed)
    n = 300
    dec = np.clip(dec0 + rng.uniform(-0.015, 0.015, n), -90, 90)
    ra = (ra0 + rng.uniform(-0.015, 0.015, n) / max(np.cos(np.radians(dec0)), 0.01)) % 360
    radius = np.exp(rng.uniform(np.log(0.2), np.log(12.0), n))
    padding = 1.5
    valid = rng.random(n) > 0.1
    got = pairs_set(nb.radius_pairs(ra, dec, radius, padding, valid))
    sep = haversine_arcsec(ra[:, None], dec[:, None], ra[None, :], dec[None, :])
    ok = (sep < radius[:, None] + radius[None, :] + padding) & valid[:, None] & valid[None, :]
    i, j = np.nonzero(np.triu(ok, 1))
    want = set(zip(i.tolist(), j.tolist()))
    assert len(want) > 100 and got == want


def test_radius_from_catalog_column_and_box_size():
    objs = [dict(number=1, row0=0, col0=0, box=32, ncutout=1, iso_radius=4.0),
            dict(number=2, row0=0, col0=40, box=32, ncutout=1, iso_radius=4.0),
            dict(number=3, row0=0, col0=60, box=32, ncutout=1, iso_radius=4.0)]
    cat = np.zeros(3, dtype=[("number", "i8"), ("box_size", "i8"), ("ncutout", "i8"),
                             ("orig_start_row", "i8", 2), ("orig_start_col", "i8", 2),
                             ("ra", "f8"), ("dec", "f8"), ("iso_radius", "f8")])
    for k, o in enumerate(objs):
        cat[k] = (o["number"], o["box"], 1, (o["row0"], -9999), (o["col0"], -9999),
                  50.0 - (o["col0"] + 16) * PIXEL_SCALE / 3600, 0.0, o["iso_radius"])
    # separations: 1-2 40 px, 2-3 20 px, 1-3 60 px (10.52", 5.26", 15.78")
    conf = nb.check_nbrs_config(dict(method="radius", check_seg=False, radius_column="iso_radius",
                                     pixel_scale=PIXEL_SCALE))
    # r = 4 px = 1.052": only pairs closer than 2.104" + padding
    assert pairs_set(nb.pairs_from_catalog(cat, conf)) == set()
    conf["padding"] = 4.0  # 6.1": links 2-3 only
    assert pairs_set(nb.pairs_from_catalog(cat, conf)) == {(1, 2)}
    conf["radius_mult"], conf["padding"] = 3.0, 0.0   # r = 3.156": 2r = 6.3"
    assert pairs_set(nb.pairs_from_catalog(cat, conf)) == {(1, 2)}
    conf["max_radius"] = 2.0   # capped: 4" < 5.26"
    assert pairs_set(nb.pairs_from_catalog(cat, conf)) == set()
    # box_size/2 = 16 px = 4.21": 2r = 8.4" links 2-3 only; min_radius 6" links 1-2 too
    conf = nb.check_nbrs_config(dict(method="radius", check_seg=False, pixel_scale=PIXEL_SCALE))
    assert pairs_set(nb.pairs_from_catalog(cat, conf)) == {(1, 2)}
    conf["min_radius"] = 6.0
    assert pairs_set(nb.pairs_from_catalog(cat, conf)) == {(0, 1), (1, 2)}  # not 1-3: 12" < 15.8"


# ---------------------------------------------------------------------------
# tables and FoF


def test_nbrs_table_is_symmetric_with_minus_one_for_loners():
    numbers = np.array([7, 3, 9, 5])
    table = nb.make_nbrs_table(numbers, np.array([0, 0]), np.array([1, 2]))
    rows = list(zip(table["number"].tolist(), table["nbr_number"].tolist()))
    assert rows == [(3, 7), (5, -1), (7, 3), (7, 9), (9, 7)]
    assert table.dtype == nb.NBRS_DTYPE


def test_chain_links_transitively_into_one_fof():
    row = np.array([10, 26, 42, 300])
    col = np.array([10, 26, 42, 300])
    size = np.array([32, 32, 32, 32])
    pairs = nb.box_pairs(row, col, size)
    assert pairs_set(pairs) == {(0, 1), (1, 2)}   # 0 and 2 are not neighbours ...
    fofs = nb.make_fofs_table(np.array([1, 2, 3, 4]), *pairs)
    assert fofs["fofid"].tolist() == [0, 0, 0, 1]   # ... but share a group


def test_fof_renumbering_follows_number_order():
    numbers = np.array([50, 3, 10, 7, 20, 1])
    # groups: {50, 7}, {3, 20}, {10}, {1}
    fofs = nb.make_fofs_table(numbers, np.array([0, 1]), np.array([3, 4]))
    assert fofs["number"].tolist() == [1, 3, 7, 10, 20, 50]
    assert fofs["fofid"].tolist() == [0, 1, 2, 3, 1, 2]
    # rebuilt from the neighbour table, the same groups come out
    table = nb.make_nbrs_table(numbers, np.array([0, 1]), np.array([3, 4]))
    np.testing.assert_array_equal(nb.fofs_from_nbrs(table), fofs)


def test_fof_group_bounds_and_members():
    fofs = np.zeros(6, dtype=nb.FOFS_DTYPE)
    fofs["number"] = [1, 3, 7, 10, 20, 50]
    fofs["fofid"] = [0, 1, 2, 3, 1, 2]
    order, start, end = nb.fof_group_bounds(fofs)
    members = [fofs["number"][order[s:e]].tolist() for s, e in zip(start, end)]
    assert members == [[1], [3, 20], [7, 50], [10]]
    rows = nb.fof_members(fofs, 1, 2)
    assert fofs["number"][rows].tolist() == [3, 20, 7, 50]
    # object indices in a MEDS file whose order differs from the FoF table
    meds_numbers = np.array([50, 20, 10, 7, 3, 1])
    assert nb.fof_members(fofs, 1, 2, numbers=meds_numbers).tolist() == [4, 1, 3, 0]
    with pytest.raises(ValueError):
        nb.fof_members(fofs, 2, 4)
    bad = fofs.copy()
    bad["fofid"][0] = 5
    with pytest.raises(ValueError, match="contiguous"):
        nb.fof_group_bounds(bad)


def test_write_read_roundtrip_and_bad_files(tmp_path):
    numbers = np.array([1, 2, 3])
    nbrs = nb.make_nbrs_table(numbers, np.array([0]), np.array([2]))
    fofs = nb.make_fofs_table(numbers, np.array([0]), np.array([2]))
    nb.write_nbrs(tmp_path / "n.fits", nbrs)
    nb.write_fofs(tmp_path / "f.fits", fofs)
    np.testing.assert_array_equal(nb.read_nbrs(tmp_path / "n.fits"), nbrs)
    np.testing.assert_array_equal(nb.read_fofs(tmp_path / "f.fits"), fofs)
    with fitsio.FITS(tmp_path / "f.fits") as f:
        assert f[1].get_extname() == "fofs"
    assert sorted(os.listdir(tmp_path)) == ["f.fits", "n.fits"]  # no temporaries left

    (tmp_path / "junk.fits").write_text("not a fits file\n")
    fitsio.write(tmp_path / "nocol.fits", np.zeros(2, dtype=[("fofid", "i8")]), extname="fofs")
    gap = fofs.copy()
    gap["fofid"] = [0, 2, 0]
    fitsio.write(tmp_path / "gap.fits", gap, extname="fofs")
    fitsio.write(tmp_path / "wrongext.fits", fofs, extname="other")
    cases = {"missing.fits": "not found", "junk.fits": "not a readable FITS file",
             "nocol.fits": r"lacks column\(s\) number", "gap.fits": "not contiguous",
             "wrongext.fits": "no 'fofs' extension"}
    for name, problem in cases.items():
        with pytest.raises(InputFileError, match=problem) as err:
            nb.read_fofs(tmp_path / name)
        assert "\n" not in str(err.value) and name in str(err.value)
    with pytest.raises(InputFileError, match="no 'nbrs' extension"):
        nb.read_nbrs(tmp_path / "f.fits")


def test_config_validation(tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'buff_frac'"):
        nb.check_nbrs_config({"buf_frac": 0.2})
    with pytest.raises(ConfigError, match="together"):
        nb.check_nbrs_config({"maxsize_to_replace": 256})
    with pytest.raises(ConfigError, match="allowed"):
        nb.check_nbrs_config({"buff_type": "mean"})
    with pytest.raises(ConfigError, match="buff_frac"):
        nb.check_nbrs_config({"buff_frac": -0.1})
    conf = nb.load_nbrs_config(os.path.join(os.path.dirname(__file__), "..", "configs",
                                            "nbrs.yaml"))
    assert conf["method"] == "radius" and conf["radius_mult"] == 0.5
    assert conf["max_group_size"] == 25 and conf["check_seg"] is False
    with pytest.raises(ConfigError, match="'max_group_size' must be >= 1"):
        nb.check_nbrs_config({"max_group_size": 0})
    # ngmixer's defaults stay the schema's: a config without the new keys groups as ngmixer
    assert nb.check_nbrs_config({"nbrs": {"method": "box"}})["max_group_size"] is None


# ---------------------------------------------------------------------------
# MEDS layer and CLI


def test_check_seg_adds_neighbour_whose_seg_pixels_enter_the_stamp(tmp_path):
    objs, segmap = tile_objects()
    path = write_meds(str(tmp_path / "t-r-meds.fits"), objs, segmap)
    without = nb.pairs_from_meds([path], box_conf(check_seg=False))
    with_seg = nb.pairs_from_meds([path], box_conf(check_seg=True))
    # indices: 0..5 = numbers 1..6; 3 = object 4, 4 = object 5; 5 (no cutout) never linked
    assert pairs_set(without[3:]) == {(0, 1), (1, 2)}
    assert pairs_set(with_seg[3:]) == {(0, 1), (1, 2), (3, 4)}
    # a MEDS file without seg cutouts cannot honour check_seg
    noseg = write_meds(str(tmp_path / "noseg.fits"), objs, segmap, with_seg=False)
    with pytest.raises(InputFileError, match="no seg cutouts"):
        nb.pairs_from_meds([noseg], box_conf(check_seg=True))


def test_union_over_bands(tmp_path):
    objs, segmap = tile_objects()
    a = write_meds(str(tmp_path / "a.fits"), objs, segmap)
    # in the second band object 5's stamp is larger and overlaps 4's stamp
    objs_b = [dict(o) for o in objs]
    objs_b[4].update(row0=240, col0=200, box=64)
    b = write_meds(str(tmp_path / "b.fits"), objs_b, segmap)
    conf = box_conf(check_seg=False)
    assert pairs_set(nb.pairs_from_meds([a], conf)[3:]) == {(0, 1), (1, 2)}
    assert pairs_set(nb.pairs_from_meds([a, b], conf)[3:]) == {(0, 1), (1, 2), (3, 4)}


def write_config(path, text):
    path.write_text(text)
    return str(path)


def test_cli_end_to_end(tmp_path, capsys):
    objs, segmap = tile_objects()
    g = write_meds(str(tmp_path / "t-g-meds.fits"), objs, segmap)
    r = write_meds(str(tmp_path / "t-r-meds.fits"), objs, segmap)
    conf = write_config(tmp_path / "nbrs.yaml", "method: box\nbuff_type: min\nbuff_frac: 0.25\n"
                        "maxsize_to_replace: 256\nnew_maxsize: 384\ncheck_seg: true\n")
    nfile, ffile = tmp_path / "out" / "nbrs.fits", tmp_path / "out" / "fofs.fits"
    rc = run_cli(cli.main, [conf, g, r, "--nbrs-file", str(nfile), "--fof-file", str(ffile),
                            "--log-level", "WARNING"])
    assert rc == 0
    nbrs = nb.read_nbrs(nfile)
    rows = list(zip(nbrs["number"].tolist(), nbrs["nbr_number"].tolist()))
    assert rows == [(1, 2), (2, 1), (2, 3), (3, 2), (4, 5), (5, 4), (6, -1)]
    fofs = nb.read_fofs(ffile)
    assert fofs["number"].tolist() == [1, 2, 3, 4, 5, 6]
    assert fofs["fofid"].tolist() == [0, 0, 0, 1, 1, 2]
    out = capsys.readouterr().out.strip()
    assert out == ("6 objects, 3 neighbour pairs, 3 FoF groups, 2 with >=2 members (66.7%), "
                   "largest group 3")


def test_cli_plot(tmp_path):
    pytest.importorskip("matplotlib")
    objs, segmap = tile_objects()
    g = write_meds(str(tmp_path / "t-g-meds.fits"), objs, segmap)
    conf = write_config(tmp_path / "nbrs.yaml", "check_seg: false\n")
    png = tmp_path / "fofs.png"
    rc = run_cli(cli.main, [conf, g, "--nbrs-file", str(tmp_path / "n.fits"),
                            "--fof-file", str(tmp_path / "f.fits"), "--plot", str(png)])
    assert rc == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_bad_inputs_give_one_line_errors_and_no_output(tmp_path, capsys):
    objs, segmap = tile_objects()
    g = write_meds(str(tmp_path / "t-g-meds.fits"), objs, segmap)
    short = write_meds(str(tmp_path / "short.fits"), objs[:4], segmap)
    renum = write_meds(str(tmp_path / "renum.fits"), [dict(o, number=o["number"] + 10)
                                                      for o in objs], segmap)
    good = write_config(tmp_path / "good.yaml", "method: box\n")
    badkey = write_config(tmp_path / "bad.yaml", "method: box\nbuff_fract: 0.3\n")
    outs = ["--nbrs-file", str(tmp_path / "n.fits"), "--fof-file", str(tmp_path / "f.fits")]
    cases = [([good, g, str(tmp_path / "nope.fits")], "nope.fits: MEDS file not found"),
             ([good, g, short], "short.fits: has 4 objects but"),
             ([good, g, renum], "renum.fits: object ids differ from"),
             ([badkey, g], "bad.yaml: unknown key 'buff_fract' (did you mean 'buff_frac'?)"),
             ([str(tmp_path / "none.yaml"), g], "none.yaml: config file not found"),
             ([good, str(tmp_path / "good.yaml")], "good.yaml")]
    for args, message in cases:
        rc = run_cli(cli.main, args + outs + ["--log-level", "ERROR"])
        err = capsys.readouterr().err.strip()
        assert rc == 2, args
        assert message in err and len(err.splitlines()) == 1, err
        assert not (tmp_path / "n.fits").exists() and not (tmp_path / "f.fits").exists()
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_check_seg_on_galsim_tile_written_by_the_project_writer(tmp_path):
    """A bright, extended galaxy whose isophote reaches a small neighbour's stamp.

    Seg map by detection-like thresholding of the noiseless galsim image (each
    pixel to its dominant object). The two 32-pixel stamps are 50 pixels apart
    (no overlap), so only the seg check can link them; a third faint object far
    away stays alone. The radius method with box_size/2 does not link them either.
    """
    galsim = pytest.importorskip("galsim")
    from pipeline.meds import AffineWCS, SourceImage, write_meds as project_write_meds

    shape = (160, 220)
    wcs = AffineWCS(ra0=30.0, dec0=-10.0, row0=80.0, col0=110.0)
    objs = [(80.0, 60.0, galsim.Exponential(half_light_radius=3.0, flux=2e5)),
            (80.0, 110.0, galsim.Exponential(half_light_radius=0.5, flux=2e3)),
            (20.0, 200.0, galsim.Exponential(half_light_radius=0.5, flux=2e3))]
    stack = []
    for row, col, prof in objs:
        im = galsim.ImageF(shape[1], shape[0], scale=PIXEL_SCALE)
        offset = galsim.PositionD(col - (shape[1] - 1) / 2, row - (shape[0] - 1) / 2)
        prof.drawImage(im, offset=offset)
        stack.append(im.array)
    stack = np.array(stack)
    total = stack.sum(axis=0)
    segmap = np.where(total > 0.5, np.argmax(stack, axis=0) + 1, 0).astype("i4")
    assert np.any(segmap[:, 95:127] == 1)          # object 1's isophote enters 2's stamp
    ra, dec = wcs.image_to_sky(np.array([o[0] for o in objs]), np.array([o[1] for o in objs]))
    cat = np.zeros(3, dtype=[("id", "i8"), ("ra", "f8"), ("dec", "f8"), ("box_size", "i8")])
    cat["id"], cat["ra"], cat["dec"], cat["box_size"] = [11, 12, 13], ra, dec, 32
    path = str(tmp_path / "gal-r-meds.fits")
    project_write_meds(path, cat, [SourceImage(image=total.astype("f4"), wcs=wcs, seg=segmap,
                                               weight=np.ones(shape, "f4"))])
    assert nb.pairs_from_meds([path], box_conf(check_seg=False))[3].size == 0
    numbers, _, _, pi, pj = nb.pairs_from_meds([path], box_conf(check_seg=True))
    assert numbers.tolist() == [1, 2, 3] and pairs_set((pi, pj)) == {(0, 1)}
    radius = nb.check_nbrs_config(dict(method="radius", check_seg=False))
    assert nb.pairs_from_meds([path], radius)[3].size == 0   # 13.2" > 2 * 4.2"
    radius["min_radius"] = 6.7
    assert pairs_set(nb.pairs_from_meds([path], radius)[3:]) == {(0, 1)}


# ---------------------------------------------------------------------------
# groups split to max_group_size


def test_split_keeps_the_strongest_pairs_up_to_the_cap():
    numbers = np.array([1, 2, 3, 4, 5, 6, 7])
    # a chain 1-2-3-4-5 (ratios 0.9, 0.2, 0.5, 0.1) and a pair 6-7
    pi, pj = np.array([0, 1, 2, 3, 5]), np.array([1, 2, 3, 4, 6])
    ratio = np.array([0.9, 0.2, 0.5, 0.1, 0.3])
    np.testing.assert_array_equal(nb.split_labels(numbers, pi, pj, ratio, 5),
                                  nb.fof_labels(numbers, pi, pj))
    # cap 2: 4-5 (0.1), 2-3 (0.2), 6-7 (0.3); 3-4 and 1-2 would exceed 2
    assert nb.split_labels(numbers, pi, pj, ratio, 2).tolist() == [0, 1, 1, 2, 2, 3, 3]
    # cap 3: then 3-4 would join {2,3} and {4,5} into 4 > 3: refused; 1-2 makes {1,2,3}
    assert nb.split_labels(numbers, pi, pj, ratio, 3).tolist() == [0, 0, 0, 1, 1, 2, 2]
    # ties are broken by the pair's numbers: (1,2) before (2,3)
    assert nb.split_labels(numbers[:3], pi[:2], pj[:2], np.array([0.5, 0.5]), 2).tolist() \
        == [0, 0, 1]
    with pytest.raises(ValueError):
        nb.split_labels(numbers, pi, pj, ratio[:2], 2)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_split_properties_on_random_graphs(seed):
    """Groups <= cap, connected by their own pairs; a pair left across two groups joins
    groups that together exceed the cap; the groups do not depend on the input order."""
    rng = np.random.default_rng(seed)
    n, cap = 600, 7
    numbers = rng.permutation(np.arange(10, 10 + 3 * n, 3))
    pi, pj = nb.canonical_pairs(rng.integers(0, n, 1500), rng.integers(0, n, 1500), n)
    ratio = rng.random(pi.size)
    assert np.bincount(nb.fof_labels(numbers, pi, pj)).max() > 3 * cap  # it percolates
    labels = nb.split_labels(numbers, pi, pj, ratio, cap)
    sizes = np.bincount(labels)
    assert sizes.max() <= cap and np.all(sizes > 0)
    inside = labels[pi] == labels[pj]
    # each group is connected by its internal pairs: their components are the groups
    np.testing.assert_array_equal(nb.fof_labels(numbers, pi[inside], pj[inside]), labels)
    cut = ~inside
    assert np.all(sizes[labels[pi[cut]]] + sizes[labels[pj[cut]]] > cap)
    # same groups (by number) whatever the order of objects and pairs
    perm = rng.permutation(n)
    where = np.argsort(perm)
    order = rng.permutation(pi.size)
    again = nb.split_labels(numbers[perm], where[pi[order]], where[pj[order]], ratio[order], cap)
    np.testing.assert_array_equal(again[where], labels)


def des_like_tile(nobj, density, seed):
    """object_data-like table: uniform positions at ``density`` (objects/arcmin^2), DES-like
    stamp sizes (a long tail to 256 pixels)."""
    rng = np.random.default_rng(seed)
    side = np.sqrt(nobj / density) * 60.0 / PIXEL_SCALE
    row, col = rng.uniform(0, side, nobj), rng.uniform(0, side, nobj)
    box = rng.choice([32, 48, 64, 96, 128, 192, 256], nobj,
                     p=[0.75, 0.12, 0.06, 0.035, 0.02, 0.01, 0.005])
    cat = np.zeros(nobj, dtype=[("number", "i8"), ("ncutout", "i8"), ("box_size", "i8"),
                                ("orig_start_row", "i8"), ("orig_start_col", "i8"),
                                ("ra", "f8"), ("dec", "f8")])
    cat["number"], cat["ncutout"], cat["box_size"] = np.arange(1, nobj + 1), 1, box
    cat["orig_start_row"] = np.floor(row).astype(int) - box // 2 + 1
    cat["orig_start_col"] = np.floor(col).astype(int) - box // 2 + 1
    cat["dec"] = -30.0 + row * PIXEL_SCALE / 3600
    cat["ra"] = 50.0 - col * PIXEL_SCALE / 3600 / np.cos(np.radians(30.0))
    return cat


def test_example_config_groups_stay_small_at_des_density():
    """40 objects/arcmin^2: ngmixer's box rule percolates, the example config's groups
    stay within max_group_size and only weak pairs are left across groups."""
    cat = des_like_tile(20000, 40.0, 5)
    ngmixer = box_conf(maxsize_to_replace=256, new_maxsize=384)
    labels = nb.fof_labels(cat["number"], *nb.pairs_from_catalog(cat, ngmixer))
    assert np.bincount(labels).max() > 0.5 * cat.size
    conf = dict(nb.load_nbrs_config(os.path.join(os.path.dirname(__file__), "..", "configs",
                                                 "nbrs.yaml")), pixel_scale=PIXEL_SCALE)
    pi, pj = nb.pairs_from_catalog(cat, conf)
    ratio = nb.link_ratios(cat, conf, pi, pj)
    assert np.all(ratio < 1)   # radius pairs: separation < R_i + R_j
    labels = nb.split_labels(cat["number"], pi, pj, ratio, conf["max_group_size"])
    assert np.bincount(labels).max() <= conf["max_group_size"] == 25
    cut = labels[pi] != labels[pj]
    assert 0 < cut.mean() < 0.02
    xyz = nb.unit_vectors(cat["ra"], cat["dec"])
    assert nb.separation_arcsec(xyz[pi[cut]], xyz[pj[cut]]).min() > 2.0


def test_cli_max_group_size_splits_groups_and_keeps_every_pair(tmp_path, capsys):
    objs, segmap = tile_objects()
    g = write_meds(str(tmp_path / "t-g-meds.fits"), objs, segmap)
    conf = write_config(tmp_path / "nbrs.yaml", "method: box\ncheck_seg: true\n"
                        "max_group_size: 2\n")
    nfile, ffile = tmp_path / "nbrs.fits", tmp_path / "fofs.fits"
    rc = run_cli(cli.main, [conf, g, "--nbrs-file", str(nfile), "--fof-file", str(ffile),
                            "--log-level", "WARNING"])
    assert rc == 0
    nbrs = nb.read_nbrs(nfile)
    rows = list(zip(nbrs["number"].tolist(), nbrs["nbr_number"].tolist()))
    assert rows == [(1, 2), (2, 1), (2, 3), (3, 2), (4, 5), (5, 4), (6, -1)]
    # the chain 1-2-3 (equal ratios: 1-2 first by number) is split; 4-5 stays
    assert nb.read_fofs(ffile)["fofid"].tolist() == [0, 0, 1, 2, 2, 3]
    assert capsys.readouterr().out.strip().endswith("4 FoF groups, 2 with >=2 members "
                                                    "(50.0%), largest group 2")
