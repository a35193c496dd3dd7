"""Atomic file output: write under a temporary name, then rename into place."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator


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
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    os.unlink(tmp)  # writers such as fitsio refuse to open an existing file
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
