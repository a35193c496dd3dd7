"""The per-tile record written by setup (``<run>/tiles/<tile>.json``).

It holds what later commands need without re-reading inputs: the MEDS paths
(portable, see :func:`layout.portable_path`), the FoF/neighbour files, the
seed and the chunk list. Job commands are rebuilt from it.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputFileError, PipelineError
from ..fileio import atomic_path
from .layout import FIT_CONFIG_COPY, RunLayout, from_chunk, from_run

NGMIXIT = ["python3", "-m", "pipeline.cli.ngmixit"]
RECORD_VERSION = 1


@dataclass
class TileRecord:
    tile: str
    run: str
    bands: list[str]
    meds: list[str]
    seed: int
    nobj: int
    ngroups: int
    chunks: list[list[int]]          # [first_group, last_group, nobj]
    fof_file: str | None = None
    nbrs_file: str | None = None
    version: int = RECORD_VERSION
    extra: dict = field(default_factory=dict)
    obj_flags_file: str | None = None   # ngmixit --obj-flags (run config obj_flags_version)
    mof_file: str | None = None         # ngmixit --mof-file (run config mof_version)

    @property
    def ranges(self) -> np.ndarray:
        return np.asarray([c[:2] for c in self.chunks], dtype=np.int64).reshape(-1, 2)

    def meds_paths(self, run_dir: str | os.PathLike) -> list[Path]:
        return [from_run(m, run_dir) for m in self.meds]

    def save(self, path: str | os.PathLike) -> None:
        with atomic_path(path) as tmp:
            with open(tmp, "w") as fobj:
                json.dump(asdict(self), fobj, indent=1)
                fobj.write("\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> "TileRecord":
        try:
            with open(path) as fobj:
                data = json.load(fobj)
            return cls(**data)
        except (OSError, ValueError, TypeError) as err:
            raise InputFileError(path, f"cannot read tile record: {err}") from None


def load_record(layout: RunLayout, tile: str) -> TileRecord:
    """The record of ``tile``; a one-line error when the tile was never set up."""
    path = layout.tile_record(tile)
    if not path.exists():
        raise PipelineError(f"tile '{tile}' is not set up in {layout.run_dir} "
                            f"(run 'megamixit setup' first)")
    return TileRecord.load(path)


def chunk_command(rec: TileRecord, layout: RunLayout, first: int, last: int) -> list[str]:
    """The ngmixit argv of one chunk, with paths relative to the chunk dir."""
    cmd = NGMIXIT + [from_chunk(FIT_CONFIG_COPY),
                     layout.chunk_file_name(rec.tile, first, last)]
    cmd += [from_chunk(m) for m in rec.meds]
    cmd += ["--fof-range", f"{first},{last}"]
    if rec.fof_file:
        cmd += ["--fof-file", from_chunk(rec.fof_file)]
    if rec.nbrs_file:
        cmd += ["--nbrs-file", from_chunk(rec.nbrs_file)]
    if rec.obj_flags_file:
        cmd += ["--obj-flags", from_chunk(rec.obj_flags_file)]
    if rec.mof_file:
        cmd += ["--mof-file", from_chunk(rec.mof_file)]
    cmd += ["--seed", str(rec.seed), "--log-level", "INFO"]
    return cmd
