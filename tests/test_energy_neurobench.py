"""Our synaptic-operation counts equal NeuroBench's (``neurobench`` 2.3, dev extra) on the same model and data.

NeuroBench's ``SynapticOperations`` hooks every Linear/Conv, counts one AC per nonzero input
per nonzero weight when the input holds only 0/1/-1 (spikes) and an effective MAC otherwise,
and divides by the number of samples; ``ActivationSparsity`` is zeros over all outputs of
the activation layers. Both run here through NeuroBench's own ``Benchmark``.
"""

from __future__ import annotations

import pytest
import torch
from neurobench.benchmarks import Benchmark
from neurobench.metrics.workload import ActivationSparsity, SynapticOperations
from neurobench.models import TorchModel
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from hardware.energy.counting import OperationCounter
from snn.network import Sequential
from snn.neurons import LIF, Integrator

STEPS = 5


class BatchFirst(nn.Module):
    """NeuroBench feeds [B, T, ...]; our networks are time-major [T, B, ...]."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.transpose(0, 1)).sum(0)


def _prune(layer: nn.Module, seed: int) -> nn.Module:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        layer.weight[torch.rand(layer.weight.shape, generator=generator) < 0.2] = 0
    return layer


def _snn() -> Sequential:
    torch.manual_seed(0)
    layers = [_prune(nn.Conv2d(1, 6, 3, stride=2, padding=1), 1), LIF(beta=0.9, theta=0.2),
              _prune(nn.Conv2d(6, 8, 3, padding=1, groups=2), 2), LIF(beta=0.9, theta=0.2), nn.Flatten(),
              _prune(nn.Linear(8 * 4 * 4, 16), 3), LIF(theta=0.2), nn.Linear(16, 10), Integrator()]
    return Sequential(*layers, input_shape=(1, 8, 8)).eval()


def _data(encoding: str) -> TensorDataset:
    x = torch.rand(12, 1, 8, 8, generator=torch.Generator().manual_seed(4))
    if encoding == "rate":
        seq = (torch.rand(12, STEPS, 1, 8, 8, generator=torch.Generator().manual_seed(5)) < x.unsqueeze(1)).float()
    else:
        seq = x.unsqueeze(1).expand(12, STEPS, 1, 8, 8).contiguous()
    return TensorDataset(seq, torch.zeros(12, dtype=torch.long))


def _neurobench(net: nn.Module, dataset: TensorDataset) -> dict:
    bench = Benchmark(TorchModel(net), DataLoader(dataset, batch_size=4), [], [],
                      [[], [SynapticOperations, ActivationSparsity]])
    return bench.run(quiet=True)


def _ours(model: nn.Module, dataset: TensorDataset, kind: str, time_major: bool):
    with torch.no_grad(), OperationCounter(model, kind) as counter:
        for (x, _) in DataLoader(dataset, batch_size=4):
            model(x.transpose(0, 1) if time_major else x)
    return counter.counts().per_inference()


@pytest.mark.parametrize("encoding", ["direct", "rate"])
def test_snn_synaptic_operations_equal_neurobench(encoding):
    dataset = _data(encoding)
    model = _snn()
    theirs = _neurobench(BatchFirst(model), dataset)["SynapticOperations"]
    ours = _ours(model, dataset, "snn", time_major=True)
    assert ours.total("synaptic_ops") > 0
    assert ours.total("synaptic_ops") == pytest.approx(theirs["Effective_ACs"], rel=1e-9)
    assert ours.total("effective_macs") == pytest.approx(theirs["Effective_MACs"], rel=1e-9)
    assert ours.total("dense_macs") == pytest.approx(theirs["Dense"], rel=1e-9)
    if encoding == "direct":
        assert ours.layers[0].effective_macs > 0  # the analog first layer is a MAC layer for both


def test_ann_macs_and_activation_sparsity_equal_neurobench():
    torch.manual_seed(1)
    ann = nn.Sequential(_prune(nn.Conv2d(1, 6, 3, stride=2, padding=1), 1), nn.ReLU(),
                        nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 16), nn.ReLU(),
                        nn.Linear(16, 10)).eval()
    x = torch.rand(12, 1, 8, 8, generator=torch.Generator().manual_seed(2)) - 0.3
    dataset = TensorDataset(x, torch.zeros(12, dtype=torch.long))
    theirs = _neurobench(ann, dataset)
    ours = _ours(ann, dataset, "ann", time_major=False)
    assert ours.total("effective_macs") == pytest.approx(theirs["SynapticOperations"]["Effective_MACs"], rel=1e-9)
    assert ours.total("dense_macs") == pytest.approx(theirs["SynapticOperations"]["Dense"], rel=1e-9)
    assert theirs["SynapticOperations"]["Effective_ACs"] == 0 and ours.total("synaptic_ops") == 0
    assert ours.activation_sparsity == pytest.approx(theirs["ActivationSparsity"], rel=1e-9)
