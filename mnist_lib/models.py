"""The book's models, `Model_1` ... `Model_5`, from a working skeleton to round
1's final net (`Model_2` with Step 3's recipe), and round 2's candidates,
`Model_6` ... `Model_8`, of which `Model_8` is the book's final net
(`FINAL_MODEL`, with the recipe `results/protocol2.md` chose).

Every model maps (B, 1, 28, 28) images to (B, 10) log-probabilities
(`log_softmax`), which the trainer pairs with `nll_loss`. Comments give the
output size, the receptive field (RF) and the jump (j, the distance in input
pixels between neighbouring units); `mnist_lib.rf` computes the same from the
graph. After a global average pooling each unit sees the whole map: "global".

The first layer of Model_1 to Model_5 is a stride-2 convolution: on a CPU, work
at the full 28x28 resolution is the costliest part of a step (the book's
"Engineering notes" time it). Round 2's candidates (`CANDIDATES`, Model_6 to
Model_8) keep the full resolution for two convolutions and pool once; the
held-out records (results/screen.json, results/selection.json) say it was
worth its time.

Checkpoints (`save_checkpoint`, `load_checkpoint`) live in `mnist_lib.training.checkpoint`.
"""

from __future__ import annotations

import math
from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F

from .utils.layer_kinds import layer_kind


def conv_block(c_in: int, c_out: int, kernel: int = 3, stride: int = 1,
               padding: int = 0, bn: bool = True, dropout: float = 0.0,
               act: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """Conv -> (BatchNorm) -> activation (ReLU unless `act` says) ->
    (Dropout): the unit every model is built from."""
    # BatchNorm subtracts the mean of each channel: a bias before it would
    # be subtracted too, so the conv has none when BatchNorm follows.
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding,
                  bias=not bn)
    ]
    if bn:
        layers.append(nn.BatchNorm2d(c_out))
    layers.append(act())
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class Model_1(nn.Module):
    """Step 1, skeleton: the whole pipeline, no BatchNorm, no regularisation.

    Target: a net whose RF covers the digit and that learns (> 98%), to check
    data, loop and plots. It ends with a large 'classifier' convolution over
    the whole 8x8 map, which holds most of its parameters: Step 2 removes it.
    """

    def __init__(self) -> None:
        super().__init__()
        # conv_block with bn=False fixed, so each line shows the shape.
        block = partial(conv_block, bn=False)
        self.block1 = nn.Sequential(                    # input 28x28x1
            block(1, 16, stride=2, padding=1),          # 14x14x16, RF 3, j 2
            block(16, 16),                              # 12x12x16, RF 7
            block(16, 16),                              # 10x10x16, RF 11
        )
        self.block2 = nn.Sequential(
            block(16, 16),                              # 8x8x16, RF 15
        )
        self.output = nn.Conv2d(16, 10, kernel_size=8)  # 1x1x10, RF 29

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.output(self.block2(self.block1(x)))
        return F.log_softmax(x.flatten(1), dim=-1)


class Model_1_BN(nn.Module):
    """A rung of Step 2's ladder (`mnist_lib.protocol.ladder`): Model_1 with BatchNorm
    after each 3x3 convolution, and nothing else changed."""

    def __init__(self) -> None:
        super().__init__()
        self.block1 = nn.Sequential(                    # input 28x28x1
            conv_block(1, 16, stride=2, padding=1),     # 14x14x16, RF 3, j 2
            conv_block(16, 16),                         # 12x12x16, RF 7
            conv_block(16, 16),                         # 10x10x16, RF 11
        )
        self.block2 = nn.Sequential(
            conv_block(16, 16),                         # 8x8x16, RF 15
        )
        self.output = nn.Conv2d(16, 10, kernel_size=8)  # 1x1x10, RF 29

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.output(self.block2(self.block1(x)))
        return F.log_softmax(x.flatten(1), dim=-1)


