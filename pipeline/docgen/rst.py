"""reStructuredText building blocks for the generated reference tables."""

from __future__ import annotations

import re
from typing import Iterable, Sequence

# characters that start inline markup (or a reference, for a trailing "_")
_MARKUP = re.compile(r"([\\*`|_])")
# what would make a line a list item ("- x", "+", "1. x", "#.")
_LIST = re.compile(r"^([-+]|\d+[.)]|#\.)(\s|$)")


def text(value: object) -> str:
    """Plain text with every inline-markup character escaped (and a leading list
    marker, so that a cell of "-" stays a dash)."""
    out = _MARKUP.sub(r"\\\1", str(value))
    return "\\" + out if _LIST.match(out) else out


def literal(value: object) -> str:
    """Inline literal (``value``); empty values read as ``''``."""
    value = str(value)
    return f"``{value}``" if value else "``''``"


def heading(title: str, underline: str) -> list[str]:
    return [title, underline * len(title), ""]


def list_table(header: Sequence[str], rows: Iterable[Sequence[str]],
               widths: Sequence[int] | None = None) -> list[str]:
    """A ``list-table`` with one header row; cells are single lines of reST."""
    lines = [".. list-table::", "   :header-rows: 1"]
    if widths:
        lines.append("   :widths: " + " ".join(str(w) for w in widths))
    lines.append("")
    for row in [header, *rows]:
        for i, cell in enumerate(row):
            lines.append(f"   {'*' if i == 0 else ' '} - {cell}".rstrip())
    lines.append("")
    return lines
