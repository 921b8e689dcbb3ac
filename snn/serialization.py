"""Networks as data: a JSON spec of layers plus a state dict of tensors.

``network_spec(model)`` describes a :class:`~snn.network.Sequential` as a list of layer
dictionaries (``{"type": "Conv2d", "in_channels": 1, ...}``) and a
:class:`~snn.graph_network.GraphNetwork` as a list of nodes (``{"name": "add1", "layer":
{"type": "Add"}, "inputs": ["conv2", "if1"]}``) plus its output node; ``build_network(spec)``
rebuilds either (layer types come from fixed tables, never from a name the file chooses),
after :mod:`snn.network_schema` has checked every field, the memory and the shapes.
Together with ``state_dict()`` this is the safe exchange format of the project: loading it
never executes code from the file.
"""

from __future__ import annotations

from typing import Any, Callable

from torch import nn

from snn.errors import SpikeforgeError
from snn.graph_network import GraphNetwork, Node
from snn.layers import STATELESS_LAYERS
from snn.network import Sequential
from snn.network_schema import FIX, check_network
from snn.neurons import NEURON_TYPES, NeuronLayer


def _conv_spec(m: nn.Module) -> dict[str, Any]:
    return {"in_channels": m.in_channels, "out_channels": m.out_channels, "kernel_size": list(m.kernel_size),
            "stride": list(m.stride), "padding": list(m.padding), "dilation": list(m.dilation),
            "groups": m.groups, "bias": m.bias is not None}


def _pool_spec(m: nn.Module) -> dict[str, Any]:
    return {"kernel_size": m.kernel_size, "stride": m.stride, "padding": m.padding}


def _norm_spec(m: nn.Module) -> dict[str, Any]:
    return {"num_features": m.num_features, "eps": m.eps, "momentum": m.momentum, "affine": m.affine}


# torch layer type -> (class, function giving its constructor arguments)
TORCH_LAYERS: dict[str, tuple[type[nn.Module], Callable[[nn.Module], dict[str, Any]]]] = {
    "Linear": (nn.Linear, lambda m: {"in_features": m.in_features, "out_features": m.out_features,
                                     "bias": m.bias is not None}),
    "Conv1d": (nn.Conv1d, _conv_spec),
    "Conv2d": (nn.Conv2d, _conv_spec),
    "BatchNorm1d": (nn.BatchNorm1d, _norm_spec),
    "BatchNorm2d": (nn.BatchNorm2d, _norm_spec),
    "Dropout": (nn.Dropout, lambda m: {"p": m.p}),
    "MaxPool1d": (nn.MaxPool1d, _pool_spec),
    "MaxPool2d": (nn.MaxPool2d, _pool_spec),
    "AvgPool1d": (nn.AvgPool1d, _pool_spec),
    "AvgPool2d": (nn.AvgPool2d, _pool_spec),
    "AdaptiveAvgPool2d": (nn.AdaptiveAvgPool2d, lambda m: {"output_size": m.output_size}),
    "Flatten": (nn.Flatten, lambda m: {"start_dim": m.start_dim, "end_dim": m.end_dim}),
    "Identity": (nn.Identity, lambda m: {}),
}


def layer_spec(layer: nn.Module) -> dict[str, Any]:
    """JSON description of one layer; raises for a layer type the format does not know."""
    if isinstance(layer, NeuronLayer) or type(layer) in STATELESS_LAYERS.values():
        return layer.spec()
    name = type(layer).__name__
    if name not in TORCH_LAYERS or type(layer) is not TORCH_LAYERS[name][0]:
        raise SpikeforgeError(f"layer {name} cannot be saved: supported layers are {', '.join(KNOWN)}")
    return {"type": name, **TORCH_LAYERS[name][1](layer)}


KNOWN = (*TORCH_LAYERS, *STATELESS_LAYERS, *NEURON_TYPES)


def network_spec(model: Sequential | GraphNetwork) -> dict[str, Any]:
    """Describe ``model``: ``{"layers": [...], "input_shape": [...]}`` for a chain, ``{"nodes":
    [{"name", "layer", "inputs"}, ...], "output": name, "input_shape": [...]}`` for a graph."""
    shape = None if model.input_shape is None else list(model.input_shape)
    if isinstance(model, GraphNetwork):
        return {"nodes": [{"name": n.name, "layer": layer_spec(n.layer), "inputs": list(n.inputs)}
                          for n in model.nodes()], "output": model.output, "input_shape": shape}
    return {"layers": [layer_spec(layer) for layer in model], "input_shape": shape}


def build_layer(spec: dict[str, Any]) -> nn.Module:
    """The layer a spec describes; its type is looked up in fixed tables (never a name from the file)."""
    kwargs = dict(spec)
    kind = kwargs.pop("type", None)
    if kind in NEURON_TYPES:
        return NEURON_TYPES[kind](**kwargs)
    if kind in TORCH_LAYERS:
        return TORCH_LAYERS[kind][0](**kwargs)
    if kind in STATELESS_LAYERS:
        return STATELESS_LAYERS[kind](**kwargs)
    raise SpikeforgeError(f"unknown layer type {kind!r} in network spec; known: {', '.join(KNOWN)}")


def _build_checked(spec: dict[str, Any], where: str, source: str) -> nn.Module:
    """:func:`build_layer` of a spec that passed :func:`snn.network_schema.check_layer`; a value the
    constructor still refuses (a NaN threshold, an unknown reset) is one error naming the layer."""
    try:
        return build_layer(spec)
    except (SpikeforgeError, TypeError, ValueError, RuntimeError) as error:
        raise SpikeforgeError(f"{source}: {where} ({spec.get('type')}): {error}; {FIX}") from error


def build_network(spec: dict[str, Any], source: str = "network spec") -> Sequential | GraphNetwork:
    """Rebuild a network from :func:`network_spec` output (weights not included).

    The spec is checked first (:func:`snn.network_schema.check_network`: field types, memory,
    shapes); ``source`` (the file) starts every error message.
    """
    check_network(spec, source)
    if "nodes" in spec:
        return _build_graph(spec, source)
    layers = [_build_checked(layer, f"layer {k}", source) for k, layer in enumerate(spec["layers"])]
    return Sequential(*layers, input_shape=spec.get("input_shape"))


def _build_graph(spec: dict[str, Any], source: str) -> GraphNetwork:
    nodes = [Node(entry["name"], _build_checked(entry["layer"], f"node {entry['name']!r}", source),
                  tuple(entry["inputs"])) for entry in spec["nodes"]]
    try:
        return GraphNetwork(nodes, spec["output"], spec.get("input_shape"))
    except SpikeforgeError as error:
        raise SpikeforgeError(f"{source}: {error}; {FIX}") from error
