"""Column reference of the output tables, computed from the output dtypes.

The dtypes come from the code that writes the tables, for a config and a band
count, without fitting anything: :func:`pipeline.runner.table_dtypes` (model_fits,
epoch_data), :func:`pipeline.output.make_meta_table` (meta_data), the fitters'
``extra_tables`` (MOF's nbrs_data and mof_convergence),
:func:`pipeline.megamixer.collate.derived_columns` (columns collate adds) and
:data:`pipeline.megamixer.catalogue.CHUNK_DTYPE` (the catalogue's chunks table).

Shapes are found by computing every dtype for two band counts: a dimension that
changes with it is written in terms of ``nband`` (``5+nband`` parameters).

Descriptions come from module-level dicts named ``COLUMN_DOCS`` (or ending in
``COLUMN_DOCS``) in the modules of :data:`DOC_MODULES`, mapping a column name or
a pattern to ``(unit, meaning)`` (or just a meaning). A pattern holds placeholders in braces, e.g.
``{m}_flux`` (``{m}``: a model of ``models``) or ``mcal_g{s}`` (``{s}``: a metacal
type suffix); a column takes the exact entry, else the matching pattern with the
most literal characters.
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections import Counter
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..fitconfig import GALAXY_MODELS, check_fit_config
from ..fitters.base import get_fitter
from ..gmix.flags import NO_ATTEMPT
from ..gmix.metacal import METACAL_TYPES
from ..rows import default_row
from .rst import list_table, literal, text

#: band counts the dtypes are computed for (two, to tell nband-dependent shapes)
NBANDS = (3, 4)
FITTERS = ("max", "metacal", "mof")
#: modules whose ``*COLUMN_DOCS`` dicts describe the columns, searched in this order
DOC_MODULES = ("pipeline.output", "pipeline.imageio.base", "pipeline.fitters.base",
               "pipeline.fitters.maxlike", "pipeline.fitters.metacal",
               "pipeline.fitters.mof", "pipeline.megamixer.collate",
               "pipeline.megamixer.catalogue")
#: column suffixes of the metacal types (noshear has none)
MCAL_SUFFIXES = tuple(f"_{t}" for t in METACAL_TYPES if t != "noshear")
NONE = "—"


def doc_config(fitter: str) -> dict:
    """A fit config of ``fitter`` that produces every column it can: all models,
    MOF convergence tables on."""
    return check_fit_config({"fitter_type": fitter, "models": list(GALAXY_MODELS),
                             "mof": {"write_convergence_data": True}},
                            source=f"column reference ({fitter})")


def fitter_tables(conf: dict, nband: int) -> dict[str, np.dtype]:
    """Every table ``ngmixit`` writes with the (validated) fit config ``conf``, by HDU
    name, for ``nband`` bands."""
    from ..output import make_meta_table
    from ..runner import table_dtypes
    fit = get_fitter(conf, nband)
    model, epoch = table_dtypes(fit, nband)
    meta = make_meta_table("", ["band.fits"] * nband, [None] * nband, 0, (0, 0), fit.name)
    tables = {"model_fits": model, "epoch_data": epoch, "meta_data": meta.dtype}
    tables.update({name: table.dtype for name, table in fit.extra_tables().items()})
    return tables


def collate_columns(conf: dict, nband: int) -> np.dtype:
    """The columns ``megamixit collate`` adds to the model_fits of ``conf``'s fits."""
    from ..megamixer.collate import add_columns, derived_columns
    model = fitter_tables(conf, nband)["model_fits"]
    row = np.zeros(1, dtype=model)
    full = add_columns(row, derived_columns(row, np.full(nband, 30.0))).dtype
    return np.dtype([(n, full[n]) for n in full.names if n not in model.names])


def chunks_table(nband: int) -> np.dtype:
    from ..megamixer.catalogue import CHUNK_DTYPE
    return np.dtype(CHUNK_DTYPE)


# ---------------------------------------------------------------- descriptions


def column_docs() -> list[dict[str, tuple[str, str]]]:
    """The ``*COLUMN_DOCS`` dicts of :data:`DOC_MODULES`, in search order."""
    found = []
    for name in DOC_MODULES:
        module = importlib.import_module(name)
        for attr, value in vars(module).items():
            if attr.endswith("COLUMN_DOCS") and isinstance(value, dict):
                found.append(value)
    return found


def _pattern(key: str) -> re.Pattern | None:
    if "{" not in key:
        return None
    parts = re.split(r"\{[^{}]*\}", key)
    return re.compile(".*?".join(re.escape(p) for p in parts))


def _entry(value) -> tuple[str, str]:
    """A COLUMN_DOCS value as (unit, meaning); a plain string is a meaning."""
    return ("", value) if isinstance(value, str) else (str(value[0]), str(value[1]))


