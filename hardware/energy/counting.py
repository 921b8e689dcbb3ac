"""Operation counts per layer and per inference, from the activity actually simulated.

:class:`OperationCounter` puts forward hooks on every synaptic layer (``Linear``,
``Conv1d``, ``Conv2d``) and every neuron layer (:class:`snn.neurons.NeuronLayer`
subclasses, and for a dense ANN its ReLU-like activations) and counts what the run did.
Definitions (they follow NeuroBench's ``SynapticOperations`` / ``ActivationSparsity``):

- a *synapse* is a nonzero weight (a zero weight is an absent connection, as in NeuroBench);
  the fan-out of an input element is the number of synapses leaving it, exact for conv
  layers with any stride, padding, dilation and groups;
- **synaptic_ops** (accumulates, ACs): for an input made of spike events, one per event per
  outgoing synapse. Counted as ``conv(events, nonzero(W)).sum()`` (``events @ nonzero(W).T``
  for Linear), where ``events`` is the number of spikes at each input element;
- **effective_macs**: for a non-spike input, one per *nonzero* input element per outgoing
  synapse; **dense_macs**: one per input element per weight, zero weights included (what
  dense hardware executes; NeuroBench's "Dense");
  ``macs`` is what the hardware of the network's kind executes: effective MACs for an SNN
  (event-driven, zero inputs skipped), dense MACs for an ANN;
- **neuron_updates**: neurons x T (x samples); **spikes**: spikes emitted; an update is
  *active* when the neuron spikes in that step, else *inactive*;
- **activation_sparsity**: zeros / all values of a neuron (or activation) layer's output;
- memory traffic: **weight_reads** = one weight word per executed operation (ACs + MACs; no
  reuse assumed), **state_reads** = **state_writes** = one word per state variable per
  neuron update (IF/LIF: v; CUBA-LIF: i, v; ALIF: i, v, a; an ANN activation: its value).

What counts as spike events at a synaptic layer's input is decided from where the input
comes from (the model's graph), then checked on the values: a spiking neuron's output,
reached through flatten, identity, max pooling (which selects spikes) or average pooling
(which a neuromorphic deployment folds into the synapses: each spike in a window reaches the
window's fan-out), must be ``events * q`` with ``events`` non-negative integers, where ``q`` is
the spike amplitude (1, times the Scale layers on the path: a converted network's threshold
theta per channel) divided by the pooling window sizes (checked on a strided subset of rows; the count itself folds
``1 / q`` into the counting kernel, so it costs no pass over the input). The network input
(and any input whose origin the counter cannot follow) counts as spikes only if every value
is 0, 1 or -1 (NeuroBench's rule). Anything else is an analog input and costs MACs (a direct-encoded first layer).

Flatten, Identity, Dropout, pooling, Scale, Add, Concat and BatchNorm (folded into the
synapses around them at deployment) cost nothing here; any other layer with no children is refused by name.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import fx, nn

from converters.qcfs import QCFS
from converters.tracing import ActivationSite
from snn.errors import SpikeforgeError
from snn.graph_network import INPUT, GraphNetwork
from snn.layers import Add, Concat, Scale, SpikeMaxPool2d
from snn.neurons import IF, LIF, Integrator, NeuronLayer

SYNAPTIC = (nn.Linear, nn.Conv1d, nn.Conv2d)
ANN_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.Hardtanh, ActivationSite, QCFS)
POOLS = (nn.AvgPool1d, nn.AvgPool2d, nn.MaxPool1d, nn.MaxPool2d)
FREE = (nn.Flatten, nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.BatchNorm1d, nn.BatchNorm2d,
        nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, *POOLS, SpikeMaxPool2d, Scale, Add, Concat)
# Ways the spikes of a neuron reach a synaptic layer unchanged in kind (see the module docstring).
SPIKE_PATH = (nn.Flatten, nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, *POOLS, SpikeMaxPool2d, Scale)
KINDS = ("snn", "ann")
HARDWARE_KIND = "loihi"  # NetworkCounts of a compiled network's hardware events (hardware.lava.activity)
WORD_BYTES = 4  # fp32 weights and state
TOLERANCE = 1e-3


@dataclass
class LayerCounts:
    """Counts of one layer; totals over the run until :meth:`NetworkCounts.per_inference`."""

    name: str
    module: str
    role: str  # "synapse" | "neuron" | "activation"
    input: str = "-"  # synapses: "spikes" | "pooled spikes" | "analog" (or several, joined by "+")
    synaptic_ops: float = 0.0
    effective_macs: float = 0.0
    dense_macs: float = 0.0
    neuron_updates: float = 0.0
    spikes: float = 0.0
    activations: float = 0.0
    outputs: float = 0.0
    nonzero_outputs: float = 0.0
    state_words: int = 0
    weight_bytes: int = 0
    state_bytes: int = 0
    spiking: bool = False
    mac_rule: str = "effective"  # which MACs the hardware executes: "effective" (SNN) or "dense" (ANN)
    # Hardware events of a compiled network on a core placement (kind "loihi", hardware.lava.activity); 0 otherwise.
    synapse_kind: str = ""        # synapses: "dense" | "conv" | "sparse" (how the hardware stores them)
    neuron_visits: float = 0.0    # neurons x steps: every neuron's soma is visited every step
    soma_updates: float = 0.0     # visits in which the soma did work (state not at rest, input arrived, or bias)
    packets: float = 0.0          # spike messages sent: one per spike and distinct destination core
    hops_east_west: float = 0.0   # mesh hops of those packets between tiles, by direction
    hops_north_south: float = 0.0

    @property
    def macs(self) -> float:
        return self.dense_macs if self.mac_rule == "dense" else self.effective_macs

    @property
    def active_updates(self) -> float:
        return self.spikes if self.spiking else 0.0

    @property
    def inactive_updates(self) -> float:
        return self.neuron_updates - self.active_updates

    @property
    def weight_reads(self) -> float:
        return self.synaptic_ops + self.macs

    @property
    def state_reads(self) -> float:
        return self.state_words * self.neuron_updates + self.activations

    @property
    def state_writes(self) -> float:
        return self.state_reads

    @property
    def activation_sparsity(self) -> float | None:
        if self.role == "synapse" or self.outputs == 0:
            return None
        return 1.0 - self.nonzero_outputs / self.outputs

    def priced_counts(self) -> dict[str, float]:
        """The counts a hardware profile prices (see :mod:`hardware.energy.profiles`); ``<kind>_synaptic_ops`` is
        ``synaptic_ops`` again, by the synapses' storage kind."""
        counts = {"synaptic_ops": self.synaptic_ops, "macs": self.macs, "neuron_updates": self.neuron_updates,
                  "active_updates": self.active_updates, "inactive_updates": self.inactive_updates,
                  "spikes": self.spikes, "activations": self.activations, "weight_reads": self.weight_reads,
                  "state_reads": self.state_reads, "state_writes": self.state_writes,
                  "neuron_visits": self.neuron_visits, "soma_updates": self.soma_updates, "packets": self.packets,
                  "hops_east_west": self.hops_east_west, "hops_north_south": self.hops_north_south}
        for kind in SYNAPSE_KINDS:
            counts[f"{kind}_synaptic_ops"] = self.synaptic_ops if self.synapse_kind == kind else 0.0
        return counts

    def as_dict(self) -> dict[str, Any]:
        hardware = {k: getattr(self, k) for k in ("synapse_kind", "neuron_visits", "soma_updates", "packets",
                                                   "hops_east_west", "hops_north_south") if getattr(self, k)}
        return {**hardware, "name": self.name, "type": self.module, "role": self.role, "input": self.input,
                "synaptic_ops": self.synaptic_ops, "macs": self.macs, "effective_macs": self.effective_macs,
                "dense_macs": self.dense_macs, "neuron_updates": self.neuron_updates, "spikes": self.spikes,
                "activations": self.activations, "activation_sparsity": self.activation_sparsity,
                "weight_reads": self.weight_reads,
                "state_reads": self.state_reads, "state_writes": self.state_writes,
                "weight_bytes": self.weight_bytes, "state_bytes": self.state_bytes}


