"""ImageIO for one MEDS file per band (same objects, same order)."""

from __future__ import annotations

import logging
import os
from typing import Sequence

import numpy as np

from ..errors import InputFileError
from ..gmix import flags as F
from ..gmix.jacobian import Jacobian
from ..gmix.observation import MultiBandObsList, Observation, ObsList
from ..meds import MEDS
from ..meds import regions
from ..meds.regions import map_coadd_seg, outlier_mask
from .base import EPOCH_DTYPE, FitObject, ImageIO
from .groups import groups_from_fofs

logger = logging.getLogger(__name__)

# PSF stamps carry no weight map; a uniform weight at 1e-3 of the peak keeps
# the fit well conditioned without pretending the model is perfect.
PSF_REL_NOISE = 1.0e-3


class MedsImageIO(ImageIO):
    """Yield FoF groups of objects with observations read from MEDS files.

    conf: the validated fit config (see ``pipeline.fitconfig``).
    fofs: FoF table (``fofid``, ``number``) or None for one object per group.
    obj_flags: table (``id``, ``flags``) of objects to skip, or None.
    """

    def __init__(self, meds_paths: Sequence[str], conf: dict,
                 fofs: np.ndarray | None = None, fof_source: str = "fof file",
                 obj_flags: np.ndarray | None = None):
        if not meds_paths:
            raise InputFileError("<command line>", "no MEDS files given")
        self.paths = [os.fspath(p) for p in meds_paths]
        self.conf = conf
        self.nband = len(self.paths)
        self.meds = [MEDS(p) for p in self.paths]
        self._check_consistent()
        cat = self.meds[0]
        self._cat = cat.get_cat()
        self._numbers = (np.asarray(self._cat["number"]) if "number" in self._cat.dtype.names
                         else np.arange(1, cat.size + 1))
        self._order, self._starts, self._fofids = groups_from_fofs(
            self._numbers, fofs, fof_source)
        self._skip = self._read_obj_flags(obj_flags)
        self._image_info = [m.get_image_info() for m in self.meds]

    # -- structure -------------------------------------------------------
    def _check_consistent(self) -> None:
        ref = self.meds[0]
        for path, m in zip(self.paths[1:], self.meds[1:]):
            if m.size != ref.size:
                raise InputFileError(path, f"has {m.size} objects but {self.paths[0]} "
                                           f"has {ref.size}: band files must match")
            if not np.array_equal(m["id"], ref["id"]):
                raise InputFileError(path, f"object ids differ from {self.paths[0]}")

    def _read_obj_flags(self, obj_flags: np.ndarray | None) -> dict:
        if obj_flags is None:
            return {}
        return {int(i): int(f) for i, f in zip(obj_flags["id"], obj_flags["flags"]) if f != 0}

    @property
    def ngroups(self) -> int:
        return len(self._fofids)

    def group_indices(self, igroup: int) -> np.ndarray:
        return self._order[self._starts[igroup]:self._starts[igroup + 1]]

    def group_id(self, igroup: int) -> int:
        return int(self._fofids[igroup])

    def get_group(self, igroup: int) -> list[FitObject]:
        fofid = self.group_id(igroup)
        return [self.get_object(int(i), fofid) for i in self.group_indices(igroup)]

    def object_table(self) -> np.ndarray:
        return self._cat

    def meta_data(self) -> dict:
        metas = []
        for m in self.meds:
            meta = m.get_meta()
            metas.append(meta)
        return {"meds_files": self.paths, "meds_meta": metas}

    def close(self) -> None:
        for m in self.meds:
            m.close()

    # -- objects ---------------------------------------------------------
    def get_object(self, index: int, fofid: int) -> FitObject:
        cat = self._cat
        obj = FitObject(
            index=index, id=int(cat["id"][index]), number=int(self._numbers[index]),
            fofid=fofid, ra=float(cat["ra"][index]), dec=float(cat["dec"][index]),
            box_size=int(cat["box_size"][index]), nband=self.nband,
            nimage_tot=np.zeros(self.nband, "i4"), nimage_use=np.zeros(self.nband, "i4"),
        )
        if obj.id in self._skip:
            obj.obj_flags |= F.BAD_OBJ
            obj.extra["input_flags"] = self._skip[obj.id]
            return obj
        if self.conf.get("propagate_star_flags") and "flags" in cat.dtype.names:
            obj.extra["input_flags"] = int(cat["flags"][index])
        if obj.box_size > self.conf["max_box_size"]:
            obj.obj_flags |= F.BOX_SIZE_TOO_BIG
            return obj

        mbobs = MultiBandObsList()
        epoch_rows = []
        nmasked = npix_total = 0
        for band, m in enumerate(self.meds):
            obslist, rows, band_tot, masked, npix = self._band_observations(m, band, obj)
            obj.nimage_tot[band] = band_tot
            obj.nimage_use[band] = len(obslist)
            nmasked += masked
            npix_total += npix
            mbobs.append(obslist)
            epoch_rows.extend(rows)
        obj.mask_frac = nmasked / npix_total if npix_total else 1.0
        if obj.nimage_tot.sum() == 0:
            obj.obj_flags |= F.NO_CUTOUTS
        elif np.any(obj.nimage_use == 0):
            obj.obj_flags |= F.IMAGE_FLAGS
        else:
            obj.mbobs = mbobs
        obj.epochs = np.array(epoch_rows, dtype=EPOCH_DTYPE)
        return obj

    def _wanted_cutouts(self, m: MEDS, index: int) -> list[int]:
        ncut = int(m["ncutout"][index])
        first = 0 if self.conf["fit_coadd_galaxy"] else 1
        last = ncut if self.conf["fit_me_galaxy"] else min(ncut, 1)
        return list(range(first, last))

    def _region_weights(self, m: MEDS, index: int, cutouts: np.ndarray,
                        raw: np.ndarray) -> np.ndarray:
        """The configured weight region of each cutout, from the (scaled) raw weights.

        The coadd seg stamp, the object's seg id and the coadd Jacobian are the
        same for every epoch, so they are looked up once per object and band.
        """
        region = self.conf["region"]
        func = {"uberseg": regions.uberseg, "cweight-nearest": regions.uberseg,
                "cweight": regions.cweight}.get(region)
        if func is None or not m.has_cutout_type("seg") or int(m["file_id"][index, 0]) != 0:
            return raw.copy()
        coadd_seg = m.get_cutout(index, 0, type="seg")
        jac_coadd = m.get_jacobian(index, 0)
        segid = regions.object_segid(coadd_seg, jac_coadd["row0"], jac_coadd["col0"],
                                     int(self._numbers[index]))
        return np.stack([
            func(raw[k], coadd_seg, segid, jac_coadd=jac_coadd,
                 jac_epoch=m.get_jacobian(index, int(icut)) if icut > 0 else None)
            for k, icut in enumerate(cutouts)])

    def _band_observations(self, m: MEDS, band: int, obj: FitObject):
        """Build the band's ObsList; returns (obslist, epoch rows, ntot, nmasked, npix).

        An object's stamps share one box size, so the band's cutouts are handled
        as one stacked array: the per-pixel masks cost one numpy call per band.
        """
        conf = self.conf
        index = obj.index
        info = self._image_info[band]
        cutouts = np.asarray(self._wanted_cutouts(m, index), dtype=np.int64)
        ntot = len(cutouts)
        file_ids = np.asarray(m["file_id"][index], dtype=np.int64)[cutouts]
        if conf["image_flags2check"] and ntot:
            keep = (info["image_flags"][file_ids] & conf["image_flags2check"]) == 0
            cutouts, file_ids = cutouts[keep], file_ids[keep]
        if len(cutouts) == 0:
            return ObsList(), [], ntot, 0, 0
        scale = (np.asarray(info["scale"][file_ids], dtype="f8") if "scale" in info.dtype.names
                 else np.ones(len(cutouts)))
        scale[~(np.isfinite(scale) & (scale > 0))] = 1.0
        scale = scale[:, None, None]
        images = m.get_cutout_stack(index, cutouts, "image").astype("f8") * scale
        # The raw weight (with pixel masks) judges an epoch's usability: pixels a
        # region hands to neighbours are not missing data. MOF also fits with it
        # after its first sweeps.
        raw = m.get_cutout_stack(index, cutouts, "weight").astype("f8") / scale ** 2
        keep_raw = conf["region"] != "weight"
        weights = self._region_weights(m, index, cutouts, raw) if keep_raw else raw
        bad = ~np.isfinite(images) | (raw < conf["min_weight"])
        if m.has_cutout_type("bmask"):
            bad |= (m.get_cutout_stack(index, cutouts, "bmask") & conf["bmask_flags2check"]) != 0
        raw[bad] = 0.0
        if keep_raw:
            weights[bad | (weights < conf["min_weight"])] = 0.0

        if conf["reject_outliers"] and len(cutouts) >= 3:
            # judged with the raw weight, so the test sees every epoch's pixels of the
            # neighbours too, and applied to both weights
            outliers = outlier_mask(images, raw)
            raw[outliers] = 0.0
            weights[outliers] = 0.0

        zero = raw <= 0
        nzero = zero.sum(axis=(1, 2))
        usable = nzero <= conf["max_zero_weight_frac"] * zero[0].size
        npos = (weights > 0).sum(axis=(1, 2))
        wsum = weights.sum(axis=(1, 2))
        wmax = weights.max(axis=(1, 2))
        obslist = ObsList()
        rows = []
        for k in np.flatnonzero(usable):
            icut = int(cutouts[k])
            obs = self._make_obs(m, index, icut, images[k], weights[k], band)
            if keep_raw:
                obs.meta["weight_raw"] = raw[k]
            obslist.append(obs)
            rows.append((obj.id, obj.number, band, icut, m["orig_row"][index, icut],
                         m["orig_col"][index, icut], file_ids[k], obs.jacobian.get_scale(),
                         int(npos[k]), float(wsum[k]), float(wmax[k])))
        return obslist, rows, ntot, int(nzero.sum()), int(zero.size)

    @staticmethod
    def _psf_center(m: MEDS, index: int, icut: int, shape: tuple) -> tuple[float, float]:
        names = m.get_cat().dtype.names
        if "psf_cutout_row" in names and "psf_cutout_col" in names:
            return float(m["psf_cutout_row"][index, icut]), float(m["psf_cutout_col"][index, icut])
        return (shape[0] - 1) / 2.0, (shape[1] - 1) / 2.0

    def _make_obs(self, m: MEDS, index: int, icut: int, image: np.ndarray,
                  weight: np.ndarray, band: int) -> Observation:
        jd = m.get_jacobian(index, icut)
        jac = Jacobian(row=jd["row0"], col=jd["col0"], dudrow=jd["dudrow"],
                       dudcol=jd["dudcol"], dvdrow=jd["dvdrow"], dvdcol=jd["dvdcol"])
        meta = {"band": band, "cutout_index": icut, "file_id": int(m["file_id"][index, icut]),
                "orig_row": float(m["orig_row"][index, icut]),
                "orig_col": float(m["orig_col"][index, icut]),
                "orig_start_row": int(m["orig_start_row"][index, icut]),
                "orig_start_col": int(m["orig_start_col"][index, icut])}
        psf_obs = None
        if m.has_psf():
            psf_im = m.get_psf(index, icut).astype("f8")
            prow, pcol = self._psf_center(m, index, icut, psf_im.shape)
            pjac = Jacobian(row=prow, col=pcol, dudrow=jd["dudrow"], dudcol=jd["dudcol"],
                            dvdrow=jd["dvdrow"], dvdcol=jd["dvdcol"])
            peak = float(np.nanmax(np.abs(psf_im))) if psf_im.size else 0.0
            noise = PSF_REL_NOISE * peak if peak > 0 else 1.0
            psf_obs = Observation(psf_im, weight=np.full(psf_im.shape, 1.0 / noise ** 2),
                                  jacobian=pjac)
        if self.conf.get("model_nbrs") and m.has_cutout_type("seg"):
            # MOF masks failed neighbours by their coadd seg pixels on every epoch
            meta["coadd_seg"] = self._coadd_seg_on(m, index, icut, image.shape)
        return Observation(image, weight=weight, jacobian=jac, psf=psf_obs, meta=meta)

    @staticmethod
    def _coadd_seg_on(m: MEDS, index: int, icut: int, shape: tuple) -> np.ndarray | None:
        """The coadd seg stamp mapped onto cutout ``icut`` (None without a coadd cutout)."""
        if int(m["file_id"][index, 0]) != 0:
            return None
        coadd_seg = m.get_cutout(index, 0, type="seg")
        if icut == 0:
            return coadd_seg
        return map_coadd_seg(coadd_seg, m.get_jacobian(index, 0), m.get_jacobian(index, icut),
                             shape)
