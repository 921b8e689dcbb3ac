"""A spiking network as a graph: named nodes, each a layer that reads the outputs of earlier nodes.

What :class:`~snn.network.Sequential` is for a chain, :class:`GraphNetwork` is for residual
additions and concatenations: the same time-major contract (``forward([T, B, ...]) -> [T, B,
...]``), stateless layers on the time-folded tensor ``[T*B, ...]``, neuron layers (and layers
marked ``time_major``, such as :class:`snn.layers.SpikeMaxPool2d`) on ``[T, B, ...]``. The
network input is the node ``"input"``; ``output`` names the node whose values the network
returns. Merges (:class:`snn.layers.Add`, :class:`snn.layers.Concat`) take several inputs,
every other layer one.

Nodes may be given in any order; they run in a topological order (``graphlib``), and a cycle,
an edge from a node that does not exist, a merge with one input or a layer with several,
and (with ``input_shape``) shapes that do not fit are refused when the network is built, with
the node named.
"""

from __future__ import annotations

import graphlib
from typing import NamedTuple, Sequence

import torch
from torch import nn

from snn.errors import SpikeforgeError
from snn.layers import Add, Concat
from snn.network import Sequential
from snn.neurons import NeuronLayer
from snn.validation import check_time_major

INPUT = "input"
MERGES = (Add, Concat)


class Node(NamedTuple):
    """One node: its name, its layer and the nodes it reads (``"input"`` for the network input)."""

    name: str
    layer: nn.Module
    inputs: tuple[str, ...]


def time_major(layer: nn.Module) -> bool:
    """Whether ``layer`` runs on ``[T, B, ...]`` (neurons, spike max pooling) rather than ``[T*B, ...]``."""
    return isinstance(layer, NeuronLayer) or bool(getattr(layer, "time_major", False))


class GraphNetwork(nn.Module):
    """Time-major spiking network over a directed acyclic graph of layers (module docstring)."""

    def __init__(self, nodes: Sequence[Node | tuple[str, nn.Module, Sequence[str]]], output: str,
                 input_shape: Sequence[int] | None = None, check_shapes: bool = True) -> None:
        """``check_shapes=False`` skips the run of one zero sample that proves the layers fit ``input_shape``:
        only for a caller that vouches for the shapes (a graph traced from a module that ran on them)."""
        super().__init__()
        nodes = [Node(str(n[0]), n[1], tuple(str(i) for i in n[2])) for n in nodes]
        self.layers = nn.ModuleDict()
        self.inputs: dict[str, tuple[str, ...]] = {}
        for node in nodes:
            self._check_node(node)
            self.layers[node.name] = node.layer
            self.inputs[node.name] = node.inputs
        if output not in self.inputs:
            raise SpikeforgeError(f"the graph's output {output!r} is not one of its nodes")
        self.output = output
        self.order = _topological_order(self.inputs)
        self._last_reader = _last_readers(self.order, self.inputs, output)
        self.input_shape = None if input_shape is None else tuple(int(d) for d in input_shape)
        if self.input_shape is not None and check_shapes:
            self.check_shapes()

    def _check_node(self, node: Node) -> None:
        if node.name == INPUT or not node.name or "." in node.name:
            raise SpikeforgeError(f"node name {node.name!r} is not allowed (not empty, not {INPUT!r}, no '.')")
        if node.name in self.inputs:
            raise SpikeforgeError(f"two nodes are named {node.name!r}; node names must be unique")
        if not isinstance(node.layer, nn.Module):
            raise SpikeforgeError(f"node {node.name!r} holds {type(node.layer).__name__}, not a torch module")
        merge = isinstance(node.layer, MERGES)
        if merge and len(node.inputs) < 2:
            raise SpikeforgeError(f"node {node.name!r} ({type(node.layer).__name__}) merges inputs but reads "
                                  f"{len(node.inputs)}; give it two or more")
        if not merge and len(node.inputs) != 1:
            raise SpikeforgeError(f"node {node.name!r} ({type(node.layer).__name__}) reads {len(node.inputs)} "
                                  "inputs; only Add and Concat take several")

    def nodes(self) -> list[Node]:
        """The nodes in the order they run."""
        return [Node(name, self.layers[name], self.inputs[name]) for name in self.order]

    def neuron_layers(self) -> list[tuple[str, NeuronLayer]]:
        return [(name, self.layers[name]) for name in self.order if isinstance(self.layers[name], NeuronLayer)]

    def is_chain(self) -> bool:
        """One path from the input to the output: every node reads the one before it."""
        previous = INPUT
        for name in self.order:
            if self.inputs[name] != (previous,):
                return False
            previous = name
        return previous == self.output

    def as_sequential(self) -> Sequential:
        """The same layers as a :class:`~snn.network.Sequential` (eval mode kept); only for a chain."""
        if not self.is_chain():
            raise SpikeforgeError("the graph has more than one path (residual additions or concatenations); "
                                  "only a chain is a Sequential")
        return Sequential(*[self.layers[name] for name in self.order], input_shape=self.input_shape).train(
            self.training)

    def check_shapes(self) -> None:
        """Run one step of one zero sample through the graph; a layer that does not fit its input is
        refused with the node named."""
        try:
            with torch.no_grad():
                self.forward(torch.zeros(1, 1, *self.input_shape))
        except SpikeforgeError:
            raise
        except RuntimeError as error:
            raise SpikeforgeError(f"the graph does not run on its input shape {self.input_shape}: {error}") from error

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_time_major(x, None if self.input_shape is None else len(self.input_shape), name="network input")
        if self.input_shape is not None and tuple(x.shape[2:]) != self.input_shape:
            raise SpikeforgeError(f"network input has feature shape {tuple(x.shape[2:])}, "
                                  f"but the network expects {self.input_shape} after [T, B]")
        steps, batch = x.shape[:2]
        values = {INPUT: x}
        for name in self.order:
            layer, args = self.layers[name], [values[i] for i in self.inputs[name]]
            for source in set(self.inputs[name]):
                if self._last_reader[source] == name:  # free [T, B, ...] activations no later node reads
                    del values[source]
            try:
                if isinstance(layer, NeuronLayer):
                    values[name] = layer(args[0])[0]
                elif time_major(layer):
                    values[name] = layer(args[0])
                else:
                    folded = layer(*(a.reshape(steps * batch, *a.shape[2:]) for a in args))
                    values[name] = folded.reshape(steps, batch, *folded.shape[1:])
                    del folded
            except RuntimeError as error:
                shapes = ", ".join(str(tuple(a.shape[2:])) for a in args)
                raise SpikeforgeError(f"node {name!r} ({type(layer).__name__}) cannot run on its input "
                                      f"{shapes}: {error}") from error
            del args
        return values[self.output]


