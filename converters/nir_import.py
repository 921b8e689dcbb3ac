"""Import a NIR graph into our simulator: a :class:`snn.network.Sequential` for a chain, a
:class:`snn.graph_network.GraphNetwork` for any other graph.

Supported nodes: Input, Output, Affine, Linear, Conv1d, Conv2d, AvgPool2d, SumPool2d,
Flatten, Scale, IF, LIF, CubaLIF, LI, I, and recurrence in either of NIR's two forms: a cycle
neuron -> Linear/Affine -> neuron in the graph itself, or a subgraph holding Input, one
neuron, its Linear/Affine w_rec and Output (snnTorch's RLeaky/RSynaptic export and ours).
Once recurrences are folded into their neurons the graph must be acyclic, with one Input
feeding every node and every node leading to one Output; a node with several incoming
edges sums them (NIR's rule: an ``Add`` in front of it). Anything else is refused with the
node named. Node names become GraphNetwork node names ('.' becomes '_').

Neuron parameters follow :mod:`converters.nir_discretisation`; the time step is the
``dt`` argument, else the graph's ``dt`` metadata (our exports), else the dialect's
(:data:`~converters.nir_discretisation.DEFAULT_DT`, snnTorch's 1e-4 s, for the specification).
``dialect`` names the producer whose conventions the file follows
(:mod:`converters.nir_dialects`): ``"snntorch"`` reads a spiking node without our
``reset_mode`` metadata as snnTorch's default delayed subtraction, ``"sinabs"`` as sinabs'
subtraction with exact decays and time in steps.
A leaky integrator (LI / I) whose input gain ``r dt / tau`` is not 1 cannot rescale its
state (its membrane is the output), so the gain is folded into the preceding Linear.
"""

from __future__ import annotations

import graphlib
import json
from typing import Any

import nir
import numpy as np
import torch
from torch import nn

from converters import nir_discretisation as D
from converters.nir_dialects import Dialect, get_dialect
from snn.errors import SpikeforgeError
from snn.functional import RESETS
from snn.graph_network import INPUT, GraphNetwork, Node
from snn.layers import Add, Scale
from snn.network import Sequential
from snn.network_schema import probe_network
from snn.neurons import IF, LIF, CubaLIF, Integrator, NeuronLayer

NEURON_NODES = (nir.IF, nir.LIF, nir.CubaLIF)
READOUT_NODES = (nir.LI, nir.I)
WEIGHT_NODES = (nir.Affine, nir.Linear)
STATELESS_NODES = (nir.Affine, nir.Linear, nir.Conv1d, nir.Conv2d, nir.AvgPool2d, nir.SumPool2d, nir.Flatten,
                   nir.Scale)
SUPPORTED = ("Input, Output, Affine, Linear, Conv1d, Conv2d, AvgPool2d, SumPool2d, Flatten, Scale, IF, LIF, CubaLIF, "
             "LI, I")
# Layer settings that are not dynamics: taken from our own metadata when present.
TRAINING_KEYS = ("surrogate", "learn_threshold", "learn_beta", "learn_alpha", "detach_reset")
# Dynamics NIR has no field for, restored from our own metadata (a peer's file has none).
STATE_KEYS = ("v_init",)


def _f64(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float64)


def _param(a: np.ndarray) -> float | torch.Tensor:
    """A per-neuron array in its smallest broadcastable shape (a number when uniform).

    NIR stores one value per neuron; a per-channel value (shape ``[C, 1, 1]``) or a
    scalar comes back in its own shape, so layers keep the shape they were exported with.
    """
    # Compare at the precision the layer keeps (float64 rounding noise is not per-neuron data).
    a = torch.as_tensor(np.asarray(a, dtype=np.float64)).to(torch.get_default_dtype()).numpy()
    for axis in range(a.ndim):
        first = a.take([0], axis=axis)
        if (a == first).all():
            a = first
    while a.ndim and a.shape[0] == 1:
        a = a[0]
    return float(a) if a.ndim == 0 else torch.as_tensor(a.copy())


