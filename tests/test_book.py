"""The book: .ipynb twins in sync, and the built site opened in a real browser.

The browser tests need a built site (`make book-quick` or `make book`) and
Debian's Chromium (`apt-get install chromium`); without them they are skipped
with a message saying so. `make test` builds the site first.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import threading
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.support import load_script, unavailable

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "book").glob("*.md"))
# The step chapters and the decision's two: capped at STEP_WORDS, and no
# more hidden code than shown.
STEP_CHAPTERS = [c for c in CHAPTERS
                 if c.stem.startswith(("step", "decision"))]


# ------------------------------------------------------------ Colab twins
@pytest.mark.parametrize("md", CHAPTERS, ids=lambda p: p.stem)
def test_ipynb_twin_is_generated_from_the_chapter(md):
    twin = md.with_suffix(".ipynb")
    assert twin.exists(), f"{twin.name} missing: run `make sync`"
    assert twin.read_text() == load_script("twins").twin(md), \
        f"{twin.name} differs from what {md.name} gives: run `make sync`"


@pytest.mark.parametrize("md", CHAPTERS, ids=lambda p: p.stem)
def test_twin_markdown_has_no_myst_left(md):
    """What Colab cannot render never reaches a Markdown cell of a twin."""
    import nbformat

    nb = nbformat.read(md.with_suffix(".ipynb"), as_version=4)
    for cell in nb.cells:
        assert not cell.get("outputs"), f"{md.name}'s twin stores outputs"
        if cell.cell_type != "markdown":
            continue
        for raw in ("{glue", "```{", ":::{", "{ref}", "{doc}", ".md)", ".md#"):
            assert raw not in cell.source, f"{md.name}: {raw!r} in {cell.source[:200]}"
        assert not re.search(r"^\([\w-]+\)=$", cell.source, re.M), cell.source[:200]
        # Every link opens from Colab: no page or label of the site's own.
        for target in re.findall(r"\]\(([^)]*)\)", cell.source):
            assert target.startswith("https://"), f"{md.name}: link to {target!r}"


# The front matter of a chapter, for the twins' tests.
FRONT = ("---\nkernelspec:\n  display_name: Python 3\n  language: python\n"
         "  name: python3\n---\n\n")


def test_twins_convert_myst_and_refuse_what_they_do_not_know(tmp_path):
    twins = load_script("twins")
    (tmp_path / "a.md").write_text(
        FRONT + "# A\n\n(lab)=\n## Where\n\n"
        "```{admonition} Result\n:class: tip\n- n: {glue:text}`n`\n```\n\n"
        "See {ref}`lab` and [b](b.md), {glue:text}`b.md::x:s`.\n\n"
        "```{code-cell} ipython3\nfrom mnist_lib import book\n```\n")
    import nbformat

    nb = nbformat.reads(twins.twin(tmp_path / "a.md"), as_version=4)
    kinds = [c.cell_type for c in nb.cells]
    # Headings stay on top, each block a cell of its own; a glued block (and
    # the text after it) waits for the cell importing book, and only glued
    # blocks become show cells.
    assert kinds == ["markdown", "markdown", "code", "code", "markdown"], kinds
    assert [c.source for c in nb.cells[:2]] == ["# A", "## Where"]
    result, see = nb.cells[3].source, nb.cells[4].source
    assert result.startswith("#@title Result, with this run's numbers")
    assert "> **Result**" in result and "{glue:text}`n`" in result
    assert "See" not in result and "Result" not in see
    assert "[Where](https://colab.research.google.com/github/" in see
    assert "/blob/main/book/b.ipynb)" in see and ", —." in see
    assert "another chapter's run" in see and "(lab)=" not in result + see
    for bad, why in (("{figure} x.png", "the directive {figure}"),
                     ("{term}`x`", "the role {term}"),
                     ("{ref}`nowhere`", "unknown label 'nowhere'")):
        body = f"```{bad}\n```" if bad.startswith("{figure}") else bad
        (tmp_path / "c.md").write_text(
            f"---\nkernelspec:\n  name: python3\n---\n\n{body}\n")
        with pytest.raises(twins.TwinError, match=re.escape(why)):
            twins.twin(tmp_path / "c.md")


@pytest.mark.parametrize("md", CHAPTERS, ids=lambda p: p.stem)
def test_twin_folds_the_cells_the_site_hides_and_keeps_the_install_cell(md):
    import nbformat

    twins = load_script("twins")
    nb = nbformat.reads(md.with_suffix(".ipynb").read_text(), as_version=4)
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if cell.cell_type != "code" or "remove-cell" not in tags:
            continue
        folded = cell.source.startswith(twins.CHECKS + "\n")
        assert folded == ("skip-execution" not in tags), cell.source[:80]
        assert (cell.metadata.get("cellView") == "form") == folded


def test_twins_find_each_fence_s_own_end_and_keep_the_order(tmp_path):
    twins = load_script("twins")
    import nbformat

    # A four-backtick block holds a three-backtick one: cut at its own end.
    code = "````markdown\n```python\nx\n```\n````"
    assert twins.blocks(f"{code}\n\n## B") == [code, "## B"]
    with pytest.raises(twins.TwinError, match="a code block is never closed"):
        twins.Converter(tmp_path / "a.md", {}).markdown("```python\nnever closed")
    # Headings behind a glued block that waits for `book` wait with it.
    (tmp_path / "b.md").write_text(
        FRONT + "# A\n\nValue {glue:text}`v`.\n\n## B\n\nMore {glue:text}`w`.\n\n"
        "```{code-cell} ipython3\nfrom mnist_lib import book\n```\n")
    nb = nbformat.reads(twins.twin(tmp_path / "b.md"), as_version=4)
    firsts = [c.source.splitlines()[0] for c in nb.cells]
    assert firsts[0] == "# A" and firsts[1] == "from mnist_lib import book"
    assert firsts.index("## B") > firsts.index(
        next(f for f in firsts if "With this run" in f)), firsts


def test_twins_fold_a_dropdown_and_give_each_exercise_its_own_cell(tmp_path):
    twins = load_script("twins")
    (tmp_path / "a.md").write_text(
        FRONT + "## Exercises\n\n"
        "````{admonition} Exercise 1: x\nRun:\n\n```python\nprint(1)\n```\n````\n\n"
        "```{admonition} Solution\n:class: dropdown\nIt prints 1.\n```\n\n"
        "```{code-cell} ipython3\nx = 1\n```\n")
    import nbformat

    nb = nbformat.reads(twins.twin(tmp_path / "a.md"), as_version=4)
    assert [c.source.splitlines()[0] for c in nb.cells] == [
        "## Exercises", "> **Exercise 1: x**", "<details>", "x = 1"]
    exercise, solution = nb.cells[1].source, nb.cells[2].source
    assert "> ```python\n> print(1)\n> ```" in exercise  # the code stays code
    assert solution == ("<details>\n<summary><b>Solution</b></summary>\n\n"
                        "It prints 1.\n\n</details>")


# ----------------------------------------------- no claim rests on a timing
# A time measured while the book builds depends on the machine and on how busy
# it is: the chapters glue it in words that hold either way (book.time_change)
# and never assert it. Recorded results (book.load_record) are fixed, and may
# be compared.
_CLOCKS = {"perf_counter", "perf_counter_ns", "time", "time_ns", "monotonic",
           "process_time"}
_TIME_FIELDS = {"seconds", "sec_per_epoch", "total_seconds", "epoch_seconds"}
_FILLS = {"append", "extend", "insert", "add", "update", "setdefault"}


def _live_timing_claims(code: str) -> list[str]:
    """The asserts and `claim`s in `code` whose condition depends on a time
    measured as the code runs: a clock read, a run's seconds, or a value or
    function computed from them (followed through assignments and calls)."""
    import ast

    tree = ast.parse(code)
    tainted: set[str] = set()

    def root(node):
        while isinstance(node, (ast.Attribute, ast.Subscript)):
            node = node.value
        return node.id if isinstance(node, ast.Name) else None

    def timed(node) -> bool:
        # A comprehension's own variables are its own, whatever else bears the name.
        local = {name for n in ast.walk(node) if isinstance(n, ast.comprehension)
                 for name in names(n.target)}
        for n in ast.walk(node):
            if isinstance(n, ast.Name) and n.id in tainted - local:
                return True
            if isinstance(n, ast.Attribute) and n.attr in _TIME_FIELDS:
                return True
            if (isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
                    and n.func.attr in _CLOCKS and root(n.func) == "time"):
                return True
            if (isinstance(n, ast.Subscript) and isinstance(n.slice, ast.Constant)
                    and n.slice.value in _TIME_FIELDS):
                return True
        return False

    def names(target):
        return {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}

    changed = True
    while changed:  # to a fixed point: a later cell can taint an earlier name
        before = len(tainted)
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and timed(node):
                tainted.add(node.name)
            elif isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                if node.value is not None and timed(node.value):
                    for t in targets:
                        tainted |= names(t)
            elif isinstance(node, (ast.For, ast.comprehension)) and timed(node.iter):
                tainted |= names(node.target)
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                  and node.func.attr in _FILLS and root(node.func.value)
                  and any(timed(a) for a in node.args)):
                tainted.add(root(node.func.value))  # xs.append(t), d.update(...)
        changed = len(tainted) > before

    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assert) and timed(node.test):
            found.append(ast.unparse(node))
        elif (isinstance(node, ast.Call) and node.args and timed(node.args[0])
              and (getattr(node.func, "attr", None) == "claim"
                   or getattr(node.func, "id", None) == "claim")):
            found.append(ast.unparse(node))
    return found


@pytest.mark.parametrize("md", CHAPTERS, ids=lambda p: p.stem)
def test_no_chapter_asserts_a_live_timing(md):
    import jupytext

    code = "\n".join(c.source for c in jupytext.read(md).cells
                     if c.cell_type == "code")
    found = _live_timing_claims(code)
    assert not found, (f"{md.name} asserts on a time measured in the build: "
                       f"{found}. Glue it in words that hold either way "
                       "(book.time_change) instead.")


def test_timing_rule_catches_live_times_and_spares_records():
    live = [
        # Step 2's claim as it was: a run's seconds per epoch.
        'm3 = book.glue_result("m3", hist3)\nm2 = book.glue_result("m2", hist2)\n'
        'book.claim(m3["sec_per_epoch"] > m2["sec_per_epoch"], "dropout is slower")',
        # A timing function, its results gathered in a list, then compared.
        "import time\ndef step_time(m):\n    t0 = time.perf_counter()\n"
        "    return time.perf_counter() - t0\nts = []\nfor _ in range(3):\n"
        "    ts.append(step_time(1))\nt = min(ts)\nassert t < 0.1",
        "assert hist.total_seconds < 60",
    ]
    for code in live:
        assert _live_timing_claims(code), code
    spared = [
        'fp32 = book.load_record("bench_cpu_fp32")\nbench = book.load_record("b")\n'
        'book.claim(fp32["speedup_run"] < bench["speedup_run"], "smaller")\n'
        'assert fp32["library"]["run_s"] > bench["library"]["run_s"]',
        'm = book.glue_result("m", hist)\nassert m["params"] < 8000\n'
        'book.claim(m["best_test"] > 99, "learns")\n'
        'book.glue("w", book.time_change(m["seconds"], 1.0))',
    ]
    for code in spared:
        assert not _live_timing_claims(code), code


# ------------------------------------------------- summary and exercises
# The landing page and the appendix teach no step of their own.
WITHOUT_EXERCISES = {"intro"}
ADMONITION = re.compile(r"^(`{3,})\{admonition\} (?P<title>.+)$")


def chapter_end(text: str) -> tuple[list[str], list[str], list[tuple[str, str]]]:
    """What a chapter has after its '## Summary': the headings from there on,
    the summary's bullets, and each admonition's (title, class) in order."""
    lines = text.splitlines()
    start = lines.index("## Summary")
    tail = lines[start:]
    headings = [l for l in tail if l.startswith("## ")]
    end = tail.index("## Exercises") if "## Exercises" in tail else len(tail)
    bullets = [l for l in tail[:end] if l.startswith("- ")]
    boxes = []
    for i, line in enumerate(tail):
        if m := ADMONITION.match(line):
            cls = tail[i + 1].removeprefix(":class:").strip() \
                if tail[i + 1].startswith(":class:") else ""
            boxes.append((m.group("title"), cls))
    return headings, bullets, boxes


@pytest.mark.parametrize("md", [c for c in CHAPTERS if c.stem not in WITHOUT_EXERCISES],
                         ids=lambda p: p.stem)
def test_chapter_ends_with_a_summary_and_exercises_with_hidden_solutions(md):
    text = md.read_text()
    assert "## Summary" in text.splitlines(), f"{md.name} has no '## Summary'"
    headings, bullets, boxes = chapter_end(text)
    assert headings == ["## Summary", "## Exercises"], \
        f"{md.name}: the chapter ends with Summary, then Exercises: {headings}"
    assert 3 <= len(bullets) <= 5, f"{md.name}: {len(bullets)} summary bullets"
    exercises = boxes[0::2]
    assert 3 <= len(exercises) <= 5 and len(boxes) == 2 * len(exercises), \
        f"{md.name}: 3-5 exercises, each followed by its solution: {boxes}"
    for n, ((title, _), (solution, cls)) in enumerate(zip(boxes[0::2], boxes[1::2]), 1):
        assert title.startswith(f"Exercise {n}: "), f"{md.name}: {title!r}"
        assert (solution, cls) == ("Solution", "dropdown"), \
            f"{md.name}: exercise {n}'s solution must be a dropdown, hidden until clicked"


def test_exercise_check_finds_a_missing_or_open_solution():
    ok = ("## Summary\n\n- a\n- b\n- c\n\n## Exercises\n\n"
          "```{admonition} Exercise 1: x\nq\n```\n\n"
          "```{admonition} Solution\n:class: dropdown\na\n```\n")
    assert chapter_end(ok)[2] == [("Exercise 1: x", ""), ("Solution", "dropdown")]
    shown = ok.replace(":class: dropdown\n", "")
    assert chapter_end(shown)[2][1] == ("Solution", "")


def test_every_chapter_is_in_the_toc():
    toc = (ROOT / "_toc.yml").read_text()
    for md in CHAPTERS:
        assert f"book/{md.stem}" in toc, f"{md.name} is not in _toc.yml"


def _reading_order() -> list[Path]:
    toc = (ROOT / "_toc.yml").read_text()
    stems = re.findall(r"^root: book/(\w+)|file: book/(\w+)", toc, re.M)
    return [ROOT / "book" / f"{a or b}.md" for a, b in stems]


def _code(md: Path) -> str:
    """The code a reader of a chapter sees: its code cells that the site
    shows (hidden as scripts/codelines.py tells them), and its python
    blocks (exercises and solutions)."""
    text = md.read_text()
    shown = ["\n".join(code) for hidden, code
             in load_script("codelines").cells(text) if not hidden]
    return "\n".join(shown + re.findall(r"^```python\n(.*?)^```$", text, re.S | re.M))


def _calls(cell: str, code: str) -> bool:
    """Whether `code` makes one of the calls a toolbox row names: `stats.f`
    is any call of f; `stats.f(x, 1 - 0.05 / k)` needs the text up to the
    last argument's `/` too (Bonferroni's level)."""
    for call in re.findall(r"`([^`]+)`", cell):
        name, _, args = call.partition("(")
        fragment = args.rsplit(",", 1)[-1].split("/")[0].strip() if "/" in args else ""
        if re.search(rf"\b{re.escape(name.split('.')[-1])}\(", code) and fragment in code:
            return True
    return False


def test_toolbox_table_links_the_page_where_each_tool_is_first_used():
    """The toolbox's "First used" column: for each row, the first page in
    reading order whose shown code makes one of the row's calls."""
    order = [md for md in _reading_order() if md.stem != "toolbox"]
    text = (ROOT / "book" / "toolbox.md").read_text()
    table = text[text.index("| Question | Tool |"):].split("\n\n")[0].splitlines()[2:]
    assert len(table) >= 10
    for row in table:
        _, tool, calls, first = [c.strip() for c in row.strip().strip("|").split("|")]
        linked = re.search(r"\]\((\w+)\.md\)", first).group(1)
        found = next(md.stem for md in order if _calls(calls, _code(md)))
        assert linked == found, f"toolbox: {tool} is first used on {found}, not {linked}"


