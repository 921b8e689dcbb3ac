"""A spiking network as populations of neurons joined by affine maps: the view every non-torch backend shares.

Contract. A network (:class:`snn.network.Sequential` or :class:`snn.graph_network.GraphNetwork`,
in eval mode) is read as a directed acyclic graph of populations. Population ``P`` is one
neuron layer; the stateless layers between it and the neuron layers (or the network input)
it reads are affine in each of those sources, so its input is

    x_P[t] = sum_{s in sources(P)} W_{s,P} s[t] + b_P

``W_{s,P}`` (one *projection* per source) and ``b_P`` are found exactly by pushing unit
vectors through the layers in float64, one source at a time with the others at zero
(``W_s = f(E_s, 0) - f(0, 0)``, ``b = f(0, 0)``), so convolution (stride, padding, groups),
BatchNorm folding, average pooling (a convolution with fixed weights 1/k^2), a residual
addition (:class:`~snn.layers.Add`: two projections into the same neurons) and a
concatenation (:class:`~snn.layers.Concat`: each source feeds its own slice) come out of
torch itself, not a second implementation. ``W`` is stored sparse (pre x post); its
non-zeros are the synapses. A chain (every :class:`~snn.network.Sequential`) is the case of
one source per population, the previous one.

Timing. Every backend keeps the contract's timing: population ``P`` at step ``t`` reads its
sources' outputs of the same step ``t``. A backend whose connections delay (Lava: one step
per connection) delays the shorter paths to match; :meth:`Segment.depth` (1 + the deepest
source's depth, the input at depth 0) is what it aligns to.

Two levels, so a backend pays only for what it uses:

- :class:`Segment` (from :func:`split_network`): the neuron layer, its sources, the stateless
  layers feeding it (as modules, with their wiring), the feature shapes and its effective
  parameters (:meth:`Segment.parameters`, the neuron layer's ``parameters_now()``: decays
  clamped to [0, 1], threshold floored at ``snn.neurons.MIN_THRESHOLD``). No matrix yet.
  Lava's compiler starts here (it maps a lone ``Conv2d`` path to a convolution itself).
- :class:`Population` (from :func:`network_graph`): the same with its projections (sparse),
  ``b``, per-neuron float64 parameters and the recurrent matrix, as Brian2 simulates it.

Affine layers: :data:`AFFINE_LAYERS` (Linear, Conv1d/2d, BatchNorm1d/2d in eval mode,
AvgPool and AdaptiveAvgPool 1d/2d, Flatten, Unflatten, Dropout in eval mode, Identity,
Scale, Add, Concat). Neuron layers: IF, LIF, CubaLIF (kind ``"cuba"``), ALIF (``"alif"``),
Integrator (``"integrator"``). Refused with :class:`~snn.errors.SpikeforgeError` naming the
layer and the fix: any other layer (MaxPool, SpikeMaxPool2d, ReLU, ...: no synaptic
equivalent), any other neuron model, stateless layers that feed no neuron layer (the
network must end in one), a neuron layer with a reset other than "subtract" or "zero"
(snnTorch's "subtract-delayed"), a network without neuron layers or without an input shape,
and layers that do not run on the shape they receive. A backend passes its own stricter
``check`` (run first, on every layer in order) to :func:`split_network`; the refusals name
the backend (``backend="Brian2"``).
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
from snn.graph_network import INPUT, GraphNetwork, Node, network_nodes
from snn.layers import Add, Concat, Scale
from snn.network import Sequential
from snn.neurons import ALIF, CubaFamily, Integrator, NeuronLayer

AFFINE_LAYERS: tuple[type[nn.Module], ...] = (
    nn.Linear, nn.Conv1d, nn.Conv2d, nn.BatchNorm1d, nn.BatchNorm2d, nn.AvgPool1d, nn.AvgPool2d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.Flatten, nn.Unflatten, nn.Dropout, nn.Identity, Scale, Add, Concat,
)

# Elements of the dense push kept in memory at once (float64): 2**23 ~ 64 MiB.
PUSH_CHUNK_ELEMENTS = 2 ** 23

LayerCheck = Callable[[str, nn.Module], None]
"""A backend's own refusal: ``check(node_name, layer)`` raises :class:`SpikeforgeError` or returns."""

Projection = tuple[str, sp.csr_matrix]
"""``(source, W [n_source, n] sparse)``: one source's synapses into a population."""


def layer_label(name: str, layer: nn.Module) -> str:
    """How refusals name a layer: ``layer 2 (MaxPool2d)``."""
    return f"layer {name} ({type(layer).__name__})"


