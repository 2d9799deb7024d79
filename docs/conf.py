"""Sphinx configuration of latentlab's docs: Markdown pages (MyST) in the Furo theme.

`make docs` builds and serves them; `make test` builds them with warnings as errors, so a broken link, a missing
picture or a heading anchor that does not exist fails the build.
"""
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent))

from trainer.training.settings import markdown_table, run_markdown_table  # noqa: E402  (flags, from their one declaration)

project = "latentlab"
author = "the latentlab authors"
extensions = ["myst_parser", "sphinx.ext.autodoc"]  # autodoc: the Python client's reference, from its docstrings
autodoc_typehints = "signature"  # shown as written, not resolved into links to other projects' docs
autodoc_member_order = "bysource"
# other projects' types in the client's signatures are named, not linked (the docs build offline)
nitpick_ignore_regex = [("py:class", r"(numpy|np|pathlib|PIL|random|httpx|typing|collections|datetime)\..*"),
                        ("py:class", r"(Vector|LatentRef|Version|Picture|Call|Path)")]
myst_heading_anchors = 3  # links to sections: results.md#recipes
myst_enable_extensions = ["colon_fence"]
html_theme = "furo"
html_title = "latentlab"
exclude_patterns = ["_build", "_generated", "study.ipynb", "recipes/runs", "README.md"]
suppress_warnings: list[str] = []

GENERATED = DOCS / "_generated"
GENERATED.mkdir(exist_ok=True)
for name, table in (("recipe-flags.md", markdown_table()), ("run-flags.md", run_markdown_table())):
    target = GENERATED / name
    if not target.exists() or target.read_text() != table:  # rewritten only when it changes: no rebuild loop
        target.write_text(table)
