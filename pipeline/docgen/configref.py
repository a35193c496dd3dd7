"""Config reference: one table per schema, every key with its type, default,
allowed values and meaning, read from the :class:`~pipeline.config.Key` specs."""

from __future__ import annotations

import importlib
import inspect
from typing import Any, Iterator, Mapping

import yaml

from ..config import REQUIRED, Key
from .rst import list_table, literal, text

#: config kind -> (module, schema name): the schemas the commands validate against
SCHEMAS = {
    "fit": ("pipeline.fitconfig", "FIT_SCHEMA"),
    "run": ("pipeline.megamixer.runconfig", "RUN_SCHEMA"),
    "nbrs": ("pipeline.nbrs", "NBRS_SCHEMA"),
    "sim": ("pipeline.sims.config", "SIM_SCHEMA"),
}

_TYPES = {bool: "bool", int: "int", float: "float", str: "string", list: "list",
          dict: "mapping", type(None): "null", object: "any"}
NONE = "—"


def schema_of(kind: str) -> tuple[Mapping[str, Key], str]:
    """The schema of a config kind and the file defining it."""
    if kind not in SCHEMAS:
        raise ValueError(f"unknown config kind {kind!r} (known: {', '.join(SCHEMAS)})")
    module_name, attr = SCHEMAS[kind]
    module = importlib.import_module(module_name)
    return getattr(module, attr), inspect.getsourcefile(module)


def flatten(schema: Mapping[str, Key], prefix: str = "") -> Iterator[tuple[str, Key]]:
    """Every key of a schema as (dotted name, spec), nested keys after their parent;
    free keys of a mapping appear as ``<name>``."""
    for name, spec in schema.items():
        full = f"{prefix}{name}"
        yield full, spec
        if spec.schema is not None:
            yield from flatten(spec.schema, f"{full}.")
        elif spec.values_schema is not None:
            yield from flatten(spec.values_schema, f"{full}.<name>.")
        elif spec.values is not None:
            yield f"{full}.<name>", spec.values


def type_text(spec: Key) -> str:
    names = [_TYPES.get(t, t.__name__) for t in spec.type_tuple()]
    if spec.items is not None and names == ["list"]:
        names = [f"list of {type_text(spec.items)}"]
    return " or ".join(names)


def yaml_value(value: Any) -> str:
    """A value as it is written in a YAML config (flow style, one line)."""
    out = yaml.safe_dump(value, default_flow_style=True, width=10**6, sort_keys=False)
    return out.strip().removesuffix("...").strip()


def default_text(spec: Key) -> str:
    if spec.default is REQUIRED:
        return "**required**"
    if spec.schema is not None and spec.default == {}:
        return NONE   # the nested keys carry the defaults
    return literal(yaml_value(spec.default))


def check_text(check: Any) -> str | None:
    """What a value check demands: its ``describe()``, else its docstring's first line
    (reST)."""
    if check is None:
        return None
    describe = getattr(check, "describe", None)
    if callable(describe):
        return text(describe())
    doc = inspect.getdoc(check)
    return doc.splitlines()[0].rstrip(".") if doc else None


def allowed_text(spec: Key) -> str:
    parts = []
    if spec.choices is not None:
        parts.append("one of " + ", ".join(literal(yaml_value(c)) for c in spec.choices))
    if spec.keys is not None:
        parts.append("keys: " + ", ".join(literal(k) for k in spec.keys))
    rule = check_text(spec.check)
    if rule:
        parts.append(rule)
    if spec.items is not None:
        item = allowed_text(spec.items)
        if item != NONE:
            parts.append(f"each element: {item}")
    if spec.length is not None:
        parts.append(f"{spec.length} elements")
    if spec.unique:
        parts.append("no element twice")
    if spec.nonempty:
        parts.append("not empty")
    if spec.verbatim:
        parts.append("kept verbatim (may hold any character)")
    return "; ".join(parts) if parts else NONE


def config_rows(schema: Mapping[str, Key]) -> list[list[str]]:
    return [[literal(name), text(type_text(spec)), default_text(spec), allowed_text(spec),
             text(spec.doc) if spec.doc else NONE]
            for name, spec in flatten(schema)]


def config_reference(kind: str) -> tuple[list[str], list[str]]:
    """The reference table of one config kind; returns (reST lines, source files)."""
    schema, source = schema_of(kind)
    lines = list_table(["key", "type", "default", "allowed", "meaning"], config_rows(schema),
                       widths=[22, 9, 14, 25, 30])
    return lines, [source]


def prior_reference() -> tuple[list[str], list[str]]:
    """The prior types each slot of ``model_pars.<model>`` takes, with their parameters
    (from :mod:`pipeline.gmix.priors`); returns (reST lines, source files)."""
    from ..gmix import priors

    def params(ptype: str) -> str:
        out = []
        for name, length in priors.PRIOR_PARAMS[ptype].items():
            what = "a number" if length == 0 else f"a list of {length} numbers"
            optional = " (optional)" if (ptype, name) in priors._OPTIONAL else ""
            out.append(f"{literal(name)}: {what}{optional}")
        return ", ".join(out) or "none"

    rows = [[literal(slot), literal(priors.DISPLAY.get(ptype, ptype)), params(ptype)]
            for slot, types in priors.SLOT_TYPES.items() for ptype in types]
    return (list_table(["slot", "type", "parameters"], rows, widths=[15, 20, 65]),
            [inspect.getsourcefile(priors)])
