"""Ready-made spiking architectures for classification (used by ``snn train`` and the demo).

Both end in a non-spiking :class:`~snn.neurons.Integrator` whose membrane is the class
score, and take direct (current) input ``[T, B, C, H, W]``.

- ``mlp``: Flatten -> [Linear -> neuron] x len(hidden) -> Linear -> Integrator
- ``rnn``: Flatten -> Linear -> neuron with recurrent weights (x[t] + W s[t-1]) -> Linear -> Integrator
  (a temporal task: ``--encoder rows``)
- ``cnn``: [Conv3x3 -> BatchNorm -> neuron -> AvgPool2] x 2 -> Flatten -> Linear -> neuron
  -> Linear -> Integrator (the digits CNN of the conversion work, with neurons for ReLUs)
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from torch import nn

from snn.errors import SpikeforgeError
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


def build_cnn(input_shape: Sequence[int], num_classes: int, neuron: str = "lif",
              channels: Sequence[int] = (32, 64), hidden: int = 128, **neuron_kwargs: Any) -> Sequential:
    if len(input_shape) != 3:
        raise SpikeforgeError(f"the cnn architecture needs image input [C, H, W], got {tuple(input_shape)}; "
                              "use --arch mlp")
    in_channels, height, width = input_shape
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


def build_model(arch: str, input_shape: Sequence[int], num_classes: int, neuron: str = "lif",
                **kwargs: Any) -> Sequential:
    """Build ``arch`` (``mlp``, ``cnn`` or ``rnn``) with ``neuron`` (``if``, ``lif``, ``cuba``, ``alif``)."""
    if neuron not in NEURONS_BY_FLAG:
        raise SpikeforgeError(f"unknown neuron {neuron!r}; choose one of {', '.join(NEURONS_BY_FLAG)}")
    if arch == "mlp":
        return build_mlp(input_shape, num_classes, neuron, **kwargs)
    if arch == "cnn":
        return build_cnn(input_shape, num_classes, neuron, **kwargs)
    if arch == "rnn":
        return build_rnn(input_shape, num_classes, neuron, **kwargs)
    raise SpikeforgeError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