def describe(names: list[str], docs: list[dict]) -> tuple[str, str] | None:
    """(unit, meaning) of a column known by ``names`` (its template such as
    ``{m}_flux`` first, then its literal names): an exact entry for any name, else
    the matching pattern with the most literal characters."""
    for name in names:
        for table in docs:
            if name in table:
                return _entry(table[name])
    literal_names = names[1:] or names   # patterns match real column names
    best = None
    for table in docs:
        for key, value in table.items():
            pattern = _pattern(key)
            if pattern and any(pattern.fullmatch(n) for n in literal_names):
                score = len(re.sub(r"\{[^{}]*\}", "", key))
                if best is None or score > best[0]:
                    best = (score, _entry(value))
    return None if best is None else best[1]


# ---------------------------------------------------------------- grouping


@dataclass
class Column:
    """One column (or a group of columns that differ only by model or metacal type)."""

    template: str
    members: list[str]
    shapes: list[str]
    dtypes: list[str]
    default: str


def _dim(values: tuple[int, ...]) -> str:
    """A dimension measured at :data:`NBANDS` band counts, in terms of ``nband``."""
    slope = (values[1] - values[0]) // (NBANDS[1] - NBANDS[0])
    const = values[0] - slope * NBANDS[0]
    if slope == 0:
        return str(const)
    band = "nband" if slope == 1 else f"{slope}*nband"
    return band if const == 0 else f"{const}+{band}"


def shape_text(shapes: list[tuple[int, ...]]) -> str:
    if not shapes[0]:
        return ""
    if len({len(s) for s in shapes}) != 1:
        return str(shapes[0])
    dims = [_dim(tuple(s[i] for s in shapes)) for i in range(len(shapes[0]))]
    return f"({dims[0]},)" if len(dims) == 1 else f"({', '.join(dims)})"


def dtype_text(dtype: np.dtype) -> str:
    base = dtype.base
    return "string" if base.kind == "U" else base.str.lstrip("<>|=")


def default_text(value) -> str:
    value = np.ravel(value)[0] if np.ndim(value) else value
    if isinstance(value, np.str_):
        return NONE
    value = value.item()
    if value == NO_ATTEMPT:
        return "NO_ATTEMPT"
    return str(int(value)) if float(value).is_integer() else str(value)


def _template(name: str, models: tuple[str, ...], names: set[str]) -> str:
    """``exp_flux`` -> ``{m}_flux``; ``mcal_g_1p`` and ``mcal_g`` -> ``mcal_g{s}``."""
    for model in sorted(models, key=len, reverse=True):
        if name.startswith(f"{model}_"):
            name = "{m}" + name[len(model):]
            break
    for suffix in MCAL_SUFFIXES:
        if name.endswith(suffix):
            return name[:-len(suffix)] + "{s}"
    if any(f"{name}{s}" in names for s in MCAL_SUFFIXES):
        return name + "{s}"
    return name


def group_columns(dtypes: list[np.dtype], models: tuple[str, ...],
                  defaults: bool) -> list[Column]:
    """Columns of ``dtypes[0]`` grouped by template; ``dtypes`` are the same table
    computed for each of :data:`NBANDS`."""
    first = dtypes[0]
    names = set(first.names)
    groups: dict[str, list[str]] = {}
    for name in first.names:
        groups.setdefault(_template(name, models, names), []).append(name)
    row = default_row(first) if defaults else None
    out = []
    for template, members in groups.items():
        shapes = [shape_text([dt[n].shape for dt in dtypes]) for n in members]
        out.append(Column(template if len(members) > 1 else members[0], members, shapes,
                          [dtype_text(first[n]) for n in members],
                          default_text(row[members[0]]) if defaults else NONE))
    return out


def _varying(values: list[str], members: list[str], models: tuple[str, ...]) -> str:
    """The common value, with the members that differ in brackets."""
    common = Counter(values).most_common(1)[0][0]
    odd = [f"{_member_label(m, models)}: {v or 'scalar'}"
           for m, v in zip(members, values) if v != common]
    return (literal(common) if common else NONE) + (f" ({'; '.join(odd)})" if odd else "")


def _member_label(name: str, models: tuple[str, ...]) -> str:
    for model in sorted(models, key=len, reverse=True):
        if name.startswith(f"{model}_"):
            return model
    return name


def column_rows(columns: list[Column], docs: list[dict], models: tuple[str, ...],
                defaults: bool, missing: list[str]) -> list[list[str]]:
    rows = []
    for col in columns:
        found = describe([col.template, *col.members], docs)
        if found is None:
            missing.append(col.template)
        unit, meaning = found if found is not None else ("", "")
        row = [literal(col.template), _varying(col.shapes, col.members, models),
               _varying(col.dtypes, col.members, models)]
        if defaults:
            row.append(literal(col.default) if col.default != NONE else NONE)
        rows.append(row + [text(unit) if unit else NONE, text(meaning) if meaning else NONE])
    return rows


