"""Simulate a survey tile: per band a coadd plus ``nepoch`` single-epoch images,
written as one MEDS file per band, and the truth catalogue.

Stages (timed in :class:`SimSummary`):

1. plan (main process): truth properties, blend groups and positions, and the
   observing conditions of every image (:func:`plan_tile`);
2. rendering, one task per image (balanced over the worker processes; the
   noiseless images go through ``.npy`` files in a temporary directory inside
   the output directory, removed at the end):
   - the noiseless coadd of each band, each object drawn with the coadd PSF.
     The coadd is rendered directly, not stacked from the epochs: its PSF is
     the inverse-variance weighted mean of the epoch PSFs (a ``galsim.Sum``)
     and its noise sigma ``1/sqrt(sum_e 1/sigma_e^2)`` (= sigma/sqrt(E) for
     equal epochs); it has no defects;
   - each noiseless epoch image, with the epoch's own WCS and PSF;
3. seg (main): from the sum over bands of the noiseless coadd stamps;
4. one task per band: noise, bad columns and cosmic rays (bmask bits,
   weight 0) on the epochs, PSF images, and the band's MEDS file.

Every random number comes from numpy Generators seeded by ``(seed, stream,
...)`` (per object, per band and epoch), so the files do not depend on the
number of worker processes: same seed, same bytes.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
import time
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Sequence

import galsim
import numpy as np
import yaml

from ..errors import ConfigError
from ..fitsfile import atomic_fits
from .catalog import band_key, draw_properties, rng_for
from .conditions import ImageConditions, band_conditions, psf_image
from .defects import add_bad_columns, add_cosmic_rays
from .placement import place_objects, realised_density
from .render import draw_objects, image_positions
from .seg import Stamp, make_seg

log = logging.getLogger(__name__)

STREAM_NOISE = 4
STREAM_DEFECTS = 6
SIM_VERSION = "1"


@dataclass
class TilePlan:
    """Everything decided before rendering: truth catalogue and image conditions."""

    tile: str
    bands: list[str]
    nepoch: int
    seed: int
    cfg: dict
    side: int
    truth: np.ndarray
    coadd: list[ImageConditions]          # per band
    epochs: list[list[ImageConditions]]   # per band, per epoch

    @property
    def shape(self) -> tuple[int, int]:
        return (self.side, self.side)

    @property
    def density(self) -> float:
        """Objects per arcmin^2 of the coadd (the requested density up to the rounding
        of the side to whole pixels)."""
        return realised_density(len(self.truth), self.side, self.cfg)


@dataclass
class SimSummary:
    """Output paths and stage timings (seconds) of one simulated tile."""

    meds_paths: list[str]
    truth_path: str
    nobj: int
    side: int
    density: float
    timings: dict = field(default_factory=dict)


def check_request(tile: str, nobj: int, bands: Sequence[str], nepoch: int) -> None:
    """One-line errors for impossible requests (before any work)."""
    if not tile or any(c in tile for c in "/ \t"):
        raise ConfigError(f"tile name {tile!r} must be non-empty without '/' or spaces")
    if nobj <= 0:
        raise ConfigError(f"nobj must be > 0, got {nobj}")
    if nepoch <= 0:
        raise ConfigError(f"nepoch must be > 0, got {nepoch}")
    if not bands or any((not b) or (not b.isalnum()) for b in bands):
        raise ConfigError(f"bad band list {','.join(bands)!r}: give names like g,r,i")
    if len(set(bands)) != len(bands):
        raise ConfigError(f"bad band list {','.join(bands)!r}: a band is repeated")


def plan_tile(tile: str, nobj: int, bands: Sequence[str], nepoch: int, seed: int,
              cfg: dict) -> TilePlan:
    """Draw the truth catalogue and the conditions of every image (no rendering)."""
    bands = list(bands)
    check_request(tile, nobj, bands, nepoch)
    truth = draw_properties(nobj, bands, seed, cfg)
    side = place_objects(truth, seed, cfg)
    coadds, epochs = [], []
    for band in bands:
        c, e = band_conditions(band, nepoch, side, seed, cfg)
        coadds.append(c)
        epochs.append(e)
    wcs = coadds[0].wcs
    ra, dec = wcs.xyToradec(truth["col"] + 1.0, truth["row"] + 1.0, units="degrees")
    truth["ra"], truth["dec"] = ra, dec
    truth["psf_fwhm"] = np.array([c.fwhm for c in coadds])[None, :]
    return TilePlan(tile, bands, nepoch, seed, cfg, side, truth, coadds, epochs)


def _blank(plan: TilePlan, wcs: galsim.BaseWCS) -> galsim.Image:
    return galsim.ImageF(plan.side, plan.side, wcs=wcs)


def render_noiseless_coadd(plan: TilePlan, iband: int,
                           keep_stamps: bool = False):
    """The noiseless coadd (f4 array) of band ``iband``; with ``keep_stamps`` also the
    per-object stamps (for the seg map and S/N)."""
    cond = plan.coadd[iband]
    image = _blank(plan, cond.wcs)
    pos = (plan.truth["col"] + 1.0, plan.truth["row"] + 1.0)
    stamps = draw_objects([image], [cond], [pos], plan.truth, iband, plan.cfg,
                          keep_stamps=keep_stamps)
    return (image.array, stamps) if keep_stamps else image.array


def _coadd_task(plan: TilePlan, iband: int, path: str):
    """Noiseless coadd of one band saved to ``path`` (.npy); returns stamps, S/N, time."""
    t0 = time.perf_counter()
    image, stamps = render_noiseless_coadd(plan, iband, keep_stamps=True)
    np.save(path, image)
    sigma = plan.coadd[iband].noise_sigma
    s2n = np.array([math.sqrt(float(np.sum(s.array.astype("f8") ** 2))) / sigma
                    if s is not None else 0.0 for s in stamps])
    return stamps, s2n, time.perf_counter() - t0


def render_noiseless_epoch(plan: TilePlan, iband: int, iepoch: int) -> np.ndarray:
    """The noiseless single-epoch image ``iepoch`` (0-based) of band ``iband`` (f4)."""
    cond = plan.epochs[iband][iepoch]
    image = _blank(plan, cond.wcs)
    draw_objects([image], [cond], [image_positions(cond.wcs, plan.truth)], plan.truth, iband,
                 plan.cfg)
    return image.array


def _epoch_task(plan: TilePlan, iband: int, iepoch: int, path: str) -> float:
    """Noiseless epoch image saved to ``path`` (.npy); returns the time taken."""
    t0 = time.perf_counter()
    np.save(path, render_noiseless_epoch(plan, iband, iepoch))
    return time.perf_counter() - t0


def _noise(plan: TilePlan, iband: int, iimage: int, shape: tuple[int, int],
           sigma: float) -> np.ndarray:
    rng = rng_for(plan.seed, STREAM_NOISE, band_key(plan.bands[iband]), iimage)
    noise = rng.standard_normal(shape, dtype=np.float32)  # f4 draws: half the time of f8
    noise *= np.float32(sigma)
    return noise


def _meds_metadata(plan: TilePlan, iband: int) -> dict:
    return {"magzp_ref": float(plan.cfg["magzp"]), "band": plan.bands[iband],
            "tilename": plan.tile, "medsconf": "megamixer-sim", "sim_version": SIM_VERSION,
            "seed": int(plan.seed), "nepoch": int(plan.nepoch),
            "config": yaml.safe_dump(plan.cfg, sort_keys=True)}


def _meds_task(plan: TilePlan, iband: int, tmpdir: str, path: str) -> dict:
    """Add noise and defects to one band's noiseless images and write its MEDS file."""
    from ..meds import GalsimWCS, SourceImage, write_meds

    t0 = time.perf_counter()
    cfg, band = plan.cfg, plan.bands[iband]
    dcfg = cfg["defects"]
    psf_size = cfg["psf"]["stamp_size"]
    centre = 0.5 * (plan.side - 1)
    ccond = plan.coadd[iband]
    coadd = np.load(_tmp_name(tmpdir, "coadd", iband))
    coadd += _noise(plan, iband, 0, plan.shape, ccond.noise_sigma)
    sources = [SourceImage(
        image=coadd, wcs=GalsimWCS(ccond.wcs, shape=plan.shape),
        weight=np.full(plan.shape, 1.0 / ccond.noise_sigma ** 2, dtype="f4"),
        seg=np.load(_tmp_name(tmpdir, "seg")), psf=psf_image(ccond, centre, centre, psf_size),
        image_path=f"{plan.tile}_{band}_coadd.fits", magzp=cfg["magzp"], image_id=0)]
    for e, cond in enumerate(plan.epochs[iband]):
        arr = np.load(_tmp_name(tmpdir, "epoch", iband, e))
        arr += _noise(plan, iband, e + 1, plan.shape, cond.noise_sigma)
        weight = np.full(plan.shape, 1.0 / cond.noise_sigma ** 2, dtype="f4")
        bmask = np.zeros(plan.shape, dtype="i4")
        rng = rng_for(plan.seed, STREAM_DEFECTS, band_key(band), e)
        add_bad_columns(arr, weight, bmask, rng, dcfg["bad_columns"], dcfg["bad_column_frac"],
                        cond.noise_sigma)
        add_cosmic_rays(arr, weight, bmask, rng, dcfg["cosmic_rays"], dcfg["cosmic_ray_length"],
                        dcfg["cosmic_ray_amplitude"], cond.noise_sigma)
        sources.append(SourceImage(
            image=arr, wcs=GalsimWCS(cond.wcs, shape=plan.shape), weight=weight, bmask=bmask,
            psf=psf_image(cond, centre, centre, psf_size),
            image_path=f"{plan.tile}_{band}_epoch{e:02d}.fits", magzp=cfg["magzp"],
            image_id=e + 1))
    t_images = time.perf_counter() - t0

    truth = plan.truth
    cat = np.zeros(len(truth), dtype=[("id", "i8"), ("number", "i8"), ("ra", "f8"),
                                      ("dec", "f8"), ("box_size", "i8")])
    for name in cat.dtype.names:
        cat[name] = truth[name]
    t1 = time.perf_counter()
    write_meds(path, cat, sources, metadata=_meds_metadata(plan, iband), clobber=True)
    return {"noise_defects": t_images, "meds_write": time.perf_counter() - t1}


