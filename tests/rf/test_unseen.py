"""What the traced graph did not see, or saw wrong (issue #47): windows
computed from the map's size, hooks, forwards replaced on an instance,
declarations on 5-D maps, the printed numbers, pads on moved axes, a channel
picked by an int index, and refusals that named the wrong cause. Each case
gives the right number, checked against the gradient's support or
arithmetic done here, or a refusal that names the real cause and a fix that
works."""

from __future__ import annotations

import types

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mnist_lib.rf import POINTWISE, RFError, Window, receptive_field
from mnist_lib.rf.table import fmt_cell
from tests.rf.helpers import averaging, boxes, spans, support


def _message(model, size, **kwargs) -> list[str]:
    """The lines of the RFError that `receptive_field` raises."""
    with pytest.raises(RFError) as err:
        receptive_field(model, size, **kwargs)
    return str(err.value).splitlines()


# --------------------------- 1. a pooling window computed from the map's size
class CifarHead(nn.Module):
    """The CIFAR ResNets' end: three 3x3 convs (two of stride 2: RF 9, jump
    4), then F.avg_pool2d with a window of the map's size, read as `how`."""

    WINDOWS = {"x.size()[3]": lambda x: F.avg_pool2d(x, x.size()[3]),
               "x.size(-1)": lambda x: F.avg_pool2d(x, x.size(-1)),
               "kernel_size=x.shape[2]": lambda x: F.avg_pool2d(
                   x, kernel_size=x.shape[2])}

    def __init__(self, how: str):
        super().__init__()
        self.pool = self.WINDOWS[how]
        self.convs = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1),
                                   nn.Conv2d(4, 4, 3, 2, 1), nn.Conv2d(4, 4, 3, 2, 1))

    def forward(self, x):
        return self.pool(self.convs(x))


@pytest.mark.parametrize("how, size", [("x.size()[3]", (48, 28)),
                                       ("x.size(-1)", (48, 28)),
                                       ("kernel_size=x.shape[2]", (28, 48))])
def test_a_window_of_the_map_s_size_on_a_non_square_map_is_that_window(how, size):
    # The map is 12x7 (or 7x12): a 7x7 window of stride 7 covers 7 of the 12
    # rows. Before: "global". Now the window: RF 9 + 6 x 4 = 33, not global.
    t = receptive_field(CifarHead(how), (1, *size))
    f = t.final
    assert (f.kernel, f.n_out, f.r_out, f.global_out) == (7, 1, 33, False)
    # The gradient: the unit reaches the box, cut to the image, and no more:
    # the last rows (or columns) of the image never reach it.
    reached = spans(averaging(CifarHead(how)), size)
    assert reached == boxes(f, size, clip=True)
    assert min(hi for _, hi in reached) < max(size)


@pytest.mark.parametrize("how", list(CifarHead.WINDOWS))
def test_a_window_of_the_map_s_size_on_a_square_map_is_global(how):
    f = receptive_field(CifarHead(how), (1, 32, 32)).final
    assert f.global_out and f.r_out == 9 and f.j_out is None
    assert spans(averaging(CifarHead(how)), (32, 32)) == spans(
        averaging(CifarHead(how).convs), (32, 32), centre=False)


# ------------------------------------------ 2. forward hooks and pre-hooks
def blur(module, inputs, output):
    """A forward hook that changes what its module computes: a 3x3 blur."""
    return F.avg_pool2d(output, 3, 1, 1)


def shift(module, inputs):
    """A forward pre-hook that blurs its module's input."""
    return (F.avg_pool2d(inputs[0], 3, 1, 1),)


def _two_convs():
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.Conv2d(2, 2, 3))


@pytest.mark.parametrize("hook, named", [
    (lambda m: m[0].register_forward_hook(blur), "module '0' (Conv2d) has a "
                                                 "forward hook (blur)"),
    (lambda m: m[1].register_forward_pre_hook(shift), "module '1' (Conv2d) has a "
                                                      "forward pre-hook (shift)"),
], ids=["forward hook", "pre-hook"])
def test_a_hook_that_changes_a_leaf_s_output_is_refused(hook, named):
    model = _two_convs()
    hook(model)
    # The truth: 3 + 2 (blur) + 2 = 7, where the table said 5.
    top, _, bottom, _ = support(averaging(model), (20, 20))
    assert bottom - top == 7
    first, fix, more = _message(model, (1, 20, 20))
    assert first == f"{named} that changes what it computes, unseen by torch.fx."
    assert fix.startswith("Fix: do that in forward() (a module of its own, say)")
    assert "handle.remove()" in more