SUMMED = ("synaptic_ops", "effective_macs", "dense_macs", "neuron_updates", "spikes", "activations", "outputs",
          "nonzero_outputs", "neuron_visits", "soma_updates", "packets", "hops_east_west", "hops_north_south")
SYNAPSE_KINDS = ("dense", "conv", "sparse")


@dataclass
class NetworkCounts:
    """All layers' counts; ``samples`` inferences of ``timesteps`` steps (1 for an ANN)."""

    kind: str
    timesteps: int
    samples: int
    layers: list[LayerCounts] = field(default_factory=list)

    def per_inference(self) -> "NetworkCounts":
        if self.samples == 0:
            raise SpikeforgeError("no inference was counted: run the model inside the counter first")
        scale = 1.0 / self.samples
        layers = [dataclasses.replace(layer, **{k: getattr(layer, k) * scale for k in SUMMED})
                  for layer in self.layers]
        return NetworkCounts(self.kind, self.timesteps, 1, layers)

    def total(self, name: str) -> float:
        return float(sum(getattr(layer, name) for layer in self.layers))

    @property
    def activation_sparsity(self) -> float | None:
        """NeuroBench's definition: zeros over all outputs of all neuron / activation layers."""
        outputs = sum(layer.outputs for layer in self.layers if layer.role != "synapse")
        nonzero = sum(layer.nonzero_outputs for layer in self.layers if layer.role != "synapse")
        return None if outputs == 0 else 1.0 - nonzero / outputs

    def totals(self) -> dict[str, float]:
        names = ("synaptic_ops", "macs", "effective_macs", "dense_macs", "neuron_updates", "spikes",
                 "activations", "weight_reads", "state_reads", "state_writes")
        if self.kind == HARDWARE_KIND:
            names = ("synaptic_ops", "neuron_visits", "soma_updates", "spikes", "packets", "hops_east_west",
                     "hops_north_south")
        return {name: self.total(name) for name in names}

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "timesteps": self.timesteps, "samples": self.samples,
                "activation_sparsity": self.activation_sparsity, "totals": self.totals(),
                "layers": [layer.as_dict() for layer in self.layers]}


