"""Helpers for the megamixit tests (no tests here): small real FITS inputs.

MEDS files here hold only what megamixit reads (object_data ``id``/``number``/
``ra``/``dec``, metadata ``magzp_ref``); chunk files are written by ngmixit's own
writer (provenance header, checksums) with values computed from the object id,
so any chunking of the same objects yields the same rows.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import fitsio
import numpy as np
import yaml

from pipeline.identity import tile_catalog
from pipeline.megamixer.chunks import make_chunks
from pipeline.megamixer.layout import FIT_CONFIG_COPY, RunLayout, portable_path
from pipeline.megamixer.tilerecord import TileRecord
from pipeline.output import write_fit_output
from pipeline.provenance import Provenance, file_digest

REPO = Path(__file__).resolve().parents[1]
MAGZP = {"g": 30.0, "r": 29.5, "i": 31.0}


def write_fake_meds(path: Path, ids: np.ndarray, band: str = "g") -> Path:
    cat = np.zeros(len(ids), dtype=[("id", "i8"), ("number", "i8"), ("box_size", "i8"),
                                    ("ra", "f8"), ("dec", "f8")])
    cat["id"] = ids
    cat["number"] = np.arange(1, len(ids) + 1)
    cat["box_size"] = 32
    cat["ra"] = 10.0 + (np.asarray(ids) % 1000) * 1e-4     # the same in every band
    cat["dec"] = -5.0 + (np.asarray(ids) // 1000) * 1e-3
    meta = np.zeros(1, dtype=[("magzp_ref", "f8"), ("band", "U2")])
    meta["magzp_ref"] = MAGZP[band]
    meta["band"] = band
    path.parent.mkdir(parents=True, exist_ok=True)
    with fitsio.FITS(str(path), "rw", clobber=True) as fits:
        fits.write(cat, extname="object_data")
        fits.write(meta, extname="metadata")
    return path


def write_fof_file(path: Path, fofid: np.ndarray) -> Path:
    fofs = np.zeros(len(fofid), dtype=[("fofid", "i8"), ("number", "i8")])
    fofs["fofid"] = fofid
    fofs["number"] = np.arange(1, len(fofid) + 1)
    fitsio.write(str(path), fofs, extname="fofs", clobber=True)
    return path


def model_rows(ids: np.ndarray, nband: int) -> np.ndarray:
    """model_fits rows whose values are a pure function of the id (like real fits)."""
    npars = 5 + nband
    dt = [("id", "i8"), ("number", "i4"), ("ra", "f8"), ("dec", "f8"), ("fofid", "i8"),
          ("flags", "i4"), ("time_last_fit", "f8"), ("psf_flags", "i4", nband), ("psf_flux", "f8", nband),
          ("psf_flux_err", "f8", nband), ("exp_flags", "i4"), ("exp_pars", "f8", npars),
          ("exp_pars_cov", "f8", (npars, npars)), ("exp_g_cov", "f8", (2, 2)),
          ("exp_flux", "f8", nband), ("exp_flux_err", "f8", nband), ("exp_T", "f8"),
          ("exp_T_err", "f8"), ("exp_s2n_w", "f8")]
    out = np.zeros(len(ids), dtype=dt)
    ids = np.asarray(ids, dtype=np.int64)
    out["id"] = ids
    out["number"] = ids % 100000
    out["ra"] = 10.0 + (ids % 1000) * 1e-4               # as in write_fake_meds
    out["dec"] = -5.0 + (ids // 1000) * 1e-3
    out["flags"] = np.where(ids % 19 == 0, 2, 0)
    out["time_last_fit"] = 1.7e9 + np.random.default_rng().uniform(0, 100, len(ids))
    base = (ids % 97 + 1).astype(float)[:, None] * np.arange(1, nband + 1)
    out["psf_flux"] = 100.0 * base
    out["psf_flux_err"] = 3.0 + base * 0
    out["exp_flux"] = 120.0 * base
    out["exp_flux_err"] = 4.0 + base * 0
    # unfit objects carry the -9999 / 9999 defaults; some fluxes are negative
    bad = ids % 11 == 0
    out["exp_flux"][bad] = -9999.0
    out["exp_flux_err"][bad] = 9999.0
    out["exp_flux"][ids % 13 == 0, 0] = -5.0
    out["exp_T"] = 0.5 + (ids % 5) * 0.1
    out["exp_T_err"] = 0.05
    out["exp_s2n_w"] = 30.0
    # the fit's own columns, consistent with the values above; unfit rows flagged
    out["exp_flags"] = np.where(bad, 2**6, 0)
    out["exp_pars"][:, 4] = out["exp_T"]
    out["exp_pars"][:, 5:] = out["exp_flux"]
    out["exp_pars_cov"][:, 4, 4] = out["exp_T_err"] ** 2
    for b in range(nband):
        out["exp_pars_cov"][:, 5 + b, 5 + b] = out["exp_flux_err"][:, b] ** 2
    out["exp_g_cov"][:, 0, 0] = out["exp_g_cov"][:, 1, 1] = 0.01 + (ids % 3) * 0.01
    out["psf_flags"][ids % 17 == 0, -1] = 4
    return out


def epoch_rows(ids: np.ndarray, nband: int, nepoch: int = 2) -> np.ndarray:
    dt = [("id", "i8"), ("band_num", "i4"), ("cutout_index", "i4"), ("wsum", "f8")]
    n = len(ids) * nband * nepoch
    out = np.zeros(n, dtype=dt)
    out["id"] = np.repeat(ids, nband * nepoch)
    out["band_num"] = np.tile(np.repeat(np.arange(nband), nepoch), len(ids))
    out["cutout_index"] = np.tile(np.arange(1, nepoch + 1), len(ids) * nband)
    out["wsum"] = out["id"] * 0.5 + out["band_num"] + out["cutout_index"]
    return out


def meta_row(bands: list[str]) -> np.ndarray:
    meta = np.zeros(1, dtype=[("magzp_ref", "f8", len(bands)), ("config", "U20"),
                              ("seed", "i8")])
    meta["magzp_ref"] = [MAGZP[b] for b in bands]
    meta["config"] = "models: [exp]"
    meta["seed"] = 42
    return meta


def write_chunk_file(path: Path, ids: np.ndarray, bands: list[str], prov: Provenance,
                     model: np.ndarray | None = None) -> Path:
    """A chunk output as ngmixit writes it (its writer: provenance header, checksums)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model_rows(ids, len(bands)) if model is None else model
    write_fit_output(str(path), model, epoch_rows(ids, len(bands)), meta_row(bands), None,
                     dataclasses.replace(prov))
    return path