def _tmp_name(tmpdir: str, kind: str, *index: int) -> str:
    return os.path.join(tmpdir, "-".join([kind, *map(str, index)]) + ".npy")


def write_truth(path: str, truth: np.ndarray, plan: TilePlan) -> None:
    """Write the truth table (extension ``truth``) atomically."""
    header = [{"name": "TILENAME", "value": plan.tile},
              {"name": "BANDS", "value": ",".join(plan.bands)},
              {"name": "NEPOCH", "value": plan.nepoch},
              {"name": "SEED", "value": int(plan.seed)},
              {"name": "PIXSCALE", "value": plan.cfg["pixel_scale"]},
              {"name": "IMSIZE", "value": plan.side},
              {"name": "PLACEMNT", "value": plan.cfg["placement"]},
              {"name": "DENSITY", "value": round(plan.density, 6),
               "comment": "objects per arcmin^2"},
              {"name": "SHEAR1", "value": float(plan.cfg["shear"][0])},
              {"name": "SHEAR2", "value": float(plan.cfg["shear"][1])}]
    with atomic_fits(path) as fits:
        fits.write(truth, extname="truth", header=header)


def _submit(pool: ProcessPoolExecutor | None, func, *args):
    """Run now without a pool (in-process mode), else submit to the pool."""
    return func(*args) if pool is None else pool.submit(func, *args)


