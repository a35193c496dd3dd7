"""YAML configuration loading and schema validation.

Every config the project reads (fit, run, neighbours, simulation) is checked
against a schema before any work starts: unknown or misspelt keys, values of
the wrong type, missing required keys, values outside their allowed set or
range, and strings holding control characters are all collected and reported
together as one ``ConfigError`` line naming the file, e.g.
``fit.yaml: 2 problems: unknown key 'ntri' (did you mean 'ntry'?); 'psf_pars.model'
is 'coelip3' (did you mean 'coellip3'?; allowed: ...)``.

A schema is a plain ``dict`` mapping key names to :class:`Key` specs.
"""

from __future__ import annotations

import copy
import difflib
import math
import os
import re
import stat
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

import yaml

from .errors import ConfigError, InputFileError

REQUIRED = object()

_TYPE_NAMES = {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
               list: "a list", dict: "a mapping", type(None): "null"}

# C0/C1 control characters and DEL: a newline in a queue name or a path ends up as a
# new line of a job script
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# names that become parts of file names, job names and scheduler directives
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+=-]*")

#: Run seeds: numpy's SeedSequence takes non-negative integers and the seed is
#: stored in an int64 column (meta_data ``seed``).
SEED_MIN, SEED_MAX = 0, 2**63 - 1


class Range:
    """A numeric bound check: ``lo <= x <= hi`` (``lo < x`` with ``lo_open``)."""

    def __init__(self, lo: float | None = None, hi: float | None = None,
                 lo_open: bool = False, hi_open: bool = False):
        self.lo, self.hi, self.lo_open, self.hi_open = lo, hi, lo_open, hi_open

    def __call__(self, value: Any) -> str | None:
        if isinstance(value, float) and math.isnan(value):
            return "must be a number, got nan"
        too_low = self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo)
        too_high = self.hi is not None and (value >= self.hi if self.hi_open else value > self.hi)
        if too_low or too_high:
            return f"must be {self.describe()}, got {value!r}"
        return None

    def describe(self) -> str:
        if self.lo is not None and self.hi is not None:
            return (f"in {'(' if self.lo_open else '['}{self.lo}, {self.hi}"
                    f"{')' if self.hi_open else ']'}")
        if self.lo is not None:
            return f"{'>' if self.lo_open else '>='} {self.lo}"
        return f"{'<' if self.hi_open else '<='} {self.hi}"


POSITIVE = Range(0, lo_open=True)
NON_NEGATIVE = Range(0)
AT_LEAST_ONE = Range(1)
FRACTION = Range(0, 1)
SEED = Range(SEED_MIN, SEED_MAX)


def plain_name(value: Any) -> str | None:
    """A plain name: a letter or digit, then letters, digits and ``_.+=-``.

    Names end up in file names, job names and scheduler directives; returns the
    problem, or None when the name is fine.
    """
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        return (f"must be a plain name (a letter or digit, then letters, digits and _.+=-), "
                f"got {value!r}")
    return None


@dataclass
class Key:
    """Specification of one config key (rendered by the docs' config reference).

    Parameters
    ----------
    types
        Accepted Python types (``float`` also accepts ints; ``bool`` is never
        accepted as a number).
    default
        Value used when the key is absent; ``REQUIRED`` makes it mandatory.
    doc
        What the key means, one line.
    schema
        For mappings, the schema of the nested keys.
    values_schema
        For mappings with free keys (e.g. one entry per model), the schema every
        value must follow.
    values
        For mappings with free keys, the spec every value must follow.
    keys
        Allowed free keys of such a mapping.
    items
        For lists, the spec of every element.
    choices
        Allowed values.
    check
        Callable returning a problem ("must be ...") or None, for values that
        passed the type check (e.g. :class:`Range`, :func:`plain_name`); the docs
        describe it by its ``describe()`` method, else its docstring's first line.
    length
        Exact length of a list.
    unique
        List elements must be distinct.
    nonempty
        A list or mapping must not be empty.
    verbatim
        Strings may hold control characters (e.g. shell lines).
    sparse
        A mapping with a ``schema`` keeps only the keys given (no defaults filled).
    nullable
        ``null`` is accepted (and kept) as the value.
    """

    types: tuple | type = object
    default: Any = None
    doc: str = ""
    schema: Mapping[str, "Key"] | None = None
    values_schema: Mapping[str, "Key"] | None = None
    values: "Key | None" = None
    keys: tuple | None = None
    items: "Key | None" = None
    choices: tuple | None = None
    check: Callable[[Any], str | None] | None = None
    length: int | None = None
    unique: bool = False
    nonempty: bool = False
    verbatim: bool = False
    sparse: bool = False
    nullable: bool = field(default=True)

    def type_tuple(self) -> tuple:
        return self.types if isinstance(self.types, tuple) else (self.types,)


