"""The normal-form ANN graph, calibrated, as a spikeforge network (the representation every stage takes).

Node by node (torch.fx, shapes from one sample)::

    ActivationSite with threshold theta  ->  IF(theta, reset "subtract", v_init) then Scale(theta)
    MaxPool2d                            ->  SpikeMaxPool2d (gating on the running spike count)
    Linear, Conv, pooling, BatchNorm     ->  the same layer
    x + y, torch.add                     ->  Add;   torch.cat(xs, d) -> Concat(d)
    flatten / view / reshape to [N, -1]  ->  Flatten;   x.mean((2, 3)) -> AdaptiveAvgPool2d(1), Flatten
    output                               ->  Integrator(beta = 1): the accumulated membrane

so the prediction after T steps, ``argmax v[T-1] = argmax sum_{t<T} y[t]``, is the
``membrane_last`` readout. A graph with one path comes out as :class:`~snn.network.Sequential`,
any other as :class:`~snn.graph_network.GraphNetwork`.
"""

from __future__ import annotations

import copy
import math
import operator
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from converters.tracing import ActivationSite, node_label
from snn.errors import SpikeforgeError
from snn.graph_network import INPUT, GraphNetwork, Node
from snn.layers import Add, Concat, Scale, SpikeMaxPool2d
from snn.network import Sequential
from snn.neurons import IF, Integrator

READOUT = "readout"
ADDS = {operator.add, torch.add, "add", "__add__"}
CATS = {torch.cat, torch.concat}
SHAPE_ONLY = {"size", getattr, operator.getitem, "contiguous"}
AVG_FUNCTIONS = {F.avg_pool1d: nn.AvgPool1d, F.avg_pool2d: nn.AvgPool2d, F.adaptive_avg_pool1d: nn.AdaptiveAvgPool1d,
                 F.adaptive_avg_pool2d: nn.AdaptiveAvgPool2d}


def spiking_network(gm: fx.GraphModule, thresholds: dict[str, torch.Tensor], v_init: float,
                    take_modules: bool = False) -> Sequential | GraphNetwork:
    """The network of ``gm`` (normal form) with IF neurons at ``thresholds``. Each node's shape is read from
    ``gm``'s nodes, where :func:`converters.calibration.activation_thresholds` leaves those of its first batch.

    The network's weighted layers are copies of ``gm``'s, unless ``take_modules``: then each module is
    taken as it is the first time the graph calls it (copied on later calls, so that no two nodes share
    weights), which spares a second copy of every weight for a caller whose ``gm`` is its own copy.
    """
    input_shape = _recorded_input_shape(gm)
    taken: set[int] | None = set() if take_modules else None
    nodes: list[Node] = []
    name_of: dict[fx.Node, str] = {}
    output = None
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            name_of[node] = INPUT
        elif node.op == "output":
            output = name_of[_single(node.args[0], node, gm)]
        elif _shape_only(node):
            continue
        else:
            name_of[node] = _translate(node, gm, thresholds, v_init, name_of, nodes, taken)
    if output is None:
        raise SpikeforgeError("the traced ANN has no output")
    nodes.append(Node(READOUT, Integrator(beta=1.0), (output,)))
    # the traced ANN ran on this shape during calibration, so the graph's own shape run is skipped (a second forward
    # of the whole network; 0.4 s of a ResNet-18's conversion)
    graph = GraphNetwork(nodes, READOUT, input_shape, check_shapes=False)
    return (graph.as_sequential() if graph.is_chain() else graph).eval()


def _recorded_input_shape(gm: fx.GraphModule) -> tuple[int, ...]:
    """The sample shape (without the batch dimension) of the shapes recorded on ``gm``'s nodes."""
    placeholders = [node for node in gm.graph.nodes if node.op == "placeholder"]
    missing = [node.name for node in gm.graph.nodes if node.op != "output" and "tensor_meta" not in node.meta]
    if len(placeholders) != 1 or missing:
        raise SpikeforgeError("the graph carries no recorded shapes (of one input); calibrate it first "
                              "(converters.calibration.activation_thresholds records them)")
    return _shape(placeholders[0])[1:]


