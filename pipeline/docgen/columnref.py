"""Column reference of the output tables, rendered from the column declarations.

Every column is a :class:`pipeline.columns.Column` (name, type, shape, unit,
meaning) declared beside the code that fills it; nothing here describes a
column. The tables are those of :mod:`pipeline.schema` for a fit config that
asks for every model (and MOF's convergence tables), and
:data:`pipeline.megamixer.catalogue.CHUNK_COLUMNS` for a catalogue's ``chunks``.

Shapes: the declarations are computed for two band counts, and a dimension
that changes with it is written in terms of ``nband`` (``5+nband``). Columns
that differ only by model (``{m}_flux``) or metacal type (``mcal_g{s}``) are
one row. "If unmeasured" is what a row holds before its quantity is filled:
:func:`pipeline.rows.default_row` for ``model_fits`` and ``epoch_data``, and
for the columns collate adds, what collate computes for a row never fitted.

Directive arguments (``.. megamixer-generated:: columns ...``):

=================================  ==============================================
``HDU FITTER``                     a table ``ngmixit`` writes (``model_fits``,
                                   ``epoch_data``, ``meta_data``, ``nbrs_data``,
                                   ``mof_pairs``, ``mof_convergence``)
``collate HDU FITTER``             the columns ``megamixit collate`` adds to
                                   ``model_fits`` or ``epoch_data``
``chunks``                         the collated catalogue's ``chunks`` table
=================================  ==============================================
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections import Counter
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..columns import Column, dtype_of, undocumented
from ..fitconfig import GALAXY_MODELS, check_fit_config
from ..fitters.metacal import TYPES as MCAL_TYPES, suffix as mcal_suffix
from ..fitters.mof import mof_model_of
from ..gmix.flags import NO_ATTEMPT
from ..megamixer import catalogue
from ..megamixer.derived import derive
from ..output import EPOCH_DATA, MODEL_FITS
from ..rows import default_row
from ..schema import collated_columns, fit_output_columns
from .rst import list_table, literal, text

#: band counts the tables are computed for (two, to tell nband-dependent shapes)
NBANDS = (3, 4)
FITTERS = ("max", "metacal", "mof")
#: modules holding the declarations (the pages are rebuilt when one changes)
SOURCE_MODULES = ("pipeline.columns", "pipeline.schema", "pipeline.output", "pipeline.rows",
                  "pipeline.imageio.base", "pipeline.fitters.base", "pipeline.fitters.maxlike",
                  "pipeline.fitters.metacal", "pipeline.fitters.mof",
                  "pipeline.megamixer.derived", "pipeline.megamixer.catalogue")
#: metacal type -> column suffix ("" for noshear)
MCAL_SUFFIXES = {t: mcal_suffix(t) for t in MCAL_TYPES}
NONE = "—"


def doc_config(fitter: str) -> dict:
    """A fit config of ``fitter`` that produces every column it can: all models,
    MOF convergence tables on."""
    return check_fit_config({"fitter_type": fitter, "models": list(GALAXY_MODELS),
                             "mof": {"write_convergence_data": True}},
                            source=f"column reference ({fitter})")


def fit_tables(fitter: str, nband: int, collated: bool = False) -> dict[str, list[Column]]:
    """HDU -> columns of an ngmixit output (or a collated catalogue) of
    :func:`doc_config`."""
    conf = doc_config(fitter)
    return (collated_columns if collated else fit_output_columns)(conf, nband)


def added_by_collate(fitter: str, hdu: str, nband: int) -> list[Column]:
    """The columns ``megamixit collate`` adds to table ``hdu``."""
    written = {c.name for c in fit_tables(fitter, nband).get(hdu, [])}
    return [c for c in fit_tables(fitter, nband, collated=True).get(hdu, [])
            if c.name not in written]


def collate_unmeasured(fitter: str, nband: int) -> dict[str, object]:
    """What collate computes for a model_fits row never fitted, by added column."""
    model = dtype_of(fit_tables(fitter, nband)[MODEL_FITS])
    row = np.asarray([default_row(model)], dtype=model)
    return {col.name: values[0] for col, values in derive(row, np.full(nband, 30.0))}


# ---------------------------------------------------------------- the tables


@dataclass
class TableSpec:
    """How to compute one documented table for a band count: its columns and, where
    rows start from known values, the value of each column in an unmeasured row."""

    columns: Callable[[int], list[Column]]
    intro: str
    unmeasured: Callable[[list[Column], int], dict[str, object]] | None = None
    #: the MOF model, written ``{m}`` in meanings (MOF's own tables)
    mof_model: str = ""


def _defaults(columns: list[Column], nband: int) -> dict[str, object]:
    row = default_row(dtype_of(columns))
    return {name: row[name] for name in row.dtype.names}


def _without(columns: Callable[[int], list[Column]], parent: Callable[[int], list[Column]]
             ) -> Callable[[int], list[Column]]:
    def table(nband: int) -> list[Column]:
        known = {c.name for c in parent(nband)}
        return [c for c in columns(nband) if c.name not in known]
    return table


def _fitter_table(fitter: str, hdu: str) -> Callable[[int], list[Column]]:
    return lambda nband: fit_tables(fitter, nband).get(hdu, [])


def table_spec(args: tuple[str, ...]) -> TableSpec:
    """The spec of the table named by the directive's arguments (after ``columns``)."""
    if args == ("chunks",):
        return TableSpec(lambda nband: list(catalogue.CHUNK_COLUMNS),
                         "Columns of the collated catalogue's ``chunks`` table.")
    if len(args) == 3 and args[0] == "collate" and args[2] in FITTERS:
        hdu, fitter = args[1:]
        if hdu not in (MODEL_FITS, EPOCH_DATA):
            raise ValueError(f"collate adds columns to {MODEL_FITS} and {EPOCH_DATA} only, "
                             f"not {hdu!r}")
        unmeasured = ((lambda cols, nband: collate_unmeasured(fitter, nband))
                      if hdu == MODEL_FITS else None)
        return TableSpec(lambda nband: added_by_collate(fitter, hdu, nband),
                         f"Columns ``megamixit collate`` adds to ``{hdu}`` "
                         f"(``fitter_type: {fitter}``).", unmeasured)
    if len(args) == 2 and args[1] in FITTERS:
        hdu, fitter = args
        if hdu not in fit_tables(fitter, NBANDS[0]):
            raise ValueError(f"fitter_type {fitter} writes no {hdu!r} table")
        table = _fitter_table(fitter, hdu)
        unmeasured = _defaults if hdu in (MODEL_FITS, EPOCH_DATA) else None
        intro = f"Columns of ``{hdu}`` with ``fitter_type: {fitter}``."
        if hdu not in fit_tables("max", NBANDS[0]):     # MOF's own tables
            return TableSpec(table, intro, None, mof_model_of(doc_config(fitter)))
        if fitter != "max":
            mine, base = ({c.name for c in t(NBANDS[0])}
                          for t in (table, _fitter_table("max", hdu)))
            if base <= mine:    # metacal and MOF build on max: list only their own
                table = _without(table, _fitter_table("max", hdu))
                intro = (f"Columns of ``{hdu}`` with ``fitter_type: {fitter}``: those of "
                         f"``max`` and")
        return TableSpec(table, intro, unmeasured)
    raise ValueError(f"no column table {' '.join(args)!r}")