@dataclass(frozen=True)
class Segment:
    """One neuron layer, the sources it reads and the stateless layers between (modules; no matrix yet).

    ``affine`` holds the stateless nodes in running order, ``entry`` names the node whose
    output is the neuron layer's input (the last affine node, or the one source itself);
    ``sources`` are the neuron layers (and/or ``"input"``) those nodes read, the main one
    first (reached first through each merge's first input), with their feature shapes in
    ``source_shapes``; ``shape`` is the neuron layer's. ``depth`` is 1 + the deepest
    source's depth (the input has depth 0).
    """

    name: str
    neuron: NeuronLayer
    affine: tuple[Node, ...]
    sources: tuple[str, ...]
    source_shapes: tuple[tuple[int, ...], ...]
    shape: tuple[int, ...]
    entry: str
    depth: int = 1

    @property
    def layers(self) -> list[nn.Module]:
        return [node.layer for node in self.affine]

    @property
    def folded(self) -> list[str]:
        return [node.name for node in self.affine]

    @property
    def in_shape(self) -> tuple[int, ...]:
        """The main source's feature shape."""
        return self.source_shapes[0]

    @property
    def size(self) -> int:
        return int(math.prod(self.shape))

    @property
    def label(self) -> str:
        return layer_label(self.name, self.neuron)

    def is_chain(self) -> bool:
        """One source, and the stateless layers form one path from it (each reads the one before)."""
        previous = self.sources[0]
        for node in self.affine:
            if node.inputs != (previous,):
                return False
            previous = node.name
        return len(self.sources) == 1 and previous == self.entry

    def path(self, source: str) -> list[nn.Module] | None:
        """The layers from ``source`` to the neuron layer when they form one chain followed only by
        additions of other sources (a residual branch: ``conv -> bn -> Add``), else ``None``."""
        reach = {source}
        for node in self.affine:
            if reach.intersection(node.inputs):
                reach.add(node.name)
        chain, current, merged = [], source, False
        while current != self.entry:
            consumers = [node for node in self.affine if current in node.inputs]
            if len(consumers) != 1:
                return None
            node = consumers[0]
            if isinstance(node.layer, Add):
                if sum(i in reach for i in node.inputs) != 1:
                    return None
                merged = True
            elif merged or node.inputs != (current,):
                return None
            else:
                chain.append(node.layer)
            current = node.name
        return chain

    def projections(self) -> tuple[list[Projection], np.ndarray]:
        """``([(source, W [n_source, n] sparse), ...], b [n])`` (see :func:`affine_projections`)."""
        return affine_projections(self.affine, self.entry, self.sources, self.source_shapes)

    def offset(self) -> np.ndarray:
        """``b [n]``: the stateless layers' output with every source at zero (no matrix pushed)."""
        if not self.affine:
            return np.zeros(self.size)
        return _evaluator(self.affine, self.entry)(_zeros(self.sources, self.source_shapes, 1)).reshape(-1).numpy()

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
    """One neuron layer and the projections that feed it.

    ``kind`` is ``"cuba"`` (IF / LIF / CubaLIF), ``"alif"`` or ``"integrator"``;
    ``params`` holds per-neuron float64 arrays (alpha, beta, theta, bias[, rho, gamma]);
    ``projections`` holds ``(source, W [n_source, n] sparse)`` per source (``"input"`` or an
    earlier population's name), ``bias_in`` the affine maps' offset ``b``.
    ``recurrent`` is ``[n, n]`` (pre x post) or ``None``.
    """

    name: str
    kind: str
    shape: tuple[int, ...]
    params: dict[str, np.ndarray]
    reset: str
    projections: list[Projection]
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
    def weight(self) -> sp.csr_matrix:
        """The one projection's matrix (a chain's population); refused for a population with several sources."""
        if len(self.projections) != 1:
            raise SpikeforgeError(f"population {self.name} reads {len(self.projections)} sources; "
                                  "use Population.projections")
        return self.projections[0][1]

    @weight.setter
    def weight(self, value: sp.csr_matrix) -> None:
        self.projections = [(self.projections[0][0], value)]

    @property
    def synapses(self) -> int:
        return int(sum(w.nnz for _, w in self.projections) + (0 if self.recurrent is None else self.recurrent.nnz))


@dataclass
class NetworkGraph:
    """Input shape plus the populations in running order (a population's sources come before it)."""

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

    def is_chain(self) -> bool:
        """Every population reads exactly the one before it (the first reads the input)."""
        previous = INPUT
        for pop in self.populations:
            if [source for source, _ in pop.projections] != [previous]:
                return False
            previous = pop.name
        return True


