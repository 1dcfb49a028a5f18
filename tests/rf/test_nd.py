"""Nets over one and three spatial axes (issue #47): audio front-ends over a
sequence (C, L) and video nets over a clip (C, D, H, W), computed per axis as
images are, checked against the gradient's support; their table, CLI and
picture; recurrent layers refused."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from mnist_lib.rf import RFError, receptive_field
from tests.rf.helpers import averaging, boxes, main, spans


# ------------------------------------------------------------------ 1-D
class M5(nn.Module):
    """An M5-style audio net (Dai et al., 2017): an 80-sample conv of stride
    16, then 3-sample convs, each followed by a 4x max-pool, and a global
    average pooling over time."""

    def __init__(self, head: bool = False):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv1d(1, 8, 80, stride=16), nn.BatchNorm1d(8), nn.ReLU(),
            nn.MaxPool1d(4),
            nn.Conv1d(8, 8, 3), nn.BatchNorm1d(8), nn.ReLU(), nn.MaxPool1d(4),
            nn.Conv1d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool1d(4))
        self.head = head
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = self.features(x)
        if self.head:
            return self.fc(F.adaptive_avg_pool1d(x, 1).flatten(1))
        return x


def test_an_m5_audio_net_by_hand_and_by_the_gradient():
    t = receptive_field(M5(), (1, 8000))
    # 80 px, jump 16; +3 jumps of 16 (pool): 128, jump 64; +2 x 64: 256;
    # +3 x 64 (pool): 448, jump 256; +2 x 256: 960; +3 x 256: 1728, jump 1024.
    assert [r.r_out for r in t.layers()] == [80, 128, 256, 448, 960, 1728]
    assert (t.final.n_out, t.final.j_out) == (7, 1024)
    assert t.headline == "RF 1728 px, jump 1024 px, at 'features.10' (map 7)"
    # The central unit's box lies inside the 8000 samples: the gradient's
    # support is that box.
    assert spans(averaging(M5()), (8000,)) == boxes(t.final, (8000,))
    # Every row's map is the size torch gives.
    sizes = {}
    model = M5()
    for name, m in model.features.named_children():
        m.register_forward_hook(lambda m, i, o, name=name: sizes.update(
            {f"features.{name}": o.shape[-1]}))
    model(torch.zeros(1, 1, 8000))
    assert all(t[name].n_out == n for name, n in sizes.items())


def test_an_audio_net_s_head_pools_the_whole_sequence():
    t = receptive_field(M5(head=True), (1, 8000))
    assert t.first_global.kind == "adaptive_avg_pool1d"
    assert t.trunk.r_out == 1728 and t.final.global_out and t.final.kind == "Linear"
    # Every output reaches every sample the last map sees.
    assert spans(averaging(M5(head=True)), (8000,)) == spans(
        averaging(M5()), (8000,), centre=False)


class Functional1d(nn.Module):
    """F.conv1d with a weight of its own, dilated and padded; a reflection
    pad; F.max_pool1d (or, for the gradient, F.avg_pool1d over the same
    window) and F.avg_pool1d; a conv with padding='same'."""

    def __init__(self, pool=F.max_pool1d):
        super().__init__()
        self.pool = pool
        self.weight = nn.Parameter(torch.ones(4, 1, 5))
        self.same = nn.Conv1d(4, 4, 4, padding="same")

    def forward(self, x):
        x = F.conv1d(x, self.weight, None, 2, 3, 2)    # k 5, dilation 2: k_eff 9
        x = F.pad(x, (2, 1), mode="reflect")
        x = self.pool(x, 3, 2, 1)
        x = F.avg_pool1d(x, 2)
        return self.same(x)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
def test_functional_1d_ops_by_hand_and_by_the_gradient():
    t = receptive_field(Functional1d(), (1, 301))
    # 9, jump 2; pad; 3-window (+2 x 2): 13, jump 4; 2-window: 17, jump 8;
    # 4-window 'same' (+3 x 8): 41.
    assert [r.r_out for r in t.layers()] == [9, 13, 17, 41]
    assert t["conv1d"].kernel == 5 and t["conv1d"].dilation == 2
    assert t["pad"].padding == (2, 1)
    n = Functional1d()(torch.zeros(1, 1, 301)).shape[-1]
    assert t.final.n_out == n
    # A max-pool's gradient goes to one sample of a tie: the probe averages.
    probe = Functional1d(F.avg_pool1d)
    cols = ["n_out", "j_out", "r_out", "start_out"]
    assert receptive_field(probe, (1, 301)).to_records(columns=cols) == \
        t.to_records(columns=cols)
    assert spans(averaging(probe), (301,)) == boxes(t.final, (301,))


layer_1d = st.one_of(
    st.tuples(st.just("conv"), st.integers(1, 7), st.integers(1, 3),
              st.integers(0, 3), st.integers(1, 3)),
    st.tuples(st.just("pool"), st.integers(2, 4), st.integers(1, 3),
              st.integers(0, 1), st.just(1)),
)


def _build(spec, conv, pool):
    return nn.Sequential(*[
        conv(1, 1, k, stride=s, padding=p, dilation=d, bias=False)
        if kind == "conv" else pool(k, stride=s, padding=min(p, k // 2))
        for kind, k, s, p, d in spec])


def _inside(t, size):
    """Whether the theoretical box of the central unit lies inside the input
    (else the gradient sees it clipped)."""
    return all(0 <= lo and hi <= n for (lo, hi), n in zip(boxes(t.final, size), size))


@settings(max_examples=60, deadline=None)
@given(st.lists(layer_1d, min_size=1, max_size=5))
@example([("conv", 1, 2, 0, 1), ("conv", 1, 2, 0, 1), ("conv", 1, 3, 0, 1),
          ("pool", 3, 3, 0, 1), ("pool", 4, 1, 0, 1)])  # ends in one global unit
def test_random_1d_stacks_match_the_gradient(spec):
    model, size = _build(spec, nn.Conv1d, nn.AvgPool1d), (160,)
    try:
        t = receptive_field(model, (1, *size))
    except RFError:
        with pytest.raises(RuntimeError):  # torch refuses it too
            model(torch.zeros(1, 1, *size))
        return
    assert t.final.n_out == model(torch.zeros(1, 1, *size)).shape[-1]
    assume(_inside(t, size))
    assert spans(averaging(model), size) == boxes(t.final, size)


# ------------------------------------------------------------------ 3-D
class C3D(nn.Module):
    """A small C3D-style clip net (Tran et al., 2015): 3x3x3 convs, a first
    pooling of the frames' height and width only, then of all three axes;
    a last conv dilated in height and width."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv3d(3, 4, 3, padding=1), nn.BatchNorm3d(4), nn.ReLU(),
            nn.MaxPool3d((1, 2, 2)),
            nn.Conv3d(4, 4, 3, padding=1), nn.ReLU(), nn.MaxPool3d(2),
            nn.Conv3d(4, 4, 3, padding=(1, 0, 0), dilation=(1, 2, 2)))

    def forward(self, x):
        return self.net(x)


