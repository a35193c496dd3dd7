"""One object's observations in one band of a MEDS file, built as stacks.

An object's stamps share one box size, so its cutouts in a band are read and
masked as ``(nepoch, box, box)`` arrays: each per-pixel step (scaling, masks,
weight region, outlier rejection, usability counts) is one numpy or numba call
per band, and the Observations are wrapped around the cleaned arrays without
copying or re-checking them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from ..gmix.jacobian import Jacobian
from ..gmix.observation import Observation, ObsList, psf_images_and_weights
from ..meds import MEDS
from ..meds.regions import (OUTLIER_A, OUTLIER_NSIGMA, map_coadd_seg_stack, object_segid,
                             region_keep)
from .base import EPOCH_DTYPE
from .meds_band_nb import prepare_stack_nb

#: weight regions built from the coadd seg, and whether they hand sky pixels to
#: the nearest object
SEG_REGIONS = {"cweight": False, "uberseg": True, "cweight-nearest": True}
#: every weight region (``weight``: the raw weight map)
REGIONS = ("weight",) + tuple(SEG_REGIONS)
# placeholders for the kernel's optional stacks (typed like the real ones)
_NO_BMASK = np.zeros((0, 0, 0), dtype="i4")
_NO_KEEP = np.zeros((0, 0, 0), dtype=bool)


@dataclass
class BandEpochs:
    """The usable epochs of one band and what the output tables record of them."""

    obslist: ObsList
    rows: np.ndarray   # EPOCH_DTYPE rows, in obslist order
    ntot: int          # cutouts considered, before image flags and usability cuts
    nzero: int         # zero-weight pixels over the cutouts that passed image flags
    npix: int          # pixels over those cutouts


def wanted_cutouts(m: MEDS, index: int, conf: Mapping) -> np.ndarray:
    """Cutout indices to fit: the coadd (0) and/or the single epochs (1..)."""
    ncut = int(m["ncutout"][index])
    first = 0 if conf["fit_coadd_galaxy"] else 1
    last = ncut if conf["fit_me_galaxy"] else min(ncut, 1)
    return np.arange(first, max(first, last), dtype=np.int64)


def band_epochs(m: MEDS, band: int, index: int, obj_id: int, number: int,
                conf: Mapping) -> BandEpochs:
    """Observations of object ``index`` (catalogue ``obj_id``, seg id ``number``)
    in band ``band`` (MEDS file ``m``)."""
    cutouts = wanted_cutouts(m, index, conf)
    ntot = len(cutouts)
    file_ids = m.cutout_array("file_id")[index, cutouts].astype(np.int64)
    info = m.get_image_info()
    if conf["image_flags2check"] and ntot:
        unflagged = (info["image_flags"][file_ids] & conf["image_flags2check"]) == 0
        cutouts, file_ids = cutouts[unflagged], file_ids[unflagged]
    if len(cutouts) == 0:
        return BandEpochs(ObsList(), np.zeros(0, EPOCH_DTYPE), ntot, 0, 0)

    scale = (np.asarray(info["scale"][file_ids], dtype="f8") if "scale" in info.dtype.names
             else np.ones(len(cutouts)))
    scale[~(np.isfinite(scale) & (scale > 0))] = 1.0
    jacs = m.get_jacobian_array(index, cutouts)
    segs, keep = _region(m, index, cutouts, jacs, number, conf)
    has_bmask = m.has_cutout_type("bmask")
    # The raw weight (with pixel masks) judges an epoch's usability: pixels a
    # region hands to neighbours are not missing data. MOF also fits with it
    # after its first sweeps. Outliers are judged with the raw weight, so the
    # test sees every epoch's pixels of the neighbours too.
    images, raw, weights, nbad, nzero, npos, wsum, wmax = prepare_stack_nb(
        m.get_cutout_stack(index, cutouts, "image"), m.get_cutout_stack(index, cutouts, "weight"),
        m.get_cutout_stack(index, cutouts, "bmask") if has_bmask else _NO_BMASK, has_bmask,
        int(conf["bmask_flags2check"]), _NO_KEEP if keep is None else keep, keep is not None,
        scale, max(float(conf["min_weight"]), 0.0), bool(conf["reject_outliers"]),
        OUTLIER_NSIGMA, OUTLIER_A)
    npix = images[0].size
    usable = np.flatnonzero(nzero <= conf["max_zero_weight_frac"] * npix)
    rows = _epoch_rows(m, band, index, (obj_id, number), cutouts[usable], file_ids[usable],
                       jacs[usable], (npos[usable], wsum[usable], wmax[usable]))
    obslist = _observations(m, band, index, cutouts, usable, jacs[usable], images, weights, raw,
                            segs if conf.get("model_nbrs") else None, nbad,
                            keep_raw=conf["region"] != "weight")
    return BandEpochs(obslist, rows, ntot, int(nzero.sum()), npix * len(cutouts))


def _region(m: MEDS, index: int, cutouts: np.ndarray, jacs: np.ndarray, number: int,
            conf: Mapping) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The coadd seg mapped onto each cutout (None without seg stamps or a coadd
    cutout, or when neither the region nor MOF needs it) and the pixels the weight
    region keeps (None: all of them)."""
    nearest = SEG_REGIONS.get(conf["region"])
    if nearest is None and not conf.get("model_nbrs"):
        return None, None
    if not m.has_cutout_type("seg") or int(m.cutout_array("file_id")[index, 0]) != 0:
        return None, None
    coadd_seg = m.get_cutout(index, 0, "seg")
    jac_coadd = m.get_jacobian_array(index, [0])[0]
    # the coadd cutout maps onto itself (identity up to rounding)
    segs = map_coadd_seg_stack(coadd_seg, jac_coadd, jacs, coadd_seg.shape)
    if nearest is None:
        return segs, None
    segid = object_segid(coadd_seg, jac_coadd[0], jac_coadd[1], number)
    return segs, region_keep(segs, segid, nearest)


