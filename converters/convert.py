"""ANN-to-SNN conversion: trace, fold, calibrate, and swap activations for IF neurons.

:func:`convert` turns a trained ``nn.Module`` (any torch.fx-traceable one, not only
``nn.Sequential``: residual additions and concatenations included) into a
:class:`ConvertedSNN`:

1. trace and normalise the graph (:mod:`converters.tracing`): BatchNorm folded into the
   preceding layer, Dropout removed, unsupported operations refused by name;
2. calibrate a threshold per activation from data (:mod:`converters.calibration`);
3. build the spiking network (:mod:`converters.assemble`): every activation an IF neuron
   (reset by subtraction, initial membrane at half threshold) followed by a Scale by its
   threshold (spikes of amplitude theta), every max pooling a spike gate, the output an
   Integrator (beta = 1).

The SNN is driven by direct input (the analog sample at every step); its output layer is
read as an accumulated, non-spiking membrane: the prediction after T steps is
``argmax sum_{t<T} y[t]`` (the ``membrane_last`` readout), whose mean over T approximates the
ANN's logits. The result is an ordinary spikeforge network: it trains, saves as a checkpoint
and runs on every backend like one built by hand.
"""

from __future__ import annotations

import copy
import sys
from typing import Iterable

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from converters.assemble import spiking_network
from converters.calibration import activation_thresholds
from converters.tracing import normalize
from snn import encoders
from snn.errors import SpikeforgeError
from snn.graph_network import GraphNetwork
from snn.network import Sequential
from snn.validation import check_timesteps


def convert(model: nn.Module, calibration: DataLoader, percentile: float = 99.9, channelwise: bool = False,
            v_init: float = 0.5, max_batches: int | None = None,
            device: torch.device | str = "cpu") -> Sequential | GraphNetwork:
    """Convert a trained ANN into a spikeforge network; ``model`` itself is not modified.

    ``percentile`` and ``channelwise`` choose the data-based normalisation; ``v_init`` is
    the initial membrane as a fraction of the threshold (0.5: half threshold). A chain comes
    back as :class:`~snn.network.Sequential`, a graph with residual additions or
    concatenations as :class:`~snn.graph_network.GraphNetwork` (:mod:`converters.assemble`).
    """
    if not 0 <= v_init < 1:
        raise SpikeforgeError(f"initial membrane fraction v_init must lie in [0, 1), got {v_init}")
    gm = normalize(copy.deepcopy(model).to(device), in_place=True)
    thresholds = activation_thresholds(gm, calibration, percentile, channelwise, max_batches, device)
    # the calibration left its first batch's shapes on gm's nodes: no further pass over the loader or the network
    return spiking_network(gm.cpu(), thresholds, v_init, take_modules=True).to(device)


@torch.no_grad()
def accuracy_by_timesteps(snn_model: nn.Module, loader: DataLoader, timesteps: Iterable[int],
                          device: torch.device | str = "cpu") -> dict[int, float]:
    """Accuracy at every T in ``timesteps`` from one simulation of max(timesteps) steps: the
    prediction at T is the argmax of the accumulated-membrane readout at step T - 1."""
    steps = sorted({check_timesteps(int(t)) for t in timesteps})
    if not steps:
        raise SpikeforgeError("give at least one number of timesteps")
    snn_model.eval().to(device)
    correct = {t: 0 for t in steps}
    total = 0
    batches = tqdm(loader, desc=f"SNN accuracy, T = {', '.join(map(str, steps))}", unit="batch", leave=False,
                   file=sys.stderr, disable=len(loader) < 2)
    for x, y in batches:
        x, y = x.to(device), y.to(device)
        accumulated = snn_model(encoders.direct(x, steps[-1]))  # the Integrator readout: sum of y
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
