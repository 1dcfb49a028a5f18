"""Count the words of prose in a MyST chapter: what a reader reads, not code.

Counted: headings, paragraphs, lists, table cells, and the text inside
admonitions (Target, Result, concept boxes, exercises, solutions). Not
counted: the front matter, code cells, code blocks, `{glue}` figures,
directive options (`:class: tip`) and label lines (`(ablation)=`). A role
(`{glue:text}`name``, `{ref}`...``) and inline code count as one word each,
as a number or a name does on the page.

Usage: python scripts/wordcount.py book/step1.md ...   (one count a line)
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

FENCE = re.compile(r"^(?P<fence>`{3,}|:{3,})\s*(?P<info>.*)$")
WORD = re.compile(r"[A-Za-z0-9\u00C0-\u024F]+(?:['’.,:\-–×/][A-Za-z0-9]+)*")
# Fences whose content is code or output, never prose.
CODE_DIRECTIVES = ("{code-cell}", "{glue}", "{math}")


def prose_words(text: str) -> int:
    """The number of words of prose in a MyST Markdown chapter."""
    text = re.sub(r"\A---\n.*?\n---\n", "", text, flags=re.S)
    kept, stack = [], []  # stack: (fence, is_code) of the open fences
    for line in text.splitlines():
        m = FENCE.match(line.strip())
        top = stack[-1] if stack else None
        if (m and top and m["fence"][0] == top[0][0]
                and len(m["fence"]) >= len(top[0]) and not m["info"]):
            stack.pop()  # a bare fence as long as the open one closes it
            continue
        if top and top[1]:
            continue  # inside code
        if m:
            info = m["info"]
            code = not info.startswith("{") or info.startswith(CODE_DIRECTIVES)
            stack.append((m["fence"], code))
            if not code:  # an admonition's title is prose: "Exercise 1: ..."
                kept.append(info.split("}", 1)[1])
            continue
        if re.match(r"^\s*:[\w-]+:", line) or re.match(r"^\(\S+\)=\s*$", line):
            continue  # a directive's option, a label
        kept.append(line)
    prose = "\n".join(kept)
    prose = re.sub(r"\{[\w:-]+\}`[^`]*`", " ROLE ", prose)  # a role: one word
    prose = re.sub(r"`[^`]+`", " CODE ", prose)             # inline code: one word
    prose = re.sub(r"<!--.*?-->", " ", prose, flags=re.S)
    return len(WORD.findall(prose))


def main(argv: list[str]) -> int:
    for name in argv:
        print(f"{prose_words(Path(name).read_text()):>6}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
