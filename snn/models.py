"""Ready-made spiking architectures for classification (used by ``snn train`` and the demo).

All end in a non-spiking :class:`~snn.neurons.Integrator` whose membrane is the class
score, and take time-major input ``[T, B, *input_shape]`` (direct current, spikes or frames).

- ``mlp``: Flatten -> [Linear -> neuron] x len(hidden) -> Linear -> Integrator (any input shape)
- ``rnn``: Flatten -> Linear -> neuron with recurrent weights (x[t] + W s[t-1]) -> Linear -> Integrator
  (any input shape: a sequence step of F features, e.g. SHD's (700,) with ``--encoder frames``,
  or an image row with ``--encoder rows``)
- ``cnn``: [Conv3x3 -> BatchNorm -> neuron -> AvgPool2] x 2 -> Flatten -> Linear -> neuron
  -> Linear -> Integrator (the digits CNN of the conversion work, with neurons for ReLUs)
- ``vgg``: [[Conv3x3 -> BatchNorm -> neuron] x convs -> Pool2] per entry of ``channels`` ->
  global AvgPool -> Linear -> Integrator (VGG-style; defaults (32, 64, 128) x 2 train on a CPU,
  ``channels=(64, 128, 256, 512, 512), convs=(2, 2, 3, 3, 3)`` is VGG-16's feature stack)
- ``resnet``: stem Conv3x3 -> BatchNorm -> neuron; stages of basic blocks, each
  ``neuron(BN(conv(neuron(BN(conv(x))))) + shortcut(x))`` with the shortcut the identity or a
  strided 1x1 Conv -> BatchNorm; global AvgPool -> Linear -> Integrator. A
  :class:`~snn.graph_network.GraphNetwork` whose merges are :class:`~snn.layers.Add` (the
  residual currents add before the neuron, as in the ANN it mirrors). Defaults (width 16,
  one block per stage, 3 stages) train on a CPU; ``width=64, blocks=(2, 2, 2, 2)`` is ResNet-18's.

``vgg``, ``resnet`` and ``cnn`` take images ``[C, H, W]`` (CIFAR's 3x32x32, digits' 1x8x8);
:func:`build_model` refuses other shapes with the architecture that takes them.
"""

from __future__ import annotations

import math
import operator
from typing import Any, Callable, Sequence

from torch import nn

from snn.errors import SpikeforgeError
from snn.graph_network import GraphNetwork, Node
from snn.layers import Add
from snn.names import ARCHITECTURES
from snn.network import Sequential
from snn.neurons import NEURONS_BY_FLAG, Integrator, NeuronLayer, neuron_from_flag

# Defaults per neuron flag, chosen for short (T <= 16) direct-input classification.
NEURON_DEFAULTS: dict[str, dict[str, Any]] = {
    "if": {},
    "lif": {"beta": 0.9},
    "cuba": {"alpha": 0.5, "beta": 0.9},
    "alif": {"beta": 0.9, "rho": 0.9, "gamma": 0.1},
}


def _neuron(name: str, overrides: dict[str, Any]) -> NeuronLayer:
    return neuron_from_flag(name, **{**NEURON_DEFAULTS.get(name, {}), **overrides})


def build_mlp(input_shape: Sequence[int], num_classes: int, neuron: str = "lif",
              hidden: Sequence[int] = (256,), **neuron_kwargs: Any) -> Sequential:
    layers: list[nn.Module] = [nn.Flatten()]
    width = math.prod(input_shape)
    for size in hidden:
        layers += [nn.Linear(width, size), _neuron(neuron, neuron_kwargs)]
        width = size
    layers += [nn.Linear(width, num_classes), Integrator()]
    return Sequential(*layers, input_shape=input_shape)


def build_rnn(input_shape: Sequence[int], num_classes: int, neuron: str = "lif", hidden: int = 128,
              **neuron_kwargs: Any) -> Sequential:
    """A recurrent spiking layer over a sequence (``--encoder rows``): Linear -> neuron with
    ``x[t] + W s[t-1]`` -> Linear -> Integrator."""
    width = math.prod(input_shape)
    recurrent = _neuron(neuron, {**neuron_kwargs, "recurrent_features": hidden})
    return Sequential(nn.Flatten(), nn.Linear(width, hidden), recurrent, nn.Linear(hidden, num_classes), Integrator(),
                      input_shape=input_shape)


