"""One megamixit command at a time changes a run: a lock file in the run folder.

``setup``, ``run``, ``collate``, ``link``, ``archive`` and ``clean`` hold
``<run>/.megamixit.lock`` (a POSIX record lock, released by the kernel when the
holder exits or is killed, so a crash never leaves the run locked). A second
command is refused with one line naming the holder. ``status`` and ``verify``
only read and take no lock.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import os
import socket
import sys
from pathlib import Path
from typing import Iterator

from ..errors import PipelineError

LOCK_NAME = ".megamixit.lock"


def _holder_text() -> str:
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    command = " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv))
    return f"pid {os.getpid()} on {socket.gethostname()} since {now}: {command}"[:400]


@contextlib.contextmanager
def run_lock(run_dir: str | os.PathLike, what: str) -> Iterator[None]:
    """Hold the run's lock for the block; refuse at once if another process holds it."""
    run_dir = Path(run_dir)
    created = _missing_ancestors(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _read(fd).strip() or "another process"
            raise PipelineError(f"{run_dir}: cannot {what}: another megamixit is working on "
                                f"this run ({holder}); wait for it to finish") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, (_holder_text() + "\n").encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            if created and os.listdir(run_dir) == [LOCK_NAME]:
                # a command that failed before writing anything leaves no trace
                os.unlink(path)
                for folder in created:
                    try:
                        os.rmdir(folder)
                    except OSError:
                        break
            fcntl.lockf(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _missing_ancestors(folder: Path) -> list[Path]:
    """``folder`` and its ancestors that do not exist yet, deepest first."""
    out = []
    while not folder.exists() and folder != folder.parent:
        out.append(folder)
        folder = folder.parent
    return out


def _read(fd: int) -> str:
    try:
        return os.pread(fd, 1000, 0).decode(errors="replace")
    except OSError:
        return ""
