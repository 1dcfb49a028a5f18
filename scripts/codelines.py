"""Count a MyST chapter's lines of code: those a reader sees and those the
site hides (cells tagged remove-cell or remove-input), non-blank lines of
code cells only.

Usage: python scripts/codelines.py book/*.md   (hidden and visible, a line each)
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

CELL = re.compile(r"^```\{code-cell\}[^\n]*\n(.*?)^```$", re.S | re.M)
HIDDEN_TAGS = ("remove-cell", "remove-input")


def cells(text: str) -> list[tuple[bool, list[str]]]:
    """Each code cell of a chapter: whether the site hides it, and its
    non-blank code lines (its options, `:tags:` or a `---` block, left out)."""
    out = []
    for body in CELL.findall(text):
        lines = body.splitlines()
        options: list[str] = []
        if lines and lines[0] == "---":  # a YAML block of options
            end = lines.index("---", 1)
            options, lines = lines[1:end], lines[end + 1:]
        while lines and lines[0].startswith(":"):  # :tags: [...]
            options.append(lines.pop(0))
        hidden = any(tag in line for line in options for tag in HIDDEN_TAGS)
        out.append((hidden, [line for line in lines if line.strip()]))
    return out


def count(text: str) -> tuple[int, int]:
    """(hidden, visible) non-blank code lines of a chapter."""
    hidden = sum(len(code) for h, code in cells(text) if h)
    visible = sum(len(code) for h, code in cells(text) if not h)
    return hidden, visible


if __name__ == "__main__":
    total = [0, 0]
    for name in sys.argv[1:]:
        h, v = count(Path(name).read_text())
        total[0] += h
        total[1] += v
        print(f"{name}: hidden {h}, visible {v}")
    print(f"all: hidden {total[0]}, visible {total[1]}")
