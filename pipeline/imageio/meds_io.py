"""ImageIO for one MEDS file per band (same objects, same order)."""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from ..errors import InputFileError
from ..gmix import flags as F
from ..gmix.observation import MultiBandObsList
from ..meds import MEDS
from .base import FitObject, ImageIO
from .groups import groups_from_fofs
from .meds_band import SEG_REGIONS, BandReader


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
        self.meds = []
        try:
            for p in self.paths:
                self.meds.append(MEDS(p))
            self._check_consistent()
            self._check_serves_config()
        except BaseException:
            self.close()
            raise
        cat = self.meds[0]
        self._cat = cat.get_cat()
        self._numbers = (np.asarray(self._cat["number"]) if "number" in self._cat.dtype.names
                         else np.arange(1, cat.size + 1))
        self._order, self._starts, self._fofids = groups_from_fofs(
            self._numbers, fofs, fof_source)
        self._skip = self._read_obj_flags(obj_flags)
        self._bands = [BandReader(m, band, conf) for band, m in enumerate(self.meds)]

    # -- structure -------------------------------------------------------
    def _check_consistent(self) -> None:
        ref = self.meds[0]
        for path, m in zip(self.paths[1:], self.meds[1:]):
            if m.size != ref.size:
                raise InputFileError(path, f"has {m.size} objects but {self.paths[0]} "
                                           f"has {ref.size}: band files must match")
            if not np.array_equal(m["id"], ref["id"]):
                raise InputFileError(path, f"object ids differ from {self.paths[0]}")

    def _check_serves_config(self) -> None:
        """Refuse, before any fitting, files that lack what the config needs (a file
        cut short at an HDU boundary would otherwise fit nothing, or quietly lose
        its weight region)."""
        needs = {"weight": "every fit"}  # image_cutouts: checked when the file opens
        if self.conf["region"] in SEG_REGIONS:
            needs["seg"] = f"region '{self.conf['region']}'"
        for path, m in zip(self.paths, self.meds):
            if (self.conf["image_flags2check"]
                    and "image_flags" not in (m.get_image_info().dtype.names or ())):
                raise InputFileError(path, "image_info has no 'image_flags' column, which "
                                           "image_flags2check needs")
            for kind, why in needs.items():
                if not m.has_cutout_type(kind):
                    raise InputFileError(path, f"no '{kind}_cutouts' HDU, which {why} needs "
                                               f"(truncated file?)")
            if self.conf.get("imageio", {}).get("psf_source", "meds") == "meds":
                try:
                    m.require_psf()
                except InputFileError as err:
                    raise InputFileError(path, f"{err.problem}, which imageio.psf_source "
                                               f"'meds' needs") from None

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

    def prefetch_group(self, igroup: int) -> None:
        """Start reading the group's stamps into the page cache while the current
        group is fitted: the stamps of a chunk are read in FoF order, not file order,
        so on a cold cache every read would otherwise wait for the disk."""
        if not 0 <= igroup < self.ngroups:
            return
        for band in self._bands:
            types = band.stamp_types()
            for index in self.group_indices(igroup):
                band.m.prefetch(int(index), types)

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
        band_rows = []
        nzero = npix = 0
        for band, reader in enumerate(self._bands):
            epochs = reader.epochs(index, obj.id, obj.number)
            obj.nimage_tot[band] = epochs.ntot
            obj.nimage_use[band] = len(epochs.obslist)
            nzero += epochs.nzero
            npix += epochs.npix
            mbobs.append(epochs.obslist)
            band_rows.append(epochs.rows)
        obj.zero_weight_frac = nzero / npix if npix else 1.0
        if obj.nimage_tot.sum() == 0:
            obj.obj_flags |= F.NO_CUTOUTS
        elif np.any(obj.nimage_use == 0):
            obj.obj_flags |= F.IMAGE_FLAGS
        else:
            obj.mbobs = mbobs
        obj.epochs = np.concatenate(band_rows)
        return obj
