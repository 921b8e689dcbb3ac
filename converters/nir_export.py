"""Export a spiking network (:class:`snn.network.Sequential` or :class:`snn.graph_network.GraphNetwork`) to a NIR graph.

NIR is a graph format: node names are the network's node names (a Sequential's child names
"0", "1", ...), the graph adds "input" and "output", and every edge of ours is an edge of
NIR's. A node with several incoming edges sums them (NIR's rule), so a residual ``Add``
becomes no node at all: the edges of its inputs go straight to its consumer.

Layer mapping:

=====================================  =======================================================
ours                                   NIR
=====================================  =======================================================
``nn.Linear``                          ``Affine`` (with bias) / ``Linear`` (without)
``nn.Conv1d`` / ``nn.Conv2d``          ``Conv1d`` / ``Conv2d`` (zero padding mode only)
``nn.AvgPool2d``                       ``AvgPool2d``; with ``divisor_override=1``: ``SumPool2d``
``nn.AdaptiveAvgPool2d``               ``AvgPool2d`` with the window it implies (sizes must divide)
``nn.Flatten``                         ``Flatten`` (dims shifted down by one: NIR has no batch)
``snn.layers.Scale``                   ``Scale`` (the per-channel factor broadcast to the feature shape)
``snn.layers.Add``                     the sum of its inputs' edges into the next node
``nn.Dropout`` / ``nn.Identity``       nothing (an exported network is an inference network)
``LIF`` / ``IF`` / ``CubaLIF``         ``LIF`` / ``IF`` / ``CubaLIF``
``Integrator``                         ``LI`` (``I`` when beta = 1)
recurrent neuron layer                 a subgraph Input -> neuron <-> Linear(w_rec), neuron -> Output
=====================================  =======================================================

Neuron parameters follow :mod:`converters.nir_discretisation` (written once, used both
ways). Each neuron node's metadata holds ``reset_mode`` and ``spikeforge_layer`` (the layer's
JSON spec: surrogate, learn flags, and ``v_init`` for an IF layer that starts charged),
which a peer ignores (so a peer runs a ``"subtract"`` or ``"subtract-delayed"`` layer with
zero reset); the graph's metadata holds ``dt``. NIR's neurons have no initial
state, so ``v_init`` (a converted network's half-threshold start) lives in that metadata
only: our import restores it, a peer starts the layer at rest. ALIF, Concat, spike max
pooling and other layers NIR cannot express are refused with the layer named.
"""

from __future__ import annotations

import json
from typing import Sequence

import nir
import numpy as np
import torch
from torch import nn

from converters import nir_discretisation as D
from snn.errors import SpikeforgeError
from snn.graph_network import INPUT, GraphNetwork, Node, network_nodes
from snn.layers import Add, Concat, Scale, SpikeMaxPool2d
from snn.network import Sequential
from snn.neurons import IF, LIF, CubaLIF, Integrator, NeuronLayer

PRODUCER = "spikeforge"
SKIPPED = (nn.Dropout, nn.Identity)
STATELESS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Flatten, Scale)
NEURONS = (IF, LIF, CubaLIF, Integrator)


def _array(t: torch.Tensor, shape: Sequence[int] | None = None) -> np.ndarray:
    a = t.detach().cpu().to(torch.float64).numpy()
    return a.copy() if shape is None else np.broadcast_to(a, tuple(shape)).copy()


