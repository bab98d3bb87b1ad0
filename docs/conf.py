"""Sphinx configuration of the morl documentation (``sphinx-build -W -b html docs docs/_build/html``)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "_ext"))

project = "morl"
author = "the morl authors"
copyright = "the morl authors"
extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "morl_docs",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build", "results/*/**"]  # per-run tables and runs under results/ are files the pages link to
myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3
html_theme = "furo"
html_title = "morl"
autodoc_member_order = "bysource"
autodoc_typehints = "none"  # the :param: lines say what each argument is; signatures keep the defaults
autodoc_default_options = {"members": False}
napoleon_google_docstring = False
napoleon_numpy_docstring = True
smartquotes = False  # descriptions quote code values; keep them as written