def _image_shape(arch: str, input_shape: Sequence[int]) -> tuple[int, int, int]:
    """``(C, H, W)`` of an image input, or a clear error naming the architectures that take other shapes."""
    shape = tuple(input_shape)
    if len(shape) != 3:
        raise SpikeforgeError(f"the {arch} architecture needs image input [C, H, W] (e.g. 3x32x32), got {shape}; "
                              "for feature vectors or sequences (e.g. SHD's (700,) per step) use --arch mlp or rnn")
    return shape  # type: ignore[return-value]


def build_cnn(input_shape: Sequence[int], num_classes: int, neuron: str = "lif",
              channels: Sequence[int] = (32, 64), hidden: int = 128, **neuron_kwargs: Any) -> Sequential:
    in_channels, height, width = _image_shape("cnn", input_shape)
    layers: list[nn.Module] = []
    for out_channels in channels:
        if height < 2 or width < 2:
            raise SpikeforgeError(f"input {tuple(input_shape)} is too small for {len(channels)} pooling blocks")
        layers += [nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels),
                   _neuron(neuron, neuron_kwargs), nn.AvgPool2d(2)]
        in_channels, height, width = out_channels, height // 2, width // 2
    layers += [nn.Flatten(), nn.Linear(in_channels * height * width, hidden), _neuron(neuron, neuron_kwargs),
               nn.Linear(hidden, num_classes), Integrator()]
    return Sequential(*layers, input_shape=input_shape)


POOLS = {"avg": nn.AvgPool2d, "max": nn.MaxPool2d}


def build_vgg(input_shape: Sequence[int], num_classes: int, neuron: str = "lif",
              channels: Sequence[int] = (32, 64, 128), convs: int | Sequence[int] = 2, pool: str = "avg",
              dropout: float = 0.0, **neuron_kwargs: Any) -> Sequential:
    """VGG-style spiking CNN: per entry of ``channels`` a block of ``convs`` (one number, or one per
    block) Conv3x3 -> BatchNorm -> neuron, then a 2x2 pool (``avg``, which every backend folds
    into the next synapses, or ``max``, which on spikes passes a spike when any unit of the window
    fires); then global average pooling, ``Dropout(dropout)``, Linear -> Integrator."""
    in_channels, height, width = _image_shape("vgg", input_shape)
    per_block = [convs] * len(channels) if isinstance(convs, int) else list(convs)
    if not channels or len(per_block) != len(channels) or min(per_block) < 1 or min(channels) < 1:
        raise SpikeforgeError(f"vgg needs one or more blocks of at least one convolution: channels {tuple(channels)} "
                              f"and convs {convs} (one number, or one per block)")
    if pool not in POOLS:
        raise SpikeforgeError(f"unknown vgg pooling {pool!r}; choose one of {', '.join(POOLS)}")
    blocks = len(channels)
    if min(height, width) < 2 ** blocks:
        raise SpikeforgeError(f"the vgg architecture halves the image {blocks} times and needs at least "
                              f"{2 ** blocks}x{2 ** blocks} pixels, got {tuple(input_shape)}; give fewer channels "
                              "entries (blocks)")
    layers: list[nn.Module] = []
    for out_channels, count in zip(channels, per_block):
        for _ in range(count):
            layers += [nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels),
                       _neuron(neuron, neuron_kwargs)]
            in_channels = out_channels
        layers.append(POOLS[pool](2))
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    if dropout:
        layers.append(nn.Dropout(dropout))
    layers += [nn.Linear(in_channels, num_classes), Integrator()]
    return Sequential(*layers, input_shape=input_shape)


