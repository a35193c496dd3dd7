"""Where everything of a run lives, and paths that survive moving the run tree.

```
<output_dir>/<run>/
    run-config.yaml fit-config.yaml [nbrs-config.yaml] tiles.txt   (copies)
    tiles/<tile>.json                                               (chunk list)
    <tile>/[<tile>-<run>-nbrs.fits <tile>-<run>-fofs.fits]
    <tile>/chunks/chunk%06d-%06d/  job script, job.log, <tile>-<run>-%06d-%06d.fits
    <tile>/<tile>-<run>.fits                                        (collated)
    output/<tile>-<run>.fits -> ../<tile>/<tile>-<run>.fits         (links)
```
"""

from __future__ import annotations

import os
from pathlib import Path

RUN_CONFIG_COPY = "run-config.yaml"
FIT_CONFIG_COPY = "fit-config.yaml"
NBRS_CONFIG_COPY = "nbrs-config.yaml"
TILES_COPY = "tiles.txt"
JOB_LOG = "job.log"
# A chunk dir is <run>/<tile>/chunks/<chunk>: this climbs back to the run dir.
CHUNK_TO_RUN = os.path.join("..", "..", "..")


class RunLayout:
    """Paths of one run, rooted at ``run_dir`` (= ``<output_dir>/<run>``)."""

    def __init__(self, run_dir: str | os.PathLike, run: str):
        self.run_dir = Path(run_dir)
        self.run = run

    # run-level files
    def copy(self, name: str) -> Path:
        return self.run_dir / name

    @property
    def tiles_dir(self) -> Path:
        return self.run_dir / "tiles"

    def tile_record(self, tile: str) -> Path:
        return self.tiles_dir / f"{tile}.json"

    @property
    def output_dir(self) -> Path:
        return self.run_dir / "output"

    # tile-level files
    def tile_dir(self, tile: str) -> Path:
        return self.run_dir / tile

    def chunks_dir(self, tile: str) -> Path:
        return self.tile_dir(tile) / "chunks"

    def collated(self, tile: str) -> Path:
        return self.tile_dir(tile) / f"{tile}-{self.run}.fits"

    def link(self, tile: str) -> Path:
        return self.output_dir / f"{tile}-{self.run}.fits"

    def nbrs_file(self, tile: str) -> Path:
        return self.tile_dir(tile) / f"{tile}-{self.run}-nbrs.fits"

    def fof_file(self, tile: str) -> Path:
        return self.tile_dir(tile) / f"{tile}-{self.run}-fofs.fits"

    def qa_figure(self, tile: str) -> Path:
        return self.tile_dir(tile) / f"{tile}-{self.run}-qa.png"

    def archive(self, tile: str) -> Path:
        return self.chunks_dir(tile) / f"{tile}-{self.run}-chunks.tar.gz"

    # chunk-level files
    @staticmethod
    def chunk_name(first: int, last: int) -> str:
        return f"chunk{first:06d}-{last:06d}"

    def chunk_rel(self, tile: str, first: int, last: int) -> str:
        """Chunk dir relative to the run dir."""
        return f"{tile}/chunks/{self.chunk_name(first, last)}"

    def chunk_dir(self, tile: str, first: int, last: int) -> Path:
        return self.run_dir / self.chunk_rel(tile, first, last)

    def chunk_file_name(self, tile: str, first: int, last: int) -> str:
        return f"{tile}-{self.run}-{first:06d}-{last:06d}.fits"

    def chunk_file(self, tile: str, first: int, last: int) -> Path:
        return self.chunk_dir(tile, first, last) / self.chunk_file_name(tile, first, last)

    def job_name(self, tile: str, first: int, last: int) -> str:
        return f"{tile}-{self.run}-{first:06d}-{last:06d}"


def portable_path(path: str | os.PathLike, run_dir: str | os.PathLike) -> str:
    """Store ``path`` relative to the run dir when it lies inside the run dir's
    parent (``output_dir``: the run tree and anything beside it move together),
    else absolute (fixed input areas stay where they are)."""
    path = Path(os.path.abspath(path))
    run_dir = Path(os.path.abspath(run_dir))
    if path.is_relative_to(run_dir.parent):
        return os.path.relpath(path, run_dir)
    return str(path)


def from_run(stored: str, run_dir: str | os.PathLike) -> Path:
    """Absolute path of a path stored by :func:`portable_path`."""
    p = Path(stored)
    return p if p.is_absolute() else Path(run_dir) / p


def from_chunk(stored: str) -> str:
    """A stored path as seen from a chunk dir (the job's working directory)."""
    return stored if os.path.isabs(stored) else os.path.join(CHUNK_TO_RUN, stored)