def test_first_use_finder_tells_a_call_from_its_name_and_a_level():
    assert _calls("`stats.t_critical`", "t = t_critical(9)")
    assert not _calls("`stats.t_critical`", "from mnist_lib.stats import t_critical")
    bonferroni = "`stats.t_critical(df, 1 - 0.05 / k)`"
    assert not _calls(bonferroni, "t_critical(9)")
    assert _calls(bonferroni, "level = 1 - 0.05 / n\nt_critical(9, level)")


def test_chapters_install_cell_is_skipped_and_hidden():
    for md in CHAPTERS:
        text = md.read_text()
        if "```{code-cell}" not in text:
            continue
        first = text.split("```{code-cell}", 2)[1]
        assert "remove-cell" in first and "skip-execution" in first, md.name
        assert "pip" in first and "mnist_lib" in first, md.name


# Calls that only feed the text (values glued into it, a class's source shown
# as code) are machinery: hidden on the site, so that the code a reader sees
# is the code to learn from. Reading a record (`book.load_record`,
# `book.load_study`) is code a student writes too, and may be shown.
HELPER_CALL = re.compile(r"book\.(glue|glue_result|glue_arm|source)\(")


def _code_cells(text: str) -> list[tuple[int, str]]:
    """(line, body) of every code cell of a chapter, options included."""
    return [(text[:m.start()].count("\n") + 1, m.group(1))
            for m in re.finditer(r"```\{code-cell\}[^\n]*\n(.*?)\n```", text, re.S)]