def hand_record(inp: dict, tile: str, chunksize: int, fofid: np.ndarray | None = None,
                max_group: int | None = None, bands=("g", "r"), seed: int = 42) -> TileRecord:
    """The record setup would write for ``tile`` of ``make_inputs`` (no batch system)."""
    layout = RunLayout(inp["run_dir"], "run1")
    meds = [inp["inputs"] / f"{tile}-{b}-meds.fits" for b in bands]
    nobj = len(inp["ids"][tile])
    sizes = np.ones(nobj, int) if fofid is None else np.bincount(fofid)
    ranges = make_chunks(sizes, chunksize, max_group)
    layout.run_dir.mkdir(parents=True, exist_ok=True)
    config = layout.copy(FIT_CONFIG_COPY)
    config.write_text((inp["root"] / "cfg" / "fit.yaml").read_text())
    rec = TileRecord(tile=tile, run="run1", bands=list(bands),
                     meds=[portable_path(m, layout.run_dir) for m in meds], seed=seed,
                     nobj=nobj, ngroups=int(sizes.size),
                     chunks=[[int(a), int(b), 0] for a, b in ranges], setup_id="hand-made",
                     catalog=tile_catalog(meds).digest(), config=file_digest(config),
                     inputs="")
    rec.inputs = rec.inputs_digest(layout.run_dir)
    return rec


def chunk_provenance(rec: TileRecord, first: int, last: int) -> Provenance:
    prov = rec.expected(int(first), int(last))
    prov.version = "test"
    return prov


def chunk_ids(rec: TileRecord, meds_ids: np.ndarray, fofid: np.ndarray | None = None
              ) -> list[np.ndarray]:
    """Ids of each chunk's objects, group by group (what ngmixit would write)."""
    out = []
    for first, last in rec.ranges:
        if fofid is None:
            out.append(meds_ids[first:last + 1])
        else:
            rows = np.flatnonzero((fofid >= first) & (fofid <= last))
            rows = rows[np.lexsort((rows, fofid[rows]))]
            out.append(meds_ids[rows])
    return out


def fake_run_chunks(layout: RunLayout, rec: TileRecord, meds_ids: np.ndarray,
                    fofid: np.ndarray | None = None, skip: tuple = ()) -> None:
    """Write every chunk's output as a finished job would (except chunks in ``skip``)."""
    for k, ((first, last), ids) in enumerate(zip(rec.ranges, chunk_ids(rec, meds_ids, fofid))):
        if k in skip:
            continue
        write_chunk_file(layout.chunk_file(rec.tile, first, last), ids, rec.bands,
                         chunk_provenance(rec, first, last))


