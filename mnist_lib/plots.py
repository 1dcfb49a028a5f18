"""Figures for the book. Each function returns a matplotlib Figure (no global state).

They read a `History` or tensors; none of them trains or animates anything.
"""

from __future__ import annotations

import io
import math
from typing import Sequence

import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from .evaluation import misclassified
from .history import History
from .target import TARGET


class BookFigure(Figure):
    """A Figure that shows itself as a PNG in notebooks and in `glue`.

    Built without pyplot (no global state, nothing left open), so it cannot
    rely on pyplot's inline backend to be displayed.
    """

    def _repr_png_(self) -> bytes:
        buf = io.BytesIO()
        self.savefig(buf, format="png", dpi=100)
        return buf.getvalue()


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
                   label=f"{TARGET.accuracy:g}% target")
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


def lr_schedule(history: History) -> Figure:
    """The learning rate at the end of each epoch."""
    fig = _figure(5, 3)
    ax = fig.subplots()
    ax.plot(history.column("epoch"), history.column("lr"), "o-")
    ax.set(xlabel="epoch", ylabel="learning rate", title="LR schedule")
    ax.grid(alpha=0.3)
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


def ladder(record: dict, names: Sequence[str] | None = None,
           threshold: float = TARGET.accuracy) -> Figure:
    """The design ladder (`mnist_lib.ladder`): one column per rung (those in
    `names`, default all), one dot per seed at its mean test accuracy over
    the last epochs the target judges, filled where the seed met the rule, a
    line at the rung's mean, and the book's step of each rung shaded."""
    import textwrap

    rungs = [r for r in record["rungs"] if names is None or r["name"] in names]
    if not rungs or any(not r["seeds"] for r in rungs):
        raise ValueError("ladder needs rungs with at least one recorded seed each")
    fig = _figure(max(4.0, 0.85 * len(rungs) + 1.5), 3.4)
    ax = fig.subplots()
    for i, rung in enumerate(rungs):
        vals = [sum(s["last"]) / len(s["last"]) for s in rung["seeds"]]
        n = len(vals)
        xs = [i + (0.5 * k / (n - 1) - 0.25 if n > 1 else 0.0) for k in range(n)]
        color = f"C{rung['step'] - 1}"
        for met, face in ((True, color), (False, "none")):
            dots = [(x, v) for x, v, s in zip(xs, vals, rung["seeds"])
                    if s["passed"] == met]
            if dots:
                ax.plot(*zip(*dots), "o", ms=4, color=color, mfc=face)
        mean = sum(vals) / n
        ax.plot([i - 0.3, i + 0.3], [mean, mean], "k-", lw=1.5)
    for step in sorted({r["step"] for r in rungs}):
        ax.plot([], [], "o", color=f"C{step - 1}", label=f"Step {step}")
    ax.axhline(threshold, color="grey", ls=":", lw=1, label=f"{threshold:g}% target")
    ax.plot([], [], "o", color="grey", mfc="none", label="rule not met")
    ax.set_xticks(range(len(rungs)),
                  [textwrap.fill(r["name"], 11) for r in rungs], fontsize=8)
    ax.set(ylabel=f"mean of the last {TARGET.last} (%)",
           title="Each rung over seeds (line: mean)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(alpha=0.3, axis="y")
    return fig
