"""Event-driven batch-1 inference against the dense per-step simulation of the same network."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from snn.errors import SpikeforgeError
from snn.event_driven import EventDrivenNetwork, dense_step_simulation
from snn.network import Sequential
from snn.neurons import ALIF, LIF, CubaLIF, Integrator


def _model(neuron, readout) -> Sequential:
    torch.manual_seed(0)
    model = Sequential(nn.Flatten(), nn.Linear(64, 40), neuron, nn.Linear(40, 5), readout).double()
    with torch.no_grad():
        model[1].weight.mul_(6)
        model[3].weight.mul_(4)
    return model


@pytest.mark.parametrize("neuron", [LIF(), CubaLIF(reset="zero"), ALIF()], ids=["lif", "cuba", "alif"])
@pytest.mark.parametrize("readout", ["integrator", "lif"])
def test_event_driven_equals_dense(neuron, readout: str) -> None:
    model = _model(neuron, Integrator(beta=0.9) if readout == "integrator" else LIF())
    frames = (torch.rand(40, 64, generator=torch.Generator().manual_seed(1)) < 0.1).double()
    net = EventDrivenNetwork.from_sequential(model, dtype=torch.float64)
    ours = net.run(frames)
    dense = dense_step_simulation(model, frames)
    folded = model(frames[:, None])[:, 0].detach()
    if readout == "lif":
        assert torch.equal(ours, dense) and torch.equal(ours, folded)
        assert ours.sum() > 0
    else:
        torch.testing.assert_close(ours, dense, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(ours, folded, rtol=1e-12, atol=1e-12)
    hidden = EventDrivenNetwork.from_sequential(model[:3], dtype=torch.float64).run(frames)
    assert 0 < hidden.mean() < 1, "the hidden layer must be active but sparse"


def test_streaming_in_chunks_equals_one_run() -> None:
    model = _model(LIF(), LIF())
    frames = (torch.rand(30, 64, generator=torch.Generator().manual_seed(2)) < 0.1).double()
    net = EventDrivenNetwork.from_sequential(model, dtype=torch.float64)
    whole = net.run(frames)
    net.reset()
    parts = [net.run(frames[:10]), torch.stack([net.step(f) for f in frames[10:15]]), net.run(frames[15:])]
    assert torch.equal(torch.cat(parts), whole)


def test_unsupported_layers_are_named() -> None:
    with pytest.raises(SpikeforgeError, match="Conv2d"):
        EventDrivenNetwork.from_sequential(Sequential(nn.Conv2d(1, 2, 3), LIF()))
    with pytest.raises(SpikeforgeError, match="recurrent"):
        EventDrivenNetwork.from_sequential(Sequential(nn.Linear(4, 4), LIF(recurrent_features=4)))
