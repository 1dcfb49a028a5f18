"""The traced graph checked against the model (issue #57), and the five ways
an outside audit found it to differ: hooks on the model itself and on its
wrappers, torchvision's v2 transforms, a declared Window for a class whose
modules differ, a namedtuple output, nn.DataParallel inside a model. Each
case gives the right number, checked against the gradient's support or
arithmetic done here, or a refusal that names the real cause."""

from __future__ import annotations

import collections
import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mnist_lib.rf import RFError, RFWarning, Window, receptive_field
from mnist_lib.rf.guard import _difference
from mnist_lib.rf.rules import OP_RULES, _pointwise, _reduce, _table
from tests.rf.helpers import Conv2dSame, Picked, averaging, boxes, spans, support


def _message(model, size, **kwargs) -> list[str]:
    """The lines of the RFError that `receptive_field` raises."""
    with pytest.raises(RFError) as err:
        receptive_field(model, size, **kwargs)
    return str(err.value).splitlines()


def _two_convs():
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.Conv2d(2, 2, 3))


def blur(module, inputs, output):
    """A forward hook that changes its module's output: a 3x3 blur."""
    return F.avg_pool2d(output, 3, 1, 1)


def pad_first(module, inputs):
    """A forward pre-hook that pads its module's input, 2 rows and columns
    before it and one after."""
    return (F.pad(inputs[0], (2, 1, 2, 1)),)


# ------------------------------------------------ 1. hooks on the model itself
def test_a_hook_on_the_model_itself_is_traced_with_it():
    model = _two_convs()
    model.register_forward_hook(blur)
    # Before: r 5, as without the hook. The gradient: 3 + 2 + 2 (blur) = 7.
    f = receptive_field(model, (1, 20, 20)).final
    top, _, bottom, _ = support(averaging(model), (20, 20))
    assert f.r_out == bottom - top == 7
    assert spans(averaging(model), (20, 20)) == boxes(f, (20, 20))


def test_a_pre_hook_on_the_model_itself_is_traced_with_it():
    model = _two_convs()
    model.register_forward_pre_hook(pad_first)
    # Before: n 16 where the model gives 19x19; the first unit's centre moves
    # 2 pixels up and left: 2.5 - 2.
    f = receptive_field(model, (1, 20, 20)).final
    assert f.n_out == model(torch.zeros(1, 1, 20, 20)).shape[-1] == 19
    assert (f.r_out, f.start_out) == (5, 0.5)
    assert spans(averaging(model), (20, 20)) == boxes(f, (20, 20))


@pytest.mark.parametrize("wrap", [nn.DataParallel, torch.compile],
                         ids=["DataParallel", "compile"])
def test_a_hook_on_a_wrapper_around_the_model_is_traced_too(wrap):
    hooked = _two_convs()
    hooked.register_forward_hook(blur)
    truth = receptive_field(hooked, (1, 20, 20)).to_records()  # checked above
    wrapped = wrap(_two_convs())
    wrapped.register_forward_hook(blur)
    assert receptive_field(wrapped, (1, 20, 20)).to_records() == truth


def test_a_hook_that_only_looks_and_cannot_be_traced_is_no_reason_to_refuse():
    model, seen = _two_convs(), []
    # float() of a traced value stops torch.fx; the hook changes nothing.
    model.register_forward_hook(lambda m, i, o: seen.append(float(o.mean())))
    assert receptive_field(model, (1, 20, 20)).final.r_out == 5
    assert seen and isinstance(seen[-1], float)  # it ran, on real tensors


def test_a_hook_that_changes_the_output_and_cannot_be_traced_is_refused():
    def blur_if_any(module, inputs, output):
        if float(output.detach().abs().sum()) > 0:  # torch.fx cannot trace float()
            return blur(module, inputs, output)
        return None

    model = _two_convs()
    model.register_forward_hook(blur_if_any)
    top, _, bottom, _ = support(averaging(model), (20, 20))
    assert bottom - top == 7  # the truth, where the graph without it says 5
    first, *fix, detail = _message(model, (1, 20, 20))
    assert first == ("the graph torch.fx traced from Sequential computes another "
                     "value than the model, first at the output of Sequential.")
    assert " ".join(line.strip() for line in fix) == (
        "Fix: Sequential has a forward hook (blur_if_any) that torch.fx could not "
        "trace: do that in forward(), or remove it while computing the RF "
        "(handle.remove()).")
    assert detail.startswith("  the output differs by up to ")
    assert all(len(line) <= 77 for line in fix)