@dataclass
class _Lineage:
    """Where a synaptic layer's input comes from: a neuron (by name), "input", or None (unknown)."""

    source: str | None
    path: list[nn.Module] = field(default_factory=list)  # modules between source and layer, in order


def _root(model: nn.Module) -> nn.Module:
    return model.layers if isinstance(model, GraphNetwork) else model


def _state_words(layer: nn.Module) -> int:
    if isinstance(layer, (Integrator, IF, LIF)):
        return 1  # v only (IF / LIF have alpha = 0: no current state)
    return len(layer._state_type._fields)


def _check_known(root: nn.Module, kind: str) -> None:
    """Refuse layers the counter cannot count, by name, before anything runs."""
    for name, module in root.named_modules():
        if isinstance(module, NeuronLayer) and module.recurrent is not None:
            raise SpikeforgeError(f"layer {name!r} ({type(module).__name__}) has a recurrent weight; the energy "
                                  "counter does not count recurrent synapses yet: use a feed-forward network")
        if isinstance(module, (nn.Conv1d, nn.Conv2d)) and module.padding_mode != "zeros":
            raise SpikeforgeError(f"layer {name!r} pads with {module.padding_mode!r}; the energy counter counts "
                                  "zero padding only: use padding_mode='zeros'")
        if isinstance(module, SpikeMaxPool2d) or any(True for _ in module.children()):
            continue
        if not isinstance(module, (*SYNAPTIC, NeuronLayer, *ANN_ACTIVATIONS, *FREE)):
            known = ", ".join(sorted({t.__name__ for t in (*SYNAPTIC, NeuronLayer, *ANN_ACTIVATIONS, *FREE)}))
            raise SpikeforgeError(f"the energy counter does not know layer {name!r} ({type(module).__name__}); "
                                  f"it counts {known}: replace the layer or extend hardware/energy/counting.py")
    if isinstance(root, fx.GraphModule):
        for node in root.graph.nodes:
            if node.op in ("call_function", "call_method") and not _free_node(node):
                label = getattr(node.target, "__name__", str(node.target))
                raise SpikeforgeError(f"the energy counter does not know the operation {label!r} (node "
                                      f"{node.name}); it counts layers and free reshapes/additions only")