# ---------------------------------------------------------------- YAML


class _StrictLoader(yaml.SafeLoader):
    """The safe loader, refusing a key given twice in one mapping."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.setdefault(key, key_node.start_mark.line)
                except TypeError:
                    continue  # unhashable key: the base loader reports it
                if first != key_node.start_mark.line:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r} (first on line {first + 1})",
                        key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def load_yaml(path: str | os.PathLike) -> dict:
    """Read a YAML mapping (UTF-8, safe loader, no duplicate keys); bad files
    raise a one-line error."""
    return load_yaml_text(path)[1]


def load_yaml_text(path: str | os.PathLike) -> tuple[str, dict]:
    """The text of a YAML config and its mapping (see :func:`load_yaml`)."""
    path = os.fspath(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise InputFileError(path, "config file not found") from None
    except OSError as err:
        raise InputFileError(path, f"cannot read config: {err.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise InputFileError(path, "config is not a regular file")
    try:
        with open(path, "rb") as fobj:
            raw = fobj.read()
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InputFileError(path, f"config is not UTF-8 text (byte 0x{raw[err.start]:02x} "
                                   f"at offset {err.start})") from None
    except OSError as err:
        raise InputFileError(path, f"cannot read config: {err.strerror}") from None
    try:
        data = yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise InputFileError(path, f"invalid YAML{where}: {problem}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InputFileError(path, "config must be a YAML mapping of keys to values")
    return text, data


# ---------------------------------------------------------------- validation


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


def suggest(word: Any, candidates: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest candidate, or ''."""
    close = difflib.get_close_matches(str(word), [str(c) for c in candidates], n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def choice_problem(name: str, value: Any, choices: Iterable) -> str:
    """``'name' is 'x' (did you mean 'y'?; allowed: a, b)``."""
    choices = list(choices)
    close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1, cutoff=0.6)
    hint = f"did you mean '{close[0]}'?; " if close else ""
    return f"'{name}' is {value!r} ({hint}allowed: {', '.join(str(c) for c in choices)})"


def unknown_key_problem(name: str, key: Any, known: Iterable[str], prefix: str = "") -> str:
    close = difflib.get_close_matches(str(key), [str(k) for k in known], n=1, cutoff=0.6)
    hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
    return f"unknown key '{name}'{hint}"


def control_char(value: str) -> str | None:
    """The first control character (newline, tab, ...) in ``value``, or None."""
    found = _CONTROL.search(value)
    return None if found is None else found.group()


def control_problem(name: str, value: str) -> str | None:
    char = control_char(value)
    if char is None:
        return None
    return f"'{name}' holds a control character ({char!r}): {value!r}"


def check_value(name: str, value: Any, spec: Key, problems: list[str]) -> Any:
    """Check one present value against ``spec``; append problems; return the
    value with nested defaults filled in."""
    if not _type_ok(value, spec):
        problems.append(f"key '{name}' must be {_describe(spec.type_tuple())}, got {value!r}")
        return value
    if value is None:
        return None
    if isinstance(value, str) and not spec.verbatim:
        bad = control_problem(name, value)
        if bad:
            problems.append(bad)
            return value
    if spec.choices is not None and value not in spec.choices:
        problems.append(choice_problem(name, value, spec.choices))
        return value
    if spec.check is not None and not isinstance(value, (dict, list)):
        bad = spec.check(value)
        if bad:
            problems.append(f"'{name}' {bad}")
            return value
    if isinstance(value, list):
        return _check_list(name, value, spec, problems)
    if isinstance(value, dict):
        return _check_mapping(name, value, spec, problems)
    return copy.deepcopy(value)


