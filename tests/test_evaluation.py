"""The test pass and its helpers (mnist_lib.evaluation), and eval mode for a block."""

from __future__ import annotations


import pytest
import torch

from mnist_lib.data import pixel_stats
from mnist_lib.evaluation import (confusion_matrix, misclassified, per_class_accuracy,
                                  recompute_bn_stats)
from mnist_lib.models import get_model


def test_evaluation_helpers_against_hand_counts():
    labels = torch.tensor([0, 0, 1, 1, 1, 2])
    pred = torch.tensor([0, 1, 1, 1, 2, 2])
    cm = confusion_matrix(pred, labels, n_classes=3)
    assert cm.tolist() == [[1, 1, 0], [0, 2, 1], [0, 0, 1]]
    assert per_class_accuracy(pred, labels, 3) == pytest.approx([50.0, 200 / 3, 100.0])
    assert misclassified(pred, labels).tolist() == [1, 4]



def test_eval_mode_gives_each_submodule_its_own_mode_back_even_after_an_error():
    from mnist_lib.utils import eval_mode

    model = get_model("Model_4").train()
    model.block1.eval()  # a part kept in eval on purpose
    with pytest.raises(RuntimeError, match="inside"):
        with eval_mode(model):
            assert not any(m.training for m in model.modules())
            raise RuntimeError("inside")
    assert not any(m.training for m in model.block1.modules())
    assert all(m.training for n, m in model.named_modules()
               if not n.startswith("block1"))



def test_recompute_bn_stats_gives_the_activations_own_mean_and_variance(small):
    """After the pass, each BatchNorm's running mean and variance are those of
    the activations it sees on the given images, whatever they were before."""
    torch.manual_seed(0)
    model = get_model("Model_4")
    bn = model.block1[1][1]  # the BatchNorm after the second convolution
    bn.running_mean.fill_(5.0)
    bn.running_var.fill_(7.0)
    images = small.train_images[:1000]
    mean, std = pixel_stats(images)
    seen = []
    hook = bn.register_forward_hook(lambda m, inp, out: seen.append(inp[0]))
    recompute_bn_stats(model, images, mean, std, batch_size=250)
    hook.remove()
    acts = torch.cat(seen)                  # 4 batches of 250, pre-BatchNorm
    assert len(seen) == 4 and acts.shape[0] == 1000
    assert torch.allclose(bn.running_mean, acts.mean(dim=(0, 2, 3)), atol=1e-5)
    # Per batch, unbiased, then averaged over the equal-sized batches.
    per_batch = torch.stack([a.var(dim=(0, 2, 3)) for a in seen]).mean(0)
    assert torch.allclose(bn.running_var, per_batch, rtol=1e-4)
    assert model.training                   # the mode it was in is restored

