"""Where the project's shipped data folders (``configs/``, ``jobtemplates/``) live.

In a source checkout (including an editable install) they sit beside the package;
a wheel installs them under ``<prefix>/share/megamixer/`` (see ``setup.py``).
"""

from __future__ import annotations

import sys
from pathlib import Path

from .errors import InputFileError

#: folders shipped with the package, relative to the checkout and to share/megamixer
SHIPPED = ("configs", "jobtemplates")


def shipped_dir(name: str) -> Path:
    """The folder ``name`` (one of :data:`SHIPPED`) of this installation."""
    if name not in SHIPPED:
        raise ValueError(f"{name!r} is not a shipped folder ({', '.join(SHIPPED)})")
    checkout = Path(__file__).resolve().parents[1] / name
    installed = Path(sys.prefix) / "share" / "megamixer" / name
    for path in (checkout, installed):
        if path.is_dir():
            return path
    raise InputFileError(str(installed), f"no '{name}' folder (looked beside the package "
                                         f"at {checkout} and here); reinstall megamixer")