def test_a_c3d_net_per_axis_by_hand_and_by_the_gradient():
    size = (16, 40, 40)
    t = receptive_field(C3D(), (3, *size))
    # Depth: 3, 3 (no pooling), 5, 6 (pool 2), +2 x 2 = 10, jump 2.
    # Height and width: 3, 4 (pool 2), +2 x 2 = 8, 10 (pool 2), then a 3-window
    # dilated 2 (k_eff 5) on jump 4: +16 = 26, jump 4.
    f = t.final
    assert (f.r_out, f.j_out) == ((10, 26, 26), (2, 4, 4))
    assert f.n_out == tuple(C3D()(torch.zeros(1, 3, *size)).shape[2:]) == (8, 6, 6)
    assert f.padding == (1, 0, 0) and f.dilation == (1, 2, 2)
    assert t["net.3"].kernel == t["net.3"].stride == (1, 2, 2)
    assert t.headline == "RF (10, 26, 26) px, jump (2, 4, 4) px, at 'net.7' (map 8x6x6)"
    assert _inside(t, size)
    assert spans(averaging(C3D()), size, channels=3) == boxes(f, size)


class Functional3d(nn.Module):
    """F.conv3d of stride (1, 2, 2); F.max_pool3d (for the gradient,
    F.avg_pool3d); F.pad of width, height and depth; F.avg_pool3d."""

    def __init__(self, pool=F.max_pool3d):
        super().__init__()
        self.pool = pool
        self.weight = nn.Parameter(torch.ones(2, 1, 3, 3, 3))

    def forward(self, x):
        x = F.conv3d(x, self.weight, stride=(1, 2, 2), padding=1)
        x = self.pool(x, 2)
        x = F.pad(x, (1, 1, 0, 0, 1, 0))  # width, height, depth
        return F.avg_pool3d(x, (2, 3, 3), stride=1)


