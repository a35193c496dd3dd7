"""Direct slice reads of uncompressed FITS image HDUs.

A plain (not tile-compressed, unscaled) image HDU stores its pixels as one
big-endian array at a known byte offset, so a slice of a 1-D cutout HDU is one
``pread`` of exactly its bytes: no cfitsio call, no Python-level checks per
read. Compressed or scaled HDUs (``BSCALE``/``BZERO``) are left to fitsio.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

_BITPIX_DTYPES = {8: ">u1", 16: ">i2", 32: ">i4", 64: ">i8", -32: ">f4", -64: ">f8"}


def raw_layout(hdu: Any) -> tuple[int, np.dtype] | None:
    """(data byte offset, on-disk dtype) of a plain image HDU, or None when its
    pixels need cfitsio (compressed, scaled or an unusual BITPIX)."""
    if hdu.get_exttype() != "IMAGE_HDU" or hdu.is_compressed():
        return None
    header = hdu.read_header()
    dtype = _BITPIX_DTYPES.get(int(header.get("BITPIX", 0)))
    if dtype is None:
        return None
    if float(header.get("BSCALE", 1.0)) != 1.0 or float(header.get("BZERO", 0.0)) != 0.0:
        return None
    return int(hdu.get_offsets()["data_start"]), np.dtype(dtype)


def is_plain_fits(path: str) -> bool:
    """True for an uncompressed FITS file on disk (not gzip'd or otherwise wrapped),
    the only kind whose byte offsets are the ones cfitsio reports."""
    with open(path, "rb") as fobj:
        return fobj.read(9) == b"SIMPLE  ="


class RawSliceReader:
    """Read element ranges of plain image HDUs of one file with ``os.pread``."""

    def __init__(self, path: str, layouts: dict[str, tuple[int, np.dtype]]):
        self.layouts = layouts
        self._fd = os.open(path, os.O_RDONLY) if layouts else None

    def __contains__(self, key: str) -> bool:
        return key in self.layouts

    def read(self, key: str, start: int, count: int) -> np.ndarray:
        """Elements ``[start, start + count)`` of HDU ``key`` in native byte order."""
        offset, dtype = self.layouts[key]
        nbytes = count * dtype.itemsize
        buf = os.pread(self._fd, nbytes, offset + start * dtype.itemsize)
        if len(buf) != nbytes:
            raise OSError(f"short read: {len(buf)} of {nbytes} bytes")
        return np.frombuffer(buf, dtype=dtype).astype(dtype.newbyteorder("="))

    def advise(self, key: str, start: int, count: int) -> None:
        """Ask the kernel to start reading elements ``[start, start + count)`` of HDU
        ``key`` into the page cache, without waiting (a hint: errors are ignored)."""
        if self._fd is None or not hasattr(os, "posix_fadvise"):
            return
        offset, dtype = self.layouts[key]
        try:
            os.posix_fadvise(self._fd, offset + start * dtype.itemsize,
                             count * dtype.itemsize, os.POSIX_FADV_WILLNEED)
        except OSError:
            pass

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
