"""Flag bits reference, read from the source of :mod:`pipeline.gmix.flags`.

The module is the single place where bits are defined, and its comments are
their documentation: a ``# --- family ---`` line opens a family, a constant's
trailing comment says what it means, and other comment lines inside a family
are notes printed under its table. The tables are built from
that text, so a bit added there appears here with its comment.
"""

from __future__ import annotations

import ast
import inspect
import io
import re
import tokenize
from dataclasses import dataclass, field
from types import ModuleType

from ..gmix import flags as flags_module
from .rst import heading, list_table, literal, text

_FAMILY = re.compile(r"^#\s*-+\s*(?P<title>.+?)\s*-*$")


@dataclass
class Flag:
    name: str
    value: int | float
    meaning: str


@dataclass
class Family:
    title: str
    flags: list[Flag] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _comments(source: str) -> dict[int, str]:
    """Line number -> comment text (without ``#``)."""
    out = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            out[tok.start[0]] = tok.string
    return out


def families(module: ModuleType = flags_module) -> list[Family]:
    """The flag families of ``module``, constants in source order."""
    return parse_families(inspect.getsource(module), vars(module))


def parse_families(source: str, namespace: dict) -> list[Family]:
    """The families of a flags module's ``source``, whose executed names are
    ``namespace``."""
    comments = _comments(source)
    constants = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 \
                and isinstance(node.targets[0], ast.Name):
            value = namespace[node.targets[0].id]
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                constants[node.lineno] = (node.targets[0].id, value)
    out = [Family("")]
    for number, line in enumerate(source.splitlines(), 1):
        comment = comments.get(number, "")
        if number in constants:
            name, value = constants[number]
            out[-1].flags.append(Flag(name, value, comment.lstrip("#").strip()))
        elif line.lstrip().startswith("#"):
            family = _FAMILY.match(line.strip())
            if family:
                out.append(Family(family.group("title")))
            else:
                out[-1].notes.append(comment.lstrip("#").strip())
    return [fam for fam in out if fam.flags]


def _value_text(value: int | float) -> str:
    if isinstance(value, int) and value > 0 and value & (value - 1) == 0:
        return f"{literal(value)} (``2**{value.bit_length() - 1}``)"
    return literal(value)


def flag_reference(module: ModuleType = flags_module
                   ) -> tuple[list[str], list[str], list[str]]:
    """Tables of every flag family; returns (reST lines, problems, source files)."""
    source = inspect.getsourcefile(module)
    lines: list[str] = []
    warnings = []
    for fam in families(module):
        lines += heading(fam.title[:1].upper() + fam.title[1:] if fam.title else "Flags", "~")
        rows = []
        for flag in fam.flags:
            if not flag.meaning:
                warnings.append(f"{source}: {flag.name} has no comment saying what it "
                                f"means")
            rows.append([literal(flag.name), _value_text(flag.value),
                         text(flag.meaning) if flag.meaning else "—"])
        lines += list_table(["name", "value", "meaning"], rows, widths=[25, 20, 55])
        for note in fam.notes:
            lines += [text(note), ""]
    return lines, warnings, [source]
