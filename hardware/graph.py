"""A spiking network as populations of neurons joined by affine maps: the view every non-torch backend shares.

Contract. A :class:`snn.network.Sequential` (in eval mode) is read as a chain of
populations. Population ``k`` is one neuron layer; the stateless layers between it and the
previous neuron layer (or the network input) are folded into one affine map

    x_k[t] = W_k s_{k-1}[t] + b_k

from the previous population's output ``s_{k-1}`` (spikes, or the network input for
``k = 1``) to the population's input ``x_k``. ``W_k`` and ``b_k`` are found exactly by
pushing the unit vectors through the layers in float64 (``W = f(E) - f(0)``, ``b = f(0)``),
so convolution (stride, padding, groups), BatchNorm folding and average pooling (a
convolution with fixed weights 1/k^2) come out of torch itself, not a second
implementation. ``W_k`` is stored sparse (pre x post); its non-zeros are the synapses.

Two levels, so a backend pays only for what it uses:

- :class:`Segment` (from :func:`split_network`): the neuron layer, the stateless layers
  feeding it (as modules), its input and output feature shapes and its effective
  parameters (:meth:`Segment.parameters`, the neuron layer's ``parameters_now()``: decays
  clamped to [0, 1], threshold floored at ``snn.neurons.MIN_THRESHOLD``). No matrix yet.
  Lava's compiler starts here (it maps a lone ``Conv2d`` to a convolution itself).
- :class:`Population` (from :func:`network_graph`): the same with ``W_k`` (sparse),
  ``b_k``, per-neuron float64 parameters and the recurrent matrix, as Brian2 simulates it.

Affine layers: :data:`AFFINE_LAYERS` (Linear, Conv1d/2d, BatchNorm1d/2d in eval mode,
AvgPool and AdaptiveAvgPool 1d/2d, Flatten, Unflatten, Dropout in eval mode, Identity, Scale).
A :class:`~snn.graph_network.GraphNetwork` with one path is read as its chain; residual graphs
are refused for now.
Neuron layers: IF, LIF, CubaLIF (kind ``"cuba"``), ALIF (``"alif"``), Integrator
(``"integrator"``). Refused with :class:`~snn.errors.SpikeforgeError` naming the layer and
the fix: any other layer (MaxPool, ReLU, ...: no synaptic equivalent), any other neuron
model, stateless layers after the last neuron layer (no population to feed), a network
without neuron layers or without an input shape, and layers that do not run on the shape
they receive. A backend passes its own stricter ``check`` (run first, on every layer in
order) to :func:`split_network`; the refusals name the backend (``backend="Brian2"``).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from snn.errors import SpikeforgeError
from snn.graph_network import GraphNetwork
from snn.layers import Scale
from snn.network import Sequential
from snn.neurons import ALIF, CubaFamily, Integrator, NeuronLayer

AFFINE_LAYERS: tuple[type[nn.Module], ...] = (
    nn.Linear, nn.Conv1d, nn.Conv2d, nn.BatchNorm1d, nn.BatchNorm2d, nn.AvgPool1d, nn.AvgPool2d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.Flatten, nn.Unflatten, nn.Dropout, nn.Identity, Scale,
)

# Elements of the dense push kept in memory at once (float64): 2**23 ~ 64 MiB.
PUSH_CHUNK_ELEMENTS = 2 ** 23

LayerCheck = Callable[[str, nn.Module], None]
"""A backend's own refusal: ``check(child_name, layer)`` raises :class:`SpikeforgeError` or returns."""


def layer_label(name: str, layer: nn.Module) -> str:
    """How refusals name a layer: ``layer 2 (MaxPool2d)``."""
    return f"layer {name} ({type(layer).__name__})"


