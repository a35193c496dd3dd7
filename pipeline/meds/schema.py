"""MEDS layout constants shared by the reader and the writer (see docs/meds.rst)."""

from __future__ import annotations

OBJECT_DATA = "object_data"
IMAGE_INFO = "image_info"
METADATA = "metadata"
PSF_EXT = "psf"

#: cutout types in the order their HDUs appear; HDU name is ``<type>_cutouts``
CUTOUT_TYPES = ("image", "weight", "seg", "bmask", "ormask", "noise")

#: default on-disk dtypes written by ``write_meds``
CUTOUT_DTYPES = {"image": "f4", "weight": "f4", "seg": "i4", "bmask": "i4",
                 "ormask": "i4", "noise": "f4"}
PSF_DTYPE = "f4"

#: value of pixels that fall off the source image
EDGE_BIT = 2**30
OFF_IMAGE_FILL = {"image": 0, "weight": 0, "seg": 0, "bmask": EDGE_BIT,
                  "ormask": 0, "noise": 0}

#: value in array columns for unused cutout slots
UNUSED = -9999

DEFAULT_MAGZP_REF = 30.0


def cutout_ext(cutout_type: str) -> str:
    return f"{cutout_type}_cutouts"
