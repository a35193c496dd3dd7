"""Sphinx configuration of the megamixer documentation.

Build: ``sphinx-build -W -b html docs docs/_build/html`` (needs the ``docs`` extra).
The reference pages are generated from the code at build time (``pipeline.docgen``
through ``_ext/megamixer_sphinx.py``), so they cannot drift from it.
"""

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
# the checkout's package, installed or not, and the local extension
sys.path.insert(0, str(DOCS.parent))
sys.path.insert(0, str(DOCS / "_ext"))

from pipeline import __version__  # noqa: E402

project = "megamixer"
author = "the megamixer developers"
copyright = "the megamixer developers"
version = release = __version__

extensions = ["sphinx.ext.autodoc", "numpydoc", "megamixer_sphinx"]
exclude_patterns = ["_build"]
root_doc = "index"
default_role = "literal"
# command-line options stay "--seed", never an en dash
smartquotes = False

# autodoc / numpydoc: members in source order, no autosummary stubs for classes
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False

html_theme = "alabaster"
html_theme_options = {"description": "Galaxy shapes and fluxes for imaging surveys, at scale",
                      "fixed_sidebar": True, "page_width": "1280px", "sidebar_width": "220px",
                      "body_max_width": "none"}
html_static_path = []