def check_layer(name: str, layer: nn.Module, backend: str = "Brian2") -> None:
    """Refuse a layer the graph cannot express: not affine, or a neuron model without a population kind."""
    if isinstance(layer, NeuronLayer):
        if not isinstance(layer, (CubaFamily, ALIF, Integrator)):
            raise SpikeforgeError(f"{layer_label(name, layer)} is a neuron model with no {backend} equivalent here; "
                                  "use IF, LIF, CubaLIF, ALIF or Integrator")
        if getattr(layer, "reset", None) not in (None, "subtract", "zero"):
            raise SpikeforgeError(f"{layer_label(name, layer)} resets with {layer.reset!r} (snnTorch's delayed "
                                  f"subtraction: the threshold comes off one step after the spike), which {backend} "
                                  "does not run; rebuild the layer with reset='subtract' or 'zero' and fine-tune it "
                                  "(snn train --init), or run the network in torch")
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


def _node_shape(node: Node, shapes: Sequence[tuple[int, ...]]) -> tuple[int, ...]:
    try:
        with torch.no_grad():
            out = copy.deepcopy(node.layer).double().eval()(*[torch.zeros(1, *s, dtype=torch.float64) for s in shapes])
    except (RuntimeError, SpikeforgeError) as error:
        shown = ", ".join(str(s) for s in shapes)
        raise SpikeforgeError(f"{layer_label(node.name, node.layer)} does not run on its input shape {shown}: "
                              f"{error}; check the layer sizes against the network's input_shape") from error
    return tuple(out.shape[1:])


def _input_shape(model: nn.Module, input_shape: Sequence[int] | None) -> tuple[int, ...]:
    shape = input_shape if input_shape is not None else getattr(model, "input_shape", None)
    if shape is None:
        raise SpikeforgeError("the network has no input_shape; build it with Sequential(..., input_shape=(C, H, W)) "
                              "or pass input_shape")
    return tuple(int(d) for d in shape)


def _feeding(entry: str, nodes: dict[str, Node]) -> tuple[set[str], list[str]]:
    """Stateless nodes behind ``entry`` and the sources they read (depth first, each merge's first input first)."""
    stateless: set[str] = set()
    sources: list[str] = []
    stack = [entry]
    while stack:
        name = stack.pop()
        if name == INPUT or isinstance(nodes[name].layer, NeuronLayer):
            if name not in sources:
                sources.append(name)
        elif name not in stateless:
            stateless.add(name)
            stack.extend(reversed(nodes[name].inputs))
    return stateless, sources


def _walk(model: nn.Module, shape: tuple[int, ...], backend: str,
          check: LayerCheck | None) -> tuple[list[Segment], list[Node]]:
    """Segments in running order plus the stateless nodes that feed no neuron layer."""
    ordered, _, _ = network_nodes(model)
    nodes = {node.name: node for node in ordered}
    for node in ordered:
        if check is not None:
            check(node.name, node.layer)
        check_layer(node.name, node.layer, backend)
    shapes, depth = {INPUT: shape}, {INPUT: 0}
    segments: list[Segment] = []
    used: set[str] = set()
    for node in ordered:
        if not isinstance(node.layer, NeuronLayer):
            shapes[node.name] = _node_shape(node, [shapes[i] for i in node.inputs])
            continue
        entry = node.inputs[0]
        stateless, sources = _feeding(entry, nodes)
        used |= stateless
        affine = tuple(n for n in ordered if n.name in stateless)
        shapes[node.name] = shapes[entry]
        depth[node.name] = 1 + max(depth[s] for s in sources)
        segments.append(Segment(node.name, node.layer, affine, tuple(sources), tuple(shapes[s] for s in sources),
                                shapes[entry], entry, depth[node.name]))
    trailing = [n for n in ordered if not isinstance(n.layer, NeuronLayer) and n.name not in used]
    return segments, trailing


def split_network(model: Sequential | GraphNetwork, input_shape: Sequence[int] | None = None, backend: str = "Brian2",
                  check: LayerCheck | None = None) -> tuple[tuple[int, ...], list[Segment]]:
    """``(input shape, segments)`` of ``model``; refuses what the graph cannot express (module docstring).

    ``check`` is the backend's own refusal, run on each layer before the graph's; ``backend``
    names the backend in the graph's refusals.
    """
    shape = _input_shape(model, input_shape)
    segments, trailing = _walk(model, shape, backend, check)
    if trailing:
        names = ", ".join(layer_label(n.name, n.layer) for n in trailing)
        raise SpikeforgeError(f"the network ends in stateless layers ({names}); end it with a neuron layer "
                              f"(e.g. an Integrator readout) so {backend} has a population to run")
    if not segments:
        raise SpikeforgeError(f"the network has no neuron layer; nothing to run on {backend}")
    return shape, segments


