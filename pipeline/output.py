"""Output tables of a fit and their atomic FITS writing; checkpoints."""

from __future__ import annotations

import functools
from importlib import metadata
import json
import logging
import os
from pathlib import Path
import subprocess
from typing import Any

import numpy as np

from . import __version__
from . import columns as C
from .columns import Column, vec
from .errors import InputFileError
from .fitsfile import atomic_fits, first_line, open_fits, verify_fits, write_checksums
from .provenance import Provenance

logger = logging.getLogger(__name__)

MODEL_FITS = "model_fits"
EPOCH_DATA = "epoch_data"
META_DATA = "meta_data"
CHECKPOINT = "checkpoint"

# Columns that legitimately differ between identical reruns (timings).
NONDETERMINISTIC_COLUMNS = ("time_last_fit",)


def checkpoint_path(out_path: str) -> str:
    """Where ngmixit keeps the checkpoint of output ``out_path``."""
    base = out_path[:-5] if out_path.endswith(".fits") else out_path
    return f"{base}-checkpoint.fits"


def diagnostics_path(out_path: str) -> str:
    """Where ngmixit writes the records of objects that failed with an exception."""
    base = out_path[:-5] if out_path.endswith(".fits") else out_path
    return f"{base}-diagnostics.jsonl"


def base_columns(nband: int) -> list[Column]:
    """Columns every fitter's model_fits table starts with (filled by ngmixit)."""
    nb = vec(nband)
    return [
        Column("id", "i8", (), C.NONE, "id of the object (MEDS id)"),
        Column("number", "i4", (), C.NONE, "number of the object (MEDS number, 1-based)"),
        Column("ra", "f8", (), C.DEG, "right ascension (MEDS object_data)"),
        Column("dec", "f8", (), C.DEG, "declination (MEDS object_data)"),
        Column("nimage_tot", "i4", nb, C.NONE, "epoch cutouts read per band"),
        Column("fofid", "i8", (), C.NONE, "friends-of-friends group of the object"),
        Column("flags", "i4", (), C.BITS, "object flags: fitter bits (low) and run-level "
               "bits (high); 0 = every stage ran and every model's max fit is usable"),
        Column("time_last_fit", "f8", (), C.SECOND, "fitting time of the object's group "
               "divided by its members (the only column that differs between reruns)"),
        Column("box_size", "i2", (), C.PIXEL, "side of the object's cutouts"),
        Column("obj_flags", "i4", (), C.BITS, "run-level flags set while reading the "
               "object (BAD_OBJ, IMAGE_FLAGS, NO_CUTOUTS, BOX_SIZE_TOO_BIG, ...)"),
        Column("nimage_use", "i4", nb, C.NONE, "epochs used per band: after the image "
               "checks and with a PSF fit"),
        Column("mask_frac", "f8", (), C.NONE, "masked fraction of the epochs used: 1 - "
               "sum(wsum / wmax) / sum(npix)"),
        Column("fofind", "i8", (), C.NONE, "index of the object within its FoF group "
               "(order of the group in the FoF file)"),
        Column("zero_weight_frac", "f8", (), C.NONE, "fraction of pixels with raw weight 0 "
               "over every cutout read"),
    ]


def base_dtype(nband: int) -> list:
    """numpy dtype entries of :func:`base_columns`."""
    return [c.entry() for c in base_columns(nband)]


def software_versions() -> dict[str, str]:
    """Versions of the packages that shape the results (from metadata: no imports)."""
    out = {"megamixer": __version__}
    for name in VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "unavailable"
    return out


