"""The table `mnist_lib.rf.receptive_field` returns: one `RFRow` an op, in
forward order, gathered in an `RFTable` that prints as text, Markdown, a
pandas DataFrame or records, and as HTML in a notebook."""

from __future__ import annotations

import html
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


COLUMNS = ["name", "kind", "n_in", "ch_in", "ch_out", "padding", "kernel", "stride",
           "n_out", "j_in", "j_out", "r_in", "r_out", "activation", "params"]
# What a notebook shows of the table: the layer's window (kernel, stride,
# padding), then size, jump and RF in and out, the recurrence to read row by row.
# Fewer columns than COLUMNS, so that the table fits a book page unscrolled.
SHOWN = ["name", "kind", "kernel", "stride", "padding", "n_in", "n_out", "ch_out",
         "j_in", "j_out", "r_in", "r_out"]


_WORDS = ("name", "kind")  # the columns that hold words, not numbers


def check_columns(columns: Sequence[str]) -> list[str]:
    """`columns` as a list, after checking that each names a field of `RFRow`."""
    known = [f.name for f in fields(RFRow)]
    unknown = [c for c in columns if c not in known]
    if unknown or not columns:
        named = ", ".join(map(repr, unknown)) or "(none given)"
        raise ValueError(f"unknown column(s) {named}; choose from {', '.join(known)}")
    return list(columns)


@dataclass
class RFTable:
    """The result of `receptive_field`: `rows` in forward order, `final` = output."""

    rows: list[RFRow]
    input_size: tuple[int, int, int]
    final: RFRow = field(init=False)

    def __post_init__(self) -> None:
        self.final = self.rows[-1]

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
        records = [{c: getattr(r, c) for c in columns} for r in self.layers(all_ops)]
        # dtype=object keeps 3 as 3: a numeric column with a gap would be float.
        frame = pd.DataFrame(records, columns=list(columns), dtype=object)
        return frame.where(frame.notna(), "")

    def _cells(self, all_ops: bool, columns: Sequence[str]
               ) -> tuple[list[str], list[list[str]]]:
        """The checked column names, and each row's cells as text."""
        columns = check_columns(columns)
        return columns, [[fmt_cell(getattr(r, c)) for c in columns]
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
        """One dict a row: every field of `RFRow`, or only `columns`."""
        keep = check_columns(columns) if columns is not None else None
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
        return (f'<div style="font-size: 80%"><table class="dataframe"><thead><tr>'
                f"{head}</tr></thead><tbody>{body}</tbody></table></div>")

    def __repr__(self) -> str:
        f = self.final
        return (f"RFTable({len(self.rows)} ops, input {self.input_size}, "
                f"output RF {f.r_out}, jump {f.j_out})")


def fmt_cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, tuple):
        return "(" + ", ".join(fmt_cell(x) for x in v) + ")"
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() else f"{v:.4g}"
    return str(v)
