"""The ngmixit driver: fit a range of FoF groups and write one output file.

Reproducibility: every object gets its own random stream seeded from
``(seed, object id)``, so an object's result does not depend on which chunk
fitted it or what was fitted before it; chunked runs concatenate to exactly
the single-run catalogue.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import yaml

from . import __version__, interrupts
from .diagnostics import diagnostic
from .config import check_seed
from .errors import ConfigError, InputFileError, PipelineError
from .fileio import atomic_path, check_writable, temporary_name
from .fitconfig import load_fit_config
from .fitsfile import check_regular_file, read_header
from .fitters.base import get_fitter
from .gmix import flags as F
from .identity import check_derived_file, tile_catalog
from .columns import dtype_of
from .imageio.base import EPOCH_COLUMNS
from .imageio.meds_io import MedsImageIO
from .output import (base_columns, checkpoint_path, diagnostics_path, make_meta_table,
                     read_checkpoint, write_checkpoint, write_fit_output)
from .provenance import fit_provenance
from .rows import new_rows
from .tables import read_table

logger = logging.getLogger(__name__)


@dataclass
class RunOptions:
    """Everything ``ngmixit`` takes besides the config, output and MEDS paths."""

    fof_range: tuple[int, int] | None = None
    fof_file: str | None = None
    nbrs_file: str | None = None
    mof_file: str | None = None
    obj_flags_file: str | None = None
    seed: int | None = None
    work_dir: str | None = None
    checkpoint_seconds: float | None = None
    make_plots: bool = False
    progress: bool | None = None
    tags: dict[str, str] = field(default_factory=dict)


def object_rng(seed: int, object_id: int) -> np.random.Generator:
    """The random stream of one object: a function of the run seed and its id only."""
    return np.random.default_rng(np.random.SeedSequence([seed, int(object_id) % 2**63]))


def parse_range(text: str) -> tuple[int, int]:
    """Parse ``a,b`` (inclusive, 0-based)."""
    try:
        first, last = (int(v) for v in text.split(","))
    except ValueError:
        raise PipelineError(f"--fof-range: expected 'first,last' integers, got {text!r}") from None
    if first < 0 or last < first:
        raise PipelineError(f"--fof-range: invalid range {text!r} (need 0 <= first <= last)")
    return first, last


class Run:
    """One ngmixit invocation."""

    def __init__(self, config_path: str, out_path: str, meds_paths: list[str],
                 opts: RunOptions):
        self.config_path = config_path
        self.out_path = out_path
        self.meds_paths = list(meds_paths)
        self.opts = opts
        self.conf = load_fit_config(config_path)
        for path in self.meds_paths:
            if not os.path.lexists(path):
                raise InputFileError(path, "MEDS file not found")
            check_regular_file(path)
        self._check_output_is_not_an_input()
        check_writable(out_path)
        if opts.work_dir:
            check_writable(os.path.join(opts.work_dir, os.path.basename(out_path)))
        seed = opts.seed if opts.seed is not None else self.conf["global_seed"]
        if seed is None:
            seed = int(np.random.SeedSequence().entropy % 2**31)
            logger.warning("no --seed given: using random seed %d (rerun with it to "
                           "reproduce)", seed)
        self.seed = check_seed(seed, "--seed" if opts.seed is not None else
                               f"{config_path}: global_seed")
        self.catalog = tile_catalog(self.meds_paths)
        fofs = obj_flags = None
        if opts.fof_file:
            fofs = read_table(opts.fof_file, ("fofid", "number"))
            self._check_identity(opts.fof_file, "FoF file", 1)
        if opts.obj_flags_file:
            obj_flags = read_table(opts.obj_flags_file, ("id", "flags"))
            if not self._check_identity(opts.obj_flags_file, "obj-flags file", 1):
                self._check_members(opts.obj_flags_file, obj_flags["id"], self.catalog.id, "ids")
        if opts.nbrs_file and not self._check_identity(opts.nbrs_file, "neighbour file", 1):
            nbrs = read_table(opts.nbrs_file, ("number",))
            self._check_members(opts.nbrs_file, nbrs["number"], self.catalog.number, "numbers")
        if opts.mof_file and not self._check_identity(opts.mof_file, "MOF file", 0):
            mof = read_table(opts.mof_file, ("number",), ext="model_fits")
            self._check_members(opts.mof_file, mof["number"], self.catalog.number, "numbers")
        self.io = MedsImageIO(self.meds_paths, self.conf, fofs=fofs,
                              fof_source=opts.fof_file or "fof file", obj_flags=obj_flags)
        self.nband = self.io.nband
        ngroups = self.io.ngroups
        if opts.fof_range is None:
            self.first, self.last = 0, ngroups - 1
        else:
            self.first, self.last = opts.fof_range
            if self.last >= ngroups:
                raise InputFileError(opts.fof_file or self.meds_paths[0],
                                     f"--fof-range {self.first},{self.last} is outside the "
                                     f"{ngroups} groups (0..{ngroups - 1})")
        try:
            self.fitter = get_fitter(self.conf, self.nband)
        except ConfigError as err:
            raise ConfigError(f"{config_path}: {err}") from None
        self.fitter.setup(self)
        self.model_dtype = dtype_of(base_columns(self.nband) + self.fitter.model_columns())
        self.epoch_dtype = dtype_of(EPOCH_COLUMNS + self.fitter.epoch_columns())
        self.diagnostics: list[dict] = []
        self.provenance = fit_provenance(
            config_path, self.catalog.digest(),
            {"fof": opts.fof_file, "nbrs": opts.nbrs_file, "mof": opts.mof_file,
             "obj_flags": opts.obj_flags_file},
            self.seed, self.first, self.last, ngroups, opts.tags)

    # -- input checks --------------------------------------------------------
    def _inputs(self) -> list[str]:
        opts = self.opts
        return [p for p in [self.config_path, *self.meds_paths, opts.fof_file, opts.nbrs_file,
                            opts.mof_file, opts.obj_flags_file] if p]

    def _check_output_is_not_an_input(self) -> None:
        out = os.path.realpath(self.out_path)
        for path in self._inputs():
            if os.path.realpath(path) == out:
                raise InputFileError(self.out_path, "the output would overwrite an input file")

    def _check_identity(self, path: str, what: str, ext: int) -> bool:
        """True when ``path`` carries the catalogue digest (checked); False for a file
        without one (then the caller checks it by content)."""
        if check_derived_file(path, read_header(path, ext=ext), self.catalog, what):
            return True
        logger.warning("%s: %s carries no catalogue digest (not written by megamixer): "
                       "checked by content only", path, what)
        return False

    @staticmethod
    def _check_members(path: str, values: np.ndarray, known: np.ndarray, what: str) -> None:
        values = np.asarray(values, dtype=np.int64)
        unknown = values[~np.isin(values, known)]
        unknown = unknown[unknown >= 0]  # -1 marks "no neighbour" in nbrs files
        if unknown.size:
            raise InputFileError(path, f"{unknown.size} object {what} are not in the MEDS "
                                       f"files (first: {int(unknown[0])}): built for another "
                                       f"tile?")

    # -- state -------------------------------------------------------------
    def _state_key(self) -> dict:
        """Everything that changes the results: a checkpoint resumes only when it matches."""
        p = self.provenance
        meds = []
        for path in self.meds_paths:
            st = os.stat(path)
            meds.append([os.path.abspath(path), st.st_size, st.st_mtime_ns])
        return {"range": [self.first, self.last], "seed": self.seed, "catalog": p.catalog,
                "config": p.config, "inputs": p.inputs, "meds": meds,
                "version": __version__}

    def _resume(self, ckpt: str):
        if not os.path.lexists(ckpt):
            return [], [], self.first
        try:
            model_fits, epoch_data, state, extra = read_checkpoint(ckpt)
        except InputFileError as err:
            aside = f"{ckpt}.unreadable-{time.strftime('%Y%m%dT%H%M%S')}"
            os.replace(ckpt, aside)
            logger.warning("%s; moved it to %s and starting over", err, aside)
            return [], [], self.first
        if state.get("key") != self._state_key():
            logger.warning("ignoring checkpoint %s: it was written for other inputs, config, "
                           "seed or range", ckpt)
            return [], [], self.first
        self.diagnostics = state.get("diagnostics", [])
        self.fitter.resume_extra(extra)
        nxt = int(state["next_group"])
        logger.info("resuming from checkpoint %s at group %d (%d objects done)",
                    ckpt, nxt, len(model_fits))
        epochs = [epoch_data] if epoch_data is not None and len(epoch_data) else []
        return [model_fits.astype(self.model_dtype)], [e.astype(self.epoch_dtype) for e in epochs], nxt

    # -- fitting -----------------------------------------------------------
    def fit_group(self, igroup: int) -> tuple[np.ndarray, np.ndarray]:
        """Read and fit one FoF group; failures become flags and diagnostics."""
        fofid = self.io.group_id(igroup)
        indices = self.io.group_indices(igroup)
        objects = []
        for index in indices:
            try:
                objects.append(self.io.get_object(int(index), fofid))
            except PipelineError:
                raise
            except Exception as err:  # noqa: BLE001 - one bad object must not stop the run
                interrupts.reraise_if_interrupted(err)
                objects.append(self._failed_read(int(index), fofid, err))
        rows = new_rows(self.model_dtype, len(objects))
        epoch_rows = []
        for i, obj in enumerate(objects):
            self._fill_base(rows[i], obj, i)
            erows = new_rows(self.epoch_dtype, 0 if obj.epochs is None else len(obj.epochs))
            if obj.epochs is not None:
                for name in obj.epochs.dtype.names:
                    erows[name] = obj.epochs[name]
            epoch_rows.append(erows)
        rngs = [object_rng(self.seed, obj.id) for obj in objects]
        start = time.perf_counter()
        self.fitter.fit_group(objects, rngs, rows, epoch_rows, self.diagnostics)
        elapsed = time.perf_counter() - start
        for row, obj in zip(rows, objects):
            row["time_last_fit"] = elapsed / max(1, len(objects))
            if obj.mbobs is None:
                row["flags"] |= obj.obj_flags or F.NO_ATTEMPT
        self._last_objects = objects
        epochs = np.concatenate(epoch_rows) if epoch_rows else new_rows(self.epoch_dtype, 0)
        return rows, epochs

    def _failed_read(self, index: int, fofid: int, err: Exception):
        from .imageio.base import FitObject
        cat = self.io.object_table()
        obj = FitObject(index=index, id=int(cat["id"][index]), number=int(cat["number"][index]),
                        fofid=fofid, ra=float(cat["ra"][index]), dec=float(cat["dec"][index]),
                        box_size=int(cat["box_size"][index]), nband=self.nband,
                        obj_flags=F.UTTER_FAILURE,
                        nimage_tot=np.zeros(self.nband, "i4"),
                        nimage_use=np.zeros(self.nband, "i4"))
        self.diagnostics.append(diagnostic(obj, "read", err))
        logger.warning("object id=%d: reading failed: %s", obj.id, err)
        return obj

    def _fill_base(self, row: np.ndarray, obj, fofind: int) -> None:
        for name in ("id", "number", "ra", "dec", "fofid", "box_size", "nimage_tot",
                     "nimage_use", "zero_weight_frac", "obj_flags"):
            row[name] = getattr(obj, name)
        row["fofind"] = fofind
        row["flags"] = 0

    # -- driver ------------------------------------------------------------
    def execute(self) -> str:
        """Fit the range, checkpointing, and write the output atomically.

        SIGINT/SIGTERM save a checkpoint of the finished groups and raise
        :class:`~pipeline.interrupts.Interrupted`; a rerun resumes from it.
        """
        opts = self.opts
        final = os.path.abspath(self.out_path)
        work_out = final
        if opts.work_dir:
            os.makedirs(opts.work_dir, exist_ok=True)
            work_out = os.path.join(opts.work_dir, os.path.basename(final))
        ckpt = checkpoint_path(final)
        interval = (opts.checkpoint_seconds if opts.checkpoint_seconds is not None
                    else self.conf["checkpoint_seconds"])
        models, epochs, start_group = self._resume(ckpt)
        ngroup = self.last - start_group + 1
        logger.info("fitting groups %d..%d of %d (%s fitter, seed %d)", start_group, self.last,
                    self.io.ngroups, self.fitter.name, self.seed)
        last_ckpt = time.monotonic()
        t0 = time.monotonic()
        nxt = saved = start_group     # first group not fitted yet; first not checkpointed
        with interrupts.graceful():
            try:
                for igroup in progress(range(start_group, self.last + 1), opts.progress, ngroup):
                    if igroup < self.last:
                        self.io.prefetch_group(igroup + 1)
                    rows, erows = self.fit_group(igroup)
                    models.append(rows)
                    epochs.append(erows)
                    nxt = igroup + 1
                    if opts.make_plots:
                        self._plots(igroup)
                    if interrupts.requested():
                        raise KeyboardInterrupt
                    if igroup < self.last and time.monotonic() - last_ckpt >= interval:
                        self._checkpoint(ckpt, models, epochs, nxt)
                        saved = nxt
                        last_ckpt = time.monotonic()
            except KeyboardInterrupt:
                # the group being fitted when a second signal came was not appended
                if nxt > saved:
                    self._checkpoint(ckpt, models, epochs, nxt)
                signum = interrupts.requested() or signal.SIGINT
                self.io.close()
                saved_text = (f"checkpoint {ckpt} holds {nxt - self.first} of "
                              f"{self.last - self.first + 1} groups" if nxt > self.first
                              else "no group was finished")
                raise interrupts.Interrupted(
                    signum, f"{signal.Signals(signum).name}: stopped; {saved_text}: rerun the "
                            f"same command to resume") from None
        model_fits = (np.concatenate(models) if models else new_rows(self.model_dtype, 0))
        epoch_data = (np.concatenate(epochs) if epochs else new_rows(self.epoch_dtype, 0))
        meta = make_meta_table(self.config_path, yaml.safe_dump(self.conf, sort_keys=True),
                               self.meds_paths,
                               self.io.meta_data()["meds_meta"], self.seed,
                               (self.first, self.last), self.fitter.name)
        write_fit_output(work_out, model_fits, epoch_data, meta, self.fitter.extra_tables(),
                         self.provenance)
        if work_out != final:
            moving = temporary_name(final)
            shutil.move(work_out, moving)   # may copy across file systems: rename last
            os.replace(moving, final)
        self._write_diagnostics(final)
        if os.path.exists(ckpt):
            os.unlink(ckpt)
        nok = int(np.sum(model_fits["flags"] == 0))
        logger.info("wrote %s: %d objects, %d with flags 0, %.1f s, peak memory %.0f MB",
                    final, len(model_fits), nok, time.monotonic() - t0, peak_rss_mb())
        self.io.close()
        return final

    def _checkpoint(self, ckpt: str, models: list, epochs: list, next_group: int) -> None:
        state = {"key": self._state_key(), "next_group": next_group,
                 "diagnostics": self.diagnostics}
        write_checkpoint(ckpt, np.concatenate(models),
                         np.concatenate(epochs) if epochs else new_rows(self.epoch_dtype, 0),
                         state, self.fitter.extra_tables())
        logger.info("checkpoint written at group %d", next_group)

    def _write_diagnostics(self, final: str) -> None:
        path = diagnostics_path(final)
        if not self.diagnostics:
            if os.path.exists(path):
                os.unlink(path)
            return
        with atomic_path(path) as tmp, open(tmp, "w") as fobj:
            for entry in self.diagnostics:
                fobj.write(json.dumps(entry) + "\n")
        logger.warning("%d objects failed with an exception; details in %s",
                       len(self.diagnostics), path)

    def _plots(self, igroup: int) -> None:
        from .plots import band_names, plot_object_fits
        outdir = os.path.splitext(os.path.abspath(self.out_path))[0] + "-plots"
        done = len(os.listdir(outdir)) if os.path.isdir(outdir) else 0
        bands = band_names(self.io.meta_data()["meds_meta"], self.nband)
        for obj in self._last_objects:
            if done >= self.conf["nplots"]:
                return
            if plot_object_fits(obj, outdir, bands):
                done += 1


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB (Linux reports kB)."""
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def progress(iterable, enabled: bool | None, total: int):
    """Wrap with a tqdm bar when stderr is a terminal (or when forced)."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return iterable
    from tqdm import tqdm
    return tqdm(iterable, total=total, unit="group", file=sys.stderr)