# ---------------------------------------------------------------- tables


@dataclass
class TableSpec:
    """How to compute one documented table: ``dtype(nband)`` and whether rows start
    from the unfit defaults (-9999, 9999, NO_ATTEMPT)."""

    dtype: Callable[[int], np.dtype]
    defaults: bool
    models: tuple[str, ...] = ()


def _subtract(table: Callable[[int], np.dtype], minus: Callable[[int], np.dtype]
              ) -> Callable[[int], np.dtype]:
    def dtype(nband: int) -> np.dtype:
        full, known = table(nband), set(minus(nband).names)
        return np.dtype([(n, full[n]) for n in full.names if n not in known])
    return dtype


def _fitter_table(fitter: str, hdu: str) -> Callable[[int], np.dtype]:
    return lambda nband: fitter_tables(doc_config(fitter), nband)[hdu]


def _parent(fitter: str, hdu: str) -> Callable[[int], np.dtype] | None:
    """What a fitter's table is documented relative to: max's table when it holds
    all of it (metacal and MOF build on max), else nothing (the full table)."""
    if fitter == "max":
        return None
    mine, theirs = (set(_fitter_table(f, hdu)(NBANDS[0]).names) for f in (fitter, "max"))
    return _fitter_table("max", hdu) if theirs <= mine else None


def table_spec(what: str, arg: str | None) -> tuple[TableSpec, str]:
    """The spec of a documented table and a sentence introducing it."""
    models = tuple(GALAXY_MODELS)
    if what in ("model_fits", "epoch_data") and arg in FITTERS:
        minus = _parent(arg, what)
        if minus is None:
            return (TableSpec(_fitter_table(arg, what), True, models),
                    f"Columns of ``{what}`` with ``fitter_type: {arg}``.")
        return (TableSpec(_subtract(_fitter_table(arg, what), minus), True, models),
                f"Columns of ``{what}`` with ``fitter_type: {arg}``: those of ``max`` and")
    if what in ("meta_data", "nbrs_data", "mof_convergence"):
        fitter = arg or "mof"
        return (TableSpec(_fitter_table(fitter, what), False),
                f"Columns of ``{what}`` (``fitter_type: {fitter}``).")
    if what == "collate" and arg in FITTERS:
        return (TableSpec(lambda nb: collate_columns(doc_config(arg), nb), False, models),
                f"Columns ``megamixit collate`` adds to ``model_fits`` of "
                f"``fitter_type: {arg}``.")
    if what == "chunks":
        return TableSpec(chunks_table, False), "Columns of the catalogue's ``chunks`` table."
    raise ValueError(f"no column table {what!r} {arg or ''}".strip())


def _legend(columns: list[Column]) -> list[str]:
    lines = []
    if any("{m}" in c.template for c in columns):
        lines.append(f"``{{m}}``: each model of ``models`` ("
                     f"{', '.join(literal(m) for m in GALAXY_MODELS)}).")
    if any("{s}" in c.template for c in columns):
        lines.append("``{s}``: nothing for the ``noshear`` type, else "
                     + ", ".join(literal(s) for s in MCAL_SUFFIXES) + ".")
    return [" ".join(lines), ""] if lines else []


def column_reference(what: str, arg: str | None = None
                     ) -> tuple[list[str], list[str], list[str]]:
    """One column table; returns (reST lines, undocumented column names, sources)."""
    spec, intro = table_spec(what, arg)
    dtypes = [spec.dtype(nb) for nb in NBANDS]
    columns = group_columns(dtypes, spec.models, spec.defaults)
    missing: list[str] = []
    header = ["column", "shape", "dtype"] + (["if unmeasured"] if spec.defaults else []) + \
        ["unit", "meaning"]
    widths = [22, 14, 7] + ([10] if spec.defaults else []) + [10, 37]
    rows = column_rows(columns, column_docs(), spec.models, spec.defaults, missing)
    if not rows:
        lines = [intro.removesuffix(" and") + ", no others.", ""]
    else:
        lines = [intro + (":" if intro.endswith(" and") else ""), ""] + _legend(columns) \
            + list_table(header, rows, widths)
    sources = [inspect.getsourcefile(importlib.import_module(m)) for m in
               (*DOC_MODULES, "pipeline.runner", "pipeline.fitconfig")]
    return lines, missing, sources


__all__ = ["column_reference", "fitter_tables", "collate_columns", "describe",
           "DOC_MODULES", "NBANDS"]
