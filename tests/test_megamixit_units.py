"""megamixit building blocks: chunking, tiles file, run config, portable paths, collate."""

from __future__ import annotations

import os

import fitsio
import numpy as np
import pytest

from pipeline.errors import ConfigError, InputFileError, PipelineError
from pipeline.megamixer.chunks import chunk_objects, group_sizes_from_fof, make_chunks
from pipeline.megamixer.collate import collate_tile
from pipeline.megamixer.layout import RunLayout, from_chunk, from_run, portable_path
from pipeline.megamixer.runconfig import load_run_config
from pipeline.megamixer.tilerecord import chunk_command
from pipeline.megamixer.tiles import read_tiles

from .test_megamixit_support import (MAGZP, chunk_ids, chunk_provenance, fake_run_chunks,
                                     hand_record, make_inputs, model_rows, write_chunk_file,
                                     write_fof_file)


# ----------------------------------------------------------------- chunking

def test_chunks_regular_grid():
    got = make_chunks(np.ones(25, int), 10)
    assert got.tolist() == [[0, 9], [10, 19], [20, 24]]
    assert make_chunks(np.ones(20, int), 10).tolist() == [[0, 9], [10, 19]]
    assert make_chunks(np.ones(3, int), 10).tolist() == [[0, 2]]
    assert make_chunks(np.ones(0, int), 10).shape == (0, 2)
    assert make_chunks(np.ones(4, int), 1).tolist() == [[0, 0], [1, 1], [2, 2], [3, 3]]


def test_chunks_large_groups_get_their_own_chunk():
    sizes = np.array([1, 1, 5, 1, 1, 1, 1, 1, 1, 1, 1, 9])
    got = make_chunks(sizes, 4, max_group_size=3)
    assert got.tolist() == [[0, 1], [2, 2], [3, 3], [4, 7], [8, 10], [11, 11]]
    assert chunk_objects(sizes, got).tolist() == [2, 5, 1, 4, 3, 9]
    # threshold not exceeded -> the plain rule
    assert make_chunks(sizes, 4, max_group_size=9).tolist() == make_chunks(sizes, 4).tolist()