def _visible_cells(text: str) -> list[tuple[int, str]]:
    """(line, code) of each code cell whose code the page shows."""
    cells = []
    for line, body in _code_cells(text):
        head = body.split("\n---\n", 1)[0] if body.startswith("---") else \
            "\n".join(l for l in body.splitlines() if l.startswith(":tags:"))
        if not re.search(r"remove-cell|remove-input|hide-input", head):
            cells.append((line, body))
    return cells


@pytest.mark.parametrize("md", CHAPTERS, ids=lambda p: p.stem)
def test_helper_calls_that_feed_the_text_are_hidden(md):
    found = [(line, call.group(0)) for line, body in _visible_cells(md.read_text())
             for call in HELPER_CALL.finditer(body)]
    assert not found, f"{md.name}: visible cells call {found}: hide them " \
                      "(remove-input, or a separate remove-cell cell)"


def test_visible_cells_are_told_from_hidden_ones():
    text = ("```{code-cell} ipython3\nbook.glue('a', 1)\n```\n"
            "```{code-cell} ipython3\n:tags: [remove-cell]\nbook.glue('b', 2)\n```\n"
            "```{code-cell} ipython3\n---\ntags: [remove-input]\n---\n"
            "book.source(f)\n```\n")
    assert [line for line, _ in _visible_cells(text)] == [1]


