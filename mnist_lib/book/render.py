"""`glue`, and a Result block shown with this run's values where myst-nb is
absent (`show`).

Where myst-nb is absent (Colab, Binder, plain Jupyter), `glue` keeps each
value in `GLUED`, and `show` displays a chapter's Result block with those
values filled in: the `.ipynb` twins (`scripts/twins.py`) turn every Markdown
cell that holds a `{glue:text}` role into a call of `show`.
"""

from __future__ import annotations

import re
from typing import Any

# Every value glued in this kernel, by name: what `show` fills Markdown from.
GLUED: dict[str, Any] = {}
# Blocks that `show` displayed before all their values were glued: (display
# handle, Markdown). `glue` fills them in as the values arrive.
_PENDING: list[tuple[Any, str]] = []
# {glue:text}`name` or {glue:text}`name:format`, as myst-nb writes them.
GLUE_ROLE = re.compile(r"\{glue:text\}`([^`:]+)(?::([^`]*))?`")


def glue(name: str, value: Any, display: bool = False) -> None:
    """myst-nb's `glue` where it exists (the book build); elsewhere, show the
    value if `display` is set. Either way the value is kept in `GLUED`, and
    any block that `show` displayed while waiting for it is filled in.

    NumPy and torch scalars are turned into plain Python numbers first: glue
    cannot format them. Returns None, so that a cell ending in `glue(...)`
    does not display the value a second time.
    """
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        value = value.item()
    GLUED[name] = value
    _update_pending(name)
    try:
        from myst_nb import glue as _glue
    except ImportError:  # Colab, Binder, plain Jupyter
        if display:
            from IPython.display import display as show

            show(value)
        return None
    _glue(name, value, display=display)
    return None


def fill(markdown: str) -> tuple[str, list[str]]:
    """`markdown` with each `{glue:text}` role replaced by its value from
    `GLUED` (formatted as the role says), and the names not glued yet, whose
    roles become "…"."""
    missing: list[str] = []

    def value(match: re.Match) -> str:
        name, spec = match.group(1), match.group(2) or ""
        if name not in GLUED:
            missing.append(name)
            return "…"
        try:
            return format(GLUED[name], spec)
        except (TypeError, ValueError):  # e.g. ":s" on a number
            return str(GLUED[name])

    return GLUE_ROLE.sub(value, markdown), missing


def _rendered(markdown: str) -> tuple[Any, list[str]]:
    from IPython.display import Markdown

    text, missing = fill(markdown)
    if missing:
        text += ("\n\n*(… : not computed yet; the cells below fill it in: "
                 f"{', '.join(missing)})*")
    return Markdown(text), missing


def show(markdown: str) -> None:
    """Display a chapter's Markdown with its `{glue:text}` values filled in
    from this kernel's run: how Colab and Jupyter, which have no myst-nb,
    show a Result block. A value that a later cell glues shows as "…" until
    that cell runs, and is then filled in where it stands."""
    from IPython.display import display

    rendered, missing = _rendered(markdown)
    handle = display(rendered, display_id=True)
    if missing and handle is not None:
        _PENDING.append((handle, markdown))


def _update_pending(name: str) -> None:
    """Fill in the blocks `show` displayed while waiting for `name`."""
    for entry in list(_PENDING):
        handle, markdown = entry
        if f"`{name}`" in markdown or f"`{name}:" in markdown:
            rendered, missing = _rendered(markdown)
            handle.update(rendered)
            if not missing:
                _PENDING.remove(entry)


def source(obj: Any):
    """A class's or function's source, highlighted in notebooks (printed
    elsewhere), under the import that brings it into a student's own code:
    the listing alone uses its module's other names (`conv_block`, `F`)."""
    import inspect

    text = f"# from {obj.__module__} import {obj.__name__}\n{inspect.getsource(obj)}"
    try:
        from IPython.display import Code
    except ImportError:
        print(text)
        return None
    return Code(text, language="python")