class Model_1_GAP(nn.Module):
    """A rung of Step 2's ladder (`mnist_lib.protocol.ladder`): Model_1_BN whose 8x8
    output convolution gives way to global average pooling and a 1x1
    convolution, and nothing else changed: under 8,000 parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.block1 = nn.Sequential(                    # input 28x28x1
            conv_block(1, 16, stride=2, padding=1),     # 14x14x16, RF 3, j 2
            conv_block(16, 16),                         # 12x12x16, RF 7
            conv_block(16, 16),                         # 10x10x16, RF 11
        )
        self.block2 = nn.Sequential(
            conv_block(16, 16),                         # 8x8x16, RF 15
        )
        self.output = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),                    # 1x1x16, RF global
            nn.Conv2d(16, 10, kernel_size=1),           # 1x1x10
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.output(self.block2(self.block1(x)))
        return F.log_softmax(x.flatten(1), dim=-1)


class Model_2(nn.Module):
    """Step 2, under 8,000 parameters: BatchNorm after each 3x3 convolution,
    global average pooling and a 1x1 convolution instead of Model_1's 8x8
    output convolution, and the budget spent on depth: narrower early layers
    pay for a fifth 3x3 convolution (padded, so the map stays 8x8), which
    takes the RF before the pooling from 15 (Model_1_GAP) to 19 pixels.
    """

    def __init__(self) -> None:
        super().__init__()
        self.block1 = nn.Sequential(                    # input 28x28x1
            conv_block(1, 10, stride=2, padding=1),     # 14x14x10, RF 3, j 2
            conv_block(10, 12),                         # 12x12x12, RF 7
            conv_block(12, 14),                         # 10x10x14, RF 11
        )
        self.block2 = nn.Sequential(
            conv_block(14, 16),                         # 8x8x16, RF 15
            conv_block(16, 16, padding=1),              # 8x8x16, RF 19
        )
        self.output = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),                    # 1x1x16, RF global
            nn.Conv2d(16, 10, kernel_size=1),           # 1x1x10
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.output(self.block2(self.block1(x)))
        return F.log_softmax(x.flatten(1), dim=-1)


class Model_3(nn.Module):
    """A rung of Step 2's ladder: Model_2 with 5% dropout after every 3x3
    convolution (dropout adds no parameters). Whether it helps is measured on
    held-out digits, over seeds (Step 2, rung 6)."""

    def __init__(self, dropout: float = 0.05) -> None:
        super().__init__()
        # conv_block with the dropout fixed, so each line shows the shape.
        block = partial(conv_block, dropout=dropout)
        self.block1 = nn.Sequential(                    # input 28x28x1
            block(1, 10, stride=2, padding=1),          # 14x14x10, RF 3, j 2
            block(10, 12),                              # 12x12x12, RF 7
            block(12, 14),                              # 10x10x14, RF 11
        )
        self.block2 = nn.Sequential(
            block(14, 16),                              # 8x8x16, RF 15
            block(16, 16, padding=1),                   # 8x8x16, RF 19
        )
        self.output = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),                    # 1x1x16, RF global
            nn.Conv2d(16, 10, kernel_size=1),           # 1x1x10
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.output(self.block2(self.block1(x)))
        return F.log_softmax(x.flatten(1), dim=-1)


class Model_4(nn.Module):
    """Step 3, a rung of the held-out ladder: a transition block (max-pool +
    1x1) after the third convolution. The pool quarters the later maps, so
    the first layers can be wider while the whole net does less arithmetic
    than Model_3. Dropout is off by default (`dropout=` turns it on).
    Whether the full recipe still needs the block is the decision
    chapter's question.
    """

    def __init__(self, dropout: float = 0.0) -> None:
        super().__init__()
        # conv_block with the dropout fixed, so each line shows the shape.
        block = partial(conv_block, dropout=dropout)
        self.block1 = nn.Sequential(                    # input 28x28x1
            block(1, 10, stride=2, padding=1),          # 14x14x10, RF 3, j 2
            block(10, 16),                              # 12x12x16, RF 7
            block(16, 16),                              # 10x10x16, RF 11
        )
        self.transition = nn.Sequential(
            nn.MaxPool2d(2),                            # 5x5x16, RF 13, j 4
            block(16, 10, kernel=1),                    # 5x5x10, RF 13
        )
        self.block2 = nn.Sequential(
            block(10, 16, padding=1),                   # 5x5x16, RF 21
            block(16, 14),                              # 3x3x14, RF 29
        )
        self.output = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),                    # 1x1x14, RF global
            nn.Conv2d(14, 10, kernel_size=1),           # 1x1x10
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.output(self.block2(self.transition(self.block1(x))))
        return F.log_softmax(x.flatten(1), dim=-1)


class Model_5(nn.Module):
    """Stretch: Model_4's layout under 5,000 parameters (the capstone's
    worked alternative). Every convolution but the transition's 1x1 is
    narrower than Model_4's, and GELU replaces ReLU: ReLU passes no gradient
    back for a negative input, GELU a small one (a choice the book has not
    measured on its own)."""

    def __init__(self, dropout: float = 0.0) -> None:
        super().__init__()
        # conv_block with dropout and GELU fixed, so each line shows a shape.
        block = partial(conv_block, dropout=dropout, act=nn.GELU)
        self.block1 = nn.Sequential(                    # input 28x28x1
            block(1, 8, stride=2, padding=1),           # 14x14x8, RF 3, j 2
            block(8, 12),                               # 12x12x12, RF 7
            block(12, 12),                              # 10x10x12, RF 11
        )
        self.transition = nn.Sequential(
            nn.MaxPool2d(2),                            # 5x5x12, RF 13, j 4
            block(12, 10, kernel=1),                    # 5x5x10, RF 13
        )
        self.block2 = nn.Sequential(
            block(10, 12, padding=1),                   # 5x5x12, RF 21
            block(12, 12),                              # 3x3x12, RF 29
        )
        self.output = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),                    # 1x1x12, RF global
            nn.Conv2d(12, 10, kernel_size=1),           # 1x1x10
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.output(self.block2(self.transition(self.block1(x))))
        return F.log_softmax(x.flatten(1), dim=-1)


class Model_4_dropout(Model_4):
    """Model_4 with Model_3's 5% dropout after every convolution: the held-out
    ladder's rungs from the transition block on, and the candidate that
    `results/protocol.md` takes ingredients out of."""

    def __init__(self) -> None:
        super().__init__(dropout=0.05)


class Model_4_no_pool(Model_4_dropout):
    """Step 3's Exercise 2 (results/exercise_pool.md): Model_4_dropout with
    the transition's max-pool taken out and nothing else changed, so the
    jump stays 2 and the last convolutions work on larger maps. The same
    weights, in the same order, as Model_4_dropout: one seed starts both
    from the same numbers."""

    def __init__(self) -> None:
        super().__init__()
        self.transition[0] = nn.Identity()  # the pool, taken out
        # Model_4_dropout's layers, with the shapes they now give:
        # block1: 3x3 stride 2                          # 14x14x10, RF 3, j 2
        # block1: 3x3                                   # 12x12x16, RF 7
        # block1: 3x3                                   # 10x10x16, RF 11
        # transition: 1x1                               # 10x10x10, RF 11, j 2
        # block2: 3x3 padding 1                         # 10x10x16, RF 15
        # block2: 3x3                                   # 8x8x14, RF 19
        # output: global average pooling                # 1x1x14, RF global
        # output: 1x1                                   # 1x1x10


# ------------------------------------------------- round 2's candidates
# The layout most published solutions of this assignment share, which round 1
# never tried (results/protocol2.md): 3x3 convolutions at the full 28x28
# resolution, one max-pool once the RF is 5-7, a 1x1 transition, more 3x3
# convolutions, global average pooling, a 1x1 to 10 classes. Resolution costs
# no parameters, only time: each step here does 2-3 times Model_2's work.

class Model_6(nn.Module):
    """Round 2's candidate: two 3x3 convolutions at full resolution, the
    max-pool at RF 5, a 1x1 transition, three 3x3 convolutions, GAP."""

    def __init__(self) -> None:
        super().__init__()
        self.block1 = nn.Sequential(                    # input 28x28x1
            conv_block(1, 8),                           # 26x26x8, RF 3
            conv_block(8, 16),                          # 24x24x16, RF 5
        )
        self.transition = nn.Sequential(
            nn.MaxPool2d(2),                            # 12x12x16, RF 6, j 2
            conv_block(16, 10, kernel=1),               # 12x12x10, RF 6
        )
        self.block2 = nn.Sequential(
            conv_block(10, 16),                         # 10x10x16, RF 10
            conv_block(16, 16),                         # 8x8x16, RF 14
            conv_block(16, 16),                         # 6x6x16, RF 18
        )
        self.output = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),                    # 1x1x16, RF global
            nn.Conv2d(16, 10, kernel_size=1),           # 1x1x10
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.output(self.block2(self.transition(self.block1(x))))
        return F.log_softmax(x.flatten(1), dim=-1)


class Model_7(nn.Module):
    """Round 2's candidate: Model_6's layout with the pool one layer later:
    three 3x3 convolutions at full resolution, the max-pool at RF 7."""

    def __init__(self) -> None:
        super().__init__()
        self.block1 = nn.Sequential(                    # input 28x28x1
            conv_block(1, 8),                           # 26x26x8, RF 3
            conv_block(8, 8),                           # 24x24x8, RF 5
            conv_block(8, 16),                          # 22x22x16, RF 7
        )
        self.transition = nn.Sequential(
            nn.MaxPool2d(2),                            # 11x11x16, RF 8, j 2
            conv_block(16, 8, kernel=1),                # 11x11x8, RF 8
        )
        self.block2 = nn.Sequential(
            conv_block(8, 12),                          # 9x9x12, RF 12
            conv_block(12, 16),                         # 7x7x16, RF 16
            conv_block(16, 16),                         # 5x5x16, RF 20
        )
        self.output = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),                    # 1x1x16, RF global
            nn.Conv2d(16, 10, kernel_size=1),           # 1x1x10
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.output(self.block2(self.transition(self.block1(x))))
        return F.log_softmax(x.flatten(1), dim=-1)


class Model_8(nn.Module):
    """Round 2's candidate: Model_6 with its widths after the pool spread
    over four 3x3 convolutions instead of three (RF 22 before the GAP)."""

    def __init__(self) -> None:
        super().__init__()
        self.block1 = nn.Sequential(                    # input 28x28x1
            conv_block(1, 8),                           # 26x26x8, RF 3
            conv_block(8, 16),                          # 24x24x16, RF 5
        )
        self.transition = nn.Sequential(
            nn.MaxPool2d(2),                            # 12x12x16, RF 6, j 2
            conv_block(16, 8, kernel=1),                # 12x12x8, RF 6
        )
        self.block2 = nn.Sequential(
            conv_block(8, 12),                          # 10x10x12, RF 10
            conv_block(12, 12),                         # 8x8x12, RF 14
            conv_block(12, 16),                         # 6x6x16, RF 18
            conv_block(16, 16),                         # 4x4x16, RF 22
        )
        self.output = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),                    # 1x1x16, RF global
            nn.Conv2d(16, 10, kernel_size=1),           # 1x1x10
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.output(self.block2(self.transition(self.block1(x))))
        return F.log_softmax(x.flatten(1), dim=-1)


class Starter(nn.Module):
    """The capstone's starter (`MyNet` on its page): Model_2's layers,
    narrowed to fit the capstone's 5,000 parameters. Its record,
    `results/seeds_Starter.json`, is the baseline a student starts from."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(                  # input 28x28x1
            conv_block(1, 8, stride=2, padding=1),      # 14x14x8, RF 3, j 2
            conv_block(8, 8),                           # 12x12x8, RF 7
            conv_block(8, 10),                          # 10x10x10, RF 11
            conv_block(10, 12),                         # 8x8x12, RF 15
            conv_block(12, 12, padding=1),              # 8x8x12, RF 19
        )
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),                    # 1x1x12, RF global
            nn.Conv2d(12, 10, kernel_size=1),           # 1x1x10
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.features(x))
        return F.log_softmax(x.flatten(1), dim=-1)


