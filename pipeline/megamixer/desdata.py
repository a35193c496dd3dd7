"""ngmixer's ``$DESDATA`` file layout, for run configs that name ``meds_version``.

A tile is named by its coadd run (e.g. ``20130711064512_DES0137-3749``); its
coadd tile is the part after the last ``_`` (``DES0137-3749``). With ``D`` the
``DESDATA`` environment variable, ``M`` the meds version and ``E`` =
``D/EXTRA/meds/M``::

    MEDS       D/meds/M/<run>/<tile>-<band>-meds-M.fits.fz   (or .fits)
    nbrs       E/nbrs-data/<V>/<run>/<tile>-meds-M-nbrslist-<V>.fits
    FoF        E/nbrs-data/<V>/<run>/<tile>-meds-M-nbrsfofs-<V>.fits
    MOF        E/mof-data/<V>/<run>/<tile>-meds-M-mof-<V>.fits
    obj flags  E/obj-flags-data/<V>/<run>/<tile>-meds-M-flags-<V>.fits

(``V`` the nbrs, MOF or obj-flags version).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import ConfigError

#: per kind of file: the folder under EXTRA/meds/<meds_version> and the name's tag
EXTRA_FILES = {"nbrs": ("nbrs-data", "nbrslist"), "fofs": ("nbrs-data", "nbrsfofs"),
               "mof": ("mof-data", "mof"), "obj_flags": ("obj-flags-data", "flags")}


def desdata(source: str | os.PathLike) -> Path:
    """``$DESDATA``; a one-line error naming the run config when it is not set."""
    value = os.environ.get("DESDATA")
    if not value:
        raise ConfigError(f"{source}: 'meds_version' locates files under $DESDATA, which is "
                          f"not set")
    return Path(os.path.abspath(os.path.expanduser(value)))


def coadd_tile(tile: str) -> str:
    """The coadd tile of a coadd run name (the part after the last '_')."""
    return tile.split("_")[-1]


def meds_path(root: Path, meds_version: str, tile: str, band: str) -> Path:
    """The MEDS file of ``tile`` in ``band``: fpacked as ngmixer expected, else plain."""
    base = root / "meds" / meds_version / tile / f"{coadd_tile(tile)}-{band}-meds-{meds_version}"
    packed = base.with_name(base.name + ".fits.fz")
    plain = base.with_name(base.name + ".fits")
    return plain if not packed.exists() and plain.exists() else packed


def extra_path(root: Path, meds_version: str, kind: str, version: str, tile: str) -> Path:
    """A per-tile file of kind ``nbrs``, ``fofs``, ``mof`` or ``obj_flags``."""
    folder, tag = EXTRA_FILES[kind]
    return (root / "EXTRA" / "meds" / meds_version / folder / version / tile
            / f"{coadd_tile(tile)}-meds-{meds_version}-{tag}-{version}.fits")
