"""Batch-system adapters for megamixit: ``get_system(name, **options)``.

Systems: ``local`` (process pool on this machine), ``slurm``, ``lsf``, ``dask``.
Options any system understands are passed through; an option meaningful to another
system only (``workers`` for slurm, say) is ignored, so a run config's settings can
be handed over whole; an option no system knows is a ``ConfigError``.
"""

from __future__ import annotations

import difflib
import logging
from typing import Any

from ...errors import ConfigError
from .base import (BatchSystem, ChunkJob, JobState, SubmitCommand, SubmitRecord,
                   read_exit_status, read_submit_record)

log = logging.getLogger(__name__)

__all__ = ["get_system", "available_systems", "BatchSystem", "ChunkJob", "JobState",
           "SubmitCommand", "SubmitRecord", "read_exit_status", "read_submit_record"]

# aliases the run config may use for the same option
_ALIASES = {"dask_cluster": "cluster"}


def _registry() -> dict[str, type[BatchSystem]]:
    from .dask_system import DaskSystem
    from .local import LocalSystem
    from .lsf import LsfSystem
    from .slurm import SlurmSystem
    return {cls.name: cls for cls in (LocalSystem, SlurmSystem, LsfSystem, DaskSystem)}


def available_systems() -> list[str]:
    return list(_registry())


def get_system(name: str, **options: Any) -> BatchSystem:
    """The adapter ``name`` configured with ``options`` (``None`` values are ignored)."""
    registry = _registry()
    cls = registry.get(name)
    if cls is None:
        close = difflib.get_close_matches(str(name), list(registry), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"unknown batch system {name!r}{hint}; "
                          f"known: {', '.join(registry)}")
    known = set().union(*(c.options for c in registry.values()))
    kwargs = {}
    for key, value in options.items():
        key = _ALIASES.get(key, key)
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"unknown batch-system option {key!r}{hint}")
        if value is None:
            continue
        if key in cls.options:
            kwargs[key] = value
        else:
            log.debug("system %s ignores option %s", name, key)
    return cls(**kwargs)