def _shapes(nodes: Sequence[Node], input_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    """Feature shape (no time, no batch) after every node, from one zero step."""
    values = {INPUT: torch.zeros((1, *input_shape))}
    with torch.no_grad():
        for name, layer, inputs in nodes:
            args = [values[i] for i in inputs]
            try:
                if isinstance(layer, NeuronLayer):
                    values[name] = layer(args[0].unsqueeze(0))[0][0]
                elif getattr(layer, "time_major", False):
                    values[name] = layer(args[0].unsqueeze(0))[0]
                else:
                    values[name] = layer(*args)
            except Exception as exc:  # the layer's own message says what did not fit
                shown = ", ".join(str(tuple(a.shape[1:])) for a in args)
                raise SpikeforgeError(f"layer {name} ({type(layer).__name__}) does not run on feature shape "
                                      f"{shown}: {exc}; check input_shape") from exc
    return {name: tuple(v.shape[1:]) for name, v in values.items()}


def _ints(value, n: int) -> np.ndarray:
    return np.array(value if isinstance(value, (tuple, list)) else (value,) * n, dtype=np.int64)


def _stateless(name: str, layer: nn.Module, before: tuple[int, ...]) -> nir.NIRNode:
    if isinstance(layer, Scale):
        factor = _array(layer.factor)
        per_channel = factor.reshape(-1, *([1] * (len(before) - 1))) if factor.size > 1 else factor.reshape(())
        return nir.Scale(scale=np.broadcast_to(per_channel, before).copy())
    if isinstance(layer, nn.AdaptiveAvgPool2d):
        size = tuple(layer.output_size) if isinstance(layer.output_size, (tuple, list)) else (layer.output_size,) * 2
        if len(before) != 3 or any(s is None or h % int(s) for h, s in zip(before[1:], size)):
            raise SpikeforgeError(f"layer {name}: adaptive average pooling from {before[1:]} to {tuple(size)} has "
                                  "no fixed window; NIR pools with fixed windows only")
        kernel = np.array([h // int(s) for h, s in zip(before[1:], size)], dtype=np.int64)
        return nir.AvgPool2d(kernel_size=kernel, stride=kernel, padding=np.zeros(2, dtype=np.int64))
    if isinstance(layer, nn.Linear):
        weight = _array(layer.weight)
        if layer.bias is None:
            return nir.Linear(weight=weight)
        return nir.Affine(weight=weight, bias=_array(layer.bias))
    if isinstance(layer, (nn.Conv1d, nn.Conv2d)):
        if layer.padding_mode != "zeros":
            raise SpikeforgeError(f"layer {name}: NIR convolutions pad with zeros only, this one uses "
                                  f"padding_mode={layer.padding_mode!r}; retrain with padding_mode='zeros'")
        bias = _array(layer.bias) if layer.bias is not None else np.zeros(layer.out_channels)
        two_d = isinstance(layer, nn.Conv2d)
        padding = layer.padding if isinstance(layer.padding, str) else (
            tuple(int(p) for p in layer.padding) if two_d else int(layer.padding[0]))
        common = dict(weight=_array(layer.weight), bias=bias, padding=padding, groups=int(layer.groups))
        if two_d:
            return nir.Conv2d(input_shape=tuple(before[1:]), stride=tuple(layer.stride),
                              dilation=tuple(layer.dilation), **common)
        return nir.Conv1d(input_shape=int(before[1]), stride=int(layer.stride[0]), dilation=int(layer.dilation[0]),
                          **common)
    if isinstance(layer, nn.AvgPool2d):
        if layer.ceil_mode or not layer.count_include_pad or layer.divisor_override not in (None, 1):
            raise SpikeforgeError(f"layer {name}: NIR pooling has no ceil_mode / count_include_pad=False / "
                                  "divisor_override other than 1; use the torch defaults")
        kernel = _ints(layer.kernel_size, 2)
        stride = kernel if layer.stride is None else _ints(layer.stride, 2)
        node = nir.SumPool2d if layer.divisor_override == 1 else nir.AvgPool2d
        return node(kernel_size=kernel, stride=stride, padding=_ints(layer.padding, 2))
    if isinstance(layer, nn.Flatten):
        if layer.start_dim == 0 or layer.end_dim == 0:
            raise SpikeforgeError(f"layer {name}: Flatten over the batch dimension (dim 0) has no NIR form; "
                                  "flatten from dim 1")
        shift = lambda d: d - 1 if d > 0 else d  # noqa: E731  NIR shapes have no batch dimension
        return nir.Flatten(input_type={"input": np.array(before)}, start_dim=shift(layer.start_dim),
                           end_dim=shift(layer.end_dim))
    raise _unsupported(name, layer)


def _unsupported(name: str, layer: nn.Module) -> SpikeforgeError:
    if isinstance(layer, Concat):
        return SpikeforgeError(f"layer {name} (Concat) has no NIR counterpart: NIR sums a node's inputs and has no "
                               "concatenation; export a network whose branches merge by addition")
    if isinstance(layer, SpikeMaxPool2d):
        return SpikeforgeError(f"layer {name} (SpikeMaxPool2d) has no NIR counterpart (NIR has no spike max "
                               "pooling); convert an ANN with average pooling instead")
    return SpikeforgeError(f"layer {name} ({type(layer).__name__}) has no NIR counterpart; NIR export takes "
                           "Linear, Conv1d/2d, AvgPool2d, AdaptiveAvgPool2d, Flatten, Scale, Add, Dropout and "
                           "LIF/IF/CubaLIF/Integrator layers (fold BatchNorm into the preceding layer first, "
                           "e.g. with converters.convert)")


def _metadata(layer: NeuronLayer) -> dict:
    meta = {"spikeforge_layer": json.dumps(layer.spec(), sort_keys=True)}
    if hasattr(layer, "reset"):
        meta[D.RESET_KEY] = layer.reset
    return meta


def _neuron(name: str, layer: NeuronLayer, shape: tuple[int, ...], dt: float) -> nir.NIRNode:
    meta = _metadata(layer)
    if isinstance(layer, Integrator):
        p = layer.parameters_now()
        beta, bias = _array(p.beta, shape), _array(p.bias, shape)
        if (beta == 1).all() and (bias == 0).all():
            return nir.I(r=np.full(shape, 1.0 / dt), metadata=meta)
        tau = D.decay_to_tau(beta, dt, f"layer {name} (Integrator) beta")
        return nir.LI(tau=tau, r=1.0 / (1.0 - beta), v_leak=D.bias_to_leak(bias, beta), metadata=meta)
    if not isinstance(layer, (IF, LIF, CubaLIF)):
        raise SpikeforgeError(f"layer {name} ({type(layer).__name__}) has no NIR neuron type (NIR has IF, LIF, "
                              "CubaLIF, LI, I); export a network built from those")
    p = layer.parameters_now()
    alpha, beta = _array(p.alpha, shape), _array(p.beta, shape)
    theta, bias = _array(p.theta, shape), _array(p.bias, shape)
    zeros = np.zeros(shape)
    if isinstance(layer, CubaLIF):
        tau_syn = D.decay_to_tau(alpha, dt, f"layer {name} (CubaLIF) alpha")
        tau_mem = D.decay_to_tau(beta, dt, f"layer {name} (CubaLIF) beta")
        return nir.CubaLIF(tau_syn=tau_syn, tau_mem=tau_mem, r=1.0 / (1.0 - beta), v_leak=D.bias_to_leak(bias, beta),
                           v_threshold=theta, v_reset=zeros, w_in=1.0 / (1.0 - alpha), metadata=meta)
    if (beta == 1).all():
        if (bias != 0).any():
            raise SpikeforgeError(f"layer {name} ({type(layer).__name__}) has no leak (beta = 1) and a bias; NIR's "
                                  "IF has no constant input: fold the bias into the preceding layer's bias")
        return nir.IF(r=np.full(shape, 1.0 / dt), v_threshold=theta, v_reset=zeros, metadata=meta)
    tau = D.decay_to_tau(beta, dt, f"layer {name} (LIF) beta")
    return nir.LIF(tau=tau, r=1.0 / (1.0 - beta), v_leak=D.bias_to_leak(bias, beta), v_threshold=theta,
                   v_reset=zeros, metadata=meta)


def _recurrent(node: nir.NIRNode, layer: NeuronLayer, shape: tuple[int, ...]) -> nir.NIRGraph:
    """NIR's form of recurrence: a cycle neuron -> Linear(w_rec) -> neuron inside a subgraph.

    The cycle carries the previous step's spikes, as in our contract x[t] + W s[t-1].
    """
    nodes = {"input": nir.Input(input_type=np.array(shape)), "lif": node,
             "w_rec": nir.Linear(weight=_array(layer.recurrent.weight)),
             "output": nir.Output(output_type=np.array(shape))}
    edges = [("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"producer": PRODUCER})


def _check_supported(nodes: Sequence[Node], dt: float) -> None:
    """Refuse unsupported layers before running anything."""
    for name, layer, _ in nodes:
        if isinstance(layer, NeuronLayer) and not isinstance(layer, NEURONS):
            _neuron(name, layer, (), dt)
        elif not isinstance(layer, (NeuronLayer, *SKIPPED, *STATELESS, Add)):
            raise _unsupported(name, layer)


def export_nir(net: Sequential | GraphNetwork, input_shape: Sequence[int] | None = None,
               dt: float = D.DEFAULT_DT) -> nir.NIRGraph:
    """Return the NIR graph of ``net`` (a :class:`snn.network.Sequential` or a :class:`snn.graph_network.GraphNetwork`).

    ``input_shape`` is the feature shape after ``[T, B]`` (default: ``net.input_shape``);
    ``dt`` the seconds per step used to write time constants (recorded in the graph's
    metadata, read back by :func:`converters.nir_import.import_nir`).
    """
    if not isinstance(net, (Sequential, GraphNetwork)):
        raise SpikeforgeError(f"NIR export takes an snn.Sequential or snn.GraphNetwork, got {type(net).__name__}")
    dt = D.check_dt(dt)
    ordered, output, own_shape = network_nodes(net)
    shape = input_shape if input_shape is not None else own_shape
    if shape is None:
        raise SpikeforgeError("the network has no input_shape; pass input_shape= (the feature shape after [T, B])")
    shape = tuple(int(d) for d in shape)
    _check_supported(ordered, dt)
    shapes = _shapes(ordered, shape)
    nodes: dict[str, nir.NIRNode] = {INPUT: nir.Input(input_type=np.array(shape))}
    feeds: dict[str, list[str]] = {INPUT: [INPUT]}   # the NIR nodes whose outputs sum to each node's value
    edges: list[tuple[str, str]] = []
    for name, layer, inputs in ordered:
        sources = [source for i in inputs for source in feeds[i]]
        if isinstance(layer, (*SKIPPED, Add)):
            if len(set(sources)) != len(sources):
                raise SpikeforgeError(f"layer {name} ({type(layer).__name__}) adds a value to itself; NIR sums "
                                      "distinct edges only: scale the path instead")
            feeds[name] = sources
            continue
        if name in (INPUT, "output"):
            raise SpikeforgeError(f"layer name {name!r} is reserved in NIR graphs; rename the node")
        if isinstance(layer, NeuronLayer):
            node = _neuron(name, layer, shapes[name], dt)
            if layer.recurrent is not None:
                node = _recurrent(node, layer, shapes[name])
        else:
            node = _stateless(name, layer, shapes[inputs[0]])
        nodes[name] = node
        feeds[name] = [name]
        edges += [(source, name) for source in sources]
    nodes["output"] = nir.Output(output_type=np.array(shapes[output]))
    edges += [(source, "output") for source in feeds[output]]
    try:
        return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": dt, "producer": PRODUCER})
    except (ValueError, AssertionError) as exc:
        raise SpikeforgeError(f"the exported NIR graph does not type-check: {exc}") from exc
