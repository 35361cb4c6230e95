"""Sphinx configuration of the scvi-cfgen documentation."""

from __future__ import annotations

import os
import sys
from datetime import datetime
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path

HERE = Path(__file__).parent
ROOT = HERE.parent
# build from a source checkout even when the package is not installed
sys.path.insert(0, str(ROOT / "src"))

# -- Project information -----------------------------------------------------

project = "scvi-cfgen"
author = "scvi-cfgen developers"
copyright = f"{datetime.now():%Y}, {author}"
try:
    release = package_version("scvi-cfgen")
except PackageNotFoundError:  # source tree without installation
    release = "0.0.0"
version = ".".join(release.split(".")[:2])

# -- General configuration ---------------------------------------------------

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.intersphinx",
    "sphinx_autodoc_typehints",
    "sphinx.ext.mathjax",
    "sphinxcontrib.bibtex",
]

templates_path = ["_templates"]
exclude_patterns = [
    "_build",
    "Thumbs.db",
    ".DS_Store",
    "**.ipynb_checkpoints",
]
source_suffix = {
    ".rst": "restructuredtext",
    ".md": "myst-nb",
    ".ipynb": "myst-nb",
}
master_doc = "index"
default_role = "literal"
pygments_style = "default"

# -- Autodoc / autosummary / napoleon ----------------------------------------

autosummary_generate = True
# CFGenModel inherits save/load, the AnnData registry helpers, `history` etc. from scvi-tools'
# BaseModelClass: show them. The torch / Lightning classes inherit hundreds of framework
# members (nn.Module, LightningModule), which are left to those projects' documentation.
autosummary_context = {"show_inherited": ["scvi_cfgen.CFGenModel"]}
autodoc_member_order = "groupwise"
autodoc_typehints = "description"
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_include_init_with_doc = False
napoleon_use_rtype = True
napoleon_use_param = True
typehints_defaults = "braces"
typehints_use_signature = False
always_document_param_types = False

# -- MyST / MyST-NB -----------------------------------------------------------

myst_enable_extensions = [
    "amsmath",
    "colon_fence",
    "deflist",
    "dollarmath",
    "html_image",
    "html_admonition",
]
myst_heading_anchors = 6
myst_url_schemes = ("http", "https", "mailto")
nb_execution_mode = "off"
nb_output_stderr = "remove"
nb_merge_streams = True

# -- Bibliography -------------------------------------------------------------

bibtex_bibfiles = ["references.bib"]
bibtex_reference_style = "author_year"
bibtex_default_style = "plain"

# -- Intersphinx ----------------------------------------------------------------
# The inventories are fetched over the network. Builds are often offline (CI sandboxes, the
# development machine), where a failed fetch is a warning and `-W` turns it into an error, so
# they are opt-in: set SCVI_CFGEN_DOCS_INTERSPHINX=1 to link to the other projects' docs.

_INTERSPHINX = {
    "python": ("https://docs.python.org/3", None),
    "numpy": ("https://numpy.org/doc/stable/", None),
    "pandas": ("https://pandas.pydata.org/docs/", None),
    "anndata": ("https://anndata.readthedocs.io/en/stable/", None),
    "mudata": ("https://mudata.readthedocs.io/en/latest/", None),
    "scanpy": ("https://scanpy.readthedocs.io/en/stable/", None),
    "scvi": ("https://docs.scvi-tools.org/en/stable/", None),
    "torch": ("https://pytorch.org/docs/stable/", None),
    "lightning": ("https://lightning.ai/docs/pytorch/stable/", None),
}
intersphinx_mapping = _INTERSPHINX if os.environ.get("SCVI_CFGEN_DOCS_INTERSPHINX") else {}
intersphinx_timeout = 10

# -- HTML output ----------------------------------------------------------------

html_theme = "sphinx_book_theme"
html_title = project
html_static_path = ["_static"]
html_theme_options = {
    "navigation_with_keys": False,
}


# -- Changelog fallback -------------------------------------------------------------


def _changelog_fallback(app, docname, source):
    """Keep `changelog.md` building before the repository has a CHANGELOG.md."""
    if docname == "changelog" and not (ROOT / "CHANGELOG.md").exists():
        source[0] = "# Changelog\n\nNo release has been recorded yet.\n"


def setup(app):
    """Register the build-time hooks."""
    app.connect("source-read", _changelog_fallback)
