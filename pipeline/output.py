"""Output tables of a fit and their atomic FITS writing; checkpoints."""

from __future__ import annotations

from importlib import metadata
import json
import os
from typing import Any

import numpy as np

from . import __version__
from .errors import InputFileError
from .fitsfile import atomic_fits, first_line, open_fits, verify_fits, write_checksums
from .provenance import Provenance

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


def base_dtype(nband: int) -> list:
    """Columns every fitter's model_fits table starts with."""
    return [("id", "i8"), ("number", "i8"), ("ra", "f8"), ("dec", "f8"), ("fofid", "i8"),
            ("fofind", "i4"), ("flags", "i4"), ("time_last_fit", "f8"), ("box_size", "i4"),
            ("obj_flags", "i4"), ("nimage_tot", "i4", nband), ("nimage_use", "i4", nband),
            ("mask_frac", "f8")]


def software_versions() -> dict[str, str]:
    """Versions of the packages that shape the results (from metadata: no imports)."""
    out = {"megamixer": __version__}
    for name in ("numpy", "numba", "fitsio", "galsim", "scipy"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "unavailable"
    return out


def make_meta_table(conf_text: str, meds_files: list[str], meds_meta: list[Any],
                    seed: int, fof_range: tuple[int, int], fitter: str) -> np.ndarray:
    """The one-row meta_data table: config, inputs, versions, seed, range."""
    nband = len(meds_files)
    magzp = np.full(nband, 30.0)
    band_meta = []
    for i, meta in enumerate(meds_meta):
        entry = {}
        if meta is not None and len(meta) > 0:
            for name in meta.dtype.names:
                value = meta[name][0]
                entry[name] = value.item() if hasattr(value, "item") else str(value)
            if "magzp_ref" in meta.dtype.names:
                magzp[i] = float(meta["magzp_ref"][0])
        band_meta.append(entry)
    fields = {
        "config": conf_text,
        "meds_files": json.dumps([os.path.basename(f) for f in meds_files]),
        "meds_meta": json.dumps(band_meta, default=str),
        "versions": json.dumps(software_versions()),
        "fitter_type": fitter,
    }
    dtype = [(k, f"U{max(1, len(v))}") for k, v in fields.items()]
    dtype += [("magzp_ref", "f8", nband), ("seed", "i8"), ("fof_range", "i8", 2),
              ("nband", "i4")]
    meta = np.zeros(1, dtype=dtype)
    for key, value in fields.items():
        meta[key] = value
    meta["magzp_ref"] = magzp
    meta["seed"] = seed
    meta["fof_range"] = fof_range
    meta["nband"] = nband
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
                     state: dict) -> None:
    """Atomic checkpoint: results so far and the state needed to resume."""
    table = np.zeros(1, dtype=[("state", f"U{len(json.dumps(state))}")])
    table["state"] = json.dumps(state)
    with atomic_fits(path) as fits:
        fits.write(model_fits, extname=MODEL_FITS)
        fits.write(epoch_data, extname=EPOCH_DATA)
        fits.write(table, extname=CHECKPOINT)
        write_checksums(fits)


def read_checkpoint(path: str) -> tuple[np.ndarray, np.ndarray, dict]:
    """Read a checkpoint written by :func:`write_checkpoint`."""
    try:
        verify_fits(path)
        with open_fits(path) as fits:
            model_fits = fits[MODEL_FITS].read()
            epoch_data = fits[EPOCH_DATA].read() if fits[EPOCH_DATA].get_nrows() else None
            state = json.loads(str(fits[CHECKPOINT].read()["state"][0]))
    except InputFileError as err:
        raise InputFileError(path, f"unreadable checkpoint: {err.problem}") from None
    except (OSError, KeyError, ValueError) as err:
        raise InputFileError(path, f"unreadable checkpoint: {first_line(err)}") from None
    return model_fits, epoch_data, state