def build_resnet(input_shape: Sequence[int], num_classes: int, neuron: str = "lif", width: int = 16,
                 blocks: Sequence[int] = (1, 1, 1), **neuron_kwargs: Any) -> GraphNetwork:
    """Spiking ResNet (a :class:`~snn.graph_network.GraphNetwork`): stem Conv3x3 -> BatchNorm -> neuron;
    stage i has ``blocks[i]`` basic blocks of ``width * 2**i`` channels, its first block strided 2
    from the second stage on; global average pooling, Linear -> Integrator. A basic block adds its
    two branches' currents before its last neuron: ``neuron(BN(conv(neuron(BN(conv(x))))) +
    shortcut(x))``, the shortcut the identity or, where the shape changes, a strided 1x1 Conv -> BN."""
    in_channels, _, _ = _image_shape("resnet", input_shape)
    if width < 1 or not blocks or min(blocks) < 1:
        raise SpikeforgeError(f"resnet needs a positive width and at least one block per stage, got width {width} "
                              f"and blocks {tuple(blocks)}")
    nodes: list[Node] = []

    def add(name: str, layer: nn.Module, *inputs: str) -> str:
        nodes.append(Node(name, layer, inputs))
        return name

    def conv_bn(prefix: str, source: str, c_in: int, c_out: int, kernel: int, stride: int) -> str:
        conv = add(f"{prefix}_conv", nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
                   source)
        return add(f"{prefix}_bn", nn.BatchNorm2d(c_out), conv)

    x = add("stem_neuron", _neuron(neuron, neuron_kwargs), conv_bn("stem", "input", in_channels, width, 3, 1))
    channels = width
    for stage, count in enumerate(blocks, start=1):
        out_channels = width * 2 ** (stage - 1)
        for block in range(1, count + 1):
            stride = 2 if stage > 1 and block == 1 else 1
            name = f"s{stage}b{block}"
            h = conv_bn(f"{name}_1", x, channels, out_channels, 3, stride)
            h = conv_bn(f"{name}_2", add(f"{name}_neuron1", _neuron(neuron, neuron_kwargs), h), out_channels,
                        out_channels, 3, 1)
            same = stride == 1 and channels == out_channels
            shortcut = x if same else conv_bn(f"{name}_shortcut", x, channels, out_channels, 1, stride)
            x = add(f"{name}_neuron2", _neuron(neuron, neuron_kwargs), add(f"{name}_add", Add(), h, shortcut))
            channels = out_channels
    flat = add("flatten", nn.Flatten(), add("pool", nn.AdaptiveAvgPool2d(1), x))
    add("readout", Integrator(), add("fc", nn.Linear(channels, num_classes), flat))
    return GraphNetwork(nodes, "readout", input_shape)


BUILDERS: dict[str, Callable[..., Sequential | GraphNetwork]] = {
    "mlp": build_mlp, "cnn": build_cnn, "rnn": build_rnn, "vgg": build_vgg, "resnet": build_resnet,
}  # the keys are snn.names.ARCHITECTURES, in its order


def build_model(arch: str, input_shape: Sequence[int], num_classes: int, neuron: str = "lif",
                **kwargs: Any) -> Sequential | GraphNetwork:
    """Build ``arch`` (:data:`snn.names.ARCHITECTURES`: ``mlp``, ``cnn``, ``rnn``, ``vgg``, ``resnet``) for one
    time step of shape ``input_shape`` with ``neuron`` (``if``, ``lif``, ``cuba``, ``alif``); ``kwargs`` go
    to the builder (its options, then neuron parameters)."""
    if neuron not in NEURONS_BY_FLAG:
        raise SpikeforgeError(f"unknown neuron {neuron!r}; choose one of {', '.join(NEURONS_BY_FLAG)}")
    if arch not in BUILDERS:
        raise SpikeforgeError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    try:
        shape = tuple(operator.index(d) for d in input_shape)
    except TypeError:
        shape = ()
    if not shape or min(shape) < 1:
        raise SpikeforgeError(f"input shape must be one or more positive sizes (one time step's features, e.g. "
                              f"(3, 32, 32) or (700,)), got {tuple(input_shape)}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise SpikeforgeError(f"num_classes must be a positive integer, got {num_classes!r}")
    return BUILDERS[arch](shape, num_classes, neuron, **kwargs)