@functools.lru_cache(maxsize=1)
def git_hash() -> str:
    """Commit of the checkout the package runs from (``+dirty`` with local changes
    to tracked files), or "" when it is not run from a git checkout."""
    parent = Path(__file__).resolve().parents[1]
    if not (parent / ".git").exists():
        return ""
    try:
        head = subprocess.run(["git", "-C", str(parent), "rev-parse", "HEAD"],
                              capture_output=True, text=True, timeout=30)
        dirty = subprocess.run(["git", "-C", str(parent), "status", "--porcelain",
                                "--untracked-files=no"], capture_output=True, text=True,
                               timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    if head.returncode != 0:
        return ""
    return head.stdout.strip() + ("+dirty" if dirty.returncode == 0 and dirty.stdout.strip()
                                  else "")


VERSIONED = ("numpy", "numba", "fitsio", "galsim", "scipy")


def meta_columns(nband: int) -> list[Column]:
    """The project's meta_data columns (after the MEDS metadata columns, whose
    names are taken: MEDS makers record e.g. their own ``config`` and ``seed``);
    ``U`` columns get their width from the values."""
    vers = [Column(f"{name}_version", "U", (), C.NONE, f"{name} version") for name in VERSIONED]
    return [
        Column("ngmixer_config", "U", (), C.NONE, "file name of the fit config"),
        Column("meds_file", "U", (), C.NONE, "the band's MEDS file, as given to ngmixit"),
        Column("magzp_ref", "f8", (), C.MAG, "zero point of the band's fluxes (from the "
               "MEDS metadata; 30 when it has none)"),
        Column("band_num", "i2", (), C.NONE, "band index of this row"),
        Column("fit_config", "U", (), C.NONE, "the fit config as used (YAML, defaults "
               "filled)"),
        Column("fitter_type", "U", (), C.NONE, "fitter that wrote the file (max, metacal, "
               "mof)"),
        Column("fit_seed", "i8", (), C.NONE, "seed of the fit (--seed or global_seed)"),
        Column("fof_range", "i8", vec(2), C.NONE, "first and last FoF group of the file"),
        Column("nband", "i4", (), C.NONE, "number of bands"),
        Column("megamixer_version", "U", (), C.NONE, "megamixer version"),
        Column("megamixer_githash", "U", (), C.NONE, "git commit of the megamixer checkout "
               "that ran (+dirty: with local changes; empty when installed)"),
    ] + vers + [
        Column("versions", "U", (), C.NONE, "the same versions as JSON"),
    ]


def _meds_meta_fields(meds_meta: list[Any]) -> list[tuple]:
    """dtype entries of the MEDS metadata columns: band 0's, strings as wide as the
    widest band's value (ngmixer copies band 0's layout)."""
    first = next((m for m in meds_meta if m is not None and len(m) > 0), None)
    if first is None:
        return []
    entries = []
    for name in first.dtype.names:
        dt = first.dtype[name]
        if dt.kind in "SU":
            width = max(m.dtype[name].itemsize // (4 if m.dtype[name].kind == "U" else 1)
                        for m in meds_meta
                        if m is not None and name in (m.dtype.names or ()))
            entries.append((name, f"{dt.kind}{max(width, 1)}"))
        else:
            entries.append((name, dt.base.str, dt.shape) if dt.shape else (name, dt.str))
    return entries


def make_meta_table(config_path: str, conf_text: str, meds_files: list[str],
                    meds_meta: list[Any], seed: int, fof_range: tuple[int, int],
                    fitter: str) -> np.ndarray:
    """meta_data in ngmixer's shape: one row per band with the band's MEDS metadata,
    ``ngmixer_config`` and ``meds_file``, then the project's columns (config,
    seed, range, code provenance), the same in every row."""
    nband = len(meds_files)
    meds_fields = _meds_meta_fields(meds_meta)
    taken = {e[0] for e in meds_fields}
    # magzp_ref is meant to come from the MEDS metadata (30 only when it has none)
    clashes = [c.name for c in meta_columns(nband) if c.name in taken and c.name != "magzp_ref"]
    if clashes:
        logger.warning("MEDS metadata has column(s) %s: kept, the project's are not written",
                       ", ".join(clashes))
    versions = software_versions()
    values: dict[str, Any] = {
        "ngmixer_config": os.path.basename(config_path),
        "meds_file": [os.fspath(f) for f in meds_files],
        "magzp_ref": [30.0] * nband, "band_num": list(range(nband)), "fit_config": conf_text,
        "fitter_type": fitter, "fit_seed": int(seed), "fof_range": list(fof_range),
        "nband": nband, "megamixer_version": __version__, "megamixer_githash": git_hash(),
        "versions": json.dumps(versions),
    }
    for name in VERSIONED:
        values[f"{name}_version"] = versions[name]
    per_band = {"meds_file", "magzp_ref", "band_num"}
    entries = list(meds_fields)
    for col in meta_columns(nband):
        if col.name in taken:
            continue
        if col.fmt == "U":
            texts = values[col.name] if col.name in per_band else [values[col.name]]
            entries.append((col.name, f"U{max([1] + [len(t) for t in texts])}"))
        else:
            entries.append(col.entry())
    meta = np.zeros(nband, dtype=entries)
    for band, bmeta in enumerate(meds_meta):
        if bmeta is None or len(bmeta) == 0:
            continue
        for name in bmeta.dtype.names:
            if name in taken:
                meta[name][band] = bmeta[name][0]
    for name in meta.dtype.names:
        if name in taken:
            continue
        value = values[name]
        if name in per_band:
            meta[name] = value
        else:
            meta[name] = [value] * nband if name == "fof_range" else value
    return meta


def write_fit_output(path: str, model_fits: np.ndarray, epoch_data: np.ndarray,
                     meta: np.ndarray, extra: dict[str, np.ndarray] | None,
                     provenance: Provenance) -> None:
    """Write the three tables (plus ``extra``) to ``path`` atomically, with the
    provenance in the primary header and a checksum in every HDU."""
    extra = extra or {}
    provenance.nobj = len(model_fits)
    provenance.nepoch = len(epoch_data)
    provenance.nhdu = 4 + len(extra)
    with atomic_fits(path) as fits:
        fits.write(model_fits, extname=MODEL_FITS)
        fits[0].write_keys(provenance.header_records())
        fits.write(epoch_data, extname=EPOCH_DATA)
        fits.write(meta, extname=META_DATA)
        for name, table in extra.items():
            fits.write(table, extname=name)
        write_checksums(fits)


def write_checkpoint(path: str, model_fits: np.ndarray, epoch_data: np.ndarray,
                     state: dict, extra: dict[str, np.ndarray] | None = None) -> None:
    """Atomic checkpoint: results so far (the fitter's extra tables too) and the
    state needed to resume."""
    table = np.zeros(1, dtype=[("state", f"U{len(json.dumps(state))}")])
    table["state"] = json.dumps(state)
    with atomic_fits(path) as fits:
        fits.write(model_fits, extname=MODEL_FITS)
        fits.write(epoch_data, extname=EPOCH_DATA)
        fits.write(table, extname=CHECKPOINT)
        for name, tab in (extra or {}).items():
            fits.write(tab, extname=name)
        write_checksums(fits)


def read_checkpoint(path: str) -> tuple[np.ndarray, np.ndarray, dict, dict[str, np.ndarray]]:
    """Read a checkpoint written by :func:`write_checkpoint`: model_fits,
    epoch_data (None when empty), state and the extra tables by name."""
    try:
        verify_fits(path)
        with open_fits(path) as fits:
            model_fits = fits[MODEL_FITS].read()
            epoch_data = fits[EPOCH_DATA].read() if fits[EPOCH_DATA].get_nrows() else None
            state = json.loads(str(fits[CHECKPOINT].read()["state"][0]))
            extra = {}
            for ihdu in range(4, len(fits)):
                hdu = fits[ihdu]
                name = hdu.get_extname()
                extra[name] = hdu.read() if hdu.get_nrows() else None
    except InputFileError as err:
        raise InputFileError(path, f"unreadable checkpoint: {err.problem}") from None
    except (OSError, KeyError, ValueError) as err:
        raise InputFileError(path, f"unreadable checkpoint: {first_line(err)}") from None
    return model_fits, epoch_data, state, extra