# ----------------------------------------- the guard: what the tracer missed
class TracedOtherwise(nn.Module):
    """A blur between two convs that forward() leaves out while torch.fx
    traces it: a change the tracer cannot see."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(1, 2, 3), nn.Conv2d(2, 2, 3)

    def forward(self, x):
        y = self.a(x)
        if not isinstance(y, torch.fx.Proxy):  # as is_fx_tracing() tells
            y = F.avg_pool2d(y, 3, 1, 1)
        return self.b(y)


def test_a_model_that_computes_otherwise_than_its_graph_is_refused():
    # The truth: 7; the graph traced says 5, which was the table's before.
    top, _, bottom, _ = support(averaging(TracedOtherwise()), (20, 20))
    assert bottom - top == 7
    first, fix, *more, detail = _message(TracedOtherwise(), (1, 20, 20))
    assert first == ("the graph torch.fx traced from TracedOtherwise computes "
                     "another value than the model, first at the input of module "
                     "'b' (Conv2d).")
    assert fix.startswith("Fix: make forward() compute the same when torch.fx "
                          "traces it")
    assert detail.startswith("  the output differs by up to ")
    assert all(len(line) <= 77 and line.startswith("    ") for line in more)


class Counted(nn.Module):
    """A conv whose output is blurred from its second call on: the graph,
    traced at the first call, keeps the first call's forward. With `scale`,
    the output is scaled by the number of calls instead (the same shape
    and RF, other values on every call)."""

    def __init__(self, scale: bool = False):
        super().__init__()
        self.conv, self.scale, self.calls = nn.Conv2d(1, 2, 3), scale, 0

    def forward(self, x):
        self.calls += 1
        y = self.conv(x)
        if self.scale:
            return y * self.calls
        return F.avg_pool2d(y, 3, 1, 1) if self.calls > 1 else y


def test_state_that_changes_the_forward_after_the_trace_is_refused():
    first = _message(Counted(), (1, 20, 20))[0]
    assert first == ("the graph torch.fx traced from Counted computes another value "
                     "than the model, first at the output of Counted.")


def test_a_model_that_disagrees_with_itself_is_checked_only_for_shapes_and_says_so():
    with pytest.warns(RFWarning, match=r"^the graph traced from Counted could not "
                                       r"be checked against it exactly: two "
                                       r"identical calls of Counted differ"):
        t = receptive_field(Counted(scale=True), (1, 20, 20))
    assert t.final.r_out == 3


class GrowsEachCall(nn.Module):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return F.pad(x, (self.calls,) * 4)


def test_an_output_whose_shape_changes_from_call_to_call_is_refused():
    first, fix, detail = _message(GrowsEachCall(), (1, 8, 8))
    assert first.startswith("the graph traced from GrowsEachCall computes another "
                            "output than the model: the output is (1, 1, ")
    assert fix == ("Fix: give a model whose output's shape is the same from call "
                   "to call.")
    assert detail.startswith("  Two identical calls of GrowsEachCall differ: ")


class Noisy(nn.Module):
    """A conv, noise added in eval mode too, a dropout, another conv."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.drop = nn.Conv2d(1, 2, 3), nn.Conv2d(2, 2, 3), nn.Dropout()

    def forward(self, x):
        y = self.a(x)
        return self.b(self.drop(y + 0.1 * torch.randn(y.shape)))