def test_functional_3d_ops_by_the_gradient():
    size = (12, 30, 30)
    t = receptive_field(Functional3d(), (1, *size))
    f = t.final
    assert f.n_out == tuple(Functional3d()(torch.zeros(1, 1, *size)).shape[2:])
    assert t["pad"].padding == ((1, 0), (0, 0), (1, 1))  # (before, after) an axis
    # Depth: 3, +1 (pool), +1 x 2; height and width: 3 on jump 2, +2 (pool),
    # +2 x 4.
    assert f.r_out == (6, 13, 13) and f.j_out == (2, 4, 4)
    assert _inside(t, size)
    probe = averaging(Functional3d(F.avg_pool3d))
    assert spans(probe, size) == boxes(f, size)


layer_3d = st.tuples(st.sampled_from(["conv", "pool"]),
                     st.tuples(*[st.integers(1, 3)] * 3),
                     st.tuples(*[st.integers(1, 2)] * 3), st.integers(0, 1))


@settings(max_examples=25, deadline=None)
@given(st.lists(layer_3d, min_size=1, max_size=3))
def test_random_3d_stacks_match_the_gradient(spec):
    """Kernels and strides that differ from axis to axis."""
    size = (14, 16, 18)
    model = nn.Sequential(*[
        nn.Conv3d(1, 1, k, stride=s, padding=p, bias=False) if kind == "conv"
        else nn.AvgPool3d([max(v, 2) for v in k], stride=s, padding=0)
        for kind, k, s, p in spec])
    try:
        t = receptive_field(model, (1, *size))
    except RFError:
        with pytest.raises(RuntimeError):
            model(torch.zeros(1, 1, *size))
        return
    n = tuple(model(torch.zeros(1, 1, *size)).shape[2:])
    assert (t.final.n_out if isinstance(t.final.n_out, tuple)
            else (t.final.n_out,) * 3) == n
    assume(_inside(t, size))
    assert spans(averaging(model), size) == boxes(t.final, size)


def test_a_clip_s_global_and_uneven_poolings():
    t = receptive_field(nn.Sequential(nn.Conv3d(1, 2, 3), nn.AdaptiveAvgPool3d(1)),
                        (1, 6, 10, 10))
    assert t.final.global_out and t.final.r_out == 3 and t.final.j_out is None
    uneven = receptive_field(nn.Sequential(nn.Conv3d(1, 2, 3),
                                           nn.AdaptiveMaxPool3d((2, 3, 4))),
                             (1, 6, 10, 10)).final
    # 4 -> 2 is even (windows of 2); 8 -> 3 and 8 -> 4 are PyTorch's windows
    # of 3 or 4, and of 2: the largest gives the RF.
    assert uneven.uneven_out and uneven.kernel == (2, (3, 4), 2)
    assert uneven.r_out == (4, 6, 4)


# ------------------------------------------ what mixes a sequence's steps
@pytest.mark.parametrize("mix", [
    lambda net, x: net.fc(x),                          # a Linear over the length
    lambda net, x: x.softmax(-1),                      # a softmax over it
    lambda net, x: x.mean(-1),                         # a mean over it
], ids=["linear", "softmax", "mean"])
def test_what_mixes_all_the_steps_of_a_sequence_is_global(mix):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.fc = nn.Conv1d(1, 2, 3), nn.Linear(18, 5)

        def forward(self, x):
            return mix(self, self.conv(x))

    f = receptive_field(Net(), (1, 20)).final
    assert f.global_out and f.r_out == 3
    assert spans(averaging(Net()), (20,), centre=False) == [(0, 20)]
    x = torch.rand(1, 1, 20, dtype=torch.float64, requires_grad=True)
    out = averaging(Net())(x)
    (grad,) = torch.autograd.grad(out.flatten()[0], x)
    assert bool((grad != 0).all())  # one output unit: every step


class Recurrent(nn.Module):
    """A conv front-end, then a recurrent layer over time (the steps moved
    to where batch_first wants them)."""

    def __init__(self, rnn):
        super().__init__()
        self.conv, self.rnn = nn.Conv1d(1, 8, 5, stride=2), rnn

    def forward(self, x):
        out, _ = self.rnn(self.conv(x).transpose(1, 2))
        return out


@pytest.mark.parametrize("rnn", [nn.GRU(8, 8, batch_first=True),
                                 nn.LSTM(8, 8, batch_first=True, bidirectional=True),
                                 nn.RNN(8, 8, batch_first=True)],
                         ids=["GRU", "LSTM", "RNN"])
