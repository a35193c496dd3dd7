"""Lazy, slice-based MEDS reader.

The small tables (``object_data``, ``image_info``, ``metadata``) are read once
at open; pixels are read per request as slices of the 1-D cutout HDUs (one
``pread`` of the slice's bytes for plain HDUs, ``fits[ext][start:end]`` for
tile-compressed or scaled ones), so memory is bounded by the stamps asked for,
never by the file.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from ..errors import InputFileError
from ..fitsfile import first_line, open_fits_persistent
from . import regions
from .rawread import RawSliceReader, is_plain_fits, raw_layout
from .schema import CUTOUT_DTYPES, IMAGE_INFO, METADATA, OBJECT_DATA, PSF_EXT, cutout_ext

#: object_data columns that are per-cutout arrays (``[nmax]``)
_ARRAY_COLUMNS = ("file_id", "start_row", "orig_row", "orig_col", "orig_start_row",
                  "orig_start_col", "cutout_row", "cutout_col", "dudrow", "dudcol",
                  "dvdrow", "dvdcol", "psf_start_row", "psf_row_size", "psf_col_size",
                  "psf_cutout_row", "psf_cutout_col")
_REQUIRED_COLUMNS = ("box_size", "ncutout", "start_row")
_JACOBIAN_COLUMNS = ("cutout_row", "cutout_col", "dudrow", "dudcol", "dvdrow", "dvdcol")


class MEDS:
    """Read a MEDS file: ``with MEDS(path) as m: im = m.get_cutout(iobj, icut)``.

    Bad input raises ``InputFileError`` with a one-line message naming the file.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = str(path)
        self._fits = open_fits_persistent(self.path)
        try:
            self._index_hdus()
            self._load_tables()
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ open
    def _error(self, problem: str) -> InputFileError:
        return InputFileError(self.path, problem)

    def _index_hdus(self) -> None:
        self._hdus: dict[str, Any] = {}
        data_end = 0
        for hdu in self._fits:
            name = hdu.get_extname().strip().lower()
            if name and name not in self._hdus:
                self._hdus[name] = hdu
            data_end = max(data_end, hdu.get_offsets()["data_end"])
        nbytes = os.path.getsize(self.path)
        plain = is_plain_fits(self.path)
        # a gzip-wrapped file is smaller than its HDUs; cfitsio inflates it in memory
        if plain and data_end > nbytes:
            raise self._error(f"truncated file: {nbytes} bytes but its HDUs need {data_end}")
        for name in (OBJECT_DATA, IMAGE_INFO, cutout_ext("image")):
            if name not in self._hdus:
                hint = " (truncated file?)" if nbytes % 2880 else ""
                raise self._error(f"not a MEDS file: no '{name}' HDU{hint}")
        # cutout HDU lengths: 1-D image HDUs named <type>_cutouts
        self._cutout_len: dict[str, int] = {}
        for name, hdu in self._hdus.items():
            if name.endswith("_cutouts") or name == PSF_EXT:
                if hdu.get_exttype() == "BINARY_TBL" or hdu.get_exttype() == "ASCII_TBL":
                    if name == PSF_EXT:
                        continue  # some makers put a psf table here; not stamps
                    raise self._error(f"HDU '{name}' is a table, expected a 1-D image")
                dims = hdu.get_dims()
                if len(dims) != 1:
                    raise self._error(f"HDU '{name}' has shape {tuple(dims)}, expected 1-D")
                key = PSF_EXT if name == PSF_EXT else name[: -len("_cutouts")]
                self._cutout_len[key] = int(dims[0])
        self._types = tuple(t for t in self._cutout_len if t != PSF_EXT)
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
            # MEDS.md: number defaults to index+1
            descr = cat.dtype.descr + [("number", "i8")]
            full = np.zeros(cat.size, dtype=descr)
            for col in names:
                full[col] = cat[col]
            full["number"] = np.arange(1, cat.size + 1)
            cat = full
        self._cat = cat
        # per-cutout columns as 2-D views, so files with nmax=1 (scalar columns) work
        self._arrays = {}
        for col in _ARRAY_COLUMNS:
            if col in cat.dtype.names:
                arr = cat[col]
                self._arrays[col] = arr if arr.ndim == 2 else arr.reshape(cat.size, 1)
        self.nmax = self._arrays["start_row"].shape[1]
        self._box = cat["box_size"].astype("i8")
        self._ncut = cat["ncutout"].astype("i8")
        self._check_start_rows()
        self._index_stamps()
        self._jacobian_table: np.ndarray | None = None  # (nobj, nmax, 6), built on first use

        self._image_info = self._read_table(IMAGE_INFO)
        self._meta = self._read_table(METADATA) if METADATA in self._hdus else None

    def _check_start_rows(self) -> None:
        """Fail at open, not hours into a run, if a stamp lies outside its HDU."""
        bad = (self._ncut < 0) | (self._ncut > self.nmax) | (self._box < 0)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise self._error(f"object {i}: ncutout={self._ncut[i]} box_size={self._box[i]} "
                              f"invalid (nmax={self.nmax})")
        used = np.arange(self.nmax)[None, :] < self._ncut[:, None]
        start = self._arrays["start_row"]
        end = start + (self._box**2)[:, None]
        length = min(self._cutout_len[t] for t in self.cutout_types)
        bad = used & ((start < 0) | (end > length))
        if bad.any():
            i, j = (int(k[0]) for k in np.nonzero(bad))
            raise self._error(f"object {i} cutout {j}: start_row {start[i, j]} + "
                              f"box_size**2 {self._box[i]**2} is past the end of the "
                              f"cutout HDUs (length {length})")

    def _index_stamps(self) -> None:
        """Which objects' stamps (and PSF stamps) lie back to back in their HDUs,
        so one read per object and type serves every cutout."""
        used = np.arange(self.nmax)[None, :] < self._ncut[:, None]
        start = self._arrays["start_row"].astype("i8")
        expected = start[:, :1] + np.arange(self.nmax)[None, :] * (self._box**2)[:, None]
        self._contiguous = np.all((start == expected) | ~used, axis=1) & (self._ncut > 0)
        self._psf_rows = self._psf_cols = None
        if "psf_row_size" in self._arrays and "psf_col_size" in self._arrays:
            self._psf_rows = self._arrays["psf_row_size"].astype("i8")
            self._psf_cols = self._arrays["psf_col_size"].astype("i8")
        elif "psf_box_size" in self._cat.dtype.names:
            size = np.asarray(self._cat["psf_box_size"]).astype("i8")
            size = (size.reshape(self.size, -1) if size.ndim > 1
                    else np.repeat(size[:, None], self.nmax, axis=1))
            self._psf_rows = self._psf_cols = size
        self._psf_contiguous = np.zeros(self.size, dtype=bool)
        if (self._psf_rows is not None and "psf_start_row" in self._arrays
                and PSF_EXT in self._cutout_len):
            pstart = self._arrays["psf_start_row"].astype("i8")
            npix = self._psf_rows * self._psf_cols
            offsets = np.cumsum(np.where(used, npix, 0), axis=1) - np.where(used, npix, 0)
            total = np.where(used, npix, 0).sum(axis=1)
            self._psf_contiguous = (
                np.all(((pstart == pstart[:, :1] + offsets) & (npix > 0)) | ~used, axis=1)
                & (self._ncut > 0) & (pstart[:, 0] >= 0)
                & (pstart[:, 0] + total <= self._cutout_len[PSF_EXT]))

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
            raise self._error(f"'{OBJECT_DATA}' has no '{column}' column") from None

    def cutout_array(self, column: str) -> np.ndarray:
        """A per-cutout column (``file_id``, ``orig_row``, ``dudrow``, ...) as an
        ``(nobj, nmax)`` array, also for files written with nmax = 1."""
        try:
            return self._arrays[column]
        except KeyError:
            raise self._error(f"'{OBJECT_DATA}' has no '{column}' column") from None

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
        return PSF_EXT in self._cutout_len and "psf_start_row" in self._arrays

    def get_image_path(self, file_id: int) -> str:
        return self._image_field("image_path", file_id)

    def _image_field(self, column: str, file_id: int) -> Any:
        info = self._image_info
        if column not in (info.dtype.names or ()):
            raise self._error(f"'{IMAGE_INFO}' has no '{column}' column")
        if not 0 <= int(file_id) < info.size:
            raise self._error(f"file_id {file_id} out of range [0, {info.size})")
        value = info[column][int(file_id)]
        return value.strip() if isinstance(value, str) else value

    # -------------------------------------------------------------- indexing
    def _check_obj(self, iobj: int) -> int:
        iobj = int(iobj)
        if not 0 <= iobj < self.size:
            raise self._error(f"object index {iobj} out of range [0, {self.size})")
        return iobj

    def _check_cut(self, iobj: int, icut: int) -> tuple[int, int]:
        iobj = self._check_obj(iobj)
        icut = int(icut)
        ncut = int(self._ncut[iobj])
        if not 0 <= icut < ncut:
            raise self._error(f"cutout index {icut} out of range for object {iobj} "
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
            raise self._error(f"no '{cutout_ext(cutout_type)}' HDU (cutout types: "
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
            start = int(self._arrays["start_row"][iobj, 0])
            stack = self._read_slice(cutout_ext(cutout_type), cutout_type, start,
                                     ncut * box * box).reshape(ncut, box, box)
        self._stamp_cache[cutout_type] = (iobj, stack)
        return stack

    def get_cutout(self, iobj: int, icut: int, type: str = "image") -> np.ndarray:  # noqa: A002
        """Cutout ``icut`` of object ``iobj`` as a (box, box) array (dtype as on disk)."""
        iobj, icut = self._check_cut(iobj, icut)
        self._check_type(type)
        box = int(self._box[iobj])
        npix = box * box
        stack = self._object_stamps(iobj, type)
        if stack is not None:
            # a copy: callers may modify the stamp they get
            return stack[icut].copy()
        start = int(self._arrays["start_row"][iobj, icut])
        return self._read_slice(cutout_ext(type), type, start, npix).reshape(box, box)

    def get_mosaic(self, iobj: int, type: str = "image") -> np.ndarray:  # noqa: A002
        """All cutouts of an object stacked vertically: (ncutout*box, box)."""
        iobj = self._check_obj(iobj)
        self._check_type(type)
        box, ncut = int(self._box[iobj]), int(self._ncut[iobj])
        if ncut == 0:
            return np.zeros((0, box), dtype=CUTOUT_DTYPES.get(type, "f4"))
        stack = self._object_stamps(iobj, type)
        if stack is not None:
            return stack.reshape(ncut * box, box).copy()
        # not contiguous (non-standard file): read stamp by stamp
        return np.concatenate([self.get_cutout(iobj, i, type) for i in range(ncut)])

    def get_cutout_list(self, iobj: int, type: str = "image") -> list[np.ndarray]:  # noqa: A002
        """Every cutout of an object (one read: the object's stamps are contiguous)."""
        mosaic = self.get_mosaic(iobj, type)
        box = int(self._box[iobj])
        return [mosaic[i * box:(i + 1) * box] for i in range(int(self._ncut[iobj]))]

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
            out = self._read_slice(PSF_EXT, PSF_EXT, int(self._arrays["psf_start_row"][iobj, 0]),
                                   npix)
        self._stamp_cache[PSF_EXT] = (iobj, out)
        return out

    def get_psf(self, iobj: int, icut: int) -> np.ndarray:
        """PSF stamp of a cutout; centre is (psf_cutout_row, psf_cutout_col)."""
        iobj, icut = self._check_cut(iobj, icut)
        return self._psf_stamps(iobj, [icut])[0]

    def get_psf_stack(self, iobj: int, icuts: Sequence[int]) -> np.ndarray | list[np.ndarray]:
        """PSF stamps of cutouts ``icuts`` of one object (new arrays; one read): an
        ``(n, nrow, ncol)`` array when the object's PSF stamps share one shape (the
        usual case), else a list of 2-d arrays."""
        iobj, icuts = self._check_cuts(iobj, icuts)
        return self._psf_stamps(iobj, icuts)

    def _psf_stamps(self, iobj: int, icuts: list[int]) -> list[np.ndarray]:
        if not self.has_psf():
            raise self._error(f"no '{PSF_EXT}' HDU or no 'psf_start_row' column")
        if self._psf_rows is None:
            raise self._error("no 'psf_box_size' or 'psf_row_size'/'psf_col_size' columns")
        block = self._object_psfs(iobj)
        ncut = int(self._ncut[iobj])
        rows, cols = self._psf_rows[iobj, :ncut], self._psf_cols[iobj, :ncut]
        if block is not None and icuts and np.all(rows == rows[0]) and np.all(cols == cols[0]):
            # one shape: the block is a (ncutout, nrow, ncol) stack
            return block.reshape(ncut, int(rows[0]), int(cols[0]))[icuts]
        first = int(self._arrays["psf_start_row"][iobj, 0])
        out = []
        for icut in icuts:
            nrow, ncol = int(rows[icut]), int(cols[icut])
            start = int(self._arrays["psf_start_row"][iobj, icut])
            if nrow <= 0 or ncol <= 0 or start < 0:
                raise self._error(f"object {iobj} cutout {icut} has no PSF stamp")
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
    def get_jacobian(self, iobj: int, icut: int) -> dict[str, float]:
        """dict(row0, col0, dudrow, dudcol, dvdrow, dvdcol); centre is the object."""
        iobj, icut = self._check_cut(iobj, icut)
        for col in _JACOBIAN_COLUMNS:
            if col not in self._arrays:
                raise self._error(f"'{OBJECT_DATA}' has no '{col}' column")
        a = self._arrays
        return {"row0": float(a["cutout_row"][iobj, icut]),
                "col0": float(a["cutout_col"][iobj, icut]),
                "dudrow": float(a["dudrow"][iobj, icut]),
                "dudcol": float(a["dudcol"][iobj, icut]),
                "dvdrow": float(a["dvdrow"][iobj, icut]),
                "dvdcol": float(a["dvdcol"][iobj, icut])}

    def get_jacobian_array(self, iobj: int, icuts: Sequence[int]) -> np.ndarray:
        """Jacobians of cutouts ``icuts`` as an ``(n, 6)`` float64 array with columns
        (row0, col0, dudrow, dudcol, dvdrow, dvdcol): ``regions.JACOBIAN_FIELDS``,
        the order ``regions.map_coadd_seg_stack`` takes."""
        iobj, icuts = self._check_cuts(iobj, icuts)
        if self._jacobian_table is None:
            for col in _JACOBIAN_COLUMNS:
                if col not in self._arrays:
                    raise self._error(f"'{OBJECT_DATA}' has no '{col}' column")
            self._jacobian_table = np.stack([self._arrays[c] for c in _JACOBIAN_COLUMNS],
                                            axis=2).astype("f8")
        return self._jacobian_table[iobj, icuts]

    def get_jacobian_matrix(self, iobj: int, icut: int) -> np.ndarray:
        j = self.get_jacobian(iobj, icut)
        return np.array([[j["dudrow"], j["dudcol"]], [j["dvdrow"], j["dvdcol"]]])

    def get_jacobian_list(self, iobj: int) -> list[dict[str, float]]:
        iobj = self._check_obj(iobj)
        return [self.get_jacobian(iobj, i) for i in range(int(self._ncut[iobj]))]

    # --------------------------------------------------------------- regions
    def _region_inputs(self, iobj: int, icut: int):
        """Weight of the cutout, coadd seg stamp, the object's seg id, Jacobians."""
        iobj, icut = self._check_cut(iobj, icut)
        self._check_type("weight")
        self._check_type("seg")
        if "file_id" in self._arrays and int(self._arrays["file_id"][iobj, 0]) != 0:
            raise self._error(f"object {iobj} has no coadd cutout (needed for the coadd seg)")
        weight = self.get_cutout(iobj, icut, "weight").astype("f8")
        coadd_seg = self.get_cutout(iobj, 0, "seg")
        jc = self.get_jacobian(iobj, 0)
        number = int(self._cat["number"][iobj]) if self._has_number else None
        segid = regions.object_segid(coadd_seg, jc["row0"], jc["col0"], number)
        je = self.get_jacobian(iobj, icut) if icut > 0 else None
        return weight, coadd_seg, segid, jc, je

    def get_cweight_cutout(self, iobj: int, icut: int) -> np.ndarray:
        """Weight with other objects' coadd-seg pixels set to zero (MEDS.md)."""
        weight, seg, segid, jc, je = self._region_inputs(iobj, icut)
        return regions.cweight(weight, seg, segid, jac_coadd=jc, jac_epoch=je)

    def get_cweight_cutout_list(self, iobj: int) -> list[np.ndarray]:
        iobj = self._check_obj(iobj)
        return [self.get_cweight_cutout(iobj, i) for i in range(int(self._ncut[iobj]))]

    def get_uberseg(self, iobj: int, icut: int) -> np.ndarray:
        """cweight plus sky pixels nearer another object zeroed (MEDS.md)."""
        weight, seg, segid, jc, je = self._region_inputs(iobj, icut)
        return regions.uberseg(weight, seg, segid, jac_coadd=jc, jac_epoch=je)

    def get_uberseg_list(self, iobj: int) -> list[np.ndarray]:
        iobj = self._check_obj(iobj)
        return [self.get_uberseg(iobj, i) for i in range(int(self._ncut[iobj]))]

    get_cweight_cutout_nearest = get_uberseg