def test_randomness_in_forward_is_seeded_alike_and_the_caller_s_is_kept():
    model = Noisy().train()
    model.b.eval()  # a mode of its own, which the check must give back
    torch.manual_seed(1)
    state = torch.get_rng_state()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RFWarning)  # checked exactly, no warning
        t = receptive_field(model, (1, 20, 20))
    assert t.final.r_out == 5
    assert torch.equal(torch.get_rng_state(), state)
    assert model.training and model.drop.training and not model.b.training


def test_the_guard_catches_an_op_that_the_tracer_drops(monkeypatch):
    # Without the tracer keeping v2 transforms whole (its fix for class 2),
    # the crop vanishes from the graph: the check refuses, where the table
    # said n 30 and start 1.5 before.
    v2 = pytest.importorskip("torchvision.transforms.v2")
    from mnist_lib.rf import graph

    monkeypatch.setattr(graph, "is_transform", lambda m: False)
    model = nn.Sequential(v2.CenterCrop(24), nn.Conv2d(1, 1, 3))
    first = _message(model, (1, 32, 32))[0]
    assert first == ("the graph torch.fx traced from Sequential computes another "
                     "value than the model, first at the input of module '1' "
                     "(Conv2d).")


@pytest.mark.parametrize("real, traced, kind", [
    ([torch.ones(2, 3)], [torch.ones(2, 3) + 1e-6], None),          # rounding
    ([torch.ones(2, 3)], [torch.ones(2, 3) * 1.01], "values"),
    ([torch.ones(2, 3)], [torch.ones(3, 2)], "shape"),
    ([torch.ones(2)], [torch.ones(2), torch.ones(1)], "count"),
    ([torch.tensor([float("nan"), 1.0])], [torch.tensor([float("nan"), 1.0])], None),
    ([torch.tensor([float("nan"), 1.0])], [torch.tensor([0.0, 1.0])], "values"),
    ([torch.tensor([1, 2])], [torch.tensor([1, 3])], "values"),
])
def test_what_counts_as_a_difference(real, traced, kind):
    found = _difference(real, traced)
    assert (found and found[0]) == kind


# --------------------------------------- 2. torchvision's v2 transforms
def _v2():
    return pytest.importorskip("torchvision.transforms.v2")


@pytest.mark.parametrize("size, crop", [(32, 24), (29, 24), (31, 24), (20, 24),
                                        (21, 24)])
