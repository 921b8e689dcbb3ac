"""Export a :class:`snn.network.Sequential` to a NIR graph.

Layer mapping (NIR node names are the network's child names "0", "1", ...; the graph adds
"input" and "output"):

=====================================  =======================================================
ours                                   NIR
=====================================  =======================================================
``nn.Linear``                          ``Affine`` (with bias) / ``Linear`` (without)
``nn.Conv1d`` / ``nn.Conv2d``          ``Conv1d`` / ``Conv2d`` (zero padding mode only)
``nn.AvgPool2d``                       ``AvgPool2d``; with ``divisor_override=1``: ``SumPool2d``
``nn.Flatten``                         ``Flatten`` (dims shifted down by one: NIR has no batch)
``nn.Dropout`` / ``nn.Identity``       nothing (an exported network is an inference network)
``LIF`` / ``IF`` / ``CubaLIF``         ``LIF`` / ``IF`` / ``CubaLIF``
``Integrator``                         ``LI`` (``I`` when beta = 1)
recurrent neuron layer                 a subgraph Input -> neuron <-> Linear(w_rec), neuron -> Output
=====================================  =======================================================

Neuron parameters follow :mod:`converters.nir_discretisation` (written once, used both
ways). Each neuron node's metadata holds ``reset_mode`` and ``spikeforge_layer`` (the layer's
JSON spec: surrogate, learn flags), which a peer ignores; the graph's metadata holds ``dt``.
ALIF and layers NIR cannot express are refused with the layer named.
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
from snn.network import Sequential
from snn.neurons import IF, LIF, CubaLIF, Integrator, NeuronLayer

PRODUCER = "spikeforge"
SKIPPED = (nn.Dropout, nn.Identity)
STATELESS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.AvgPool2d, nn.Flatten)
NEURONS = (IF, LIF, CubaLIF, Integrator)


def _array(t: torch.Tensor, shape: Sequence[int] | None = None) -> np.ndarray:
    a = t.detach().cpu().to(torch.float64).numpy()
    return a.copy() if shape is None else np.broadcast_to(a, tuple(shape)).copy()


def _shapes(net: Sequential, input_shape: tuple[int, ...]) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Feature shape (no time, no batch) before and after every layer, from one zero step."""
    shapes = []
    h = torch.zeros((1, *input_shape))
    with torch.no_grad():
        for name, layer in net.named_children():
            before = tuple(h.shape[1:])
            try:
                h = layer(h.unsqueeze(0))[0][0] if isinstance(layer, NeuronLayer) else layer(h)
            except Exception as exc:  # the layer's own message says what did not fit
                raise SpikeforgeError(f"layer {name} ({type(layer).__name__}) does not run on feature shape "
                                      f"{before}: {exc}; check input_shape") from exc
            shapes.append((before, tuple(h.shape[1:])))
    return shapes


def _ints(value, n: int) -> np.ndarray:
    return np.array(value if isinstance(value, (tuple, list)) else (value,) * n, dtype=np.int64)


def _stateless(name: str, layer: nn.Module, before: tuple[int, ...]) -> nir.NIRNode:
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
    return SpikeforgeError(f"layer {name} ({type(layer).__name__}) has no NIR counterpart; NIR export takes "
                           "Linear, Conv1d/2d, AvgPool2d, Flatten, Dropout and LIF/IF/CubaLIF/Integrator layers "
                           "(fold BatchNorm into the preceding layer first, e.g. with converters.convert)")


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
    if getattr(layer, "v_init", 0.0):
        raise SpikeforgeError(f"layer {name} ({type(layer).__name__}) starts charged (v_init = {layer.v_init} theta); "
                              "NIR's neurons start at rest; set layer.v_init = 0 (and re-check the accuracy) to export")
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


def export_nir(net: Sequential, input_shape: Sequence[int] | None = None, dt: float = D.DEFAULT_DT) -> nir.NIRGraph:
    """Return the NIR graph of ``net`` (a :class:`snn.network.Sequential`).

    ``input_shape`` is the feature shape after ``[T, B]`` (default: ``net.input_shape``);
    ``dt`` the seconds per step used to write time constants (recorded in the graph's
    metadata, read back by :func:`converters.nir_import.import_nir`).
    """
    if not isinstance(net, Sequential):
        raise SpikeforgeError(f"NIR export takes an snn.Sequential network, got {type(net).__name__}")
    dt = D.check_dt(dt)
    shape = input_shape if input_shape is not None else net.input_shape
    if shape is None:
        raise SpikeforgeError("the network has no input_shape; pass input_shape= (the feature shape after [T, B])")
    shape = tuple(int(d) for d in shape)
    for name, layer in net.named_children():  # refuse unsupported layers before running anything
        if isinstance(layer, NeuronLayer) and not isinstance(layer, NEURONS):
            _neuron(name, layer, (), dt)
        elif not isinstance(layer, (NeuronLayer, *SKIPPED, *STATELESS)):
            raise _unsupported(name, layer)
    nodes: dict[str, nir.NIRNode] = {"input": nir.Input(input_type=np.array(shape))}
    order = ["input"]
    out_shape = shape
    for (name, layer), (before, after) in zip(net.named_children(), _shapes(net, shape)):
        if isinstance(layer, SKIPPED):
            continue
        if isinstance(layer, NeuronLayer):
            node = _neuron(name, layer, after, dt)
            if layer.recurrent is not None:
                node = _recurrent(node, layer, after)
        else:
            node = _stateless(name, layer, before)
        nodes[name] = node
        order.append(name)
        out_shape = after
    nodes["output"] = nir.Output(output_type=np.array(out_shape))
    order.append("output")
    edges = list(zip(order[:-1], order[1:]))
    try:
        return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": dt, "producer": PRODUCER})
    except (ValueError, AssertionError) as exc:
        raise SpikeforgeError(f"the exported NIR graph does not type-check: {exc}") from exc
