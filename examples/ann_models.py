"""Example ANNs to convert: ``snn convert --ann examples.ann_models:cifar_resnet ...``.

Digits (1x8x8): ``digits_mlp``, ``digits_cnn``, ``digits_resnet`` (defined in ``converters.reference_models``).
CIFAR-shaped (3x32x32): ``cifar_vgg`` (VGG-style, max pooling), ``cifar_resnet``
(ResNet-style basic blocks with residual additions and a max-pooling stem) and
``cifar_resnet_avgpool`` (the same with an average-pooling stem: every backend takes it);
the full-size forms of the literature, ``cifar_vgg16`` and ``cifar_resnet18`` (the scale check's
networks, ``benchmarks/scale_check.py``).
"""

from __future__ import annotations

import torch
from torch import nn

from converters.reference_models import digits_cnn, digits_mlp, digits_resnet

__all__ = ["digits_mlp", "digits_cnn", "digits_resnet", "cifar_vgg", "cifar_resnet", "cifar_resnet_avgpool",
           "cifar_vgg16", "cifar_resnet18"]
VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


def _conv_bn_relu(c_in: int, c_out: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]


def cifar_vgg(num_classes: int = 10, width: int = 32) -> nn.Module:
    """VGG-style: [conv-BN-ReLU x2, maxpool] x3, global average pool, linear."""
    layers: list[nn.Module] = []
    c_in = 3
    for c_out in (width, 2 * width, 4 * width):
        layers += [*_conv_bn_relu(c_in, c_out), *_conv_bn_relu(c_out, c_out), nn.MaxPool2d(2)]
        c_in = c_out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.1), nn.Linear(c_in, num_classes)]
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    """ResNet basic block: relu(bn(conv(relu(bn(conv(x))))) + shortcut(x))."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU()
        self.shortcut = nn.Identity() if stride == 1 and c_in == c_out else nn.Sequential(
            nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class CifarResNet(nn.Module):
    """Stem (conv-BN-ReLU, max or average pool), three basic-block stages, global average pool, linear."""

    def __init__(self, num_classes: int = 10, width: int = 16, stem_pool: str = "max") -> None:
        super().__init__()
        pools = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}
        if stem_pool not in pools:
            raise ValueError(f"stem_pool must be 'max' or 'avg', got {stem_pool!r}")
        self.stem = nn.Sequential(*_conv_bn_relu(3, width), pools[stem_pool](2))
        self.stages = nn.Sequential(BasicBlock(width, width), BasicBlock(width, 2 * width, stride=2),
                                    BasicBlock(2 * width, 4 * width, stride=2))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.stages(self.stem(x))), 1))


def cifar_resnet(num_classes: int = 10, width: int = 16) -> nn.Module:
    return CifarResNet(num_classes, width)


def cifar_resnet_avgpool(num_classes: int = 10, width: int = 16) -> nn.Module:
    """``cifar_resnet`` with an average-pooling stem: the form that also runs on Loihi and in Brian2
    (spike max pooling has no synaptic equivalent) and exports to NIR."""
    return CifarResNet(num_classes, width, stem_pool="avg")


def cifar_vgg16(num_classes: int = 10) -> nn.Module:
    """VGG-16 for CIFAR (the common form): 13 conv-BN-ReLU in five blocks, a 2x2 max pool after each,
    one Linear 512 -> classes."""
    layers: list[nn.Module] = []
    c_in = 3
    for item in VGG16:
        if item == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            layers += [nn.Conv2d(c_in, int(item), 3, padding=1), nn.BatchNorm2d(int(item)), nn.ReLU()]
            c_in = int(item)
    layers += [nn.Flatten(), nn.Linear(512, num_classes)]
    return nn.Sequential(*layers)


class ResNet18(nn.Module):
    """ResNet-18 for CIFAR: 3x3 stem conv-BN-ReLU without max pool, four stages of two basic blocks
    (64-512 channels, 1x1 conv-BN projection shortcuts), global average pool, linear."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(*_conv_bn_relu(3, 64))
        blocks, c_in = [], 64
        for c_out, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            blocks += [BasicBlock(c_in, c_out, stride), BasicBlock(c_out, c_out)]
            c_in = c_out
        self.stages = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.stages(self.stem(x))), 1))


def cifar_resnet18(num_classes: int = 10) -> nn.Module:
    return ResNet18(num_classes)