def estimate_synapses(model: Sequential | GraphNetwork, input_shape: Sequence[int] | None = None) -> int:
    """Upper bound on the synapses of one copy of ``model`` (no dense push; cheap for any size).

    Stateless layers that feed no neuron layer count nothing.
    """
    segments, _ = _walk(model, _input_shape(model, input_shape), "Brian2", None)
    total = 0
    for segment in segments:
        fan = math.prod(fan_in_bound(layer) for layer in segment.layers)
        total += segment.size * min(fan, sum(math.prod(s) for s in segment.source_shapes))
        if getattr(segment.neuron, "recurrent", None) is not None:
            total += segment.neuron.recurrent_features ** 2
    return int(total)


def _evaluator(affine: Sequence[Node], entry: str) -> Callable[[dict[str, torch.Tensor]], torch.Tensor]:
    """``f(values of the sources) -> value of entry``: the stateless nodes run in float64, eval mode."""
    wiring = [(node.name, copy.deepcopy(node.layer).double().eval(), node.inputs) for node in affine]

    def f(values: dict[str, torch.Tensor]) -> torch.Tensor:
        values = dict(values)
        with torch.no_grad():
            for name, layer, inputs in wiring:
                values[name] = layer(*[values[i] for i in inputs])
        return values[entry]
    return f


def _zeros(sources: Sequence[str], shapes: Sequence[tuple[int, ...]], rows: int) -> dict[str, torch.Tensor]:
    return {s: torch.zeros(rows, *shape, dtype=torch.float64) for s, shape in zip(sources, shapes)}


def affine_projections(affine: Sequence[Node], entry: str, sources: Sequence[str],
                       source_shapes: Sequence[tuple[int, ...]]) -> tuple[list[Projection], np.ndarray]:
    """One sparse ``W [n_source, n_out]`` per source and the offset ``b [n_out]``, exact in float64.

    ``f`` runs the stateless nodes; ``W_s = f(E_s, 0) - f(0)`` (the other sources at zero), ``b = f(0)``.
    """
    if not affine:
        n = int(math.prod(source_shapes[0]))
        return [(sources[0], sp.identity(n, dtype=np.float64, format="csr"))], np.zeros(n)
    f = _evaluator(affine, entry)
    sizes = [int(math.prod(s)) for s in source_shapes]
    projections: list[Projection] = []
    with torch.no_grad():
        offset = f(_zeros(sources, source_shapes, 1)).reshape(-1)
        n_out = offset.numel()
        chunk = max(1, PUSH_CHUNK_ELEMENTS // max(sum(sizes), n_out))
        for source, shape, n_in in zip(sources, source_shapes, sizes):
            blocks = []
            for start in range(0, n_in, chunk):
                rows = min(chunk, n_in - start)
                eye = torch.zeros(rows, n_in, dtype=torch.float64)
                eye[torch.arange(rows), torch.arange(start, start + rows)] = 1.0
                values = _zeros(sources, source_shapes, rows)
                values[source] = eye.reshape(rows, *shape)
                blocks.append(sp.csr_matrix((f(values).reshape(rows, n_out) - offset).numpy()))
            weight = sp.vstack(blocks, format="csr")
            weight.eliminate_zeros()
            projections.append((source, weight))
    return projections, offset.numpy().copy()


def _per_neuron(value: torch.Tensor, shape: tuple[int, ...]) -> np.ndarray:
    return torch.broadcast_to(value.detach().double().cpu(), shape).reshape(-1).numpy().copy()


def _kind(neuron: NeuronLayer) -> str:
    if isinstance(neuron, Integrator):
        return "integrator"
    return "alif" if isinstance(neuron, ALIF) else "cuba"


def population(segment: Segment) -> Population:
    """The segment with its projections, per-neuron parameters and recurrent matrix computed."""
    projections, bias_in = segment.projections()
    kind = _kind(segment.neuron)
    reset = "none" if kind == "integrator" else segment.neuron.reset
    recurrent = None
    if getattr(segment.neuron, "recurrent", None) is not None:
        recurrent = sp.csr_matrix(segment.neuron.recurrent.weight.detach().double().cpu().numpy().T)
        recurrent.eliminate_zeros()
    return Population(segment.name, kind, segment.shape, segment.parameters(), reset, projections, bias_in,
                      segment.folded, recurrent, segment.start_membrane())


def network_graph(model: Sequential | GraphNetwork, input_shape: Sequence[int] | None = None,
                  backend: str = "Brian2") -> NetworkGraph:
    """Describe ``model`` (in eval mode) as populations and sparse projections (module docstring)."""
    shape, segments = split_network(model, input_shape, backend)
    return NetworkGraph(shape, [population(segment) for segment in segments])
