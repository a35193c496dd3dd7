"""Drawing objects into the big images of a tile.

Each object is drawn only on its render stamp (``render_size`` pixels square,
around its position in that image, clipped to the image), with galsim's
default method (convolution with the image's pixel), using the image WCS's
local Jacobian at the object. The object's profile is built once per band
and convolved with each image's PSF.
"""

from __future__ import annotations

from typing import Sequence

import galsim
import numpy as np

from .conditions import ImageConditions
from .profiles import object_profile
from .seg import Stamp


def image_positions(wcs: galsim.BaseWCS, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """galsim (x, y) (1-offset) of every object in an image with this WCS."""
    x, y = wcs.radecToxy(truth["ra"], truth["dec"], units="degrees")
    return np.atleast_1d(np.asarray(x, dtype="f8")), np.atleast_1d(np.asarray(y, dtype="f8"))


def render_bounds(x: float, y: float, size: int) -> galsim.BoundsI:
    """Even ``size`` square whose central pixels straddle the object's pixel."""
    ix, iy = int(np.floor(x + 0.5)), int(np.floor(y + 0.5))
    half = size // 2
    return galsim.BoundsI(ix - half + 1, ix + half, iy - half + 1, iy + half)


def draw_objects(images: Sequence[galsim.Image], conds: Sequence[ImageConditions],
                 positions: Sequence[tuple[np.ndarray, np.ndarray]], truth: np.ndarray,
                 band: int, cfg: dict, keep_stamps: bool = False) -> list[Stamp | None]:
    """Add every object of ``truth`` (band index ``band``) to every image.

    ``positions[k]`` holds the galsim (x, y) of the objects in ``images[k]``.
    With ``keep_stamps`` the noiseless stamps drawn into ``images[0]`` are
    returned (0-offset corner + array), e.g. for segmentation and S/N.
    """
    stamps: list[Stamp | None] = []
    for i in range(len(truth)):
        row = truth[i]
        prof = object_profile(row, band, cfg)
        is_star = bool(row["is_star"])
        size = int(row["render_size"])
        for k, (image, cond) in enumerate(zip(images, conds)):
            x, y = float(positions[k][0][i]), float(positions[k][1][i])
            bounds = render_bounds(x, y, size) & image.bounds
            if not bounds.isDefined():
                if keep_stamps and k == 0:
                    stamps.append(None)
                continue
            # a star is the PSF itself; skip a pointless convolution with a delta function
            obj = cond.psf.withFlux(prof.flux) if is_star else galsim.Convolve(prof, cond.psf)
            pos = galsim.PositionD(x, y)
            # the local Jacobian at the object, computed once (galsim would do it twice)
            stamp = galsim.ImageF(bounds, wcs=image.wcs.jacobian(image_pos=pos))
            obj.drawImage(image=stamp, center=pos)
            image[bounds].array[...] += stamp.array
            if keep_stamps and k == 0:
                stamps.append(Stamp(bounds.ymin - image.bounds.ymin,
                                    bounds.xmin - image.bounds.xmin, stamp.array.copy()))
    return stamps
