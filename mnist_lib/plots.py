"""Figures for the book. Each function returns a matplotlib Figure (no global state).

They read a `History`, tensors or an RF table; none of them trains or animates
anything.
"""

from __future__ import annotations

import io
import math
import textwrap
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Sequence

import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from matplotlib.patches import Rectangle

from .evaluation import misclassified
from .training.history import History
from .utils.layer_kinds import layer_kind
from .target import TARGET

if TYPE_CHECKING:
    from .rf import RFRow, RFTable


class BookFigure(Figure):
    """A Figure that shows itself as a PNG in notebooks and in `glue`.

    Built without pyplot (no global state, nothing left open), so it cannot
    rely on pyplot's inline backend to be displayed.
    """

    _png: bytes | None = None

    def _repr_png_(self) -> bytes:
        # Drawn once and kept until the figure changes (matplotlib marks it
        # stale): a constrained layout of a grid of images moves by a pixel
        # on each draw, and the page that shows a figure and the page it is
        # glued into must get the same image file.
        if self._png is None or self.stale:
            buf = io.BytesIO()
            self.savefig(buf, format="png", dpi=100)
            self._png = buf.getvalue()
            self.stale = False  # the layout's own updates are not changes
        return self._png


def _figure(w: float, h: float) -> BookFigure:
    return BookFigure(figsize=(w, h), layout="constrained")


