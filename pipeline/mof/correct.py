"""Neighbour-subtracted ("MOF-corrected") MEDS files from a MOF output.

For every object of a FoF group with 2+ members and every cutout (coadd
included), the group's other members are drawn from their MOF parameters, as
in the fit (pipeline.mof.render: own PSF fit on that image, placement through
the cutout's Jacobian), and subtracted from the image cutout.  Members whose
MOF fit failed cannot be drawn: their coadd-seg pixels (mapped onto the cutout)
get weight 0 and the bmask bit :data:`MOF_MASKED` (2**21).  The output is a
copy of the input file with the image, weight and bmask cutouts rewritten in
place, so it has the layout of the input and opens with ``pipeline.meds.MEDS``;
each file is written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import logging
import os
import shutil

import fitsio  # noqa: F401  (type of correct_band's argument)
import numpy as np

from ..errors import InputFileError
from ..fileio import atomic_path
from ..fitsfile import open_fits, read_table
from ..gmix import flags as F
from ..gmix.jacobian import Jacobian
from ..gmix.observation import Observation, psf_observation
from ..gmix.psf import fit_psf
from ..meds import MEDS
from ..meds.regions import map_coadd_seg
from ..meds.schema import cutout_ext
from .render import MemberModel, render_member

logger = logging.getLogger(__name__)

MOF_MASKED = 2**21           # bmask bit: pixel of a neighbour that could not be subtracted


def read_mof_output(path: str, model: str | None) -> tuple[np.ndarray, str]:
    """model_fits of a MOF output and the model to draw (default: the first with MOF columns)."""
    data = read_table(path, ext="model_fits")
    names = data.dtype.names
    if model is None:
        mof = [n[:-len("_mof_flags")] for n in names if n.endswith("_mof_flags")]
        if not mof:
            raise InputFileError(path, "not a MOF output: no *_mof_flags column")
        model = mof[0]
    for col in ("number", "fofid", f"{model}_pars", f"{model}_flags"):
        if col not in names:
            raise InputFileError(path, f"missing column {col!r} for model {model!r}")
    return data, model


def _psf_gmix(m: MEDS, iobj: int, icut: int, psf_model: str):
    jd = m.get_jacobian(iobj, icut)
    im = m.get_psf(iobj, icut).astype("f8")
    names = m.get_cat().dtype.names
    if "psf_cutout_row" in names:
        prow, pcol = float(m["psf_cutout_row"][iobj, icut]), float(m["psf_cutout_col"][iobj, icut])
    else:
        prow, pcol = (im.shape[0] - 1) / 2.0, (im.shape[1] - 1) / 2.0
    jac = Jacobian(row=prow, col=pcol, dudrow=jd["dudrow"], dudcol=jd["dudcol"],
                   dvdrow=jd["dvdrow"], dvdcol=jd["dvdcol"])
    psf = psf_observation(im, jac)
    res = fit_psf(psf, model=psf_model, ntry=4, rng=np.random.default_rng(iobj * 1000 + icut))
    return psf.gmix if res["flags"] == 0 else None


def _member(m: MEDS, band: int, iobj: int, fit: np.void, model: str, psf_model: str,
            numbers: np.ndarray) -> MemberModel:
    cat = m.get_cat()
    mm = MemberModel(number=int(numbers[iobj]), ra=float(cat["ra"][iobj]),
                     dec=float(cat["dec"][iobj]), model=model)
    mm.pars = np.array(fit[f"{model}_pars"], dtype="f8")
    # the fit's own bits: an unconverged group's fits still model the neighbours
    mm.ok = int(fit[f"{model}_flags"]) & F.FIT_BITS == 0
    if model == "cm":
        mm.fracdev, mm.TdByTe = float(fit["cm_fracdev"]), float(fit["cm_TdByTe"])
    if mm.ok:
        for icut in range(int(cat["ncutout"][iobj])):
            key = (band, int(cat["file_id"][iobj, icut]))
            mm.centre[key] = (float(cat["orig_row"][iobj, icut]), float(cat["orig_col"][iobj, icut]))
            if m.has_psf():
                gm = _psf_gmix(m, iobj, icut, psf_model)
                if gm is not None:
                    mm.psf[key] = gm
    return mm


def correct_band(m: MEDS, fits: fitsio.FITS, band: int, fits_table: np.ndarray, model: str,
                 psf_model: str) -> int:
    """Rewrite the cutouts of every grouped object of one band; returns the number changed."""
    cat = m.get_cat()
    numbers = (np.asarray(cat["number"]) if "number" in cat.dtype.names
               else np.arange(1, m.size + 1))
    row_of = {int(n): i for i, n in enumerate(fits_table["number"])}
    fofids = np.array([fits_table["fofid"][row_of[int(n)]] if int(n) in row_of else -1
                       for n in numbers])
    has_bmask = m.has_cutout_type("bmask")
    info = m.get_image_info()
    scales = (np.where(np.isfinite(info["scale"]) & (info["scale"] > 0), info["scale"], 1.0)
              if "scale" in info.dtype.names else np.ones(len(info)))
    has_seg = m.has_cutout_type("seg")
    nchanged = 0
    for fofid in np.unique(fofids[fofids >= 0]):
        idx = np.flatnonzero(fofids == fofid)
        if idx.size < 2:
            continue
        group = [_member(m, band, int(i), fits_table[row_of[int(numbers[i])]], model, psf_model,
                         numbers) for i in idx]
        for i, central in zip(idx, group):
            i = int(i)
            for icut in range(int(cat["ncutout"][i])):
                image = m.get_cutout(i, icut, "image").astype("f8")
                jac = Jacobian.from_meds(m.get_jacobian(i, icut))
                meta = {"band": band, "file_id": int(cat["file_id"][i, icut]),
                        "orig_start_row": int(cat["orig_start_row"][i, icut]),
                        "orig_start_col": int(cat["orig_start_col"][i, icut])}
                obs = Observation(image, jacobian=jac, meta=meta)
                start = int(cat["start_row"][i, icut])
                failed = []
                for other in group:
                    if other is central:
                        continue
                    drawn = render_member(other, central, obs, group)
                    if drawn is None:
                        failed.append(other.number)
                    else:
                        # the fit works in scaled units (image_info scale)
                        image -= drawn / scales[meta["file_id"]]
                hdu = fits[cutout_ext("image")]
                hdu.write(image.astype(m.get_cutout(i, icut, "image").dtype).ravel(), start=start)
                if failed and has_seg and int(cat["file_id"][i, 0]) == 0:
                    seg = m.get_cutout(i, 0, "seg")
                    if icut > 0:
                        seg = map_coadd_seg(seg, m.get_jacobian(i, 0), m.get_jacobian(i, icut),
                                            image.shape)
                    bad = np.isin(seg, failed)
                    weight = m.get_cutout(i, icut, "weight").copy()
                    weight[bad] = 0
                    fits[cutout_ext("weight")].write(weight.ravel(), start=start)
                    if has_bmask:
                        bmask = m.get_cutout(i, icut, "bmask").copy()
                        bmask[bad] |= MOF_MASKED
                        fits[cutout_ext("bmask")].write(bmask.ravel(), start=start)
                nchanged += 1
    return nchanged


def write_corrected_meds(mof_path: str, outdir: str, meds_paths: list[str],
                         model: str | None = None, psf_model: str = "coellip2") -> list[str]:
    """One corrected MEDS file per band in ``outdir`` (same file names); returns the paths."""
    fits_table, model = read_mof_output(mof_path, model)
    os.makedirs(outdir, exist_ok=True)
    outputs = []
    for band, path in enumerate(meds_paths):
        if not os.path.exists(path):
            raise InputFileError(path, "MEDS file not found")
        final = os.path.join(outdir, os.path.basename(path))
        if os.path.abspath(final) == os.path.abspath(path):
            raise InputFileError(path, "output directory holds the input file: choose another")
        with MEDS(path) as m, atomic_path(final) as tmp:
            shutil.copyfile(path, tmp)
            with open_fits(tmp, "rw") as fits:
                n = correct_band(m, fits, band, fits_table, model, psf_model)
        logger.info("%s: %d cutouts corrected (model %s)", final, n, model)
        outputs.append(final)
    return outputs
