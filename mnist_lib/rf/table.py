"""The table `mnist_lib.rf.receptive_field` returns: one `RFRow` an op, in
forward order, gathered in an `RFTable` that prints as text, Markdown, a
pandas DataFrame or records, as HTML in a notebook, and plots the RF's growth.
Its headline is the trunk's RF: the RF of the last map before the global
pooling, the number papers quote."""

from __future__ import annotations

import html
import textwrap
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Sequence


@dataclass
class RFRow:
    """One op of the model, in forward order. Spatial values: int, or (h, w)."""

    name: str
    kind: str
    kernel: Any = None
    stride: Any = None
    padding: Any = None
    dilation: Any = None
    n_in: Any = None
    n_out: Any = None
    j_in: Any = None
    j_out: Any = None
    r_in: Any = None
    r_out: Any = None
    start_in: Any = None
    start_out: Any = None
    ch_in: int | None = None
    ch_out: int | None = None
    params: int = 0
    activation: int | None = None   # output values per example (C * H * W)
    exceeds_input: bool = False     # RF larger than the input image
    spatial: bool = True            # False for ops that leave RF and jump unchanged
    # Global: each unit depends on a whole map (after a global pooling, a
    # Linear over the map, an SE gate); r_in / r_out then hold the RF of the
    # convolutional path without those operations, and the table says "global".
    global_in: bool = False
    global_out: bool = False


# The columns students know from RF write-ups, in the order of the recurrence.
COLUMNS = ["name", "kind", "n_in", "ch_in", "ch_out", "padding", "kernel", "stride",
           "n_out", "j_in", "j_out", "r_in", "r_out", "start_out"]
# What a notebook shows of the table: the layer's window (kernel, stride,
# padding), then size, jump and RF in and out, the recurrence to read row by row.
# Fewer columns than COLUMNS, so that the table fits a book page unscrolled.
# (n_in is left out: it is the n_out of the row above.)
SHOWN = ["name", "kind", "kernel", "stride", "padding", "n_out", "ch_out",
         "j_in", "j_out", "r_in", "r_out", "start_out"]
# What the columns mean, printed under the table.
LEGEND = ("n: map size; j: jump, input pixels between neighbouring units; "
          "r: receptive field, in input pixels; start: centre of the first unit "
          "(pixel i spans [i, i+1]); _in / _out: before / after the op. "
          "global (r): each unit depends on every unit of a map (after a global "
          "pooling, a squeeze-and-excitation gate), so on all the input that map "
          "sees; r is the RF of the convolutional path alone.")


_WORDS = ("name", "kind")  # the columns that hold words, not numbers


def check_columns(columns: Sequence[str]) -> list[str]:
    """`columns` as a list, after checking that each names a field of `RFRow`."""
    known = [f.name for f in fields(RFRow)]
    unknown = [c for c in columns if c not in known]
    if unknown or not columns:
        named = ", ".join(map(repr, unknown)) or "(none given)"
        raise ValueError(f"unknown column(s) {named}; choose from {', '.join(known)}")
    return list(columns)


def trunk_of(rows: Sequence[RFRow], final: RFRow) -> RFRow:
    """The row whose RF a paper quotes for a network: the output (`final`) when
    it is not global; else the last op before it that gives a map of more than
    one unit, the last map before the global pooling (resnet18: 435 px on a
    7x7 map, not the 627 px that the pooling's window spans at 224x224)."""
    end = rows.index(final)
    if not final.global_out:
        # The op that made the output's map: back over the ops after it that
        # keep its size and RF (Model_1's flatten and log_softmax).
        while end > 0 and (rows[end - 1].n_out, rows[end - 1].r_out) == (
                final.n_out, final.r_out):
            end -= 1
        return rows[end]
    maps = [r for r in rows[:end + 1] if r.spatial and r.n_out not in (None, 1)]
    return maps[-1] if maps else final


