"""``megamixit setup``: run layout, config copies, chunk lists, job scripts."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import yaml

from ..errors import ConfigError, InputFileError, PipelineError
from ..fileio import atomic_path
from .chunks import chunk_objects, group_sizes_from_fof, make_chunks
from .jobs import chunk_jobs, get_run_system
from .layout import (FIT_CONFIG_COPY, NBRS_CONFIG_COPY, RUN_CONFIG_COPY, TILES_COPY,
                     RunLayout, portable_path)
from .medsinfo import meds_nobj
from .runconfig import RUN_SCHEMA, RunConfig
from .tilerecord import TileRecord
from .tiles import Tile

logger = logging.getLogger(__name__)


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


def build_nbrs(conf: RunConfig, meds: list[Path], nbrs_path: Path, fof_path: Path) -> None:
    """Neighbour and FoF files of one tile, from the nbrs Python API."""
    from .. import nbrs as nb
    nconf = nb.load_nbrs_config(conf.nbrs_config)
    numbers, _ra, _dec, pi, pj = nb.pairs_from_meds([str(m) for m in meds], nconf)
    nb.write_nbrs(nbrs_path, nb.make_nbrs_table(numbers, pi, pj))
    nb.write_fofs(fof_path, nb.make_fofs_table(numbers, pi, pj))


def _tile_nobj(tile: Tile, bands: list[str]) -> int:
    counts = [meds_nobj(m) for m in tile.meds]
    if len(set(counts)) != 1:
        detail = ", ".join(f"{b}: {n}" for b, n in zip(bands, counts))
        raise InputFileError(tile.meds[0], f"tile '{tile.name}' MEDS files differ in object "
                                           f"count ({detail})")
    return counts[0]


def setup_tile(conf: RunConfig, layout: RunLayout, tile: Tile, system,
               nobj: int | None = None, inputs: dict | None = None) -> TileRecord:
    """Chunk one tile, create its chunk dirs and job scripts, save its record.

    ``inputs``: the tile's $DESDATA files (``RunConfig.tile_inputs``): FoF and nbrs
    files used as they are, MOF and object-flags files passed to ngmixit."""
    import numpy as np

    if nobj is None:
        nobj = _tile_nobj(tile, conf.bands)
    tdir = layout.tile_dir(tile.name)
    cdir = layout.chunks_dir(tile.name)
    # setup --clobber: stale chunks, catalogue and link of the old setup must not linger
    # (run skips collated tiles; collate would mix chunk ranges)
    if cdir.exists():
        shutil.rmtree(cdir)
    for old in (layout.collated(tile.name), layout.link(tile.name)):
        if old.is_symlink() or old.exists():
            old.unlink()
    tdir.mkdir(parents=True, exist_ok=True)
    fof_file = nbrs_file = None
    inputs = inputs or {}
    if inputs.get("fof_file") is not None:
        fof_path = inputs["fof_file"]
        sizes = group_sizes_from_fof(fof_path)
        if int(sizes.sum()) != nobj:
            raise InputFileError(fof_path, f"FoF table has {int(sizes.sum())} objects, "
                                           f"MEDS files have {nobj}")
        fof_file = portable_path(fof_path, layout.run_dir)
        nbrs_file = portable_path(inputs["nbrs_file"], layout.run_dir)
    elif conf.nbrs_config is not None:
        nbrs_path, fof_path = layout.nbrs_file(tile.name), layout.fof_file(tile.name)
        logger.info("tile %s: building neighbours and FoF groups", tile.name)
        build_nbrs(conf, tile.meds, nbrs_path, fof_path)
        sizes = group_sizes_from_fof(fof_path)
        if int(sizes.sum()) != nobj:
            raise InputFileError(fof_path, f"FoF table has {int(sizes.sum())} objects, "
                                           f"MEDS files have {nobj}")
        fof_file = portable_path(fof_path, layout.run_dir)
        nbrs_file = portable_path(nbrs_path, layout.run_dir)
    else:
        sizes = np.ones(nobj, dtype=np.int64)
    ranges = make_chunks(sizes, conf.chunksize, conf.max_group_size_per_chunk)
    nper = chunk_objects(sizes, ranges)
    rec = TileRecord(
        tile=tile.name, run=conf.run, bands=list(conf.bands),
        meds=[portable_path(m, layout.run_dir) for m in tile.meds],
        seed=int(conf.seed), nobj=nobj, ngroups=int(sizes.size),
        chunks=[[int(a), int(b), int(n)] for (a, b), n in zip(ranges, nper)],
        fof_file=fof_file, nbrs_file=nbrs_file,
        extra={"extra_cmds": list(conf.extra_cmds)},
        **{k: portable_path(inputs[k], layout.run_dir) if inputs.get(k) is not None else None
           for k in ("obj_flags_file", "mof_file")})
    for job in chunk_jobs(rec, layout, conf):
        (layout.run_dir / job.chunk_dir).mkdir(parents=True, exist_ok=True)
        system.write_script(job)
    rec.save(layout.tile_record(tile.name))
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
    nobjs = [_tile_nobj(t, conf.bands) for t in tiles]  # all inputs readable before writing
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
    recs = [setup_tile(conf, layout, tile, system, n, inp)
            for tile, n, inp in zip(tiles, nobjs, inputs)]
    _merge_tiles_copy(layout.copy(TILES_COPY), [t.name for t in tiles])
    return recs
