"""Trace an ANN with torch.fx and bring its graph to a convertible normal form.

The normal form has only these operations:

- weighted layers: ``nn.Linear``, ``nn.Conv1d``, ``nn.Conv2d`` (BatchNorm folded into them:
  ``W' = W * gamma / sigma``, ``b' = (b - mu) * gamma / sigma + beta``, sigma = sqrt(var + eps));
- :class:`ActivationSite` for every ReLU / ReLU6 / clamp(min=0) / hardtanh(0, c) / QCFS,
  functional or module (these become spiking neurons);
- pooling (``AvgPool``, ``AdaptiveAvgPool``, ``MaxPool``), ``Flatten`` / ``view`` /
  ``reshape``, residual additions and concatenation, BatchNorm that follows no weighted layer
  (an affine map in eval mode);
- Dropout is removed (identity at inference).

Anything else (Sigmoid, GELU, LayerNorm, Softmax, ...) is refused with an error that names
the node and says what to use instead.
"""

from __future__ import annotations

import copy
import operator
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from converters.qcfs import QCFS
from snn.errors import SpikeforgeError


class ActivationSite(nn.Module):
    """A ReLU-like activation ``clamp(x, 0, upper)`` (or a QCFS) marked for conversion.

    ``overwrite_input`` (set only by calibration, for an input no other node reads) clamps in place.
    """

    def __init__(self, upper: float | None = None, qcfs: QCFS | None = None) -> None:
        super().__init__()
        self.upper = upper
        self.qcfs = qcfs
        self.overwrite_input = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.qcfs is not None:
            return self.qcfs(x)
        if self.overwrite_input:
            return x.clamp_(min=0, max=self.upper)
        return torch.clamp(x, min=0, max=self.upper)


WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)
POOLS = (nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.MaxPool1d, nn.MaxPool2d)
PASS_MODULES = (*WEIGHTED, *NORMS, *POOLS, nn.Flatten, nn.Identity, ActivationSite)

PASS_FUNCTIONS = {
    operator.add, torch.add, torch.cat, torch.concat, torch.flatten, operator.getitem, getattr,
    F.avg_pool1d, F.avg_pool2d, F.adaptive_avg_pool1d, F.adaptive_avg_pool2d,
}
PASS_METHODS = {"view", "reshape", "flatten", "size", "contiguous", "add", "__add__", "mean"}
ACTIVATION_FUNCTIONS = {F.relu, torch.relu, F.relu6, torch.clamp, torch.clip, F.hardtanh}
ACTIVATION_METHODS = {"relu", "relu_", "clamp", "clamp_", "clip"}
MAXPOOL_FUNCTIONS = {F.max_pool1d: nn.MaxPool1d, F.max_pool2d: nn.MaxPool2d}

ADVICE = {
    "Sigmoid": "use ReLU or a clamp (or QCFS)", "Tanh": "use ReLU or a clamp (or QCFS)",
    "GELU": "use ReLU (or QCFS)", "SiLU": "use ReLU (or QCFS)", "ELU": "use ReLU (or QCFS)",
    "LeakyReLU": "use ReLU (or QCFS)", "Softmax": "remove it: the SNN output is read as accumulated membrane, "
    "and argmax is unchanged", "LayerNorm": "use BatchNorm, which folds into the preceding layer",
    "GroupNorm": "use BatchNorm, which folds into the preceding layer",
}


def node_label(node: fx.Node, gm: fx.GraphModule) -> str:
    if node.op == "call_module":
        return f"node '{node.target}' ({type(gm.get_submodule(node.target)).__name__})"  # module path
    target = getattr(node.target, "__name__", str(node.target))
    return f"node '{node.name}' ({target})"


def _refuse(node: fx.Node, gm: fx.GraphModule, kind: str) -> SpikeforgeError:
    advice = ADVICE.get(kind, "use Linear/Conv, BatchNorm, ReLU/ReLU6/clamp/QCFS, pooling, Flatten, "
                               "additions or concatenation")
    return SpikeforgeError(f"{node_label(node, gm)} has no spiking equivalent; {advice}")


class _Tracer(fx.Tracer):
    """torch.fx tracer that keeps QCFS whole (a leaf), like the built-in torch layers."""

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        return isinstance(module, QCFS) or super().is_leaf_module(module, qualified_name)


def trace(model: nn.Module) -> fx.GraphModule:
    """Symbolically trace ``model``; an untraceable model is a clear error."""
    try:
        return fx.GraphModule(model, _Tracer().trace(model), type(model).__name__)
    except Exception as error:  # noqa: BLE001 - fx raises many kinds for data-dependent control flow
        raise SpikeforgeError(f"cannot trace {type(model).__name__} with torch.fx ({type(error).__name__}: "
                              f"{str(error).splitlines()[0] if str(error) else ''}); remove data-dependent "
                              "control flow (if/for on tensor values) from forward") from error


def _activation_upper(node: fx.Node, gm: fx.GraphModule) -> float | None:
    """Upper clip of a ReLU-like node, or raise if it is not ReLU-like (e.g. clamp(min=-1))."""
    args, kwargs = node.args[1:], dict(node.kwargs)
    target = node.target
    if target in (F.relu6,):
        return 6.0
    if target in (F.hardtanh,):
        low = args[0] if args else kwargs.get("min_val", -1.0)
        high = args[1] if len(args) > 1 else kwargs.get("max_val", 1.0)
    elif target in (F.relu, torch.relu, "relu", "relu_"):
        return None
    else:  # clamp / clip
        low = args[0] if args else kwargs.get("min")
        high = args[1] if len(args) > 1 else kwargs.get("max")
    if low != 0 or not (high is None or isinstance(high, (int, float))):
        raise SpikeforgeError(f"{node_label(node, gm)} clamps to [{low}, {high}]; only clamp(min=0, max=c) "
                              "(a ReLU with a ceiling) has a spiking equivalent")
    return None if high is None else float(high)