def _metadata(node: nir.NIRNode) -> dict:
    meta = getattr(node, "metadata", None)
    return meta if isinstance(meta, dict) else {}


def _reset_and_settings(name: str, node: nir.NIRNode, dialect: Dialect) -> tuple[str, dict]:
    meta = _metadata(node)
    reset = meta.get(D.RESET_KEY, dialect.reset)
    if isinstance(reset, bytes):
        reset = reset.decode()
    if reset not in RESETS:
        raise SpikeforgeError(f"NIR node {name!r} has {D.RESET_KEY}={reset!r}; expected one of "
                              f"{', '.join(map(repr, RESETS))}")
    if hasattr(node, "v_reset") and node.v_reset is not None and (_f64(node.v_reset) != 0).any():
        raise SpikeforgeError(f"NIR node {name!r} resets to a non-zero v_reset; our neurons reset to zero or by "
                              "subtraction only: shift v_leak/v_threshold so that v_reset = 0")
    settings: dict = {}
    spec = meta.get("spikeforge_layer")
    if spec is not None:
        try:
            settings = {k: v for k, v in json.loads(spec).items() if k in TRAINING_KEYS + STATE_KEYS}
        except (TypeError, ValueError) as exc:
            raise SpikeforgeError(f"NIR node {name!r} has unreadable spikeforge_layer metadata: {exc}") from exc
    return reset, settings


def _check_dialect(name: str, node: nir.NIRNode, dialect: Dialect) -> None:
    kind = type(node).__name__
    if kind in dialect.refused:
        raise SpikeforgeError(f"NIR node {name!r} is a {kind}, which the {dialect.name!r} dialect does not read "
                              f"({dialect.name} writes no {kind} with a consistent meaning; see "
                              "converters.nir_dialects); import the file with dialect='nir'")


def _neuron(name: str, node: nir.NIRNode, dt: float, recurrent: nir.NIRNode | None, dialect: Dialect) -> NeuronLayer:
    _check_dialect(name, node, dialect)
    reset, settings = _reset_and_settings(name, node, dialect)
    layer_type = json.loads(_metadata(node).get("spikeforge_layer", "{}")).get("type")
    if isinstance(node, nir.IF):
        gain = D.check_gain(D.snap_gain(dt * _f64(node.r)), name)
        theta = _f64(node.v_threshold) / gain
        if layer_type == "LIF":  # a leak-free LIF is written as IF
            settings.pop("learn_alpha", None)
            settings.pop("v_init", None)
            layer: NeuronLayer = LIF(beta=1.0, theta=_param(theta), reset=reset, **settings)
        else:
            settings = {k: v for k, v in settings.items() if k not in ("learn_beta", "learn_alpha")}
            layer = IF(theta=_param(theta), reset=reset, **settings)
    elif isinstance(node, nir.LIF):
        settings.pop("v_init", None)
        beta = D.tau_to_decay_checked(node.tau, dt, name, "tau", dialect.exponential)
        gain = D.check_gain(D.snap_gain(D.membrane_gain(node.r, node.tau, dt, dialect.exponential)), name)
        settings.pop("learn_alpha", None)
        layer = LIF(beta=_param(beta), theta=_param(_f64(node.v_threshold) / gain),
                    bias=_param(D.leak_to_bias(_f64(node.v_leak), beta, gain)), reset=reset, **settings)
    else:
        settings.pop("v_init", None)
        alpha = D.tau_to_decay_checked(node.tau_syn, dt, name, "tau_syn")
        beta = D.tau_to_decay_checked(node.tau_mem, dt, name, "tau_mem")
        g_syn = _f64(node.w_in) * dt / _f64(node.tau_syn)
        g_mem = _f64(node.r) * dt / _f64(node.tau_mem)
        gain = D.check_gain(D.snap_gain(g_syn * g_mem), name)
        layer = CubaLIF(alpha=_param(alpha), beta=_param(beta), theta=_param(_f64(node.v_threshold) / gain),
                        bias=_param(D.leak_to_bias(_f64(node.v_leak), beta, gain)), reset=reset, **settings)
    if recurrent is not None:
        _attach_recurrent(name, layer, recurrent)
    return layer


