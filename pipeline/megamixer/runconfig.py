"""The megamixit run config: schema, loading, path resolution, CLI overrides.

Relative paths in a run config resolve against the folder holding the config,
so a run config and its fit config can travel together.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..config import REQUIRED, Key, load_config
from ..errors import ConfigError, InputFileError

DEFAULT_MEDS_PATTERN = "{input_dir}/{tile}-{band}-meds.fits"
SYSTEMS = ("local", "slurm", "lsf", "dask")

RUN_SCHEMA: dict[str, Key] = {
    "run": Key(str, REQUIRED, "run name; used in output names and the run folder"),
    "fit_config": Key(str, REQUIRED, "ngmixit fit config (YAML)", nullable=False),
    "nbrs_config": Key(str, None, "neighbour config; setup then builds nbrs + FoF files"),
    "bands": Key(list, REQUIRED, "band names, in the order ngmixit gets the MEDS files",
                 nullable=False),
    "input_dir": Key(str, ".", "folder of the MEDS files (for meds_pattern)"),
    "meds_pattern": Key(str, DEFAULT_MEDS_PATTERN,
                        "MEDS path from {input_dir}, {tile}, {band}", nullable=False),
    "output_dir": Key(str, REQUIRED, "the run folder is <output_dir>/<run>",
                      nullable=False),
    "chunksize": Key(int, REQUIRED, "FoF groups per chunk", nullable=False),
    "max_group_size_per_chunk": Key(int, None, "larger groups get a chunk of their own"),
    "seed": Key(int, None, "run seed (required by setup; CLI --seed overrides)"),
    "system": Key(str, "local", "batch system", choices=SYSTEMS, nullable=False),
    "queue": Key(str, None, "queue / partition"),
    "walltime": Key((str, int), None, "job wall time, e.g. '02:00:00' or minutes"),
    "mem": Key((str, int), None, "job memory, e.g. '4G' or MB"),
    "extra_cmds": Key(list, [], "shell lines put in every job script", nullable=False),
    "workers": Key(int, None, "local/dask worker processes (default: all cores)"),
    "array": Key(bool, False, "slurm/lsf: one job array per tile", nullable=False),
    "scheduler_address": Key(str, None, "dask: address of a running scheduler"),
    "dask_cluster": Key(str, None, "dask: 'local' or 'slurm' (dask-jobqueue)"),
}

# Keys holding paths that resolve against the run config's folder.
_PATH_KEYS = ("fit_config", "nbrs_config", "input_dir", "output_dir")


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
    raw: dict = field(default_factory=dict, repr=False)

    @property
    def run_dir(self) -> Path:
        return self.output_dir / self.run

    def meds_paths(self, tile: str) -> list[Path]:
        """MEDS paths of ``tile`` from ``meds_pattern``, one per band."""
        out = []
        for band in self.bands:
            try:
                name = self.meds_pattern.format(input_dir=self.input_dir, tile=tile, band=band)
            except (KeyError, IndexError, ValueError) as err:
                raise ConfigError(f"{self.path}: bad meds_pattern "
                                  f"{self.meds_pattern!r}: {err}") from None
            out.append(Path(os.path.abspath(_resolve(self.path.parent, name))))
        return out

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
        with open(path) as fobj:
            return [line.rstrip("\n") for line in fobj if line.strip()]
    except OSError as err:
        raise InputFileError(path, f"cannot read extra commands: {err.strerror}") from None


def load_run_config(path: str | os.PathLike,
                    overrides: Mapping[str, Any] | None = None) -> RunConfig:
    """Load and validate a run config; ``overrides`` (non-None values) win.

    Override values for path keys are taken as given (relative to the current
    directory, as usual for command-line paths).
    """
    path = Path(os.path.abspath(path))
    data = load_config(path, RUN_SCHEMA)
    base = path.parent
    for key in _PATH_KEYS:
        if data[key] is not None:
            data[key] = Path(os.path.abspath(_resolve(base, data[key])))
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key not in RUN_SCHEMA:
            raise ConfigError(f"unknown run option '{key}'")
        if key in _PATH_KEYS:
            value = Path(os.path.abspath(value))
        data[key] = value
    if data["system"] not in SYSTEMS:
        raise ConfigError(f"{path}: system {data['system']!r}; allowed: {', '.join(SYSTEMS)}")
    if not data["bands"] or not all(isinstance(b, str) and b for b in data["bands"]):
        raise ConfigError(f"{path}: key 'bands' must be a non-empty list of band names")
    if len(set(data["bands"])) != len(data["bands"]):
        raise ConfigError(f"{path}: key 'bands' lists a band twice")
    if data["chunksize"] < 1:
        raise ConfigError(f"{path}: key 'chunksize' must be >= 1")
    mg = data["max_group_size_per_chunk"]
    if mg is not None and mg < 1:
        raise ConfigError(f"{path}: key 'max_group_size_per_chunk' must be >= 1")
    if data["workers"] is not None and data["workers"] < 1:
        raise ConfigError(f"{path}: key 'workers' must be >= 1")
    if not all(isinstance(c, str) for c in data["extra_cmds"]):
        raise ConfigError(f"{path}: key 'extra_cmds' must be a list of strings")
    run = data["run"]
    if not re.match(r"^[A-Za-z0-9_.+=-]+$", run) or run in (".", ".."):
        raise ConfigError(f"{path}: key 'run' must be a plain name, got {run!r}")
    return RunConfig(path=path, raw=dict(data), **{k: data[k] for k in RUN_SCHEMA})
