"""Sphinx configuration: Markdown pages (MyST), API reference from the numpydoc docstrings,
the CLI reference from the argument parser itself (``_ext/nnkd_cli.py``).

Build: ``sphinx-build -W -b html docs docs/_build/html`` (the suite does, warnings as errors).
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))

import nnkd  # noqa: E402  (after the path: the extension imports nnkd too)

project = "nnkd"
author = "the nnkd developers"
copyright = "nnkd developers, BSD-3-Clause"
release = nnkd.__version__
version = release

extensions = ["myst_parser", "sphinx.ext.autodoc", "numpydoc", "nnkd_cli"]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build"]
myst_enable_extensions = ["colon_fence"]
myst_heading_anchors = 3

autodoc_default_options = {"members": False, "inherited-members": False}
autodoc_typehints = "none"                 # numpydoc's Parameters sections say the types
numpydoc_show_class_members = False        # each page lists the methods it documents
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

html_theme = "alabaster"
html_title = f"nnkd {release}"
html_static_path = []