def make_inputs(root: Path, tiles: dict[str, int], bands=("g", "r"), chunksize=10,
                extra: dict | None = None, id_offset: int = 1000) -> dict:
    """MEDS files per tile, a fit config, a run config and a tiles file under ``root``.

    Returns paths and the MEDS ids per tile (ids are shuffled, not sorted: order
    must come from the MEDS file, not from sorting).
    """
    rng = np.random.default_rng(1)
    inputs = root / "inputs"
    ids = {}
    for k, (tile, n) in enumerate(tiles.items()):
        tid = id_offset * (k + 1) + rng.permutation(n)
        ids[tile] = tid
        for band in bands:
            write_fake_meds(inputs / f"{tile}-{band}-meds.fits", tid, band)
    cfgdir = root / "cfg"
    cfgdir.mkdir(parents=True, exist_ok=True)
    (cfgdir / "fit.yaml").write_text("models: [exp]\n")
    conf = {"run": "run1", "fit_config": "fit.yaml", "bands": list(bands),
            "input_dir": "../inputs", "output_dir": "../out", "chunksize": chunksize,
            "seed": 42, "warm_numba_cache": False}    # the stand-in fitter needs no kernels
    conf.update(extra or {})
    (cfgdir / "run.yaml").write_text(yaml.safe_dump(conf))
    (cfgdir / "tiles.txt").write_text("# tiles\n\n" + "".join(f"{t}\n" for t in tiles))
    return {"root": root, "run_config": cfgdir / "run.yaml", "tiles": cfgdir / "tiles.txt",
            "ids": ids, "run_dir": root / "out" / "run1", "inputs": inputs}


def python_path_env(monkeypatch) -> None:
    """Let job scripts (run from chunk dirs) import the package without installing it."""
    old = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", str(REPO) + (os.pathsep + old if old else ""))


FAKE_NGMIXIT = '''
"""Stand-in for ngmixit in job scripts: writes the chunk file a real fit would (rows
from the object ids of the FoF range, ngmixit's provenance), fails if a FAIL file is
present."""
import os, sys
from pathlib import Path
import fitsio
sys.path.insert(0, os.environ["MMX_REPO"])
from pipeline.identity import tile_catalog
from pipeline.provenance import fit_provenance
from tests.test_megamixit_support import write_chunk_file

args = sys.argv[1:]
def opt(name, default=None):
    return args[args.index(name) + 1] if name in args else default
first, last = map(int, opt("--fof-range").split(","))
meds = args[2:args.index("--fof-range")]
if os.path.exists("FAIL") or not all(os.path.exists(m) for m in meds):
    sys.exit("fake ngmixit: failing on purpose")
while os.environ.get("MMX_WAIT_FOR") and not os.path.exists(os.environ["MMX_WAIT_FOR"]):
    __import__("time").sleep(0.05)     # a long fit
cat = tile_catalog(meds)
fof = opt("--fof-file")
ngroups = int(fitsio.read(fof, ext=1)["fofid"].max()) + 1 if fof else cat.size
tags = dict(args[i + 1].split("=", 1) for i, a in enumerate(args) if a == "--tag")
prov = fit_provenance(args[0], cat.digest(), {"fof": fof, "nbrs": opt("--nbrs-file"),
                      "mof": None, "obj_flags": None}, int(opt("--seed")), first, last,
                      ngroups, tags)
bands = [fitsio.read(m, ext="metadata")["band"][0] for m in meds]
write_chunk_file(Path(args[1]), cat.id[first:last + 1], bands, prov)
'''


def fake_ngmixit_cmds(tmp_path: Path) -> list[str]:
    """extra_cmds lines that make the job scripts run the stand-in instead of ngmixit
    (by pointing MEGAMIXER_PYTHON, which jobs run as ``$MEGAMIXER_PYTHON -m ...``, at a
    wrapper): this also shows that extra_cmds can choose the interpreter."""
    import sys
    script = tmp_path / "fake_ngmixit.py"
    script.write_text(FAKE_NGMIXIT)
    wrapper = tmp_path / "fake-python"
    wrapper.write_text(f'#!/bin/bash\nshift 2\nexec "{sys.executable}" "{script}" "$@"\n')
    wrapper.chmod(0o755)
    return [f"export MMX_REPO={REPO}", f"export MEGAMIXER_PYTHON={wrapper}"]