def curves(history: History | Sequence[History], title: str | None = None) -> Figure:
    """Train/test loss and accuracy per epoch (one or several runs)."""
    runs = [history] if isinstance(history, History) else list(history)
    if not runs or any(not h.epochs for h in runs):
        raise ValueError("curves needs at least one history with at least one epoch; "
                         "got " + ("none" if not runs else "one with no epochs"))
    fig = _figure(10, 3.6)
    ax_loss, ax_acc = fig.subplots(1, 2)
    for h in runs:
        ep = h.column("epoch")
        label = h.model if len(runs) > 1 else ""
        ax_loss.plot(ep, h.column("train_loss"), "--", label=f"{label} train".strip())
        ax_loss.plot(ep, h.column("test_loss"), "-", label=f"{label} test".strip())
        ax_acc.plot(ep, h.column("train_acc"), "--", label=f"{label} train".strip())
        ax_acc.plot(ep, h.column("test_acc"), "-", label=f"{label} test".strip())
    ax_acc.axhline(TARGET.accuracy, color="grey", lw=0.8, ls=":",
                   label=f"{TARGET.accuracy:g}% target (test)")
    ax_loss.set(xlabel="epoch", ylabel="loss (NLL)", yscale="log", title="Loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="Accuracy")
    low = min(min(h.column("test_acc")[1:] or h.column("test_acc")) for h in runs)
    ax_acc.set_ylim(max(90.0, low - 0.5), 100)
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


def image_grid(images: torch.Tensor, titles: Sequence[str], ncols: int = 10,
               title: str | None = None, colors: Sequence[str] | None = None) -> Figure:
    """Digits (N, 28, 28), or a batch (N, 1, 28, 28), in a grid, each with a
    short title."""
    if images.dim() == 4 and images.shape[1] == 1:
        images = images[:, 0]
    if images.dim() != 3:
        raise ValueError("image_grid takes images as (N, H, W) or (N, 1, H, W); got "
                         f"shape {tuple(images.shape)}")
    n = len(images)
    nrows = max(1, -(-n // ncols))
    fig = _figure(1.1 * ncols, 1.25 * nrows + (0.3 if title else 0))
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    # imshow is given NumPy arrays: a tensor makes NumPy 2 warn about __array__.
    for i, ax in enumerate(axes):
        ax.axis("off")
        if i < n:
            ax.imshow(images[i].detach().cpu().numpy(), cmap="gray_r")
            ax.set_title(titles[i], fontsize=8,
                         color=colors[i] if colors is not None else "black")
    if title:
        fig.suptitle(title)
    return fig


def samples(images: torch.Tensor, labels: torch.Tensor, n: int = 20) -> Figure:
    """The first `n` images with their labels."""
    return image_grid(images[:n], [f"label {int(y)}" for y in labels[:n]])


def predictions(images: torch.Tensor, labels: torch.Tensor, pred: torch.Tensor,
                n: int = 20) -> Figure:
    """The first `n` test images with true and predicted labels (wrong ones in red)."""
    titles = [f"true {int(t)} / pred {int(p)}" for t, p in zip(labels[:n], pred[:n])]
    colors = ["black" if int(t) == int(p) else "red"
              for t, p in zip(labels[:n], pred[:n])]
    return image_grid(images[:n], titles, ncols=10, colors=colors)


def misclassified_grid(images: torch.Tensor, labels: torch.Tensor,
                       pred: torch.Tensor, n: int = 30) -> Figure:
    """Up to `n` misclassified test images, titled 'true -> predicted'."""
    wrong = misclassified(pred, labels)[:n]
    titles = [f"{int(labels[i])} \u2192 {int(pred[i])}" for i in wrong]
    title = f"{len(wrong)} misclassified digits (true \u2192 predicted)"
    return image_grid(images[wrong], titles, ncols=10, title=title)


def per_class(acc: Sequence[float], title: str = "Test accuracy per class") -> Figure:
    """Bar chart of per-class accuracy (%). A NaN (a digit with no test image,
    as in a small subset) gets no bar but a note."""
    shown = [d for d, a in enumerate(acc) if not math.isnan(a)]
    if not shown:
        raise ValueError("per_class: no digit has a test image (every accuracy is NaN)")
    fig = _figure(7, 3)
    ax = fig.subplots()
    bars = ax.bar(shown, [acc[d] for d in shown], color="tab:blue")
    ax.bar_label(bars, fmt="%.2f", fontsize=7)
    low = min(acc[d] for d in shown) - 1
    for d in sorted(set(range(len(acc))) - set(shown)):
        ax.text(d, low, " no test image", rotation=90, ha="center", va="bottom",
                fontsize=7, color="grey")
    ax.set(xticks=range(len(acc)), xlabel="digit", ylabel="accuracy (%)", title=title,
           xlim=(-0.6, len(acc) - 0.4), ylim=(low, 100.2))
    return fig


def error_rates(errors: Sequence[int], sizes: Sequence[int],
                chance: Sequence[tuple[float, float]] | None = None,
                title: str = "Test digits read wrong, per digit") -> Figure:
    """Bar chart of the share of each digit's test images read wrong (%), from
    0, with each bar's count on it. `chance`, one (low, high) range a digit
    (in %), draws where that digit's share would fall by chance alone, for
    instance the middle 95% of simulated draws were every digit equally
    hard: a bar inside its range is no evidence that the digit is harder."""
    if len(errors) != len(sizes) or (chance is not None and len(chance) != len(sizes)):
        raise ValueError(f"error_rates: {len(errors)} error counts, {len(sizes)} "
                         f"sizes{'' if chance is None else f', {len(chance)} ranges'}"
                         ": give one of each per digit")
    if any(n <= 0 for n in sizes):
        raise ValueError("error_rates: every digit needs at least one test image "
                         f"(sizes {list(sizes)})")
    rates = [100 * e / n for e, n in zip(errors, sizes)]
    fig = _figure(7, 3)
    ax = fig.subplots()
    bars = ax.bar(range(len(rates)), rates, color="tab:blue", width=0.5,
                  label="this model", zorder=2)
    ax.bar_label(bars, labels=[str(e) for e in errors], fontsize=7)
    top = max(rates)
    if chance is not None:
        for d, (low, high) in enumerate(chance):
            ax.add_patch(Rectangle((d - 0.4, low), 0.8, high - low, color="grey",
                                   alpha=0.35, lw=0, zorder=1,  # behind the bar
                                   label="chance alone (95%)" if d == 0 else None))
        top = max(top, max(high for _, high in chance))
        ax.legend(fontsize=8, loc="upper left")
    ax.set(xticks=range(len(rates)), xlabel="digit", ylabel="read wrong (%)",
           title=title, xlim=(-0.6, len(rates) - 0.4), ylim=(0, 1.2 * top))
    return fig


def confusion(matrix: torch.Tensor) -> Figure:
    """Confusion matrix (rows: true digit, columns: predicted), counts annotated."""
    m = matrix.cpu()
    fig = _figure(5.5, 5)
    ax = fig.subplots()
    # Log colour scale: the diagonal (~1,000) would otherwise hide the errors (~1).
    ax.imshow(torch.log1p(m.float()).numpy(), cmap="Blues")
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            if m[i, j]:
                ax.text(j, i, int(m[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if i == j else "black")
    ax.set(xticks=range(10), yticks=range(10), xlabel="predicted", ylabel="true",
           title="Confusion matrix")
    return fig


def class_balance(labels: torch.Tensor) -> Figure:
    """Number of examples per digit."""
    counts = torch.bincount(labels.cpu(), minlength=10).tolist()
    fig = _figure(6, 2.8)
    ax = fig.subplots()
    bars = ax.bar(range(10), counts)
    ax.bar_label(bars, fontsize=7)
    ax.set(xticks=range(10), xlabel="digit", ylabel="images", title="Class balance")
    return fig


def rf_stack(stacks: dict[str, Sequence[tuple[int, int]]], n_in: int = 13
             ) -> Figure:
    """Why the receptive field grows, along one axis: for each stack of
    layers (`(kernel, stride)` each, no padding), the units of every layer
    as a row of squares, the input at the bottom; the units that one unit of
    the top row depends on are filled, layer by layer down to the input.
    Each layer adds (kernel - 1) × jump input pixels; a stride multiplies
    the jump for the layers above it. Each square sits over the centre of
    the input pixels its unit sees, so a row after a stride-2 layer has its
    squares 2 input pixels apart: the spacing is the jump."""
    from matplotlib.patches import Rectangle

    fig = _figure(3.4 * len(stacks), 2.6)
    for ax, (title, layers) in zip(fig.subplots(1, len(stacks), squeeze=False)[0],
                                   stacks.items()):
        sizes, jumps, rfs = [n_in], [1], [1]
        for k, st in layers:
            sizes.append((sizes[-1] - k) // st + 1)
            rfs.append(rfs[-1] + (k - 1) * jumps[-1])
            jumps.append(jumps[-1] * st)
        top = sizes[-1] // 2
        spans = [(top, top)]  # the units the chosen top unit depends on, per layer
        for (k, st) in reversed(layers):
            lo, hi = spans[-1]
            spans.append((lo * st, hi * st + k - 1))
        spans.reverse()  # spans[i]: the units of layer i (0 = input)
        for row, (n, (lo, hi)) in enumerate(zip(sizes, spans)):
            for u in range(n):
                filled = lo <= u <= hi
                # unit u sees input pixels u*jump .. u*jump + rf - 1
                x = u * jumps[row] + (rfs[row] - 1) / 2
                ax.add_patch(Rectangle((x, row), 0.9, 0.7, lw=0.8,
                                       edgecolor="k",
                                       facecolor="C1" if filled else "white"))
        ax.set(xlim=(-0.5, n_in + 0.5), ylim=(-0.3, len(sizes)), title=title)
        ax.set_yticks([r + 0.35 for r in range(len(sizes))],
                      ["input"] + [f"{k}×{k}" + (f", stride {st}" if st > 1 else "")
                                   for k, st in layers], fontsize=8)
        ax.set_xticks([])
        ax.set_xlabel(f"input pixels seen: {spans[0][1] - spans[0][0] + 1}",
                      fontsize=9)
        for side in ("top", "right", "bottom"):
            ax.spines[side].set_visible(False)
    return fig


def rf_box(image: torch.Tensor, box: tuple[float, float, float, float],
           erf: torch.Tensor | None = None, title: str = "") -> Figure:
    """A digit with one unit's RF box (top, left, height, width) and, optionally,
    its effective RF (|gradient| heat-map) beside it."""
    fig = _figure(8 if erf is not None else 4, 4)
    axes = fig.subplots(1, 2 if erf is not None else 1, squeeze=False).ravel()
    size = image.shape[-1]
    for ax in axes:
        ax.imshow(image.detach().cpu().numpy(), cmap="gray_r")
        top, left, h, w = box
        # Pixel i spans [i, i+1] in RF coordinates; imshow centres it at i.
        ax.add_patch(Rectangle((left - 0.5, top - 0.5), w, h, fill=False,
                               ec="red", lw=2, ls="-"))
        if left < 0 or top < 0 or left + w > size or top + h > size:
            # The box runs past the image: outline the image, so that the
            # part of the box over the zero padding shows as such.
            ax.add_patch(Rectangle((-0.5, -0.5), size, size, fill=False,
                                   ec="grey", lw=1, ls="--"))
        ax.set_xlim(min(-0.5, left - 1), max(size - 0.5, left + w))
        ax.set_ylim(max(size - 0.5, top + h), min(-0.5, top - 1))
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0].set_title(title or "theoretical RF (red box)", fontsize=9)
    if erf is not None:
        axes[1].imshow(erf.cpu().numpy(), cmap="magma", alpha=0.75,
                       extent=(-0.5, size - 0.5, size - 0.5, -0.5))
        axes[1].set_title("effective RF: |d unit / d input|", fontsize=9)
    return fig


# The colour of each kind of layer (`layer_kinds`) in the architecture
# picture; a layer of no kind there is grey.
_POOL = "#fdae6b"
_COLOURS = {"conv": "#9ecae1", "max-pool": _POOL, "avg-pool": _POOL,
            "adaptive avg-pool": _POOL, "adaptive max-pool": _POOL,
            "linear": "#d9d9d9"}


def _pair(v: Any) -> tuple[Any, Any]:
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def _num(v: Any) -> str:
    """A table value as text: 29, 0.5, or (3, 5) for an (h, w) pair."""
    if isinstance(v, (tuple, list)):
        return "(" + ", ".join(map(_num, v)) + ")"
    return f"{v:g}" if isinstance(v, (int, float)) else str(v)


def _dims(n: Any, nd: int = 2, sep: str = "×") -> str:
    """A map of `nd` spatial axes' size: "14×14", or "7×5" for an image that
    is not square; "497" for a sequence, "2×7×7" for a clip."""
    sizes = tuple(n) if isinstance(n, (tuple, list)) else (n,) * nd
    return sep.join(map(_num, sizes))


def _starts_global(row: RFRow) -> bool:
    return row.global_out and not row.global_in


def _kind(row: RFRow, nd: int = 2) -> tuple[str, str, str]:
    """A layer as the picture names it, in two short lines ("conv 3×3",
    "stride 2"), and its colour."""
    kind = layer_kind(row.kind)
    if _starts_global(row):  # "global avg-pool": the adaptive goes without saying
        adaptive = kind is not None and kind.name.startswith("adaptive ")
        word = kind.name.removeprefix("adaptive ") if adaptive else row.kind
        return "global", word, "#bcbddc"
    word = kind.name if kind else row.kind.lower()
    colour = _COLOURS[word] if kind else "#f0f0f0"
    if row.kernel is None:
        return word, "", colour
    k = _dims(row.kernel, nd) if word == "conv" else _num(row.kernel)
    extra = [f"{name} {_num(v)}" for name, v in
             (("stride", row.stride), ("dil.", row.dilation))
             if v is not None and max(_pair(v)) > 1]
    return f"{word} {k}", ", ".join(extra), colour


def _linear(row: RFRow) -> bool:
    kind = layer_kind(row.kind)
    return kind is not None and kind.name == "linear"


def _jump(row: RFRow) -> str:
    """A layer's jump as the picture writes it: "j 2", or "j uneven"."""
    return "j uneven" if row.uneven_out else f"j {_num(row.j_out)}"


def _map(row: RFRow, nd: int = 2, sep: str = "×") -> tuple[str, str]:
    """A layer's output in two short lines: its map and its channels
    ("12×12", "16 ch"), or a Linear's outputs ("10", "outputs")."""
    if _linear(row) and row.ch_out:
        return f"{row.ch_out}", "outputs"
    return _dims(row.n_out, nd, sep), f"{row.ch_out} ch" if row.ch_out else ""


def _changes(row: RFRow) -> bool:
    return (row.n_in, row.j_in, row.r_in, row.global_in) != (
        row.n_out, row.j_out, row.r_out, row.global_out)


def _architecture_rows(table: RFTable, max_layers: int
                       ) -> tuple[list[RFRow | None], str]:
    """The rows the picture draws (None: a gap for the rows left out), and a
    note that says which were left out, if any."""
    if max_layers < 4:
        raise ValueError(f"architecture: max_layers={max_layers} is too few to draw "
                         "the first layers, a gap and the last 3: give 4 or more")
    # Layers, and any other op that changes the map (a merge of misaligned
    # branches): not an op that leaves it as it is (log_softmax, an add).
    rows = [r for r in table.layers() if r.spatial and (
        r.kernel is not None or _linear(r) or _changes(r)
        or r is table.trunk)]
    if not rows:
        ops = ", ".join(sorted({r.kind for r in table.rows}))
        raise ValueError("architecture: the table has no layer to draw, only ops "
                         f"that leave the map as it is ({ops})")
    total, note = len(rows), ""
    if total > max_layers:
        rows = [r for r in rows if _changes(r) or r in (rows[-1], table.trunk)]
        note = (f"{len(rows)} of {total} layers drawn: those that change the map, "
                "the jump or the RF")
    if len(rows) > max_layers:
        head, tail = rows[:max_layers - 3], rows[-3:]
        note = (f"{max_layers} of {total} layers drawn: of those that change the "
                f"map, the jump or the RF, the first {len(head)} and the last 3")
        rows = [*head, None, *tail]
    return rows, note


def architecture(table: RFTable, title: str | None = None,
                 max_layers: int = 15, plain: bool = False) -> Figure:
    """A model, drawn from its RF table (`mnist_lib.rf.receptive_field`): a
    box for the input and one for each layer that acts on the map (conv,
    pool, global pooling, linear), in forward order, its height the map's
    size; under it the layer, its map (size×channels), RF and jump, in bold
    red where they grow. Pools are orange, the global pooling hatched, the
    trunk (whose RF the headline quotes) edged thick. With more than
    `max_layers` such layers, only those that change the map, the jump or the
    RF are drawn, then only the first and last of them; a note says so.
    A branch (a residual's shortcut) is drawn in line, in forward order.
    `plain` is for a reader who has not yet met the jump: no jump rows, and
    the headline in words instead of the table's (an image's 2-d table)."""
    rows, note = _architecture_rows(table, max_layers)
    channels, *size = table.input_size
    nd = len(size)  # spatial axes: 1 for a sequence, 2 for an image, 3 for a clip
    fig = _figure(10, 3.5)
    ax = fig.subplots()
    ax.set_axis_off()
    drawn = set()  # what the key must explain: "pool", "global"
    for x, row in enumerate([None, *rows]):
        if x and row is None:  # the rows left out
            ax.text(x, 0, "⋯", ha="center", va="center", fontsize=14)
            continue
        if row is None:  # the input
            n, colour, hatch, edge = max(size), "white", None, 0.8
            lines = [("input", False), ("", False), (_dims(size, nd), False),
                     (f"{channels} ch", False), ("RF 1", False),
                     *([] if plain else [("j 1", False)])]
        else:
            n = max(_pair(row.n_out))
            first, second, colour = _kind(row, nd)
            hatch = "///" if _starts_global(row) else None
            if colour == _POOL:
                drawn.add("pool")
            if hatch:
                drawn.add("global")
            edge = 2.4 if row is table.trunk else 0.8
            # A global RF as the table writes it, "global (29)", on two lines.
            rf, jump = (("global", f"({_num(row.r_out)})") if row.global_out
                        else (f"RF {_num(row.r_out)}", _jump(row)))
            lines = [(first, False), (second, False),
                     *((text, False) for text in _map(row, nd)),
                     (rf, row.r_out != row.r_in and not row.global_out),
                     *([] if plain else [(jump, row.j_out not in (None, row.j_in)
                                          and not row.global_out)])]
        height = max(0.03, n / max(size))
        ax.add_patch(Rectangle((x - 0.3, -height / 2), 0.6, height, fc=colour,
                               ec="black", lw=edge, hatch=hatch,
                               gid="input" if row is None else row.name))
        for i, (text, grew) in enumerate(lines):
            ax.annotate(text, (x, -0.5), xytext=(0, -2 - 9 * i),
                        textcoords="offset points", ha="center", va="top",
                        fontsize=7.5, color="C3" if grew else "black",
                        fontweight="bold" if grew else "normal")
    ax.set(xlim=(-0.55, len(rows) + 0.55), ylim=(-0.5, 0.52))
    trunk = table.trunk
    if (plain and nd == 2 and not trunk.uneven_out
            and isinstance(trunk.r_out, (int, float))):  # a square RF
        r, m = _num(trunk.r_out), _dims(trunk.n_out, nd)
        head = (f"a unit of the thick-edged map ({m}) sees {r}×{r} input pixels "
                "(its receptive field, RF)")
        key = "box height: map size; red: the RF grows there"
    else:
        head = textwrap.fill(table.headline, 130)
        key = ("box height: map size; red: the RF or the jump grows there; thick "
               "edge: the trunk's last map (the RF above)")
    # Only what the figure draws: a net without a pool has no orange box.
    key += "".join(part for name, part in (("pool", "; orange: pooling"),
                                           ("global", "; hatched: global pooling"))
                   if name in drawn)
    fig.suptitle(f"{title}\n{head}" if title else head, fontsize=9)
    fig.supxlabel(f"{key}\n{note}" if note else key, fontsize=7.5)
    return fig


def architecture_alt(table: RFTable, title: str | None = None,
                     max_layers: int = 15) -> str:
    """Alt text for `architecture(table, title, max_layers)`: what it draws,
    box by box, and the RF it reaches."""
    rows, note = _architecture_rows(table, max_layers)
    channels, *size = table.input_size
    steps = "; ".join("..." if row is None else _words(row, len(size))
                      for row in rows)
    drawn = sum(row is not None for row in rows)
    trunk = table.trunk
    where = "at the output" if table.first_global is None else \
        "before the global pooling"
    jump = (", jump uneven" if trunk.uneven_out else "" if trunk.j_out is None
            else f", jump {_num(trunk.j_out)} px")
    text = (f"{title or 'The model'}: {drawn} layers drawn as boxes, from a "
            f"{_dims(size, len(size), 'x')}x{channels} input: {steps}. "
            f"RF {_num(trunk.r_out)} px {where}{jump}.")
    return (text + (f" {note}." if note else "")).replace("×", "x")


def _words(row: RFRow, nd: int = 2) -> str:
    """A drawn layer as the alt text says it: "conv 3x3 stride 2 to 14x14,
    10 ch"."""
    out = _map(row, nd, "x")
    out = " ".join(out) if _linear(row) else ", ".join(filter(None, out))
    return " ".join(filter(None, _kind(row, nd)[:2])) + f" to {out}"


def seed_strip(values: dict[str, Sequence[float]],
               passed: dict[str, Sequence[bool]] | None = None,
               threshold: float = TARGET.accuracy,
               ylabel: str = "final test accuracy (%)"
               ) -> Figure:
    """Strip plot: one dot per seed, one column per model, mean marked.

    With `passed` (per model, one flag per seed), seeds that did not meet the
    rule are drawn as open circles: a final accuracy above the threshold can
    still fail it, since the rule looks at the last epochs, not only the final.
    """
    fig = _figure(6, 3.2)
    ax = fig.subplots()
    for i, (name, vals) in enumerate(values.items()):
        n = len(vals)
        # Spread the dots evenly over the middle 60% of the column, in seed order.
        xs = [i + (0.6 * k / (n - 1) - 0.3 if n > 1 else 0.0) for k in range(n)]
        ok = list(passed[name]) if passed else [True] * n
        if len(ok) != n:
            raise ValueError(f"{name}: {n} values but {len(ok)} pass/fail flags")
        for met, face in ((True, f"C{i}"), (False, "none")):  # filled: rule met
            dots = [(x, v) for x, v, p in zip(xs, vals, ok) if p == met]
            if dots:
                ax.plot(*zip(*dots), "o", color=f"C{i}", mfc=face)
        mean = sum(vals) / n
        ax.plot([i - 0.35, i + 0.35], [mean, mean], "k-", lw=1.5)
    ax.axhline(threshold, color="grey", ls=":", lw=1, label=f"{threshold}% target")
    if passed and not all(all(f) for f in passed.values()):
        ax.plot([], [], "o", color="grey", mfc="none", label="rule not met")
    ax.set(xticks=range(len(values)), xticklabels=list(values), ylabel=ylabel,
           title="Accuracy over seeds (line: mean)")
    # Beside the axes, not on them: with 15 seeds a column fills its whole
    # height, and matplotlib's "best" spot then still covers some dots.
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(alpha=0.3, axis="y")
    return fig


def arms(record: dict, names: Sequence[str] | None = None,
         threshold: float = TARGET.accuracy, numbered: bool = False) -> Figure:
    """A study (`mnist_lib.study`): one column per arm (those in `names`,
    default all), one dot per seed at its mean accuracy over the last epochs
    the target judges, filled where the run met the rule, a line at the
    arm's mean; arms shaded by the book's step, named in the legend when
    they span several. `numbered`: a ladder's arms are rungs, labelled with
    their number in the record (rung 1 first)."""
    chosen = [a for a in record["arms"] if names is None or a["name"] in names]
    if not chosen or any(not a["runs"] for a in chosen):
        raise ValueError("arms needs arms with at least one recorded run each")
    fig = _figure(max(4.0, 0.85 * len(chosen) + 1.5), 3.4)
    ax = fig.subplots()
    for i, arm in enumerate(chosen):
        vals = [sum(r["last3"]) / len(r["last3"]) for r in arm["runs"]]
        n = len(vals)
        xs = [i + (0.5 * k / (n - 1) - 0.25 if n > 1 else 0.0) for k in range(n)]
        color = f"C{max(arm['step'], 1) - 1}"
        for met, face in ((True, color), (False, "none")):
            dots = [(x, v) for x, v, r in zip(xs, vals, arm["runs"]) if r["met"] == met]
            if dots:
                ax.plot(*zip(*dots), "o", ms=4, color=color, mfc=face)
        mean = sum(vals) / n
        ax.plot([i - 0.3, i + 0.3], [mean, mean], "k-", lw=1.5)
    steps = sorted({max(a["step"], 1) for a in chosen})
    for step in steps:  # one step's arms need no step in the legend
        ax.plot([], [], "o", color=f"C{step - 1}",
                label=f"Step {step}" if len(steps) > 1 else "rule met")
    ax.axhline(threshold, color="grey", ls=":", lw=1, label=f"{threshold:g}% target")
    ax.plot([], [], "o", color="grey", mfc="none", label="rule not met")
    labels = [a["name"] for a in chosen]
    if numbered:
        labels = [f"{record['arms'].index(a) + 1} {a['name']}" for a in chosen]
    ax.set_xticks(range(len(chosen)),
                  [textwrap.fill(n, 11, break_long_words=False) for n in labels],
                  fontsize=8)
    split = _split_name(record)
    unit = "rung" if numbered else "arm"
    ax.set(ylabel=f"{split} accuracy, mean of last {TARGET.last} (%)",
           title=f"Each {unit} over seeds (line: mean)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(alpha=0.3, axis="y")
    return fig


def mean_curves(record: dict, names: Sequence[str] | Mapping[str, str],
                threshold: float = TARGET.accuracy,
                highlight: Sequence[str] | None = None,
                first_epoch: int = 3) -> Figure:
    """A study's arms (`names`, in order) as curves: each arm's accuracy per
    epoch averaged over its seeds, on the digits the study judges; from
    `first_epoch` on (the third by default, where the arms differ by tenths
    of a point; a later one zooms in on the epochs the rule reads). `names` may
    map each arm to its legend label ({"dropout": "rung 6, constant rate"}).
    With `highlight`, only those arms are coloured; the others are thin and
    grey, for context."""
    from .study import mean_curve

    labels = dict(names) if isinstance(names, Mapping) else {n: n for n in names}
    names = list(labels)
    by_name = {a["name"]: a for a in record["arms"]}
    if missing := [n for n in [*names, *(highlight or ())]
                   if not by_name.get(n, {}).get("runs")]:
        raise ValueError(f"no recorded runs for {missing}")
    fig = _figure(6.4, 3.4)
    ax = fig.subplots()
    colours = iter(f"C{k}" for k in range(10))
    for name in names:
        curve = mean_curve(by_name[name])
        epochs = range(first_epoch, len(curve) + 1)
        shown = curve[first_epoch - 1:]
        if highlight is None or name in highlight:
            ax.plot(epochs, shown, marker=".", color=next(colours),
                    label=labels[name])
        else:
            ax.plot(epochs, shown, color="0.75", lw=1, zorder=1)
    if highlight is not None:
        ax.plot([], [], color="0.75", lw=1, label="the other rungs")
    ax.axhline(threshold, color="grey", ls=":", lw=1, label=f"{threshold:g}% target")
    split = _split_name(record)
    n = len(by_name[names[0]]["runs"])
    ax.set(xlabel="epoch", ylabel=f"{split} accuracy (%)",
           title=f"Mean over {n} seeds, per epoch")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(alpha=0.3)
    return fig


def seed_differences(record: dict, name: str, against: str,
                     key: str = "eval_acc") -> Figure:
    """Arm `name` minus arm `against`, epoch by epoch, one line a seed (the
    pairs `study.compare` takes): where two arms train alike, the lines lie
    on zero; where they part, the spread of the lines is what the paired
    interval measures."""
    from .study import paired_runs

    mine, theirs = paired_runs(record, name, against)
    fig = _figure(6.4, 3.2)
    ax = fig.subplots()
    for seed in mine:
        diff = [a - b for a, b in zip(mine[seed][key], theirs[seed][key])]
        ax.plot(range(1, len(diff) + 1), diff, marker=".", lw=1, alpha=0.7)
    ax.axhline(0, color="grey", ls=":", lw=1)
    split = _split_name(record)
    ax.set(xlabel="epoch", ylabel=f"{split} accuracy difference (points)",
           title=f"{name} minus {against}: one line a seed")
    ax.grid(alpha=0.3)
    return fig


def _split_name(record: dict) -> str:
    """The digits a study judges, as an axis names them."""
    return "held-out" if record.get("split") == "holdout" else "test"


def _interval_bar(ax, vs: dict, y: float, ms: float) -> None:
    """One verdict at height `y`: the 95% interval of `vs` ({"delta",
    "delta_ci"}) as a bar and its mean as a diamond, green where the interval
    clears zero upwards, red downwards, black across it."""
    lo, hi = vs["delta"] - vs["delta_ci"], vs["delta"] + vs["delta_ci"]
    color = "C2" if lo > 0 else "C3" if hi < 0 else "k"
    ax.plot([lo, hi], [y, y], "-", color=color, lw=2.5)
    ax.plot([vs["delta"]], [y], "D", color=color, ms=ms)


def _verdict_legend(ax) -> None:
    """The key to `_interval_bar`'s colours, beside the axes."""
    for color, word in (("C2", "helps"), ("C3", "hurts"), ("k", "not resolved")):
        ax.plot([], [], "-D", color=color, lw=2.5, ms=4, label=word)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))


def paired(comparisons: dict[str, tuple[dict, str, str]]) -> Figure:
    """Paired differences seed by seed, one row a comparison: `comparisons`
    maps a row's label to (record, arm, against). Each dot is one seed's
    difference of last-3 means (arm minus against, in points: 0.01 point is
    one digit in 10,000); the bar is their mean and its 95% interval. A row
    whose interval clears zero is a measured effect; one that straddles it,
    not. Where the dots sit to one side, the pairing is what shows it."""
    from .study import compare, last3_means, paired_runs

    fig = _figure(6.4, 0.9 + 0.55 * len(comparisons))
    ax = fig.subplots()
    labels = list(comparisons)
    for row, label in enumerate(labels):
        record, name, against = comparisons[label]
        mine, theirs = (last3_means(runs.values())
                        for runs in paired_runs(record, name, against))
        diffs = [mine[s] - theirs[s] for s in mine]  # the pairs compare takes
        vs = compare(record, name, against)
        y = len(labels) - 1 - row
        n = len(diffs)
        ys = [y + (0.3 * k / (n - 1) - 0.15 if n > 1 else 0.0) for k in range(n)]
        ax.plot(diffs, ys, "o", ms=3.5, color="C0", alpha=0.6)
        _interval_bar(ax, vs, y - 0.3, ms=5)
    ax.axvline(0, color="grey", lw=1, ls=":")
    _verdict_legend(ax)
    ax.set_yticks(range(len(labels)), [textwrap.fill(t, 24) for t in labels[::-1]],
                  fontsize=8)
    ax.set(xlabel="difference of last-3 means (points; 0.01 = 1 digit in 10,000)",
           title="Dots: seeds. Bar: mean and its 95% interval")
    ax.grid(alpha=0.3, axis="x")
    return fig


def intervals(groups: dict[str, dict[str, dict]]) -> Figure:
    """Many verdicts at a glance: one row a comparison, its mean difference
    (a diamond) and 95% interval (a bar), against zero; green where the
    interval clears zero upwards, red downwards, black across it. `groups`
    maps a group's title to its rows, label -> {"delta", "delta_ci"} (as
    `study.compare` gives them); a group's rows follow its title."""
    rows: list[tuple[str, dict | None]] = []
    for title, comparisons in groups.items():
        rows.append((title, None))
        rows.extend(comparisons.items())
    fig = _figure(6.4, 0.6 + 0.28 * len(rows))
    ax = fig.subplots()
    labels = []
    for i, (label, vs) in enumerate(rows):
        y = len(rows) - 1 - i
        labels.append((y, label, vs is None))
        if vs is None:
            continue
        _interval_bar(ax, vs, y, ms=4)
    ax.axvline(0, color="grey", lw=1, ls=":")
    _verdict_legend(ax)
    ax.set_yticks([y for y, _, _ in labels], [t for _, t, _ in labels], fontsize=8)
    for tick, (_, _, is_title) in zip(ax.get_yticklabels(), labels):
        tick.set_fontweight("bold" if is_title else "normal")
    ax.set(xlabel="difference of held-out means (points; + = the change helped)",
           title="Mean and 95% interval of each paired difference")
    ax.grid(alpha=0.3, axis="x")
    return fig


def data_split(n_train: int = 60_000, n_test: int = 10_000,
               holdout: int | None = None) -> Figure:
    """MNIST's digits as one bar, split as the book uses them: the first
    training digits, which every design run learns from; the last `holdout`
    training digits (held-out), which decide; the test digits, which report
    once a round, for runs that learn from all `n_train`."""
    from .data import HOLDOUT

    holdout = HOLDOUT if holdout is None else holdout
    if not 0 < holdout < n_train:
        raise ValueError(f"holdout must lie between 0 and n_train={n_train:,}, "
                         f"got {holdout:,}")
    k = 1000  # drawn in thousands
    parts = [(0, n_train - holdout, f"first {n_train - holdout:,} training "
              "digits:\nevery design run learns here", "#9ecae1"),
             (n_train - holdout, holdout, f"last {holdout:,}\nheld-out:\ndecide",
              "#fdae6b"),
             (n_train, n_test, f"{n_test:,} test\ndigits: report,\nonce a round",
              "#a1d99b")]
    fig = _figure(7.5, 1.6)
    ax = fig.subplots()
    for start, width, label, colour in parts:
        ax.barh(0, width / k, left=start / k, color=colour, edgecolor="black")
        ax.text((start + width / 2) / k, 0, label, ha="center", va="center",
                fontsize=8)
    ax.annotate("", xy=(n_train / k, 0.55), xytext=(0, 0.55),
                annotation_clip=False, arrowprops=dict(arrowstyle="<->"))
    ax.text(n_train / 2 / k, 0.62, f"the final tests' runs learn from all "
            f"{n_train:,}", ha="center", fontsize=8)
    ax.set(xlim=(0, (n_train + n_test) / k), ylim=(-0.5, 0.9),
           xlabel="thousands of digits", yticks=[])
    for side in ("top", "left", "right"):
        ax.spines[side].set_visible(False)
    return fig


def stages(boxes: Sequence[str] | Mapping[str, Sequence[str]]) -> Figure:
    """A method as boxes left to right, joined by arrows: one box per stage,
    each with its text (lines split by newlines), e.g. which seeds and
    digits it uses and what it decides. Given a mapping {row title: boxes},
    one row each, top to bottom (say, one round of a method a row)."""
    rows = dict(boxes) if isinstance(boxes, Mapping) else {"": list(boxes)}
    if not rows or not all(rows.values()):
        raise ValueError("stages needs at least one box to draw in each row")
    width = max(len(row) for row in rows.values())
    titled = any(rows)  # room on the left for the rows' titles
    fig = _figure(2.6 * width + 0.9 * titled, 1.5 * len(rows))
    ax = fig.subplots()
    for r, (title, row) in enumerate(rows.items()):
        y = -1.8 * r
        if title:
            ax.text(-2.1, y, title, ha="right", va="center", fontsize=10,
                    fontweight="bold")
        for i, text in enumerate(row):
            ax.text(3.2 * i, y, text, ha="center", va="center", fontsize=9,
                    bbox=dict(boxstyle="round", fc="#eef3fa", ec="#4a6fa5"))
            if i:
                ax.annotate("", xy=(3.2 * i - 1.3, y), xytext=(3.2 * i - 1.9, y),
                            arrowprops=dict(arrowstyle="->"))
    ax.set(xlim=(-1.6 - 1.4 * titled, 3.2 * (width - 1) + 1.6),
           ylim=(-1.8 * (len(rows) - 1) - 0.8, 0.8))
    ax.axis("off")
    return fig


def learning_rates(configs: dict[str, Any], n_train: int = 50_000) -> Figure:
    """Each recipe's (`TrainConfig`) learning rate at every step of its run,
    against the epoch, as the library's scheduler (`train.make_scheduler`)
    sets it on `n_train` training digits (`train.scheduled_rates`): nothing
    trains."""
    from .train import scheduled_rates

    fig = _figure(6.4, 2.8)
    ax = fig.subplots()
    for label, cfg in configs.items():
        per_epoch = math.ceil(n_train / cfg.batch_size)
        rates = scheduled_rates(cfg, per_epoch)
        ax.plot([i / per_epoch for i in range(len(rates))], rates, label=label)
    ax.set(xlabel="epoch", ylabel="learning rate")
    ax.legend()
    return fig


def pass_rate_shift(runs: Sequence[dict], shifts: Sequence[float] | None = None,
                    threshold: float = TARGET.accuracy,
                    aim: float | None = None) -> Figure:
    """What a change of the mean does near the line: the share of `runs` (a
    record's runs, each with its `last3`) that would meet the rule had every
    accuracy been `shift` points higher, for each shift (default -0.10 to
    +0.10). Near 99.4%, a few hundredths of a point move many seeds across.
    `aim`, a share (0.9 for 45 of 50), draws the protocol's aim as a line."""
    if aim is not None and not 0 < aim <= 1:
        raise ValueError(f"aim is a share of the runs, between 0 and 1; got {aim}")
    shifts = list(shifts) if shifts is not None else [k / 100 for k in range(-10, 11)]
    rates = [100 * pass_share(runs, d, threshold) for d in shifts]
    fig = _figure(5.6, 3.2)
    ax = fig.subplots()
    ax.plot(shifts, rates, "o-", ms=3)
    ax.axvline(0, color="grey", lw=1, ls=":")
    if aim is not None:
        ax.axhline(100 * aim, color="tab:green", lw=1, ls="--",
                   label=f"the protocol's aim ({100 * aim:.0f}%)")
        ax.legend(fontsize=8, loc="lower right")
    ax.set(xlabel="every accuracy shifted by (points)", ylabel="seeds meeting the rule (%)",
           ylim=(-3, 103), title=f"{len(runs)} recorded runs, shifted")
    ax.grid(alpha=0.3)
    return fig


def pass_share(runs: Sequence[dict], shift: float = 0.0,
               threshold: float = TARGET.accuracy) -> float:
    """The share of `runs` whose last accuracies, each `shift` points higher,
    all reach `threshold`. Accuracies are counts of digits in 10,000 (two
    decimals): compared in whole hundredths, so that float rounding cannot
    move a run across the line. A shift moves an accuracy by the whole
    digits it reaches (+0.0899 moves 99.31 to 99.39, not 99.40): for a
    whole-hundredths accuracy a and threshold t, a + shift >= t exactly when
    a + floor(shift) >= t, in hundredths."""
    need = round(threshold * 100)
    digits = math.floor(shift * 100 + 1e-6)  # 1e-6: 0.29 * 100 is 28.99...
    return sum(all(round(a * 100) + digits >= need for a in r["last3"])
               for r in runs) / len(runs)


def curve_band(record: dict, name: str | None = None, live: History | None = None,
               key: str = "eval_acc", first_epoch: int = 3,
               threshold: float = TARGET.accuracy,
               live_label: str = "this build's run") -> Figure:
    """One arm's curve over its seeds: per epoch, the band from the lowest to
    the highest seed and the mean; with `live`, a run of this build (its
    `test_acc`, or what `key` names in its history) drawn against it, from
    `first_epoch` on, named `live_label`. `name` picks a study's arm; a
    record of one recipe (a final test) has its runs at the top and takes no
    name."""
    from .study import arm as arm_of

    if name is None:
        arm, name = record, f"{record['model']}, {len(record['runs'])} seeds"
    else:
        arm = arm_of(record, name)
    runs = [r[key] for r in arm["runs"]]
    epochs = range(first_epoch, len(runs[0]) + 1)
    per_epoch = list(zip(*runs))[first_epoch - 1:]
    fig = _figure(6.0, 3.4)
    ax = fig.subplots()
    ax.fill_between(epochs, [min(e) for e in per_epoch], [max(e) for e in per_epoch],
                    color="C0", alpha=0.25, label=f"{len(runs)} recorded seeds: range")
    ax.plot(epochs, [sum(e) / len(e) for e in per_epoch], "-", color="C0",
            label="their mean")
    if live is not None:
        column = {"eval_acc": "test_acc", "eval_loss": "test_loss"}.get(key, key)
        mine = live.column(column)[first_epoch - 1:]  # a quick build's is shorter
        ax.plot(range(first_epoch, first_epoch + len(mine)), mine, "o-", ms=3,
                color="C1", label=live_label)
    if key == "eval_acc":
        ax.axhline(threshold, color="grey", ls=":", lw=1, label=f"{threshold:g}%")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # whole epochs
    split = _split_name(record)
    what = {"eval_acc": f"{split} accuracy (%)", "eval_loss": f"{split} loss",
            "train_acc": "training accuracy (%)"}.get(key, key)
    ax.set(xlabel="epoch", ylabel=what, title=name)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(alpha=0.3)
    return fig


def launch_schematic(kernels: int = 6) -> Figure:
    """Why a small model gains from a CUDA graph, as a schematic (no
    measurement): eager, the CPU launches each kernel in turn and the GPU
    idles between short kernels; one graph, a single replay runs them back
    to back."""
    launch, kernel = 1.0, 0.4  # a launch outlasts a small kernel
    fig = _figure(7, 3.2)
    axes = fig.subplots(2, 1, sharex=True)
    for ax, graphed in zip(axes, (False, True)):
        if graphed:  # one replay launches the whole step
            ax.add_patch(Rectangle((0, 1.1), 0.9 * launch, 0.6, color="C0"))
            ax.text(0.45, 1.4, "replay", ha="center", va="center",
                    fontsize=8, color="white")
            starts = [launch + k * kernel for k in range(kernels)]
        else:  # a launch per kernel, one after another
            for k in range(kernels):
                ax.add_patch(Rectangle((k * launch, 1.1), 0.9 * launch, 0.6,
                                       color="C0"))
            starts = [(k + 1) * launch for k in range(kernels)]
        for start in starts:
            ax.add_patch(Rectangle((start, 0.1), 0.8 * kernel, 0.6, color="C1"))
        done = starts[-1] + kernel
        ax.axvline(done, color="grey", ls=":", lw=1)
        ax.text(done + 0.1, 0.4, "step done", fontsize=8, va="center")
        ax.set(yticks=[0.4, 1.4], yticklabels=["GPU", "CPU"], ylim=(0, 1.8))
        ax.set_title("one CUDA graph: one launch, kernels back to back" if graphed
                     else "eager: a launch per kernel; the GPU waits between "
                     "kernels", fontsize=9)
    axes[1].set(xlim=(0, kernels * launch + 2.2), xticks=[],
                xlabel="time (schematic, not to scale)")
    return fig