@dataclass
class RFTable:
    """The result of `receptive_field`: `rows` in forward order, `final` = the
    output's row, `trunk` = the row of the RF to quote (`trunk_of`)."""

    rows: list[RFRow]
    input_size: tuple[int, int, int]
    final: RFRow = field(init=False)
    trunk: RFRow = field(init=False)

    def __post_init__(self) -> None:
        self.set_final(self.rows[-1])

    def set_final(self, row: RFRow) -> None:
        """Make `row` the output's row (and find the trunk before it)."""
        self.final = row
        self.trunk = trunk_of(self.rows, row)

    @property
    def first_global(self) -> RFRow | None:
        """The first op from which every unit sees a whole map, if any."""
        return next((r for r in self.rows if r.global_out and not r.global_in), None)

    @property
    def headline(self) -> str:
        """The RF in one line: the trunk's RF and jump, and where it turns global,
        e.g. "RF 29 px, jump 4 px, at 'block2.1.0' (map 3x3); global from 'gap'
        (AdaptiveAvgPool2d) on"."""
        t, g = self.trunk, self.first_global
        size = _size(self.input_size[1:])
        big = f" (more than the {size} input)" if t.exceeds_input else ""
        jump = ("" if t.j_out is None else ", jump uneven" if t.j_out == "uneven"
                else f", jump {fmt_cell(t.j_out)} px")
        where = f"at {t.name!r}" + (f" (map {_size(t.n_out)})" if t.n_out != 1 else "")
        rf = f"RF {fmt_cell(t.r_out)} px{big}{jump}, {where}"
        if g is None:
            return rf
        if t.global_out:  # a gate before the trunk's end: the trunk itself is global
            return (f"RF global from {g.name!r} ({g.kind}) on; without the global "
                    f"ops, {rf}")
        return f"{rf}; global from {g.name!r} ({g.kind}) on"

    def __getitem__(self, name: str) -> RFRow:
        """The row of the op called `name` (e.g. `table["block1.0.0"]`)."""
        for row in self.rows:
            if row.name == name:
                return row
        raise KeyError(f"no op named {name!r}; names: {[r.name for r in self.rows]}")

    def layers(self, all_ops: bool = False) -> list[RFRow]:
        """Rows that change n, j or r (convs, pools, linears, merges), or all rows."""
        return [r for r in self.rows if all_ops or r.spatial or r is self.final]

    def to_frame(self, all_ops: bool = False, columns: Sequence[str] = COLUMNS):
        """A pandas DataFrame with the columns students know from RF write-ups."""
        import pandas as pd

        columns = check_columns(columns)
        # A global RF reads "global (r)", never a bare number.
        records = [{c: cell_value(r, c) for c in columns} for r in self.layers(all_ops)]
        # dtype=object keeps 3 as 3: a numeric column with a gap would be float.
        frame = pd.DataFrame(records, columns=list(columns), dtype=object)
        return frame.where(frame.notna(), "")

    def _cells(self, all_ops: bool, columns: Sequence[str]
               ) -> tuple[list[str], list[list[str]]]:
        """The checked column names, and each row's cells as text."""
        columns = check_columns(columns)
        return columns, [[cell_text(r, c) for c in columns]
                         for r in self.layers(all_ops)]

    def to_markdown(self, all_ops: bool = False, columns: Sequence[str] = COLUMNS
                    ) -> str:
        """A GitHub-flavoured Markdown table."""
        columns, rows = self._cells(all_ops, columns)
        head = "| " + " | ".join(columns) + " |"
        rule = "|" + "|".join("---" for _ in columns) + "|"
        return "\n".join([head, rule] + ["| " + " | ".join(r) + " |" for r in rows])

    def to_text(self, all_ops: bool = False, columns: Sequence[str] = COLUMNS) -> str:
        """An aligned plain-text table."""
        columns, rows = self._cells(all_ops, columns)
        widths = [max(len(c), *(len(r[i]) for r in rows))
                  for i, c in enumerate(columns)]
        left = [c in _WORDS for c in columns]  # names read best left-aligned

        def line(cells: list[str]) -> str:
            return "  ".join(c.ljust(w) if lt else c.rjust(w)
                             for c, w, lt in zip(cells, widths, left)).rstrip()

        return "\n".join([line(columns)] + [line(r) for r in rows])

    def to_records(self, all_ops: bool = True, columns: Sequence[str] | None = None
                   ) -> list[dict[str, Any]]:
        """One dict a row: every field of `RFTable`'s rows, or only `columns`
        (with `global_in` / `global_out` beside any RF column, so that a global
        RF never reads as a plain number)."""
        keep = check_columns(columns) if columns is not None else None
        if keep is not None:
            keep += [f"global_{side}" for side in ("in", "out") if f"r_{side}" in keep
                     and f"global_{side}" not in keep]
        return [{k: v for k, v in asdict(r).items() if keep is None or k in keep}
                for r in self.layers(all_ops)]

    def _repr_html_(self) -> str:
        # Names left, numbers right, each header over its column. Inline styles,
        # so it looks the same in Jupyter, Colab and the book; the class gives it
        # the look those give a pandas table (rules between cells, striped rows).
        # A smaller font too: at full size the last columns (RF) scroll out of view.
        columns, rows = self._cells(False, SHOWN)

        def cell(tag: str, column: str, text: str) -> str:
            align = "left" if column in _WORDS else "right"
            return (f'<{tag} style="text-align: {align}; padding: 0.1em 0.2em">'
                    f"{html.escape(text)}</{tag}>")

        head = "".join(cell("th", c, c) for c in columns)
        body = "".join("<tr>" + "".join(cell("td", c, v) for c, v in zip(columns, r))
                       + "</tr>" for r in rows)
        notes = "".join(f"<p style=\"margin: 0.2em 0\">{html.escape(t)}</p>"
                        for t in (self.headline, "Legend: " + LEGEND))
        return (f'<div style="font-size: 75%"><table class="dataframe"><thead><tr>'
                f"{head}</tr></thead><tbody>{body}</tbody></table>{notes}</div>")

    def __repr__(self) -> str:
        return (f"RFTable({len(self.rows)} ops, input {self.input_size}: "
                f"{self.headline})")

    def plot(self, ax: Any = None, marks: dict[str, float] | None = None) -> Any:
        """The RF after each layer (the rows `layers()` lists), with the input's
        size marked and any `marks` ({"digit": 20}) as dashed lines; from the
        first global op on, the points are hollow (RF global; the value
        plotted is the convolutional path's). Returns the matplotlib Axes."""
        import matplotlib.pyplot as plt

        rows = [r for r in self.layers() if r.r_out is not None]
        if ax is None:
            _, ax = plt.subplots(figsize=(max(6.0, 0.35 * len(rows)), 3.2))
        x = range(len(rows))
        r = [max(as_numbers(row.r_out)) for row in rows]
        ax.plot(x, r, color="C0", zorder=1)
        local = [i for i, row in enumerate(rows) if not row.global_out]
        glob = [i for i, row in enumerate(rows) if row.global_out]
        ax.scatter(local, [r[i] for i in local], color="C0", zorder=2, label="RF")
        if glob:
            ax.scatter(glob, [r[i] for i in glob], facecolors="white",
                       edgecolors="C0", zorder=2, label="global (conv. path's RF)")
        size = max(self.input_size[1:])
        lines = {f"input ({size} px)": size} | {
            f"{k} ({fmt_cell(v)} px)": v for k, v in (marks or {}).items()}
        for i, (label, value) in enumerate(lines.items()):
            ax.axhline(value, color=f"C{i + 1}", linestyle="--", linewidth=1,
                       label=label)
        ax.set_xticks(list(x), [row.name for row in rows], rotation=60, ha="right",
                      fontsize=8)
        ax.set_ylabel("receptive field (px)")
        ax.set_title(textwrap.fill(self.headline, 90), fontsize=9)
        ax.legend(fontsize=8)
        ax.figure.tight_layout()
        return ax


def as_numbers(v: Any) -> tuple[float, ...]:
    """A cell's value as numbers: (v,) for a number, the pair for (h, w)."""
    return tuple(v) if isinstance(v, tuple) else (v,)


def _size(n: Any) -> str:
    """A map's size as the headline writes it, e.g. "7x7" or "7x5"."""
    h, w = (n, n) if not isinstance(n, (tuple, list)) else n
    return f"{fmt_cell(h)}x{fmt_cell(w)}"


def cell_value(row: RFRow, column: str) -> Any:
    """A row's value in `column`; an RF that is global reads "global (r)"."""
    v = getattr(row, column)
    side = {"r_in": "in", "r_out": "out"}.get(column)
    if side and getattr(row, f"global_{side}") and v is not None:
        return f"global ({fmt_cell(v)})"
    return v


def cell_text(row: RFRow, column: str) -> str:
    """A row's cell in `column`, as text."""
    return fmt_cell(cell_value(row, column))


def fmt_cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, tuple):
        return "(" + ", ".join(fmt_cell(x) for x in v) + ")"
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() else f"{v:.4g}"
    return str(v)