def _last_readers(order: Sequence[str], inputs: dict[str, tuple[str, ...]], output: str) -> dict[str, str | None]:
    """For every node (and the input), the last node in ``order`` that reads it; ``None`` for the output,
    which must outlive the pass. The forward pass drops a value once its last reader has it, so a deep
    residual network holds only the activations still to be read, not every node's ``[T, B, ...]``."""
    last: dict[str, str | None] = {INPUT: None, **{name: None for name in order}}
    for name in order:
        for source in inputs[name]:
            last[source] = name
    last[output] = None
    return last


def network_nodes(model: nn.Module) -> tuple[list[Node], str, tuple[int, ...] | None]:
    """``(nodes in running order, output node, input shape)`` of a Sequential (read as a chain whose
    nodes are its child names) or a GraphNetwork: the one view of a network every exporter walks."""
    if isinstance(model, GraphNetwork):
        return model.nodes(), model.output, model.input_shape
    if isinstance(model, Sequential):
        nodes, previous = [], INPUT
        for name, layer in model.named_children():
            nodes.append(Node(name, layer, (previous,)))
            previous = name
        return nodes, previous, model.input_shape
    raise SpikeforgeError(f"{type(model).__name__} is not a spikeforge network; build it as snn.Sequential or "
                          "snn.GraphNetwork")


def _topological_order(inputs: dict[str, tuple[str, ...]]) -> list[str]:
    for name, sources in inputs.items():
        for source in sources:
            if source != INPUT and source not in inputs:
                raise SpikeforgeError(f"node {name!r} reads {source!r}, which is not a node of the graph "
                                      f"(nodes: {', '.join(inputs)}; the network input is {INPUT!r})")
    try:
        order = list(graphlib.TopologicalSorter({n: [s for s in src if s != INPUT] for n, src in inputs.items()})
                     .static_order())
    except graphlib.CycleError as error:
        raise SpikeforgeError(f"the graph has a cycle: {' -> '.join(error.args[1])}; a spiking graph here is "
                              "feed-forward (recurrence lives inside a neuron layer: recurrent_features)") from error
    return order