@pytest.mark.parametrize("md", STEP_CHAPTERS,
                         ids=lambda p: p.stem)
def test_a_step_chapter_hides_no_more_code_than_it_shows(md):
    """Counted as scripts/codelines.py counts: non-blank lines of code cells,
    hidden where tagged remove-cell or remove-input. Checks of recorded
    results belong in the tests (tests/test_records.py), not on the page."""
    hidden, visible = load_script("codelines").count(md.read_text())
    assert hidden <= visible, f"{md.name}: {hidden} hidden lines, {visible} shown"


def test_the_book_hides_no_more_code_than_it_shows():
    count = load_script("codelines").count
    hidden, visible = (sum(n) for n in zip(*(count(md.read_text())
                                             for md in CHAPTERS)))
    assert hidden <= visible, f"{hidden} hidden lines, {visible} shown"


def _prose_strings(code: str) -> list[str]:
    """The string constants of 6 words or more in `code`, but the messages of
    a `claim` or an `assert` (which a reader sees only when they fail):
    prose, if a hidden cell holds them."""
    import ast

    tree = ast.parse(code)
    messages = [arg for call in ast.walk(tree) if isinstance(call, ast.Call)
                and getattr(call.func, "attr", getattr(call.func, "id", "")) == "claim"
                for arg in call.args[1:]]
    messages += [a.msg for a in ast.walk(tree) if isinstance(a, ast.Assert) and a.msg]
    claims = {id(n) for arg in messages for n in ast.walk(arg)}
    return [n.value for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str)
            and id(n) not in claims and len(n.value.split()) >= 6]


@pytest.mark.parametrize("md", CHAPTERS, ids=lambda p: p.stem)
def test_no_hidden_cell_holds_a_sentence_of_prose(md):
    """Prose is written in Markdown, with numbers glued in; a sentence built
    in a hidden cell is a verdict picked by code, which nobody reads as
    written."""
    cells = load_script("codelines").cells(md.read_text())
    found = [s for hidden, code in cells if hidden
             for s in _prose_strings("\n".join(code))]
    assert not found, f"{md.name}: hidden cells hold prose {found}"


def test_prose_strings_are_found_and_claims_spared():
    code = ("book.glue('x', 'The ladder says this helps a great deal.')\n"
            "book.claim(a > b, 'the loss is lowest well before the end', 'e')\n"
            "book.glue('y', f'{v:.2f} points')\n")
    assert _prose_strings(code) == ["The ladder says this helps a great deal."]


def _bound_and_used(code: str) -> tuple[set[str], set[str]]:
    """The names a cell binds at its top level (assignments, loops, imports,
    defs) and the names it reads that nothing in the cell binds."""
    import ast
    import builtins

    tree = ast.parse(code)
    bound, local = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            bound.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            bound.add(node.name)
            if isinstance(node, ast.FunctionDef):
                local |= {a.arg for a in ast.walk(node.args) if isinstance(a, ast.arg)}
        elif isinstance(node, ast.Lambda):
            local |= {a.arg for a in ast.walk(node.args) if isinstance(a, ast.arg)}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound |= {(a.asname or a.name).split(".")[0] for a in node.names}
    used = {node.id for node in ast.walk(tree)
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)}
    return bound, used - bound - local - set(dir(builtins))


@pytest.mark.parametrize("md", CHAPTERS, ids=lambda p: p.stem)
def test_visible_code_uses_no_name_that_only_a_hidden_cell_defines(md):
    """A learner copies the code the page shows: a visible cell that reads a
    name only a hidden cell binds (a list of rungs, a chosen arm) fails with
    a NameError outside the notebook. Hidden cells may read visible names."""
    shown, hidden_only, leaks = set(), set(), []
    for hidden, code in load_script("codelines").cells(md.read_text()):
        bound, used = _bound_and_used("\n".join(code))
        if hidden:
            hidden_only |= bound - shown
        else:
            leaks += sorted(used & hidden_only - shown)
            shown |= bound
            hidden_only -= bound
    assert not leaks, f"{md.name}: visible code reads {leaks}, bound only in hidden cells"


def test_a_name_bound_only_in_a_hidden_cell_is_caught():
    import textwrap
    page = textwrap.dedent("""\
        ```{code-cell} ipython3
        :tags: [remove-cell]

        LAST4 = ("a", "b")
        ```

        ```{code-cell} ipython3
        print([n for n in LAST4])
        ```
        """)
    cells = load_script("codelines").cells(page)
    assert [h for h, _ in cells] == [True, False]
    bound, _ = _bound_and_used("\n".join(cells[0][1]))
    _, used = _bound_and_used("\n".join(cells[1][1]))
    assert "LAST4" in bound & used


@pytest.mark.parametrize("md", CHAPTERS, ids=lambda p: p.stem)
def test_concept_boxes_are_open(md):
    """A concept box carries the idea a chapter needs where it is first used:
    open on the page, not folded behind a click."""
    folded = re.findall(r"\{admonition\} (Concept:[^\n]*)\n:class: dropdown",
                        md.read_text())
    assert not folded, f"{md.name}: folded concept boxes {folded}"


# A step chapter is read in one sitting: its prose stays short; engineering
# detail lives in the appendix (scripts/wordcount.py says what is counted).
STEP_WORDS = 2500


@pytest.mark.parametrize("md", [c for c in CHAPTERS
                                if c.stem.startswith("step") or c.stem == "results"],
                         ids=lambda p: p.stem)
