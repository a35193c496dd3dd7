"""``megamixit collate``: one catalogue per tile from its chunk files.

Chunk tables are read whole with fitsio and joined with numpy (no per-row
Python). The result is put in MEDS object order (chunks hold whole FoF groups,
which need not be contiguous in the MEDS file), so the catalogue does not
depend on the chunking. Every object of the tile must appear exactly once.
Derived columns (the DES collation's: ``M_flux_cov``, ``M_flux_s2n``,
``M_mag``, ``M_logsb``, ``M_T_s2n``, ``M_weight``, ``psf_mag``, ...) are those
of :mod:`pipeline.megamixer.derived`.

Determinism: with the same seed the data tables are identical for any chunk
size, system or worker count, except wall-clock columns written by ngmixit
(``time_last_fit``), which are passed through unchanged. ``meta_data`` is the
first chunk's, with ``fof_range`` set to the whole tile.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputFileError, PipelineError
from ..fitsfile import open_fits
from .layout import JOB_LOG, RunLayout
from .catalogue import CHUNK_DTYPE, COLLATED, MISSING, write_catalogue
from .chunkcheck import check_output
from .derived import derived_columns, epoch_columns
from .qa import job_wall_seconds
from .medsinfo import meds_ids, meds_magzp_ref
from .tilerecord import TileRecord

logger = logging.getLogger(__name__)

MAX_NAMED = 10


@dataclass
class ChunkTables:
    name: str
    first: int
    last: int
    model: np.ndarray
    epoch: np.ndarray
    meta: np.ndarray | None
    fingerprint: str
    extra: dict[str, np.ndarray]          # the fitter's own tables (MOF: nbrs_data, ...)


@dataclass
class CollateSummary:
    tile: str
    path: Path
    nobj: int
    nchunks: int
    nskipped: int
    nmissing_obj: int
    nflagged: int


def _name_list(items: list[str]) -> str:
    shown = ", ".join(items[:MAX_NAMED])
    more = len(items) - MAX_NAMED
    return shown + (f" and {more} more" if more > 0 else "")


STANDARD_HDUS = ("model_fits", "epoch_data", "meta_data")


def read_chunk(path: Path, want_meta: bool) -> tuple[np.ndarray, np.ndarray,
                                                     np.ndarray | None, dict[str, np.ndarray]]:
    """``(model_fits, epoch_data, meta_data or None, {name: other table})`` of a
    verified chunk file."""
    with open_fits(path) as fits:
        model = fits["model_fits"].read()
        epoch = fits["epoch_data"].read()
        meta = fits["meta_data"].read() if want_meta else None
        extra = {}
        for hdu in fits[1:]:
            name = hdu.get_extname()
            if name not in STANDARD_HDUS and hdu.get_exttype() == "BINARY_TBL":
                extra[name] = hdu.read()
    if model.dtype.names is None or "id" not in model.dtype.names:
        raise InputFileError(path, "model_fits has no 'id' column")
    return model, epoch, meta, extra


def why_no_output(layout: RunLayout, rec: TileRecord, first: int, last: int) -> str:
    """Why a chunk has no output, from what its job left in the chunk dir."""
    from .systems.base import EXIT_FILE, SUBMIT_FILE
    folder = layout.chunk_dir(rec.tile, first, last)
    try:
        code = (folder / EXIT_FILE).read_text().strip()
    except OSError:
        code = None
    if code is not None:
        return f"failed with exit status {code}"
    if (folder / SUBMIT_FILE).exists():
        return "submitted, no output yet (queued, running or killed)"
    return "never run"


def read_chunks(layout: RunLayout, rec: TileRecord) -> tuple[list[ChunkTables], list[str]]:
    """Valid chunks in chunk order (each fully verified: checksums, completeness,
    provenance of the current set-up), and one problem line per other chunk."""
    good: list[ChunkTables] = []
    bad: list[str] = []
    for first, last in rec.ranges:
        first, last = int(first), int(last)
        name = layout.chunk_name(first, last)
        out = check_output(layout.chunk_file(rec.tile, first, last), rec, first, last)
        if not out.exists:
            bad.append(f"{name} ({why_no_output(layout, rec, first, last)})")
            continue
        if out.problem:
            bad.append(f"{name} ({out.problem})")
            continue
        try:
            model, epoch, meta, extra = read_chunk(out.path, want_meta=not good)
        except InputFileError as err:
            bad.append(f"{name} ({err.problem})")
            continue
        good.append(ChunkTables(name, first, last, model, epoch, meta, out.fingerprint,
                                extra))
    return good, bad


def chunks_table(rec: TileRecord, layout: RunLayout, good: list[ChunkTables]) -> np.ndarray:
    """The catalogue's ``chunks`` HDU: every chunk of the record, collated or missing."""
    table = np.zeros(len(rec.chunks), dtype=CHUNK_DTYPE)
    by_range = {(c.first, c.last): c for c in good}
    for row, (first, last, nobj) in zip(table, rec.chunks):
        c = by_range.get((first, last))
        row["name"] = layout.chunk_name(first, last)
        row["first"], row["last"] = first, last
        row["fit_seconds"] = row["wall_seconds"] = -1.0
        if c is None:
            row["nobj"], row["status"] = nobj, MISSING
        else:
            row["nobj"], row["nepoch"] = len(c.model), len(c.epoch)
            row["status"], row["fingerprint"] = COLLATED, c.fingerprint
            if "time_last_fit" in c.model.dtype.names:
                row["fit_seconds"] = float(np.sum(c.model["time_last_fit"]))
            row["wall_seconds"] = job_wall_seconds(
                layout.chunk_dir(rec.tile, first, last) / JOB_LOG)
    return table


