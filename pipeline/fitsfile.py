"""Opening FITS files through cfitsio under names it cannot reinterpret.

cfitsio parses file names: ``file.fits[1]`` selects an extension, ``out(in)``
names a template, ``!name`` clobbers, ``name+2`` is an HDU number,
``mem://``/``http://`` are drivers. A user's folder called ``survey(y6)``
would make cfitsio write to ``survey`` instead. Every FITS file of the project
is therefore opened here, under a name that is safe by construction:

- reading: the file is opened by the OS first (refusing anything but a regular
  file, so a FIFO cannot hang a job) and cfitsio gets ``/proc/self/fd/N``;
- writing: cfitsio creates a temporary file with a plain generated name in
  the target's folder (reached through ``/proc/self/fd/N`` of the folder), and
  the finished file is renamed into place by the OS (:func:`atomic_fits`).

Where ``/proc/self/fd`` does not exist (not Linux), paths with characters that
cfitsio may interpret are refused with a one-line error instead.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import fitsio
import numpy as np

from .errors import InputFileError
from .fileio import atomic_path, remove_stale_temporaries, temporary_name

_PLAIN = re.compile(r"^[A-Za-z0-9_./-]+$")
_HAVE_PROC_FD = os.path.isdir("/proc/self/fd")


def first_line(err: BaseException) -> str:
    """First non-empty line of an exception message (cfitsio's span several)."""
    for line in str(err).splitlines():
        if line.strip():
            return line.strip()
    return type(err).__name__


def _plain_or_refuse(path: str) -> str:
    absolute = os.path.abspath(path)
    if not _PLAIN.match(absolute):
        raise InputFileError(path, "path has characters cfitsio would interpret "
                                   "(allowed here: letters, digits and _./-)")
    return absolute


def _open_regular(path: str, flags: int) -> int:
    """An OS file descriptor of ``path``; a one-line error unless it is a regular file."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer
        fd = os.open(path, flags | os.O_NONBLOCK)
    except FileNotFoundError:
        raise InputFileError(path, "file not found") from None
    except IsADirectoryError:
        raise InputFileError(path, "is a directory, not a FITS file") from None
    except OSError as err:
        raise InputFileError(path, f"cannot open: {err.strerror}") from None
    mode = os.fstat(fd).st_mode
    if stat.S_ISDIR(mode):
        os.close(fd)
        raise InputFileError(path, "is a directory, not a FITS file")
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise InputFileError(path, "not a regular file (FIFO, device or socket)")
    return fd


def check_regular_file(path: str | os.PathLike) -> None:
    """A one-line error unless ``path`` is an existing regular file (without blocking)."""
    os.close(_open_regular(os.fspath(path), os.O_RDONLY))


@contextlib.contextmanager
def open_fits(path: str | os.PathLike, mode: str = "r") -> Iterator[fitsio.FITS]:
    """Open an existing FITS file (``mode`` ``"r"`` or ``"rw"``) under a safe name.

    Errors opening it are one-line :class:`InputFileError` naming ``path``.
    """
    path = os.fspath(path)
    fits = _open(path, mode)
    try:
        yield fits
    finally:
        fits.close()


def _open(path: str, mode: str) -> fitsio.FITS:
    flags = os.O_RDWR if mode == "rw" else os.O_RDONLY
    if _HAVE_PROC_FD:
        fd = _open_regular(path, flags)
        name = f"/proc/self/fd/{fd}"
    else:
        check_regular_file(path)
        fd, name = None, _plain_or_refuse(path)
    try:
        return fitsio.FITS(name, mode)
    except (OSError, ValueError) as err:
        raise InputFileError(path, f"not a readable FITS file ({first_line(err)})") from None
    finally:
        if fd is not None:
            os.close(fd)  # cfitsio holds its own descriptor


def open_fits_persistent(path: str | os.PathLike) -> fitsio.FITS:
    """Open for reading and return the ``fitsio.FITS`` (the caller closes it)."""
    return _open(os.fspath(path), "r")


def read_table(path: str | os.PathLike, ext: int | str = 1, **kw) -> np.ndarray:
    """``fitsio.read`` of one extension under a safe name."""
    with open_fits(path) as fits:
        try:
            return fits[ext].read(**kw)
        except (OSError, ValueError, KeyError, IndexError) as err:
            raise InputFileError(path, f"cannot read extension {ext!r}: "
                                       f"{first_line(err)}") from None


def read_header(path: str | os.PathLike, ext: int | str = 0) -> fitsio.FITSHDR:
    """The header of one extension under a safe name."""
    with open_fits(path) as fits:
        try:
            return fits[ext].read_header()
        except (OSError, ValueError, KeyError, IndexError) as err:
            raise InputFileError(path, f"cannot read header of {ext!r}: "
                                       f"{first_line(err)}") from None


@contextlib.contextmanager
def atomic_fits(final_path: str | os.PathLike, clobber: bool = True) -> Iterator[fitsio.FITS]:
    """A new ``fitsio.FITS`` open for writing; renamed to ``final_path`` on success.

    cfitsio only ever sees a generated plain name; the final location either
    keeps its old content or receives the complete file. Temporaries that an
    earlier, killed writer of the same final path left behind are removed.
    """
    final = Path(os.path.abspath(final_path))
    remove_stale_temporaries(final)
    with atomic_path(final, clobber=clobber) as tmp:
        folder, name = os.path.split(tmp)
        if _HAVE_PROC_FD:
            dfd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
            cname = f"/proc/self/fd/{dfd}/{name}"
        else:
            dfd, cname = None, _plain_or_refuse(tmp)
        try:
            fits = fitsio.FITS(cname, "rw", clobber=True)
        except OSError as err:
            raise InputFileError(final, f"cannot write: {first_line(err)}") from None
        finally:
            if dfd is not None:
                os.close(dfd)
        try:
            yield fits
            fits.close()
        except OSError as err:
            # disk full, quota, file size limit: one line naming the file
            raise InputFileError(final, f"cannot write: {first_line(err)}") from None
        finally:
            fits.close()


def write_checksums(fits: fitsio.FITS) -> None:
    """Add CHECKSUM/DATASUM to every HDU of a file being written (call last)."""
    for hdu in fits:
        hdu.write_checksum()


@dataclass
class VerifiedFits:
    """What :func:`verify_fits` found: the primary header and each HDU's rows."""

    header: fitsio.FITSHDR
    nrows: dict[str, int]
    nhdu: int
    checksums: list[str]

    @property
    def fingerprint(self) -> str:
        """A digest of every HDU's checksums: equal files have equal fingerprints."""
        import hashlib
        return hashlib.sha256(" ".join(self.checksums).encode()).hexdigest()


def verify_fits(path: str | os.PathLike) -> VerifiedFits:
    """Read every HDU of ``path`` and check its CHECKSUM/DATASUM.

    A missing checksum, a failed one, or an HDU that cannot be read is a
    one-line :class:`InputFileError` naming the HDU.
    """
    with open_fits(path) as fits:
        nrows: dict[str, int] = {}
        checksums: list[str] = []
        header = None
        for i, hdu in enumerate(fits):
            name = hdu.get_extname() or f"HDU {i}"
            try:
                hdr = hdu.read_header()
                if "DATASUM" not in hdr or "CHECKSUM" not in hdr:
                    raise InputFileError(path, f"{name}: no FITS checksum")
                hdu.verify_checksum()
            except InputFileError:
                raise
            except (OSError, ValueError) as err:
                raise InputFileError(path, f"{name}: {first_line(err)} (truncated or "
                                           f"corrupted)") from None
            checksums.append(f"{hdr['CHECKSUM']}/{hdr['DATASUM']}")
            if i == 0:
                header = hdr
            elif hdu.get_exttype() in ("BINARY_TBL", "ASCII_TBL"):
                nrows[name] = int(hdu.get_nrows())
        return VerifiedFits(header, nrows, len(fits), checksums)


__all__ = ["open_fits", "open_fits_persistent", "read_table", "read_header", "atomic_fits",
           "check_regular_file", "first_line", "temporary_name", "write_checksums", "verify_fits",
           "VerifiedFits"]
