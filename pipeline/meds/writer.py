"""MEDS writer (the "MEDS maker"): source images + catalogue -> MEDS file.

The small tables are planned in memory first; the 1-D cutout HDUs are then
created at full length and each object's stamps are written at their offset,
so memory does not grow with the file. Output goes to a temporary name and is
renamed into place (``atomic_fits``). No timestamps are written: the same
inputs give a byte-identical file.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from typing import Any, Callable, Sequence, Union

import fitsio
import numpy as np

from ..errors import PipelineError
from ..fitsfile import atomic_fits
from .schema import (CUTOUT_DTYPES, DEFAULT_MAGZP_REF, IMAGE_INFO, METADATA, OBJECT_DATA,
                     OFF_IMAGE_FILL, PSF_DTYPE, PSF_EXT, UNUSED, cutout_ext)
from .wcs import MedsWCS

log = logging.getLogger(__name__)

PsfSpec = Union[np.ndarray, Callable[[float, float], np.ndarray], None]

#: cutout types ``write_meds`` can produce, in HDU order (attribute of SourceImage)
_WRITTEN_TYPES = ("image", "weight", "seg", "bmask", "noise")

#: object_data columns computed by the writer (catalogue columns of these names are replaced)
_COMPUTED = {"id", "number", "box_size", "ra", "dec", "ncutout", "file_id", "start_row",
             "orig_row", "orig_col", "orig_start_row", "orig_start_col", "cutout_row",
             "cutout_col", "dudrow", "dudcol", "dvdrow", "dvdcol", "psf_box_size",
             "psf_row_size", "psf_col_size", "psf_start_row", "psf_cutout_row",
             "psf_cutout_col"}


class MedsInputError(PipelineError, ValueError):
    """Inputs to ``write_meds`` are inconsistent (odd box size, shape mismatch, ...)."""


@dataclass
class SourceImage:
    """One source image (row 0 of image_info is the coadd) and its companions."""

    image: np.ndarray
    wcs: MedsWCS
    weight: np.ndarray | None = None
    seg: np.ndarray | None = None
    bmask: np.ndarray | None = None
    noise: np.ndarray | None = None
    #: constant PSF image, or f(row, col) -> PSF image (same shape for all calls);
    #: the PSF centre is ((n-1)/2, (m-1)/2) of the returned image
    psf: PsfSpec = None
    image_path: str = ""
    magzp: float = 30.0
    image_flags: int = 0
    #: -1 means "use the row index in image_info"
    image_id: int = -1


# --------------------------------------------------------------------- checks
def _check_inputs(catalog: np.ndarray, images: Sequence[SourceImage]) -> None:
    names = catalog.dtype.names or ()
    for col in ("id", "ra", "dec", "box_size"):
        if col not in names:
            raise MedsInputError(f"catalog has no '{col}' column")
    if catalog.size == 0:
        raise MedsInputError("catalog is empty (a MEDS file needs at least one object)")
    box = np.asarray(catalog["box_size"])
    bad = (box <= 0) | (box % 2 != 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise MedsInputError(f"catalog row {i}: box_size {box[i]} must be even and > 0")
    if len(images) == 0:
        raise MedsInputError("no source images (images[0] must be the coadd)")
    for i, src in enumerate(images):
        if np.ndim(src.image) != 2:
            raise MedsInputError(f"image {i}: image must be 2-D, got shape {np.shape(src.image)}")
        for t in _WRITTEN_TYPES[1:]:
            arr = getattr(src, t)
            if arr is not None and np.shape(arr) != np.shape(src.image):
                raise MedsInputError(f"image {i}: {t} shape {np.shape(arr)} != image shape "
                                     f"{np.shape(src.image)}")
    with_weight = [src.weight is not None for src in images]
    if any(with_weight) and not all(with_weight):
        raise MedsInputError(f"weight given for some images but not for image "
                             f"{with_weight.index(False)}")


def _psf_shape(src: SourceImage, i: int) -> tuple[int, int] | None:
    if src.psf is None:
        return None
    if callable(src.psf):
        nrow, ncol = src.image.shape
        arr = np.asarray(src.psf((nrow - 1) / 2.0, (ncol - 1) / 2.0))
    else:
        arr = np.asarray(src.psf)
    if arr.ndim != 2 or min(arr.shape) < 1:
        raise MedsInputError(f"image {i}: PSF must be a 2-D image, got shape {arr.shape}")
    return (int(arr.shape[0]), int(arr.shape[1]))


# ------------------------------------------------------------------- planning
def _plan_objects(catalog: np.ndarray, images: Sequence[SourceImage], nmax: int | None,
                  psf_shapes: list[tuple[int, int] | None]) -> np.ndarray:
    """Build object_data: which images each object lands on, where, Jacobians, offsets."""
    nobj, nimg = catalog.size, len(images)
    ra = np.asarray(catalog["ra"], dtype="f8")
    dec = np.asarray(catalog["dec"], dtype="f8")
    box = np.asarray(catalog["box_size"], dtype="i8")

    pos = np.empty((nimg, 2, nobj))
    inside = np.zeros((nimg, nobj), dtype=bool)
    for i, src in enumerate(images):
        row, col = src.wcs.sky_to_image(ra, dec)
        pos[i, 0], pos[i, 1] = row, col
        nrow, ncol = src.image.shape
        # the pixel grid spans [-0.5, n - 0.5) in 0-offset coordinates
        inside[i] = (row >= -0.5) & (row < nrow - 0.5) & (col >= -0.5) & (col < ncol - 0.5)

    ncut_all = inside.sum(axis=0)
    need = int(ncut_all.max()) if nobj else 0
    if nmax is None:
        nmax = max(2, need)
    elif nmax < 2:
        raise MedsInputError(f"nmax must be >= 2 (a 1-element array column reads back "
                             f"as a scalar), got {nmax}")
    elif need > nmax:
        log.warning("%d objects land on more than nmax=%d images; keeping the first %d",
                    int((ncut_all > nmax).sum()), nmax, nmax)

    psf_square = [s for s in psf_shapes if s is not None and s[0] == s[1]]
    use_psf_box = (all(s is not None for s in psf_shapes)
                   and len(set(psf_square)) == 1 and len(psf_square) == nimg)
    has_psf = any(s is not None for s in psf_shapes)

    descr: list[tuple[Any, ...]] = [
        ("id", "i8"), ("number", "i8"), ("box_size", "i8"), ("ra", "f8"), ("dec", "f8"),
        ("ncutout", "i8"), ("file_id", "i8", (nmax,)), ("start_row", "i8", (nmax,)),
        ("orig_row", "f8", (nmax,)), ("orig_col", "f8", (nmax,)),
        ("orig_start_row", "i8", (nmax,)), ("orig_start_col", "i8", (nmax,)),
        ("cutout_row", "f8", (nmax,)), ("cutout_col", "f8", (nmax,)),
        ("dudrow", "f8", (nmax,)), ("dudcol", "f8", (nmax,)),
        ("dvdrow", "f8", (nmax,)), ("dvdcol", "f8", (nmax,)),
    ]
    if has_psf:
        if use_psf_box:
            descr.append(("psf_box_size", "i4"))
        else:
            descr += [("psf_row_size", "i4", (nmax,)), ("psf_col_size", "i4", (nmax,))]
        descr += [("psf_start_row", "i8", (nmax,)), ("psf_cutout_row", "f8", (nmax,)),
                  ("psf_cutout_col", "f8", (nmax,))]
    extras = [n for n in catalog.dtype.names if n not in _COMPUTED]
    descr += [(n, catalog.dtype[n]) for n in extras]

    obj = np.zeros(nobj, dtype=descr)
    for col in obj.dtype.names:
        if obj.dtype[col].shape:  # per-cutout array columns: unused slots hold -9999
            obj[col] = UNUSED
    obj["id"] = catalog["id"]
    obj["number"] = (catalog["number"] if "number" in catalog.dtype.names
                     else np.arange(1, nobj + 1))
    obj["box_size"], obj["ra"], obj["dec"] = box, ra, dec
    for n in extras:
        obj[n] = catalog[n]
    if use_psf_box:
        obj["psf_box_size"] = psf_square[0][0]
    elif has_psf:
        obj["psf_row_size"] = 0
        obj["psf_col_size"] = 0

    # slot of each (image, object) pair: rank of the image among the object's images
    slot = np.cumsum(inside, axis=0) - 1
    keep = inside & (slot < nmax)
    obj["ncutout"] = keep.sum(axis=0)
    for i, src in enumerate(images):
        idx = np.flatnonzero(keep[i])
        if idx.size == 0:
            continue
        k = slot[i, idx]
        row, col = pos[i, 0, idx], pos[i, 1, idx]
        half = box[idx] // 2
        start_row = np.floor(row).astype("i8") - half + 1
        start_col = np.floor(col).astype("i8") - half + 1
        jac = src.wcs.jacobian(row, col)
        obj["file_id"][idx, k] = i
        obj["orig_row"][idx, k], obj["orig_col"][idx, k] = row, col
        obj["orig_start_row"][idx, k], obj["orig_start_col"][idx, k] = start_row, start_col
        obj["cutout_row"][idx, k] = row - start_row
        obj["cutout_col"][idx, k] = col - start_col
        for name, value in zip(("dudrow", "dudcol", "dvdrow", "dvdcol"), jac):
            obj[name][idx, k] = np.broadcast_to(np.asarray(value, dtype="f8"), idx.shape)
        if psf_shapes[i] is not None:
            prow, pcol = psf_shapes[i]
            if not use_psf_box:
                obj["psf_row_size"][idx, k], obj["psf_col_size"][idx, k] = prow, pcol
            obj["psf_cutout_row"][idx, k] = (prow - 1) / 2.0
            obj["psf_cutout_col"][idx, k] = (pcol - 1) / 2.0

    # offsets: objects in table order, each object's stamps contiguous in slot order
    npix = obj["ncutout"] * box**2
    first = np.concatenate([[0], np.cumsum(npix)[:-1]]) if nobj else np.zeros(0, "i8")
    slots = np.arange(nmax)[None, :]
    used = slots < obj["ncutout"][:, None]
    obj["start_row"] = np.where(used, first[:, None] + slots * (box**2)[:, None], UNUSED)
    if has_psf:
        psf_npix = np.zeros((nobj, nmax), dtype="i8")
        fid = obj["file_id"]
        for i, shape in enumerate(psf_shapes):
            if shape is not None:
                psf_npix[used & (fid == i)] = shape[0] * shape[1]
        flat = psf_npix.ravel()
        offsets = (np.cumsum(flat) - flat).reshape(nobj, nmax)
        obj["psf_start_row"] = np.where(used & (psf_npix > 0), offsets, UNUSED)
    return obj


def _image_info(images: Sequence[SourceImage], magzp_ref: float) -> np.ndarray:
    paths = [src.image_path or "" for src in images]
    wcs_json = [src.wcs.to_json() for src in images]
    plen = max([1] + [len(p) for p in paths])
    wlen = max([1] + [len(w) for w in wcs_json])
    descr: list[tuple[str, str]] = []
    for kind in ("image", "weight", "seg", "bmask", "bkg"):
        descr += [(f"{kind}_path", f"S{plen}"), (f"{kind}_ext", "i2")]
    descr += [("image_id", "i8"), ("image_flags", "i8"), ("magzp", "f4"), ("scale", "f4"),
              ("position_offset", "f8"), ("wcs", f"S{wlen}")]
    info = np.zeros(len(images), dtype=descr)
    for kind in ("image", "weight", "seg", "bmask", "bkg"):
        # the stamps come from arrays, not files: there is no extension to name
        info[f"{kind}_ext"] = -1
    info["image_path"] = paths
    info["image_id"] = [src.image_id if src.image_id != -1 else i for i, src in enumerate(images)]
    info["image_flags"] = [src.image_flags for src in images]
    magzp = np.array([src.magzp for src in images], dtype="f8")
    info["magzp"] = magzp
    info["scale"] = 10.0 ** (0.4 * (magzp_ref - magzp))
    info["position_offset"] = 1.0
    info["wcs"] = wcs_json
    return info


def _metadata(metadata: dict | None, magzp_ref: float) -> np.ndarray:
    items: dict[str, Any] = {"magzp_ref": float(magzp_ref)}
    for key, value in (metadata or {}).items():
        items[str(key)] = value
    descr, values = [], []
    for key, value in items.items():
        if isinstance(value, (bool, np.bool_)):
            descr.append((key, "i2"))
            values.append(int(value))
        elif isinstance(value, (int, np.integer)):
            descr.append((key, "i8"))
            values.append(int(value))
        elif isinstance(value, (float, np.floating)):
            descr.append((key, "f8"))
            values.append(float(value))
        else:
            text = value if isinstance(value, str) else json.dumps(value, sort_keys=True,
                                                                   default=str)
            raw = text.encode("utf-8")
            descr.append((key, f"S{max(1, len(raw))}"))
            values.append(raw)
    meta = np.zeros(1, dtype=descr)
    for (key, _), value in zip(descr, values):
        meta[key] = value
    return meta


# -------------------------------------------------------------------- writing
def _stamp(src: np.ndarray | None, shape: tuple[int, int], r0: int, c0: int,
           fill: float, out: np.ndarray) -> None:
    """Copy the box at (r0, c0) of an image of ``shape`` into ``out``.

    Off-image pixels get ``fill``; if the image lacks this map (``src`` None) its
    on-image pixels get 0.
    """
    box = out.shape[0]
    out[...] = fill
    rs, re = max(r0, 0), min(r0 + box, shape[0])
    cs, ce = max(c0, 0), min(c0 + box, shape[1])
    if rs < re and cs < ce:
        out[rs - r0:re - r0, cs - c0:ce - c0] = 0 if src is None else src[rs:re, cs:ce]


def _psf_image(src: SourceImage, row: float, col: float, shape: tuple[int, int],
               i: int) -> np.ndarray:
    psf = np.asarray(src.psf(row, col) if callable(src.psf) else src.psf)
    if psf.shape != shape:
        raise MedsInputError(f"image {i}: PSF at ({row:.1f}, {col:.1f}) has shape "
                             f"{psf.shape}, expected {shape}")
    return psf


def _write_pixels(fits: fitsio.FITS, obj: np.ndarray, images: Sequence[SourceImage],
                  types: list[str], psf_shapes: list[tuple[int, int] | None]) -> None:
    hdus = {t: fits[cutout_ext(t)] for t in types}
    psf_hdu = fits[PSF_EXT] if "psf_start_row" in obj.dtype.names else None
    for iobj in range(obj.size):
        ncut, box = int(obj["ncutout"][iobj]), int(obj["box_size"][iobj])
        if ncut == 0:
            continue
        start = int(obj["start_row"][iobj, 0])
        for t in types:
            mosaic = np.empty((ncut, box, box), dtype=CUTOUT_DTYPES[t])
            for k in range(ncut):
                src = images[int(obj["file_id"][iobj, k])]
                _stamp(getattr(src, t), src.image.shape, int(obj["orig_start_row"][iobj, k]),
                       int(obj["orig_start_col"][iobj, k]), OFF_IMAGE_FILL[t], mosaic[k])
            # fitsio 1.4 needs 1-D data to write into a 1-D HDU at an offset
            hdus[t].write(mosaic.ravel(), start=start)
        if psf_hdu is not None:
            for k in range(ncut):
                i = int(obj["file_id"][iobj, k])
                if psf_shapes[i] is None:
                    continue
                psf = _psf_image(images[i], float(obj["orig_row"][iobj, k]),
                                 float(obj["orig_col"][iobj, k]), psf_shapes[i], i)
                psf_hdu.write(np.ascontiguousarray(psf, dtype=PSF_DTYPE).ravel(),
                              start=int(obj["psf_start_row"][iobj, k]))


#: tile length fpack uses for the 1-D stamp HDUs (it reads FZTILE from the header):
#: a stamp read then inflates a tile or two, not the whole HDU (fpack's default)
FPACK_TILE = 10240


def _create_stamp_hdu(fits: fitsio.FITS, extname: str, npix: int, dtype: str) -> None:
    fits.create_image_hdu(dims=[npix], dtype=dtype, extname=extname)
    fits[extname].write_key("FZTILE", f"({FPACK_TILE},1)", comment="fpack tile size")


def write_meds(path: str | os.PathLike, catalog: np.ndarray, images: list[SourceImage],
               metadata: dict | None = None, clobber: bool = False,
               nmax: int | None = None) -> None:
    """Write a MEDS file of ``catalog`` objects cut out of ``images`` (``images[0]`` = coadd).

    ``catalog`` needs ``id``, ``ra``, ``dec`` (degrees) and even ``box_size``;
    ``number`` defaults to index+1 and other columns pass through. An object gets
    a cutout in every image whose pixel grid contains its centre, in image
    order (at most ``nmax``, default the largest count, at least 2).

    Stamp corner: ``orig_start = floor(orig) - box//2 + 1`` (floor, not int(), so
    centres in [-0.5, 0) behave like the rest of the first pixel). Off-image
    pixels: image/weight/seg/noise 0, bmask 2**30. A cutout type is written if
    any image has that map; images without it get 0 on-image (e.g. seg only on
    the coadd). Weight must be given for all images or none. PSFs: ``psf_box_size``
    if every image has a square PSF of one size, else ``psf_row_size``/
    ``psf_col_size`` (0, with psf_start_row -9999, for images without a PSF).
    Bad inputs raise ``MedsInputError``; nothing is left at ``path`` on failure.
    The primary header's ``NEXTEND`` counts the extensions (the reader detects
    truncation with it) and the stamp HDUs carry ``FZTILE`` for ``fpack``.
    """
    catalog = np.asarray(catalog)
    _check_inputs(catalog, images)
    magzp_ref = float((metadata or {}).get("magzp_ref", DEFAULT_MAGZP_REF))
    psf_shapes = [_psf_shape(src, i) for i, src in enumerate(images)]
    obj = _plan_objects(catalog, images, nmax, psf_shapes)
    info = _image_info(images, magzp_ref)
    meta = _metadata(metadata, magzp_ref)
    types = [t for t in _WRITTEN_TYPES if any(getattr(s, t) is not None for s in images)]
    if "image" not in types:
        types.insert(0, "image")

    box2 = obj["box_size"] ** 2
    ntot = int(np.sum(obj["ncutout"] * box2))
    with atomic_fits(path, clobber=clobber) as fits:
        fits.write(obj, extname=OBJECT_DATA)
        fits.write(info, extname=IMAGE_INFO)
        fits.write(meta, extname=METADATA)
        for t in types:
            _create_stamp_hdu(fits, cutout_ext(t), ntot, CUTOUT_DTYPES[t])
        if "psf_start_row" in obj.dtype.names:
            sizes = np.array([s[0] * s[1] if s else 0 for s in psf_shapes], dtype="i8")
            used = obj["psf_start_row"] != UNUSED
            npsf = int(sizes[obj["file_id"][used]].sum())
            _create_stamp_hdu(fits, PSF_EXT, npsf, PSF_DTYPE)
        # the reader compares the extensions present with this count, so a
        # file cut short at an HDU boundary is reported as truncated
        fits[0].write_key("NEXTEND", len(fits) - 1, comment="number of extensions")
        _write_pixels(fits, obj, images, types, psf_shapes)
    log.info("wrote %s: %d objects, %d cutouts, %d pixels per cutout type",
             path, obj.size, int(obj["ncutout"].sum()), ntot)
