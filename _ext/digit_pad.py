"""Sphinx extension: the files of the digit pad (book/play.md, _static/play.js).

The pad runs the model that Step 3 trains while the book builds. A chapter
whose code cells did not change is not executed again (the execution cache):
such a build trains nothing, so the checkpoint cannot come from the build
itself. Step 3 saves it (`mnist_lib.pad.save_for_pad`) inside the folder of
the execution cache, `_build/.jupyter_cache/digit_pad/` (in quick mode under
`_build/quick/_build/`; `mnist_lib.pad.pad_checkpoint_path`), where it lives
exactly as long as the cached run that trained it: a build that drops the
cache executes Step 3 again.

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
            f"the digit pad (book/play.md) runs the final model that Step 3 "
            f"(book/step3.md) saves when the book build (scripts/build_book.sh: "
            f"make book, make book-quick) executes it, but there is no "
            f"{checkpoint}. Step 3 came from an execution cache made by a run "
            f"that did not save it, or the file was deleted: drop that cache, "
            f"rm -rf {checkpoint.parent.parent}, and build again, so that Step 3 "
            f"runs again (with make book or make book-quick: a bare "
            f"jupyter-book build does not set MNIST_BOOK_BUILD, and Step 3 then "
            f"saves nothing).")
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


# Seconds between the end of Step 3's run and the cache taking it in, at most.
SLACK = 120


def check_fresh(checkpoint: Path, run: dict | None) -> None:
    """A PadFilesError unless `checkpoint` was saved by the run of Step 3 that
    this build shows (`run`: myst-nb's execution data for the page, "mtime"
    when that run ended or was cached, "runtime" its seconds). A cache keeps
    one run for each version of Step 3's code: go back to an earlier version
    and the page is that run's, while the checkpoint is the latest run's."""
    if not checkpoint.is_file() or not run or run.get("mtime") is None:
        return  # `ship` says what is missing; no execution data, no check
    saved, ended = checkpoint.stat().st_mtime, run["mtime"]
    started = ended - (run.get("runtime") or 0)
    if not started - SLACK <= saved <= ended + SLACK:
        raise PadFilesError(
            f"{checkpoint} was not saved by the run of Step 3 (book/step3.md) "
            f"that this build shows (that run ended at {ended:.0f}, the file is "
            f"from {saved:.0f}, in seconds since 1970): the execution cache "
            f"served another run of Step 3 than the one that saved it, or Step 3 "
            f"ran without saving it (a bare jupyter-book build). Drop the cache, "
            f"rm -rf {checkpoint.parent.parent}, and build again with make book "
            f"or make book-quick.")


def after_build(app, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    from myst_nb.sphinx_ import NbMetadataCollector

    from mnist_lib import book
    from mnist_lib.pad import pad_checkpoint_path

    checkpoint = pad_checkpoint_path(Path(app.srcdir), book.QUICK)
    check_fresh(checkpoint, NbMetadataCollector.get_exec_data(app.env, "book/step3"))
    ship(Path(app.outdir), checkpoint, book.data_root())


def setup(app):
    app.connect("build-finished", after_build)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