def test_what_the_hook_message_says_to_do_gives_the_gradient_s_rf():
    class Blurred(nn.Module):  # the blur in forward(), as the fix says
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv2d(1, 2, 3), nn.Conv2d(2, 2, 3)

        def forward(self, x):
            return self.b(F.avg_pool2d(self.a(x), 3, 1, 1))

    assert receptive_field(Blurred(), (1, 20, 20)).final.r_out == 7
    model = _two_convs()
    handle = model[0].register_forward_hook(blur)
    handle.remove()  # or removed while computing the RF
    assert receptive_field(model, (1, 20, 20)).final.r_out == 5


def test_a_global_hook_that_changes_outputs_is_refused():
    def blur_convs(module, inputs, output):
        return F.avg_pool2d(output, 3, 1, 1) if isinstance(module, nn.Conv2d) else None

    handle = nn.modules.module.register_module_forward_hook(blur_convs)
    try:
        first = _message(_two_convs(), (1, 20, 20))[0]
    finally:
        handle.remove()
    assert first.startswith("module '0' (Conv2d) has a global forward hook "
                            "(blur_convs) that changes")


def test_a_hook_that_only_looks_is_no_reason_to_refuse():
    model, seen = _two_convs(), []
    model[0].register_forward_hook(lambda m, i, o: seen.append(o.shape))
    model[1].register_forward_pre_hook(lambda m, args: None)
    t = receptive_field(model, (1, 20, 20))
    assert t.final.r_out == 5 and seen  # it ran, on real tensors


def test_a_hook_on_a_module_that_is_traced_through_is_followed():
    # torch.fx traces a Sequential's call, hooks included: RF 7, as the
    # gradient says (before, too).
    model = nn.Sequential(nn.Sequential(nn.Conv2d(1, 2, 3)), nn.Conv2d(2, 2, 3))
    model[0].register_forward_hook(blur)
    top, _, bottom, _ = support(averaging(model), (20, 20))
    assert receptive_field(model, (1, 20, 20)).final.r_out == bottom - top == 7


# --------------------------------- 3. a forward replaced on the instance
def _layer2(self, x):
    """torchvision's resnet18 cut after layer2, as one cuts it for features."""
    x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
    return self.layer2(self.layer1(x))


def test_a_resnet_cut_by_replacing_its_forward_is_the_cut_net():
    tv = pytest.importorskip("torchvision")
    model = tv.models.resnet18()
    model.forward = types.MethodType(_layer2, model)
    # Before: the whole net (RF 435, global). The cut net: RF 99, jump 8.
    t = receptive_field(model, (3, 160, 160))
    f = t.final
    assert (f.name, f.r_out, f.j_out, f.n_out, f.global_out) == (
        "layer2.1.relu_2", 99, 8, 20, False)
    assert t.headline == "RF 99 px, jump 8 px, at 'layer2.1.add' (map 20x20)"
    cut = averaging(nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool,
                                  model.layer1, model.layer2))
    assert spans(cut, (160, 160), channels=3) == boxes(f, (160, 160))


def test_a_conv_whose_forward_is_replaced_is_traced_through():
    model = _two_convs()

    def blurred(self, x):  # a blur before the convolution
        return self._conv_forward(F.avg_pool2d(x, 3, 1, 1), self.weight, self.bias)

    model[0].forward = types.MethodType(blurred, model[0])
    # Before: RF 5, the Conv2d's own. Now its replaced forward: 7.
    top, _, bottom, _ = support(averaging(model), (20, 20))
    t = receptive_field(model, (1, 20, 20))
    assert t.final.r_out == bottom - top == 7
    assert [r.kind for r in t.layers()] == ["avg_pool2d", "conv2d", "Conv2d"]


def test_a_forward_replaced_by_a_function_is_traced():
    model = nn.Sequential(*[nn.Conv2d(1, 1, 3) for _ in range(3)])
    model.forward = lambda x: model[1](model[0](x))  # the first two convs
    # Before: RF 7, the three convs of the class's forward.
    top, _, bottom, _ = support(averaging(model), (20, 20))
    assert receptive_field(model, (1, 20, 20)).final.r_out == bottom - top == 5