def _attach_recurrent(name: str, layer: NeuronLayer, w_rec: nir.NIRNode) -> None:
    weight = _f64(w_rec.weight)
    if weight.ndim != 2 or weight.shape[0] != weight.shape[1]:
        raise SpikeforgeError(f"NIR node {name!r}: recurrent weight has shape {weight.shape}, expected square [N, N]")
    if isinstance(w_rec, nir.Affine) and (_f64(w_rec.bias) != 0).any():
        raise SpikeforgeError(f"NIR node {name!r}: its recurrent Affine has a non-zero bias, which our recurrent "
                              "layers do not have; move the bias into the feed-forward layer before it")
    n = weight.shape[0]
    layer.recurrent_features = n
    layer.recurrent = nn.Linear(n, n, bias=False)
    with torch.no_grad():
        layer.recurrent.weight.copy_(torch.as_tensor(weight))


def _readout(name: str, node: nir.NIRNode, dt: float, layers: list[nn.Module], dialect: Dialect) -> Integrator:
    _check_dialect(name, node, dialect)
    _, settings = _reset_and_settings(name, node, dialect)
    settings = {k: v for k, v in settings.items() if k == "learn_beta"}
    if isinstance(node, nir.I):
        beta, bias_leak, gain = np.ones_like(_f64(node.r)), None, D.snap_gain(dt * _f64(node.r))
    else:
        beta = D.tau_to_decay_checked(node.tau, dt, name, "tau")
        gain = D.snap_gain(_f64(node.r) * dt / _f64(node.tau))
        bias_leak = _f64(node.v_leak)
    D.check_gain(gain, name)
    if (gain != 1).any():
        # The integrator's output is its membrane, so the gain cannot move into a threshold.
        previous = layers[-1] if layers else None
        if not isinstance(previous, nn.Linear):
            raise SpikeforgeError(f"NIR node {name!r} ({type(node).__name__}) has input gain r*dt/tau != 1 and no "
                                  "Linear/Affine right before it to absorb the gain; import with a dt that "
                                  "makes r*dt/tau = 1")
        scale = torch.as_tensor(np.broadcast_to(gain, (previous.out_features,)).copy())
        with torch.no_grad():
            previous.weight.copy_((previous.weight.double() * scale[:, None]).to(previous.weight.dtype))
            if previous.bias is not None:
                previous.bias.copy_((previous.bias.double() * scale).to(previous.bias.dtype))
    bias = 0.0 if bias_leak is None else _param(D.leak_to_bias(bias_leak, beta, np.ones_like(beta)))
    return Integrator(beta=_param(beta), bias=bias, **settings)


def _ints(value: Any) -> tuple[int, ...] | int | str:
    if isinstance(value, (str, bytes)):
        return value.decode() if isinstance(value, bytes) else value
    a = np.atleast_1d(np.asarray(value)).astype(int)
    return tuple(int(v) for v in a)


def _tensor(value: Any) -> torch.Tensor:
    return torch.as_tensor(_f64(value), dtype=torch.get_default_dtype())


def _scale(name: str, node: nir.Scale) -> Scale:
    """NIR's element-wise Scale as our per-channel one: the factor must not vary within a channel."""
    factor = _f64(node.scale)
    if factor.ndim == 0 or factor.size == 1:
        return Scale(float(factor.reshape(-1)[0]))
    channels = factor.reshape(factor.shape[0], -1)
    if (channels != channels[:, :1]).any():
        raise SpikeforgeError(f"NIR node {name!r} (Scale) scales each element differently; spikeforge's Scale "
                              "takes one factor per channel (dimension 0 of the feature shape)")
    return Scale(torch.as_tensor(channels[:, 0]))


