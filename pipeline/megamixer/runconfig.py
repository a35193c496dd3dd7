"""The megamixit run config: schema, loading, path resolution, CLI overrides.

Relative paths in a run config resolve against the folder holding the config,
so a run config and its fit config can travel together. Command-line overrides
pass the same checks as the file's values. ngmixer's run configs are accepted
(``pipeline.ngmixer_keys``); ``meds_version`` and the nbrs/MOF/obj-flags
versions find files in ngmixer's ``$DESDATA`` layout (``desdata``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..config import (AT_LEAST_ONE, FRACTION, REQUIRED, SEED, Key, check_mapping,
                      check_value, load_yaml_text, plain_name, raise_problems)
from ..errors import ConfigError, InputFileError
from ..ngmixer_keys import RUN_KEYS, translate_run
from . import desdata
from .systems.base import mem_megabytes, walltime_seconds
from .systems.dask_system import CLUSTERS

DEFAULT_MEDS_PATTERN = "{input_dir}/{tile}-{band}-meds.fits"
SYSTEMS = ("local", "slurm", "lsf", "dask")
# a SLURM partition (list) / LSF queue name: it is written into job scripts
_QUEUE = re.compile(r"[A-Za-z0-9_.+=-]+(,[A-Za-z0-9_.+=-]+)*")


def _queue(value: Any) -> str | None:
    """Queue or partition names: letters, digits and ``_.+=-``, comma-separated."""
    if not _QUEUE.fullmatch(value):
        return (f"must be a queue or partition name (letters, digits, _.+=-, comma-separated), "
                f"got {value!r}")
    return None


def _resource(parse) -> Any:
    def check(value: Any) -> str | None:
        try:
            parse(value)
        except ConfigError as err:
            return f"is invalid: {str(err)}"
        return None
    check.__doc__ = parse.__doc__   # what the config reference shows
    return check


def _pattern(value: Any) -> str | None:
    """A path pattern using only ``{input_dir}``, ``{tile}`` and ``{band}``."""
    try:
        value.format(input_dir="d", tile="t", band="b")
    except (KeyError, IndexError, ValueError) as err:
        return (f"may use only {{input_dir}}, {{tile}} and {{band}}, got {value!r} "
                f"({type(err).__name__}: {err})")
    return None


_NAME = Key(str, None, check=plain_name)

RUN_SCHEMA: dict[str, Key] = {
    "run": Key(str, REQUIRED, "run name; used in output names and the run folder",
               check=plain_name, nullable=False),
    "fit_config": Key(str, REQUIRED, "ngmixit fit config (YAML)", nullable=False),
    "nbrs_config": Key(str, None, "neighbour config; setup then builds nbrs + FoF files"),
    "bands": Key(list, REQUIRED, "band names, in the order ngmixit gets the MEDS files",
                 items=Key(str, check=plain_name, nullable=False), unique=True,
                 nonempty=True, nullable=False),
    "input_dir": Key(str, ".", "folder of the MEDS files (for meds_pattern)", nullable=False),
    "meds_pattern": Key(str, DEFAULT_MEDS_PATTERN,
                        "MEDS path from {input_dir}, {tile}, {band}", check=_pattern,
                        nullable=False),
    "output_dir": Key(str, REQUIRED, "the run folder is <output_dir>/<run>",
                      nullable=False),
    "chunksize": Key(int, REQUIRED, "FoF groups per chunk", check=AT_LEAST_ONE,
                     nullable=False),
    "max_group_size_per_chunk": Key(int, None, "larger groups get a chunk of their own",
                                    check=AT_LEAST_ONE),
    "seed": Key(int, None, "run seed (required by setup; CLI --seed overrides)", check=SEED),
    "system": Key(str, "local", "batch system", choices=SYSTEMS, nullable=False),
    "queue": Key(str, None, "queue / partition", check=_queue),
    "walltime": Key((str, int), None, "job wall time, e.g. '02:00:00' or minutes",
                    check=_resource(walltime_seconds)),
    "mem": Key((str, int), None, "job memory, e.g. '4G' or MB", check=_resource(mem_megabytes)),
    "extra_cmds": Key(list, [], "shell lines put in every job script (verbatim)",
                      items=Key(str, verbatim=True, nullable=False), verbatim=True,
                      nullable=False),
    "workers": Key(int, None, "local/dask worker processes (default: all cores)",
                   check=AT_LEAST_ONE),
    "array": Key(bool, False, "slurm/lsf: one job array per tile", nullable=False),
    "scheduler_address": Key(str, None, "dask: address of a running scheduler"),
    "dask_cluster": Key(str, None, "dask: 'local' or 'slurm' (dask-jobqueue)",
                        choices=CLUSTERS),
    "max_flagged_frac": Key(float, 0.1, "verify fails a tile whose fraction of objects "
                            "with flags != 0 exceeds this", check=FRACTION, nullable=False),
    "warm_numba_cache": Key(bool, True, "setup compiles the fit's numba kernels into "
                            "<run>/numba-cache, which every job then loads (no compile in "
                            "jobs); false: jobs use numba's default cache", nullable=False),
    "numba_cpu_name": Key(str, None, "compile the kernels for this CPU model (NUMBA_CPU_NAME, "
                          "e.g. x86-64-v3, or generic) so one cache serves a cluster of "
                          "mixed CPUs; default: the CPU of the machine that compiles",
                          check=plain_name),
    "meds_version": Key(str, None, "MEDS files from ngmixer's $DESDATA layout "
                                   "(instead of meds_pattern)", check=plain_name),
    "nbrs_version": Key(str, None, "with meds_version: nbrs and FoF files from $DESDATA "
                                   "(MOF fit configs)", check=plain_name),
    "mof_version": Key(str, None, "with meds_version: the MOF file from $DESDATA, given to "
                                  "ngmixit as --mof-file", check=plain_name),
    "obj_flags_version": Key(str, None, "with meds_version: the object flags file from "
                                        "$DESDATA, given to ngmixit as --obj-flags",
                             check=plain_name),
}

# Keys holding paths that resolve against the run config's folder.
_PATH_KEYS = ("fit_config", "nbrs_config", "input_dir", "output_dir")
_VERSION_KEYS = ("nbrs_version", "mof_version", "obj_flags_version")


@dataclass
class RunConfig:
    """A validated run config with absolute paths."""

    path: Path
    run: str
    fit_config: Path
    nbrs_config: Path | None
    bands: list[str]
    input_dir: Path
    meds_pattern: str
    output_dir: Path
    chunksize: int
    max_group_size_per_chunk: int | None
    seed: int | None
    system: str
    queue: str | None
    walltime: str | int | None
    mem: str | int | None
    extra_cmds: list[str]
    workers: int | None
    array: bool
    scheduler_address: str | None
    dask_cluster: str | None
    max_flagged_frac: float = 0.1
    warm_numba_cache: bool = True
    numba_cpu_name: str | None = None
    meds_version: str | None = None
    nbrs_version: str | None = None
    mof_version: str | None = None
    obj_flags_version: str | None = None
    raw: dict = field(default_factory=dict, repr=False)
    #: an ngmixer run config: its original text, translation notes and inert keys
    ngmixer: dict | None = field(default=None, repr=False)

    @property
    def run_dir(self) -> Path:
        return self.output_dir / self.run

    def meds_paths(self, tile: str) -> list[Path]:
        """MEDS paths of ``tile``, one per band: from ngmixer's $DESDATA layout when
        ``meds_version`` is set, else from ``meds_pattern``."""
        if self.meds_version is not None:
            root = desdata.desdata(self.path)
            return [desdata.meds_path(root, self.meds_version, tile, band) for band in self.bands]
        out = []
        for band in self.bands:
            try:
                name = self.meds_pattern.format(input_dir=self.input_dir, tile=tile, band=band)
            except (KeyError, IndexError, ValueError) as err:
                raise ConfigError(f"{self.path}: bad meds_pattern "
                                  f"{self.meds_pattern!r}: {err}") from None
            out.append(Path(os.path.abspath(_resolve(self.path.parent, name))))
        return out

    def des_file(self, kind: str, tile: str) -> Path | None:
        """The $DESDATA file of ``kind`` (nbrs, fofs, mof, obj_flags) for ``tile``, or
        None when the run config names no version for it."""
        version = {"nbrs": self.nbrs_version, "fofs": self.nbrs_version,
                   "mof": self.mof_version, "obj_flags": self.obj_flags_version}[kind]
        if version is None:
            return None
        return desdata.extra_path(desdata.desdata(self.path), self.meds_version, kind, version,
                                  tile)

    def tile_inputs(self, tile: str, model_nbrs: bool) -> dict[str, Path | None]:
        """The $DESDATA files a tile's chunks get: FoF and nbrs files (MOF fits only, as
        ngmixer), the MOF file and the object flags. Each named file must exist."""
        files = {"fof_file": self.des_file("fofs", tile) if model_nbrs else None,
                 "nbrs_file": self.des_file("nbrs", tile) if model_nbrs else None,
                 "mof_file": self.des_file("mof", tile),
                 "obj_flags_file": self.des_file("obj_flags", tile)}
        for key, path in files.items():
            if path is not None and not path.is_file():
                raise InputFileError(path, f"{key.replace('_', ' ')} of tile '{tile}' not "
                                           f"found ($DESDATA layout of {self.path})")
        return files

    def system_options(self) -> dict[str, Any]:
        """Options passed to ``get_system`` (only those that are set)."""
        opts = {"queue": self.queue, "walltime": self.walltime, "mem": self.mem,
                "workers": self.workers, "array": self.array,
                "scheduler_address": self.scheduler_address,
                "dask_cluster": self.dask_cluster}
        return {k: v for k, v in opts.items() if v is not None}


def _resolve(base: Path, value: str | os.PathLike) -> Path:
    p = Path(os.path.expanduser(os.fspath(value)))
    return p if p.is_absolute() else (base / p)


def read_extra_cmds(path: str | os.PathLike) -> list[str]:
    """Lines of an ``--extra-cmds`` file (blank lines dropped, order kept)."""
    try:
        with open(path, encoding="utf-8") as fobj:
            return [line.rstrip("\n") for line in fobj if line.strip()]
    except OSError as err:
        raise InputFileError(path, f"cannot read extra commands: {err.strerror}") from None
    except UnicodeDecodeError as err:
        raise InputFileError(path, f"extra commands are not UTF-8 text (offset "
                                   f"{err.start})") from None


_CLI_NAME = re.compile(r"(key )?'(--[a-z-]+)'")


def _option(key: str) -> str:
    return "--" + key.replace("_", "-")


def _version_problems(data: Mapping, given: Mapping) -> list[str]:
    problems = []
    if data.get("meds_version") is not None \
            and given.get("meds_pattern", DEFAULT_MEDS_PATTERN) != DEFAULT_MEDS_PATTERN:
        problems.append("'meds_version' (ngmixer's $DESDATA layout) and 'meds_pattern' both "
                        "locate the MEDS files: give one")
    if data.get("meds_version") is None:
        for key in _VERSION_KEYS:
            if data.get(key) is not None:
                problems.append(f"'{key}' locates files in ngmixer's $DESDATA layout, which "
                                f"needs 'meds_version'")
    return problems


def load_run_config(path: str | os.PathLike,
                    overrides: Mapping[str, Any] | None = None) -> RunConfig:
    """Load and validate a run config; ``overrides`` (non-None values, e.g. from the
    command line) win and pass the same checks.

    Override values for path keys are taken as given (relative to the current
    directory, as usual for command-line paths). Every problem of the file and
    the overrides is reported in one ConfigError.
    """
    path = Path(os.path.abspath(path))
    text, raw = load_yaml_text(path)
    tr = translate_run(raw)
    problems = list(tr.problems)
    data = check_mapping(tr.data, RUN_SCHEMA, problems, also_known=RUN_KEYS)
    problems += _version_problems(data, tr.data)
    raise_problems(str(path), problems)
    base = path.parent
    for key in _PATH_KEYS:
        if data[key] is not None:
            data[key] = Path(os.path.abspath(_resolve(base, data[key])))
    cli_problems: list[str] = []
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key not in RUN_SCHEMA:
            raise ConfigError(f"unknown run option '{key}'")
        checked = check_value(_option(key), value, RUN_SCHEMA[key], cli_problems)
        data[key] = Path(os.path.abspath(checked)) if key in _PATH_KEYS else checked
    raise_problems("command line", [_CLI_NAME.sub(r"\2", p) for p in cli_problems])
    run = RunConfig(path=path, raw=dict(data), **{k: data[k] for k in RUN_SCHEMA})
    if tr.translated:
        run.ngmixer = tr.record(text)
    return run