# ------------------------------------------ 4. declarations on 5-D maps
class TwoConv3d(nn.Module):
    """Two 3x3x3 convs: a window of 5, declared (wrongly or rightly)."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv3d(1, 2, 3), nn.Conv3d(2, 2, 3)

    def forward(self, x):
        return self.b(self.a(x))


def test_a_declaration_on_a_clip_is_checked_against_the_map_torch_gives():
    pooled = nn.Sequential(nn.Conv3d(1, 2, 3), nn.MaxPool3d(2))
    # Before, following the refusal's advice gave n 14 where torch gives 7.
    first = _message(pooled, (1, 8, 16, 16), custom={nn.MaxPool3d: POINTWISE})[0]
    assert first == ("module '1' (MaxPool3d) gives a 3x7x7 map, but the declaration "
                     "makes it 6x14x14.")
    first = _message(nn.Sequential(TwoConv3d()), (1, 8, 16, 16),
                     custom={TwoConv3d: Window(3)})[0]
    assert first == ("module '0' (TwoConv3d) gives a 4x12x12 map, but the "
                     "declaration makes it 6x14x14.")
    # The right declaration is the window the gradient sees.
    t = receptive_field(nn.Sequential(TwoConv3d()), (1, 12, 16, 16),
                        custom={TwoConv3d: Window(5)})
    assert t.final.r_out == 5 and t.final.n_out == (8, 12, 12)
    assert spans(averaging(nn.Sequential(TwoConv3d())), (12, 16, 16)) == boxes(
        t.final, (12, 16, 16))


class MadeFiveD(nn.Module):
    """A clip given as an image of 8 channels, (8, H, W), made 5-D inside."""

    def __init__(self, *layers):
        super().__init__()
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x.unsqueeze(1))


def test_a_clip_made_inside_the_model_is_checked_too():
    # Before: n 14, RF 3, where torch gives a 7x7 map (and RF 4).
    model = MadeFiveD(nn.Conv3d(1, 2, 3), nn.MaxPool3d(2))
    first = _message(model, (8, 16, 16), custom={nn.Conv3d: Window(3, 1, 0, 1),
                                                 nn.MaxPool3d: POINTWISE})[0]
    assert first == ("module 'net.1' (MaxPool3d) gives a 7x7 map, but the "
                     "declaration makes it 14x14.")
    # Declared with its own stride and dilation (of 3 axes), the Conv3d is
    # refused as undeclared, below (#57: a Window's settings left out are
    # each module's own).
    first = _message(model, (8, 16, 16), custom={nn.Conv3d: Window(3)})[0]
    assert first == ("module 'net.0' (Conv3d) slides a 3-D window over a map of 2 "
                     "spatial axes (height or width).")
    # Undeclared, the Conv3d finds two spatial axes where it slides over three.
    first, fix = _message(model, (8, 16, 16))[:2]
    assert first == ("module 'net.0' (Conv3d) slides a 3-D window over a map of 2 "
                     "spatial axes (height or width).")
    assert "(C, D, H, W)" in fix
    # Given as a clip, it is computed per axis.
    t = receptive_field(nn.Sequential(nn.Conv3d(1, 2, 3), nn.MaxPool3d(2)),
                        (1, 8, 16, 16))
    assert (t.final.n_out, t.final.r_out) == ((3, 7, 7), 4)


# ------------------------------------ 5. the printed table, number for number
@pytest.mark.parametrize("value, text", [(-1022.5, "-1022.5"), (12000.5, "12000.5"),
                                         (0.25, "0.25"), (3.0, "3"), (-2.0, "-2"),
                                         (1e-7, "0.0000001"),
                                         (2.0 ** 70, "1180591620717411303424")])
def test_a_cell_is_the_number_the_row_holds(value, text):
    # Before: 4 significant digits ("-1022", "1.2e+04").
    assert fmt_cell(value) == text and float(text) == value


class WaveNet(nn.Module):
    """Two stacks of causal 2-sample convs, dilated 1, 2, ..., 512 and each
    padded on the left only: the first unit is centred at 0.5 - 1023."""

    def __init__(self):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv1d(1, 1, 2, dilation=2 ** i)
                                   for _ in range(2) for i in range(10))

    def forward(self, x):
        for conv in self.convs:
            x = conv(F.pad(x, (conv.dilation[0], 0)))
        return x


def test_a_wavenet_s_start_prints_as_the_row_holds_it():
    t = receptive_field(WaveNet(), (1, 5000))
    f = t.final
    # Each causal layer: start += (d / 2 - d) = -d / 2; twice 1 + 2 + ... + 512.
    assert (f.r_out, f.start_out, f.n_out) == (2047, -1022.5, 5000)
    assert t.to_text().splitlines()[-1].split()[-1] == "-1022.5"
    assert t.to_frame()["start_out"].iloc[-1] == -1022.5
    # The gradient: unit 2500 sees samples 2500 - 2046 to 2500, as its box says.
    assert spans(averaging(WaveNet()), (5000,)) == boxes(f, (5000,)) == [(454, 2501)]


def test_a_start_of_twelve_thousand_and_a_half_prints_whole():
    class Late(nn.Module):  # the last 4 samples of 12004
        def forward(self, x):
            return x[..., 12000:]

    t = receptive_field(Late(), (1, 12004))
    assert t.final.start_out == 12000.5
    assert t.to_text().splitlines()[-1].split()[-1] == "12000.5"
    assert "12000.5" in t.to_markdown() and "12000.5" in t._repr_html_()


# ------------------------------------------ 6. F.pad on axes moved elsewhere
class PadMoved(nn.Module):
    """A 3x3 conv, a pad of 2 pixels before the width (`how`: on a
    channels-last map, with F.pad or nn.ZeroPad2d) or before the height (on
    a map whose height and width are swapped), then a 3x3 conv."""

    def __init__(self, how: str):
        super().__init__()
        self.how = how
        self.a, self.b = nn.Conv2d(1, 2, 3), nn.Conv2d(2, 2, 3)
        self.pad = nn.ZeroPad2d((0, 0, 2, 0))

    def forward(self, x):
        y = self.a(x)
        if self.how == "channels-last, F.pad":   # (N, H, W, C): W is axis -2
            y = F.pad(y.permute(0, 2, 3, 1), (0, 0, 2, 0)).permute(0, 3, 1, 2)
        elif self.how == "channels-last, ZeroPad2d":
            y = self.pad(y.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        else:                                     # (N, C, W, H): H is last
            y = F.pad(y.transpose(2, 3), (2, 0)).transpose(2, 3)
        return self.b(y)


@pytest.mark.parametrize("how", ["channels-last, F.pad", "channels-last, ZeroPad2d",
                                 "transposed"])
def test_a_pad_after_a_permute_pads_the_axis_it_finds(how):
    # Before: refused as "please report this model" (the map's size told the
    # wrong axis apart), or, where the size did not change, padded wrongly.
    size = (24, 24)
    f = receptive_field(PadMoved(how), (1, *size)).final
    n = tuple(PadMoved(how)(torch.zeros(1, 1, *size)).shape[2:])
    assert f.n_out == n and f.r_out == 5
    padded = 0 if how == "transposed" else 1  # the axis padded: start 2 earlier
    assert f.start_out[padded] == 2.5 - 2 and f.start_out[1 - padded] == 2.5
    assert spans(averaging(PadMoved(how)), size) == boxes(f, size)


def test_pads_that_keep_the_map_square_land_on_the_right_axes():
    # Height last (transposed), padded 2 before; the width padded 2 after:
    # the map stays 20x20, so no size told the axes apart. Before: the
    # starts swapped, (2.5, 0.5), without a word.
    class Both(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv2d(1, 2, 3), nn.Conv2d(2, 2, 3)

        def forward(self, x):
            y = F.pad(self.a(x).transpose(2, 3), (2, 0, 0, 2))
            return self.b(y.transpose(2, 3))

    f = receptive_field(Both(), (1, 24, 24)).final
    assert (f.n_out, f.start_out) == (22, (0.5, 2.5))
    assert spans(averaging(Both()), (24, 24)) == boxes(f, (24, 24))


def test_a_pad_of_merged_positions_is_refused():
    class PadFlat(nn.Module):
        def forward(self, x):
            return F.pad(x.flatten(2), (1, 0))

    assert _message(PadFlat(), (1, 8, 8))[0] == ("operation 'pad' pads a flattened "
                                                 "map.")


# ------------------------------ 7. a channel picked with an int (x[:, 0])
@pytest.mark.parametrize("name, size", [("googlenet", 224), ("inception_v3", 299)])
def test_transform_input_nets_are_followed_as_without_it(name, size):
    tv = pytest.importorskip("torchvision")

    def net(transform):
        return getattr(tv.models, name)(weights=None, init_weights=False,
                                        aux_logits=False, transform_input=transform)

    # Before: refused, blaming "an index that drops or adds an axis".
    t, plain = (receptive_field(net(v), (3, size, size)) for v in (True, False))
    assert t.headline == plain.headline
    assert [(r.name, r.r_out) for r in t.layers() if r.kind != "cat"][-5:] == [
        (r.name, r.r_out) for r in plain.layers() if r.kind != "cat"][-5:]


class PickChannel(nn.Module):
    """Each channel of an RGB image weighted on its own, as
    `transform_input` does (x[:, 0] drops the channel axis, unsqueeze brings
    it back), then a 3x3 conv."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3)

    def forward(self, x):
        x = torch.cat([torch.unsqueeze(x[:, c], 1) * (c + 1) for c in range(3)], 1)
        return self.conv(x)