# ---------------------------------------------------------------- grouping


@dataclass
class Row:
    """One documented column, or a group of columns that differ only by model or
    metacal type (``members``, with the model or type each stands for)."""

    name: str
    members: list[Column]
    keys: list[str]
    shapes: list[str]
    unmeasured: list[str]


def _dim(values: tuple[int, ...]) -> str:
    """A dimension measured at :data:`NBANDS` band counts, in terms of ``nband``."""
    slope = (values[1] - values[0]) // (NBANDS[1] - NBANDS[0])
    const = values[0] - slope * NBANDS[0]
    if slope == 0:
        return str(const)
    band = "nband" if slope == 1 else f"{slope}*nband"
    return band if const == 0 else f"{const}+{band}"


def shape_text(shapes: list[tuple[int, ...]]) -> str:
    """A shape measured at :data:`NBANDS` band counts (empty for a scalar)."""
    if not shapes[0]:
        return ""
    if len({len(s) for s in shapes}) != 1:
        return str(shapes[0])
    dims = [_dim(tuple(s[i] for s in shapes)) for i in range(len(shapes[0]))]
    return f"({dims[0]},)" if len(dims) == 1 else f"({', '.join(dims)})"


def dtype_text(fmt: str) -> str:
    dtype = np.dtype(fmt)
    if dtype.kind == "U":
        return f"string ({dtype.itemsize // 4})" if dtype.itemsize else "string"
    return dtype.str.lstrip("<>|=")


def value_text(value: object) -> str:
    """A value of an unmeasured row ("" for strings: they have none)."""
    value = np.ravel(value)[0] if np.ndim(value) else value
    if isinstance(value, (str, np.str_)):
        return ""
    value = value.item() if hasattr(value, "item") else value
    if value == NO_ATTEMPT:
        return "NO_ATTEMPT"
    return str(int(value)) if float(value).is_integer() else str(value)


def template(name: str, models: tuple[str, ...], names: set[str]) -> tuple[str, str]:
    """(template, key): ``exp_flux`` -> (``{m}_flux``, ``exp``); ``mcal_g_1p`` ->
    (``mcal_g{s}``, ``1p``); ``mcal_g`` -> (``mcal_g{s}``, ``noshear``)."""
    for model in sorted(models, key=len, reverse=True):
        if name.startswith(f"{model}_"):
            return "{m}" + name[len(model):], model
    for mtype, suffix in MCAL_SUFFIXES.items():
        if suffix and name.endswith(suffix):
            return name[:-len(suffix)] + "{s}", mtype
    if any(f"{name}{s}" in names for s in MCAL_SUFFIXES.values() if s):
        return name + "{s}", "noshear"
    return name, ""