def test_step_chapters_and_results_draw_their_architecture(md):
    """Each step page and Results shows its model drawn from its RF table,
    with alt text saying what the picture shows."""
    import jupytext

    cells = [c for c in jupytext.read(md).cells if c.cell_type == "code"
             and "plots.architecture(" in c.source]
    assert cells, f"{md.name} draws no architecture (plots.architecture)"
    assert all(c.metadata.get("mystnb", {}).get("image", {}).get("alt")
               for c in cells), f"{md.name}: an architecture figure has no alt text"


@pytest.mark.parametrize("md", STEP_CHAPTERS,
                         ids=lambda p: p.stem)
def test_step_chapters_are_short(md):
    words = load_script("wordcount").prose_words(md.read_text())
    assert words <= STEP_WORDS, f"{md.name}: {words} words of prose"


def test_wordcount_counts_prose_and_not_code():
    count = load_script("wordcount").prose_words
    text = ("---\njupytext: x\n---\n# A title\n\nTwo words.\n\n"
            "```{code-cell} ipython3\nnot = counted + at(all)\n```\n\n"
            "````{admonition} Exercise 1: three\n:class: dropdown\nIn a box "
            "{glue:text}`value` here.\n\n```python\nno = 1\n```\n````\n")
    # "A title", "Two words.", "Exercise 1: three" (its title), "In a box X here."
    assert count(text) == 2 + 2 + 3 + 5


# The code box of a page shows 77 characters at 1280 px (684 px less 2 x 16 px
# padding, 8.43 px a character: measured in Chromium); longer lines scroll, and
# what scrolls out of view (an RF comment, a flag) goes unread. The browser
# test below checks what is rendered; this checks the source, without a build.
PAGE_WIDTH = 77
# Inside a box (an exercise, a solution, a concept) code has less room: a
# 75-character line ran 664 px in a 619-px box in the browser test.
BOX_WIDTH = 69


def _shown_code(md: Path, boxed: bool = False) -> list[str]:
    """The lines of a chapter's visible code: code cells not removed from the
    page, and fenced blocks (bash, python) shown as they are; with `boxed`,
    only the fenced blocks inside an admonition (an exercise, say)."""
    shown, block, hidden, options, box = [], None, False, False, None
    for line in md.read_text().splitlines():
        if block is None:
            if box is None and (m := re.match(r"(`{3,}|:{3,})\{admonition\}", line)):
                box = m.group(1)
            elif box is not None and line.strip() == box:
                box = None
            elif re.match(r"```(\{code-cell\}|bash\b|python\b|ipython\b)", line):
                block, hidden = [], False
        elif line == "---" and (options or not block):
            options = not options  # a cell's YAML options (metadata), not its code
        elif options or line.startswith(":tags:"):
            hidden |= "remove-cell" in line or "remove-input" in line
        elif line.startswith("```"):
            shown += [] if hidden or boxed != (box is not None) else block
            block = None
        else:
            block.append(line)
    return shown


def test_boxed_code_is_told_from_page_code(tmp_path):
    md = tmp_path / "a.md"
    md.write_text("```python\npage\n```\n\n````{admonition} Exercise 1: x\n"
                  "```python\nboxed\n```\n````\n\n```python\npage too\n```\n")
    assert _shown_code(md) == ["page", "page too"]
    assert _shown_code(md, boxed=True) == ["boxed"]


@pytest.mark.parametrize("md", CHAPTERS, ids=lambda p: p.stem)
def test_shown_code_fits_the_page(md):
    long = [l for l in _shown_code(md) if len(l) > PAGE_WIDTH]
    assert not long, f"{md.name}: lines over {PAGE_WIDTH} characters: {long}"
    long = [l for l in _shown_code(md, boxed=True) if len(l) > BOX_WIDTH]
    assert not long, f"{md.name}: lines in a box over {BOX_WIDTH} characters: {long}"


def test_model_sources_shown_in_the_book_fit_the_page():
    import inspect

    from mnist_lib.models import MODELS
    for name, cls in MODELS.items():
        long = [l for l in inspect.getsource(cls).splitlines() if len(l) > PAGE_WIDTH]
        assert not long, f"{name}: lines over {PAGE_WIDTH} characters: {long}"


def test_a_listed_source_starts_with_the_import_that_brings_it(capsys):
    """A student copies a listing shown in the book: its first line is the
    import that gives the same object, not a class that needs `conv_block`."""
    from mnist_lib import book
    from mnist_lib.models import Model_3
    from mnist_lib.plain import train

    for obj in (Model_3, train):
        shown = book.source(obj)
        text = shown.data if shown is not None else capsys.readouterr().out
        first = text.splitlines()[0]
        assert first.startswith("# from "), first
        scope: dict = {}
        exec(first.removeprefix("# "), scope)
        assert scope[obj.__name__] is obj


# ------------------------------------------------------------------ browser
def _site() -> Path | None:
    env = os.environ.get("BOOK_HTML")
    candidates = [Path(env)] if env else [ROOT / "_build/html",
                                          ROOT / "_build/quick/_build/html"]
    return next((p for p in candidates if (p / "index.html").exists()), None)


@pytest.fixture(scope="module")
def site():
    html = _site()
    if html is None:
        pytest.skip("no built book: run `make book-quick` (or set BOOK_HTML)")
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):  # no request log in the test output
            pass

    handler = functools.partial(Quiet, directory=str(html))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", html
    server.shutdown()


@pytest.fixture(scope="module")
def browser():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        unavailable("Chromium not found: `apt-get install chromium` (Debian; "
                    "scripts/ci_system_deps.sh tries it) enables the browser test")
    try:
        from playwright import sync_api
    except ImportError:
        unavailable("playwright is missing: `pip install -r requirements.txt` "
                    "installs it")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run",
            # Only the local site: a page's CDN script (MathJax) fails at once,
            # the same on every machine, instead of hanging on a network that
            # drops packets and typesetting some pages and not others.
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"])
        yield b
        b.close()


def _pages(html: Path) -> list[str]:
    return sorted(str(p.relative_to(html)) for p in (html / "book").glob("*.html"))


