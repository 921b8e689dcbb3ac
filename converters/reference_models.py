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


class ResidualBlock(nn.Module):
    """``relu(bn(conv(relu(bn(conv(x))))) + shortcut(x))``; the shortcut is a 1x1 conv + BN when the width changes."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU()
        self.shortcut = nn.Identity() if c_in == c_out else nn.Sequential(
            nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        return self.relu(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))) + self.shortcut(x))


class DigitsResNet(nn.Module):
    """A small residual network without max pooling: stem conv, two residual blocks around an
    average pool (8x8 -> 4x4), linear classifier."""

    def __init__(self, width: int = 16, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        self.block1 = ResidualBlock(width, width)
        self.pool = nn.AvgPool2d(2)
        self.block2 = ResidualBlock(width, 2 * width)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(2 * width * 16, num_classes))

    def forward(self, x):
        return self.head(self.block2(self.pool(self.block1(self.stem(x)))))


def digits_resnet() -> nn.Module:
    return DigitsResNet()


def digits_cnn() -> nn.Module:
    return DigitsCNN()


def digits_mlp() -> nn.Module:
    """64-256-128-10 multilayer perceptron with ReLU."""
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
                         nn.Linear(128, 10))
