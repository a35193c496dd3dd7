"""Flag bits reference, rendered from :data:`pipeline.gmix.flags.FLAG_DOCS`.

One table per family of :data:`pipeline.gmix.flags.FLAG_FAMILIES` (its title and
the columns holding its bits), one row per bit: value, name, meaning and where
it is set. A bit constant of the flags module missing from ``FLAG_DOCS``, or a
row without a meaning, is reported as a problem (a ``-W`` build fails on it).
"""

from __future__ import annotations

import inspect
from types import ModuleType

from ..gmix import flags as flags_module
from .rst import heading, list_table, literal, text


def _value_text(value: int) -> str:
    return f"{literal(value)} (``2**{value.bit_length() - 1}``)"


def _is_bit(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0 \
        and value & (value - 1) == 0


def problems(module: ModuleType = flags_module) -> list[str]:
    """Bits of ``module`` that the reference would leave out or leave unexplained."""
    source = inspect.getsourcefile(module)
    docs, families = module.FLAG_DOCS, module.FLAG_FAMILIES
    documented = {name for rows in docs.values() for name, *_ in rows}
    out = [f"{source}: {name} is not in FLAG_DOCS" for name, value in vars(module).items()
           if name.isupper() and _is_bit(value) and name not in documented]
    out += [f"{source}: flag family {fam!r} is not in FLAG_FAMILIES"
            for fam in docs if fam not in families]
    out += [f"{source}: FLAG_DOCS {name} has no meaning or no place where it is set"
            for rows in docs.values() for name, _, meaning, where in rows
            if not meaning.strip() or not where.strip()]
    return out


def flag_reference(module: ModuleType = flags_module
                   ) -> tuple[list[str], list[str], list[str]]:
    """Tables of every flag family; returns (reST lines, problems, source files)."""
    lines: list[str] = []
    for family, rows in module.FLAG_DOCS.items():
        title, columns = module.FLAG_FAMILIES.get(family, (family, ""))
        lines += heading(title, "~")
        if columns:
            lines += [f"In {text(columns)}.", ""]
        lines += list_table(["value", "name", "meaning", "set by"],
                            [[_value_text(value), literal(name), text(meaning), text(where)]
                             for name, value, meaning, where in rows],
                            widths=[14, 24, 42, 20])
    return lines, problems(module), [inspect.getsourcefile(module)]