def _check_list(name: str, value: list, spec: Key, problems: list[str]) -> list:
    if spec.nonempty and not value:
        problems.append(f"'{name}' must not be empty")
    if spec.length is not None and len(value) != spec.length:
        problems.append(f"'{name}' must have {spec.length} elements, got {value!r}")
    if spec.unique:
        seen = set()
        for item in value:
            try:
                if item in seen:
                    problems.append(f"'{name}' lists {item!r} twice")
                seen.add(item)
            except TypeError:
                pass
    if spec.check is not None:
        bad = spec.check(value)
        if bad:
            problems.append(f"'{name}' {bad}")
    if spec.items is None:
        if not spec.verbatim:
            for i, item in enumerate(value):
                if isinstance(item, str):
                    bad = control_problem(f"{name}[{i}]", item)
                    if bad:
                        problems.append(bad)
        return copy.deepcopy(value)
    return [check_value(f"{name}[{i}]", item, spec.items, problems)
            for i, item in enumerate(value)]


def _check_mapping(name: str, value: dict, spec: Key, problems: list[str]) -> dict:
    if spec.nonempty and not value:
        problems.append(f"'{name}' must not be empty")
    if spec.schema is not None:
        return check_mapping(value, spec.schema, problems, f"{name}.", fill=not spec.sparse)
    if spec.values_schema is not None or spec.values is not None or spec.keys is not None:
        out = {}
        for sub, subval in value.items():
            if spec.keys is not None and sub not in spec.keys:
                problems.append(f"unknown key '{name}.{sub}'{suggest(sub, spec.keys)}; "
                                f"allowed: {', '.join(map(str, spec.keys))}")
                continue
            if spec.values_schema is not None:
                out[sub] = check_mapping(subval if subval is not None else {},
                                         spec.values_schema, problems, f"{name}.{sub}.")
            elif spec.values is not None:
                out[sub] = check_value(f"{name}.{sub}", subval, spec.values, problems)
            else:
                out[sub] = copy.deepcopy(subval)
        return out
    return copy.deepcopy(value)


def check_mapping(data: Any, schema: Mapping[str, Key], problems: list[str],
                  prefix: str = "", fill: bool = True, also_known: Iterable[str] = ()) -> dict:
    """Check ``data`` against ``schema``, appending every problem to ``problems``;
    return a copy with defaults filled in (as far as the data allows; none when
    not ``fill``). ``also_known``: other accepted names (e.g. ngmixer's), suggested
    for misspelt keys too."""
    if not isinstance(data, Mapping):
        problems.append(f"'{prefix.rstrip('.') or 'config'}' must be a mapping, got {data!r}")
        return {}
    out: dict = {}
    known = list(schema) + [k for k in also_known if k not in schema]
    for key in data:
        if key not in schema:
            problems.append(unknown_key_problem(f"{prefix}{key}", key, known, prefix))
    for key, spec in schema.items():
        name = f"{prefix}{key}"
        if key not in data:
            if spec.default is REQUIRED:
                problems.append(f"missing required key '{name}'")
                continue
            if not fill:
                continue
            value = copy.deepcopy(spec.default)
            if spec.schema is not None and isinstance(value, Mapping):
                value = check_mapping(value, spec.schema, problems, f"{name}.",
                                      fill=not spec.sparse)
            out[key] = value
            continue
        out[key] = check_value(name, data[key], spec, problems)
    return out


def problems_error(source: str, problems: list[str]) -> ConfigError:
    """One ConfigError line for a list of problems."""
    unique = list(dict.fromkeys(problems))
    if len(unique) == 1:
        return ConfigError(f"{source}: {unique[0]}")
    return ConfigError(f"{source}: {len(unique)} problems: {'; '.join(unique)}")


def raise_problems(source: str, problems: list[str]) -> None:
    if problems:
        raise problems_error(source, problems)


def validate(data: Mapping, schema: Mapping[str, Key], source: str = "config",
             prefix: str = "") -> dict:
    """Check ``data`` against ``schema`` and return a copy with defaults filled in;
    every problem found is reported in one ConfigError."""
    problems: list[str] = []
    out = check_mapping(data, schema, problems, prefix)
    raise_problems(source, problems)
    return out


def load_config(path: str | os.PathLike, schema: Mapping[str, Key]) -> dict:
    """Load a YAML file and validate it against ``schema``."""
    return validate(load_yaml(path), schema, source=os.fspath(path))


def check_seed(value: Any, what: str = "--seed") -> int:
    """A run seed from the command line; ConfigError outside [SEED_MIN, SEED_MAX]."""
    bad = SEED(value)
    if bad:
        raise ConfigError(f"{what} {bad}")
    return int(value)