class StarterFull(Starter):
    """The capstone's worked step (`MyNetFull` on its page, the same
    layers): the starter with its first two convolutions at full
    resolution, then one 2x2 max-pool. The same weights, an RF of 18
    pixels instead of 19, about twice the multiply-adds (its first maps
    are larger). Its record, `results/seeds_StarterFull.json`, was
    planned in `results/seeds_StarterFull.md` before any run."""

    def __init__(self) -> None:
        nn.Module.__init__(self)  # Starter's layers are not built first
        self.features = nn.Sequential(                  # input 28x28x1
            conv_block(1, 8),                           # 26x26x8, RF 3
            conv_block(8, 8),                           # 24x24x8, RF 5
            nn.MaxPool2d(2),                            # 12x12x8, RF 6, j 2
            conv_block(8, 10),                          # 10x10x10, RF 10
            conv_block(10, 12),                         # 8x8x12, RF 14
            conv_block(12, 12, padding=1),              # 8x8x12, RF 18
        )
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),                    # 1x1x12, RF global
            nn.Conv2d(12, 10, kernel_size=1),           # 1x1x10
        )


MODELS: dict[str, type[nn.Module]] = {
    "Model_1": Model_1, "Model_2": Model_2, "Model_3": Model_3,
    "Model_4": Model_4, "Model_5": Model_5,
}
FINAL_MODEL = "Model_8"  # round 2's choice (results/selection.json)
# Nets that are only rungs of the held-out ladder (`mnist_lib.protocol.ladder`):
# trained by the ladder, not by a chapter.
RUNG_MODELS: dict[str, type[nn.Module]] = {
    "Model_1_BN": Model_1_BN, "Model_1_GAP": Model_1_GAP,
    "Model_4_dropout": Model_4_dropout,
}
# Nets that only an exercise's or the capstone's record trains
# (results/exercise_pool.md, results/seeds_Starter.md,
# results/seeds_StarterFull.md).
EXERCISE_MODELS: dict[str, type[nn.Module]] = {
    "Model_4_no_pool": Model_4_no_pool, "Starter": Starter,
    "StarterFull": StarterFull,
}
# Round 2's candidate nets (results/protocol2.md), trained by its studies.
CANDIDATES: dict[str, type[nn.Module]] = {
    "Model_6": Model_6, "Model_7": Model_7, "Model_8": Model_8,
}


