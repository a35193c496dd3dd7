"""Sphinx glue of the megamixer documentation.

- ``.. megamixer-generated:: KIND [ARG ...]`` inserts a table generated from the
  code (the generators: ``pipeline.docgen``). What a generator reports (an output
  column declared without a meaning, a flag bit not described in ``FLAG_DOCS``) is
  a warning, so a ``-W`` build fails on it.
- Top-level pages that the root document's toctrees do not list are appended to it
  in a last toctree, so a page added to ``docs/`` is part of the site at once (a
  glob would warn while no such page exists).
"""

from __future__ import annotations

import re
from pathlib import Path

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

from pipeline.docgen import generate

logger = logging.getLogger(__name__)


class GeneratedTable(SphinxDirective):
    required_arguments = 1
    optional_arguments = 3
    has_content = False

    def run(self) -> list[nodes.Node]:
        try:
            out = generate(*self.arguments)
        except ValueError as err:
            raise self.error(str(err)) from None
        for path in out.sources:
            self.env.note_dependency(path)
        for problem in out.undocumented:
            logger.warning(problem, location=self.get_location())
        source, line = self.get_source_info()
        content = StringList(out.lines, source=f"{source} (generated)")
        holder = nodes.section()
        holder.document = self.state.document
        nested_parse_with_titles(self.state, content, holder)
        return holder.children


def add_unlisted_pages(app, docname: str, source: list[str]) -> None:
    """Append the top-level pages the root document does not list to its toctree."""
    if docname != app.config.root_doc:
        return
    listed = set(re.findall(r"^\s+([\w./-]+)\s*$", source[0], flags=re.M))
    pages = sorted(p.stem for p in Path(app.srcdir).glob("*.rst")
                   if p.stem not in listed and p.stem != docname)
    if pages:
        source[0] += ("\n\n.. toctree::\n   :maxdepth: 2\n   :caption: More\n\n"
                      + "".join(f"   {page}\n" for page in pages))


def setup(app):
    app.connect("source-read", add_unlisted_pages)
    app.add_directive("megamixer-generated", GeneratedTable)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
