"""A Window declared for a class, checked against each module's own
settings (issue #57, class 3): one declaration for a k3 and a k5 Conv2dSame
gave the k5 one the k3's window, with the map sizes right. Each case gives
the right number, checked against the gradient's support, or a refusal
whose fix gives it."""

from __future__ import annotations

import pytest
import torch.nn as nn
import torch.nn.functional as F

from mnist_lib.rf import RFError, Window, receptive_field
from tests.rf.helpers import Conv2dSame, averaging, boxes, spans, support


def _message(model, size, **kwargs) -> list[str]:
    """The lines of the RFError that `receptive_field` raises."""
    with pytest.raises(RFError) as err:
        receptive_field(model, size, **kwargs)
    return str(err.value).splitlines()


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
