"""The collated catalogue of a tile: its layout on disk and its full verification.

HDUs: empty primary with the provenance (:class:`pipeline.provenance.Provenance`
of the whole tile, tags ``run``, ``tile``, ``setup``) and ``MMXCOMPL`` (T when
every chunk of the set-up is in), ``model_fits``, ``epoch_data``,
``meta_data``, the fitter's own tables (MOF: ngmixer's ``nbrs_data``,
``mof_pairs``, ...) collated like epoch_data, and ``chunks``: one row per chunk of the tile record with its
range, rows, ``status`` (``collated`` or ``missing``), the fingerprint of
the chunk file that went in, the seconds spent fitting (sum of ``time_last_fit``)
and the job's wall time (from its log; -1 when unknown). Every HDU carries a FITS checksum.

:func:`check_catalogue` reads and checks all of it; archive and clean delete a
chunk only when this check passes and the chunk file is the one the
catalogue's ``chunks`` table fingerprinted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import __version__
from .. import columns as C
from ..columns import Column, dtype_of
from ..errors import InputFileError
from ..fitsfile import atomic_fits, open_fits, verify_fits, write_checksums
from ..provenance import Provenance
from .layout import RunLayout
from .medsinfo import meds_ids
from .tilerecord import TileRecord

CHUNKS_EXT = "chunks"
COMPLETE_KEY = "MMXCOMPL"
COLLATED, MISSING = "collated", "missing"
CHUNK_COLUMNS = [
    Column("name", "U40", (), C.NONE, "the chunk's folder name, chunk<first>-<last>"),
    Column("first", "i8", (), C.NONE, "first FoF group of the chunk"),
    Column("last", "i8", (), C.NONE, "last FoF group of the chunk"),
    Column("nobj", "i8", (), C.NONE, "model_fits rows the chunk contributed (a missing "
           "chunk: the objects it should have held)"),
    Column("nepoch", "i8", (), C.NONE, "epoch_data rows the chunk contributed (0 when "
           "missing)"),
    Column("status", "U8", (), C.NONE, f"{COLLATED} or {MISSING} (only with --skip-errors)"),
    Column("fingerprint", "U64", (), C.NONE, "digest of the chunk file's HDU checksums "
           "(empty when missing): archive and clean delete only that file"),
    Column("fit_seconds", "f8", (), C.SECOND, "fitting time of the chunk (sum of "
           "time_last_fit; -1 when missing)"),
    Column("wall_seconds", "f8", (), C.SECOND, "wall time of the chunk's last job attempt, "
           "from its job log (-1 when unknown)"),
]
CHUNK_DTYPE = dtype_of(CHUNK_COLUMNS)
HDUS = ("model_fits", "epoch_data", "meta_data", CHUNKS_EXT)


def tile_provenance(rec: TileRecord, nobj: int, nepoch: int, nextra: int = 0) -> Provenance:
    prov = rec.expected(0, rec.ngroups - 1)
    prov.version = __version__
    prov.nobj, prov.nepoch, prov.nhdu = nobj, nepoch, 1 + len(HDUS) + nextra
    return prov


def write_catalogue(path: Path, rec: TileRecord, model: np.ndarray, epoch: np.ndarray,
                    meta: np.ndarray | None, chunks: np.ndarray, complete: bool,
                    extra: dict[str, np.ndarray] | None = None) -> str:
    """Write the catalogue atomically; returns its fingerprint. ``extra``: the
    fitter's own tables (MOF: ``nbrs_data``, ...), collated like epoch_data."""
    extra = extra or {}
    prov = tile_provenance(rec, len(model), len(epoch), len(extra))
    with atomic_fits(path) as fits:
        fits.write(model, extname="model_fits")
        fits[0].write_keys(prov.header_records() + [
            {"name": COMPLETE_KEY, "value": bool(complete),
             "comment": "every chunk of the set-up is in"}])
        fits.write(epoch, extname="epoch_data")
        fits.write(meta if meta is not None else np.zeros(0, dtype=[("empty", "i4")]),
                   extname="meta_data")
        for name, table in extra.items():
            fits.write(table, extname=name)
        fits.write(chunks, extname=CHUNKS_EXT)
        write_checksums(fits)
    return verify_fits(path).fingerprint


@dataclass
class CatalogueCheck:
    """What :func:`check_catalogue` found; ``problems`` empty means verified."""

    path: Path
    exists: bool = False
    nobj: int = 0
    flags: np.ndarray | None = None
    chunks: np.ndarray | None = None
    complete: bool = False
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.exists and not self.problems

    def fingerprints(self) -> dict[str, str]:
        """Chunk name -> fingerprint of the file collated (collated chunks only)."""
        if self.chunks is None:
            return {}
        return {str(c["name"]): str(c["fingerprint"]) for c in self.chunks
                if c["status"] == COLLATED}