def _single(arg: Any, node: fx.Node, gm: fx.GraphModule) -> fx.Node:
    if not isinstance(arg, fx.Node):
        raise SpikeforgeError(f"{node_label(node, gm)} returns {type(arg).__name__}; the ANN must return one "
                              "tensor of class scores")
    return arg


def _shape_only(node: fx.Node) -> bool:
    """size(), getattr(x, 'shape'), shape[0]: values only other nodes' arguments read."""
    return node.op in ("call_function", "call_method") and node.target in SHAPE_ONLY


def _shape(node: fx.Node) -> tuple[int, ...]:
    return tuple(node.meta["tensor_meta"].shape)


def _translate(node: fx.Node, gm: fx.GraphModule, thresholds: dict[str, torch.Tensor], v_init: float,
               name_of: dict[fx.Node, str], nodes: list[Node], taken: set[int] | None = None) -> str:
    """Append the node(s) for ``node``; return the name whose output stands for it. ``taken``: the ids of
    ``gm``'s modules already taken into the network (None: copy every module)."""
    sources = [a for a in node.args if isinstance(a, fx.Node) and not _shape_only(a)]
    if node.target in CATS:
        sources = list(node.args[0])
    inputs = tuple(name_of[s] for s in sources)
    name = node.name
    if node.op == "call_module":
        module = gm.get_submodule(node.target)
        if isinstance(module, ActivationSite):
            theta = thresholds[node.target].detach().float()
            channels = _shape(node)[1:]
            shaped = theta if theta.dim() == 0 else theta.reshape(-1, *([1] * (len(channels) - 1)))
            nodes.append(Node(name, IF(theta=shaped, reset="subtract", v_init=v_init), inputs))
            nodes.append(Node(f"{name}_amplitude", Scale(theta), (name,)))
            return f"{name}_amplitude"
        if isinstance(module, nn.MaxPool2d):
            layer = SpikeMaxPool2d(module.kernel_size, module.stride, module.padding, module.dilation, module.ceil_mode)
        elif isinstance(module, nn.MaxPool1d):
            raise SpikeforgeError(f"{node_label(node, gm)}: 1-d max pooling has no spiking form here; use AvgPool1d")
        elif taken is not None and id(module) not in taken:
            taken.add(id(module))
            layer = module
        else:
            layer = copy.deepcopy(module)
    elif node.target in ADDS:
        if len(sources) != 2 or len(node.args) != 2:
            raise SpikeforgeError(f"{node_label(node, gm)} adds a constant; only the sum of two tensors "
                                  "(a residual connection) has a spiking form")
        layer = Add()
    elif node.target in CATS:
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        layer = Concat(dim if dim >= 0 else len(_shape(node)) + dim)
    elif node.target in AVG_FUNCTIONS:
        layer = AVG_FUNCTIONS[node.target](*node.args[1:], **node.kwargs)
    elif node.target in ("view", "reshape", "flatten", torch.flatten):
        layer = _flatten(node, gm)
    elif node.target == "mean":
        return _global_mean(node, gm, inputs, nodes)
    else:
        raise SpikeforgeError(f"{node_label(node, gm)} has no spiking form in a spikeforge network")
    nodes.append(Node(name, layer, inputs))
    return name


def _flatten(node: fx.Node, gm: fx.GraphModule) -> nn.Module:
    before, after = _shape(node.args[0]), _shape(node)
    if after == (before[0], math.prod(before[1:])):
        return nn.Flatten()
    if after == before:
        return nn.Identity()
    raise SpikeforgeError(f"{node_label(node, gm)} reshapes {before} to {after}; only flattening to [N, -1] "
                          "has a layer here (use torch.flatten(x, 1) or nn.Flatten)")


def _global_mean(node: fx.Node, gm: fx.GraphModule, inputs: tuple[str, ...], nodes: list[Node]) -> str:
    before, after = _shape(node.args[0]), _shape(node)
    if len(before) == 4 and after == before[:2]:
        nodes.append(Node(f"{node.name}_pool", nn.AdaptiveAvgPool2d(1), inputs))
        nodes.append(Node(node.name, nn.Flatten(), (f"{node.name}_pool",)))
        return node.name
    raise SpikeforgeError(f"{node_label(node, gm)} takes a mean from {before} to {after}; only the global "
                          "average over H and W (x.mean((2, 3))) has a layer here")