def test_an_int_index_on_the_channels_is_followed_and_on_space_named():
    t = receptive_field(PickChannel(), (3, 12, 12))
    assert t.final.r_out == 3 and t.final.n_out == 10
    assert spans(averaging(PickChannel()), (12, 12), channels=3) == boxes(
        t.final, (12, 12))

    class Row(nn.Module):
        def forward(self, x):
            return x[..., 0]

    for size, axis in [((1, 8, 8), "width"), ((1, 8), "length")]:
        first = _message(Row(), size)[0]
        assert first == (f"operation 'getitem' indexes a map with an int that drops "
                         f"the {axis}, a spatial axis.")


def test_a_spatial_axis_of_one_unit_squeezed_away_leaves_the_positions_merged():
    # A CRNN's (N, C, 1, W) map squeezed to (N, C, W): its W positions on one
    # axis, as after flatten; a mean over them is a global pooling.
    class Squeezed(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, (8, 3))

        def forward(self, x):
            return self.conv(x).squeeze(2).mean(-1)

    f = receptive_field(Squeezed(), (1, 8, 20)).final
    assert (f.global_out, f.r_out) == (True, (8, 3))


# --------------------------------------- 8. refusals that named the wrong cause
class AdaptiveHalf(nn.Module):
    """A 3x3 conv, then adaptive pooling to half the map, its size computed."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)

    def forward(self, x):
        x = self.conv(x)
        return F.adaptive_avg_pool2d(x, (x.size(2) // 2, x.size(3) // 2))


def test_an_adaptive_pool_to_a_computed_size_is_that_pool():
    # Before: TypeError: unsupported operand type(s) for %: 'int' and 'Node'.
    f = receptive_field(AdaptiveHalf(), (1, 22, 22)).final
    assert (f.kernel, f.n_out, f.r_out, f.j_out) == (2, 10, 4, 2)
    assert spans(averaging(AdaptiveHalf()), (22, 22)) == boxes(f, (22, 22))


def test_a_scripted_submodule_is_named_as_torchscript():
    class Scripted(nn.Module):
        def __init__(self):
            super().__init__()
            with pytest.warns(FutureWarning):  # torch.jit.script is deprecated
                self.a = torch.jit.script(nn.Conv2d(1, 4, 3))
            self.b = nn.Conv2d(4, 4, 3)

        def forward(self, x):
            return self.b(self.a(x))

    # Before: "operation 'forward' is not supported", with a declaration.
    first, fix = _message(Scripted(), (1, 20, 20))
    assert first == ("module 'a' (RecursiveScriptModule) is TorchScript "
                     "(torch.jit.script): torch.fx cannot look inside it.")
    assert fix == "Fix: put the nn.Module it was scripted from in its place."


class WritesIntoSlice(nn.Module):
    """A 3x3 conv whose first two channels are replaced by a 7x7 conv's:
    `a[:, :2] = b`, or (`cat`) the same built from its pieces."""

    def __init__(self, cat: bool = False):
        super().__init__()
        self.cat = cat
        self.a, self.b = nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(1, 2, 7, padding=3)

    def forward(self, x):
        a, b = self.a(x), self.b(x)
        if self.cat:
            return torch.cat([b, a[:, 2:]], dim=1)
        a[:, :2] = b
        return a


def test_a_write_into_a_slice_is_named_and_its_fix_works():
    # Before: blamed on "data-dependent control flow".
    first, fix, *_ = _message(WritesIntoSlice(), (1, 20, 20))
    assert first == ("torch.fx could not trace WritesIntoSlice.forward(): it writes "
                     "into a slice of a tensor, `a[:, :2] = b` (below).")
    assert fix.startswith("Fix: build the tensor from its pieces instead, e.g. "
                          "torch.cat([b, a[:, 2:]], dim=1)")
    assert "control flow" not in fix
    top, _, bottom, _ = support(averaging(WritesIntoSlice(cat=True)), (20, 20))
    assert receptive_field(WritesIntoSlice(cat=True), (1, 20, 20)).final.r_out == \
        bottom - top == 7


class ChecksItsInput(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)

    def forward(self, x):
        assert x.shape[-1] == 20, "a 20-px image"
        return self.conv(x)


def test_an_assert_is_named_as_an_assert():
    # Before: "it computes from its input's size ... move that code into a
    # module and declare it".
    first, fix, *_ = _message(ChecksItsInput(), (1, 20, 20))
    assert first == ("torch.fx could not trace ChecksItsInput.forward(): it asserts "
                     "on a traced value, `assert x.shape[-1] == 20, \"a 20-px im...` "
                     "(below).")
    assert fix == ("Fix: check that outside forward(), or drop the assert: torch.fx "
                   "cannot evaluate it.")


def test_aspp_s_pooled_branch_upsampled_from_1x1_is_a_gate():
    pytest.importorskip("torchvision")
    from torchvision.models.segmentation.deeplabv3 import ASPP

    model = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1),
                          ASPP(8, [2, 4], out_channels=8)).eval()
    # Before: "enlarges the map from 1x1 to 17x17. Fix: stop before this
    # upsampling". The 1x1 map upsampled is copies of one global unit: every
    # unit sees the whole image through it; the widest branch (dilation 4)
    # gives the conv path's RF: 3 + 8 x 2 = 19.
    t = receptive_field(model, (3, 33, 33))
    assert t.final.global_out and t.final.r_out == 19 and t.final.n_out == 17
    assert t.first_global.kind == "AdaptiveAvgPool2d"
    assert support(averaging(model), (33, 33), channels=3) == (0, 0, 33, 33)


def test_a_1x1_map_that_is_no_pooling_is_not_upsampled_silently():
    model = nn.Sequential(nn.Conv2d(1, 2, 8, stride=8), nn.Upsample(scale_factor=4))
    first, fix = _message(model, (1, 8, 8))
    assert first == ("module '1' (Upsample) copies one unit, which is no global "
                     "pooling, over a map.")
    assert fix.startswith("Fix: pool the whole map for a gate")


class UNetish(nn.Module):
    """A U-Net level: two 3x3 convs, a 2x2 max-pool, two 3x3 convs, and (with
    `up`) a transposed conv of stride 2 back up, joined with the skip."""

    def __init__(self, up: bool = True):
        super().__init__()
        self.up = up
        self.enc = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(),
                                 nn.Conv2d(4, 4, 3, padding=1), nn.ReLU())
        self.down = nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(4, 8, 3, padding=1),
                                  nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1))
        self.upconv = nn.ConvTranspose2d(8, 4, 2, stride=2)

    def forward(self, x):
        skip = self.enc(x)
        deep = self.down(skip)
        if not self.up:
            return deep
        return torch.cat([skip, self.upconv(deep)], dim=1)


def test_a_u_net_s_encoder_matches_the_gradient_and_its_decoder_is_refused():
    t = receptive_field(UNetish(up=False), (1, 32, 32))
    # 3, 5; pool: 6, jump 2; +2 x 2: 10, 14.
    assert [r.r_out for r in t.layers()] == [3, 5, 6, 10, 14]
    assert spans(averaging(UNetish(up=False)), (32, 32)) == boxes(t.final, (32, 32))
    first, fix = _message(UNetish(), (1, 32, 32))
    assert first == ("module 'upconv' (ConvTranspose2d) enlarges the map from 16x16 "
                     "to 32x32.")
    assert fix.startswith("Fix: stop before this upsampling")