def _result(job):
    return job.result() if isinstance(job, Future) else job


def simulate_tile(outdir: str | os.PathLike, tile: str, nobj: int, bands: Sequence[str],
                  nepoch: int, seed: int, cfg: dict, nproc: int | None = None) -> SimSummary:
    """Simulate a tile into ``outdir``: ``TILE-BAND-meds.fits`` per band and
    ``TILE-truth.fits``. ``nproc`` worker processes (default: config ``nproc``,
    else the number of CPUs); 1 runs in-process. The output does not depend on it."""
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    plan = plan_tile(tile, nobj, bands, nepoch, seed, cfg)
    timings["plan"] = time.perf_counter() - t_start
    outdir = os.fspath(outdir)
    os.makedirs(outdir, exist_ok=True)
    paths = [os.path.join(outdir, f"{tile}-{band}-meds.fits") for band in plan.bands]
    truth_path = os.path.join(outdir, f"{tile}-truth.fits")
    ntask = len(plan.bands) * (nepoch + 1)  # one rendering task per image
    if nproc is None:
        nproc = cfg.get("nproc") or (os.cpu_count() or 1)
    nproc = max(1, min(int(nproc), ntask))
    log.info("tile %s: %d objects, %dx%d pixels (%.2f/arcmin^2, placement %s), bands %s, "
             "%d epochs, %d process(es)", tile, nobj, plan.side, plan.side, plan.density,
             cfg["placement"], ",".join(plan.bands), nepoch, nproc)

    pool = ProcessPoolExecutor(max_workers=nproc) if nproc > 1 else None
    tmpdir = tempfile.mkdtemp(prefix=f".{tile}-sim-", dir=outdir)
    try:
        # every image of every band is one task (balanced over the workers); the
        # big noiseless images go through .npy files, not the parent's memory
        t0 = time.perf_counter()
        nband = len(plan.bands)
        coadd_jobs = [_submit(pool, _coadd_task, plan, b, _tmp_name(tmpdir, "coadd", b))
                      for b in range(nband)]
        epoch_jobs = [_submit(pool, _epoch_task, plan, b, e, _tmp_name(tmpdir, "epoch", b, e))
                      for b in range(nband) for e in range(plan.nepoch)]
        coadds = [_result(job) for job in coadd_jobs]
        timings["render_coadds_cpu"] = sum(c[2] for c in coadds)

        t1 = time.perf_counter()
        truth = plan.truth
        for b, (_, s2n, _) in enumerate(coadds):
            truth["s2n"][:, b] = s2n
        det_stamps: list[Stamp | None] = []
        for i in range(nobj):
            parts = [c[0][i] for c in coadds if c[0][i] is not None]
            det_stamps.append(None if not parts else Stamp(
                parts[0].row0, parts[0].col0,
                np.sum([p.array.astype("f8") for p in parts], axis=0)))
        coadds = None
        det_sigma = math.sqrt(sum(c.noise_sigma ** 2 for c in plan.coadd))
        seg = make_seg(plan.shape, det_stamps, truth["number"], truth["row"], truth["col"],
                       det_sigma, cfg["seg_threshold"])
        np.save(_tmp_name(tmpdir, "seg"), seg)
        del det_stamps, seg
        timings["seg"] = time.perf_counter() - t1

        timings["render_epochs_cpu"] = sum(_result(job) for job in epoch_jobs)
        timings["render_all"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        meds_jobs = [_submit(pool, _meds_task, plan, b, tmpdir, paths[b]) for b in range(nband)]
        band_times = [_result(job) for job in meds_jobs]
        timings["noise_defects_and_meds"] = time.perf_counter() - t0
        for key in ("noise_defects", "meds_write"):
            timings[key + "_cpu"] = sum(bt[key] for bt in band_times)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
        shutil.rmtree(tmpdir, ignore_errors=True)

    write_truth(truth_path, truth, plan)
    timings["total"] = time.perf_counter() - t_start
    return SimSummary(paths, truth_path, nobj, plan.side, plan.density, timings)
