"""The per-tile record written by setup (``<run>/tiles/<tile>.json``).

It holds what later commands need without re-reading inputs: the MEDS paths
(portable, see :func:`layout.portable_path`), the FoF/neighbour files, the
seed, the chunk list, and the identity of this set-up (a fresh ``setup_id``
plus digests of the catalogue, the fit config and the auxiliary inputs). Every
chunk output must carry the same identity (:mod:`pipeline.provenance`), so the
output of a job from an earlier set-up is recognised as stale. ``collation``
describes the last catalogue collate wrote. Job commands are rebuilt from it.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputFileError, PipelineError
from ..fileio import atomic_path
from ..provenance import Provenance, inputs_digest
from .layout import FIT_CONFIG_COPY, RunLayout, from_chunk, from_run

NGMIXIT_MODULE = "pipeline.cli.ngmixit"
#: the job scripts set this to the interpreter that ran setup (extra_cmds may change it)
PYTHON_VAR = "MEGAMIXER_PYTHON"
RECORD_VERSION = 2


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
    setup_id: str
    catalog: str                     # digest of the MEDS catalogue (pipeline.identity)
    config: str                      # digest of the fit config copy
    inputs: str                      # digest of the auxiliary input files
    fof_file: str | None = None
    nbrs_file: str | None = None
    version: int = RECORD_VERSION
    extra: dict = field(default_factory=dict)
    collation: dict | None = None    # written by collate: complete, missing, chunks
    obj_flags_file: str | None = None   # ngmixit --obj-flags (run config obj_flags_version)
    mof_file: str | None = None         # ngmixit --mof-file (run config mof_version)

    @property
    def ranges(self) -> np.ndarray:
        return np.asarray([c[:2] for c in self.chunks], dtype=np.int64).reshape(-1, 2)

    def meds_paths(self, run_dir: str | os.PathLike) -> list[Path]:
        return [from_run(m, run_dir) for m in self.meds]

    def aux_files(self, run_dir: str | os.PathLike) -> dict[str, Path | None]:
        """The auxiliary inputs every chunk gets, by role (as ngmixit digests them)."""
        def path(stored: str | None) -> Path | None:
            return from_run(stored, run_dir) if stored else None
        return {"fof": path(self.fof_file), "nbrs": path(self.nbrs_file),
                "mof": path(self.mof_file), "obj_flags": path(self.obj_flags_file)}

    def inputs_digest(self, run_dir: str | os.PathLike) -> str:
        return inputs_digest(self.aux_files(run_dir))

    def expected(self, first: int, last: int) -> Provenance:
        """The provenance a valid output of chunk ``first..last`` carries."""
        return Provenance(catalog=self.catalog, config=self.config, inputs=self.inputs,
                          seed=self.seed, first=first, last=last, ngroups=self.ngroups,
                          tags=self.tags())

    def tags(self) -> dict[str, str]:
        return {"run": self.run, "tile": self.tile, "setup": self.setup_id}

    @property
    def complete_catalogue(self) -> bool:
        """True when collate wrote a catalogue holding every chunk of this set-up."""
        return bool(self.collation and self.collation.get("complete")
                    and self.collation.get("setup_id") == self.setup_id)

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
        except (OSError, ValueError) as err:
            raise InputFileError(path, f"cannot read tile record: {err}") from None
        if not isinstance(data, dict) or data.get("version") != RECORD_VERSION:
            found = data.get("version") if isinstance(data, dict) else None
            raise InputFileError(path, f"tile record version {found}, this megamixer writes "
                                       f"{RECORD_VERSION}: set the tile up again with "
                                       f"'megamixit setup --clobber'")
        try:
            return cls(**data)
        except TypeError as err:
            raise InputFileError(path, f"cannot read tile record: {err}") from None


def load_record(layout: RunLayout, tile: str) -> TileRecord:
    """The record of ``tile``; a one-line error when the tile was never set up."""
    path = layout.tile_record(tile)
    if not path.exists():
        raise PipelineError(f"tile '{tile}' is not set up in {layout.run_dir} "
                            f"(run 'megamixit setup' first)")
    return TileRecord.load(path)


def chunk_command(rec: TileRecord, layout: RunLayout, first: int, last: int) -> list[str]:
    """The ngmixit argv of one chunk, with paths relative to the chunk dir.

    The interpreter is ``$MEGAMIXER_PYTHON`` (the job script defines it), so
    the argv is shell-quoted except for that first word.
    """
    cmd = [f"${{{PYTHON_VAR}}}", "-m", NGMIXIT_MODULE, from_chunk(FIT_CONFIG_COPY),
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
    for key, value in rec.tags().items():
        cmd += ["--tag", f"{key}={value}"]
    return cmd