@pytest.mark.parametrize("seed", range(5))
def test_chunks_properties_random(seed):
    rng = np.random.default_rng(seed)
    sizes = rng.geometric(0.5, size=rng.integers(1, 400))
    n = int(rng.integers(1, 30))
    mg = int(rng.integers(1, 6))
    got = make_chunks(sizes, n, mg)
    assert np.array_equal(got, make_chunks(sizes.copy(), n, mg))      # deterministic
    assert got[0, 0] == 0 and got[-1, 1] == sizes.size - 1            # covers all groups
    assert np.all(got[1:, 0] == got[:-1, 1] + 1)                      # contiguous, no overlap
    assert np.all(got[:, 1] >= got[:, 0])
    assert np.all(got[:, 0] // n == got[:, 1] // n)                   # inside one grid cell
    for a, b in got:
        if np.any(sizes[a:b + 1] > mg):
            assert a == b                                             # big group alone
    assert chunk_objects(sizes, got).sum() == sizes.sum()


def test_group_sizes_from_fof_file(tmp_path):
    fofid = np.array([0, 1, 1, 2, 0, 3, 3, 3])
    path = write_fof_file(tmp_path / "fofs.fits", fofid)
    assert group_sizes_from_fof(path).tolist() == [2, 2, 1, 3]
    bad = write_fof_file(tmp_path / "gap.fits", np.array([0, 2, 2]))
    with pytest.raises(InputFileError, match="gap.fits"):
        group_sizes_from_fof(bad)


# ----------------------------------------------------------------- run config / tiles

def test_run_config_paths_resolve_against_its_folder(tmp_path):
    inp = make_inputs(tmp_path, {"T1": 5})
    conf = load_run_config(inp["run_config"])
    assert conf.fit_config == tmp_path / "cfg" / "fit.yaml"
    assert conf.run_dir == tmp_path / "out" / "run1"
    assert conf.meds_paths("T1")[1].resolve() == (tmp_path / "inputs" / "T1-r-meds.fits")
    over = load_run_config(inp["run_config"], {"seed": 7, "system": "slurm", "queue": None})
    assert (over.seed, over.system, over.queue) == (7, "slurm", None)


def test_run_config_unknown_key_suggests(tmp_path):
    inp = make_inputs(tmp_path, {"T1": 5}, extra={"chunk_size": 3})
    with pytest.raises(ConfigError, match=r"unknown key 'chunk_size' \(did you mean "
                                          r"'chunksize'\?\)"):
        load_run_config(inp["run_config"])


def test_tiles_file_forms_and_comments(tmp_path):
    inp = make_inputs(tmp_path, {"T1": 5, "T2": 6})
    conf = load_run_config(inp["run_config"])
    g = inp["inputs"] / "T2-g-meds.fits"
    tf = tmp_path / "cfg" / "tiles2.txt"
    tf.write_text(f"# comment\nT1   # inline comment\n\n  T2 {g} ../inputs/T2-r-meds.fits\n")
    tiles = read_tiles(tf, conf)
    assert [t.name for t in tiles] == ["T1", "T2"]
    assert [t.line for t in tiles] == [2, 4]
    assert tiles[1].meds[0] == g
    assert tiles[1].meds[1].resolve() == inp["inputs"] / "T2-r-meds.fits"


def test_tiles_file_errors(tmp_path):
    inp = make_inputs(tmp_path, {"T1": 5})
    conf = load_run_config(inp["run_config"])
    tf = tmp_path / "t.txt"
    tf.write_text("T1\nT2\nT1\n")
    with pytest.raises(InputFileError, match=r"t\.txt: line 3: duplicate tile 'T1' "
                                             r"\(first on line 1\)"):
        read_tiles(tf, conf, check_files=False)
    tf.write_text("T1\nT9\n")
    with pytest.raises(InputFileError, match=r"T9-g-meds\.fits: MEDS file of tile 'T9'"):
        read_tiles(tf, conf)
    tf.write_text("T1 a.fits\n")
    with pytest.raises(InputFileError, match="lists 1 MEDS files for 2 bands"):
        read_tiles(tf, conf)
    tf.write_text("# nothing\n")
    with pytest.raises(InputFileError, match="no tiles"):
        read_tiles(tf, conf)


def test_portable_paths(tmp_path):
    run_dir = tmp_path / "out" / "run1"
    assert portable_path(tmp_path / "out" / "meds" / "a.fits", run_dir) == "../meds/a.fits"
    assert portable_path(run_dir / "T1" / "f.fits", run_dir) == "T1/f.fits"
    assert portable_path(tmp_path / "inputs" / "a.fits", run_dir) == \
        str(tmp_path / "inputs" / "a.fits")
    assert from_run("T1/f.fits", run_dir) == run_dir / "T1" / "f.fits"
    assert from_chunk("T1/f.fits") == "../../../T1/f.fits"
    assert from_chunk("/abs/f.fits") == "/abs/f.fits"


# ----------------------------------------------------------------- collate

def _record(tmp_path, nobj=37, chunksize=10, fofid=None, max_group=None):
    """A tile set up by hand (no batch system needed): MEDS files + record."""
    inp = make_inputs(tmp_path, {"T1": nobj}, chunksize=chunksize)
    layout = RunLayout(inp["run_dir"], "run1")
    return inp, layout, hand_record(inp, "T1", chunksize, fofid, max_group)


def _table(path, ext):
    return fitsio.read(str(path), ext=ext)


def test_collate_success_and_derived_columns(tmp_path):
    inp, layout, rec = _record(tmp_path)
    ids = inp["ids"]["T1"]
    fake_run_chunks(layout, rec, ids)
    s = collate_tile(layout, rec)
    assert (s.nobj, s.nchunks, s.nskipped) == (37, 4, 0)
    m = _table(layout.collated("T1"), "model_fits")
    assert np.array_equal(m["id"], ids)                     # every object once, MEDS order
    zp = np.array([MAGZP["g"], MAGZP["r"]])
    # the DES collation's columns, on usable rows (exp_flags == 0) only
    flux, err = m["exp_flux"], m["exp_flux_err"]
    usable = m["exp_flags"] == 0
    assert usable.any() and not usable.all()
    good = usable[:, None] & (flux > 0)
    assert (usable[:, None] & (flux < 0)).any()            # a fitted negative flux
    want = (zp[None, :] - 2.5 * np.log10(np.where(good, flux, 1.0)))[good]
    assert np.allclose(m["exp_mag"][good], want, rtol=0, atol=1e-12)
    assert np.all(m["exp_mag"][~good] == -9999)
    assert np.allclose(m["exp_flux_s2n"][usable], (flux / err)[usable], rtol=1e-14)
    assert np.all(m["exp_flux_s2n"][~usable] == -9999)
    assert np.allclose(m["exp_flux_cov"][usable][:, [0, 1], [0, 1]], err[usable] ** 2)
    assert np.all(m["exp_flux_cov"][usable][:, 0, 1] == 0)
    assert np.all(m["exp_flux_cov"][~usable] == -9999)
    sb = np.log10(np.abs(flux / m["exp_T"][:, None]))
    assert np.allclose(m["exp_logsb"][usable], sb[usable], rtol=1e-14)
    assert np.all(m["exp_logsb"][~usable] == -9999)
    assert np.allclose(m["exp_T_s2n"][usable], (m["exp_T"] / m["exp_T_err"])[usable])
    assert np.all(m["exp_T_s2n"][~usable] == -9999)
    gsum = m["exp_g_cov"][:, 0, 0] + m["exp_g_cov"][:, 1, 1]
    assert np.allclose(m["exp_weight"][usable], 1 / (2 * 0.2**2 + gsum[usable]))
    assert np.all(m["exp_weight"][~usable] == 0)
    psf_ok = m["psf_flags"] == 0
    assert not psf_ok.all()
    assert np.allclose(m["psf_mag"][psf_ok],
                       (zp - 2.5 * np.log10(m["psf_flux"]))[psf_ok], atol=1e-12)
    assert np.all(m["psf_mag"][~psf_ok] == -9999)
    e = _table(layout.collated("T1"), "epoch_data")
    assert e.size == 37 * 2 * 2
    assert np.array_equal(e["id"][::4], ids)                # epochs follow their object
    meta = _table(layout.collated("T1"), "meta_data")
    assert meta.size == 1 and np.allclose(meta["magzp_ref"][0], zp)


def test_collate_fof_groups_back_in_meds_order_and_chunking_independent(tmp_path):
    rng = np.random.default_rng(3)
    nobj = 50
    fofid = np.concatenate([np.arange(30), rng.integers(0, 30, nobj - 30)])
    fofid = fofid[rng.permutation(nobj)]                    # groups interleaved in MEDS
    results = []
    for k, (n, mg) in enumerate([(7, None), (3, 1), (100, None)]):
        inp, layout, rec = _record(tmp_path / str(k), nobj, n, fofid, mg)
        fake_run_chunks(layout, rec, inp["ids"]["T1"], fofid)
        collate_tile(layout, rec)
        m = _table(layout.collated("T1"), "model_fits")
        e = _table(layout.collated("T1"), "epoch_data")
        assert np.array_equal(m["id"], inp["ids"]["T1"])
        results.append((m, e))
    names = [n for n in results[0][0].dtype.names if n != "time_last_fit"]
    for m, e in results[1:]:
        for n in names:
            assert np.array_equal(m[n], results[0][0][n]), n
        assert np.array_equal(e, results[0][1])


def test_collate_refuses_missing_and_unreadable_chunks(tmp_path):
    inp, layout, rec = _record(tmp_path)
    fake_run_chunks(layout, rec, inp["ids"]["T1"], skip=(1,))
    bad = layout.chunk_file("T1", *rec.ranges[3])
    bad.write_bytes(b"not a fits file")
    with pytest.raises(PipelineError) as err:
        collate_tile(layout, rec)
    msg = str(err.value)
    assert "\n" not in msg
    assert "2 of 4 chunk(s)" in msg
    assert "chunk000010-000019 (never run)" in msg
    assert "chunk000030-000036 (not a readable FITS file" in msg
    assert "see 'megamixit status --logs'" in msg
    assert not layout.collated("T1").exists()
    s = collate_tile(layout, rec, skip_errors=True)
    assert (s.nobj, s.nskipped, s.nmissing_obj) == (37 - 10 - 7, 2, 17)
    m = _table(layout.collated("T1"), "model_fits")
    ids = inp["ids"]["T1"]
    assert np.array_equal(m["id"], np.concatenate([ids[:10], ids[20:30]]))
    # marked incomplete in the catalogue and the tile record
    hdr = fitsio.read_header(str(layout.collated("T1")), ext=0)
    assert hdr["MMXCOMPL"] is False
    chunks = _table(layout.collated("T1"), "chunks")
    assert chunks["status"].tolist() == ["collated", "missing", "collated", "missing"]
    assert not rec.complete_catalogue
    assert rec.collation["missing"] == ["chunk000010-000019", "chunk000030-000036"]


def test_collate_duplicate_missing_unknown_objects(tmp_path):
    inp, layout, rec = _record(tmp_path)
    ids = inp["ids"]["T1"]
    per = chunk_ids(rec, ids)
    fake_run_chunks(layout, rec, ids)
    c0 = layout.chunk_file("T1", *rec.ranges[0])
    prov = chunk_provenance(rec, *rec.ranges[0])
    write_chunk_file(c0, np.append(per[0], per[1][0]), rec.bands, prov)      # object twice
    with pytest.raises(PipelineError, match=rf"1 object id\(s\) appear more than once.*"
                                            rf"{per[1][0]}"):
        collate_tile(layout, rec)
    write_chunk_file(c0, per[0][1:], rec.bands, prov)                         # object lost
    with pytest.raises(PipelineError, match=rf"1 object\(s\) missing .*ids {per[0][0]}$"):
        collate_tile(layout, rec)
    write_chunk_file(c0, np.append(per[0], 99), rec.bands, prov)              # stranger
    with pytest.raises(PipelineError, match=r"not in the MEDS file: 99"):
        collate_tile(layout, rec)
    assert not layout.collated("T1").exists()


def test_collate_before_any_chunk(tmp_path):
    inp, layout, rec = _record(tmp_path)
    with pytest.raises(PipelineError, match=r"^tile T1: no valid chunk output \(0 of 4 "
                                            r"chunks\): chunk000000-000009 \(never run\)"):
        collate_tile(layout, rec)


def test_collate_derived_column_dtypes_single_band(tmp_path):
    """One-band catalogues: flux columns are scalars per row; mags follow that shape."""
    inp = make_inputs(tmp_path, {"T1": 12}, bands=("i",), chunksize=5)
    layout = RunLayout(inp["run_dir"], "run1")
    rec = hand_record(inp, "T1", 5, bands=("i",), seed=1)
    for (a, b), ids in zip(rec.ranges, chunk_ids(rec, inp["ids"]["T1"])):
        rows = model_rows(ids, 1)
        # per-band columns as scalars (what fitsio reads back from a 1-band file)
        scalar = {n for n in rows.dtype.names if rows.dtype[n].shape == (1,)}
        one = np.zeros(len(ids), dtype=[(n, rows.dtype[n].base) if n in scalar
                                        else (n, rows.dtype[n]) for n in rows.dtype.names])
        for n in rows.dtype.names:
            one[n] = rows[n][:, 0] if n in scalar else rows[n]
        write_chunk_file(layout.chunk_file("T1", a, b), ids, ["i"],
                         chunk_provenance(rec, a, b), model=one)
    collate_tile(layout, rec)
    m = _table(layout.collated("T1"), "model_fits")
    assert m["exp_mag"].shape == m["exp_flux_cov"].shape == m["exp_logsb"].shape == (12,)
    good = (m["exp_flux"] > 0) & (m["exp_flags"] == 0)
    assert good.any()
    assert np.allclose(m["exp_mag"][good], MAGZP["i"] - 2.5 * np.log10(m["exp_flux"][good]))


def test_chunk_command_is_relative(tmp_path):
    inp, layout, rec = _record(tmp_path)
    rec.fof_file = "T1/T1-run1-fofs.fits"
    cmd = chunk_command(rec, layout, 10, 19)
    assert cmd[:5] == ["${MEGAMIXER_PYTHON}", "-m", "pipeline.cli.ngmixit",
                       "../../../fit-config.yaml", "T1-run1-000010-000019.fits"]
    assert cmd[5] == str(inp["inputs"] / "T1-g-meds.fits")        # outside: absolute
    assert cmd[cmd.index("--fof-range") + 1] == "10,19"
    assert cmd[cmd.index("--fof-file") + 1] == "../../../T1/T1-run1-fofs.fits"
    assert cmd[cmd.index("--seed") + 1] == "42"
    tags = [cmd[i + 1] for i, c in enumerate(cmd) if c == "--tag"]
    assert tags == ["run=run1", "tile=T1", "setup=hand-made"]
    assert not any(os.path.isabs(c) for c in cmd[3:5] + cmd[7:])