def _in_meds_order(table: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """Rows of a per-object table sorted by their object's MEDS position (stable)."""
    if table.dtype.names is None or "id" not in table.dtype.names or not len(table):
        return table
    pos = _object_positions(np.asarray(table["id"], dtype=np.int64), expected)
    return table[np.argsort(pos, kind="stable")]


def _concat(tables: list[np.ndarray], names: list[str], what: str) -> np.ndarray:
    dtype = tables[0].dtype
    for tab, name in zip(tables, names):
        if tab.dtype != dtype:
            raise PipelineError(f"{name}: {what} columns differ from {names[0]}")
    return np.concatenate(tables)


def _zeropoints(meta: np.ndarray | None, rec: TileRecord, run_dir: Path) -> np.ndarray | None:
    """magzp_ref per band: from meta_data, else the MEDS metadata; None if unknown."""
    nband = len(rec.bands)
    if meta is not None and meta.dtype.names and "magzp_ref" in meta.dtype.names:
        # one row per band (ngmixer's layout), or one row holding every band
        zp = np.ravel(np.asarray(meta["magzp_ref"] if meta.size == nband
                                 else meta["magzp_ref"][0], dtype=np.float64))
        if zp.size == nband:
            return zp
        if zp.size == 1:
            return np.full(nband, zp[0])
    try:
        zps = [meds_magzp_ref(p) for p in rec.meds_paths(run_dir)]
    except InputFileError as err:
        logger.warning("tile %s: no magzp_ref (%s); magnitudes not added", rec.tile, err)
        return None
    if any(z is None for z in zps):
        logger.warning("tile %s: no magzp_ref in meta_data or MEDS metadata; "
                       "magnitudes not added", rec.tile)
        return None
    return np.asarray(zps, dtype=np.float64)


def add_columns(table: np.ndarray, cols: dict[str, np.ndarray]) -> np.ndarray:
    """A copy of ``table`` with extra columns (one copy per column, not per row)."""
    if not cols:
        return table
    descr = [(n, table.dtype[n]) for n in table.dtype.names]
    descr += [(n, v.dtype, v.shape[1:]) for n, v in cols.items()]
    out = np.empty(table.size, dtype=descr)
    for n in table.dtype.names:
        out[n] = table[n]
    for n, v in cols.items():
        out[n] = v
    return out


def _object_positions(ids: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """Position of each id in ``expected`` (-1 when absent)."""
    if expected.size == 0:
        return np.full(ids.size, -1, dtype=np.int64)
    order = np.argsort(expected, kind="stable")
    idx = np.clip(np.searchsorted(expected, ids, sorter=order), 0, expected.size - 1)
    pos = order[idx]
    return np.where(expected[pos] == ids, pos, -1)


def check_objects(rec: TileRecord, ids: np.ndarray, expected: np.ndarray | None,
                  allow_missing: bool) -> tuple[np.ndarray | None, int]:
    """Each object exactly once: returns (MEDS position per row or None, n missing)."""
    uniq, counts = np.unique(ids, return_counts=True)
    dup = uniq[counts > 1]
    if dup.size:
        raise PipelineError(f"tile {rec.tile}: {dup.size} object id(s) appear more than once "
                            f"in the chunk files: {_name_list([str(i) for i in dup])}")
    if expected is None:
        nmiss = rec.nobj - ids.size
        if nmiss and not allow_missing:
            raise PipelineError(f"tile {rec.tile}: {ids.size} objects in the chunk files, "
                                f"{rec.nobj} expected")
        return None, max(nmiss, 0)
    pos = _object_positions(ids, expected)
    unknown = ids[pos < 0]
    if unknown.size:
        raise PipelineError(f"tile {rec.tile}: {unknown.size} id(s) in the chunk files are "
                            f"not in the MEDS file: {_name_list([str(i) for i in unknown])}")
    seen = np.zeros(expected.size, dtype=bool)
    seen[pos] = True
    missing = expected[~seen]
    if missing.size and not allow_missing:
        raise PipelineError(f"tile {rec.tile}: {missing.size} object(s) missing from the chunk "
                            f"files: ids {_name_list([str(i) for i in missing])}")
    return pos, int(missing.size)


def collate_tile(layout: RunLayout, rec: TileRecord, skip_errors: bool = False
                 ) -> CollateSummary:
    """Collate one tile into ``<tile>/<tile>-<run>.fits`` (atomically).

    Every chunk must be present and valid; with ``skip_errors`` the valid ones
    are collated into a catalogue marked incomplete (header and tile record).
    """
    chunks, bad = read_chunks(layout, rec)
    nchunk = len(rec.chunks)
    hint = "see 'megamixit status --logs'"
    if not chunks:
        raise PipelineError(f"tile {rec.tile}: no valid chunk output (0 of {nchunk} chunks): "
                            f"{_name_list(bad)}; {hint}")
    if bad and not skip_errors:
        raise PipelineError(f"tile {rec.tile}: {len(bad)} of {nchunk} chunk(s) without valid "
                            f"output: {_name_list(bad)}; {hint} (--skip-errors collates the "
                            f"rest into a catalogue marked incomplete)")
    for line in bad:
        logger.warning("tile %s: skipping %s", rec.tile, line)
    names = [c.name for c in chunks]
    model = _concat([c.model for c in chunks], names, "model_fits")
    epoch = _concat([c.epoch for c in chunks], names, "epoch_data")
    extra = {ext: _concat([c.extra[ext] for c in chunks], names, ext)
             for ext in chunks[0].extra if all(ext in c.extra for c in chunks)}

    try:
        expected = meds_ids(rec.meds_paths(layout.run_dir)[0])
        if np.unique(expected).size != expected.size:
            logger.warning("tile %s: MEDS ids not unique; checking counts only", rec.tile)
            expected = None
    except InputFileError as err:
        logger.warning("tile %s: cannot read MEDS ids (%s); checking counts only", rec.tile, err)
        expected = None
    ids = np.asarray(model["id"], dtype=np.int64)
    pos, nmiss = check_objects(rec, ids, expected, allow_missing=skip_errors)

    if pos is not None and np.any(np.diff(pos) < 0):
        # MEDS order; epochs follow their object, keeping their order within it
        model = model[np.argsort(pos, kind="stable")]
        # every per-object table (epoch_data, the fitter's tables) follows its
        # object, rows of one object keeping their order
        epoch = _in_meds_order(epoch, expected)
        extra = {ext: _in_meds_order(table, expected) for ext, table in extra.items()}

    meta = chunks[0].meta
    if meta is not None and meta.dtype.names and "fof_range" in meta.dtype.names \
            and meta["fof_range"].shape == (meta.size, 2):
        meta = meta.copy()
        meta["fof_range"] = [0, rec.ngroups - 1]   # the tile, not the first chunk
    zp = _zeropoints(meta, rec, layout.run_dir)
    model = add_columns(model, derived_columns(model, zp))
    epoch = add_columns(epoch, epoch_columns(epoch, list(rec.bands)))

    out = layout.collated(rec.tile)
    complete = not bad
    table = chunks_table(rec, layout, chunks)
    fingerprint = write_catalogue(out, rec, model, epoch, meta, table, complete, extra)
    rec.collation = {"setup_id": rec.setup_id, "complete": complete,
                     "missing": [str(n) for n in table["name"][table["status"] == MISSING]],
                     "nobj": int(model.size), "nepoch": int(epoch.size),
                     "fingerprint": fingerprint}
    rec.save(layout.tile_record(rec.tile))
    nflag = int(np.count_nonzero(model["flags"])) if "flags" in model.dtype.names else 0
    state = "" if complete else f" (INCOMPLETE: {len(bad)} chunk(s) missing)"
    logger.info("tile %s: collated %d objects from %d chunks into %s%s", rec.tile, model.size,
                len(chunks), out, state)
    return CollateSummary(rec.tile, out, int(model.size), nchunk, len(bad), nmiss, nflag)
