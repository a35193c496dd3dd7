"""``megamixit archive`` and ``clean``: tidy chunk work files of collated tiles.

Nothing is deleted before what replaces it is verified:

- a chunk output is removed only when the tile's catalogue passes the full
  check (:func:`~.catalogue.check_catalogue`) and the file on disk is the one
  the catalogue's ``chunks`` table fingerprinted (a chunk that arrived after
  collate makes the command refuse);
- ``archive`` first writes a new tarball holding the old tarball's members
  and every other file of the chunk folders, reads it back to check it, renames
  it into place, and only then removes the files it holds;
- only real folders inside the run folder are touched, never through a link
  (:mod:`.safety`).
"""

from __future__ import annotations

import logging
import os
import stat
import tarfile
from pathlib import Path

from ..errors import PipelineError
from ..fileio import atomic_path
from .catalogue import check_catalogue
from .chunkcheck import check_output
from .layout import RunLayout
from .safety import (JOB_SCRIPTS, chunk_file_names, check_folder, litter, remove_files,
                     remove_folder_if_empty)
from .tilerecord import TileRecord

logger = logging.getLogger(__name__)


def check_deletable(layout: RunLayout, rec: TileRecord, what: str) -> None:
    """Refuse unless the catalogue is verified and holds every chunk file on disk."""
    check = check_catalogue(layout, rec)
    if not check.ok:
        raise PipelineError(f"tile {rec.tile}: refusing to {what}: {check.problems[0]}")
    held = check.fingerprints()
    for first, last in rec.ranges:
        name = layout.chunk_name(int(first), int(last))
        path = layout.chunk_file(rec.tile, first, last)
        if not os.path.lexists(path):
            continue
        out = check_output(path, rec, int(first), int(last))
        if out.fingerprint is None or out.fingerprint != held.get(name):
            raise PipelineError(f"tile {rec.tile}: refusing to {what}: {name} holds output "
                                f"the catalogue does not (written after collate?): collate "
                                f"again first")


def _chunk_dirs(layout: RunLayout, rec: TileRecord) -> list[tuple[Path, int, int]]:
    """``(folder, first, last)`` of the chunk dirs present (each checked to be a real
    folder inside the run)."""
    dirs = []
    for a, b in rec.ranges:
        folder = layout.chunk_dir(rec.tile, a, b)
        if os.path.lexists(folder):
            check_folder(folder, layout.run_dir, "archive or clean it")
            dirs.append((folder, int(a), int(b)))
    return dirs


def _archivable(folder: Path, outputs: set[str]) -> list[Path]:
    """Files (and symlinks, stored as links) of a chunk dir other than its outputs."""
    out = []
    for name in sorted(os.listdir(folder)):
        st = os.lstat(folder / name)
        if name in outputs:
            continue
        if stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode):
            out.append(folder / name)
    return out


def _write_tarball(path: Path, old: Path | None, files: list[Path], base: Path) -> None:
    """A new tar.gz at ``path`` with ``old``'s members and ``files``; read back to check."""
    expected: dict[str, int] = {}
    with atomic_path(path) as tmp:
        with tarfile.open(tmp, "w:gz") as tar:
            if old is not None:
                with tarfile.open(old, "r:gz") as prev:
                    for member in prev.getmembers():
                        data = prev.extractfile(member) if member.isfile() else None
                        tar.addfile(member, data)
                        expected[member.name] = member.size
            for f in files:
                arcname = str(f.relative_to(base))
                tar.add(f, arcname=arcname, recursive=False)
                expected[arcname] = 0 if f.is_symlink() else f.stat().st_size
        with tarfile.open(tmp, "r:gz") as check:
            found = {m.name: m.size for m in check.getmembers()}
        if any(found.get(name) != size for name, size in expected.items()):
            raise PipelineError(f"{path}: the new archive does not read back as written; "
                                f"nothing was removed")


def archive_tile(layout: RunLayout, rec: TileRecord) -> Path | None:
    """Tar.gz the logs and job scripts of a collated tile, then remove the chunk dirs.

    Returns the archive path, or None when the tile was already archived.
    """
    check_deletable(layout, rec, "archive")
    dirs = _chunk_dirs(layout, rec)
    out = layout.archive(rec.tile)
    if not dirs:
        if out.exists():
            logger.info("tile %s: already archived in %s", rec.tile, out)
            return None
        raise PipelineError(f"tile {rec.tile}: no chunk dirs to archive")
    base = layout.chunks_dir(rec.tile)
    plan = {}
    for folder, first, last in dirs:
        outputs = (set(chunk_file_names(layout, rec.tile, first, last))
                   - set(chunk_file_names(layout, rec.tile, first, last, outputs=False)))
        plan[folder] = (outputs | set(litter(folder)), _archivable(folder, outputs))
    files = [f for _, kept in plan.values() for f in kept]
    _write_tarball(out, out if out.exists() else None, files, base)
    for folder, (outputs, kept) in plan.items():
        remove_files(folder, sorted(outputs) + [f.name for f in kept], layout.run_dir)
        remove_folder_if_empty(folder, layout.run_dir)
    logger.info("tile %s: archived %d files of %d chunk dirs into %s", rec.tile, len(files),
                len(dirs), out)
    return out


def clean_tile(layout: RunLayout, rec: TileRecord, clobber: bool = False) -> int:
    """Remove chunk outputs, logs and job records (job scripts stay).

    Without ``clobber`` the catalogue must be verified and hold every chunk file
    (they are then copies). Returns the number of files removed.
    """
    if not clobber:
        check_deletable(layout, rec, "clean (use --clobber to drop uncollated results)")
    nrm = 0
    for folder, first, last in _chunk_dirs(layout, rec):
        names = [n for n in chunk_file_names(layout, rec.tile, first, last)
                 if n not in JOB_SCRIPTS]
        nrm += remove_files(folder, names + litter(folder), layout.run_dir)
    logger.info("tile %s: removed %d chunk work files", rec.tile, nrm)
    return nrm