def _free_node(node: fx.Node) -> bool:
    import operator
    functions = {operator.add, torch.add, torch.cat, torch.concat, torch.flatten, operator.getitem, getattr}
    methods = {"view", "reshape", "flatten", "size", "contiguous", "add", "__add__"}
    return node.target in functions if node.op == "call_function" else node.target in methods


def _lineages(root: nn.Module) -> dict[str, _Lineage]:
    """For every synaptic layer, the neuron (or network input) its input comes from."""
    found: dict[str, _Lineage] = {}
    if isinstance(root, GraphNetwork):
        for name, module in root.layers.items():
            if isinstance(module, SYNAPTIC):
                found[name] = _graph_lineage(root, root.inputs[name][0])
    elif isinstance(root, nn.Sequential):
        children = list(root.named_children())
        for index, (name, module) in enumerate(children):
            if not isinstance(module, SYNAPTIC):
                continue
            path: list[nn.Module] = []
            for before_name, before in reversed(children[:index]):
                if isinstance(before, NeuronLayer):
                    lineage = _Lineage(before_name, path)
                    break
                if not isinstance(before, SPIKE_PATH):
                    lineage = _Lineage(None)
                    break
                path.insert(0, before)
            else:
                lineage = _Lineage("input", path)
            found[name] = lineage
    return found


def _graph_lineage(graph: GraphNetwork, source: str) -> _Lineage:
    """Walk back from ``source`` through single-input spike-path nodes to a neuron or the input."""
    path: list[nn.Module] = []
    while source != INPUT:
        module = graph.layers[source]
        if isinstance(module, NeuronLayer):
            return _Lineage(source, path)
        if not isinstance(module, SPIKE_PATH):
            return _Lineage(None)
        path.insert(0, module)
        source = graph.inputs[source][0]
    return _Lineage("input", path)


