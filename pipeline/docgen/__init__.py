"""Reference tables of the documentation, generated from the code at build time.

Each generator returns reStructuredText lines built from what the code itself
uses (config schemas, column declarations, flag descriptions), so the pages
cannot drift from it; ``docs/_ext/megamixer_sphinx.py`` puts them into pages with the
``.. megamixer-generated:: KIND [ARG ...]`` directive. Nothing here fits or reads
data.

============================  ======================================================
directive arguments           table
============================  ======================================================
``config fit``                every key of a config schema (``fit``, ``run``,
                              ``nbrs``, ``sim``): type, default, allowed values,
                              meaning
``columns HDU FITTER``        columns of a table ngmixit writes, the columns
``columns collate HDU F``     collate adds, the catalogue's ``chunks`` table (see
``columns chunks``            :mod:`pipeline.docgen.columnref`)
``priors``                    the prior types of each ``model_pars`` slot and their
                              parameters
``flags``                     every flag family of :mod:`pipeline.gmix.flags`
============================  ======================================================

A generator's problems (a column without a meaning, an undescribed flag bit)
are warnings of the build, so a ``-W`` build fails on them.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Generated:
    """What a generator produced: reST lines, problems to report (undocumented
    columns or flags) and the source files the table was read from."""

    lines: list[str]
    undocumented: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)


def generate(kind: str, *args: str) -> Generated:
    """The reST of one generated table (see the module docstring for the kinds)."""
    if kind == "config" and len(args) == 1:
        from .configref import config_reference
        lines, sources = config_reference(args[0])
        return Generated(lines, [], sources)
    if kind == "priors" and not args:
        from .configref import prior_reference
        lines, sources = prior_reference()
        return Generated(lines, [], sources)
    if kind == "columns" and args:
        from .columnref import column_reference
        return Generated(*column_reference(*args))
    if kind == "flags" and not args:
        from .flagref import flag_reference
        return Generated(*flag_reference())
    raise ValueError(f"unknown generated table: {' '.join((kind, *args))}")
