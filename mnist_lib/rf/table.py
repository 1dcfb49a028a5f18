"""The table `mnist_lib.rf.receptive_field` returns: one `RFRow` an op, in
forward order, gathered in an `RFTable` that prints as the table (`str`),
Markdown, a pandas DataFrame or records, as HTML in a notebook, and plots the
RF's growth. Its headline is the trunk's RF: the RF of the last map before the
global pooling, the number papers quote."""

from __future__ import annotations

import html
import textwrap
from dataclasses import KW_ONLY, dataclass, field, fields
from decimal import Decimal
from typing import Any, Iterator, Sequence


@dataclass
class RFRow:
    """One op of the model, in forward order. Spatial values: one number for
    every spatial axis, or one per axis where they differ: (h, w) for an
    image, (d, h, w) for a clip."""

    name: str
    kind: str
    _: KW_ONLY  # the rest by name
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
    # Uneven: the units are not evenly spaced (after an adaptive pooling whose
    # windows differ), so they have no single jump; j_in / j_out are then None.
    uneven_in: bool = False
    uneven_out: bool = False


# The columns students know from RF write-ups, in the order of the recurrence.
# A table whose layers are dilated shows "dilation" after "kernel" too
# (`RFTable.columns`): the recurrence needs it.
COLUMNS = ["name", "kind", "n_in", "ch_in", "ch_out", "padding", "kernel", "stride",
           "n_out", "j_in", "j_out", "r_in", "r_out", "start_out"]
# What a notebook shows of the table: the layer's window (kernel, stride,
# padding), then size, jump and RF in and out, the recurrence to read row by row.
# Fewer columns than COLUMNS, so that the table fits a book page unscrolled.
# (n_in is left out: it is the n_out of the row above.)
SHOWN = ["name", "kind", "kernel", "stride", "padding", "n_out", "ch_out",
         "j_in", "j_out", "r_in", "r_out", "start_out"]
# What the columns mean, printed under the table: the parts every table needs,
# then one part for each thing only some tables have (a dilated layer, a
# global RF, unevenly spaced units). `RFTable.legend` keeps the parts its own
# rows need; LEGEND is all of them.
_LEGEND_BASE = ("n: map size; j: jump, input pixels between neighbouring units; "
                "r: receptive field, in input pixels; start: centre of the first "
                "unit (pixel i spans [i, i+1]); _in / _out: before / after the op. "
                "Row by row, r_out = r_in + (kernel - 1) * j_in and "
                "j_out = j_in * stride.")
_LEGEND_DILATED = ("A dilated layer counts as a kernel of dilation * (kernel - 1) + 1 "
                   "(the dilation column is shown when a layer is dilated).")
_LEGEND_GLOBAL = ("global (r): each unit depends on every unit of a map (after a "
                  "global pooling, a squeeze-and-excitation gate), so on all the "
                  "input that map sees; r is the RF of the convolutional path alone.")
_LEGEND_UNEVEN = ("uneven: units not evenly spaced (an adaptive pooling's unequal "
                  "windows): no single jump.")
LEGEND = " ".join((_LEGEND_BASE, _LEGEND_DILATED, _LEGEND_GLOBAL, _LEGEND_UNEVEN))

_WORDS = ("name", "kind")  # the columns that hold words, not numbers
# The flag that says how to read a column's number: an RF is global, a jump
# uneven. Records and DataFrames carry it beside the column, as a bool.
_FLAGS = {"j_in": "uneven_in", "j_out": "uneven_out",
          "r_in": "global_in", "r_out": "global_out"}


def check_columns(columns: Sequence[str]) -> list[str]:
    """`columns` as a list, after checking that each names a field of `RFRow`."""
    known = [f.name for f in fields(RFRow)]
    unknown = [c for c in columns if c not in known]
    if unknown or not columns:
        named = ", ".join(map(repr, unknown)) or "(none given)"
        raise ValueError(f"unknown column(s) {named}; choose from {', '.join(known)}")
    return list(columns)