@dataclass(frozen=True)
class Segment:
    """One neuron layer and the stateless layers that feed it (modules; no matrix built yet).

    ``affine`` holds ``(child name, layer)`` in order; ``in_shape`` is the feature shape
    entering them (the previous population's or the network input's), ``shape`` the one
    leaving them (the neuron layer's).
    """

    name: str
    neuron: NeuronLayer
    affine: tuple[tuple[str, nn.Module], ...]
    in_shape: tuple[int, ...]
    shape: tuple[int, ...]

    @property
    def layers(self) -> list[nn.Module]:
        return [layer for _, layer in self.affine]

    @property
    def folded(self) -> list[str]:
        return [name for name, _ in self.affine]

    @property
    def size(self) -> int:
        return int(math.prod(self.shape))

    @property
    def label(self) -> str:
        return layer_label(self.name, self.neuron)

    def affine_map(self) -> tuple[sp.csr_matrix, np.ndarray, tuple[int, ...]]:
        """``(W [n_in, n_out] sparse, b [n_out], shape)`` of the stateless layers (see :func:`affine_map`)."""
        return affine_map(self.layers, self.in_shape)

    def start_membrane(self) -> np.ndarray | None:
        """v[-1] per neuron (float64) of a layer that starts charged (``v_init``), None when at rest."""
        v_init = getattr(self.neuron, "v_init", 0.0)
        return None if not v_init else v_init * self.parameters()["theta"]

    def parameters(self) -> dict[str, np.ndarray]:
        """The neuron layer's effective parameters (``parameters_now()``), float64, one value per neuron.

        Keys: ``beta, bias`` (Integrator), ``alpha, beta, theta, bias`` (IF / LIF / CubaLIF),
        plus ``rho, gamma`` (ALIF).
        """
        raw = self.neuron.parameters_now()._asdict()
        try:
            return {key: _per_neuron(value, self.shape) for key, value in raw.items()}
        except RuntimeError as error:
            raise SpikeforgeError(f"{self.label} has parameters that do not broadcast to its input shape "
                                  f"{self.shape}: {error}") from error


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
    v_start: np.ndarray | None = None  # v[-1] per neuron of a layer that starts charged (IF v_init); None: 0

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


