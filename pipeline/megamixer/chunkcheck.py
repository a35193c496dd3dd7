"""Is a chunk's output file complete, intact and of the current set-up?

A chunk counts as done only when its output passes :func:`check_chunk`: every
HDU's checksum holds, the file has the HDUs and rows its header announces, and
its provenance (set-up id, seed, range, catalogue, config and input digests)
is the tile record's. The verdict is cached beside the file, keyed by the
file's size, modification time and inode and by the set-up id, so ``status``
and ``run`` re-read a file only when it changed.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputFileError
from ..fileio import atomic_path
from ..provenance import Provenance, verify_fit_output
from .layout import RunLayout
from .tilerecord import TileRecord

CACHE_NAME = ".output-verified.json"
CHECKED = ("catalog", "config", "inputs", "seed", "first", "last", "ngroups")
CHECKED_TAGS = ("run", "tile", "setup")


@dataclass
class ChunkOutput:
    """Verdict on one chunk's output: ``problem`` is None for a valid file."""

    path: Path
    exists: bool
    problem: str | None = None
    provenance: Provenance | None = None
    fingerprint: str | None = None

    @property
    def valid(self) -> bool:
        return self.exists and self.problem is None


def _stat_key(path: Path) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def check_output(path: Path, rec: TileRecord, first: int, last: int) -> ChunkOutput:
    """Full check of one chunk output (reads the whole file)."""
    if not os.path.lexists(path):
        return ChunkOutput(path, False)
    try:
        prov, found = verify_fit_output(path)
    except InputFileError as err:
        return ChunkOutput(path, True, err.problem)
    diffs = prov.differences(rec.expected(first, last), CHECKED, CHECKED_TAGS)
    if diffs:
        return ChunkOutput(path, True, "stale output of another set-up or input: "
                                       + "; ".join(diffs), prov, found.fingerprint)
    return ChunkOutput(path, True, None, prov, found.fingerprint)


def check_chunk(layout: RunLayout, rec: TileRecord, first: int, last: int) -> ChunkOutput:
    """:func:`check_output` of a chunk, with the verdict cached in the chunk dir."""
    path = layout.chunk_file(rec.tile, first, last)
    key = _stat_key(path)
    if key is None:
        return ChunkOutput(path, False)
    cache = path.parent / CACHE_NAME
    try:
        cached = json.loads(cache.read_text())
        if cached.get("stat") == key and cached.get("setup_id") == rec.setup_id:
            return ChunkOutput(path, True, cached.get("problem"),
                               fingerprint=cached.get("fingerprint"))
    except (OSError, ValueError, AttributeError):
        pass
    result = check_output(path, rec, first, last)
    if _stat_key(path) == key:  # not replaced while it was read
        try:
            with atomic_path(cache) as tmp:
                Path(tmp).write_text(json.dumps({"stat": key, "setup_id": rec.setup_id,
                                                 "problem": result.problem,
                                                 "fingerprint": result.fingerprint}))
        except OSError:
            pass  # a read-only run tree still gets the verdict, just not cached
    return result
