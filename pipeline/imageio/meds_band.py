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
from ..meds.regions import OUTLIER_A, OUTLIER_NSIGMA
from .base import EPOCH_DTYPE
from .meds_band_nb import REGION_CWEIGHT, REGION_NEAREST, REGION_NONE, band_stack_nb

#: weight regions built from the coadd seg, and whether they hand sky pixels to
#: the nearest object
SEG_REGIONS = {"cweight": False, "uberseg": True, "cweight-nearest": True}
#: every weight region (``weight``: the raw weight map)
REGIONS = ("weight",) + tuple(SEG_REGIONS)
# placeholders for the kernel's optional stacks (typed like the real ones)
_NO_BMASK = np.zeros((0, 0, 0), dtype="i4")
_NO_SEG = np.zeros((0, 0, 0), dtype="i4")


@dataclass
class BandEpochs:
    """The usable epochs of one band and what the output tables record of them."""

    obslist: ObsList
    rows: np.ndarray   # EPOCH_DTYPE rows, in obslist order
    ntot: int          # cutouts considered, before image flags and usability cuts
    nzero: int         # zero-weight pixels over the cutouts that passed image flags
    npix: int          # pixels over those cutouts


def wanted_cutouts(ncutout: int, conf: Mapping) -> np.ndarray:
    """Cutout indices to fit: the coadd (0) and/or the single epochs (1..)."""
    first = 0 if conf["fit_coadd_galaxy"] else 1
    last = ncutout if conf["fit_me_galaxy"] else min(ncutout, 1)
    return np.arange(first, max(first, last), dtype=np.int64)


