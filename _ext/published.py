"""Sphinx extension: what a published page carries beyond the theme's defaults.

- The page's ".ipynb" download is its Colab twin (`book/NAME.ipynb`, written by
  scripts/twins.py), the notebook a learner runs. sphinx-book-theme offers
  myst-nb's export of the executed page instead, whose Markdown keeps the
  `{glue:text}` roles raw; a page without a twin offers no .ipynb.
- The site's address is written once, as `html.baseurl` in _config.yml (by
  `make repository`): the Open Graph tags' site URL and the 404 page's link
  prefix (GitHub Pages serves a project's book under /NAME/) come from it.
- The book's title is written once, as `title` in _config.yml: the shared
  link's site name and the text beside the logo come from it (with a logo,
  the theme shows the title only when told to).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import urlparse


def derive(app, config) -> None:
    """Settings that follow from the book's address and title."""
    if config.html_baseurl:
        config.ogp_site_url = config.ogp_site_url or config.html_baseurl
        config.notfound_urls_prefix = urlparse(config.html_baseurl).path or "/"
    if config.ogp_site_name is None:
        config.ogp_site_name = config.html_title
    logo = config.html_theme_options.setdefault("logo", {})
    logo.setdefault("text", config.html_title)


def twin_download(app, pagename: str, templatename: str, context: dict,
                  doctree) -> None:
    """After the theme has copied myst-nb's export to `_sources/` (its
    download): put the page's Colab twin there, or take the button away."""
    source = context.get("ipynb_source")
    if not source:
        return
    twin = Path(app.srcdir, pagename).with_suffix(".ipynb")
    target = Path(app.outdir, "_sources", source)
    if twin.is_file():
        shutil.copyfile(twin, target)
        return
    target.unlink(missing_ok=True)
    for group in context.get("header_buttons", []):
        if group.get("label") == "download-buttons":
            group["buttons"] = [b for b in group["buttons"]
                                if b.get("label") != "download-notebook-button"]


def refresh_twins(app, exception) -> None:
    """At the end of a build, every download again from its twin: Sphinx
    writes only the pages whose source changed, and a twin can change alone
    (when scripts/twins.py does)."""
    if exception is not None or app.builder.format != "html":
        return
    sources = Path(app.outdir, "_sources")
    for download in sources.rglob("*.ipynb"):
        twin = Path(app.srcdir, download.relative_to(sources))
        if twin.is_file():
            shutil.copyfile(twin, download)


def setup(app):
    app.connect("config-inited", derive)
    # The theme's handlers run at priority 501: this one after them.
    app.connect("html-page-context", twin_download, priority=900)
    app.connect("build-finished", refresh_twins)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
