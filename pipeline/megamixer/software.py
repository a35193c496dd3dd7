"""How a chunk job finds the software: the environment its script exports.

A job runs ``$MEGAMIXER_PYTHON -m pipeline.cli.ngmixit ...``. Setup records
the interpreter running it (``sys.executable``: the one that can import this
package), and, when that interpreter finds the package only through
``PYTHONPATH`` (a checkout used without installing), the folder holding it.
The script exports these before the run's ``extra_cmds``, which may therefore
change them (e.g. activate another environment and set
``MEGAMIXER_PYTHON=python3``). Numba's compiled kernels are cached in the
run folder (``numba-cache/``), shared by all jobs of the run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from .layout import CHUNK_TO_RUN
from .tilerecord import PYTHON_VAR

NUMBA_CACHE = "numba-cache"


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


def software_env() -> dict[str, str]:
    """The ``software`` record setup stores: interpreter and (if needed) PYTHONPATH."""
    python = sys.executable
    parent = package_parent()
    out = {PYTHON_VAR: python}
    if needs_pythonpath(python, parent):
        out["PYTHONPATH"] = parent
    return out


def job_env(software: dict[str, str]) -> dict[str, str]:
    """Environment of a chunk job: software plus the run's numba cache (relative paths are
    relative to the chunk dir, the job's working directory)."""
    env = dict(software)
    env["NUMBA_CACHE_DIR"] = os.path.join(CHUNK_TO_RUN, NUMBA_CACHE)
    return env