def _stateless(name: str, node: nir.NIRNode) -> nn.Module:
    if isinstance(node, nir.Scale):
        return _scale(name, node)
    if isinstance(node, WEIGHT_NODES):
        weight = _tensor(node.weight)
        if weight.ndim != 2:
            raise SpikeforgeError(f"NIR node {name!r}: weight has shape {tuple(weight.shape)}, expected [out, in]")
        module = nn.Linear(weight.shape[1], weight.shape[0], bias=isinstance(node, nir.Affine))
        with torch.no_grad():
            module.weight.copy_(weight)
            if module.bias is not None:
                module.bias.copy_(_tensor(node.bias).reshape(-1))
        return module
    if isinstance(node, (nir.Conv1d, nir.Conv2d)):
        weight = _tensor(node.weight)
        groups = int(np.asarray(node.groups))
        conv = nn.Conv2d if isinstance(node, nir.Conv2d) else nn.Conv1d
        bias = _tensor(node.bias).reshape(-1)
        # NIR convolutions always carry a bias; an all-zero one is a bias-free layer (as we export it).
        module = conv(weight.shape[1] * groups, weight.shape[0], tuple(weight.shape[2:]), stride=_ints(node.stride),
                      padding=_ints(node.padding), dilation=_ints(node.dilation), groups=groups,
                      bias=bool((bias != 0).any()))
        with torch.no_grad():
            module.weight.copy_(weight)
            if module.bias is not None:
                module.bias.copy_(bias)
        return module
    if isinstance(node, (nir.AvgPool2d, nir.SumPool2d)):
        # SumPool is average pooling with divisor 1 (exact sums, no multiply by the window size).
        return nn.AvgPool2d(_ints(node.kernel_size), _ints(node.stride), _ints(node.padding),
                            divisor_override=1 if isinstance(node, nir.SumPool2d) else None)
    start, end = int(np.asarray(node.start_dim)), int(np.asarray(node.end_dim))
    shift = lambda d: d + 1 if d >= 0 else d  # noqa: E731  our tensors carry a batch dimension
    return nn.Flatten(shift(start), shift(end))


def _fold_recurrence(nodes: dict, edges: list[tuple[str, str]]) -> tuple[dict, list, dict]:
    """Take out cycles neuron -> W -> neuron (W touching nothing else); return W per neuron."""
    recurrent: dict[str, nir.NIRNode] = {}
    dropped: set[str] = set()
    for a, b in edges:
        if isinstance(nodes.get(a), NEURON_NODES) and isinstance(nodes.get(b), WEIGHT_NODES) \
                and {e for e in edges if b in e} == {(a, b), (b, a)}:
            recurrent[a] = nodes[b]
            dropped.add(b)
    nodes = {k: v for k, v in nodes.items() if k not in dropped}
    edges = [e for e in edges if e[0] not in dropped and e[1] not in dropped]
    return nodes, edges, recurrent


def _subgraph_neuron(name: str, graph: nir.NIRGraph) -> tuple[nir.NIRNode, nir.NIRNode]:
    """The (neuron, w_rec) of a recurrent-layer subgraph, or an error naming the subgraph."""
    inner, edges, recurrent = _fold_recurrence(dict(graph.nodes), [tuple(e) for e in graph.edges])
    neurons = [k for k, v in inner.items() if isinstance(v, NEURON_NODES)]
    others = [k for k, v in inner.items() if not isinstance(v, (nir.Input, nir.Output, *NEURON_NODES))]
    if len(neurons) != 1 or others or neurons[0] not in recurrent:
        raise SpikeforgeError(f"NIR node {name!r} is a subgraph that is not one recurrent neuron layer "
                              f"(Input -> neuron <-> Linear -> Output); its nodes are {sorted(graph.nodes)}. "
                              "Flatten nested graphs into one sequential graph before importing")
    return inner[neurons[0]], recurrent[neurons[0]]


