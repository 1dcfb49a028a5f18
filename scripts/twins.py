"""Write the Colab twins of the chapters: book/NAME.ipynb from book/NAME.md.

The `.md` chapters are the one source. Colab and Jupyter read the `.ipynb`
twins, and render plain Markdown only, so each twin's Markdown is rewritten:

- an admonition (```{admonition} Result) becomes a block quote under a bold title;
  one with `:class: dropdown` (a solution, a concept box) becomes an HTML
  <details> block, folded to its title as on the site;
- a link to a chapter (`step1.md`) opens that chapter's twin in Colab, and a
  `{ref}` becomes such a link;
- a Markdown cell is cut into blocks (a heading and its text; each directive,
  such as an exercise or its solution, alone), each a cell of its own;
- a `{glue:text}` role of this chapter needs this run's numbers, which only the
  kernel has: its block becomes a code cell that calls `book.show`,
  placed after the cell that imports `book`, shown in Colab as a form (title
  and output, code folded);
- a value or figure glued in another chapter shows as "—", with a line saying
  where it comes from;
- a code cell hidden on the site (`remove-cell`: the checks of the text's
  claims, the values it glues) runs in Colab too, folded to a title.

A MyST construct that this does not know is refused with its file and line,
never passed through to show as raw text. Cell ids are derived from the cell's
place and text, so that the same chapter gives the same twin.

Usage: python scripts/twins.py [--check] book/*.md   (`make sync` writes them;
--check exits 1 naming the twins that differ)
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
from pathlib import Path

import jupytext
import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from mnist_lib.book import BRANCH, GLUE_ROLE, REPOSITORY  # noqa: E402

DIRECTIVE = re.compile(r"^(?P<fence>`{3,}|:{3,})\{(?P<name>[\w:-]+)\}\s*(?P<arg>.*)$")
ROLE = re.compile(r"\{(?P<name>[\w:-]+)\}`(?P<body>[^`]*)`")
LINK = re.compile(r"\]\((?P<stem>[\w-]+)\.md(?P<anchor>#[\w-]*)?\)")
LABEL_LINK = re.compile(r"(?P<text>\[[^\]]*\])\((?P<label>[\w-]+)\)")
LABEL = re.compile(r"^\((?P<label>[\w-]+)\)=\s*$")
HEADING = re.compile(r"^#+\s+(?P<title>.+)$")
CODE = re.compile(r"^(?P<fence>`{3,})(?!\{)")  # a plain code block's fence
ADMONITIONS = {"admonition", "note", "tip", "important", "warning", "seealso"}
FORM = '#@title {title} {{ display-mode: "form" }}'
CHECKS = FORM.format(title="Checks and values behind the text (hidden on the site)")


class TwinError(ValueError):
    """A construct in a chapter that the twin cannot show as it should."""


def colab_url(stem: str) -> str:
    """The chapter's twin, opened in Colab from the book's repository."""
    owner_repo = REPOSITORY.removeprefix("https://github.com/")
    return (f"https://colab.research.google.com/github/{owner_repo}/blob/"
            f"{BRANCH}/book/{stem}.ipynb")


def labels(book: Path) -> dict[str, tuple[str, str]]:
    """Every `(label)=` in the chapters: label -> (chapter, heading it marks)."""
    found = {}
    for md in sorted(book.glob("*.md")):
        lines = md.read_text().splitlines()
        for i, line in enumerate(lines):
            if m := LABEL.match(line):
                heading = next((HEADING.match(l) for l in lines[i + 1:] if l.strip()),
                               None)
                title = heading.group("title") if heading else m.group("label")
                found[m.group("label")] = (md.stem, title)
    return found


def fence_end(lines: list[str], i: int) -> int | None:
    """The index of the line that closes the fence opened at lines[i] (a
    directive's, or a plain code block's), or None if nothing closes it."""
    fence = (DIRECTIVE.match(lines[i]) or CODE.match(lines[i])).group("fence")
    return next((j for j in range(i + 1, len(lines)) if lines[j].strip() == fence),
                None)


class Converter:
    """Turns one chapter's MyST Markdown into what Colab renders."""

    def __init__(self, md: Path, refs: dict[str, tuple[str, str]]) -> None:
        self.md, self.refs = md, refs
        self.foreign: set[str] = set()  # chapters whose glued values show as —

    def fail(self, what: str) -> TwinError:
        return TwinError(f"{self.md.name}: {what}; scripts/twins.py cannot show it "
                         "in Colab: write it with what the twins support (see the "
                         "docstring) or teach scripts/twins.py")

    def inline(self, line: str) -> str:
        def role(m: re.Match) -> str:
            name, body = m.group("name"), m.group("body")
            if name == "glue:text":
                if "::" not in body:
                    return m.group(0)  # this chapter's value: filled at run time
                self.foreign.add(body.split("::")[0].removesuffix(".md"))
                return "—"
            if name == "ref":
                text, _, label = body.rpartition("<")
                label = label.rstrip(">") if text else body
                if label not in self.refs:
                    raise self.fail(f"{{ref}} to an unknown label {label!r}")
                stem, title = self.refs[label]
                return f"[{text.strip() or title}]({colab_url(stem)})"
            raise self.fail(f"the role {{{name}}}")

        def to_label(m: re.Match) -> str:
            text, label = m.group("text"), m.group("label")
            if label not in self.refs:
                raise self.fail(f"a link to {label!r}, neither a page nor a label")
            stem = self.refs[label][0]
            # Colab opens no anchor: within the chapter the words are enough.
            return text[1:-1] if stem == self.md.stem else f"{text}({colab_url(stem)})"

        line = ROLE.sub(role, line)
        line = LINK.sub(lambda m: f"]({colab_url(m.group('stem'))})", line)
        return LABEL_LINK.sub(to_label, line)

    def convert(self, lines: list[str]) -> list[str]:
        out: list[str] = []
        i = 0
        while i < len(lines):
            line = lines[i]
            if LABEL.match(line):  # a target for {ref}: nothing to show
                i += 1
                continue
            m = DIRECTIVE.match(line)
            if not (m or CODE.match(line)):
                out.append(self.inline(line))
                i += 1
                continue
            end = fence_end(lines, i)
            if end is None:
                what = f"{{{m.group('name')}}}" if m else "a code block"
                raise self.fail(f"line {i + 1}: {what} is never closed")
            if not m:  # a plain code block: kept as it is
                out += lines[i:end + 1]
                i = end + 1
                continue
            name, arg = m.group("name"), m.group("arg")
            body = lines[i + 1:end]
            options = {}
            while body and body[0].startswith(":"):
                key, _, value = body.pop(0)[1:].partition(":")
                options[key] = value.strip()
            if name in ADMONITIONS and "dropdown" in options.get("class", "").split():
                title = arg if name == "admonition" else name.capitalize()
                # Blank lines around the body: Jupyter and Colab then render
                # the Markdown inside the HTML block.
                out += ["<details>", f"<summary><b>{self.inline(title)}</b></summary>",
                        "", *self.convert(body), "", "</details>"]
            elif name in ADMONITIONS:
                title = arg if name == "admonition" else name.capitalize()
                out.append(f"> **{self.inline(title)}**")
                out.append(">")
                out += [f"> {l}" if l else ">" for l in self.convert(body)]
            elif name == "glue" and "doc" in options:
                stem = options["doc"].removesuffix(".md")
                out.append(f"*(A figure from [{stem}]({colab_url(stem)}): run "
                           "that chapter to see it.)*")
            else:
                raise self.fail(f"line {i + 1}: the directive {{{name}}}")
            i = end + 1
        return out

    def markdown(self, source: str) -> str:
        text = "\n".join(self.convert(source.splitlines()))
        if self.foreign:
            chapters = ", ".join(f"[{s}]({colab_url(s)})" for s in sorted(self.foreign))
            text += (f"\n\n*— : a number from another chapter's run ({chapters}); "
                     "run that chapter to see yours.*")
            self.foreign.clear()
        return text


