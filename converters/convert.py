"""ANN-to-SNN conversion: trace, fold, calibrate, and swap activations for IF neurons.

:func:`convert` turns a trained ``nn.Module`` (any torch.fx-traceable one, not only
``nn.Sequential``: residual additions and concatenations included) into a
:class:`ConvertedSNN`:

1. trace and normalise the graph (:mod:`converters.tracing`): BatchNorm folded into the
   preceding layer, Dropout removed, unsupported operations refused by name;
2. calibrate a threshold per activation from data (:mod:`converters.calibration`);
3. replace every activation by an IF neuron (reset by subtraction, initial membrane at
   half threshold, spikes of amplitude theta) and every max pooling by spike gating
   (:mod:`converters.spiking`).

The SNN is driven by direct input (the analog sample at every step); its output layer is
read as an accumulated, non-spiking membrane: the prediction after T steps is
``argmax sum_{t<T} y[t]``, whose mean over T approximates the ANN's logits.
"""

from __future__ import annotations

import copy
from typing import Any, Iterable

import torch
from torch import fx, nn
from torch.utils.data import DataLoader

from converters.calibration import activation_thresholds
from converters.spiking import SpikingActivation, SpikingMaxPool, TimeAware
from converters.tracing import activation_sites, normalize
from snn import encoders
from snn.errors import SpikeforgeError
from snn.validation import check_finite, check_time_major, check_timesteps


class ConvertedSNN(nn.Module):
    """A converted network: ``forward([T, B, ...]) -> [T, B, ...]`` per-step output.

    Inside, the traced graph runs once on the time-folded ``[T*B, ...]`` tensor; the
    spiking modules unfold it to scan over T.
    """

    def __init__(self, graph: fx.GraphModule, options: dict[str, Any]) -> None:
        super().__init__()
        self.graph = graph
        self.options = dict(options)

    def time_aware(self) -> list[TimeAware]:
        return [m for m in self.graph.modules() if isinstance(m, TimeAware)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_time_major(x, name="SNN input")
        check_finite(x, "SNN input")
        steps, batch = x.shape[:2]
        for module in self.time_aware():
            module.steps = steps
        out = self.graph(x.reshape(steps * batch, *x.shape[2:]))
        return out.reshape(steps, batch, *out.shape[1:])

    def spiking_layers(self) -> dict[str, SpikingActivation]:
        return {name: m for name, m in self.graph.named_modules() if isinstance(m, SpikingActivation)}


def build_spiking_graph(gm: fx.GraphModule, thresholds: dict[str, torch.Tensor], v_init: float) -> fx.GraphModule:
    """Swap activation sites for IF neurons and max pools for spike gating, in place."""
    for name in activation_sites(gm):
        gm.add_submodule(name, SpikingActivation(thresholds[name], v_init))
    for name, module in list(gm.named_modules()):
        if isinstance(module, (nn.MaxPool1d, nn.MaxPool2d)):
            gm.add_submodule(name, SpikingMaxPool(module))
    gm.recompile()
    return gm


def convert(model: nn.Module, calibration: DataLoader, percentile: float = 99.9, channelwise: bool = False,
            v_init: float = 0.5, max_batches: int | None = None,
            device: torch.device | str = "cpu") -> ConvertedSNN:
    """Convert a trained ANN; ``model`` itself is not modified.

    ``percentile`` and ``channelwise`` choose the data-based normalisation; ``v_init`` is
    the initial membrane as a fraction of the threshold (0.5: half threshold).
    """
    if not 0 <= v_init < 1:
        raise SpikeforgeError(f"initial membrane fraction v_init must lie in [0, 1), got {v_init}")
    gm = normalize(copy.deepcopy(model).to(device))
    thresholds = activation_thresholds(gm, calibration, percentile, channelwise, max_batches, device)
    options = {"percentile": percentile, "channelwise": channelwise, "v_init": v_init}
    return ConvertedSNN(build_spiking_graph(gm, thresholds, v_init), options).eval()


@torch.no_grad()
def accuracy_by_timesteps(snn_model: ConvertedSNN, loader: DataLoader, timesteps: Iterable[int],
                          device: torch.device | str = "cpu") -> dict[int, float]:
    """Accuracy at every T in ``timesteps`` from one simulation of max(timesteps) steps."""
    steps = sorted({check_timesteps(int(t)) for t in timesteps})
    if not steps:
        raise SpikeforgeError("give at least one number of timesteps")
    snn_model.eval().to(device)
    correct = {t: 0 for t in steps}
    total = 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        accumulated = snn_model(encoders.direct(x, steps[-1])).cumsum(0)
        for t in steps:
            correct[t] += (accumulated[t - 1].argmax(-1) == y).sum().item()
        total += y.numel()
    if total == 0:
        raise SpikeforgeError("evaluation loader is empty")
    return {t: correct[t] / total for t in steps}


@torch.no_grad()
def ann_accuracy(model: nn.Module, loader: DataLoader, device: torch.device | str = "cpu") -> float:
    model.eval().to(device)
    correct = total = 0
    for x, y in loader:
        correct += (model(x.to(device)).argmax(-1) == y.to(device)).sum().item()
        total += y.numel()
    if total == 0:
        raise SpikeforgeError("evaluation loader is empty")
    return correct / total