def group_rows(tables: list[list[Column]], unmeasured: dict[str, object] | None,
               mof_model: str = "") -> list[Row]:
    """The columns of ``tables[0]`` grouped by template; ``tables`` is the same table
    computed for each of :data:`NBANDS`. In MOF's own tables every column stands for
    ``mof_model``."""
    first = tables[0]
    names = {c.name for c in first}
    by_name = [{c.name: c for c in table} for table in tables]
    groups: dict[str, list[tuple[Column, str]]] = {}
    for col in first:
        name, key = template(col.name, tuple(GALAXY_MODELS), names)
        groups.setdefault(name, []).append((col, key))
    rows = []
    for name, members in groups.items():
        cols = [c for c, _ in members]
        shapes = [shape_text([t[c.name].shape for t in by_name]) for c in cols]
        values = ([value_text(unmeasured[c.name]) for c in cols]
                  if unmeasured is not None else [])
        single = len(members) == 1
        rows.append(Row(cols[0].name if single else name, cols,
                        [mof_model] if single else [k for _, k in members], shapes, values))
    return rows


def _generic(doc: str, key: str, placeholder: str) -> str:
    """``doc`` with the member's model or metacal type written as the placeholder."""
    if not key:
        return doc
    return re.sub(rf"(?<![A-Za-z0-9]){re.escape(key)}(?![A-Za-z0-9])", placeholder, doc)


def varying(values: list[str], row: Row, literal_values: bool = True,
            empty: str = NONE) -> str:
    """The members' common value, with those that differ in brackets (``empty``
    names an empty value there)."""
    common = Counter(values).most_common(1)[0][0]
    show = literal if literal_values else text
    odd = [f"{key or col.name}: {show(v) if v else empty}"
           for col, key, v in zip(row.members, row.keys, values) if v != common]
    return (show(common) if common else NONE) + (f" ({'; '.join(odd)})" if odd else "")


def meaning_text(row: Row) -> str:
    docs = [_generic(c.doc, k, "{s}" if k in MCAL_SUFFIXES else "{m}")
            for c, k in zip(row.members, row.keys)]
    return varying(docs, row, literal_values=False)


def table_rows(rows: list[Row], unmeasured: bool) -> list[list[str]]:
    out = []
    for row in rows:
        cells = [literal(row.name), varying(row.shapes, row, empty="scalar"),
                 varying([dtype_text(c.fmt) for c in row.members], row, literal_values=False)]
        if unmeasured:
            cells.append(varying(row.unmeasured, row))
        cells += [varying([c.unit for c in row.members], row, literal_values=False),
                  meaning_text(row)]
        out.append(cells)
    return out


def _legend(rows: list[Row], mof_model: str) -> list[str]:
    lines = []
    if mof_model and any("{m}" in meaning_text(r) for r in rows):
        lines.append("``{m}``: the MOF model (``mof.convergence_model``, else the first "
                     "model of ``models`` that is not ``cm``); its parameters are shown for "
                     "a model of ``5+nband``, ``bdf`` has ``6+nband``.")
    elif any(r.name.startswith("{m}") for r in rows):
        lines.append("``{m}``: each model of ``models`` ("
                     + ", ".join(literal(m) for m in GALAXY_MODELS) + ").")
    if any("{s}" in r.name for r in rows):
        lines.append("``{s}``: the metacal type, no suffix for ``noshear``, else "
                     + ", ".join(literal(s) for s in MCAL_SUFFIXES.values() if s) + ".")
    return [" ".join(lines), ""] if lines else []


def column_reference(*args: str) -> tuple[list[str], list[str], list[str]]:
    """One column table; returns (reST lines, undocumented columns, source files)."""
    spec = table_spec(args)
    tables = [spec.columns(nb) for nb in NBANDS]
    values = (spec.unmeasured(tables[0], NBANDS[0]) if spec.unmeasured is not None
              else None)
    missing = [f"column {name} ({' '.join(args)}) has no meaning in its declaration"
               for name in dict.fromkeys(n for t in tables for n in undocumented(t))]
    rows = group_rows(tables, values, spec.mof_model)
    sources = [inspect.getsourcefile(importlib.import_module(m)) for m in SOURCE_MODULES]
    if not rows:
        return [spec.intro.removesuffix(" and") + ", no others.", ""], missing, sources
    measured = values is not None
    header = ["column", "shape", "type"] + (["if unmeasured"] if measured else []) + \
        ["unit", "meaning"]
    widths = [20, 13, 7] + ([10] if measured else []) + [12, 38]
    intro = spec.intro + (":" if spec.intro.endswith(" and") else "")
    table = list_table(header, table_rows(rows, measured), widths)
    lines = [intro, ""] + _legend(rows, spec.mof_model) + table
    return lines, missing, sources


__all__ = ["column_reference", "fit_tables", "added_by_collate", "collate_unmeasured",
           "doc_config", "NBANDS", "FITTERS"]
