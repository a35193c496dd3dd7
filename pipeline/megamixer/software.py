"""How a chunk job finds the software: the environment its script exports.

A job runs ``$MEGAMIXER_PYTHON -m pipeline.cli.ngmixit ...``. Setup records
the interpreter running it (``sys.executable``: the one that can import this
package), and, when that interpreter finds the package only through
``PYTHONPATH`` (a checkout used without installing), the folder holding it.
The script exports these before the run's ``extra_cmds``, which may therefore
change them (e.g. activate another environment and set
``MEGAMIXER_PYTHON=python3``). With ``warm_numba_cache`` (the default) setup
compiles the fit's numba kernels into the run folder (``numba-cache/``) and every
job loads them from there; ``numba_cpu_name`` makes both compile for that CPU
model, so that one cache serves nodes of several CPU kinds.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from ..fileio import atomic_path
from .layout import CHUNK_TO_RUN
from .tilerecord import PYTHON_VAR

NUMBA_CACHE = "numba-cache"
#: what warming the run's cache did (seconds, kernels compiled), beside the cache
WARM_REPORT = "warm-report.json"
logger = logging.getLogger(__name__)


def package_parent() -> str:
    """The folder holding the ``pipeline`` package this process runs."""
    import pipeline
    return str(Path(pipeline.__file__).resolve().parents[1])


def needs_pythonpath(python: str, parent: str) -> bool:
    """True if ``python`` without PYTHONPATH (run from /) imports no ``pipeline`` from
    ``parent``."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    probe = ("import pathlib, pipeline; "
             "print(pathlib.Path(pipeline.__file__).resolve().parents[1])")
    try:
        proc = subprocess.run([python, "-c", probe], capture_output=True, text=True,
                              cwd="/", env=env, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return True
    return proc.returncode != 0 or proc.stdout.strip() != parent


def numba_target(cpu_name: str | None) -> dict[str, str]:
    """Variables making numba compile for ``cpu_name`` (none: the host's CPU)."""
    return {} if not cpu_name else {"NUMBA_CPU_NAME": cpu_name, "NUMBA_CPU_FEATURES": ""}


def software_env(cpu_name: str | None = None) -> dict[str, str]:
    """The ``software`` record setup stores: interpreter, PYTHONPATH if needed, and the
    numba CPU target if one is chosen."""
    python = sys.executable
    parent = package_parent()
    out = {PYTHON_VAR: python}
    if needs_pythonpath(python, parent):
        out["PYTHONPATH"] = parent
    out.update(numba_target(cpu_name))
    return out


def job_env(software: dict[str, str], numba_cache: bool) -> dict[str, str]:
    """Environment of a chunk job: software plus, when setup warmed it, the run's numba
    cache (relative paths are relative to the chunk dir, the job's working directory)."""
    env = dict(software)
    if numba_cache:
        env["NUMBA_CACHE_DIR"] = os.path.join(CHUNK_TO_RUN, NUMBA_CACHE)
    return env


def warm_run_cache(run_dir: Path, fit_config: Path, cpu_name: str | None) -> None:
    """Compile the kernels a chunk of ``fit_config`` needs into ``<run>/numba-cache``."""
    from ..config import load_yaml
    from ..jitcache import warm_cache

    folder = Path(run_dir) / NUMBA_CACHE
    logger.info("compiling the fit's numba kernels into %s (once per run; jobs load them)",
                folder)
    report = warm_cache(folder, load_yaml(fit_config), env=numba_target(cpu_name))
    with atomic_path(folder / WARM_REPORT) as tmp:
        Path(tmp).write_text(json.dumps({"seconds": report.seconds,
                                         "compiled": report.compiled,
                                         "cpu_name": cpu_name}) + "\n")
    if report.compiled:
        logger.info("numba cache %s: %d kernel(s) compiled in %.0f s", folder,
                    report.compiled, report.seconds)
    else:
        logger.info("numba cache %s: already warm", folder)