def blocks(source: str) -> list[str]:
    """A Markdown cell's source cut into the parts a learner reads one at a
    time: each heading with the text under it, and each top-level directive
    (an exercise, its solution, a Result) on its own, so that one glued
    value turns only its own block into a show cell."""
    lines = source.splitlines()
    parts: list[list[str]] = [[]]
    i = 0
    while i < len(lines):
        line = lines[i]
        m = DIRECTIVE.match(line)
        if not (m or CODE.match(line)):
            if HEADING.match(line) and any(l.strip() for l in parts[-1]):
                parts.append([])
            parts[-1].append(line)
            i += 1
            continue
        end = fence_end(lines, i)
        if end is None:  # never closed: Converter.convert says so
            end = len(lines) - 1
        if m and any(l.strip() for l in parts[-1]):
            parts.append([])
        parts[-1] += lines[i:end + 1]
        if m:
            parts.append([])
        i = end + 1
    return [text for part in parts if (text := "\n".join(part).strip("\n")).strip()]


def imports_book(cell: nbformat.NotebookNode) -> bool:
    return cell.cell_type == "code" and re.search(
        r"^from mnist_lib import .*\bbook\b", cell.source, re.M) is not None


def show_cell(text: str) -> nbformat.NotebookNode:
    """A code cell that shows `text` with this run's numbers (`book.show`)."""
    if '"""' in text:
        raise TwinError('a Markdown cell with """ cannot become a show cell: '
                        f"{text[:60]}")
    titles = re.findall(r"^(?:> \*\*|<summary><b>)(.+?)(?:\*\*|</b></summary>)$",
                        text, re.M)
    heading = (f"{' and '.join(titles)}, with this run's numbers" if titles
               else "With this run's numbers")
    source = "\n".join([FORM.format(title=heading), f'book.show(r"""\n{text}\n""")'])
    return nbformat.v4.new_code_cell(source, metadata={"cellView": "form"})