def test_a_recurrent_layer_over_time_is_refused_with_the_reason(rnn):
    # The truth: the first output step sees only the first conv window, the
    # last one every step (a bidirectional one: all of them, everywhere).
    with pytest.raises(RFError) as err:
        receptive_field(Recurrent(rnn), (1, 100))
    first, fix = str(err.value).splitlines()
    assert first == (f"module 'rnn' ({type(rnn).__name__}) is recurrent: each step "
                     "sees all the steps before it, so its RF grows with its "
                     "position.")
    assert fix == "Fix: give the calculator the part before it (the convolutional " \
                  "front-end)."
    assert "'pointwise'" not in str(err.value)
    t = receptive_field(Recurrent(rnn).conv, (1, 100))  # what the fix says works
    assert t.final.r_out == 5


# ------------------------------------------ an input of the wrong form
class Spectrogram1d(nn.Module):
    """A (1, mels, frames) spectrogram squeezed to (mels, frames), then a
    Conv1d over the frames: each unit mixes every mel band."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(16, 4, 3)

    def forward(self, x):
        return self.conv(x.squeeze(1))


def test_windows_over_another_number_of_axes_are_refused_with_the_form():
    # Height and width of an image, but the Conv1d slides over one axis and
    # mixes the other as channels.
    with pytest.raises(RFError, match=r"^module 'conv' \(Conv1d\) slides a 1-D "
                                      r"window over a map of 2 spatial axes \(height "
                                      r"or width\)\.\nFix: give input_size one size "
                                      r"per axis it slides over, \(C, L\)"):
        receptive_field(Spectrogram1d(), (1, 16, 50))
    # Given as (C, L), it is a sequence of 16 channels.
    assert receptive_field(Spectrogram1d().conv, (16, 50)).final.r_out == 3
    # A 2-D net given a sequence's size, and a 1-D one an image's: torch fails
    # at the first layer; the message says the form it takes.
    for model, size, form in [(nn.Sequential(nn.Conv2d(1, 2, 3)), (1, 100),
                               "(C, H, W)"),
                              (nn.Sequential(nn.Conv1d(1, 2, 3)), (1, 28, 28),
                               "(C, L)")]:
        with pytest.raises(RFError) as err:
            receptive_field(model, size)
        fix = str(err.value).splitlines()[1]
        assert fix.startswith("Fix: give input_size ") and form in fix, fix


def test_a_declared_window_must_have_as_many_axes_as_the_map():
    from mnist_lib.rf import Window

    class Blur3d(nn.Module):
        def forward(self, x):
            return F.avg_pool3d(x, 3, 1, 1)

    model = nn.Sequential(nn.Conv3d(1, 1, 3), Blur3d())
    with pytest.raises(RFError, match=r"^module '1' \(Blur3d\) slides a 2-D window "
                                      r"over a map of 3 spatial axes"):
        receptive_field(model, (1, 8, 8, 8), custom={Blur3d: Window((3, 3))})
    t = receptive_field(model, (1, 8, 8, 8), custom={Blur3d: Window(3, 1, 1)})
    assert t.final.r_out == 5 and t.final.n_out == 6


# --------------------------------------- the table, the CLI, the picture
def test_a_sequence_s_table_holds_one_number_an_axis():
    t = receptive_field(M5(), (1, 8000))
    frame = t.to_frame()
    for column in ("n_out", "kernel", "stride", "j_out", "r_out"):
        assert str(frame[column].dtype) == "Int64", column
    assert list(frame["r_out"]) == [80, 128, 256, 448, 960, 1728]
    assert t.to_text().splitlines()[1].split()[:2] == ["features.0", "Conv1d"]
    clip = receptive_field(C3D(), (3, 16, 40, 40)).to_frame()
    assert clip["r_out"].iloc[-1] == (10, 26, 26)  # a tuple where the axes differ


def test_the_cli_takes_a_sequence_and_a_clip(tmp_path, capsys, monkeypatch):
    import sys

    (tmp_path / "my_audio.py").write_text(
        "import torch.nn as nn\n"
        "class M5(nn.Sequential):\n"
        "    def __init__(self):\n"
        "        super().__init__(nn.Conv1d(1, 8, 80, stride=16), nn.MaxPool1d(4),\n"
        "                         nn.Conv1d(8, 8, 3), nn.MaxPool1d(4))\n"
        "class Clip(nn.Sequential):\n"
        "    def __init__(self):\n"
        "        super().__init__(nn.Conv3d(3, 4, 3), nn.MaxPool3d((1, 2, 2)))\n")
    monkeypatch.setattr(sys, "path", list(sys.path))  # the CLI prepends the folder
    file = tmp_path / "my_audio.py"
    assert main([f"{file}:M5", "--input", "1,16000"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "RF 448 px, jump 256 px, at '3' (map 61)" in out
    assert main([f"{file}:Clip", "--input", "3,8,32,32", "--format", "csv",
                 "--columns", "name,n_out,r_out"]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert last == '1,"(6, 15, 15)","(3, 4, 4)",False'
    with pytest.raises(SystemExit):
        main([f"{file}:M5", "--input", "1,2,3,4,5"])
    assert "--input must be the channels and one size per spatial axis" in \
        capsys.readouterr().err


@pytest.mark.parametrize("model, size, words", [
    (M5, (1, 8000), ["conv 80 stride 16 to 496, 8 ch", "from a 8000x1 input"]),
    (C3D, (3, 16, 40, 40), ["conv 3x3x3 to 16x40x40, 4 ch",
                            "max-pool (1, 2, 2) stride (1, 2, 2) to 16x20x20"]),
], ids=["1-D", "3-D"])
def test_the_architecture_picture_draws_a_sequence_and_a_clip(model, size, words):
    pytest.importorskip("matplotlib")
    from mnist_lib import plots

    t = receptive_field(model(), size)
    alt = plots.architecture_alt(t)
    assert all(w in alt for w in words), alt
    fig = plots.architecture(t)
    boxes_drawn = [p.get_gid() for p in fig.axes[0].patches]
    assert boxes_drawn[0] == "input" and t.final.name in boxes_drawn


# ------------------------------------ more layers, over one or three axes
@pytest.mark.parametrize("make, size", [
    (lambda: nn.Sequential(nn.Conv1d(1, 2, 3, stride=2),
                           nn.ConvTranspose1d(2, 1, 5, padding=1, dilation=2)), (61,)),
    (lambda: nn.Sequential(nn.Conv3d(1, 2, 3, stride=(1, 2, 2)),
                           nn.ConvTranspose3d(2, 1, (3, 5, 3), padding=(2, 1, 0))),
     (12, 21, 21)),
    (lambda: nn.Sequential(nn.Conv1d(1, 2, 3), nn.LPPool1d(2, 4, 2),
                           nn.Conv1d(2, 2, 3, padding="same")), (61,)),
], ids=["ConvTranspose1d", "ConvTranspose3d", "LPPool1d"])
def test_transposed_convs_of_stride_1_and_lp_pools_over_other_axes(make, size):
    t = receptive_field(make(), (1, *size))
    n = tuple(make()(torch.zeros(1, 1, *size)).shape[2:])
    assert (t.final.n_out if isinstance(t.final.n_out, tuple)
            else (t.final.n_out,) * len(size)) == n
    model = make()
    swap_lp = [i for i, m in enumerate(model) if isinstance(m, nn.LPPool1d)]
    for i in swap_lp:  # the gradient through an average of the same window
        model[i] = nn.AvgPool1d(model[i].kernel_size, model[i].stride)
    assert _inside(t, size)
    assert spans(averaging(model), size) == boxes(t.final, size)


def test_a_transposed_conv_that_upsamples_a_sequence_is_refused():
    model = nn.Sequential(nn.Conv1d(1, 2, 3), nn.ConvTranspose1d(2, 1, 2, stride=2))
    with pytest.raises(RFError, match=r"^module '1' \(ConvTranspose1d\) enlarges the "
                                      r"map from 18 to 36\.\nFix: stop before"):
        receptive_field(model, (1, 20))


class GatedSequence(nn.Module):
    """A squeeze-and-excitation gate over time: every step scaled by the
    whole sequence's mean (AdaptiveAvgPool1d(1)), then a 3-step conv."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv1d(1, 4, 3), nn.Conv1d(4, 4, 3)
        self.gate = nn.Sequential(nn.AdaptiveAvgPool1d(1), nn.Conv1d(4, 4, 1))

    def forward(self, x):
        y = self.conv1(x)
        return self.conv2(y * self.gate(y))


def test_a_gate_over_a_sequence_is_global_over_the_conv_path():
    t = receptive_field(GatedSequence(), (1, 30))
    assert t.first_global is t["gate.0"]
    assert (t.final.r_out, t.final.global_out, t.final.n_out) == (5, True, 26)
    assert spans(averaging(GatedSequence()), (30,)) == [(0, 30)]


def test_flattened_positions_pooled_to_one_are_a_global_pooling():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3)

        def forward(self, x):
            return F.adaptive_avg_pool1d(self.conv(x).flatten(2), 1)

    f = receptive_field(Net(), (1, 10, 10)).final
    assert (f.global_out, f.r_out, f.kernel) == (True, 3, 64)
