"""Import a NIR graph into our simulator as a :class:`snn.network.Sequential`.

Supported nodes: Input, Output, Affine, Linear, Conv1d, Conv2d, AvgPool2d, SumPool2d,
Flatten, IF, LIF, CubaLIF, LI, I, and recurrence in either of NIR's two forms: a cycle
neuron -> Linear/Affine -> neuron in the graph itself, or a subgraph holding Input, one
neuron, its Linear/Affine w_rec and Output (snnTorch's RLeaky/RSynaptic export and ours).
The graph must be a chain from its one Input to its one Output once recurrences are folded
into their neurons; anything else is refused with the node named.

Neuron parameters follow :mod:`converters.nir_discretisation`; the time step is the
``dt`` argument, else the graph's ``dt`` metadata (our exports), else
:data:`~converters.nir_discretisation.DEFAULT_DT` (snnTorch's 1e-4 s).
A leaky integrator (LI / I) whose input gain ``r dt / tau`` is not 1 cannot rescale its
state (its membrane is the output), so the gain is folded into the preceding Linear.
"""

from __future__ import annotations

import json
from typing import Any

import nir
import numpy as np
import torch
from torch import nn

from converters import nir_discretisation as D
from snn.errors import SpikeforgeError
from snn.network import Sequential
from snn.neurons import IF, LIF, CubaLIF, Integrator, NeuronLayer

NEURON_NODES = (nir.IF, nir.LIF, nir.CubaLIF)
READOUT_NODES = (nir.LI, nir.I)
WEIGHT_NODES = (nir.Affine, nir.Linear)
STATELESS_NODES = (nir.Affine, nir.Linear, nir.Conv1d, nir.Conv2d, nir.AvgPool2d, nir.SumPool2d, nir.Flatten)
SUPPORTED = "Input, Output, Affine, Linear, Conv1d, Conv2d, AvgPool2d, SumPool2d, Flatten, IF, LIF, CubaLIF, LI, I"
# Layer settings that are not dynamics: taken from our own metadata when present.
TRAINING_KEYS = ("surrogate", "learn_threshold", "learn_beta", "learn_alpha", "detach_reset")


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


def _reset_and_settings(name: str, node: nir.NIRNode) -> tuple[str, dict]:
    meta = _metadata(node)
    reset = meta.get(D.RESET_KEY, "zero")
    if isinstance(reset, bytes):
        reset = reset.decode()
    if reset not in ("zero", "subtract"):
        raise SpikeforgeError(f"NIR node {name!r} has {D.RESET_KEY}={reset!r}; expected 'zero' or 'subtract'")
    if hasattr(node, "v_reset") and node.v_reset is not None and (_f64(node.v_reset) != 0).any():
        raise SpikeforgeError(f"NIR node {name!r} resets to a non-zero v_reset; our neurons reset to zero or by "
                              "subtraction only: shift v_leak/v_threshold so that v_reset = 0")
    settings: dict = {}
    spec = meta.get("spikeforge_layer")
    if spec is not None:
        try:
            settings = {k: v for k, v in json.loads(spec).items() if k in TRAINING_KEYS}
        except (TypeError, ValueError) as exc:
            raise SpikeforgeError(f"NIR node {name!r} has unreadable spikeforge_layer metadata: {exc}") from exc
    return reset, settings


def _neuron(name: str, node: nir.NIRNode, dt: float, recurrent: nir.NIRNode | None) -> NeuronLayer:
    reset, settings = _reset_and_settings(name, node)
    layer_type = json.loads(_metadata(node).get("spikeforge_layer", "{}")).get("type")
    if isinstance(node, nir.IF):
        gain = D.check_gain(D.snap_gain(dt * _f64(node.r)), name)
        theta = _f64(node.v_threshold) / gain
        if layer_type == "LIF":  # a leak-free LIF is written as IF
            settings.pop("learn_alpha", None)
            layer: NeuronLayer = LIF(beta=1.0, theta=_param(theta), reset=reset, **settings)
        else:
            settings = {k: v for k, v in settings.items() if k not in ("learn_beta", "learn_alpha")}
            layer = IF(theta=_param(theta), reset=reset, **settings)
    elif isinstance(node, nir.LIF):
        beta = D.tau_to_decay_checked(node.tau, dt, name, "tau")
        gain = D.check_gain(D.snap_gain(_f64(node.r) * dt / _f64(node.tau)), name)
        settings.pop("learn_alpha", None)
        layer = LIF(beta=_param(beta), theta=_param(_f64(node.v_threshold) / gain),
                    bias=_param(D.leak_to_bias(_f64(node.v_leak), beta, gain)), reset=reset, **settings)
    else:
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


def _readout(name: str, node: nir.NIRNode, dt: float, layers: list[nn.Module]) -> Integrator:
    _, settings = _reset_and_settings(name, node)
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


