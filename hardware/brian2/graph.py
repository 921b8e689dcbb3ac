"""A spiking network as a graph of neuron populations joined by affine maps.

Every backend that is not torch needs the same view of a :class:`snn.network.Sequential`:
the stateless layers between two neuron layers (Linear, Conv, BatchNorm in eval mode,
average pooling, Flatten, Dropout in eval mode, Identity) form one affine map

    x_k[t] = W_k s_{k-1}[t] + b_k

from the previous population's output ``s_{k-1}`` (spikes, or the network input for the
first population) to the next population's input ``x_k``. ``W_k`` is found exactly by
pushing the unit vectors through the layers in float64 (``W = f(E) - f(0)``, ``b = f(0)``),
so convolution (stride, padding, groups), BatchNorm folding and average pooling (a
convolution with fixed weights 1/k^2) come out of torch itself instead of a second
implementation. ``W_k`` is stored sparse (pre x post); its non-zeros are the synapses.

Layers that are not affine (MaxPool, ReLU, ...) have no synaptic equivalent and raise
:class:`~snn.errors.SpikeforgeError` naming the layer.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from snn.errors import SpikeforgeError
from snn.network import Sequential
from snn.neurons import ALIF, Integrator, NeuronLayer, _CubaFamily

AFFINE_LAYERS: tuple[type[nn.Module], ...] = (
    nn.Linear, nn.Conv1d, nn.Conv2d, nn.BatchNorm1d, nn.BatchNorm2d, nn.AvgPool1d, nn.AvgPool2d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.Flatten, nn.Unflatten, nn.Dropout, nn.Identity,
)

# Elements of the dense push kept in memory at once (float64): 2**23 ~ 64 MiB.
PUSH_CHUNK_ELEMENTS = 2 ** 23


@dataclass
class Population:
    """One neuron layer and the affine map that feeds it.

    ``kind`` is ``"cuba"`` (IF / LIF / CubaLIF), ``"alif"`` or ``"integrator"``;
    ``params`` holds per-neuron float64 arrays (alpha, beta, theta, bias[, rho, gamma]);
    ``weight`` is ``[n_pre, n]`` sparse, ``bias_in`` the affine map's offset ``b``.
    ``recurrent`` is ``[n, n]`` (pre x post) or ``None``.
    """

    name: str
    kind: str
    shape: tuple[int, ...]
    params: dict[str, np.ndarray]
    reset: str
    weight: sp.csr_matrix
    bias_in: np.ndarray
    folded: list[str] = field(default_factory=list)
    recurrent: sp.csr_matrix | None = None

    @property
    def size(self) -> int:
        return int(math.prod(self.shape))

    @property
    def spiking(self) -> bool:
        return self.kind != "integrator"

    @property
    def synapses(self) -> int:
        return int(self.weight.nnz + (0 if self.recurrent is None else self.recurrent.nnz))


@dataclass
class NetworkGraph:
    """Input shape plus the populations in order; population k is fed by k-1 (or the input)."""

    input_shape: tuple[int, ...]
    populations: list[Population]

    @property
    def input_size(self) -> int:
        return int(math.prod(self.input_shape))

    @property
    def synapses(self) -> int:
        return sum(p.synapses for p in self.populations)

    @property
    def neurons(self) -> int:
        return self.input_size + sum(p.size for p in self.populations)


def _layer_label(name: str, layer: nn.Module) -> str:
    return f"layer {name} ({type(layer).__name__})"


def _check_affine(name: str, layer: nn.Module) -> None:
    if isinstance(layer, NeuronLayer):
        if not isinstance(layer, (_CubaFamily, ALIF, Integrator)):
            raise SpikeforgeError(f"{_layer_label(name, layer)} is a neuron model with no Brian2 equivalent here; "
                                  "use IF, LIF, CubaLIF, ALIF or Integrator")
        return
    if type(layer) not in AFFINE_LAYERS:
        raise SpikeforgeError(
            f"{_layer_label(name, layer)} has no Brian2 equivalent: only affine layers map to synapses "
            f"({', '.join(t.__name__ for t in AFFINE_LAYERS)}); replace it (e.g. MaxPool by AvgPool) and retrain")


def fan_in_bound(layer: nn.Module) -> int:
    """Upper bound on the inputs one output of ``layer`` depends on (for size estimates)."""
    if isinstance(layer, nn.Linear):
        return layer.in_features
    if isinstance(layer, (nn.Conv1d, nn.Conv2d)):
        return layer.in_channels // layer.groups * math.prod(layer.kernel_size)
    if isinstance(layer, (nn.AvgPool1d, nn.AvgPool2d)):
        k = layer.kernel_size
        return math.prod(k) if isinstance(k, (tuple, list)) else int(k) ** (2 if isinstance(layer, nn.AvgPool2d) else 1)
    if isinstance(layer, (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)):
        return 1 << 30  # unknown without shapes; capped by n_pre below
    return 1


def _output_shape(layers: Sequence[nn.Module], shape: tuple[int, ...]) -> tuple[int, ...]:
    with torch.no_grad():
        h = torch.zeros(1, *shape, dtype=torch.float64)
        for layer in layers:
            h = layer(h)
    return tuple(h.shape[1:])


def estimate_synapses(model: Sequential, input_shape: Sequence[int] | None = None) -> int:
    """Upper bound on the synapses of one copy of ``model`` (no dense push; cheap for any size)."""
    shape = _input_shape(model, input_shape)
    total, fan, n_pre, pending = 0, 1, math.prod(shape), []
    for name, layer in model.named_children():
        _check_affine(name, layer)
        if isinstance(layer, NeuronLayer):
            out_shape = _output_shape(_as_float64(pending), shape) if pending else shape
            n_post = math.prod(out_shape)
            total += n_post * min(fan, n_pre)
            if getattr(layer, "recurrent", None) is not None:
                total += layer.recurrent_features ** 2
            shape, fan, n_pre, pending = out_shape, 1, n_post, []
        else:
            fan *= fan_in_bound(layer)
            pending.append(layer)
    return int(total)


def _input_shape(model: Sequential, input_shape: Sequence[int] | None) -> tuple[int, ...]:
    shape = input_shape if input_shape is not None else model.input_shape
    if shape is None:
        raise SpikeforgeError("the network has no input_shape; build it with Sequential(..., input_shape=(C, H, W)) "
                              "or pass input_shape")
    return tuple(int(d) for d in shape)


def _as_float64(layers: Sequence[nn.Module]) -> list[nn.Module]:
    return [copy.deepcopy(layer).double().eval() for layer in layers]


def affine_map(layers: Sequence[nn.Module], in_shape: tuple[int, ...]) -> tuple[sp.csr_matrix, np.ndarray, tuple[int, ...]]:
    """``(W [n_in, n_out] sparse, b [n_out], out_shape)`` of a chain of affine layers, exact in float64."""
    n_in = int(math.prod(in_shape))
    if not layers:
        return sp.identity(n_in, dtype=np.float64, format="csr"), np.zeros(n_in), in_shape
    chain = _as_float64(layers)

    def f(h: torch.Tensor) -> torch.Tensor:
        for layer in chain:
            h = layer(h)
        return h

    with torch.no_grad():
        zero = f(torch.zeros(1, *in_shape, dtype=torch.float64))
        out_shape, offset = tuple(zero.shape[1:]), zero.reshape(-1)
        n_out = offset.numel()
        chunk = max(1, PUSH_CHUNK_ELEMENTS // max(n_in, n_out))
        blocks = []
        for start in range(0, n_in, chunk):
            rows = min(chunk, n_in - start)
            eye = torch.zeros(rows, n_in, dtype=torch.float64)
            eye[torch.arange(rows), torch.arange(start, start + rows)] = 1.0
            block = (f(eye.reshape(rows, *in_shape)).reshape(rows, n_out) - offset).numpy()
            blocks.append(sp.csr_matrix(block))
    weight = sp.vstack(blocks, format="csr")
    weight.eliminate_zeros()
    return weight, offset.numpy().copy(), out_shape


def _per_neuron(value: torch.Tensor, shape: tuple[int, ...]) -> np.ndarray:
    return torch.broadcast_to(value.detach().double().cpu(), shape).reshape(-1).numpy().copy()


def _population(name: str, layer: NeuronLayer, shape: tuple[int, ...], weight: sp.csr_matrix, bias_in: np.ndarray,
                folded: list[str]) -> Population:
    if isinstance(layer, Integrator):
        kind, reset = "integrator", "none"
        raw = {"beta": layer.beta.clamp(0, 1), "bias": layer.bias}
    elif isinstance(layer, ALIF):
        kind, reset = "alif", layer.reset
        p = layer.parameters_now()
        raw = {"alpha": p.alpha, "beta": p.beta, "theta": p.theta, "bias": p.bias, "rho": p.rho, "gamma": p.gamma}
    else:
        kind, reset = "cuba", layer.reset
        p = layer.parameters_now()
        raw = {"alpha": p.alpha, "beta": p.beta, "theta": p.theta, "bias": p.bias}
    try:
        params = {key: _per_neuron(value, shape) for key, value in raw.items()}
    except RuntimeError as error:
        raise SpikeforgeError(f"layer {name} ({type(layer).__name__}) has parameters that do not broadcast to its "
                              f"input shape {shape}: {error}") from error
    recurrent = None
    if getattr(layer, "recurrent", None) is not None:
        recurrent = sp.csr_matrix(layer.recurrent.weight.detach().double().cpu().numpy().T)
        recurrent.eliminate_zeros()
    return Population(name, kind, shape, params, reset, weight, bias_in, folded, recurrent)


def network_graph(model: Sequential, input_shape: Sequence[int] | None = None) -> NetworkGraph:
    """Describe ``model`` (in eval mode) as populations and sparse affine maps.

    Stateless layers after the last neuron layer have no population to feed and raise.
    """
    shape = _input_shape(model, input_shape)
    first_shape, populations, pending = shape, [], []
    for name, layer in model.named_children():
        _check_affine(name, layer)
        if not isinstance(layer, NeuronLayer):
            pending.append((name, layer))
            continue
        weight, bias_in, out_shape = affine_map([m for _, m in pending], shape)
        populations.append(_population(name, layer, out_shape, weight, bias_in, [n for n, _ in pending]))
        shape, pending = out_shape, []
    if pending:
        names = ", ".join(_layer_label(n, m) for n, m in pending)
        raise SpikeforgeError(f"the network ends in stateless layers ({names}); end it with a neuron layer "
                              "(e.g. an Integrator readout) so Brian2 has a population to simulate")
    if not populations:
        raise SpikeforgeError("the network has no neuron layer; nothing to simulate in Brian2")
    return NetworkGraph(first_shape, populations)
