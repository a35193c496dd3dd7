"""Job-script templates: lookup in ``jobtemplates/`` and placeholder rendering.

Template syntax (kept deliberately tiny so the templates stay readable shell):
- ``{{name}}`` is replaced by the value of placeholder ``name``;
- a line holding a placeholder whose value is ``None`` is dropped (an unset
  walltime removes its ``#SBATCH -t`` line);
- lines starting with ``##`` document the template and are not rendered.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Mapping

from ...errors import ConfigError, InputFileError
from ...resources import shipped_dir

_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


def template_dir(override: str | os.PathLike | None = None) -> Path:
    """Folder of the job templates: ``override``, ``$MEGAMIXER_JOBTEMPLATES`` or the
    ``jobtemplates/`` shipped with the package."""
    if override is None:
        override = os.environ.get("MEGAMIXER_JOBTEMPLATES")
    if override:
        return Path(override)
    return shipped_dir("jobtemplates")


@lru_cache(maxsize=32)
def _read(path: str, mtime: float) -> str:
    with open(path) as fobj:
        return fobj.read()


def load_template(name: str, folder: str | os.PathLike | None = None) -> tuple[str, str]:
    """Return ``(path, text)`` of template ``name`` (e.g. ``"slurm.sh"``)."""
    path = template_dir(folder) / name
    try:
        return str(path), _read(str(path), path.stat().st_mtime)
    except OSError as err:
        raise InputFileError(path, f"cannot read job template: {err.strerror}") from None


def placeholders(text: str) -> set[str]:
    """Names of the placeholders used by a template (documentation lines excluded)."""
    names: set[str] = set()
    for line in text.splitlines():
        if not line.startswith("##"):
            names.update(_PLACEHOLDER.findall(line))
    return names


def render(text: str, values: Mapping[str, str | None], source: str = "template") -> str:
    """Render ``text``; an unknown placeholder is a one-line ``ConfigError``."""
    out = []
    for line in text.splitlines():
        if line.startswith("##"):
            continue
        names = _PLACEHOLDER.findall(line)
        for name in names:
            if name not in values:
                raise ConfigError(f"{source}: unknown placeholder {{{{{name}}}}}; "
                                  f"known: {', '.join(sorted(values))}")
        if any(values[name] is None for name in names):
            continue
        out.append(_PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), line))
    return "\n".join(out) + "\n"