class OperationCounter:
    """Count operations of ``model`` while it runs (a context manager; hooks removed on exit).

    ``kind`` is ``"snn"`` (time-major input ``[T, B, ...]``) or ``"ann"`` (``[B, ...]``, every
    synaptic input costs dense MACs on conventional hardware). ``counts()`` returns the totals
    so far; ``counts().per_inference()`` divides by the number of samples seen.
    """

    def __init__(self, model: nn.Module, kind: str = "snn") -> None:
        if kind not in KINDS:
            raise SpikeforgeError(f"unknown network kind {kind!r}; choose one of {', '.join(KINDS)}")
        self.model = model
        self.kind = kind
        self.root = _root(model)
        _check_known(self.root, kind)
        self.lineage = _lineages(model) if kind == "snn" else {}
        self.layers: dict[str, LayerCounts] = {}
        self.samples = 0
        self.timesteps = 1
        self._amplitude: dict[str, torch.Tensor] = {}  # neuron name -> spike amplitude map [1, *shape]
        self._quantum: dict[tuple[str, tuple[int, ...]], torch.Tensor | None] = {}
        self._dense: dict[tuple[str, tuple[int, ...]], float] = {}
        self._handles: list[Any] = []
        self._order: list[str] = []  # layers in the order they first ran

    # ---- hooks ---------------------------------------------------------------------------
    def __enter__(self) -> "OperationCounter":
        self._handles.append(self.model.register_forward_pre_hook(self._count_samples))
        for name, module in self.root.named_modules():
            hook: Callable | None = None
            if isinstance(module, SYNAPTIC):
                hook = self._synapse_hook(name)
                layer = self._layer(name, module, "synapse")
                layer.weight_bytes = module.weight.numel() * WORD_BYTES
                layer.synapse_kind = "dense" if isinstance(module, nn.Linear) else "conv"
            elif isinstance(module, NeuronLayer):
                hook = self._neuron_hook(name)
                layer = self._layer(name, module, "neuron")
                layer.state_words = _state_words(module)
                layer.spiking = not isinstance(module, Integrator)
            elif isinstance(module, ANN_ACTIVATIONS) and not (self.kind == "snn" and isinstance(module, QCFS)):
                hook = self._activation_hook(name)
                self._layer(name, module, "activation")
            if hook is not None:
                self._handles.append(module.register_forward_hook(hook))
        return self

    def __exit__(self, *exc: Any) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _seen(self, name: str) -> LayerCounts:
        if name not in self._order:
            self._order.append(name)
        return self.layers[name]

    def _layer(self, name: str, module: nn.Module, role: str) -> LayerCounts:
        rule = "dense" if self.kind == "ann" else "effective"
        return self.layers.setdefault(name, LayerCounts(name, type(module).__name__, role, mac_rule=rule))

    def _count_samples(self, module: nn.Module, args: tuple) -> None:
        x = args[0]
        if self.kind == "snn":
            if x.dim() < 3:
                raise SpikeforgeError(f"an SNN input must be time-major [T, B, ...], got shape {tuple(x.shape)}")
            self.timesteps, batch = int(x.shape[0]), int(x.shape[1])
        else:
            batch = int(x.shape[0])
        self.samples += batch

    def _neuron_hook(self, name: str) -> Callable:
        def hook(module: nn.Module, args: tuple, output: Any) -> None:
            out = output[0] if isinstance(output, tuple) else output
            layer = self._seen(name)
            count = out.numel()
            layer.neuron_updates += count
            layer.outputs += count
            per_sample = out.shape[2:]
            layer.state_bytes = math.prod(per_sample) * layer.state_words * WORD_BYTES
            if not layer.spiking:
                layer.nonzero_outputs += float(torch.count_nonzero(out))
                return
            spikes = float(out.sum())  # spikes are 0/1: a plain sum is much cheaper than count_nonzero on CPU
            layer.spikes += spikes
            layer.nonzero_outputs += spikes
            if name not in self._amplitude:
                self._amplitude[name] = torch.ones(1, *per_sample, dtype=out.dtype, device=out.device)
        return hook

    def _activation_hook(self, name: str) -> Callable:
        def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            layer = self._seen(name)
            layer.activations += output.numel()
            layer.outputs += output.numel()
            layer.nonzero_outputs += float(torch.count_nonzero(output))
            layer.state_words = 0
            layer.state_bytes = math.prod(output.shape[1:]) * WORD_BYTES
        return hook

    def _synapse_hook(self, name: str) -> Callable:
        def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            x = args[0].detach()
            layer = self._seen(name)
            layer.dense_macs += self._dense_per_sample(name, module, x) * x.shape[0]
            kind, values, scale = self._events(name, x)
            if kind == "analog":
                layer.effective_macs += fan_out_sum(module, x != 0)
            else:
                layer.synaptic_ops += fan_out_sum(module, values, scale=scale)
            kinds = set(layer.input.split("+")) - {"-"}
            layer.input = "+".join(sorted(kinds | {kind}))
        return hook

    def _dense_per_sample(self, name: str, module: nn.Module, x: torch.Tensor) -> float:
        key = (name, tuple(x.shape[1:]))
        if key not in self._dense:
            self._dense[key] = fan_out_sum(module, torch.ones(1, *x.shape[1:], dtype=x.dtype, device=x.device),
                                           all_weights=True)
        return self._dense[key]

    def _events(self, name: str, x: torch.Tensor) -> tuple[str, torch.Tensor, torch.Tensor | None]:
        """(kind, values, scale): spike events per input element are ``values * scale``.

        For a neuron's spikes ``scale`` is 1 / quantum (so no per-element pass is needed: the
        scale folds into the counting kernel); integrality of ``x / quantum`` is checked on a
        strided subset of at most 64 rows per call (the lineage already says these are spikes;
        the check guards against a graph the counter misread).
        """
        if self.kind == "ann":
            return "analog", x, None
        lineage = self.lineage.get(name, _Lineage(None))
        if lineage.source is not None and lineage.source != "input" and lineage.source in self._amplitude:
            scale = self._inverse_quantum(name, lineage, tuple(x.shape[1:]))
            if scale is not None:
                rows = x[::max(1, x.shape[0] // 64)]
                events = rows * scale
                rounded = events.round()
                if bool((rounded >= 0).all()) and float((events - rounded).abs().max()) <= TOLERANCE:
                    pooled = any(isinstance(m, (nn.AvgPool1d, nn.AvgPool2d)) for m in lineage.path)
                    return "pooled spikes" if pooled else "spikes", x, scale
            return "analog", x, None
        if _is_spike_valued(x[::max(1, x.shape[0] // 64)]) and _is_spike_valued(x):  # cheap test first
            return "spikes", x.abs(), None
        return "analog", x, None

    def _inverse_quantum(self, name: str, lineage: _Lineage, shape: tuple[int, ...]) -> torch.Tensor | None:
        """1 / (value of one spike at each input element), shape ``[1, *shape]``; None if not derivable."""
        key = (name, shape)
        if key not in self._quantum:
            quantum = self._amplitude[lineage.source]
            divisor = 1.0
            try:
                for module in lineage.path:
                    if isinstance(module, SpikeMaxPool2d):
                        module = module.pool
                    if isinstance(module, (nn.AvgPool1d, nn.AvgPool2d)):
                        size = module.kernel_size
                        divisor *= math.prod(size) if isinstance(size, tuple) else size ** (
                            2 if isinstance(module, nn.AvgPool2d) else 1)
                    if isinstance(module, (nn.Dropout, nn.Dropout1d, nn.Dropout2d)):
                        continue
                    quantum = module(quantum)
            except RuntimeError:
                quantum = None
            if quantum is not None and tuple(quantum.shape[1:]) != shape:
                quantum = None
            self._quantum[key] = None if quantum is None else divisor / quantum
        return self._quantum[key]

    def counts(self) -> NetworkCounts:
        names = self._order + [name for name in self.layers if name not in self._order]
        return NetworkCounts(self.kind, self.timesteps if self.kind == "snn" else 1, self.samples,
                             [dataclasses.replace(self.layers[name]) for name in names])


def _is_spike_valued(x: torch.Tensor) -> bool:
    """NeuroBench's test for a spiking input: every value is 0, 1 or -1."""
    return bool(((x == 0) | (x == 1) | (x == -1)).all())


def fan_out_sum(module: nn.Module, values: torch.Tensor, all_weights: bool = False,
                scale: torch.Tensor | None = None) -> float:
    """``sum_j values[j] * scale[j] * fan_out(j)`` over all input elements.

    fan_out(j) is the number of nonzero weights that input element j meets (for a conv:
    over all output positions, with the layer's stride, padding, dilation and groups): the
    adjoint of the convolution with the nonzero-weight mask, applied to one all-ones output
    (:func:`fan_out_map`, one sample's worth of work). The values are first summed over the
    batch (and time) rows, so the cost is one pass over the input, whatever the layer.
    ``all_weights=True`` counts zero weights too (dense hardware multiplies them; NeuroBench's
    "Dense"). ``scale`` (``[1, *input shape]``) multiplies each input element.
    Per-element sums of spike counts are integers (exact in float32 below 2**24), the grand total
    is summed in float64; with a non-unit ``scale`` the result is exact up to float rounding (~1e-7).
    """
    per_element = values.reshape(-1, *values.shape[-(module.weight.dim() - 1):]).sum(0, dtype=torch.float32)
    total = per_element.to(torch.float64)
    if scale is not None:
        total = total * scale.reshape(total.shape).to(torch.float64)
    return float((total * fan_out_map(module, tuple(total.shape), all_weights)).sum())


def fan_out_map(module: nn.Module, shape: tuple[int, ...], all_weights: bool = False) -> torch.Tensor:
    """Float64 ``[*shape]``: the synapses leaving each input element of ``module`` (``shape``: one sample's input)."""
    weight = module.weight.detach()
    mask = torch.ones_like(weight, dtype=torch.float64) if all_weights else (weight != 0).to(torch.float64)
    if isinstance(module, nn.Linear):
        return mask.sum(0).reshape(shape)
    conv = F.conv2d if isinstance(module, nn.Conv2d) else F.conv1d
    with torch.enable_grad():   # the adjoint of the mask convolution, by autograd (any padding, 'same' included)
        probe = torch.zeros(1, *shape, dtype=torch.float64, device=weight.device, requires_grad=True)
        out = conv(probe, mask, None, module.stride, module.padding, module.dilation, module.groups)
        (grad,) = torch.autograd.grad(out, probe, torch.ones_like(out))
    return grad.reshape(shape)


@torch.no_grad()
def count_operations(model: nn.Module, x: torch.Tensor, kind: str = "snn") -> tuple[NetworkCounts, torch.Tensor]:
    """Run ``model(x)`` once under the counter; return (counts per inference, model output)."""
    with OperationCounter(model, kind) as counter:
        output = model(x)
    return counter.counts().per_inference(), output
