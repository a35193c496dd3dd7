"""The tiles file: one tile per line.

A line holding only a name takes its MEDS files from the run config's
``meds_pattern``; a line ``NAME FILE_BAND0 FILE_BAND1 ...`` names them
(relative paths resolve against the tiles file's folder). ``#`` starts a
comment; blank lines are ignored.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..config import control_char, plain_name
from ..errors import InputFileError
from .runconfig import RunConfig

# names the run folder uses for its own sub-folders
_RESERVED = ("tiles", "output")


@dataclass
class Tile:
    name: str
    meds: list[Path]
    line: int


def read_tiles(path: str | os.PathLike, conf: RunConfig, check_files: bool = True) -> list[Tile]:
    """Parse a tiles file; with ``check_files``, every MEDS file must exist."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as err:
        raise InputFileError(path, f"cannot read tiles file: {err.strerror}") from None
    except UnicodeDecodeError as err:
        raise InputFileError(path, f"tiles file is not UTF-8 text (offset {err.start})") from None
    tiles: list[Tile] = []
    seen: dict[str, int] = {}
    nband = len(conf.bands)
    for lineno, line in enumerate(text.split("\n"), start=1):
        code = line.removesuffix("\r").split("#", 1)[0]
        char = control_char(code.replace("\t", " "))  # tabs separate words
        if char is not None:
            raise InputFileError(path, f"line {lineno}: control character {char!r} in "
                                       f"{code!r}")
        words = code.split()
        if not words:
            continue
        name = words[0]
        # tile names end up in job names, scheduler directives and file names
        if plain_name(name) or name in _RESERVED:
            raise InputFileError(path, f"line {lineno}: bad tile name {name!r} (a letter or "
                                       f"digit, then letters, digits and _.+=-; not "
                                       f"{' or '.join(_RESERVED)})")
        if name in seen:
            raise InputFileError(path, f"line {lineno}: duplicate tile '{name}' "
                                       f"(first on line {seen[name]})")
        seen[name] = lineno
        if len(words) == 1:
            meds = conf.meds_paths(name)
        elif len(words) - 1 == nband:
            meds = [Path(os.path.abspath(path.parent / os.path.expanduser(w)))
                    for w in words[1:]]
        else:
            raise InputFileError(path, f"line {lineno}: tile '{name}' lists {len(words) - 1} "
                                       f"MEDS files for {nband} bands "
                                       f"({', '.join(conf.bands)})")
        tiles.append(Tile(name, meds, lineno))
    if not tiles:
        raise InputFileError(path, "no tiles listed")
    if check_files:
        check_meds(tiles, conf, path)
    return tiles


def check_meds(tiles: list[Tile], conf: RunConfig, source: str | os.PathLike) -> None:
    """Every MEDS file of ``tiles`` must exist (one-line error naming the first missing)."""
    for tile in tiles:
        for band, meds in zip(conf.bands, tile.meds):
            if not meds.is_file():
                raise InputFileError(meds, f"MEDS file of tile '{tile.name}' band "
                                           f"'{band}' not found ({source}, line {tile.line})")


def select_tiles(tiles: list[Tile], names: list[str] | None, source: str) -> list[Tile]:
    """Restrict to ``names`` (from ``--tile``), in tiles-file order."""
    if not names:
        return tiles
    known = {t.name for t in tiles}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise InputFileError(source, f"tile(s) not listed: {', '.join(unknown)}")
    return [t for t in tiles if t.name in set(names)]