def _replace_with_module(gm: fx.GraphModule, node: fx.Node, module: nn.Module, name: str) -> None:
    gm.add_submodule(name, module)
    with gm.graph.inserting_after(node):
        new = gm.graph.call_module(name, (node.args[0],))
    node.replace_all_uses_with(new)
    gm.graph.erase_node(node)


def fold_batchnorm(weighted: nn.Module, norm: nn.Module, in_place: bool = False) -> nn.Module:
    """Return a copy of ``weighted`` with eval-mode BatchNorm ``norm`` folded in (``in_place``: ``weighted``
    itself, its weights replaced, which spares a copy of them when the module is already a private copy)."""
    # a copy without copying the weight and bias, which are replaced below
    keep = {id(p): p for p in (weighted.weight, weighted.bias) if p is not None}
    folded = weighted if in_place else copy.deepcopy(weighted, memo=keep)
    scale = norm.weight.detach() / torch.sqrt(norm.running_var + norm.eps) if norm.affine else \
        1 / torch.sqrt(norm.running_var + norm.eps)
    shift = norm.bias.detach() if norm.affine else torch.zeros_like(norm.running_mean)
    shape = (-1,) + (1,) * (weighted.weight.dim() - 1)
    bias = weighted.bias.detach() if weighted.bias is not None else torch.zeros_like(norm.running_mean)
    folded.weight = nn.Parameter(weighted.weight.detach() * scale.reshape(shape))
    folded.bias = nn.Parameter((bias - norm.running_mean) * scale + shift)
    return folded


def normalize(model: nn.Module, in_place: bool = False) -> fx.GraphModule:
    """Trace ``model`` (in eval mode) and rewrite it to the normal form described above.

    The graph module shares ``model``'s layers except those BatchNorm is folded into, which are copies;
    with ``in_place`` (for a caller that passes its own copy of the model) BatchNorm is folded into
    ``model``'s layers themselves, so the weights exist once.
    """
    model = model.eval()
    gm = trace(model)
    counter = 0
    for node in list(gm.graph.nodes):
        if node.op == "call_module":
            module = gm.get_submodule(node.target)
            if isinstance(module, nn.Dropout | nn.Dropout1d | nn.Dropout2d):
                node.replace_all_uses_with(node.args[0])
                gm.graph.erase_node(node)
            elif isinstance(module, (nn.ReLU, nn.ReLU6, nn.Hardtanh, QCFS)):
                if isinstance(module, nn.Hardtanh) and module.min_val != 0:
                    raise SpikeforgeError(f"{node_label(node, gm)} clamps below at {module.min_val}; only a "
                                          "lower bound of 0 has a spiking equivalent")
                upper = 6.0 if isinstance(module, nn.ReLU6) else (
                    module.max_val if isinstance(module, nn.Hardtanh) else None)
                site = ActivationSite(upper, module if isinstance(module, QCFS) else None)
                _replace_with_module(gm, node, site, f"act_{counter}")
                counter += 1
            elif isinstance(module, NORMS) and node.args[0].op == "call_module" \
                    and isinstance(gm.get_submodule(node.args[0].target), WEIGHTED) \
                    and len(node.args[0].users) == 1:
                parent = node.args[0]
                gm.add_submodule(parent.target, fold_batchnorm(gm.get_submodule(parent.target), module, in_place))
                node.replace_all_uses_with(parent)
                gm.graph.erase_node(node)
            elif not isinstance(module, PASS_MODULES):
                raise _refuse(node, gm, type(module).__name__)
        elif node.op == "call_function":
            if node.target in ACTIVATION_FUNCTIONS:
                _replace_with_module(gm, node, ActivationSite(_activation_upper(node, gm)), f"act_{counter}")
                counter += 1
            elif node.target in MAXPOOL_FUNCTIONS:
                pool = MAXPOOL_FUNCTIONS[node.target](*node.args[1:], **node.kwargs)
                _replace_with_module(gm, node, pool, f"maxpool_{counter}")
                counter += 1
            elif node.target is F.dropout:
                node.replace_all_uses_with(node.args[0])
                gm.graph.erase_node(node)
            elif node.target not in PASS_FUNCTIONS:
                raise _refuse(node, gm, getattr(node.target, "__name__", str(node.target)))
        elif node.op == "call_method":
            if node.target in ACTIVATION_METHODS:
                _replace_with_module(gm, node, ActivationSite(_activation_upper(node, gm)), f"act_{counter}")
                counter += 1
            elif node.target not in PASS_METHODS:
                raise _refuse(node, gm, str(node.target))
    gm.graph.eliminate_dead_code()
    gm.graph.lint()
    gm.delete_all_unused_submodules()
    gm.recompile()
    return gm


def activation_sites(gm: fx.GraphModule) -> dict[str, ActivationSite]:
    return {name: m for name, m in gm.named_modules() if isinstance(m, ActivationSite)}


def describe(gm: fx.GraphModule) -> list[dict[str, Any]]:
    """One line per node of the normal form (for reports and debugging)."""
    rows = []
    for node in gm.graph.nodes:
        kind = type(gm.get_submodule(node.target)).__name__ if node.op == "call_module" else str(node.target)
        rows.append({"node": node.name, "op": node.op, "kind": kind})
    return rows
