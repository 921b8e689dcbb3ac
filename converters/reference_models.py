"""Reference ANNs for the digits dataset (8x8 grey images, 10 classes).

Importable by name as ``converters.reference_models:digits_cnn`` (the CLI's
``--ann package.module:factory``). ``examples/ann_models.py`` adds CIFAR-shaped ones.
"""

from __future__ import annotations

from torch import nn


class DigitsCNN(nn.Module):
    """Two conv-BN-ReLU-avgpool blocks, then linear-ReLU-linear (8x8 -> 4x4 -> 2x2)."""

    def __init__(self, channels: tuple[int, int] = (32, 64), hidden: int = 128, num_classes: int = 10) -> None:
        super().__init__()
        c1, c2 = channels
        self.block1 = nn.Sequential(nn.Conv2d(1, c1, 3, padding=1, bias=False), nn.BatchNorm2d(c1), nn.ReLU(),
                                    nn.AvgPool2d(2))
        self.block2 = nn.Sequential(nn.Conv2d(c1, c2, 3, padding=1, bias=False), nn.BatchNorm2d(c2), nn.ReLU(),
                                    nn.AvgPool2d(2))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(c2 * 4, hidden), nn.ReLU(), nn.Dropout(0.2),
                                  nn.Linear(hidden, num_classes))

    def forward(self, x):
        return self.head(self.block2(self.block1(x)))


def digits_cnn() -> nn.Module:
    return DigitsCNN()


def digits_mlp() -> nn.Module:
    """64-256-128-10 multilayer perceptron with ReLU."""
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
                         nn.Linear(128, 10))
