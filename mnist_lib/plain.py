"""The plain training loop: the `train()` / `test()` pair of PyTorch's MNIST
example, written for this book's data. Step 1 trains with it before it uses
`mnist_lib.train.fit`, which is this loop plus measured speed-ups; a test
checks that both give the same weights from the same start.

    train_loader, test_loader = loaders(data, batch_size=128, seed=0)
    for epoch in range(1, 3):
        train(model, train_loader, optimizer)
        test(model, test_loader)
"""

from __future__ import annotations

from typing import Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import BatchSampler, DataLoader, Sampler, TensorDataset

from .config import TrainConfig
from .data import MNIST, normalize, pixel_stats, to_float


def loaders(data: MNIST, batch_size: int, seed: int = 0,
            test_batch_size: int = TrainConfig.eval_batch_size
            ) -> tuple[DataLoader, DataLoader]:
    """DataLoaders of standardised images (the training set's mean and std)
    and labels; the training one shuffles with a generator seeded by `seed`,
    the test one takes `test_batch_size` images a batch, as `fit` evaluates."""
    mean, std = pixel_stats(data.train_images)
    train_set = TensorDataset(normalize(to_float(data.train_images), mean, std),
                              data.train_labels)
    test_set = TensorDataset(normalize(to_float(data.test_images), mean, std),
                             data.test_labels)
    shuffle = Shuffle(len(train_set), torch.Generator().manual_seed(seed))
    # The sampler hands over a batch's indices at once, and the dataset returns
    # the batch by indexing its tensors: one copy a batch. (With batch_size=,
    # a DataLoader fetches the images one by one and stacks them: on a busy
    # CPU that took minutes an epoch.)
    return (DataLoader(train_set, sampler=BatchSampler(shuffle, batch_size, False),
                       batch_size=None),
            DataLoader(test_set, sampler=BatchSampler(range(len(test_set)),
                                                      test_batch_size, False),
                       batch_size=None))


class Shuffle(Sampler[int]):
    """Each epoch, a new order of range(n): one torch.randperm from `generator`,
    as `fit` draws it. (DataLoader(shuffle=True, generator=g) draws more from g
    than that, so its batches would come in another order than fit's.)"""

    def __init__(self, n: int, generator: torch.Generator) -> None:
        self.n, self.generator = n, generator

    def __iter__(self) -> Iterator[int]:
        return iter(torch.randperm(self.n, generator=self.generator).tolist())

    def __len__(self) -> int:
        return self.n


def train(model: nn.Module, loader: DataLoader,
          optimizer: torch.optim.Optimizer) -> float:
    """One epoch: for each batch, zero the gradients, predict, measure the
    loss, back-propagate, step. Returns the mean training loss."""
    device = next(model.parameters()).device
    model.train()  # BatchNorm uses the batch's statistics, dropout is on
    total = 0.0
    for images, labels in loader:
        images, labels = images.to(device), labels.to(device)
        optimizer.zero_grad()
        log_probs = model(images)
        # The models end in log_softmax: nll_loss is then the cross-entropy.
        loss = F.nll_loss(log_probs, labels)
        loss.backward()
        optimizer.step()
        total += loss.item() * len(labels)
    return total / len(loader.dataset)


def test(model: nn.Module, loader: DataLoader) -> tuple[float, float]:
    """The mean loss and the accuracy (%) on `loader`, without gradients."""
    device = next(model.parameters()).device
    model.eval()  # BatchNorm uses its running statistics, dropout is off
    loss, correct = 0.0, 0
    with torch.no_grad():
        for images, labels in loader:
            images, labels = images.to(device), labels.to(device)
            log_probs = model(images)
            loss += F.nll_loss(log_probs, labels, reduction="sum").item()
            correct += (log_probs.argmax(dim=1) == labels).sum().item()
    n = len(loader.dataset)
    return loss / n, 100.0 * correct / n