def check_layer(name: str, layer: nn.Module, backend: str = "Brian2") -> None:
    """Refuse a layer the graph cannot express: not affine, or a neuron model without a population kind."""
    if isinstance(layer, NeuronLayer):
        if not isinstance(layer, (CubaFamily, ALIF, Integrator)):
            raise SpikeforgeError(f"{layer_label(name, layer)} is a neuron model with no {backend} equivalent here; "
                                  "use IF, LIF, CubaLIF, ALIF or Integrator")
        return
    if type(layer) not in AFFINE_LAYERS:
        raise SpikeforgeError(
            f"{layer_label(name, layer)} has no {backend} equivalent: only affine layers map to synapses "
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


def _output_shape(affine: Sequence[tuple[str, nn.Module]], shape: tuple[int, ...], label: str) -> tuple[int, ...]:
    if not affine:
        return shape
    try:
        with torch.no_grad():
            h = torch.zeros(1, *shape, dtype=torch.float64)
            for layer in _as_float64([layer for _, layer in affine]):
                h = layer(h)
    except RuntimeError as error:
        names = ", ".join(layer_label(n, m) for n, m in affine)
        raise SpikeforgeError(f"the layers feeding {label} ({names}) do not run on their input shape {shape}: "
                              f"{error}; check the layer sizes against the network's input_shape") from error
    return tuple(h.shape[1:])


def _input_shape(model: Sequential, input_shape: Sequence[int] | None) -> tuple[int, ...]:
    shape = input_shape if input_shape is not None else model.input_shape
    if shape is None:
        raise SpikeforgeError("the network has no input_shape; build it with Sequential(..., input_shape=(C, H, W)) "
                              "or pass input_shape")
    return tuple(int(d) for d in shape)


def _walk(model: Sequential, shape: tuple[int, ...], backend: str,
          check: LayerCheck | None) -> tuple[list[Segment], list[tuple[str, nn.Module]]]:
    """Segments in order plus the stateless layers left after the last neuron layer."""
    segments, pending = [], []
    for name, layer in model.named_children():
        if check is not None:
            check(name, layer)
        check_layer(name, layer, backend)
        if not isinstance(layer, NeuronLayer):
            pending.append((name, layer))
            continue
        out_shape = _output_shape(pending, shape, layer_label(name, layer))
        segments.append(Segment(name, layer, tuple(pending), shape, out_shape))
        shape, pending = out_shape, []
    return segments, pending


def _as_chain(graph: GraphNetwork, backend: str) -> Sequential:
    if not graph.is_chain():
        raise SpikeforgeError(f"the network is a graph with residual additions or concatenations; {backend} runs "
                              "chains of layers only for now; convert or build a network without skip connections")
    return graph.as_sequential().eval()


def split_network(model: Sequential | GraphNetwork, input_shape: Sequence[int] | None = None, backend: str = "Brian2",
                  check: LayerCheck | None = None) -> tuple[tuple[int, ...], list[Segment]]:
    """``(input shape, segments)`` of ``model``; refuses what the graph cannot express (module docstring).

    ``check`` is the backend's own refusal, run on each layer before the graph's; ``backend``
    names the backend in the graph's refusals.
    """
    if isinstance(model, GraphNetwork):
        model = _as_chain(model, backend)
    shape = _input_shape(model, input_shape)
    segments, trailing = _walk(model, shape, backend, check)
    if trailing:
        names = ", ".join(layer_label(n, m) for n, m in trailing)
        raise SpikeforgeError(f"the network ends in stateless layers ({names}); end it with a neuron layer "
                              f"(e.g. an Integrator readout) so {backend} has a population to run")
    if not segments:
        raise SpikeforgeError(f"the network has no neuron layer; nothing to run on {backend}")
    return shape, segments


def estimate_synapses(model: Sequential, input_shape: Sequence[int] | None = None) -> int:
    """Upper bound on the synapses of one copy of ``model`` (no dense push; cheap for any size).

    Stateless layers after the last neuron layer feed nothing and count nothing.
    """
    segments, _ = _walk(model, _input_shape(model, input_shape), "Brian2", None)
    total = 0
    for segment in segments:
        fan = math.prod(fan_in_bound(layer) for layer in segment.layers)
        total += segment.size * min(fan, math.prod(segment.in_shape))
        if getattr(segment.neuron, "recurrent", None) is not None:
            total += segment.neuron.recurrent_features ** 2
    return int(total)


def _as_float64(layers: Sequence[nn.Module]) -> list[nn.Module]:
    return [copy.deepcopy(layer).double().eval() for layer in layers]


def affine_map(layers: Sequence[nn.Module], in_shape: tuple[int, ...]
               ) -> tuple[sp.csr_matrix, np.ndarray, tuple[int, ...]]:
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


def _kind(neuron: NeuronLayer) -> str:
    if isinstance(neuron, Integrator):
        return "integrator"
    return "alif" if isinstance(neuron, ALIF) else "cuba"


def population(segment: Segment) -> Population:
    """The segment with its affine map, per-neuron parameters and recurrent matrix computed."""
    weight, bias_in, _ = segment.affine_map()
    kind = _kind(segment.neuron)
    reset = "none" if kind == "integrator" else segment.neuron.reset
    recurrent = None
    if getattr(segment.neuron, "recurrent", None) is not None:
        recurrent = sp.csr_matrix(segment.neuron.recurrent.weight.detach().double().cpu().numpy().T)
        recurrent.eliminate_zeros()
    return Population(segment.name, kind, segment.shape, segment.parameters(), reset, weight, bias_in,
                      segment.folded, recurrent, segment.start_membrane())


def network_graph(model: Sequential, input_shape: Sequence[int] | None = None,
                  backend: str = "Brian2") -> NetworkGraph:
    """Describe ``model`` (in eval mode) as populations and sparse affine maps (module docstring)."""
    shape, segments = split_network(model, input_shape, backend)
    return NetworkGraph(shape, [population(segment) for segment in segments])