def trunk_of(rows: Sequence[RFRow], final: RFRow,
             sources: dict[str, tuple[str, ...]] | None = None) -> RFRow:
    """The row whose RF a paper quotes for a network: the output (`final`) when
    it is not global; else the last op before it that gives a map of more than
    one unit, the last map before the global pooling (resnet18: 435 px on a
    7x7 map, not the 627 px that the pooling's window spans at 224x224).
    `rows`: the ops the output is computed from, in forward order, so that a
    side branch (an auxiliary head) is never the trunk; `sources`: the rows
    each row computes from (`RFTable.sources`; without it, the row above)."""
    if not final.global_out:
        # The op that made the output's map: back over the ops after it that
        # keep its size and RF (Model_1's flatten and log_softmax), each from
        # one op (a merge made the map).
        by_name = {r.name: r for r in rows}
        row = final
        while True:
            before = ([by_name[n] for n in sources.get(row.name, ()) if n in by_name]
                      if sources else rows[max(rows.index(row) - 1, 0):rows.index(row)])
            if len(before) != 1 or (before[0].n_out, before[0].r_out) != (
                    final.n_out, final.r_out):
                return row
            row = before[0]
    end = rows.index(final)
    # (Not copies of one global unit, as an adaptive pooling makes of it:
    # global, with no jump between them.)
    maps = [r for r in rows[:end + 1] if r.spatial and r.n_out not in (None, 1)
            and not (r.global_out and r.j_out is None)]
    return maps[-1] if maps else final