def twin(md: Path, refs: dict[str, tuple[str, str]] | None = None) -> str:
    """The twin of chapter `md`, as the JSON text to write."""
    refs = labels(md.parent) if refs is None else refs
    nb = jupytext.read(md)
    conv = Converter(md, refs)
    cells, waiting = [], []  # show cells that must wait for `book`'s import
    have_book = False
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for text in map(conv.markdown, blocks(cell.source)):
                text = text.strip("\n")
                if not text.strip():  # a label alone: nothing to show
                    continue
                if not GLUE_ROLE.search(text):
                    # Behind a waiting show cell, text waits too: the order stays.
                    (waiting if waiting else cells).append(
                        nbformat.v4.new_markdown_cell(text))
                    continue
                lines = text.splitlines()
                if HEADING.match(lines[0]):  # the title stays where it is
                    (waiting if waiting else cells).append(
                        nbformat.v4.new_markdown_cell(lines[0]))
                    text = "\n".join(lines[1:]).strip("\n")
                (cells if have_book else waiting).append(show_cell(text))
            continue
        new = nbformat.v4.new_code_cell(cell.source, metadata=dict(cell.metadata))
        tags = cell.metadata.get("tags", [])
        if "remove-cell" in tags and "skip-execution" not in tags:
            # Hidden on the site, it still runs in Colab: folded to a title.
            new.source = f"{CHECKS}\n{cell.source}"
            new.metadata["cellView"] = "form"
        cells.append(new)
        if imports_book(cell) and not have_book:
            have_book = True
            cells += waiting
            waiting = []
    if waiting:
        raise TwinError(f"{md.name}: glued values shown, but no cell imports "
                        "`book` (from mnist_lib import book)")
    for i, cell in enumerate(cells):
        digest = hashlib.sha1(f"{i}\n{cell.source}".encode()).hexdigest()
        cell.id = digest[:8]
    out = nbformat.v4.new_notebook(cells=cells, metadata={
        "kernelspec": dict(nb.metadata["kernelspec"]),
        "language_info": {"name": "python"},
    })
    nbformat.validate(out)
    return nbformat.writes(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python scripts/twins.py",
                                description="Write the chapters' .ipynb twins.")
    p.add_argument("chapters", nargs="+", type=Path, help="book/*.md")
    p.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 if a twin differs")
    args = p.parse_args(argv)
    stale = []
    for md in args.chapters:
        try:
            text = twin(md)
        except TwinError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        path = md.with_suffix(".ipynb")
        if path.exists() and path.read_text() == text:
            continue
        stale.append(path)
        if not args.check:
            tmp = path.with_suffix(".ipynb.tmp")
            tmp.write_text(text)
            tmp.replace(path)
            print(f"wrote {path}")
    if args.check and stale:
        print("out of date: " + ", ".join(map(str, stale)) + ": run `make sync`",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