# Every name `get_model` builds.
NAMED = MODELS | RUNG_MODELS | CANDIDATES | EXERCISE_MODELS


def get_model(name: str) -> nn.Module:
    """Build a model by its book name, e.g. `get_model("Model_4")` (or a
    ladder rung's, `RUNG_MODELS`)."""
    if name not in NAMED:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(NAMED)}")
    return NAMED[name]()


# What, besides its type and weights' shapes, makes one layer differ from another.
_LAYER_SETTINGS = ("kernel_size", "stride", "padding", "dilation", "groups",
                   "output_size", "p")


def layer_list(model: nn.Module) -> list[str]:
    """The model's layers (modules without children) in order, each as its type,
    weight shapes and settings, e.g. "Conv2d 8x1x3x3 kernel_size=(3, 3)
    stride=(2, 2) ...". Records store it, so that a changed model cannot pass
    for the recorded one. Built from attributes, not `repr`, whose wording
    changes between torch versions."""
    rows = []
    for m in model.modules():
        if list(m.children()):
            continue
        shapes = ["x".join(map(str, p.shape)) for p in m.parameters(recurse=False)]
        settings = [f"{k}={getattr(m, k)}" for k in _LAYER_SETTINGS if hasattr(m, k)]
        rows.append(" ".join([type(m).__name__, *shapes, *settings]))
    return rows


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters."""
    return sum(p.numel() for p in model.parameters()
               if p.requires_grad or not trainable_only)


def count_multiply_adds(model: nn.Module, input_size: tuple[int, ...] = (1, 28, 28)
                        ) -> int:
    """Multiply-adds of the model's convolutions and linear layers for one
    input of `input_size` (C, H, W): per output value, one for each weight it
    reads. BatchNorm, activations and pooling are left out (a few per value)."""
    total = 0

    def count(module: nn.Module, _inp, out: torch.Tensor) -> None:
        nonlocal total
        kind = layer_kind(module)
        if kind is not None and kind.name == "conv":
            per_value = module.in_channels // module.groups * math.prod(module.kernel_size)
        elif kind is not None and kind.name == "linear":
            per_value = module.in_features
        else:
            return
        total += out[0].numel() * per_value

    hooks = [m.register_forward_hook(count) for m in model.modules()]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, *input_size))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return total