def _rendered_prose_words(page: Path) -> int:
    """The words a reader reads on a built page: the article's text, glued
    values included, without code cells (input and output), math, figures'
    images or the page's navigation."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(page.read_text(), "html.parser")
    article = soup.select_one("article") or soup
    for node in article.select("div.cell, div.highlight, .math, script, style, "
                               "a.headerlink, div.cell_output, img"):
        node.decompose()
    return len(re.findall(r"[A-Za-z0-9\u00C0-\u024F]+(?:['’.,:\-–×/][A-Za-z0-9]+)*",
                          article.get_text(" ")))


@pytest.mark.book
@pytest.mark.parametrize("stem", [c.stem for c in STEP_CHAPTERS])
def test_a_step_page_has_at_most_2500_words_as_rendered(site, stem):
    """Glued sentences count: the page is what a reader reads."""
    _, html = site
    words = _rendered_prose_words(html / "book" / f"{stem}.html")
    assert words <= STEP_WORDS, f"{stem}: {words} words as rendered"


@pytest.mark.book
def test_the_batchnorm_formula_renders_as_math(site):
    _, html = site
    from bs4 import BeautifulSoup

    soup = BeautifulSoup((html / "book" / "step2.html").read_text(), "html.parser")
    assert any("\\gamma" in m.get_text() and "\\beta" in m.get_text()
               for m in soup.select(".math"))
    assert not any(li.get_text().lstrip().startswith("+") for li in soup.select("li"))


@pytest.mark.book
def test_site_root_leads_to_the_introduction(site, browser):
    base, _ = site
    page = browser.new_page()
    page.goto(f"{base}/index.html")
    page.wait_for_url("**/book/intro.html", timeout=10_000)
    assert "step by step" in page.inner_text("main h1")
    page.close()


@pytest.mark.book
def test_every_chapter_renders_with_figures_and_tables(site, browser):
    base, html = site
    shots = os.environ.get("BOOK_SCREENSHOTS")
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    seen_rf = seen_summary = 0
    for rel in _pages(html):
        page.goto(f"{base}/{rel}", wait_until="load")
        assert page.locator("main h1").count() >= 1, f"{rel}: no title"
        sizes = page.eval_on_selector_all(
            "main img", "imgs => imgs.map(i => [i.src, i.naturalWidth, i.naturalHeight])")
        for src, w, h in sizes:
            assert w > 0 and h > 0, f"{rel}: image {src} did not load"
        text = page.inner_text("main")
        assert "Traceback" not in text, f"{rel}: a cell raised"
        assert "<Figure size" not in text, f"{rel}: a figure rendered as text"
        assert "%|" not in text, f"{rel}: a live progress bar was saved line by line"
        assert "{glue" not in text, f"{rel}: a glue role was not rendered"
        if page.locator("main table:has(th:text-is('r_out'))").count():
            seen_rf += 1
        # A summary folded behind a toggle (hide-output) is one click away.
        if "Total params" in page.locator("main").text_content():
            seen_summary += 1
        if rel.startswith("book/step"):
            assert len(sizes) >= 2, f"{rel}: {len(sizes)} figures"
            assert "Target" in text and "Result" in text and "Analysis" in text
        if shots:
            Path(shots).mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(Path(shots) / (Path(rel).stem + ".png")),
                            full_page=True)
    assert seen_rf >= 4 and seen_summary >= 3, (seen_rf, seen_summary)
    page.close()


@pytest.mark.book
def test_measured_values_are_bold_in_prose_but_not_in_tables(site, browser):
    """All cells of the results tables are measured: bold for all of them
    (myst-nb's default, undone by _static/tables.css) would hide the final
    model's row, the one the tables mark in bold."""
    base, _ = site
    page = browser.new_page()
    page.goto(f"{base}/book/results.html", wait_until="load")
    weights = page.eval_on_selector_all(
        "main span.pasted-text, main tbody strong",
        "els => els.map(e => [e.tagName, e.closest('table') !== null,"
        " Number(getComputedStyle(e).fontWeight)])")
    page.close()
    in_tables = [w for tag, table, w in weights if table and tag == "SPAN"]
    in_prose = [w for tag, table, w in weights if not table]
    marked = [w for tag, table, w in weights if tag == "STRONG"]
    assert in_tables and in_prose and marked
    assert max(in_tables) < 600 <= min(in_prose)
    assert min(marked) >= 600


@pytest.mark.book
def test_output_table_headers_align_with_their_columns(site, browser):
    """In every table a cell prints (RF tables, pandas frames), each column's
    cells align as its header does: a header over the other edge of its
    column reads as the label of the next one."""
    base, html = site
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    mixed, seen = [], 0
    for rel in _pages(html):
        page.goto(f"{base}/{rel}", wait_until="load")
        found = page.eval_on_selector_all("main div.cell_output table", """ts =>
            ts.map(t => {
              const side = e => ({start: "left", end: "right"})[
                getComputedStyle(e).textAlign] || getComputedStyle(e).textAlign;
              const head = t.tHead ? t.tHead.rows[0].cells : [];
              const bad = [];
              for (const row of t.tBodies[0].rows)
                for (const td of row.cells)
                  if (td.tagName === "TD" && head[td.cellIndex] &&
                      side(td) !== side(head[td.cellIndex]))
                    bad.push(head[td.cellIndex].innerText + ": header " +
                             side(head[td.cellIndex]) + ", cell " + side(td));
              return [...new Set(bad)];
            })""")
        seen += len(found)
        mixed += [f"{rel}: {b}" for bad in found for b in bad]
    page.close()
    assert seen >= 8, f"only {seen} output tables"
    assert not mixed, "\n".join(mixed)


@pytest.mark.book
def test_no_code_or_output_scrolls_sideways(site, browser):
    """At 1280 px no code box, output or table is wider than the page: what is
    cut off (the r_out column, the end of an error message) goes unread."""
    base, html = site
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    wide = []
    for rel in _pages(html):
        page.goto(f"{base}/{rel}", wait_until="load")
        wide += [f"{rel}: {tag} {width} px in {shown} px, starting {text!r}"
                 for tag, width, shown, text in page.eval_on_selector_all(
                     "main pre, main div.cell_output > div, main table",
                     "els => els.filter(e => e.scrollWidth > e.clientWidth + 1)"
                     ".map(e => [e.tagName, e.scrollWidth, e.clientWidth,"
                     " e.innerText.slice(0, 60)])")]
    page.close()
    assert not wide, "\n".join(wide)


@pytest.mark.book
def test_no_table_cell_is_cut_short(site):
    """pandas cuts a cell's text past 50 characters to '...' unless told
    otherwise: a table's reasons and descriptions must read in full."""
    _, html = site
    cut = [f"{rel}: {cell.strip()[:60]}" for rel in _pages(html)
           for cell in re.findall(r"<td[^>]*>([^<]*)</td>", (html / rel).read_text())
           if cell.strip().endswith("...")]
    assert not cut, "\n".join(cut)


@pytest.mark.book
def test_no_broken_internal_links(site):
    base, html = site
    no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    broken = []
    for rel in _pages(html) + ["index.html"]:
        text = (html / rel).read_text()
        for href in re.findall(r'href="([^"]+)"', text):
            if href.startswith(("http:", "https:", "mailto:", "javascript:", "data:")):
                continue
            url = urllib.parse.urljoin(f"{base}/{rel}", href)
            target, _, fragment = url.partition("#")
            try:  # straight to the local server, past any proxy set for the machine
                body = no_proxy.open(target, timeout=10).read().decode(
                    "utf-8", "replace")
            except Exception as err:
                broken.append(f"{rel}: {href} ({err})")
                continue
            if fragment and target.endswith(".html") and \
                    f'id="{urllib.parse.unquote(fragment)}"' not in body:
                broken.append(f"{rel}: {href} (no #{fragment})")
    assert not broken, "\n".join(broken)


@pytest.mark.book
def test_launch_buttons_point_at_main_and_ipynb(site):
    _, html = site
    text = (html / "book" / "step1.html").read_text()
    assert "colab.research.google.com/github/" in text
    colab = re.search(r'colab\.research\.google\.com/github/[^"]+', text).group(0)
    assert "/blob/main/book/step1.ipynb" in colab
    assert "mybinder.org" in text


@pytest.mark.book
def test_every_figure_says_what_it_shows(site):
    # Alt text is what a screen reader reads, and what shows where an image
    # does not load. Without it, Sphinx writes the image's file path there.
    # Figures get it from their cell's metadata (`mystnb: image: alt:`), and
    # those pasted into another page from _ext/pasted_alt.py.
    _, html = site
    missing, figures = [], 0
    for rel in _pages(html):
        for tag in re.findall(r"<img\b[^>]*>", (html / rel).read_text()):
            if "_images/" not in tag:  # the theme's logos, not figures
                continue
            figures += 1
            alt = re.search(r'\balt="([^"]*)"', tag)
            text = alt.group(1) if alt else ""
            if len(text.split()) < 4 or "_images/" in text or text.endswith(".png"):
                missing.append(f"{rel}: {tag[:100]}")
    assert figures >= 15, f"only {figures} figures found: is this the whole book?"
    assert not missing, "figures without alt text:\n" + "\n".join(missing)


# ------------------------------------------------------- the RF explorer
def _explorer(site, browser, **page_options):
    """A page open at the Receptive fields chapter, its explorer started."""
    base, _ = site
    page = browser.new_page(**page_options)
    page.goto(f"{base}/book/receptive_fields.html", wait_until="load")
    page.wait_for_function("window.rfExplorer && document.querySelector("
                           "'#rf-explorer .rf-table tbody tr')", timeout=10_000)
    return page


def _js_rows(page, layers, size):
    """rfExplorer.compute in the page: its rows, or {"error": message}."""
    return page.evaluate("""([layers, size]) => {
        try { return window.rfExplorer.compute(layers, size); }
        catch (err) { return {error: err.message}; }
    }""", [layers, size])


def _same_rows(js, rows, what):
    """The explorer's rows against the calculator's, n, j, r and start."""
    assert len(js) == len(rows), what
    for i, (mine, row) in enumerate(zip(js, rows)):
        assert (mine["n"], mine["j"], mine["r"], mine["global"]) == (
            row.n_out, row.j_out, row.r_out, row.global_out), f"{what}, layer {i + 1}"
        assert mine["start"] == pytest.approx(row.start_out), f"{what}, layer {i + 1}"


@pytest.mark.book
def test_rf_explorer_computes_what_the_calculator_does(site, browser):
    """The explorer's arithmetic (JavaScript) against mnist_lib.rf: on every
    preset, each layer's row as the calculator gives it for the model, and on
    random stacks of convolutions and pools."""
    import random

    import torch.nn as nn

    from mnist_lib.bench import ReferenceNet
    from mnist_lib.models import CANDIDATES, MODELS
    from mnist_lib.rf import receptive_field

    page = _explorer(site, browser)
    data = page.evaluate(
        "JSON.parse(document.getElementById('rf-presets').textContent)")
    nets = {name: cls() for name, cls in (MODELS | CANDIDATES).items()}
    nets["ReferenceNet"] = ReferenceNet()
    assert [p["name"] for p in data["presets"]] == list(nets) and not data["skipped"]
    assert data["size"] == 28 and len(data["digit"]["pixels"]) == 28
    for preset in data["presets"]:
        table = receptive_field(nets[preset["name"]], (1, 28, 28))
        rows = [table[layer["name"]] for layer in preset["layers"]]
        _same_rows(_js_rows(page, preset["layers"], 28), rows, preset["name"])

    rng, compared, vanished = random.Random(41), 0, 0
    for stack in range(50):
        layers, modules = [], []
        for _ in range(rng.randint(1, 6)):
            if rng.random() < 0.75:
                k, s, p, d = (rng.randint(1, 5), rng.randint(1, 2), rng.randint(0, 2),
                              rng.randint(1, 2))
                layers.append({"kind": "conv", "k": k, "s": s, "p": p, "d": d})
                modules.append(nn.Conv2d(1, 1, k, stride=s, padding=p, dilation=d))
            else:
                kind = rng.choice(["maxpool", "avgpool"])
                layers.append({"kind": kind, "k": 2, "s": 2, "p": 0})
                modules.append((nn.MaxPool2d if kind == "maxpool" else nn.AvgPool2d)(2))
        size = rng.choice([28, 28, 12, 7])
        js = _js_rows(page, layers, size)
        try:
            rows = receptive_field(nn.Sequential(*modules), (1, size, size)).rows
        except Exception as err:  # the map vanished: the explorer must say so too
            assert "error" in js, f"stack {stack}: {layers} at {size}: {err}"
            assert "does not fit" in js["error"], js
            vanished += 1
            continue
        assert "error" not in js, f"stack {stack}: {layers} at {size}: {js}"
        _same_rows(js, rows, f"stack {stack}: {layers} at {size}")
        compared += 1
    assert compared >= 30 and vanished >= 5, (compared, vanished)  # both paths
    page.close()


@pytest.mark.book
def test_rf_explorer_shows_each_preset_and_the_unit_picked(site, browser):
    page = _explorer(site, browser)
    root = page.locator("#rf-explorer")
    presets = page.evaluate(
        "JSON.parse(document.getElementById('rf-presets').textContent).presets")
    red = """() => {  // pixels of the RF box's red (#d62728)
        const c = document.querySelector('#rf-explorer canvas');
        const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 0; i < px.length; i += 4)
            if (px[i] > 200 && px[i + 1] < 60 && px[i + 2] < 60) n += 1;
        return n;
    }"""
    for preset in presets:
        root.get_by_label("Network").select_option(preset["name"])
        n = len(preset["layers"])
        assert root.locator(".rf-table tbody tr").count() == n + 1  # and the input
        assert root.locator(".rf-table tr.rf-selected").count() == 1
        assert root.locator("svg.rf-plot circle").count() == n + 1
        assert page.evaluate(red) > 50, f"{preset['name']}: no RF box drawn"
        label = root.locator("canvas").get_attribute("aria-label")
        assert label.startswith("The RF of ") and label in root.inner_text()
    # Model_4, layer 1 (3x3, stride 2, padding 1), unit (0, 0): a 3-pixel RF
    # centred on pixel 0, so one pixel of it is padding on each side.
    root.get_by_label("Network").select_option("Model_4")
    root.locator("#rf-layer").select_option("0")
    root.locator("#rf-row").fill("0")
    root.locator("#rf-row").dispatch_event("change")
    root.locator("#rf-col").fill("0")
    root.locator("#rf-col").dispatch_event("change")
    caption = root.locator("#rf-caption").inner_text()
    assert "unit (row 0, column 0) after layer 1" in caption
    assert "3×3 pixels, rows -1 to 1 and columns -1 to 1" in caption
    # Edit the layers: without the max-pool (layer 4) the jump stays 2, and
    # the RF before the global pooling is 19 (3, 7, 11, 11, 15, 19), not 29;
    # a window too large for its map is refused, naming the layer.
    root.locator("summary").click()
    root.get_by_label("remove layer 4").click()
    assert root.get_by_label("Network").input_value() == ""  # your own layers
    assert root.locator(".rf-table tbody tr").count() == 9
    assert "The RF to quote for this network: 19 px" in root.inner_text()
    kernel = root.get_by_label("layer 1: kernel size")
    kernel.fill("40")
    kernel.dispatch_event("change")
    alert = root.get_by_role("alert")
    assert alert.is_visible() and alert.inner_text().startswith("layer 1 (conv 40×40")
    page.close()


def without_javascript(site, browser, path: str):
    """The built site's page `path` opened with JavaScript off: (its browser
    context, to close; the page)."""
    base, _ = site
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(f"{base}/{path}", wait_until="load")
    return context, page


@pytest.mark.book
def test_rf_explorer_says_what_it_needs_without_javascript(site, browser):
    context, page = without_javascript(site, browser, "book/receptive_fields.html")
    note = page.locator("#rf-explorer .rf-fallback")
    assert note.is_visible() and "JavaScript" in note.inner_text()
    context.close()


@pytest.mark.book
def test_no_page_is_wider_than_a_phone(site, browser):
    """At 390 px (a phone) no page scrolls sideways, and nothing sticks out
    of it cut off: what is wide (a table, code) scrolls inside its own box."""
    base, html = site
    page = browser.new_page(viewport={"width": 390, "height": 844})
    wide = []
    for rel in _pages(html):
        page.goto(f"{base}/{rel}", wait_until="load")
        width = page.evaluate("document.documentElement.scrollWidth")
        if width > 390:
            wide.append(f"{rel}: {width} px wide")
        wide += [f"{rel}: cut off: {what}" for what in page.evaluate("""() =>
            [...document.querySelectorAll('.bd-main *')].filter(e => {
              const box = e.getBoundingClientRect();
              if (!box.width || box.right <= 391) return false;
              // A hidden drawer (the theme's table of contents) is not shown.
              if (!e.checkVisibility({visibilityProperty: true})) return false;
              for (let a = e.parentElement; a; a = a.parentElement)
                if (['auto', 'scroll'].includes(getComputedStyle(a).overflowX))
                  return false;  // it scrolls inside its own box
              return true;
            }).map(e => `${e.tagName}.${e.getAttribute('class')} ` +
                        `${(e.textContent || '').trim().slice(0, 40)}`)""")]
    page.close()
    assert not wide, "\n".join(wide)


def test_the_appendix_guide_to_the_rf_code_names_every_module():
    """rf_tool_more's "Reading the calculator's code" lists each module of
    mnist_lib/rf/ (a new one must be added to the guide)."""
    guide = (ROOT / "book" / "rf_tool_more.md").read_text()
    guide = guide[guide.index("## Reading the calculator's code"):]
    modules = sorted(p.name for p in (ROOT / "mnist_lib" / "rf").glob("*.py")
                     if p.name != "__init__.py")
    missing = [m for m in modules if f"`{m}`" not in guide]
    assert not missing, f"not in rf_tool_more's guide to the code: {missing}"


@pytest.mark.parametrize("md", CHAPTERS, ids=lambda p: p.stem)
def test_no_cell_hides_a_library_figure_behind_a_semicolon(md):
    """`mnist_lib.plots` builds its figures without pyplot, so a cell shows
    one only as its value: a trailing `;` after a `plots.` call hides it
    from the page (rf_tool_more lost its effective-RF figure that way)."""
    hidden = []
    for _, body in _code_cells(md.read_text()):
        lines = [l for l in body.splitlines() if l.strip()]
        if not lines or not lines[-1].rstrip().endswith(";"):
            continue
        # The statement the last line ends: back to its first line.
        start = len(lines) - 1
        while start and lines[start][:1] in (" ", ")"):
            start -= 1
        if re.match(r"(\w+ = )?plots\.\w+\(", lines[start]):
            hidden.append(lines[start])
    assert not hidden, f"{md.name}: a library figure hidden by ';': {hidden}"