def _order(nodes: dict, edges: list[tuple[str, str]]) -> tuple[str, list[str], dict[str, list[str]]]:
    """``(the Input, the other nodes in a topological order, incoming edges per node)``; refuses
    graphs that are not one Input feeding a directed acyclic graph that ends in one Output."""
    inputs = [k for k, v in nodes.items() if isinstance(v, nir.Input)]
    if len(inputs) != 1:
        raise SpikeforgeError(f"the NIR graph has {len(inputs)} Input nodes ({inputs}); spikeforge imports "
                              "graphs with exactly one Input")
    outputs = [k for k, v in nodes.items() if isinstance(v, nir.Output)]
    if len(outputs) != 1:
        raise SpikeforgeError(f"the NIR graph has {len(outputs)} Output nodes ({outputs}); spikeforge imports "
                              "graphs with exactly one Output")
    for a, b in edges:
        if a not in nodes or b not in nodes:
            raise SpikeforgeError(f"the NIR graph has an edge {a!r} -> {b!r} to a node it does not hold")
    if len(set(edges)) != len(edges):
        raise SpikeforgeError("the NIR graph lists an edge twice; NIR sums distinct edges")
    incoming = {name: [a for a, b in edges if b == name] for name in nodes}
    try:
        order = list(graphlib.TopologicalSorter(incoming).static_order())
    except graphlib.CycleError as error:
        raise SpikeforgeError(f"the NIR graph has a cycle through {' -> '.join(map(repr, error.args[1]))} that is not "
                              "a recurrent neuron layer (neuron <-> Linear)") from error
    reached = {inputs[0]}
    for name in order:
        if incoming[name] and all(a in reached for a in incoming[name]):
            reached.add(name)
    unreached = [k for k in order if k not in reached]
    if unreached:
        raise SpikeforgeError(f"NIR node {unreached[0]!r} is not on a path from the Input; spikeforge imports "
                              "graphs where every node is fed from the Input")
    if any(a == outputs[0] for a, _ in edges):
        raise SpikeforgeError(f"the NIR graph's Output {outputs[0]!r} feeds other nodes")
    used = {a for a, _ in edges}
    dead = [k for k in order if k not in used and k != outputs[0]]
    if dead:
        raise SpikeforgeError(f"NIR node {dead[0]!r} does not lead to the Output; remove it")
    if incoming[inputs[0]]:
        raise SpikeforgeError(f"the NIR graph's Input {inputs[0]!r} has incoming edges")
    return inputs[0], [k for k in order if k != inputs[0]], incoming


def _node_name(name: str, taken: set[str]) -> str:
    """A GraphNetwork node name for a NIR node name (no '.', not 'input', unique)."""
    clean = name.replace(".", "_") or "node"
    if clean == INPUT:
        clean = "input_node"
    candidate, k = clean, 1
    while candidate in taken:
        candidate, k = f"{clean}_{k}", k + 1
    taken.add(candidate)
    return candidate


def _input_shape(graph_input: nir.Input, first: nir.NIRNode | None) -> tuple[int, ...]:
    """The Input's shape; leading 1s beyond what the first layer takes are a peer's recorded
    batch dimension (Norse's ``to_nir`` keeps the batch of its sample) and are dropped."""
    shape = tuple(int(d) for d in np.atleast_1d(np.asarray(graph_input.input_type["input"])))
    wanted = {nir.Affine: 1, nir.Linear: 1, nir.Conv1d: 2, nir.Conv2d: 3}.get(type(first))
    while wanted is not None and len(shape) > wanted and shape[0] == 1:
        shape = shape[1:]
    return shape


def _check_first_layers(built: list[Node], shape: tuple[int, ...]) -> None:
    """Every Linear / convolution reading the Input takes the Input's width or channels (one line naming both)."""
    for node in built:
        if node.inputs != (INPUT,):
            continue
        layer = node.layer
        if isinstance(layer, nn.Linear) and layer.in_features != shape[-1]:
            found, what = layer.in_features, f"{shape[-1]} features"
        elif isinstance(layer, (nn.Conv1d, nn.Conv2d)) and layer.in_channels != shape[0]:
            found, what = layer.in_channels, f"{shape[0]} channels"
        else:
            continue
        raise SpikeforgeError(f"NIR node {node.name!r} ({type(layer).__name__}) takes {found} inputs but the graph's "
                              f"Input (shape {shape}) gives {what}; check the NIR graph's Input shape and layer sizes")


