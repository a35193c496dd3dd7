"""Atomic file output: write under a temporary name, then rename into place.

Temporaries are named ``.mmx-<tag>-<pid>-<random>.tmp`` beside the final file,
where ``<tag>`` is a digest of the final path: the name is plain whatever the
final path holds (see :mod:`pipeline.fitsfile`), and the next writer of the
same final path can recognise and remove what a killed writer left behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from pathlib import Path
from typing import Iterator

TMP_PREFIX = ".mmx-"
TMP_SUFFIX = ".tmp"


def _tag(final: Path) -> str:
    return hashlib.sha256(os.fsencode(final)).hexdigest()[:12]


def temporary_name(final_path: str | os.PathLike) -> Path:
    """A fresh temporary path beside ``final_path`` (plain characters only)."""
    final = Path(os.path.abspath(final_path))
    name = f"{TMP_PREFIX}{_tag(final)}-{os.getpid()}-{secrets.token_hex(4)}{TMP_SUFFIX}"
    return final.parent / name


def pid_alive(pid: int) -> bool:
    """True if a process ``pid`` exists on this machine (zombies count as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as fobj:
            return fobj.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(final_path: str | os.PathLike) -> int:
    """Remove temporaries of ``final_path`` whose writer process no longer runs.

    Only names this module generates for this very final path are touched.
    Returns the number removed.
    """
    final = Path(os.path.abspath(final_path))
    prefix = f"{TMP_PREFIX}{_tag(final)}-"
    try:
        names = os.listdir(final.parent)
    except OSError:
        return 0
    removed = 0
    for name in names:
        if not (name.startswith(prefix) and name.endswith(TMP_SUFFIX)):
            continue
        try:
            pid = int(name[len(prefix):].split("-", 1)[0])
        except ValueError:
            continue
        if pid != os.getpid() and not pid_alive(pid):
            try:
                os.unlink(final.parent / name)
                removed += 1
            except FileNotFoundError:
                pass
    return removed


def check_writable(final_path: str | os.PathLike) -> None:
    """One-line error unless a file can be created beside ``final_path`` (checked by
    creating and removing a temporary), so a run fails before its work, not after."""
    from .errors import InputFileError

    final = Path(os.path.abspath(final_path))
    if final.is_dir():
        raise InputFileError(final, "is a directory, not an output file name")
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputFileError(final.parent, f"cannot create the output folder: "
                                           f"{err.strerror}") from None
    probe = temporary_name(final)
    try:
        fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except OSError as err:
        raise InputFileError(final.parent, f"cannot write output here: {err.strerror}") \
            from None
    os.close(fd)
    os.unlink(probe)


@contextlib.contextmanager
def atomic_path(final_path: str | os.PathLike, clobber: bool = True) -> Iterator[str]:
    """Yield a temporary path beside ``final_path``; rename it there on success.

    On any exception the temporary file is removed, so the final location is
    never left holding a half-written file.
    """
    final = Path(final_path)
    if final.exists() and not clobber:
        from .errors import InputFileError
        raise InputFileError(final, "output exists (use --clobber to overwrite)")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = str(temporary_name(final))
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)
