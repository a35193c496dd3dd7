"""Provenance and completeness of fit outputs (ngmixit files, collated catalogues).

Every output file states, in its primary header, what produced it and what it
must contain, and every HDU carries a FITS CHECKSUM/DATASUM. A reader can then
tell a complete file of the right run from a truncated one, a bit-flipped one,
or one written by a stale job of an earlier set-up:

=========  ==================================================================
MMXVERS    software version
MMXCAT     digest of the object catalogue fitted (:mod:`pipeline.identity`)
MMXCONF    digest of the fit config file's bytes
MMXINPUT   digest of the auxiliary inputs (FoF, neighbour, MOF, obj-flags files)
MMXSEED    run seed
MMXFIRST   first FoF group of the range
MMXLAST    last FoF group of the range
MMXNGRP    FoF groups of the whole tile
MMXNOBJ    rows of model_fits
MMXNEPO    rows of epoch_data
MMXNHDU    HDUs in the file, primary included
MMXTAGS    ``key=value`` tags given by the caller (megamixit: run, tile, setup)
=========  ==================================================================
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Iterable, Mapping

from .errors import InputFileError, PipelineError

if TYPE_CHECKING:
    from .fitsfile import VerifiedFits

_TAG = re.compile(r"^[A-Za-z0-9_]+=[A-Za-z0-9_.+:=-]*$")


def file_digest(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fobj:
        while True:
            block = fobj.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def inputs_digest(named_files: Mapping[str, str | os.PathLike | None]) -> str:
    """One digest of the auxiliary input files by role (``None`` = not given)."""
    h = hashlib.sha256(b"megamixer-inputs-v1")
    for role in sorted(named_files):
        path = named_files[role]
        h.update(f"{role}=".encode())
        h.update(file_digest(path).encode() if path is not None else b"-")
        h.update(b";")
    return h.hexdigest()


def parse_tags(items: Iterable[str]) -> dict[str, str]:
    """``["run=r1", "tile=T"]`` -> dict; one-line error on a malformed tag."""
    out: dict[str, str] = {}
    for item in items:
        if not _TAG.match(item):
            raise PipelineError(f"--tag {item!r}: expected KEY=VALUE with letters, digits "
                                f"and _.+:=- only")
        key, value = item.split("=", 1)
        out[key] = value
    return out


@dataclass
class Provenance:
    """What produced an output file and what it must contain."""

    version: str = ""
    catalog: str = ""
    config: str = ""
    inputs: str = ""
    seed: int = -1
    first: int = -1
    last: int = -1
    ngroups: int = -1
    nobj: int = -1
    nepoch: int = -1
    nhdu: int = -1
    tags: dict[str, str] = field(default_factory=dict)

    _KEYS = {"version": "MMXVERS", "catalog": "MMXCAT", "config": "MMXCONF",
             "inputs": "MMXINPUT", "seed": "MMXSEED", "first": "MMXFIRST", "last": "MMXLAST",
             "ngroups": "MMXNGRP", "nobj": "MMXNOBJ", "nepoch": "MMXNEPO", "nhdu": "MMXNHDU"}

    def header_records(self) -> list[dict]:
        recs = [{"name": key, "value": getattr(self, attr)} for attr, key in self._KEYS.items()]
        recs.append({"name": "MMXTAGS",
                     "value": " ".join(f"{k}={v}" for k, v in sorted(self.tags.items()))})
        return recs

    @classmethod
    def from_header(cls, header, path: str | os.PathLike) -> "Provenance":
        """Read from a primary header; a file without provenance is a one-line error."""
        missing = [key for key in cls._KEYS.values() if key not in header]
        if missing:
            raise InputFileError(path, f"no megamixer provenance in the primary header "
                                       f"(missing {', '.join(missing[:3])}): not written by "
                                       f"this version of ngmixit, or damaged")
        values = {}
        for f in fields(cls):
            if f.name == "tags":
                continue
            raw = header[cls._KEYS[f.name]]
            values[f.name] = int(raw) if f.type == "int" else str(raw).strip()
        tags = {}
        for item in str(header.get("MMXTAGS", "") or "").split():
            if "=" in item:
                key, value = item.split("=", 1)
                tags[key] = value
        return cls(tags=tags, **values)

    def differences(self, expected: "Provenance", attrs: Iterable[str],
                    tags: Iterable[str] = ()) -> list[str]:
        """``"name: got X, expected Y"`` for every listed attribute or tag that differs."""
        out = []
        for attr in attrs:
            got, want = getattr(self, attr), getattr(expected, attr)
            if got != want:
                out.append(f"{attr} {_short(got)} (expected {_short(want)})")
        for tag in tags:
            got, want = self.tags.get(tag), expected.tags.get(tag)
            if got != want:
                out.append(f"{tag} {_short(got)} (expected {_short(want)})")
        return out


def _short(value) -> str:
    text = str(value)
    return text[:12] if len(text) == 64 else text


def fit_provenance(config_path: str | os.PathLike, catalog_digest: str,
                   aux_files: Mapping[str, str | os.PathLike | None], seed: int, first: int,
                   last: int, ngroups: int, tags: Mapping[str, str]) -> Provenance:
    """The provenance of a fit of groups ``first..last`` (row counts set on writing).

    ``aux_files``: the FoF, neighbour, MOF and obj-flags files by role
    (``fof``, ``nbrs``, ``mof``, ``obj_flags``; None when not given).
    """
    from . import __version__
    return Provenance(version=__version__, catalog=catalog_digest,
                      config=file_digest(config_path), inputs=inputs_digest(aux_files),
                      seed=int(seed), first=int(first), last=int(last), ngroups=int(ngroups),
                      tags=dict(tags))


def verify_fit_output(path: str | os.PathLike) -> tuple[Provenance, "VerifiedFits"]:
    """Check a fit output is complete and intact; return its provenance and what
    :func:`~pipeline.fitsfile.verify_fits` found.

    Complete: every HDU's checksum holds, the HDU count and the model_fits /
    epoch_data row counts are those its header announces. Any problem is a
    one-line :class:`InputFileError`.
    """
    from .fitsfile import verify_fits

    found = verify_fits(path)
    prov = Provenance.from_header(found.header, path)
    if found.nhdu != prov.nhdu:
        raise InputFileError(path, f"has {found.nhdu} HDUs but was written with {prov.nhdu} "
                                   f"(truncated?)")
    for ext, want in (("model_fits", prov.nobj), ("epoch_data", prov.nepoch)):
        got = found.nrows.get(ext)
        if got != want:
            raise InputFileError(path, f"{ext} has {got} rows but was written with {want}")
    return prov, found