def check_catalogue(layout: RunLayout, rec: TileRecord, check_ids: bool = True
                    ) -> CatalogueCheck:
    """Read every HDU of the tile's catalogue and check it against the tile record.

    Checks: checksums of every HDU; the HDUs and row counts its header
    announces; provenance of the current set-up; complete (no missing chunk);
    the chunks table covering the record's chunks with row counts adding up;
    ids exactly once and, with ``check_ids``, equal to the MEDS ids in order;
    epoch_data ids among model_fits ids.
    """
    path = layout.collated(rec.tile)
    res = CatalogueCheck(path)
    if not path.exists():
        res.problems.append(f"{path}: not collated")
        return res
    res.exists = True
    try:
        found = verify_fits(path)
        prov = Provenance.from_header(found.header, path)
    except InputFileError as err:
        res.problems.append(str(err))
        return res
    diffs = prov.differences(tile_provenance(rec, prov.nobj, prov.nepoch),
                             ("catalog", "config", "inputs", "seed", "ngroups"),
                             ("run", "tile", "setup"))
    if diffs:
        res.problems.append(f"{path}: stale catalogue of another set-up: {'; '.join(diffs)} "
                            f"(collate again)")
    if found.nhdu != prov.nhdu or any(h not in found.nrows for h in HDUS) \
            or list(found.nrows)[-1] != CHUNKS_EXT:
        res.problems.append(f"{path}: has {found.nhdu} HDUs ({', '.join(found.nrows)}), "
                            f"expected {prov.nhdu}: truncated?")
        return res
    res.complete = bool(found.header.get(COMPLETE_KEY, False))
    with open_fits(path) as fits:
        ids = np.asarray(fits["model_fits"].read_column("id"), dtype=np.int64)
        cols = fits["model_fits"].get_colnames()
        res.flags = fits["model_fits"].read_column("flags") if "flags" in cols else None
        epoch_ids = (np.asarray(fits["epoch_data"].read_column("id"), dtype=np.int64)
                     if found.nrows["epoch_data"] else np.zeros(0, np.int64))
        res.chunks = fits[CHUNKS_EXT].read()
    res.nobj = int(ids.size)
    _check_rows(res, rec, ids, epoch_ids, prov)
    if check_ids and res.complete:
        try:
            expected = meds_ids(rec.meds_paths(layout.run_dir)[0])
            if expected.size != ids.size or np.any(expected != ids):
                res.problems.append(f"{path}: ids differ from the MEDS file's (count or "
                                    f"order)")
        except InputFileError as err:
            res.problems.append(str(err))
    if res.flags is None:
        res.problems.append(f"{path}: no 'flags' column")
    return res


def _check_rows(res: CatalogueCheck, rec: TileRecord, ids: np.ndarray,
                epoch_ids: np.ndarray, prov: Provenance) -> None:
    path, chunks = res.path, res.chunks
    if ids.size != prov.nobj or epoch_ids.size != prov.nepoch:
        res.problems.append(f"{path}: {ids.size} model_fits / {epoch_ids.size} epoch_data "
                            f"rows, written with {prov.nobj} / {prov.nepoch}")
    ranges = sorted((int(c["first"]), int(c["last"])) for c in chunks)
    if ranges != sorted((int(a), int(b)) for a, b in rec.ranges):
        res.problems.append(f"{path}: its chunks table does not match the tile's chunks")
    done = chunks[chunks["status"] == COLLATED]
    if int(done["nobj"].sum()) != ids.size or int(done["nepoch"].sum()) != epoch_ids.size:
        res.problems.append(f"{path}: row counts differ from the sum over its chunks "
                            f"({int(done['nobj'].sum())} objects, "
                            f"{int(done['nepoch'].sum())} epochs)")
    missing = [str(n) for n in chunks["name"][chunks["status"] != COLLATED]]
    if missing or not res.complete:
        res.problems.append(f"{path}: incomplete: collated without {len(missing)} chunk(s) "
                            f"({', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''})")
    elif ids.size != rec.nobj:
        res.problems.append(f"{path}: {ids.size} rows, tile has {rec.nobj} objects")
    uniq, counts = np.unique(ids, return_counts=True)
    if np.any(counts > 1):
        res.problems.append(f"{path}: {int(np.sum(counts > 1))} duplicate id(s), "
                            f"e.g. {int(uniq[counts > 1][0])}")
    if epoch_ids.size and not np.all(np.isin(epoch_ids, uniq)):
        res.problems.append(f"{path}: epoch_data holds ids that are not in model_fits")
