"""YAML configuration loading and schema validation.

Every config the project reads (fit, run, neighbours, simulation) is checked
against a schema before any work starts: an unknown key, a value of the wrong
type or a missing required key is a one-line ``ConfigError`` naming the file
and the key, with the closest valid key suggested for a misspelling.

A schema is a plain ``dict`` mapping key names to :class:`Key` specs.
"""

from __future__ import annotations

import copy
import difflib
import os
from dataclasses import dataclass, field
from typing import Any, Mapping

import yaml

from .errors import ConfigError, InputFileError

REQUIRED = object()

_TYPE_NAMES = {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
               list: "a list", dict: "a mapping", type(None): "null"}


@dataclass
class Key:
    """Specification of one config key.

    types: accepted Python types (``float`` also accepts ints; ``bool`` is never
        accepted as a number).
    default: value used when the key is absent; ``REQUIRED`` makes it mandatory.
    schema: for mappings, the schema of the nested keys.
    values_schema: for mappings with free keys (e.g. one entry per model), the
        schema every value must follow.
    choices: allowed values.
    """

    types: tuple | type = object
    default: Any = None
    doc: str = ""
    schema: Mapping[str, "Key"] | None = None
    values_schema: Mapping[str, "Key"] | None = None
    choices: tuple | None = None
    nullable: bool = field(default=True)

    def type_tuple(self) -> tuple:
        return self.types if isinstance(self.types, tuple) else (self.types,)


def load_yaml(path: str | os.PathLike) -> dict:
    """Read a YAML mapping with the safe loader; bad files raise a one-line error."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise InputFileError(path, "config file not found")
    try:
        with open(path) as fobj:
            data = yaml.safe_load(fobj)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise InputFileError(path, f"invalid YAML{where}: {problem}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise InputFileError(path, f"cannot read config: {err}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InputFileError(path, "config must be a YAML mapping of keys to values")
    return data


def _type_ok(value: Any, spec: Key) -> bool:
    if value is None:
        return spec.nullable
    types = spec.type_tuple()
    if object in types:
        return True
    if isinstance(value, bool):
        return bool in types
    if isinstance(value, int) and float in types:
        return True
    return isinstance(value, types)


def _describe(types: tuple) -> str:
    return " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in types)


def validate(data: Mapping, schema: Mapping[str, Key], source: str = "config",
             prefix: str = "") -> dict:
    """Check ``data`` against ``schema`` and return a copy with defaults filled in."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: '{prefix.rstrip('.') or 'config'}' must be a mapping")
    out: dict = {}
    for key in data:
        if key not in schema:
            name = f"{prefix}{key}"
            close = difflib.get_close_matches(str(key), list(schema), n=1, cutoff=0.6)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
            raise ConfigError(f"{source}: unknown key '{name}'{hint}")
    for key, spec in schema.items():
        name = f"{prefix}{key}"
        if key not in data:
            if spec.default is REQUIRED:
                raise ConfigError(f"{source}: missing required key '{name}'")
            value = copy.deepcopy(spec.default)
            if spec.schema is not None and isinstance(value, Mapping):
                value = validate(value, spec.schema, source, f"{name}.")
            out[key] = value
            continue
        value = data[key]
        if not _type_ok(value, spec):
            raise ConfigError(f"{source}: key '{name}' must be {_describe(spec.type_tuple())}, "
                              f"got {value!r}")
        if spec.choices is not None and value is not None and value not in spec.choices:
            choices = ", ".join(repr(c) for c in spec.choices)
            raise ConfigError(f"{source}: key '{name}' is {value!r}; allowed: {choices}")
        if spec.schema is not None and value is not None:
            value = validate(value, spec.schema, source, f"{name}.")
        elif spec.values_schema is not None and value is not None:
            value = {sub: validate(subval if subval is not None else {}, spec.values_schema,
                                   source, f"{name}.{sub}.")
                     for sub, subval in value.items()}
        out[key] = copy.deepcopy(value)
    return out


def load_config(path: str | os.PathLike, schema: Mapping[str, Key]) -> dict:
    """Load a YAML file and validate it against ``schema``."""
    return validate(load_yaml(path), schema, source=os.fspath(path))
