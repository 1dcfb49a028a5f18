"""What each kind of op does to the receptive field: paddings, pools, merges,
slices, reshapes, reductions, channel-only ops, functional forms."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mnist_lib.rf import (RFError, receptive_field)
from tests.rf.helpers import *  # noqa: F401,F403
from tests.rf.helpers import ROOT, main  # noqa: F401


def test_one_by_one_conv_keeps_rf():
    t = receptive_field(nn.Sequential(nn.Conv2d(1, 4, 3), nn.Conv2d(4, 2, 1)),
                        (1, 28, 28))
    assert [r.r_out for r in t.rows] == [3, 3]


def test_non_square_kernel_gives_pairs():
    t = receptive_field(nn.Sequential(nn.Conv2d(1, 1, (3, 5)), nn.Conv2d(1, 1, 3)),
                        (1, 20, 30))
    assert t.final.r_out == (5, 7)
    assert t.final.n_out == (16, 24)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
def test_same_and_valid_padding():
    t = receptive_field(nn.Sequential(nn.Conv2d(1, 1, 4, padding="same"),
                                      nn.Conv2d(1, 1, 3, padding="valid")), (1, 10, 10))
    assert [r.n_out for r in t.rows] == [10, 8]
    # 'same' with an even kernel pads 1 before and 2 after: the centre moves.
    assert t.rows[0].start_out == 1.0


def test_adaptive_pool_real_windows():
    t = receptive_field(nn.Sequential(nn.AdaptiveAvgPool2d(2)), (1, 5, 5))
    # PyTorch's windows on 5 -> 2 are [0, 3) and [2, 5): 3 pixels wide, 2 apart.
    assert (t.final.r_out, t.final.j_out, t.final.n_out) == (3, 2, 2)


def test_ceil_mode_pool():
    model = nn.Sequential(nn.MaxPool2d(2, ceil_mode=True))
    t = receptive_field(model, (1, 7, 7))
    assert t.final.n_out == model(torch.zeros(1, 1, 7, 7)).shape[2] == 4


def test_rf_larger_than_image_is_reported_not_clipped():
    model = nn.Sequential(*[nn.Conv2d(1, 1, 3, padding=1) for _ in range(20)])
    t = receptive_field(model, (1, 28, 28))
    assert t.final.r_out == 41 and t.final.exceeds_input


def test_aligned_residual_takes_largest_branch():
    t = receptive_field(Residual(2, 2), (1, 16, 16))
    assert t["add"].r_out == 7 and t["add"].j_out == 2


def test_crops_and_strided_slices_match_the_gradient():
    size = 40
    f = receptive_field(Cropped(), (1, size, size)).final
    (top, left, h, w), (i, k) = empirical_rf(Cropped(), size)
    assert f.n_out == tuple(Cropped()(torch.zeros(1, 1, size, size)).shape[2:])
    # RF 5 after the add, then a 3x3 on jump 2 (height) and 3 (width).
    assert (f.r_out, f.j_out) == ((5 + 2 * 2, 5 + 2 * 3), (2, 3))
    (sh, sw), (jh, jw) = f.start_out, f.j_out
    assert (h, w) == f.r_out
    assert (top, left) == (sh + i * jh - h / 2, sw + k * jw - w / 2)
    with pytest.raises(RFError, match="an int that drops the height, a spatial axis"):
        receptive_field(Row(lambda x: x[:, :, 0]), (1, 8, 8))
    # An axis added (before, refused as one that "drops or adds an axis")
    # leaves every unit where it is.
    added = receptive_field(Row(lambda x: x[None]), (1, 8, 8)).final
    assert (added.n_out, added.r_out, added.start_out) == (8, 1, 0.5)


def test_a_slice_or_crop_that_leaves_nothing_is_named():
    """Found by the property test above: x[:, :, 1:, 1:] of a 1x1 map was
    reported as one unit, and a crop of a whole map as a window that does not
    fit; torch leaves an empty tensor for both."""
    corner = Row(lambda x: x[:, :, 1:, 1:])
    with pytest.raises(RFError, match=r"operation 'getitem' leaves an empty tensor, shape "
                                      r"\(1, 1, 0, 0\)"):
        receptive_field(corner, (1, 1, 1))
    with pytest.raises(RFError, match="leaves an empty tensor"):
        receptive_field(Pad((0, 0, 0, -2)), (1, 2, 2))
    assert corner(torch.zeros(1, 1, 1, 1)).numel() == 0  # torch does not object


@pytest.mark.parametrize("pool", GLOBAL_POOLS.values(), ids=GLOBAL_POOLS.keys())
def test_global_pooling_however_written_sees_the_whole_image(pool):
    model = Pooled(pool)
    nn.init.constant_(model.conv.weight, 1.0)
    x = torch.ones(1, 1, 10, 10, requires_grad=True)
    model(x)[0, 0].backward()
    assert (x.grad != 0).all()                          # every pixel counts
    (top, left, h, w), _ = empirical_rf(model.conv, 10)  # the conv path alone
    f = receptive_field(model, (1, 10, 10)).final
    assert f.global_out and f.r_out == h == w == 3       # global, over RF 3


def test_flattened_positions_are_tracked_not_guessed():
    # A Linear on (N, positions, channels) mixes channels: each token keeps RF 3.
    tokens = Pooled(lambda x: nn.functional.linear(x.flatten(2).transpose(1, 2),
                                                   torch.ones(3, 4)))
    assert receptive_field(tokens, (1, 10, 10)).final.r_out == 3
    back = Pooled(lambda x: x.flatten(2).view(x.size(0), 4, 8, 8))  # unflatten
    assert receptive_field(back, (1, 10, 10)).final.n_out == 8
    with pytest.raises(RFError, match="moving pixels"):
        receptive_field(Pooled(lambda x: x.view(x.size(0), 4, 32, 2)), (1, 10, 10))


def test_a_window_computed_from_the_map_s_size_is_the_window_at_that_size():
    # A 4x4 window on the conv's 8x8 map: RF 3 + 3 = 6, jump 4 (before,
    # refused as "computed at run time"); the gradient agrees.
    model = Pooled(lambda x: nn.functional.avg_pool2d(x, x.size(2) // 2))
    f = receptive_field(model, (1, 10, 10)).final
    assert (f.kernel, f.n_out, f.j_out, f.r_out) == (4, 2, 4, 6)
    (top, left, h, w), (i, k) = empirical_rf(model, 10)
    assert (h, w) == (6, 6) and (top, left) == (f.start_out + i * 4 - 3,) * 2
    # From the values of a tensor, it could change from image to image.
    by_values = Pooled(lambda x: nn.functional.avg_pool2d(
        x, 1 + (x.mean() < 1).long().item()))
    with pytest.raises(RFError, match=r"^operation 'avg_pool2d' has a kernel_size "
                                      r"computed from a tensor's values, not its "
                                      r"size\.\nFix: give it as numbers"):
        receptive_field(by_values, (1, 10, 10))


def test_functional_pad_squeeze_and_elementwise_ops():
    def final(f):
        return receptive_field(Pooled(f), (1, 10, 10)).final

    padded = final(lambda x: nn.functional.pad(x, (1, 1, 2, 0), mode="reflect"))
    as_module = receptive_field(nn.Sequential(nn.Conv2d(1, 4, 3),
                                              nn.ZeroPad2d((1, 1, 2, 0))), (1, 10, 10))
    assert (padded.n_out, padded.start_out) == (as_module.final.n_out,
                                                as_module.final.start_out)
    cropped = final(lambda x: nn.functional.pad(x, (-1, -1, -1, -1)))
    assert (cropped.n_out, cropped.start_out, cropped.r_out) == (6, 2.5, 3)
    squeezed = final(lambda x: nn.functional.adaptive_avg_pool2d(x, 1).squeeze())
    assert squeezed.global_out and squeezed.r_out == 3  # global, over the 3x3 conv
    for op in (lambda x: x.clamp(min=0), lambda x: x ** 2,
               lambda x: torch.where(x > 0, x, 0.1 * x), lambda x: x.unsqueeze(1)):
        assert (final(op).r_out, final(op).n_out) == (3, 8)


def test_channel_split_and_shuffle_are_followed():
    t = receptive_field(Shuffle(), (1, 16, 16))
    (top, left, h, w), _ = empirical_rf(Shuffle(), 16)
    assert t.final.r_out == h == w == 5 and t.final.n_out == 14
    # Each piece of a split along the height is a crop: a slice says which.
    with pytest.raises(RFError, match=r"^operation 'chunk' splits a map along its "
                                      r"height or width\.\nFix: slice it instead"):
        receptive_field(SplitRows(), (1, 16, 16))


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
def test_functional_conv_is_the_conv_module():
    cols = ["kernel", "stride", "padding", "dilation", "n_out", "j_out", "r_out",
            "start_out", "ch_out", "params"]
    t = receptive_field(FunctionalConvs(), (1, 28, 28))
    m = receptive_field(FunctionalConvs(modules=True), (1, 28, 28))
    assert [r["kind"] for r in t.to_records(columns=["kind"])] == ["conv2d"] * 3
    assert t.to_records(columns=cols) == m.to_records(columns=cols)
    assert t.final.r_out == 3 + 4 * 2 + 3 * 2 and t.final.padding == ((1, 1), (2, 2))
    (top, left, h, w), _ = empirical_rf(FunctionalConvs(), 28)
    assert (h, w) == (t.final.r_out, t.final.r_out)


def test_a_functional_conv_s_stride_from_the_input_s_size_is_taken_at_that_size():
    # x.shape[-1] // 14 is 2 on a 28-px image (before, refused as computed at
    # run time); from the values of a tensor it is refused.
    f = receptive_field(ComputedStride(), (1, 28, 28)).final
    (top, left, h, w), (i, k) = empirical_rf(ComputedStride(), 28)
    assert (f.stride, f.n_out, f.j_out, f.r_out) == (2, 13, 2, 3) == (2, 13, 2, h)
    assert (top, left) == (f.start_out + i * 2 - 1.5, f.start_out + k * 2 - 1.5)
    with pytest.raises(RFError, match=r"^operation 'conv2d' has a stride computed "
                                      r"from a tensor's values"):
        receptive_field(ComputedStride(values=True), (1, 28, 28))


@pytest.mark.parametrize("module", [False, True])
def test_pixel_unshuffle_is_a_window_of_its_factor(module):
    t = receptive_field(Unshuffle(module), (1, 16, 16))
    window = receptive_field(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Conv2d(2, 8, 2, 2)),
                             (1, 16, 16))
    cols = ["kernel", "stride", "n_out", "j_out", "r_out", "start_out", "ch_out"]
    assert t.to_records(columns=cols)[-1] == window.to_records(columns=cols)[-1]
    (top, left, h, w), _ = empirical_rf(Unshuffle(module), 16)
    assert (h, w) == (t.final.r_out, t.final.r_out) == (4, 4)


@pytest.mark.parametrize("how", ["repeat", "expand"])
def test_copies_along_the_channels_leave_the_rf_alone(how):
    t = receptive_field(ThreeChannels(how), (1, 28, 28))
    plain = receptive_field(ThreeChannels(how).net, (3, 28, 28))
    cols = ["n_out", "j_out", "r_out", "start_out"]
    assert t.to_records(columns=cols)[-1] == plain.to_records(columns=cols)[-1]
    assert t.rows[0].kind == how and t.rows[0].ch_out == 3


def test_copies_along_height_or_width_are_refused():
    with pytest.raises(RFError, match="copies a map along its height or width.\n"
                                      "Fix: for a gate, pool the map to one unit"):
        receptive_field(ThreeChannels("rows"), (1, 28, 28))


def test_a_global_unit_expanded_over_the_map_is_a_gate():
    # x.mean((2, 3), keepdim=True).expand(...) * x: every unit scaled by the
    # whole image's mean: global, over the 1x1 RF of the input itself.
    t = receptive_field(ThreeChannels("spread"), (1, 28, 28))
    assert t["expand"].global_out and t["expand"].j_out is None
    assert (t.final.n_out, t.final.r_out, t.final.global_out) == (28, 1, True)


@pytest.mark.parametrize("values", [False, True], ids=["[0]", ".values"])
def test_max_over_channels_with_indices_is_followed(values):
    t = receptive_field(SpatialAttention(values), (1, 21, 21))
    (top, left, h, w), _ = empirical_rf(SpatialAttention(values), 21)
    assert t.final.r_out == h == w == 3 + 6 and t.final.n_out == 19
    with pytest.raises(RFError, match=r"max with indices over space\.\n"
                                      r"Fix: .*amax\(dim=\(2, 3\)\)"):
        receptive_field(Pooled(lambda x: x.max(dim=3)[0]), (1, 10, 10))


def test_max_of_two_maps_is_elementwise_and_of_one_a_reduction():
    def final(f):
        return _final(TwoBranches(f), (1, 28, 28))

    # torch.max(a, b) (maxout) is torch.maximum; torch.max(a), a global pooling.
    assert final(torch.max) == final(torch.min) == final(torch.maximum)
    assert final(lambda a, b: a.max(b)) == final(lambda a, b: a.min(b)) \
        == final(torch.maximum)
    assert final(lambda a, b: torch.max(a)) == final(lambda a, b: a.amax())
    assert final(torch.max)[2] == 5
    # One unit over a's whole 26x26 map (3x3 conv): global, no jump, r = 3.
    assert final(lambda a, b: torch.max(a))[:3] == (1, None, 3)
    assert receptive_field(TwoBranches(lambda a, b: torch.max(a)),
                           (1, 28, 28)).final.global_out


def test_gate_spread_over_the_map_brings_the_whole_map():
    t = receptive_field(Gated(), (1, 16, 16))
    (top, left, h, w), _ = empirical_rf(Gated(), 16)
    assert (h, w) == (16, 16)                    # every pixel moves every unit
    f = t.final  # global; r the conv path's (the 3x3 conv, without the gate)
    assert f.global_out and f.r_out == 3 and f.n_out == 14 and f.j_out == 1
    assert t.first_global.name == "squeeze.0"


def test_channels_last_is_followed_and_guarded():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), ChannelsLastBlock(), ChannelsLastBlock())
    t = receptive_field(model, (1, 32, 32))
    assert t.final.r_out == 3 + 6 + 6 and t.final.n_out == 30  # Linears add nothing
    assert not t["1.mlp.0"].spatial

    class PoolChannelsLast(nn.Module):
        def forward(self, x):
            return nn.functional.avg_pool2d(x.permute(0, 2, 3, 1), 2)

    with pytest.raises(RFError, match="height and width not as its last two axes"):
        receptive_field(PoolChannelsLast(), (4, 8, 8))


@pytest.mark.parametrize("layer", [
    nn.LocalResponseNorm(2), nn.Softmax2d(), nn.Softmax(dim=1), nn.LogSoftmax(dim=1),
    nn.Softmin(dim=-3), nn.Softsign(), nn.Threshold(0.1, 0.0), nn.FeatureAlphaDropout(),
    nn.SyncBatchNorm(2)], ids=lambda m: type(m).__name__)
def test_modules_that_mix_only_channels_change_no_rf(layer):
    """Norms, activations and softmaxes over the channels, between two convs:
    the same RF, jump, size and centre as without them."""
    def net(*middle):
        return nn.Sequential(nn.Conv2d(2, 2, 3, stride=2), *middle, nn.Conv2d(2, 2, 3))

    model = net(layer).eval()
    assert _final(model) == _final(net())
    assert receptive_field(model, (2, 20, 20)).final.n_out == model(
        torch.zeros(1, 2, 20, 20)).shape[-1]


@pytest.mark.parametrize("op", [
    lambda x: F.local_response_norm(x, 2), lambda x: F.instance_norm(x),
    lambda x: F.logsigmoid(x), lambda x: F.threshold(x, 0.1, 0.0),
    lambda x: F.prelu(x, torch.full((1,), 0.25))],
    ids=["local_response_norm", "instance_norm", "logsigmoid", "threshold", "prelu"])
def test_functions_that_mix_only_channels_change_no_rf(op):
    class Net(nn.Module):
        def __init__(self, middle):
            super().__init__()
            self.a, self.b, self.middle = nn.Conv2d(2, 2, 3, 2), nn.Conv2d(2, 2, 3), middle

        def forward(self, x):
            return self.b(self.middle(self.a(x)))

    assert _final(Net(op)) == _final(Net(lambda x: x))


@pytest.mark.parametrize("kernel, stride, ceil", [(2, 2, False), (3, 2, True),
                                                  ((2, 3), None, False)])
def test_lp_pool_is_the_window_of_an_average_pool(kernel, stride, ceil):
    def net(pool):
        return nn.Sequential(nn.Conv2d(1, 1, 3), pool, nn.Conv2d(1, 1, 3))

    lp = net(nn.LPPool2d(2, kernel, stride, ceil_mode=ceil))
    assert _final(lp, (1, 21, 21)) == _final(
        net(nn.AvgPool2d(kernel, stride, ceil_mode=ceil)), (1, 21, 21))
    n = receptive_field(lp, (1, 21, 21)).final.n_out
    n = n if isinstance(n, tuple) else (n, n)
    assert n == tuple(lp(torch.ones(1, 1, 21, 21)).shape[-2:])


def test_softmax_over_the_height_or_width_of_a_map_is_refused():
    """Over one position axis, every unit sees its whole row (or column) but
    stays where it is: no jump and start describe it, so the calculator says
    so. Over all positions, flattened first, it is a global pooling."""
    conv = nn.Conv2d(1, 4, 3)
    for softmax, axis in [(nn.Softmax(dim=-1), "width"),
                          (nn.LogSoftmax(dim=2), "height"),
                          (lambda x: x.softmax(3), "width")]:
        with pytest.raises(RFError, match=f"softmax over the {axis} of a map\\.\n"
                                          r"Fix: .*x\.flatten\(2\).*dim=1"):
            receptive_field(Pooled(softmax), (1, 10, 10))
    flat = receptive_field(nn.Sequential(conv, nn.Flatten(2), nn.Softmax(dim=-1)),
                           (1, 10, 10)).final
    # Global, over the 3x3 conv's map.
    assert (flat.n_out, flat.r_out, flat.global_out) == (1, 3, True)
    # A 1-unit axis (after global pooling) has nothing to mix.
    pooled = nn.Sequential(conv, nn.AdaptiveAvgPool2d((1, 1)), nn.Softmax(dim=-1))
    t = receptive_field(pooled, (1, 10, 10))
    assert t.final.r_out == 3 and t.first_global.name == "1"  # the pooling, not "2"


def test_ops_on_moved_or_merged_positions_find_them():
    """softmax, chunk, cat and slices look for the positions where the state
    says they are, not at axes 2 and 3."""
    def final(f):
        return receptive_field(Pooled(f), (1, 10, 10)).final

    def to_nhwc(x):
        return x.permute(0, 2, 3, 1)

    def to_nchw(x):
        return x.permute(0, 3, 1, 2)

    # Over positions merged into one axis: every unit sees the whole image,
    # a global op over the 3x3 conv's map.
    merged = final(lambda x: nn.functional.softmax(x.flatten(2), dim=-1))
    assert merged.global_out and merged.r_out == 3 and merged.n_out == 1
    # Over the channels of a channels-last map: nothing changes.
    for op in (lambda x: nn.functional.softmax(to_nhwc(x), -1),
               lambda x: to_nhwc(x).chunk(2, dim=-1)[0],
               lambda x: torch.cat([to_nhwc(x)] * 2, -1)):
        assert (final(lambda x: to_nchw(op(x))).r_out,
                final(lambda x: to_nchw(op(x))).n_out) == (3, 8)
    for op, match in [(lambda x: x.flatten(2).chunk(2, dim=-1)[0], "splits a map"),
                      (lambda x: x.flatten(2)[:, :, 2:], "slice of positions")]:
        with pytest.raises(RFError, match=match):
            final(op)
    # A crop of the height of a channels-last map (before, refused): the
    # first row of the conv's map left out.
    cropped = final(lambda x: to_nchw(to_nhwc(x)[:, 1:]))
    assert (cropped.n_out, cropped.start_out, cropped.r_out) == ((7, 8), (2.5, 1.5), 3)


def test_convnext_tiny_by_hand():
    tv = pytest.importorskip("torchvision")
    t = receptive_field(tv.models.convnext_tiny(), (3, 224, 224))
    # Stem 4x4 stride 4: RF 4, jump 4. Stages of 3, 3, 9, 3 blocks, each a 7x7
    # depthwise conv (+6 jumps); a 2x2 stride-2 downsampling (+1 jump) between.
    rf = 4 + 3 * 6 * 4 + 4 + 3 * 6 * 8 + 8 + 9 * 6 * 16 + 16 + 3 * 6 * 32
    assert t["avgpool"].r_in == rf == 1688 and t["avgpool"].j_in == 32
    # The 7x7 map, pooled: global from there on, over the trunk's RF.
    assert (t.trunk.r_out, t.trunk.j_out, t.trunk.n_out) == (rf, 32, 7)
    assert t.first_global.name == "avgpool"
    assert t.final.global_out and t.final.r_out == rf



def test_drop_path_is_pointwise_and_torchvision_ops_is_not_imported():
    tv = pytest.importorskip("torchvision")

    # torchvision's module calls its function, which torch.fx keeps as one op
    # (EfficientNet's drop-path).
    model = nn.Sequential(nn.Conv2d(1, 2, 3), tv.ops.StochasticDepth(0.2, "row"))
    t = receptive_field(model, (1, 10, 10))
    assert (t.final.kind, t.final.r_out, t.final.spatial) == ("stochastic_depth", 3,
                                                              False)
    # It is told by its name: importing the library (or the calculator) does
    # not pay the second that importing torchvision.ops costs.
    code = ("import sys, mnist_lib, mnist_lib.rf; "
            "print('torchvision.ops' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == "False"
