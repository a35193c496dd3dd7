"""Lazy, slice-based MEDS reader.

The small tables (``object_data``, ``image_info``, ``metadata``) are read once
at open; pixels are read per request as slices of the 1-D cutout HDUs
(``fits[ext][start:end]``), so memory is bounded by the stamps asked for,
never by the file.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import fitsio
import numpy as np

from ..errors import InputFileError
from . import regions
from .schema import CUTOUT_DTYPES, IMAGE_INFO, METADATA, OBJECT_DATA, PSF_EXT, cutout_ext

#: object_data columns that are per-cutout arrays (``[nmax]``)
_ARRAY_COLUMNS = ("file_id", "start_row", "orig_row", "orig_col", "orig_start_row",
                  "orig_start_col", "cutout_row", "cutout_col", "dudrow", "dudcol",
                  "dvdrow", "dvdcol", "psf_start_row", "psf_row_size", "psf_col_size",
                  "psf_cutout_row", "psf_cutout_col")
_REQUIRED_COLUMNS = ("box_size", "ncutout", "start_row")
_JACOBIAN_COLUMNS = ("cutout_row", "cutout_col", "dudrow", "dudcol", "dvdrow", "dvdcol")


def _one_line(err: BaseException) -> str:
    """First non-empty line of an exception message (cfitsio's span several)."""
    for line in str(err).splitlines():
        if line.strip():
            return line.strip()
    return type(err).__name__


class MEDS:
    """Read a MEDS file: ``with MEDS(path) as m: im = m.get_cutout(iobj, icut)``.

    Bad input raises ``InputFileError`` with a one-line message naming the file.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = str(path)
        if not os.path.exists(self.path):
            raise InputFileError(self.path, "no such file")
        if os.path.isdir(self.path):
            raise InputFileError(self.path, "is a directory, not a MEDS file")
        try:
            self._fits = fitsio.FITS(self.path)
        except OSError as err:
            raise InputFileError(self.path, f"not a readable FITS file ({_one_line(err)})") from None
        try:
            self._index_hdus()
            self._load_tables()
        except BaseException:
            self._fits.close()
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
        if data_end > nbytes:
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
        # the stamps of the last object read, per cutout type: a fitter asks
        # for several cutouts and types of one object, and one read per type
        # costs what one read per stamp did (bounded by one object's pixels)
        self._stamp_cache: dict[str, tuple[int, np.ndarray | None]] = {}

    def _read_table(self, name: str) -> np.ndarray:
        try:
            return self._hdus[name].read()
        except Exception as err:  # noqa: BLE001 - any read failure is bad input
            raise self._error(f"cannot read '{name}' table ({_one_line(err)})") from None

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

    # --------------------------------------------------------------- basics
    def close(self) -> None:
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
            return self._hdus[ext][start:start + npix]
        except Exception as err:  # noqa: BLE001 - cfitsio read errors are bad input
            raise self._error(f"cannot read '{ext}' ({_one_line(err)})") from None

    # --------------------------------------------------------------- cutouts
    def _object_stamps(self, iobj: int, cutout_type: str) -> np.ndarray | None:
        """All stamps of object ``iobj`` of one type as one flat array (read once
        and kept until another object is asked for), or None when the object's
        stamps are not contiguous in the file."""
        hit = self._stamp_cache.get(cutout_type)
        if hit is not None and hit[0] == iobj:
            return hit[1]
        box, ncut = int(self._box[iobj]), int(self._ncut[iobj])
        starts = self._arrays["start_row"][iobj, :ncut]
        flat = None
        if ncut > 0 and np.all(starts == starts[0] + np.arange(ncut) * box * box):
            flat = self._read_slice(cutout_ext(cutout_type), cutout_type, int(starts[0]),
                                    ncut * box * box)
        self._stamp_cache[cutout_type] = (iobj, flat)
        return flat

    def get_cutout(self, iobj: int, icut: int, type: str = "image") -> np.ndarray:  # noqa: A002
        """Cutout ``icut`` of object ``iobj`` as a (box, box) array (dtype as on disk)."""
        iobj, icut = self._check_cut(iobj, icut)
        self._check_type(type)
        box = int(self._box[iobj])
        npix = box * box
        flat = self._object_stamps(iobj, type)
        if flat is not None:
            # a copy: callers may modify the stamp they get
            return flat[icut * npix:(icut + 1) * npix].reshape(box, box).copy()
        start = int(self._arrays["start_row"][iobj, icut])
        return self._read_slice(cutout_ext(type), type, start, npix).reshape(box, box)

    def get_mosaic(self, iobj: int, type: str = "image") -> np.ndarray:  # noqa: A002
        """All cutouts of an object stacked vertically: (ncutout*box, box)."""
        iobj = self._check_obj(iobj)
        self._check_type(type)
        box, ncut = int(self._box[iobj]), int(self._ncut[iobj])
        if ncut == 0:
            return np.zeros((0, box), dtype=CUTOUT_DTYPES.get(type, "f4"))
        flat = self._object_stamps(iobj, type)
        if flat is not None:
            return flat.reshape(ncut * box, box).copy()
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
        iobj = self._check_obj(iobj)
        icuts = [self._check_cut(iobj, int(i))[1] for i in icuts]
        cutout_type = self._check_type(type)
        box = int(self._box[iobj])
        flat = self._object_stamps(iobj, cutout_type)
        if flat is not None:
            return flat.reshape(-1, box, box)[icuts]
        return np.stack([self.get_cutout(iobj, i, cutout_type) for i in icuts]) if icuts \
            else np.zeros((0, box, box))

    # ------------------------------------------------------------------- psf
    def _psf_shape(self, iobj: int, icut: int) -> tuple[int, int]:
        names = self._cat.dtype.names
        if "psf_row_size" in self._arrays and "psf_col_size" in self._arrays:
            return (int(self._arrays["psf_row_size"][iobj, icut]),
                    int(self._arrays["psf_col_size"][iobj, icut]))
        if "psf_box_size" in names:
            size = np.asarray(self._cat["psf_box_size"][iobj]).reshape(-1)
            n = int(size[icut] if size.size > 1 else size[0])
            return n, n
        raise self._error("no 'psf_box_size' or 'psf_row_size'/'psf_col_size' columns")

    def _object_psfs(self, iobj: int) -> tuple[int, np.ndarray] | None:
        """(first start row, flat pixels) of all PSF stamps of ``iobj`` when they are
        contiguous and valid (cached like the cutouts), else None."""
        hit = self._stamp_cache.get(PSF_EXT)
        if hit is not None and hit[0] == iobj:
            return hit[1]
        ncut = int(self._ncut[iobj])
        out = None
        if ncut > 0:
            starts = self._arrays["psf_start_row"][iobj, :ncut].astype("i8")
            sizes = np.array([np.prod(self._psf_shape(iobj, i)) for i in range(ncut)],
                             dtype="i8")
            if (np.all(sizes > 0) and starts[0] >= 0
                    and np.all(starts[1:] == starts[:-1] + sizes[:-1])
                    and starts[0] + sizes.sum() <= self._cutout_len[PSF_EXT]):
                first = int(starts[0])
                out = (first, self._read_slice(PSF_EXT, PSF_EXT, first, int(sizes.sum())))
        self._stamp_cache[PSF_EXT] = (iobj, out)
        return out

    def get_psf(self, iobj: int, icut: int) -> np.ndarray:
        """PSF stamp of a cutout; centre is (psf_cutout_row, psf_cutout_col)."""
        iobj, icut = self._check_cut(iobj, icut)
        if not self.has_psf():
            raise self._error(f"no '{PSF_EXT}' HDU or no 'psf_start_row' column")
        nrow, ncol = self._psf_shape(iobj, icut)
        start = int(self._arrays["psf_start_row"][iobj, icut])
        if nrow <= 0 or ncol <= 0 or start < 0:
            raise self._error(f"object {iobj} cutout {icut} has no PSF stamp")
        block = self._object_psfs(iobj)
        if block is not None:
            off = start - block[0]
            return block[1][off:off + nrow * ncol].reshape(nrow, ncol).copy()
        return self._read_slice(PSF_EXT, PSF_EXT, start, nrow * ncol).reshape(nrow, ncol)

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