def _stateless(name: str, node: nir.NIRNode) -> nn.Module:
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


def _chain(nodes: dict, edges: list[tuple[str, str]]) -> list[str]:
    """Node names from the Input to the Output; refuses anything that is not a chain."""
    inputs = [k for k, v in nodes.items() if isinstance(v, nir.Input)]
    if len(inputs) != 1:
        raise SpikeforgeError(f"the NIR graph has {len(inputs)} Input nodes ({inputs}); spikeforge imports "
                              "sequential graphs with exactly one Input")
    for name in nodes:
        outgoing = [b for a, b in edges if a == name]
        incoming = [a for a, b in edges if b == name]
        if len(outgoing) > 1 or len(incoming) > 1:
            raise SpikeforgeError(f"the NIR graph is not sequential at node {name!r} ({len(incoming)} inputs, "
                                  f"{len(outgoing)} outputs: {incoming} -> {outgoing}); spikeforge imports chains "
                                  "of layers (with recurrent neuron layers) only")
    order, current = [inputs[0]], inputs[0]
    while True:
        following = [b for a, b in edges if a == current]
        if not following:
            break
        current = following[0]
        if current in order:
            raise SpikeforgeError(f"the NIR graph has a cycle through node {current!r} that is not a recurrent "
                                  "neuron layer (neuron <-> Linear)")
        order.append(current)
    unreached = [k for k in nodes if k not in order]
    if unreached:
        raise SpikeforgeError(f"NIR node {unreached[0]!r} is not on the path from the Input to the Output; "
                              "spikeforge imports one chain of layers")
    if not isinstance(nodes[order[-1]], nir.Output):
        raise SpikeforgeError(f"the NIR graph's chain ends at node {order[-1]!r}, not at an Output node")
    return order


def _input_shape(graph_input: nir.Input, first: nir.NIRNode | None) -> tuple[int, ...]:
    """The Input's shape; leading 1s beyond what the first layer takes are a peer's recorded
    batch dimension (Norse's ``to_nir`` keeps the batch of its sample) and are dropped."""
    shape = tuple(int(d) for d in np.atleast_1d(np.asarray(graph_input.input_type["input"])))
    wanted = {nir.Affine: 1, nir.Linear: 1, nir.Conv1d: 2, nir.Conv2d: 3}.get(type(first))
    while wanted is not None and len(shape) > wanted and shape[0] == 1:
        shape = shape[1:]
    return shape


def import_nir(graph: nir.NIRGraph, dt: float | None = None) -> Sequential:
    """Build a :class:`snn.network.Sequential` running ``graph`` with time step ``dt``."""
    if not isinstance(graph, nir.NIRGraph):
        raise SpikeforgeError(f"NIR import takes a nir.NIRGraph, got {type(graph).__name__}")
    meta_dt = _metadata(graph).get("dt")
    dt = D.check_dt(float(dt if dt is not None else (meta_dt if meta_dt is not None else D.DEFAULT_DT)))
    nodes, edges = dict(graph.nodes), [tuple(e) for e in graph.edges]
    for name, node in nodes.items():
        if not isinstance(node, (nir.Input, nir.Output, nir.NIRGraph, *STATELESS_NODES, *NEURON_NODES, *READOUT_NODES)):
            raise SpikeforgeError(f"NIR node {name!r} has type {type(node).__name__}, which spikeforge cannot "
                                  f"import; supported: {SUPPORTED} and recurrent neuron subgraphs")
    nodes, edges, recurrent = _fold_recurrence(nodes, edges)
    order = _chain(nodes, edges)
    layers: list[nn.Module] = []
    for name in order[1:-1]:
        node = nodes[name]
        if isinstance(node, nir.NIRGraph):
            neuron, w_rec = _subgraph_neuron(name, node)
            layers.append(_neuron(name, neuron, dt, w_rec))
        elif isinstance(node, NEURON_NODES):
            layers.append(_neuron(name, node, dt, recurrent.get(name)))
        elif isinstance(node, READOUT_NODES):
            layers.append(_readout(name, node, dt, layers))
        elif isinstance(node, nir.Input):
            raise SpikeforgeError(f"NIR node {name!r} is an Input inside the chain")
        else:
            layers.append(_stateless(name, node))
    first = nodes[order[1]] if len(order) > 2 else None
    shape = _input_shape(nodes[order[0]], first)
    net = Sequential(*layers, input_shape=shape)
    with torch.no_grad():
        try:
            net(torch.zeros(1, 1, *shape))
        except Exception as exc:
            raise SpikeforgeError(f"the imported network does not run on the graph's input shape {shape}: {exc}; "
                                  "check the NIR graph's Input shape and layer sizes") from exc
    return net