@dataclass
class RFTable:
    """The result of `receptive_field`: `rows` (every op, in forward order),
    `final` = the output's row, `trunk` = the row of the RF to quote
    (`trunk_of`). `sources` maps a row's name to the rows it computes from.

    It acts as a table of the rows every rendering shows (`layers()`: the ops
    that change n, j or r, and the output): `print(table)` prints them with the
    headline and the legend, `len(table)` counts them, `for row in table` walks
    them; `table["block1.0.0"]` finds any op by name (`rows` holds them all).
    """

    rows: list[RFRow]
    input_size: tuple[int, ...]  # (C, L), (C, H, W) or (C, D, H, W)
    sources: dict[str, tuple[str, ...]] = field(default_factory=dict, repr=False)
    final: RFRow = field(init=False)
    trunk: RFRow = field(init=False)

    def __post_init__(self) -> None:
        self.set_final(self.rows[-1])

    def set_final(self, row: RFRow) -> None:
        """Make `row` the output's row (and find the trunk before it)."""
        self.final = row
        self.trunk = trunk_of(self._feeding(row), row, self.sources)

    def _feeding(self, row: RFRow) -> list[RFRow]:
        """`row` and the rows it is computed from, in forward order: without a
        side branch (an auxiliary head, a debug op) that does not feed it.
        Every row up to it, for a table built without `sources`."""
        if not self.sources:
            return self.rows[:self.rows.index(row) + 1]
        seen, todo = {row.name}, [row.name]
        while todo:
            for name in self.sources.get(todo.pop(), ()):
                if name not in seen:
                    seen.add(name)
                    todo.append(name)
        return [r for r in self.rows if r.name in seen]

    @property
    def first_global(self) -> RFRow | None:
        """The first op from which every unit of the output sees a whole map,
        if any."""
        return next((r for r in self._feeding(self.final)
                     if r.global_out and not r.global_in), None)

    @property
    def headline(self) -> str:
        """The RF in one line: the trunk's RF and jump, and where it turns global,
        e.g. "RF 29 px, jump 4 px, at 'block2.1.0' (map 3x3); global from 'gap'
        (AdaptiveAvgPool2d) onward"."""
        t, g = self.trunk, self.first_global
        nd = len(self.input_size) - 1
        size = _size(self.input_size[1:], nd)
        big = f" (more than the {size} input)" if t.exceeds_input else ""
        jump = (", jump uneven" if t.uneven_out else "" if t.j_out is None
                else f", jump {fmt_cell(t.j_out)} px")
        where = f"at {t.name!r}" + (f" (map {_size(t.n_out, nd)})" if t.n_out != 1
                                    else "")
        rf = f"RF {fmt_cell(t.r_out)} px{big}{jump}, {where}"
        if g is None:
            return rf
        # A traced function's op is named as its kind ('mean'): say it once.
        gate = f"{g.name!r}" + (f" ({g.kind})" if g.kind != g.name else "")
        if t.global_out:  # a gate before the trunk's end: the trunk itself is global
            return f"RF global from {gate} onward; without the global ops, {rf}"
        return f"{rf}; global from {gate} onward"

    @property
    def legend(self) -> str:
        """What the columns mean, in the parts this table needs: the dilation,
        global and uneven notes only where a row is dilated, global or uneven."""
        rows = self.layers()
        parts = [_LEGEND_BASE]
        if self.dilated:
            parts.append(_LEGEND_DILATED)
        if any(r.global_in or r.global_out for r in rows):
            parts.append(_LEGEND_GLOBAL)
        if any(r.uneven_in or r.uneven_out for r in rows):
            parts.append(_LEGEND_UNEVEN)
        return " ".join(parts)

    def __getitem__(self, name: str) -> RFRow:
        """The row of the op called `name` (e.g. `table["block1.0.0"]`), any op."""
        for row in self.rows:
            if row.name == name:
                return row
        raise KeyError(f"no op named {name!r}; names: {[r.name for r in self.rows]}")

    def __contains__(self, name: object) -> bool:
        """Whether an op is called `name` (`"block1.0.0" in table`), as
        indexing finds it; a row is not a key."""
        return any(row.name == name for row in self.rows)

    def __len__(self) -> int:
        return len(self.layers())

    def __iter__(self) -> Iterator[RFRow]:
        return iter(self.layers())

    def layers(self, all_ops: bool = False) -> list[RFRow]:
        """The rows every rendering shows by default: those that change n, j or r
        (convs, pools, linears, merges) and the output's; all rows if `all_ops`."""
        return [r for r in self.rows if all_ops or r.spatial or r is self.final]

    @property
    def dilated(self) -> bool:
        """Whether any op of the table is dilated."""
        return any(r.dilation not in (None, 1) for r in self.rows)

    def columns(self, base: Sequence[str] = COLUMNS) -> list[str]:
        """The default columns: `base`, with "dilation" after "kernel" where a
        layer is dilated (the recurrence needs it)."""
        columns = list(base)
        if self.dilated and "dilation" not in columns and "kernel" in columns:
            columns.insert(columns.index("kernel") + 1, "dilation")
        return columns

    def to_frame(self, all_ops: bool = False, columns: Sequence[str] | None = None):
        """A pandas DataFrame of numbers: the default columns (or `columns`), with
        a bool column beside each RF and jump column that says how to read it
        (`global_out`: the RF is global; `uneven_out`: no single jump). Missing
        values are <NA>; an (h, w) pair stays a tuple."""
        import pandas as pd

        records = self.to_records(all_ops, self.columns() if columns is None
                                  else columns)
        names = list(records[0]) if records else check_columns(columns or COLUMNS)
        frame = pd.DataFrame(records, columns=names, dtype=object)
        for name in names:
            frame[name] = _typed(frame[name])
        return frame

    def _cells(self, all_ops: bool, columns: Sequence[str] | None
               ) -> tuple[list[str], list[list[str]]]:
        """The checked column names (the default ones for None), and each row's
        cells as text."""
        columns = check_columns(self.columns() if columns is None else columns)
        return columns, [[cell_text(r, c) for c in columns]
                         for r in self.layers(all_ops)]

    def to_markdown(self, all_ops: bool = False,
                    columns: Sequence[str] | None = None) -> str:
        """A GitHub-flavoured Markdown table."""
        columns, rows = self._cells(all_ops, columns)
        head = "| " + " | ".join(columns) + " |"
        rule = "|" + "|".join("---" for _ in columns) + "|"
        return "\n".join([head, rule] + ["| " + " | ".join(r) + " |" for r in rows])

    def to_text(self, all_ops: bool = False, columns: Sequence[str] | None = None,
                notes: bool = False) -> str:
        """An aligned plain-text table; with `notes`, the headline and the legend
        under it, wrapped to 76 columns (what `print(table)` and the CLI print)."""
        columns, rows = self._cells(all_ops, columns)
        widths = [max(len(c), *(len(r[i]) for r in rows))
                  for i, c in enumerate(columns)]
        left = [c in _WORDS for c in columns]  # names read best left-aligned

        def line(cells: list[str]) -> str:
            return "  ".join(c.ljust(w) if lt else c.rjust(w)
                             for c, w, lt in zip(cells, widths, left)).rstrip()

        text = "\n".join([line(columns)] + [line(r) for r in rows])
        if notes:
            text += "".join("\n\n" + textwrap.fill(t, 76, break_on_hyphens=False)
                            for t in (self.headline, self.legend))
        return text

    def to_records(self, all_ops: bool = False, columns: Sequence[str] | None = None
                   ) -> list[dict[str, Any]]:
        """One dict a row: every field of `RFRow`, or only `columns`, each RF
        column with its flag after them (`global_in` / `global_out`), and each
        jump column with its flag (`uneven_in` / `uneven_out`) where some row's
        units are unevenly spaced, so that no cell reads as a plain number when
        it is not one."""
        rows = self.layers(all_ops)
        if columns is None:
            keep = [f.name for f in fields(RFRow)]
        else:
            keep = check_columns(columns)
            uneven = any(r.uneven_in or r.uneven_out for r in rows)
            keep += [f for f in dict.fromkeys(_FLAGS.get(c) for c in keep)
                     if f is not None and f not in keep
                     and (uneven or not f.startswith("uneven"))]
        return [{k: getattr(r, k) for k in keep} for r in rows]

    def _repr_html_(self) -> str:
        # Names left, numbers right, each header over its column. Inline styles,
        # so it looks the same in Jupyter, Colab and the book; the class gives it
        # the look those give a pandas table (rules between cells, striped rows).
        # A smaller font too: at full size the last columns (RF) scroll out of view.
        columns, rows = self._cells(False, self.columns(SHOWN))

        def cell(tag: str, column: str, text: str) -> str:
            align = "left" if column in _WORDS else "right"
            return (f'<{tag} style="text-align: {align}; padding: 0.1em 0.2em">'
                    f"{html.escape(text)}</{tag}>")

        head = "".join(cell("th", c, c) for c in columns)
        body = "".join("<tr>" + "".join(cell("td", c, v) for c, v in zip(columns, r))
                       + "</tr>" for r in rows)
        notes = "".join(f"<p style=\"margin: 0.2em 0\">{html.escape(t)}</p>"
                        for t in (self.headline, "Legend: " + self.legend))
        return (f'<div style="font-size: 75%"><table class="dataframe"><thead><tr>'
                f"{head}</tr></thead><tbody>{body}</tbody></table>{notes}</div>")

    def __str__(self) -> str:
        return self.to_text(notes=True)

    def __repr__(self) -> str:
        return (f"RFTable({len(self.rows)} ops, input {self.input_size}: "
                f"{self.headline})")

    def plot(self, ax: Any = None, marks: dict[str, float] | None = None,
             skip: Sequence[str] = ()) -> Any:
        """The RF after each layer (the rows `layers()` lists), with the input's
        size marked and any `marks` ({"digit": 20}) as dashed lines; from the
        first global op on, the points are hollow (RF global; the value
        plotted is the convolutional path's). `skip`: leave out the rows whose
        name contains any of these, e.g. a shortcut branch ("downsample"),
        so that the line follows one path. Returns the matplotlib Axes."""
        import matplotlib.pyplot as plt

        rows = [r for r in self.layers() if r.r_out is not None
                and not any(part in r.name for part in skip)]
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


