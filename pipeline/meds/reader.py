"""Lazy, slice-based MEDS reader with the public API of the reference ``meds.MEDS``.

The small tables (``object_data``, ``image_info``, ``metadata``) are read once
at open and checked for structural damage (``validate.py``); pixels are read
per request as slices of the 1-D cutout HDUs (one ``pread`` of the slice's
bytes for plain HDUs, ``fits[ext][start:end]`` for tile-compressed or scaled
ones), so memory is bounded by the stamps asked for, never by the file.

Errors are one-line ``InputFileError`` naming the file; those about the file
itself are also ``OSError`` (``InputIOError``) and those about a request the
file cannot serve also ``ValueError`` (``InputValueError``), the builtins the
reference reader raises in the same situations.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Sequence

import numpy as np

from ..errors import InputFileError, InputIOError, InputValueError
from ..fitsfile import first_line, open_fits_persistent
from . import regions, validate
from .rawread import RawSliceReader, is_plain_fits, raw_layout
from .schema import CUTOUT_DTYPES, IMAGE_INFO, METADATA, OBJECT_DATA, PSF_EXT, cutout_ext

log = logging.getLogger(__name__)

#: object_data columns that are per-cutout arrays (``[nmax]``)
_ARRAY_COLUMNS = ("file_id", "start_row", "orig_row", "orig_col", "orig_start_row",
                  "orig_start_col", "cutout_row", "cutout_col", "dudrow", "dudcol",
                  "dvdrow", "dvdcol", "psf_start_row", "psf_cutout_row", "psf_cutout_col")
_REQUIRED_COLUMNS = ("box_size", "ncutout", "start_row")
_JACOBIAN_COLUMNS = ("cutout_row", "cutout_col", "dudrow", "dudcol", "dvdrow", "dvdcol")
#: compressed stamp HDUs longer than this held in one tile get a warning
WHOLE_TILE_WARN = 10**6


def split_mosaic(mosaic: np.ndarray) -> list[np.ndarray]:
    """The square stamps of a ``(n*box, box)`` mosaic, as views into it."""
    box = mosaic.shape[1]
    return [mosaic[k * box:(k + 1) * box] for k in range(mosaic.shape[0] // max(box, 1))]


class MEDS:
    """Read a MEDS file: ``with MEDS(path) as m: im = m.get_cutout(iobj, icut)``.

    The methods and arguments are those of the reference ``meds.MEDS``; see
    ``docs/meds.rst`` for the checks made at open and the deliberate differences
    (each weight-region method takes ``reference=True`` to reproduce the
    reference's rules).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = os.fspath(path)
        try:
            self._fits = open_fits_persistent(self.path)
        except InputFileError as err:
            # missing, not regular, not FITS: the OSError fitsio itself raises
            raise InputIOError(err.path, err.problem) from None
        try:
            self._index_hdus()
            self._load_tables()
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ open
    def _error(self, problem: str) -> InputIOError:
        """The file is damaged or not a MEDS file."""
        return InputIOError(self.path, problem)

    def _bad_request(self, problem: str) -> InputValueError:
        """A request this file cannot serve (index, type, column, PSF)."""
        return InputValueError(self.path, problem)

    def _index_hdus(self) -> None:
        self._hdus: dict[str, Any] = {}
        data_end = 0
        last = ""
        for hdu in self._fits:
            name = hdu.get_extname().strip().lower()
            if name and name not in self._hdus:
                self._hdus[name] = hdu
            last = name or last
            data_end = max(data_end, hdu.get_offsets()["data_end"])
        nbytes = os.path.getsize(self.path)
        plain = is_plain_fits(self.path)
        # a gzip-wrapped file is smaller than its HDUs; cfitsio inflates it in memory
        if plain and data_end > nbytes:
            raise self._error(f"truncated file: {nbytes} bytes but its HDUs need {data_end}")
        announced = self._fits[0].read_header().get("NEXTEND")
        present = len(self._fits) - 1
        if isinstance(announced, int) and present < announced:
            after = f" (the last '{last}')" if present else ""
            raise self._error(f"truncated file: {present} of the {announced} extensions its "
                              f"primary header announces (NEXTEND) are present{after}")
        for name in (OBJECT_DATA, IMAGE_INFO, cutout_ext("image")):
            if name not in self._hdus:
                hint = " (truncated file?)" if nbytes % 2880 else ""
                raise self._error(f"not a MEDS file: no '{name}' HDU{hint}")
        # cutout HDU lengths: 1-D image HDUs named <type>_cutouts (and psf)
        self._cutout_len: dict[str, int] = {}
        for name, hdu in self._hdus.items():
            if name.endswith("_cutouts") or name == PSF_EXT:
                if hdu.get_exttype() in ("BINARY_TBL", "ASCII_TBL"):
                    if name == PSF_EXT:
                        continue  # some makers put a psf table here; not stamps
                    raise self._error(f"HDU '{name}' is a table, expected a 1-D image")
                dims = hdu.get_dims()
                if len(dims) != 1:
                    raise self._error(f"HDU '{name}' has shape {tuple(dims)}, expected 1-D")
                key = PSF_EXT if name == PSF_EXT else name[: -len("_cutouts")]
                self._cutout_len[key] = int(dims[0])
        self._types = tuple(t for t in self._cutout_len if t != PSF_EXT)
        self._warn_whole_hdu_tiles()
        layouts = {}
        if plain:
            for key in self._cutout_len:
                layout = raw_layout(self._hdus[cutout_ext(key) if key != PSF_EXT else key])
                if layout is not None:
                    layouts[key] = layout
        self._raw = RawSliceReader(self.path, layouts)
        # the stamps of the last object read, per cutout type: a fitter asks
        # for several cutouts and types of one object, and one read per type
        # costs what one read per stamp did (bounded by one object's pixels)
        self._stamp_cache: dict[str, tuple[int, np.ndarray | None]] = {}

    def _warn_whole_hdu_tiles(self) -> None:
        """fpack's default tile is a whole row: for a 1-D stamp HDU that is the whole
        HDU, inflated again for every stamp read (measured ~1000x slower than with
        10240-pixel tiles). Say so once; the file is still read correctly."""
        for key, length in self._cutout_len.items():
            hdu = self._hdus[cutout_ext(key) if key != PSF_EXT else key]
            if length > WHOLE_TILE_WARN and hdu.is_compressed():
                tile = hdu.read_header().get("ZTILE1", length)
                if tile >= length:
                    log.warning("%s: '%s' is compressed as one tile of %d pixels, so every "
                                "stamp read inflates all of it; fpack it with tiles of "
                                "~10240 pixels (fpack -t 10240) to read it fast",
                                self.path, hdu.get_extname(), length)

    def _read_table(self, name: str) -> np.ndarray:
        try:
            return self._hdus[name].read()
        except Exception as err:  # noqa: BLE001 - any read failure is bad input
            raise self._error(f"cannot read '{name}' table ({first_line(err)})") from None

    def _load_tables(self) -> None:
        if self._hdus[OBJECT_DATA].get_exttype() == "IMAGE_HDU":
            raise self._error(f"'{OBJECT_DATA}' HDU is an image, expected a table")
        cat = self._read_table(OBJECT_DATA)
        names = cat.dtype.names or ()
        for col in _REQUIRED_COLUMNS:
            if col not in names:
                raise self._error(f"'{OBJECT_DATA}' has no '{col}' column")
        self._has_number = "number" in names
        if not self._has_number:
            # number (the seg map id) defaults to index+1
            descr = cat.dtype.descr + [("number", "i8")]
            full = np.zeros(cat.size, dtype=descr)
            for col in names:
                full[col] = cat[col]
            full["number"] = np.arange(1, cat.size + 1)
            cat = full
        self._cat = cat
        self._image_info = self._read_table(IMAGE_INFO)
        self._meta = self._read_table(METADATA) if METADATA in self._hdus else None
        # per-cutout columns as 2-D views, so files with nmax=1 (scalar columns) work
        self._arrays = {}
        for col in _ARRAY_COLUMNS:
            if col in cat.dtype.names:
                arr = cat[col]
                self._arrays[col] = arr if arr.ndim == 2 else arr.reshape(cat.size, 1)
        self.nmax = self._arrays["start_row"].shape[1]
        self._box = cat["box_size"].astype("i8")
        self._ncut = cat["ncutout"].astype("i8")
        # native, contiguous copies of the layout columns (table columns are
        # big-endian strided views, several times slower to compute on)
        self._start = np.ascontiguousarray(self._arrays["start_row"], dtype="i8")
        self._pstart = (np.ascontiguousarray(self._arrays["psf_start_row"], dtype="i8")
                        if "psf_start_row" in self._arrays else None)
        self._psf_rows, self._psf_cols = self._psf_sizes()
        self._validate()
        self._index_stamps()
        self._jacobian_table: np.ndarray | None = None  # (nobj, nmax, 6), built on first use

    def _per_cutout(self, col: str) -> np.ndarray:
        """A PSF size column as (nobj, nmax): per object (1-D) or per cutout."""
        arr = np.asarray(self._cat[col]).astype("i8")
        if arr.ndim == 1:
            return np.repeat(arr[:, None], self.nmax, axis=1)
        arr = arr.reshape(self.size, -1)
        if arr.shape[1] != self.nmax:
            raise self._error(f"'{OBJECT_DATA}' column '{col}' has {arr.shape[1]} entries per "
                              f"object but start_row has {self.nmax}")
        return arr

    def _psf_sizes(self) -> tuple[np.ndarray | None, np.ndarray | None]:
        names = self._cat.dtype.names
        if "psf_row_size" in names and "psf_col_size" in names:
            return self._per_cutout("psf_row_size"), self._per_cutout("psf_col_size")
        if "psf_box_size" in names:
            size = self._per_cutout("psf_box_size")
            return size, size
        return None, None

    def _validate(self) -> None:
        """Fail at open, not hours into a run, on a damaged layout (no pixel reads)."""
        ids = self._cat["id"] if "id" in self._cat.dtype.names else None
        lengths = {t: self._cutout_len[t] for t in self.cutout_types}
        problem = validate.cutout_layout_problem(self._ncut, self._box, self._start, lengths,
                                                 ids)
        if problem is None and "file_id" in self._arrays:
            problem = validate.file_id_problem(
                self._ncut, np.ascontiguousarray(self._arrays["file_id"], dtype="i8"),
                self._image_info.size, ids)
        if problem is None and self._pstart is not None:
            if PSF_EXT not in self._hdus:
                problem = (f"'{OBJECT_DATA}' has PSF columns (psf_start_row) but the file has "
                           f"no '{PSF_EXT}' HDU (truncated file?)")
            elif self._psf_rows is None:
                problem = (f"'{OBJECT_DATA}' has psf_start_row but no psf_box_size or "
                           f"psf_row_size/psf_col_size columns")
            elif PSF_EXT in self._cutout_len:
                problem = validate.psf_layout_problem(
                    self._ncut, self._pstart, self._psf_rows,
                    self._psf_cols, self._cutout_len[PSF_EXT], ids)
        if problem is not None:
            raise self._error(problem)

    def _index_stamps(self) -> None:
        """Which objects' stamps (and PSF stamps) lie back to back in their HDUs,
        so one read per object and type serves every cutout."""
        used = np.arange(self.nmax)[None, :] < self._ncut[:, None]
        start = self._start
        expected = start[:, :1] + np.arange(self.nmax)[None, :] * (self._box**2)[:, None]
        self._contiguous = np.all((start == expected) | ~used, axis=1) & (self._ncut > 0)
        self._psf_contiguous = np.zeros(self.size, dtype=bool)
        if self.has_psf():
            pstart = self._pstart
            npix = np.where(used, self._psf_rows * self._psf_cols, 0)
            offsets = np.cumsum(npix, axis=1) - npix
            self._psf_contiguous = (
                np.all(((pstart == pstart[:, :1] + offsets) & (npix > 0)) | ~used, axis=1)
                & (self._ncut > 0) & (pstart[:, 0] >= 0))

    # --------------------------------------------------------------- basics
    def close(self) -> None:
        if getattr(self, "_raw", None) is not None:
            self._raw.close()
        if getattr(self, "_fits", None) is not None:
            self._fits.close()
            self._fits = None

    def __enter__(self) -> "MEDS":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    def __reduce__(self):
        # an open FITS handle cannot be pickled: ship the path, reopen on arrival
        # (lets dask/multiprocessing workers receive a MEDS object)
        return (type(self), (self.path,))

    def __repr__(self) -> str:
        return (f"MEDS({self.path!r}: {self.size} objects, {self._image_info.size} images, "
                f"types={list(self.cutout_types)})")

    @property
    def size(self) -> int:
        return int(self._cat.size)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, column: str) -> np.ndarray:
        try:
            return self._cat[column]
        except (KeyError, ValueError):
            raise self._bad_request(f"'{OBJECT_DATA}' has no '{column}' column") from None

    def cutout_array(self, column: str) -> np.ndarray:
        """A per-cutout column (``file_id``, ``orig_row``, ``dudrow``, ...) as an
        ``(nobj, nmax)`` array, also for files written with nmax = 1."""
        try:
            return self._arrays[column]
        except KeyError:
            raise self._bad_request(f"'{OBJECT_DATA}' has no '{column}' column") from None

    def get_cat(self) -> np.ndarray:
        """The object_data table (with ``number`` added as index+1 if absent)."""
        return self._cat

    def get_image_info(self) -> np.ndarray:
        return self._image_info

    def get_meta(self) -> np.ndarray | None:
        """The metadata table, or None if the file has no metadata HDU."""
        return self._meta

    @property
    def cutout_types(self) -> tuple[str, ...]:
        return self._types

    def has_cutout_type(self, cutout_type: str) -> bool:
        return cutout_type in self.cutout_types

    def has_psf(self) -> bool:
        """True when PSF stamps can be read: a ``psf`` image HDU, ``psf_start_row``
        and PSF size columns."""
        return (PSF_EXT in self._cutout_len and "psf_start_row" in self._arrays
                and self._psf_rows is not None)

    def require_psf(self) -> None:
        """Raise a one-line ``InputValueError`` saying why PSF stamps cannot be read,
        if they cannot (for callers that need them before any work starts)."""
        if PSF_EXT not in self._hdus:
            raise self._bad_request(f"no PSF stamps: the file has no '{PSF_EXT}' HDU")
        if PSF_EXT not in self._cutout_len:
            raise self._bad_request(f"no PSF stamps: the '{PSF_EXT}' HDU is a table")
        if not self.has_psf():
            raise self._bad_request(f"no PSF stamps: '{OBJECT_DATA}' has no psf_start_row "
                                    f"or PSF size columns")
        used = np.arange(self.nmax)[None, :] < self._ncut[:, None]
        if used.any() and not np.any(self._pstart[used] >= 0):
            raise self._bad_request("no PSF stamps: no cutout has a psf_start_row")

    def get_image_path(self, file_id: int) -> str:
        return self._image_field("image_path", file_id)

    def _image_field(self, column: str, file_id: int) -> Any:
        info = self._image_info
        if column not in (info.dtype.names or ()):
            raise self._bad_request(f"'{IMAGE_INFO}' has no '{column}' column")
        if not 0 <= int(file_id) < info.size:
            raise self._bad_request(f"file_id {file_id} out of range [0, {info.size})")
        value = info[column][int(file_id)]
        return value.strip() if isinstance(value, str) else value

    def get_number(self, iobj: int) -> int:
        """The object's seg map id: its ``number`` (index+1 when the column is absent)."""
        return self._cat["number"][self._check_obj(iobj)]

    def get_source_info(self, iobj: int, icutout: int) -> np.void:
        """The ``image_info`` row of the image cutout ``icutout`` was cut from."""
        iobj, icutout = self._check_cut(iobj, icutout)
        return self._image_info[int(self.cutout_array("file_id")[iobj, icutout])]

    def get_source_path(self, iobj: int, icutout: int) -> str:
        """``image_path`` of the image cutout ``icutout`` was cut from."""
        iobj, icutout = self._check_cut(iobj, icutout)
        return self.get_image_path(int(self.cutout_array("file_id")[iobj, icutout]))

    # -------------------------------------------------------------- indexing
    def _check_obj(self, iobj: int) -> int:
        iobj = int(iobj)
        if not 0 <= iobj < self.size:
            raise self._bad_request(f"object index {iobj} out of range [0, {self.size})")
        return iobj

    def _check_has_cutouts(self, iobj: int) -> int:
        iobj = self._check_obj(iobj)
        if self._ncut[iobj] == 0:
            raise self._bad_request(f"object {iobj} has no cutouts (ncutout=0)")
        return iobj

    def _check_cut(self, iobj: int, icut: int) -> tuple[int, int]:
        iobj = self._check_obj(iobj)
        icut = int(icut)
        ncut = int(self._ncut[iobj])
        if not 0 <= icut < ncut:
            raise self._bad_request(f"cutout index {icut} out of range for object {iobj} "
                                    f"(ncutout={ncut})")
        return iobj, icut

    def _check_cuts(self, iobj: int, icuts: Sequence[int]) -> tuple[int, list[int]]:
        iobj = self._check_obj(iobj)
        ncut = int(self._ncut[iobj])
        icuts = [int(i) for i in icuts]
        for i in icuts:
            if not 0 <= i < ncut:
                self._check_cut(iobj, i)  # raises the one-line error
        return iobj, icuts

    def _check_type(self, cutout_type: str) -> str:
        if cutout_type not in self._types:
            raise self._bad_request(f"no '{cutout_ext(cutout_type)}' HDU (cutout types: "
                                    f"{', '.join(self.cutout_types)})")
        return cutout_type

    def _read_slice(self, ext: str, key: str, start: int, npix: int) -> np.ndarray:
        if start < 0 or start + npix > self._cutout_len[key]:
            raise self._error(f"'{ext}' slice [{start}, {start + npix}) is past the end of "
                              f"the HDU (length {self._cutout_len[key]})")
        if npix == 0:
            return np.zeros(0, dtype="f4")
        try:
            if key in self._raw:
                return self._raw.read(key, start, npix)
            return self._hdus[ext][start:start + npix]
        except Exception as err:  # noqa: BLE001 - cfitsio read errors are bad input
            raise self._error(f"cannot read '{ext}' ({first_line(err)})") from None

    # --------------------------------------------------------------- cutouts
    def _object_stamps(self, iobj: int, cutout_type: str) -> np.ndarray | None:
        """All stamps of object ``iobj`` of one type as a ``(ncutout, box, box)``
        array (read once and kept until another object is asked for), or None
        when the object's stamps are not contiguous in the file."""
        hit = self._stamp_cache.get(cutout_type)
        if hit is not None and hit[0] == iobj:
            return hit[1]
        stack = None
        if self._contiguous[iobj]:
            box, ncut = int(self._box[iobj]), int(self._ncut[iobj])
            start = int(self._start[iobj, 0])
            stack = self._read_slice(cutout_ext(cutout_type), cutout_type, start,
                                     ncut * box * box).reshape(ncut, box, box)
        self._stamp_cache[cutout_type] = (iobj, stack)
        return stack

    def get_cutout(self, iobj: int, icutout: int, type: str = "image") -> np.ndarray:  # noqa: A002
        """Cutout ``icutout`` of object ``iobj`` as a (box, box) array (dtype as on
        disk); ``type='psf'`` gives the PSF stamp (:meth:`get_psf`)."""
        if type == PSF_EXT:
            return self.get_psf(iobj, icutout)
        iobj, icut = self._check_cut(iobj, icutout)
        self._check_type(type)
        box = int(self._box[iobj])
        stack = self._object_stamps(iobj, type)
        if stack is not None:
            # a copy: callers may modify the stamp they get
            return stack[icut].copy()
        start = int(self._start[iobj, icut])
        return self._read_slice(cutout_ext(type), type, start, box * box).reshape(box, box)

    def get_mosaic(self, iobj: int, type: str = "image") -> np.ndarray:  # noqa: A002
        """All cutouts of an object stacked vertically: (ncutout*box, box)."""
        iobj = self._check_has_cutouts(iobj)
        self._check_type(type)
        box, ncut = int(self._box[iobj]), int(self._ncut[iobj])
        stack = self._object_stamps(iobj, type)
        if stack is not None:
            return stack.reshape(ncut * box, box).copy()
        # not contiguous (non-standard file): read stamp by stamp
        return np.concatenate([self.get_cutout(iobj, i, type) for i in range(ncut)])

    def get_cutout_list(self, iobj: int, type: str = "image") -> list[np.ndarray]:  # noqa: A002
        """Every cutout of an object, as views into one mosaic (PSF stamps with
        ``type='psf'``)."""
        if type == PSF_EXT:
            return self.get_psf_list(iobj)
        return split_mosaic(self.get_mosaic(iobj, type))

    def get_cutout_stack(self, iobj: int, icuts: Sequence[int],
                         type: str = "image") -> np.ndarray:  # noqa: A002
        """Cutouts ``icuts`` of one object as a new ``(len(icuts), box, box)`` array."""
        iobj, icuts = self._check_cuts(iobj, icuts)
        cutout_type = self._check_type(type)
        box = int(self._box[iobj])
        stack = self._object_stamps(iobj, cutout_type)
        if stack is not None:
            return stack[icuts]
        if not icuts:
            return np.zeros((0, box, box), dtype=CUTOUT_DTYPES.get(cutout_type, "f4"))
        return np.stack([self.get_cutout(iobj, int(i), cutout_type) for i in icuts])

    def get_object_stack(self, iobj: int, type: str = "image") -> np.ndarray:  # noqa: A002
        """Every cutout of one object as a read-only ``(ncutout, box, box)`` array
        (one read; the same array serves later calls for this object and type)."""
        iobj = self._check_has_cutouts(iobj)
        cutout_type = self._check_type(type)
        stack = self._object_stamps(iobj, cutout_type)
        if stack is None:
            # not contiguous (non-standard file): read stamp by stamp
            stack = np.stack([self.get_cutout(iobj, i, cutout_type)
                              for i in range(int(self._ncut[iobj]))])
            self._stamp_cache[cutout_type] = (iobj, stack)
        stack.flags.writeable = False
        return stack

    def prefetch(self, iobj: int, types: Sequence[str]) -> None:
        """Start reading object ``iobj``'s stamps of ``types`` (``psf`` included) into
        the page cache in the background, so that a later read need not wait for
        the disk. Only a hint: does nothing for compressed files or non-contiguous
        stamps, never raises for a bad index."""
        if not 0 <= iobj < self.size or self._ncut[iobj] == 0:
            return
        ncut = int(self._ncut[iobj])
        for kind in types:
            if kind not in self._raw:
                continue
            if kind == PSF_EXT:
                if self._psf_contiguous[iobj]:
                    npix = int((self._psf_rows[iobj, :ncut] * self._psf_cols[iobj, :ncut]).sum())
                    self._raw.advise(PSF_EXT, int(self._pstart[iobj, 0]), npix)
            elif self._contiguous[iobj]:
                box = int(self._box[iobj])
                self._raw.advise(kind, int(self._start[iobj, 0]), ncut * box * box)

    def get_cutout_rowcol(self, iobj: int, icutout: int) -> tuple[float, float]:
        """(cutout_row, cutout_col): the object's position in the cutout."""
        iobj, icut = self._check_cut(iobj, icutout)
        return (self.cutout_array("cutout_row")[iobj, icut],
                self.cutout_array("cutout_col")[iobj, icut])

    # ------------------------------------------------------------------- psf
    def _object_psfs(self, iobj: int) -> np.ndarray | None:
        """All PSF pixels of ``iobj`` as one flat array when its PSF stamps are
        contiguous and valid (cached like the cutouts), else None."""
        hit = self._stamp_cache.get(PSF_EXT)
        if hit is not None and hit[0] == iobj:
            return hit[1]
        out = None
        if self._psf_contiguous[iobj]:
            ncut = int(self._ncut[iobj])
            npix = int((self._psf_rows[iobj, :ncut] * self._psf_cols[iobj, :ncut]).sum())
            out = self._read_slice(PSF_EXT, PSF_EXT, int(self._pstart[iobj, 0]),
                                   npix)
        self._stamp_cache[PSF_EXT] = (iobj, out)
        return out

    def get_psf(self, iobj: int, icutout: int) -> np.ndarray:
        """PSF stamp of a cutout; centre is (psf_cutout_row, psf_cutout_col)."""
        iobj, icut = self._check_cut(iobj, icutout)
        return self._psf_stamps(iobj, [icut])[0]

    def get_psf_stack(self, iobj: int, icuts: Sequence[int]) -> np.ndarray | list[np.ndarray]:
        """PSF stamps of cutouts ``icuts`` of one object (new arrays; one read): an
        ``(n, nrow, ncol)`` array when the object's PSF stamps share one shape (the
        usual case), else a list of 2-d arrays."""
        iobj, icuts = self._check_cuts(iobj, icuts)
        return self._psf_stamps(iobj, icuts)

    def _psf_stamps(self, iobj: int, icuts: list[int]) -> list[np.ndarray]:
        if not self.has_psf():
            self.require_psf()  # raises, saying why
        block = self._object_psfs(iobj)
        ncut = int(self._ncut[iobj])
        rows, cols = self._psf_rows[iobj, :ncut], self._psf_cols[iobj, :ncut]
        if block is not None and icuts and np.all(rows == rows[0]) and np.all(cols == cols[0]):
            # one shape: the block is a (ncutout, nrow, ncol) stack
            return block.reshape(ncut, int(rows[0]), int(cols[0]))[icuts]
        first = int(self._pstart[iobj, 0])
        out = []
        for icut in icuts:
            nrow, ncol = int(rows[icut]), int(cols[icut])
            start = int(self._pstart[iobj, icut])
            if nrow <= 0 or ncol <= 0 or start < 0:
                raise self._bad_request(f"object {iobj} cutout {icut} has no PSF stamp")
            if block is not None:
                off = start - first
                out.append(block[off:off + nrow * ncol].reshape(nrow, ncol).copy())
            else:
                out.append(self._read_slice(PSF_EXT, PSF_EXT, start,
                                            nrow * ncol).reshape(nrow, ncol))
        return out

    def get_psf_list(self, iobj: int) -> list[np.ndarray]:
        iobj = self._check_obj(iobj)
        return [self.get_psf(iobj, i) for i in range(int(self._ncut[iobj]))]

    # -------------------------------------------------------------- jacobian
    def get_jacobian(self, iobj: int, icutout: int) -> dict[str, float]:
        """dict(row0, col0, dudrow, dudcol, dvdrow, dvdcol); centre is the object."""
        iobj, icut = self._check_cut(iobj, icutout)
        table = self._jacobians()
        return dict(zip(regions.JACOBIAN_FIELDS, (float(x) for x in table[iobj, icut])))

    def _jacobians(self) -> np.ndarray:
        if self._jacobian_table is None:
            for col in _JACOBIAN_COLUMNS:
                if col not in self._arrays:
                    raise self._bad_request(f"'{OBJECT_DATA}' has no '{col}' column")
            self._jacobian_table = np.stack([self._arrays[c] for c in _JACOBIAN_COLUMNS],
                                            axis=2).astype("f8")
        return self._jacobian_table

    def jacobian_table(self) -> np.ndarray:
        """Every cutout's Jacobian as a read-only ``(nobj, nmax, 6)`` float64 array,
        columns as :meth:`get_jacobian_array`."""
        table = self._jacobians()
        table.flags.writeable = False
        return table

    def get_jacobian_array(self, iobj: int, icuts: Sequence[int]) -> np.ndarray:
        """Jacobians of cutouts ``icuts`` as an ``(n, 6)`` float64 array with columns
        (row0, col0, dudrow, dudcol, dvdrow, dvdcol): ``regions.JACOBIAN_FIELDS``,
        the order ``regions.map_coadd_seg_stack`` takes."""
        iobj, icuts = self._check_cuts(iobj, icuts)
        return self._jacobians()[iobj, icuts]

    def get_jacobian_matrix(self, iobj: int, icutout: int) -> np.matrix:
        """[[dudrow, dudcol], [dvdrow, dvdcol]] as a ``numpy.matrix`` (the
        reference's return type)."""
        iobj, icut = self._check_cut(iobj, icutout)
        return np.asmatrix(self._jacobians()[iobj, icut, 2:6].reshape(2, 2))

    def get_jacobian_list(self, iobj: int) -> list[dict[str, float]]:
        iobj = self._check_has_cutouts(iobj)
        return [self.get_jacobian(iobj, i) for i in range(int(self._ncut[iobj]))]

    # --------------------------------------------------------------- regions
    def _coadd_seg(self, iobj: int) -> np.ndarray:
        self._check_type("seg")
        if "file_id" in self._arrays and int(self._arrays["file_id"][iobj, 0]) != 0:
            raise self._bad_request(f"object {iobj} has no coadd cutout (needed for the "
                                    f"coadd seg)")
        return self.get_cutout(iobj, 0, "seg")

    def _seg_maps(self, iobj: int, icuts: list[int], reference: bool) -> np.ndarray:
        """The coadd seg stamp seen on cutouts ``icuts``: ``(n, box, box)``.
        Cutout 0 (the coadd) is the coadd seg itself. A singular coadd Jacobian
        raises ``numpy.linalg.LinAlgError``."""
        coadd_seg = self._coadd_seg(iobj)
        out = np.empty((len(icuts),) + coadd_seg.shape, dtype=coadd_seg.dtype)
        epochs = [k for k, icut in enumerate(icuts) if icut != 0]
        out[[k for k, icut in enumerate(icuts) if icut == 0]] = coadd_seg
        if epochs:
            jacs = self.get_jacobian_array(iobj, [0] + [icuts[k] for k in epochs])
            if reference:
                for k, jac in zip(epochs, jacs[1:]):
                    out[k] = regions.map_coadd_seg_reference(coadd_seg, jacs[0], jac,
                                                             coadd_seg.shape)
            else:
                out[epochs] = regions.map_coadd_seg_stack(coadd_seg, jacs[0], jacs[1:],
                                                          coadd_seg.shape)
        return out

    def _segid(self, iobj: int, reference: bool) -> int:
        """The object's id in the coadd seg: its ``number`` if the coadd seg stamp
        holds it (reference: always the coadd seg under the object's centre)."""
        coadd_seg = self._coadd_seg(iobj)
        row0, col0 = self._jacobians()[iobj, 0, :2]
        number = None if reference else int(self._cat["number"][iobj])
        return regions.object_segid(coadd_seg, row0, col0, number)

    def _region_keep(self, iobj: int, icuts: list[int], nearest: bool, restrict_to_seg: bool,
                     reference: bool) -> np.ndarray | None:
        """Boolean ``(n, box, box)`` mask of the pixels a weight region keeps, or None
        when the coadd Jacobian is singular (no pixel can be placed)."""
        try:
            segs = self._seg_maps(iobj, icuts, reference)
        except np.linalg.LinAlgError:
            log.warning("%s: object %d has a singular coadd Jacobian; its weight region "
                        "is empty", self.path, iobj)
            return None
        segid = self._segid(iobj, reference)
        if not reference:
            return regions.region_keep(segs, segid, nearest, restrict_to_seg)
        keep = regions.region_keep(segs, segid, False, restrict_to_seg)
        if not nearest:
            return keep
        # the reference's nearest-object test goes by number, its cweight by segid
        number = int(self.get_number(iobj))
        for k, seg in enumerate(segs):
            # the reference leaves the cweight as it is when the stamp holds two values
            if np.unique(seg).size != 2:
                keep[k] &= regions.reference_nearest_keep(seg, number)
        return keep

    def _weight_region(self, iobj: int, icuts: list[int], nearest: bool,
                       restrict_to_seg: bool = False, reference: bool = False) -> np.ndarray:
        weight = self.get_cutout_stack(iobj, icuts, "weight")
        keep = self._region_keep(iobj, icuts, nearest, restrict_to_seg, reference)
        if keep is None:
            return np.zeros_like(weight)
        return np.where(keep, weight, weight.dtype.type(0))

    def get_cweight_cutout(self, iobj: int, icutout: int, restrict_to_seg: bool = False,
                           reference: bool = False) -> np.ndarray:
        """The weight, zero where the coadd seg (mapped onto the cutout) is another
        object (and on sky too with ``restrict_to_seg``); dtype as on disk."""
        iobj, icut = self._check_cut(iobj, icutout)
        return self._weight_region(iobj, [icut], False, restrict_to_seg, reference)[0]

    def get_cweight_mosaic(self, iobj: int, restrict_to_seg: bool = False,
                           reference: bool = False) -> np.ndarray:
        iobj = self._check_has_cutouts(iobj)
        ncut, box = int(self._ncut[iobj]), int(self._box[iobj])
        return self._weight_region(iobj, list(range(ncut)), False, restrict_to_seg,
                                   reference).reshape(ncut * box, box)

    def get_cweight_cutout_list(self, iobj: int, restrict_to_seg: bool = False,
                                reference: bool = False) -> list[np.ndarray]:
        return split_mosaic(self.get_cweight_mosaic(iobj, restrict_to_seg, reference))

    def get_uberseg(self, iobj: int, icutout: int, fast: bool = True,
                    reference: bool = False) -> np.ndarray:
        """cweight, and sky pixels nearer another object than this one zeroed
        (float32). ``fast`` is accepted for compatibility: there is one algorithm."""
        iobj, icut = self._check_cut(iobj, icutout)
        return self._weight_region(iobj, [icut], True, False, reference)[0].astype("f4")

    def get_uberseg_list(self, iobj: int, fast: bool = True,
                         reference: bool = False) -> list[np.ndarray]:
        iobj = self._check_obj(iobj)
        ncut = int(self._ncut[iobj])
        if ncut == 0:
            return []
        return list(self._weight_region(iobj, list(range(ncut)), True, False,
                                        reference).astype("f4"))

    get_cweight_cutout_nearest = get_uberseg
    get_cweight_cutout_nearest_list = get_uberseg_list

    def _cseg(self, iobj: int, icuts: list[int], reference: bool) -> np.ndarray:
        seg = self.get_cutout_stack(iobj, icuts, "seg")
        keep = self._region_keep(iobj, icuts, False, False, reference)
        number = seg.dtype.type(self.get_number(iobj))
        return np.where(keep, number, seg.dtype.type(0)) if keep is not None else seg * 0

    def get_cseg_cutout(self, iobj: int, icutout: int, reference: bool = False) -> np.ndarray:
        """The object's ``number`` where cweight keeps the weight, 0 elsewhere."""
        iobj, icut = self._check_cut(iobj, icutout)
        return self._cseg(iobj, [icut], reference)[0]

    def get_cseg_mosaic(self, iobj: int, reference: bool = False) -> np.ndarray:
        iobj = self._check_has_cutouts(iobj)
        ncut, box = int(self._ncut[iobj]), int(self._box[iobj])
        return self._cseg(iobj, list(range(ncut)), reference).reshape(ncut * box, box)

    def get_cseg_cutout_list(self, iobj: int, reference: bool = False) -> list[np.ndarray]:
        return split_mosaic(self.get_cseg_mosaic(iobj, reference))

    def get_cseg_weight(self, iobj: int, icutout: int,
                        use_canonical_cen: bool = False) -> np.ndarray:
        """The weight inside the largest circle about the object (or the stamp
        centre) that touches no other object in the cutout's own seg stamp: the
        weight as on disk when no other object is in the stamp, else float64."""
        iobj, icut = self._check_cut(iobj, icutout)
        seg = self.get_cutout(iobj, icut, "seg")
        weight = self.get_cutout(iobj, icut, "weight")
        if use_canonical_cen:
            row, col = (np.array(weight.shape) - 1.0) / 2.0
        else:
            row, col = self.get_cutout_rowcol(iobj, icut)
        keep = regions.cseg_weight_keep(seg, int(self.get_number(iobj)), row, col)
        if keep.all():
            return weight
        # float64 once masked, as the reference returns
        return np.where(keep, weight, 0.0).astype("f8")

    def interpolate_coadd_seg(self, iobj: int, icutout: int,
                              reference: bool = False) -> np.ndarray:
        """The coadd seg stamp resampled onto cutout ``icutout`` (nearest pixel)."""
        iobj, icut = self._check_cut(iobj, icutout)
        return self._seg_maps_or_error(iobj, [icut], reference)[0]

    def interpolate_coadd_seg_mosaic(self, iobj: int, reference: bool = False) -> np.ndarray:
        iobj = self._check_has_cutouts(iobj)
        ncut, box = int(self._ncut[iobj]), int(self._box[iobj])
        return self._seg_maps_or_error(iobj, list(range(ncut)),
                                       reference).reshape(ncut * box, box)

    def _seg_maps_or_error(self, iobj: int, icuts: list[int], reference: bool) -> np.ndarray:
        try:
            return self._seg_maps(iobj, icuts, reference)
        except np.linalg.LinAlgError:
            raise self._bad_request(f"object {iobj}: singular coadd Jacobian, the coadd seg "
                                    f"cannot be mapped") from None