def _module(name: str, node: nir.NIRNode, dt: float, recurrent: dict, before: nn.Module | None,
            dialect: Dialect) -> nn.Module:
    if isinstance(node, nir.NIRGraph):
        neuron, w_rec = _subgraph_neuron(name, node)
        return _neuron(name, neuron, dt, w_rec, dialect)
    if isinstance(node, NEURON_NODES):
        return _neuron(name, node, dt, recurrent.get(name), dialect)
    if isinstance(node, READOUT_NODES):
        return _readout(name, node, dt, [] if before is None else [before], dialect)
    if isinstance(node, nir.Input):
        raise SpikeforgeError(f"NIR node {name!r} is an Input inside the graph")
    return _stateless(name, node)


def resolve_dt(graph: nir.NIRGraph, dt: float | None = None, dialect: str | None = None) -> float:
    """The time step an import of ``graph`` uses: ``dt``, else the graph's ``dt`` metadata, else the dialect's."""
    meta_dt = _metadata(graph).get("dt")
    return D.check_dt(float(dt if dt is not None else (meta_dt if meta_dt is not None else get_dialect(dialect).dt)))


def import_nir(graph: nir.NIRGraph, dt: float | None = None, dialect: str | None = None) -> Sequential | GraphNetwork:
    """Build the network running ``graph`` with time step ``dt``: a :class:`snn.network.Sequential`
    for a chain, a :class:`snn.graph_network.GraphNetwork` for any other graph (a node with
    several incoming edges sums them: an ``Add`` node is placed in front of it).

    ``dialect`` names the producer of the file (:mod:`converters.nir_dialects`): None or
    ``"nir"`` reads the specification, ``"snntorch"`` a file of ``snntorch.export_to_nir``
    (snnTorch's default delayed subtraction), ``"sinabs"`` one of ``sinabs.to_nir``."""
    if not isinstance(graph, nir.NIRGraph):
        raise SpikeforgeError(f"NIR import takes a nir.NIRGraph, got {type(graph).__name__}")
    reading = get_dialect(dialect)
    dt = resolve_dt(graph, dt, dialect)
    nodes, edges = dict(graph.nodes), [tuple(e) for e in graph.edges]
    for name, node in nodes.items():
        if not isinstance(node, (nir.Input, nir.Output, nir.NIRGraph, *STATELESS_NODES, *NEURON_NODES, *READOUT_NODES)):
            raise SpikeforgeError(f"NIR node {name!r} has type {type(node).__name__}, which spikeforge cannot "
                                  f"import; supported: {SUPPORTED} and recurrent neuron subgraphs")
    nodes, edges, recurrent = _fold_recurrence(nodes, edges)
    source, order, incoming = _order(nodes, edges)
    taken: set[str] = set()
    ours = {source: INPUT}
    modules: dict[str, nn.Module] = {}
    built: list[Node] = []
    output = None
    for name in order:
        inputs = tuple(ours[a] for a in incoming[name])
        if len(inputs) > 1:
            summed = _node_name(f"{name}_sum", taken)
            built.append(Node(summed, Add(), inputs))
            inputs = (summed,)
        if isinstance(nodes[name], nir.Output):
            output = inputs[0]
            continue
        before = modules.get(inputs[0]) if len(incoming[name]) == 1 else None
        module = _module(name, nodes[name], dt, recurrent, before, reading)
        ours[name] = _node_name(name, taken)
        modules[ours[name]] = module
        built.append(Node(ours[name], module, inputs))
    first = nodes[next((b for a, b in edges if a == source), source)]
    shape = _input_shape(nodes[source], None if first is nodes[source] else first)
    if output is None or output == INPUT:
        raise SpikeforgeError("the NIR graph's Output reads the Input directly; there is no layer to import")
    _check_first_layers(built, shape)
    try:
        net = GraphNetwork(built, output, input_shape=shape)
    except SpikeforgeError as exc:
        raise SpikeforgeError(f"the imported network does not run on the graph's input shape {shape}: {exc}; "
                              "check the NIR graph's Input shape and layer sizes") from exc
    result = net.as_sequential() if net.is_chain() else net
    # GraphNetwork checked the shapes with zeros; a random spike input also runs every event-driven path.
    probe_network(result, "the imported NIR graph", "check the NIR graph's Input shape and layer sizes")
    return result
