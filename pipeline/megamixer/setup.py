"""``megamixit setup``: run layout, config copies, chunk lists, job scripts.

Setting a tile up again (``--clobber``) first makes sure no job of the old
set-up is still queued or running (SLURM/LSF jobs are cancelled; chunks run by
another live megamixit process make setup refuse), then removes only the files
megamixer wrote for the old set-up (chunk files, catalogue, link). Every set-up gets a fresh ``setup_id``
that its chunk outputs must carry, so output of an old job can never pass for
output of the new set-up. A folder in the tile's place that megamixit did not
set up is never deleted.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from pathlib import Path

import numpy as np
import yaml

from ..errors import ConfigError, InputFileError, PipelineError
from ..fileio import atomic_path
from ..identity import Catalog, catalog_header, tile_catalog
from ..provenance import file_digest
from .chunks import chunk_objects, group_sizes_from_fof, make_chunks
from .jobs import chunk_jobs, get_run_system, query_by_submitter
from .layout import (FIT_CONFIG_COPY, NBRS_CONFIG_COPY, RUN_CONFIG_COPY, TILES_COPY,
                     RunLayout, portable_path)
from .runconfig import RUN_SCHEMA, RunConfig
from .safety import chunk_file_names, litter, remove_files, remove_folder_if_empty
from .software import software_env, warm_run_cache
from .tilerecord import TileRecord
from .tiles import Tile

logger = logging.getLogger(__name__)

CANCEL_WAIT = 120.0   # seconds to wait for cancelled jobs to leave the queue


def _write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)


def _copy_config(src: Path, dest: Path, clobber: bool) -> None:
    """Copy a config into the run dir; a different existing copy needs ``clobber``
    (tiles already set up were chunked for the old one)."""
    text = src.read_text()
    if dest.exists() and dest.read_text() != text and not clobber:
        raise PipelineError(f"{dest} exists and differs from {src} "
                            f"(use --clobber to replace it)")
    _write_text(dest, text)


def portable_run_config(conf: RunConfig, layout: RunLayout) -> str:
    """The run config as copied into the run dir: paths relative to the copy where
    the run tree can carry them, with CLI overrides and the seed baked in."""
    run_dir = layout.run_dir
    data = {k: getattr(conf, k) for k in RUN_SCHEMA}
    data["output_dir"] = ".."
    data["fit_config"] = FIT_CONFIG_COPY
    data["nbrs_config"] = NBRS_CONFIG_COPY if conf.nbrs_config else None
    data["input_dir"] = portable_path(conf.input_dir, run_dir)
    data = {k: v for k, v in data.items() if v is not None}
    head = (f"# Run config of run '{conf.run}' as set up from {conf.path}.\n"
            f"# Paths are relative to this file's folder, so the run tree can be moved.\n")
    return head + yaml.safe_dump(data, sort_keys=False)


def _merge_tiles_copy(path: Path, names: list[str]) -> None:
    """Keep ``tiles.txt`` in the run dir listing every tile set up (names only)."""
    old: list[str] = []
    if path.exists():
        old = [ln.split("#", 1)[0].strip() for ln in path.read_text().splitlines()]
        old = [n for n in old if n]
    merged = old + [n for n in names if n not in old]
    _write_text(path, "".join(f"{n}\n" for n in merged))


def build_nbrs(conf: RunConfig, meds: list[Path], catalog: Catalog, nbrs_path: Path,
               fof_path: Path) -> None:
    """Neighbour and FoF files of one tile, from the nbrs Python API."""
    from .. import nbrs as nb
    nconf = nb.load_nbrs_config(conf.nbrs_config)
    header = catalog_header(catalog, file_digest(conf.nbrs_config))
    groups = nb.build_groups([str(m) for m in meds], nconf)
    nb.write_nbrs(nbrs_path, groups.nbrs_table(), header=header)
    nb.write_fofs(fof_path, groups.fofs_table(), header=header)


def warn_large_group(tile: str, sizes: np.ndarray, conf: RunConfig) -> bool:
    """Log one warning when the tile's largest FoF group has more objects than a chunk
    allows (``max_group_size_per_chunk``, else ``chunksize``); returns whether it did.
    A group is never split across chunks, so one job would fit it whole (a crowded
    tile's FoF components can percolate into one group holding most of the tile)."""
    limit, what = ((conf.max_group_size_per_chunk, "max_group_size_per_chunk")
                   if conf.max_group_size_per_chunk is not None else (conf.chunksize, "chunksize"))
    nobj = int(np.sum(sizes))
    largest = int(np.max(sizes)) if len(sizes) else 0
    if largest <= limit:
        return False
    logger.warning("tile %s: largest FoF group has %d objects (%.1f%% of %d), more than "
                   "%s %d; one job fits it whole: set max_group_size in the neighbour "
                   "config to split such groups", tile, largest, 100.0 * largest / nobj, nobj,
                   what, limit)
    return True


# ------------------------------------------------------------------ an old set-up

def stop_old_jobs(conf: RunConfig, layout: RunLayout, old: TileRecord) -> None:
    """No job of ``old`` may still run: cancel queued/running scheduler jobs, refuse if a
    chunk is run by another live megamixit process."""
    jobs = chunk_jobs(old, layout, conf)
    states = query_by_submitter(jobs)
    active = [j for j in jobs if states[j.name][1].alive]
    if not active:
        return
    by_system: dict[str, list] = {}
    for job in active:
        by_system.setdefault(states[job.name][0].name, []).append(job)
    for name, group in by_system.items():
        system = states[group[0].name][0]
        if name not in ("slurm", "lsf"):
            raise PipelineError(f"tile {old.tile}: {len(group)} chunk(s) of the old set-up "
                                f"are still being run by another megamixit process (system "
                                f"'{name}', e.g. {group[0].name}); stop it or wait, then "
                                f"set up again")
        logger.warning("tile %s: cancelling %d %s job(s) of the old set-up", old.tile,
                       len(group), name)
        system.cancel(group)
    deadline = time.monotonic() + CANCEL_WAIT
    while True:
        states = query_by_submitter(active)
        still = [j.name for j in active if states[j.name][1].alive]
        if not still:
            return
        if time.monotonic() > deadline:
            raise PipelineError(f"tile {old.tile}: {len(still)} cancelled job(s) of the old "
                                f"set-up are still active after {CANCEL_WAIT:.0f} s (e.g. "
                                f"{still[0]}); try again later")
        time.sleep(1.0)


def remove_old_setup(layout: RunLayout, old: TileRecord) -> None:
    """Remove what megamixer wrote for the old set-up (chunk files, catalogue, link),
    nothing else: the user asked for it to be redone, and a stale catalogue must not be
    read as the new one's."""
    run_dir = layout.run_dir
    for path in (layout.collated(old.tile), layout.link(old.tile)):
        if os.path.lexists(path):
            remove_files(path.parent, [path.name], run_dir)
    for first, last in old.ranges:
        folder = layout.chunk_dir(old.tile, first, last)
        if not os.path.lexists(folder):
            continue
        names = chunk_file_names(layout, old.tile, first, last) + litter(folder)
        remove_files(folder, names, run_dir)
        remove_folder_if_empty(folder, run_dir)


def _check_foreign_folder(layout: RunLayout, tile: str) -> None:
    """A tile folder holding chunks but no tile record was not made by this run's setup."""
    cdir = layout.chunks_dir(tile)
    if os.path.lexists(cdir) and (not cdir.is_dir() or any(cdir.iterdir())):
        raise PipelineError(f"{cdir}: exists but tile '{tile}' has no record in "
                            f"{layout.tiles_dir}: not set up by megamixit (move it away, or "
                            f"use --clobber to set up beside what it holds)")


# ------------------------------------------------------------------ a new set-up

def setup_tile(conf: RunConfig, layout: RunLayout, tile: Tile, catalog: Catalog, system,
               old: TileRecord | None = None, inputs: dict | None = None) -> TileRecord:
    """Chunk one tile, create its chunk dirs and job scripts, save its record.

    ``old``: the record of an earlier set-up of the tile, whose jobs have stopped.
    ``inputs``: the tile's $DESDATA files (``RunConfig.tile_inputs``): FoF and nbrs
    files used as they are, MOF and object-flags files passed to ngmixit.
    """
    nobj = catalog.size
    record_path = layout.tile_record(tile.name)
    if old is not None:
        remove_old_setup(layout, old)
    tdir = layout.tile_dir(tile.name)
    tdir.mkdir(parents=True, exist_ok=True)
    fof_file = nbrs_file = None
    inputs = inputs or {}
    if inputs.get("fof_file") is not None:
        fof_path, nbrs_path = inputs["fof_file"], inputs["nbrs_file"]
    elif conf.nbrs_config is not None:
        nbrs_path, fof_path = layout.nbrs_file(tile.name), layout.fof_file(tile.name)
        logger.info("tile %s: building neighbours and FoF groups", tile.name)
        build_nbrs(conf, tile.meds, catalog, nbrs_path, fof_path)
    else:
        fof_path = nbrs_path = None
    if fof_path is None:
        sizes = np.ones(nobj, dtype=np.int64)
    else:
        sizes = group_sizes_from_fof(fof_path)
        if int(sizes.sum()) != nobj:
            raise InputFileError(fof_path, f"FoF table has {int(sizes.sum())} objects, "
                                           f"MEDS files have {nobj}")
        fof_file = portable_path(fof_path, layout.run_dir)
        nbrs_file = portable_path(nbrs_path, layout.run_dir)
    warn_large_group(tile.name, sizes, conf)
    ranges = make_chunks(sizes, conf.chunksize, conf.max_group_size_per_chunk)
    nper = chunk_objects(sizes, ranges)
    rec = TileRecord(
        tile=tile.name, run=conf.run, bands=list(conf.bands),
        meds=[portable_path(m, layout.run_dir) for m in tile.meds],
        seed=int(conf.seed), nobj=nobj, ngroups=int(sizes.size),
        chunks=[[int(a), int(b), int(n)] for (a, b), n in zip(ranges, nper)],
        setup_id=uuid.uuid4().hex, catalog=catalog.digest(),
        config=file_digest(layout.copy(FIT_CONFIG_COPY)), inputs="",
        fof_file=fof_file, nbrs_file=nbrs_file,
        extra={"extra_cmds": list(conf.extra_cmds),
               "software": software_env(conf.numba_cpu_name),
               "numba_cache": bool(conf.warm_numba_cache)},
        **{k: portable_path(inputs[k], layout.run_dir) if inputs.get(k) is not None else None
           for k in ("obj_flags_file", "mof_file")})
    rec.inputs = rec.inputs_digest(layout.run_dir)
    for job in chunk_jobs(rec, layout, conf):
        (layout.run_dir / job.chunk_dir).mkdir(parents=True, exist_ok=True)
        system.write_script(job)
    rec.save(record_path)
    logger.info("tile %s: %d objects, %d groups, %d chunks", tile.name, nobj, sizes.size,
                len(ranges))
    return rec


def setup_run(conf: RunConfig, tiles: list[Tile], clobber: bool = False) -> list[TileRecord]:
    """Set up ``tiles`` in ``<output_dir>/<run>``; refuses to redo tiles without ``clobber``."""
    layout = RunLayout(conf.run_dir, conf.run)
    if conf.seed is None:
        raise ConfigError(f"{conf.path}: no seed: set 'seed' or pass --seed "
                          f"(reruns must be identical)")
    if not conf.fit_config.is_file():
        raise InputFileError(conf.fit_config, "fit config not found")
    from ..fitconfig import load_fit_config
    fit = load_fit_config(conf.fit_config)  # fail now, not in hundreds of jobs
    if conf.nbrs_config is not None and not conf.nbrs_config.is_file():
        raise InputFileError(conf.nbrs_config, "neighbour config not found")
    done = [t.name for t in tiles if layout.tile_record(t.name).exists()]
    if done and not clobber:
        raise PipelineError(f"{layout.run_dir}: tile(s) already set up: {', '.join(done)} "
                            f"(use --clobber to redo)")
    if not clobber:
        for tile in tiles:
            _check_foreign_folder(layout, tile.name)
    # all inputs readable and consistent before anything is written
    catalogs = [tile_catalog(tile.meds) for tile in tiles]
    olds = {name: TileRecord.load(layout.tile_record(name)) for name in done}
    for old in olds.values():   # no old job may write into the new set-up
        stop_old_jobs(conf, layout, old)
    inputs = [conf.tile_inputs(t.name, fit["model_nbrs"]) if conf.meds_version else None
              for t in tiles]
    system = get_run_system(conf)
    layout.run_dir.mkdir(parents=True, exist_ok=True)
    _copy_config(conf.fit_config, layout.copy(FIT_CONFIG_COPY), clobber)
    if conf.nbrs_config is not None:
        _copy_config(conf.nbrs_config, layout.copy(NBRS_CONFIG_COPY), clobber)
    run_copy = layout.copy(RUN_CONFIG_COPY)
    if os.path.abspath(run_copy) != os.path.abspath(conf.path):
        _write_text(run_copy, portable_run_config(conf, layout))
    recs = [setup_tile(conf, layout, tile, cat, system, olds.get(tile.name), inp)
            for tile, cat, inp in zip(tiles, catalogs, inputs)]
    if conf.warm_numba_cache:
        warm_run_cache(layout.run_dir, layout.copy(FIT_CONFIG_COPY), conf.numba_cpu_name)
    _merge_tiles_copy(layout.copy(TILES_COPY), [t.name for t in tiles])
    return recs
