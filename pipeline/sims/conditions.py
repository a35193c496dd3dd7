"""Observing conditions of a simulated tile: WCS, PSF and noise per image.

The coadd has a TAN WCS centred on the tile, with the nominal pixel scale and
north up / east left (``u = -dRA cos(dec)`` along +col). Every epoch covers the
same patch of sky with its own pointing offset, rotation and pixel-scale
jitter (so objects near the edges may miss some epochs), its own Moffat PSF
(FWHM uniform in ``psf.fwhm_range``, small shear) and its own noise level.
The PSF is constant over an image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import galsim
import numpy as np

from .catalog import band_key, rng_for

STREAM_EPOCH = 3


@dataclass
class ImageConditions:
    """What is needed to render one image (coadd or epoch) of one band."""

    wcs: galsim.BaseWCS
    psf: galsim.GSObject
    noise_sigma: float
    fwhm: float = 0.0     # for epochs: the Moffat FWHM; for the coadd, the weighted mean
    psf_g1: float = 0.0
    psf_g2: float = 0.0


def coadd_wcs(side: int, cfg: dict) -> galsim.BaseWCS:
    """TAN WCS of the coadd; galsim image origin (1, 1), centre pixel at the tile centre."""
    scale = cfg["pixel_scale"]
    centre = galsim.PositionD(0.5 * (side + 1), 0.5 * (side + 1))
    world = galsim.CelestialCoord(cfg["ra_center"] * galsim.degrees,
                                  cfg["dec_center"] * galsim.degrees)
    return galsim.TanWCS(galsim.AffineTransform(scale, 0.0, 0.0, scale, origin=centre),
                         world_origin=world)


def noise_for_band(band: str, cfg: dict) -> float:
    table = cfg["noise_sigma"]
    return float(table.get(band, table["default"]))


def band_conditions(band: str, nepoch: int, side: int, seed: int,
                    cfg: dict) -> tuple[ImageConditions, list[ImageConditions]]:
    """(coadd, epochs) conditions of one band; epochs are drawn from (seed, band, epoch).

    The coadd PSF is the inverse-variance weighted mean of the epoch PSFs (a
    ``galsim.Sum``) and its noise ``1/sqrt(sum 1/sigma_e^2)``, i.e. what an
    optimally weighted coadd of the epochs would have.
    """
    pcfg, wcfg = cfg["psf"], cfg["wcs"]
    scale = cfg["pixel_scale"]
    base_sigma = noise_for_band(band, cfg)
    centre = galsim.PositionD(0.5 * (side + 1), 0.5 * (side + 1))
    tile_centre = galsim.CelestialCoord(cfg["ra_center"] * galsim.degrees,
                                        cfg["dec_center"] * galsim.degrees)
    epochs = []
    for e in range(nepoch):
        rng = rng_for(seed, STREAM_EPOCH, band_key(band), e)
        fwhm = rng.uniform(*pcfg["fwhm_range"])
        g1, g2 = rng.normal(0.0, pcfg["g_sigma"], 2)
        du, dv = rng.uniform(-wcfg["shift_max"], wcfg["shift_max"], 2)
        theta = math.radians(rng.uniform(-wcfg["rotation_max"], wcfg["rotation_max"]))
        s = scale * (1.0 + wcfg["scale_jitter"] * rng.standard_normal())
        sigma = base_sigma * max(0.1, 1.0 + cfg["noise_jitter"] * rng.standard_normal())
        cos, sin = math.cos(theta), math.sin(theta)
        affine = galsim.AffineTransform(s * cos, -s * sin, s * sin, s * cos, origin=centre)
        pointing = tile_centre.deproject(du * galsim.arcsec, dv * galsim.arcsec)
        wcs = galsim.TanWCS(affine, world_origin=pointing)
        psf = galsim.Moffat(beta=pcfg["beta"], fwhm=fwhm).shear(g1=g1, g2=g2)
        epochs.append(ImageConditions(wcs, psf, sigma, fwhm, float(g1), float(g2)))

    ivar = np.array([1.0 / c.noise_sigma ** 2 for c in epochs])
    weights = ivar / ivar.sum()
    coadd_psf = galsim.Sum([float(w) * c.psf for w, c in zip(weights, epochs)])
    coadd = ImageConditions(coadd_wcs(side, cfg), coadd_psf, float(1.0 / math.sqrt(ivar.sum())),
                            float(np.dot(weights, [c.fwhm for c in epochs])))
    return coadd, epochs


def psf_image(cond: ImageConditions, row: float, col: float, size: int) -> np.ndarray:
    """PSF (with pixel) at image position (row, col), on an odd ``size`` stamp centred at
    ((size-1)/2, (size-1)/2), in that image's local WCS; unit sum."""
    local = cond.wcs.local(galsim.PositionD(col + 1.0, row + 1.0))
    im = cond.psf.drawImage(nx=size, ny=size, wcs=local)
    arr = im.array.astype("f8")
    return arr / arr.sum()
