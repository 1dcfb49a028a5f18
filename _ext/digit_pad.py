"""Sphinx extension: the files of the digit pad (book/play.md, _static/play.js).

The pad runs the book's final model as recorded: `results/final_model.pt`
(round 2's recipe, trained with the final test's first seed; the command is
in book/reproducibility.md, and tests/test_records.py holds it to the
record). No chapter trains it in the build, so the pad runs the same weights
whether a chapter came from the execution cache or not.

After the build, each page with a pad (an element with id "digit-pad") gets,
at the URLs its data-checkpoint, data-model and data-digits attributes name:
the checkpoint itself (readers download it), the model's layers and weights
as JSON (`mnist_lib.pad.model_json`) and test digits to try
(`mnist_lib.pad.digits_json`). Without the checkpoint the build fails,
saying how to make it.
"""

from __future__ import annotations

import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

from sphinx.errors import SphinxError

ATTRIBUTES = ("data-checkpoint", "data-model", "data-digits")


class PadFilesError(SphinxError):
    category = "Digit pad error"


class _Pads(HTMLParser):
    """The attributes of each element with id="digit-pad" in a page."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[dict[str, str]] = []

    def handle_starttag(self, tag, attrs) -> None:
        attrs = dict(attrs)
        if attrs.get("id") == "digit-pad":
            self.found.append(attrs)


def pads(outdir: Path) -> list[tuple[Path, dict[str, str]]]:
    """(page, the pad's attributes) of each pad in the built HTML."""
    found = []
    for page in sorted(outdir.rglob("*.html")):
        text = page.read_text(encoding="utf-8")
        if not re.search(r"""id=["']digit-pad["']""", text):
            continue
        parser = _Pads()
        parser.feed(text)
        found += [(page, attrs) for attrs in parser.found]
    return found


def ship(outdir: Path, checkpoint: Path, data_root: Path) -> list[Path]:
    """Write the files of every pad in `outdir` from `checkpoint` and the
    MNIST test set in `data_root`; the paths written. A PadFilesError when a pad
    names no file, or names one outside the site, or the checkpoint is
    missing."""
    found = pads(outdir)
    if not found:
        return []
    if not checkpoint.is_file():
        raise PadFilesError(
            f"the digit pad (book/play.md) runs the book's final model, "
            f"{checkpoint}, and there is no such file. It is part of the "
            f"repository: restore it with git checkout -- results/final_model.pt, "
            f"or train it again with the command book/reproducibility.md gives "
            f"for it.")
    from mnist_lib import load_checkpoint, load_mnist
    from mnist_lib.pad import digits_json, model_json

    model = load_checkpoint(checkpoint)
    data = load_mnist(data_root, download=False, verbose=False)
    files = {"data-model": json.dumps(model_json(model), separators=(",", ":")),
             "data-digits": json.dumps(digits_json(model, data.test_images,
                                                   data.test_labels),
                                       separators=(",", ":"))}
    written = []
    site = outdir.resolve()
    for page, attrs in found:
        for attr in ATTRIBUTES:
            if not attrs.get(attr):
                raise PadFilesError(f"{page.relative_to(outdir)}: the digit pad "
                                    f"names no {attr} file")
            target = (page.parent / attrs[attr]).resolve()
            if site not in target.parents:
                raise PadFilesError(f"{page.relative_to(outdir)}: the pad's {attr} "
                                    f"({attrs[attr]}) lies outside the site")
            target.parent.mkdir(parents=True, exist_ok=True)
            if attr == "data-checkpoint":
                shutil.copyfile(checkpoint, target)
            else:
                target.write_text(files[attr], encoding="utf-8")
            written.append(target)
    return written


def after_build(app, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    from mnist_lib import book
    from mnist_lib.pad import CHECKPOINT

    ship(Path(app.outdir), Path(app.srcdir) / CHECKPOINT, book.data_root())


def setup(app):
    app.connect("build-finished", after_build)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
