"""The chapters as a learner runs them in Colab: every .ipynb twin executed
outside any checkout of the repository, without myst-nb, in quick mode.

Colab differs from the book build in three ways that have broken chapters
before: the working folder is not the repository (no `results/`, no `data/`
unless the library puts it there), myst-nb is not installed (`book.glue` must
fall back), and the recorded results come from the installed library, which
carries them. The kernel here gets a `sitecustomize` that blocks `import
myst_nb` and is offline: a request for a record on GitHub (the fallback for
one the library lacks) fails, and says so on stderr. The library is installed
editable here, so it reads the records of its own source tree, as a
pip-installed one reads those it carries (test_api checks the built package).
What this cannot run offline is each chapter's install cell (`pip install
git+<repository>`): the library is already installed here, so the cell does
nothing, as on Binder.

A learner who runs a chapter should see their own run's numbers: each Result
and Analysis block is a `book.show` cell in the twin (scripts/twins.py), and
its output must hold every value the chapter glued for it.
"""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "book").glob("*.ipynb"))

SITECUSTOMIZE = '''
import importlib.abc, sys, urllib.request

class NoMystNb(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] == "myst_nb":
            raise ImportError("myst_nb is not installed in Colab")
        return None

sys.meta_path.insert(0, NoMystNb())

def offline(url, timeout=None, **kwargs):
    print("[offline]", url, file=sys.stderr)
    raise OSError("offline")

urllib.request.urlopen = offline
'''


def execute_as_in_colab(notebook: Path, tmp_path: Path, monkeypatch):
    """Run `notebook` as Colab would (see the module's docstring), offline;
    return the executed notebook and what it glued."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")

    site = tmp_path / "site"
    site.mkdir(parents=True)
    (site / "sitecustomize.py").write_text(textwrap.dedent(SITECUSTOMIZE))
    work = tmp_path / "content"  # Colab's working folder: no checkout around it
    work.mkdir(parents=True)
    monkeypatch.setenv("PYTHONPATH", str(site))
    monkeypatch.setenv("MNIST_BOOK_QUICK", "1")
    monkeypatch.setenv("MNIST_PROGRESS", "static")
    # One thread, as the book build runs: two threads would spin-wait for a
    # core that other work holds (scripts/build_book.sh says how much slower).
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    # Colab downloads MNIST from the internet; here it comes from the checkout.
    monkeypatch.setenv("MNIST_DATA", str(ROOT / "data"))

    nb = nbformat.read(notebook, as_version=4)
    # Last, a cell that saves what the chapter glued, to check the blocks by. A
    # file, not a print: the kernel may send one print as several stream messages.
    glued_file = tmp_path / "glued.json"
    nb.cells.append(nbformat.v4.new_code_cell(
        "import json, pathlib\nfrom mnist_lib import book\n"
        f"pathlib.Path({str(glued_file)!r}).write_text(json.dumps("
        "{k: v for k, v in book.GLUED.items() if isinstance(v, (str, int, float))}))"))
    # A busy machine may deliver a cell's output well after the cell ends:
    # wait for it (nbclient's default is 4 s), and fail rather than lose it.
    nbclient.NotebookClient(nb, timeout=1200, startup_timeout=300, iopub_timeout=60,
                            raise_on_iopub_timeout=True, kernel_name="python3",
                            resources={"metadata": {"path": str(work)}}).execute()
    assert not any((work / name).exists() for name in ("results", "mnist_lib"))
    return nb, json.loads(glued_file.read_text())


@pytest.mark.book
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_chapter_runs_as_in_colab(notebook, tmp_path, monkeypatch):
    nb, glued = execute_as_in_colab(notebook, tmp_path, monkeypatch)
    stderr = "".join(out.get("text", "") for cell in nb.cells
                     if cell.cell_type == "code" for out in cell.get("outputs", [])
                     if out.get("name") == "stderr")
    # The chapters read their recorded results from the library, offline.
    assert "[offline]" not in stderr, stderr[-2000:]

    shows = [cell for cell in nb.cells if cell.cell_type == "code"
             and "book.show(" in cell.source]
    if notebook.stem.startswith("step"):
        assert any("Result" in cell.source.splitlines()[0] for cell in shows)
    for cell in shows:
        shown = "".join(out.get("data", {}).get("text/markdown", "")
                        for out in cell.outputs)
        assert shown and "{glue" not in shown and "…" not in shown, shown
        assert "not computed yet" not in shown, shown
        for name, spec in re.findall(r"\{glue:text\}`([^`:]+)(?::([^`]*))?`",
                                     cell.source):
            value = glued[name]
            text = str(value) if spec in ("", "s") else format(value, spec)
            assert text in shown, f"{name} = {text!r} is not in {shown[:300]!r}"


@pytest.mark.book
def test_a_claim_that_no_longer_holds_notes_in_colab_and_fails_the_build(
        tmp_path, monkeypatch):
    """A chapter's claim about its own run (`book.claim`) that the run does not
    bear out: in a learner's run the notebook prints a note naming the claim
    and finishes; in the book build (MNIST_BOOK_BUILD=1) it fails. The claim
    here is the kind Step 1 makes about its curves, made false on purpose."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(
        "from mnist_lib import book\n"
        "loss = [0.10, 0.08, 0.05]  # still falling at the last epoch\n"
        "best = loss.index(min(loss)) + 1\n"
        "book.claim(best <= len(loss) - 1, 'the test loss is lowest before the end',\n"
        "           f'lowest at epoch {best} of {len(loss)}', live=False)"),
        nbformat.v4.new_code_cell("print('the chapter went on')")]
    notebook = tmp_path / "claim.ipynb"
    nbformat.write(nb, notebook)

    ran, _ = execute_as_in_colab(notebook, tmp_path / "colab", monkeypatch)
    printed = "".join(out.get("text", "") for cell in ran.cells
                      if cell.cell_type == "code" for out in cell.get("outputs", []))
    assert "Note: the text says “the test loss is lowest before the end”, but the " \
           "record does not bear it out (lowest at epoch 3 of 3)" in printed
    assert "the chapter went on" in printed

    monkeypatch.setenv("MNIST_BOOK_BUILD", "1")
    with pytest.raises(nbclient.exceptions.CellExecutionError,
                       match="claim no longer holds: the test loss is lowest"):
        execute_as_in_colab(notebook, tmp_path / "build", monkeypatch)