class BandReader:
    """Builds objects' observations in one band from one MEDS file.

    The per-cutout columns an object needs are converted once, at construction,
    into native arrays; per object, its stacks are read once per cutout type and
    cleaned by one kernel call (:func:`band_stack_nb`), so the Python cost per
    band is a few dozen calls whatever the number of epochs.
    """

    def __init__(self, m: MEDS, band: int, conf: Mapping):
        self.m, self.band, self.conf = m, band, conf
        info = m.get_image_info()
        flags2check = int(conf["image_flags2check"])
        # per source image: flagged by image_flags2check, and the flux scale
        self._bad_image = ((np.asarray(info["image_flags"], dtype=np.int64) & flags2check) != 0
                           if flags2check else np.zeros(info.size, dtype=bool))
        scale = (np.asarray(info["scale"], dtype="f8") if "scale" in info.dtype.names
                 else np.ones(info.size))
        scale[~(np.isfinite(scale) & (scale > 0))] = 1.0
        self._scale = scale
        self._ncut = np.asarray(m["ncutout"], dtype=np.int64)
        self._file_id = np.ascontiguousarray(m.cutout_array("file_id"), dtype=np.int64)
        self._jacs = m.jacobian_table()
        # the epoch table's columns, and the Observations' meta
        self._orig = np.stack([np.asarray(m.cutout_array(name), dtype="f8")
                               for name in ("orig_row", "orig_col")], axis=2)
        self._orig_start = np.stack([np.asarray(m.cutout_array(name), dtype=np.int64)
                                     for name in ("orig_start_row", "orig_start_col")], axis=2)
        self._has_bmask = m.has_cutout_type("bmask")
        self._has_seg = m.has_cutout_type("seg")
        nearest = SEG_REGIONS.get(conf["region"])
        self._region_mode = (REGION_NONE if nearest is None
                             else REGION_NEAREST if nearest else REGION_CWEIGHT)
        # MOF masks failed neighbours by their coadd seg pixels on every epoch
        self._model_nbrs = bool(conf.get("model_nbrs"))
        self._want_seg = self._has_seg and (nearest is not None or self._model_nbrs)
        self._keep_raw = conf["region"] != "weight"
        self._has_psf = m.has_psf()
        if self._has_psf and "psf_cutout_row" in m.get_cat().dtype.names:
            self._psf_centre = np.stack([np.asarray(m.cutout_array(name), dtype="f8")
                                         for name in ("psf_cutout_row", "psf_cutout_col")],
                                        axis=2)
        else:
            self._psf_centre = None
        self._kernel_args = (max(float(conf["min_weight"]), 0.0), bool(conf["reject_outliers"]),
                             OUTLIER_NSIGMA, OUTLIER_A)
        self._bmask_flags = int(conf["bmask_flags2check"])
        self._max_zero = float(conf["max_zero_weight_frac"])

    def stamp_types(self) -> tuple[str, ...]:
        """The cutout types (and ``psf``) :meth:`epochs` reads."""
        types = ("image", "weight") + (("bmask",) if self._has_bmask else ())
        types += ("seg",) if self._want_seg else ()
        return types + (("psf",) if self._has_psf else ())

    def epochs(self, index: int, obj_id: int, number: int) -> BandEpochs:
        """Observations of object ``index`` (catalogue ``obj_id``, seg id ``number``)."""
        m = self.m
        cutouts = wanted_cutouts(int(self._ncut[index]), self.conf)
        ntot = len(cutouts)
        file_ids = self._file_id[index, cutouts]
        flagged = self._bad_image[file_ids]
        if flagged.any():
            cutouts, file_ids = cutouts[~flagged], file_ids[~flagged]
        if len(cutouts) == 0:
            return BandEpochs(ObsList(), np.zeros(0, EPOCH_DTYPE), ntot, 0, 0)

        jacs = self._jacs[index]
        # the coadd seg needs the coadd cutout (0) to map from
        has_seg = self._want_seg and self._file_id[index, 0] == 0
        if has_seg:
            a, b, c, d = jacs[0, 2:6]
            if a * d - b * c == 0.0:
                raise np.linalg.LinAlgError("singular coadd Jacobian: the coadd seg cannot "
                                            "be mapped onto the epochs")
        images, raw, weights, segs, nbad, nzero, npos, wsum, wmax = band_stack_nb(
            m.get_object_stack(index, "image"), m.get_object_stack(index, "weight"),
            m.get_object_stack(index, "bmask") if self._has_bmask else _NO_BMASK,
            self._has_bmask, self._bmask_flags,
            m.get_object_stack(index, "seg") if has_seg else _NO_SEG, has_seg,
            self._region_mode, int(number), cutouts, jacs, self._scale[file_ids],
            *self._kernel_args)
        npix = images[0].size
        usable = np.flatnonzero(nzero <= self._max_zero * npix)
        cuts = cutouts[usable]
        rows = np.zeros(len(cuts), EPOCH_DTYPE)
        rows["id"], rows["number"] = obj_id, number
        rows["band_num"] = self.band
        rows["cutout_index"] = cuts
        rows["orig_row"] = self._orig[index, cuts, 0]
        rows["orig_col"] = self._orig[index, cuts, 1]
        rows["file_id"] = file_ids[usable]
        jac = jacs[cuts]
        rows["pixel_scale"] = np.sqrt(np.abs(jac[:, 2] * jac[:, 5] - jac[:, 3] * jac[:, 4]))
        rows["npix"], rows["wsum"], rows["wmax"] = npos[usable], wsum[usable], wmax[usable]
        obslist = self._observations(index, cuts, usable, jac, images, weights, raw,
                                     segs if has_seg and self._model_nbrs else None, nbad)
        return BandEpochs(obslist, rows, ntot, int(nzero.sum()), npix * len(cutouts))

    def _observations(self, index: int, cuts: np.ndarray, usable: np.ndarray, jac: np.ndarray,
                      images: np.ndarray, weights: np.ndarray, raw: np.ndarray,
                      segs: np.ndarray | None, nbad: np.ndarray) -> ObsList:
        """Wrap the usable epochs' cleaned stamps (finite, weights >= 0) in Observations."""
        m, band = self.m, self.band
        psfs = (_psf_observations(m, index, cuts, jac, self._psf_centre) if self._has_psf
                else [None] * len(cuts))
        file_ids = self._file_id[index, cuts].tolist()
        orig = self._orig[index, cuts].tolist()
        orig_start = self._orig_start[index, cuts].tolist()
        obslist = ObsList()
        for j, k in enumerate(usable.tolist()):
            meta = {"band": band, "cutout_index": int(cuts[j]), "file_id": file_ids[j],
                    "orig_row": orig[j][0], "orig_col": orig[j][1],
                    "orig_start_row": orig_start[j][0], "orig_start_col": orig_start[j][1],
                    "nbad": int(nbad[k])}
            if self._keep_raw:
                meta["weight_raw"] = raw[k]
            if segs is not None:
                meta["coadd_seg"] = segs[k]
            obslist.append(Observation.from_clean(images[k], weights[k],
                                                  Jacobian.from_meds_array(jac[j]),
                                                  psf=psfs[j], meta=meta))
        return obslist


def _psf_observations(m: MEDS, index: int, cuts: np.ndarray, jac: np.ndarray,
                      centres: np.ndarray | None) -> list[Observation]:
    """PSF Observations of the cutouts, centred at (psf_cutout_row, psf_cutout_col)
    (``centres``, an (nobj, nmax, 2) table; None: the stamp centre), with the
    cutouts' Jacobians."""
    if len(cuts) == 0:
        return []
    stamps = m.get_psf_stack(index, cuts)
    if isinstance(stamps, np.ndarray):
        images, weights, nbad = psf_images_and_weights(stamps)
    else:
        parts = [psf_images_and_weights(s[None]) for s in stamps]
        images, weights, nbad = ([p[i][0] for p in parts] for i in range(3))
    if centres is not None:
        rowcol = centres[index, cuts]
    else:
        rowcol = np.array([[(s.shape[0] - 1) / 2.0, (s.shape[1] - 1) / 2.0] for s in stamps])
    pjac = jac.copy()
    pjac[:, :2] = rowcol
    return [Observation.from_clean(images[j], weights[j], Jacobian.from_meds_array(pjac[j]),
                                   meta={"nbad": int(nbad[j])})
            for j in range(len(stamps))]