def _epoch_rows(m: MEDS, band: int, index: int, ident: tuple[int, int], cutouts: np.ndarray,
                file_ids: np.ndarray, jac: np.ndarray,
                weight_stats: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    rows = np.zeros(len(cutouts), EPOCH_DTYPE)
    rows["id"], rows["number"] = ident
    rows["band_num"] = band
    rows["cutout_index"] = cutouts
    rows["orig_row"] = m.cutout_array("orig_row")[index, cutouts]
    rows["orig_col"] = m.cutout_array("orig_col")[index, cutouts]
    rows["file_id"] = file_ids
    rows["pixel_scale"] = np.sqrt(np.abs(jac[:, 2] * jac[:, 5] - jac[:, 3] * jac[:, 4]))
    rows["npix"], rows["wsum"], rows["wmax"] = weight_stats
    return rows


def _observations(m: MEDS, band: int, index: int, cutouts: np.ndarray, usable: np.ndarray,
                  jac: np.ndarray, images: np.ndarray, weights: np.ndarray, raw: np.ndarray,
                  segs: np.ndarray | None, nbad: np.ndarray, keep_raw: bool) -> ObsList:
    """Wrap the usable epochs' cleaned stamps (finite, weights >= 0) in Observations."""
    cuts = cutouts[usable]
    psfs = _psf_observations(m, index, cuts, jac) if m.has_psf() else [None] * len(cuts)
    columns = {name: m.cutout_array(name)[index, cuts]
               for name in ("file_id", "orig_row", "orig_col", "orig_start_row", "orig_start_col")}
    obslist = ObsList()
    for j, k in enumerate(usable):
        meta = {"band": band, "cutout_index": int(cuts[j]),
                "file_id": int(columns["file_id"][j]),
                "orig_row": float(columns["orig_row"][j]),
                "orig_col": float(columns["orig_col"][j]),
                "orig_start_row": int(columns["orig_start_row"][j]),
                "orig_start_col": int(columns["orig_start_col"][j]),
                "nbad": int(nbad[k])}
        if keep_raw:
            meta["weight_raw"] = raw[k]
        if segs is not None:
            # MOF masks failed neighbours by their coadd seg pixels on every epoch
            meta["coadd_seg"] = segs[k]
        r0, c0, dudrow, dudcol, dvdrow, dvdcol = jac[j]
        obslist.append(Observation.from_clean(
            images[k], weights[k],
            Jacobian(row=r0, col=c0, dudrow=dudrow, dudcol=dudcol, dvdrow=dvdrow, dvdcol=dvdcol),
            psf=psfs[j], meta=meta))
    return obslist


def _psf_observations(m: MEDS, index: int, cuts: np.ndarray,
                      jac: np.ndarray) -> list[Observation]:
    """PSF Observations of the cutouts, centred at (psf_cutout_row, psf_cutout_col)
    (the stamp centre without those columns), with the cutouts' Jacobians."""
    if len(cuts) == 0:
        return []
    stamps = m.get_psf_stack(index, cuts)
    if "psf_cutout_row" in m.get_cat().dtype.names:
        centres = np.stack([m.cutout_array("psf_cutout_row")[index, cuts],
                            m.cutout_array("psf_cutout_col")[index, cuts]], axis=1)
    else:
        centres = np.array([[(s.shape[0] - 1) / 2.0, (s.shape[1] - 1) / 2.0] for s in stamps])
    if isinstance(stamps, np.ndarray):
        images, weights, nbad = psf_images_and_weights(stamps)
    else:
        parts = [psf_images_and_weights(s[None]) for s in stamps]
        images, weights, nbad = ([p[i][0] for p in parts] for i in range(3))
    out = []
    for j in range(len(stamps)):
        _, _, dudrow, dudcol, dvdrow, dvdcol = jac[j]
        pjac = Jacobian(row=centres[j, 0], col=centres[j, 1], dudrow=dudrow, dudcol=dudcol,
                        dvdrow=dvdrow, dvdcol=dvdcol)
        out.append(Observation.from_clean(images[j], weights[j], pjac,
                                          meta={"nbad": int(nbad[j])}))
    return out
