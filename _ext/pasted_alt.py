"""Sphinx extension: an image pasted from another page keeps its alt text.

A chapter's figure gets its alt text from its cell's metadata (`mystnb:
image: alt:`). myst-nb's `{glue}` with `:doc:` pastes the figure into another
page without it, and an image with no alt text shows its file path to a screen
reader, or where the image does not load. The image file is named by a hash of
its contents, so the same file name means the same figure: this extension
gives the pasted copy the alt text that the figure has on its own page.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from docutils import nodes


def _alts(env) -> dict[str, dict[str, str]]:
    # docname -> {image file name -> alt text}; kept in the environment, so
    # that a page that is not re-read still lends its alt texts.
    if not hasattr(env, "pasted_alt"):
        env.pasted_alt = {}
    return env.pasted_alt


def _name(image: nodes.image) -> str:
    return PurePosixPath(image["uri"].replace("\\", "/")).name


def collect(app, doctree: nodes.document) -> None:
    """After a page is read: remember the alt text of each of its images."""
    _alts(app.env)[app.env.docname] = {
        _name(img): img["alt"] for img in doctree.findall(nodes.image) if img.get("alt")
    }


def fill(app, doctree: nodes.document, docname: str) -> None:
    """After cross-page pastes are resolved: give each image without alt text
    the one the same figure has elsewhere."""
    known = {name: alt for page in _alts(app.env).values()
             for name, alt in page.items()}
    for img in doctree.findall(nodes.image):
        if not img.get("alt") and _name(img) in known:
            img["alt"] = known[_name(img)]


def purge(app, env, docname: str) -> None:
    _alts(env).pop(docname, None)


def merge(app, env, docnames, other) -> None:
    _alts(env).update(_alts(other))


def setup(app):
    app.connect("doctree-read", collect)
    app.connect("doctree-resolved", fill)
    app.connect("env-purge-doc", purge)
    app.connect("env-merge-info", merge)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
