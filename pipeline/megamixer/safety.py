"""Deleting only what megamixer made, only inside the run tree, never through a link.

Commands that remove files (setup --clobber, archive, clean) go through these
helpers: a folder is touched only if it is a real folder (not a symlink) whose
real path lies inside the run folder's real path, and only files with names
megamixer itself writes are removed; anything else is left and reported.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from typing import Iterable

from ..errors import PipelineError
from ..fileio import TMP_PREFIX, TMP_SUFFIX, pid_alive
from ..output import checkpoint_path, diagnostics_path
from .chunkcheck import CACHE_NAME
from .layout import JOB_LOG, RunLayout

logger = logging.getLogger(__name__)

# What a job leaves in its chunk dir besides the chunk file and its by-products.
JOB_SCRIPTS = ("job.sh", "job.slurm", "job.lsf")
JOB_FILES = (JOB_LOG, "exit_status", "submit.json", "job.pid", CACHE_NAME)


def real_folder_inside(path: Path, run_dir: Path) -> bool:
    """True if ``path`` is a folder, not a symlink, really inside ``run_dir``."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    if not stat.S_ISDIR(st.st_mode):
        return False
    root = os.path.realpath(run_dir)
    real = os.path.realpath(path)
    return real == root or real.startswith(root + os.sep)


def check_folder(path: Path, run_dir: Path, what: str) -> None:
    """One-line error unless :func:`real_folder_inside` holds."""
    if not real_folder_inside(path, run_dir):
        raise PipelineError(f"{path}: refusing to {what}: not a real folder inside the run "
                            f"folder {run_dir} (a symlink or moved folder?)")


def chunk_file_names(layout: RunLayout, tile: str, first: int, last: int,
                     outputs: bool = True) -> list[str]:
    """Names megamixer writes in a chunk dir (outputs included unless ``outputs`` is False)."""
    names = list(JOB_SCRIPTS) + list(JOB_FILES)
    if outputs:
        out = layout.chunk_file(tile, first, last)
        names += [out.name, Path(checkpoint_path(str(out))).name,
                  Path(diagnostics_path(str(out))).name]
    return names


def litter(folder: Path) -> list[str]:
    """Half-written leftovers of killed writers: ``.exit_status.PID`` of job scripts and
    megamixer temporaries whose writer is gone."""
    out = []
    try:
        names = os.listdir(folder)
    except OSError:
        return out
    for name in names:
        if name.startswith(".exit_status."):
            out.append(name)
        elif name.startswith(TMP_PREFIX) and name.endswith(TMP_SUFFIX):
            try:
                pid = int(name[len(TMP_PREFIX):].split("-")[1])
            except (IndexError, ValueError):
                continue
            if not pid_alive(pid):
                out.append(name)
    return out


def remove_files(folder: Path, names: Iterable[str], run_dir: Path) -> int:
    """Remove the named entries of ``folder`` that are files or symlinks (a link is
    removed, never followed); returns how many were removed."""
    check_folder(folder, run_dir, "remove files")
    removed = 0
    for name in names:
        path = folder / name
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        if stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode):
            os.unlink(path)
            removed += 1
    return removed


def remove_folder_if_empty(folder: Path, run_dir: Path) -> bool:
    """rmdir ``folder`` if it is a real folder inside the run and empty."""
    if not real_folder_inside(folder, run_dir):
        return False
    try:
        os.rmdir(folder)
    except OSError:
        leftover = sorted(os.listdir(folder)) if folder.is_dir() else []
        if leftover:
            logger.warning("%s: left in place, it holds files megamixer did not write: %s",
                           folder, ", ".join(leftover[:5]))
        return False
    return True