def test_a_v2_center_crop_is_the_crop_torchvision_makes(size, crop):
    model = nn.Sequential(_v2().CenterCrop(crop), nn.Conv2d(1, 1, 3))
    # Before: the conv's own numbers (n 30, start 1.5 at 32 px). The crop's
    # first row is round((size - crop) / 2) (Python's round: 2.5 -> 2), or,
    # for a crop larger than the image, (crop - size) // 2 rows added.
    f = receptive_field(model, (1, size, size)).final
    top = -((crop - size) // 2) if crop > size else int(round((size - crop) / 2))
    assert (f.n_out, f.r_out, f.start_out) == (crop - 2, 3, 0.5 + top + 1)
    assert f.n_out == model(torch.zeros(1, 1, size, size)).shape[-1]
    assert spans(averaging(model), (size, size)) == boxes(f, (size, size), clip=True)


@pytest.mark.parametrize("padding, start", [(4, (-2.5, -2.5)), ([1, 2], (-0.5, 0.5)),
                                            ([1, 2, 3, 4], (-0.5, 0.5))])
def test_a_v2_pad_is_a_pad(padding, start):
    model = nn.Sequential(_v2().Pad(padding), nn.Conv2d(1, 1, 3))
    # (left, top, right, bottom): the first unit moves up by `top` and left
    # by `left`; start is (height, width).
    f = receptive_field(model, (1, 32, 32)).final
    n = tuple(model(torch.zeros(1, 1, 32, 32)).shape[2:])
    assert f.n_out == (n[0] if n[0] == n[1] else n) and f.r_out == 3
    assert f.start_out == (start[0] if start[0] == start[1] else start)
    assert spans(averaging(model), (32, 32)) == boxes(f, (32, 32), clip=True)


@pytest.mark.parametrize("kernel, r", [(5, 7), ((3, 5), (7, 5))])
def test_a_v2_gaussian_blur_is_the_window_of_its_kernel(kernel, r):
    model = nn.Sequential(_v2().GaussianBlur(kernel), nn.Conv2d(1, 1, 3))
    # (kx, ky), as torchvision takes it: kx across. Before: r 3.
    f = receptive_field(model, (1, 32, 32)).final
    assert (f.r_out, f.n_out, f.start_out) == (r, 30, 1.5)
    assert spans(averaging(model), (32, 32)) == boxes(f, (32, 32))


@pytest.mark.parametrize("make, first", [
    (lambda v2: v2.Resize(16), "module '0' (Resize) resizes the map: each unit "
                               "mixes pixels with weights that change from unit "
                               "to unit, so no exact RF describes it."),
    (lambda v2: v2.RandomCrop(16), "module '0' (RandomCrop) is a torchvision "
                                   "transform without a rule here."),
])
def test_a_v2_resize_and_a_transform_without_a_rule_are_refused(make, first):
    model = nn.Sequential(make(_v2()), nn.Conv2d(1, 1, 3))
    message = _message(model, (1, 32, 32))
    assert message[0] == first and "'pointwise'" not in "\n".join(message)


def test_a_v2_normalize_changes_no_rf():
    v2 = _v2()
    model = nn.Sequential(v2.Normalize([0.5], [0.2]), nn.Conv2d(1, 1, 3))
    assert receptive_field(model, (1, 20, 20)).final.r_out == 3


# ------------------- 3. a declared Window, checked against each module's own
class TwoSame(nn.Module):
    """A k3 stride-2 and a k5 Conv2dSame, TensorFlow's padding computed from
    the map: the first adds 2, the second 4 x 2 = 8: RF 11."""

    def __init__(self):
        super().__init__()
        self.a, self.b = Conv2dSame(1, 1, 3, 2), Conv2dSame(1, 1, 5, 1)

    def forward(self, x):
        return self.b(self.a(x))


def test_a_window_declared_for_a_class_is_checked_against_each_module():
    # Before: one declaration, Window(3, 2, 'same'), for both: r 7, with the
    # map sizes right, so nothing noticed.
    top, _, bottom, _ = support(averaging(TwoSame()), (21, 21))
    assert bottom - top == 11
    first, fix, more, code = _message(TwoSame(), (1, 21, 21),
                                      custom={Conv2dSame: Window(3, 2, "same")})
    assert first == ("module 'b' (Conv2dSame) has kernel 5, but custom declares "
                     "Window(3, 2, 'same') for every Conv2dSame.")
    assert fix.startswith("Fix: declare only what the modules do not hold")
    assert code == "    custom={Conv2dSame: Window(padding='same')}"
    # The declaration the refusal gives: each module's own kernel and stride.
    f = receptive_field(TwoSame(), (1, 21, 21),
                        custom={Conv2dSame: Window(padding="same")}).final
    assert f.r_out == 11
    assert spans(averaging(TwoSame()), (21, 21)) == boxes(f, (21, 21), clip=True)


def test_the_refusal_of_the_trace_gives_the_declaration_that_is_right_for_both():
    lines = _message(TwoSame(), (1, 21, 21))
    assert lines[2] == "    custom={Conv2dSame: Window(padding='same')}"


@pytest.mark.parametrize("spec, first", [
    (Window(3), "module '1' (MaxPool2d) has kernel 2, but custom declares "
                "Window(3) for every MaxPool2d."),
    (Window(2, stride=1), "module '1' (MaxPool2d) has stride 2, but custom "
                          "declares Window(2, 1) for every MaxPool2d."),
])
def test_a_window_that_contradicts_a_module_s_own_settings_is_refused(spec, first):
    model = nn.Sequential(nn.Conv2d(1, 1, 3), nn.MaxPool2d(2))
    assert _message(model, (1, 28, 28), custom={nn.MaxPool2d: spec})[0] == first


def test_a_window_without_a_kernel_needs_a_module_that_has_one():
    class Halve(nn.Module):
        def forward(self, x):
            return F.max_pool2d(x, 2)

    first, fix, code = _message(nn.Sequential(nn.Conv2d(1, 1, 3), Halve()),
                                (1, 28, 28), custom={Halve: Window(stride=2)})
    assert first == ("custom declares Halve as Window(stride=2), without a kernel, "
                     "and module '1' (Halve) has no kernel_size.")
    assert code == "    custom={Halve: Window(kernel, stride, padding, dilation)}"
    f = receptive_field(nn.Sequential(nn.Conv2d(1, 1, 3), Halve()), (1, 28, 28),
                        custom={Halve: Window(2, 2)}).final
    assert (f.r_out, f.n_out, f.j_out) == (4, 13, 2)


@pytest.mark.parametrize("spec, text", [
    (Window(3, 2, "same"), "Window(3, 2, 'same')"), (Window(), "Window()"),
    (Window(padding="same"), "Window(padding='same')"),
    (Window(3, dilation=2), "Window(3, dilation=2)"),
    (Window((3, 5), (1, 2)), "Window((3, 5), (1, 2))"),
])
def test_a_window_prints_as_it_is_declared(spec, text):
    assert str(spec) == text


# --------------------------------------------- 4. a namedtuple output
Out = collections.namedtuple("Out", "logits aux")


class NamedOutput(nn.Module):
    """A conv and a 5x5 average pool; the output, and a side value, in a
    namedtuple (`read`: a wrapper reads a field of the inner one)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)

    def forward(self, x):
        y = F.avg_pool2d(self.conv(x), 5, 1)
        return Out(logits=y, aux=y.mean())


class ReadsAField(nn.Module):
    def __init__(self):
        super().__init__()
        self.body, self.head = NamedOutput(), nn.Conv2d(2, 2, 3)

    def forward(self, x):
        return self.head(self.body(x).logits)


@pytest.mark.parametrize("model, pick, r", [
    (NamedOutput, lambda out: out.logits, 7),
    (ReadsAField, lambda out: out, 9),
])
def test_a_namedtuple_is_a_tuple_whose_first_tensor_is_the_output(model, pick, r):
    # Before: "operation 'Out' ..., which returns several tensors, is not
    # supported".
    f = receptive_field(model(), (1, 20, 20)).final
    assert f.r_out == r
    assert spans(averaging(Picked(model(), pick)), (20, 20)) == boxes(f, (20, 20))


# ---------------------------------------- 5. nn.DataParallel inside a model
no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason=(
    "nn.DataParallel runs a model on the CPU only where there is no GPU"))


@no_gpu
def test_data_parallel_inside_a_model_is_looked_through():
    inner = nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2))
    model = nn.Sequential(nn.DataParallel(inner), nn.Conv2d(2, 2, 3))
    # Before: "module '0' (DataParallel) is not supported".
    t = receptive_field(model, (1, 20, 20))
    assert [r.name for r in t.layers()] == ["0.module.0", "0.module.1", "1"]
    assert (t.final.r_out, t.final.j_out, t.final.n_out) == (8, 2, 7)
    assert spans(averaging(model), (20, 20)) == boxes(t.final, (20, 20))


@no_gpu
def test_alexnet_with_its_features_in_data_parallel_is_alexnet():
    tv = pytest.importorskip("torchvision")
    model = tv.models.alexnet()
    plain = receptive_field(model, (3, 224, 224))
    model.features = nn.DataParallel(model.features)  # as pytorch/examples does
    t = receptive_field(model, (3, 224, 224))
    assert t.headline == plain.headline.replace("'features.", "'features.module.")
    assert [r.r_out for r in t.rows] == [r.r_out for r in plain.rows]


# ------------------------------------------------------- the rule table
def test_the_rule_table_refuses_a_target_with_two_rules():
    assert OP_RULES[torch.relu] is _pointwise and OP_RULES["mean"] is _reduce
    with pytest.raises(ValueError, match="has two rules"):
        _table(({torch.relu}, _pointwise), ({torch.relu}, _reduce))