def _size(n: Any, nd: int) -> str:
    """A map of `nd` spatial axes' size as the headline writes it, e.g. "7x7"
    or "7x5" for an image, "497" for a sequence, "2x7x7" for a clip."""
    sizes = tuple(n) if isinstance(n, (tuple, list)) else (n,) * nd
    return "x".join(map(fmt_cell, sizes))


def cell_value(row: RFRow, column: str) -> Any:
    """A row's value in `column` as the text formats show it: an RF that is
    global reads "global (r)", a jump that is uneven "uneven"."""
    v = getattr(row, column)
    flag = _FLAGS.get(column)
    if flag is None or not getattr(row, flag):
        return v
    if column.startswith("j_"):
        return "uneven"
    return v if v is None else f"global ({fmt_cell(v)})"


def _typed(column: Any) -> Any:
    """A DataFrame column with the dtype of its numbers: nullable Int64 or
    Float64 (missing values <NA>), bool, or object for words and pairs."""
    values = [v for v in column if v is not None]
    if values and all(isinstance(v, bool) for v in values):
        return column.astype("boolean" if len(values) < len(column) else bool)
    if values and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return column.astype("Int64")
    if values and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                      for v in values):
        return column.astype("Float64")
    return column.astype(object).where(column.notna(), None)


def cell_text(row: RFRow, column: str) -> str:
    """A row's cell in `column`, as text."""
    return fmt_cell(cell_value(row, column))


def fmt_cell(v: Any) -> str:
    """A cell as text: exactly the number the row holds, never rounded nor in
    exponent notation (a start of -1022.5 is "-1022.5", 12000.5 "12000.5")."""
    if v is None:
        return ""
    if isinstance(v, tuple):
        return "(" + ", ".join(fmt_cell(x) for x in v) + ")"
    if isinstance(v, float):
        # Python's shortest repr, which reads back as the same float, written
        # out in full: 1.2e+16 as 12000000000000000.
        return str(int(v)) if v.is_integer() else format(Decimal(repr(v)), "f")
    return str(v)
