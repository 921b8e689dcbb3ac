"""Continuous-time Brian2 mode (method="exact"): firing rates converge as dt -> 0.

Claim tested (tolerances measured with margin): for dt = step / 20 the firing rates of
Brian2's exact ODE integration and of the discrete contract rescaled to dt
(beta' = exp(-dt/tau), currents scaled by dt/step) agree within 3 Hz + 3 % per neuron, the
mean gap shrinks as dt does, and first-layer LIF rates are within 2 % of the textbook
constant-current rate 1 / (tau ln(J tau / (J tau - theta))).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from hardware.brian2.continuous import graph_to_torch, rescale_graph, run_continuous, time_constant
from hardware.graph import network_graph
from snn import encoders
from snn.errors import SpikeforgeError
from snn.network import Sequential
from snn.neurons import ALIF, LIF, CubaLIF
from snn.recording import Recorder

STEP = 1e-3
DURATION = 0.3


def _net() -> Sequential:
    torch.manual_seed(0)
    net = Sequential(nn.Linear(8, 12), LIF(beta=0.95, reset="subtract"), nn.Linear(12, 6),
                     CubaLIF(alpha=0.8, beta=0.9, reset="zero"), input_shape=(8,)).eval()
    with torch.no_grad():
        net[0].weight.uniform_(0, 0.15)
        net[0].bias.uniform_(0, 0.02)
        net[2].weight.uniform_(-0.02, 0.06)
        net[2].bias.zero_()
    return net


def _discrete_rates(graph, values: np.ndarray, dt: float) -> list[np.ndarray]:
    model = graph_to_torch(rescale_graph(graph, dt / STEP))
    with torch.no_grad(), Recorder(model, membrane=False) as rec:
        model(encoders.direct(torch.from_numpy(values), int(round(DURATION / dt))))
    return [s.sum(0).numpy() / DURATION for s in rec.spikes.values()]


def test_time_constant_mapping() -> None:
    assert time_constant(math.exp(-0.5), STEP) == pytest.approx(2e-3)
    assert time_constant(1.0, STEP) is None


def test_continuous_rates_converge_as_dt_shrinks() -> None:
    net = _net()
    graph = network_graph(net)
    values = torch.rand(3, 8, generator=torch.Generator().manual_seed(4)).double().numpy()
    gaps = []
    for dt in (STEP / 2, STEP / 20):
        brian = list(run_continuous(graph, values, DURATION, dt).rates().values())
        discrete = _discrete_rates(graph, values, dt)
        assert all(r.sum() > 0 for r in brian), "every layer must fire for the comparison to mean anything"
        gaps.append(np.mean([np.abs(b - d).mean() for b, d in zip(brian, discrete)]))
    for b, d in zip(brian, discrete):
        assert np.all(np.abs(b - d) <= 3.0 + 0.03 * d)
    assert gaps[1] < gaps[0]
    # layer 1 against the closed-form LIF rate with constant current J = (W a + b) / step
    weight, bias = net[0].weight.detach().double().numpy(), net[0].bias.detach().double().numpy()
    tau = time_constant(0.95, STEP)
    drive = (values @ weight.T + bias) / STEP * tau
    with np.errstate(divide="ignore", invalid="ignore"):
        analytic = np.where(drive > 1.0, 1.0 / (tau * np.log(drive / (drive - 1.0))), 0.0)
    np.testing.assert_allclose(brian[0], analytic, rtol=0.02, atol=1.0 / DURATION)


def test_continuous_mode_rejects_alif_and_bad_dt() -> None:
    graph = network_graph(Sequential(nn.Linear(4, 3), ALIF(), input_shape=(4,)))
    with pytest.raises(SpikeforgeError, match="ALIF"):
        run_continuous(graph, np.ones((1, 4)), 0.01, 1e-4)
    graph = network_graph(Sequential(nn.Linear(4, 3), LIF(), input_shape=(4,)))
    with pytest.raises(SpikeforgeError, match="dt < duration"):
        run_continuous(graph, np.ones((1, 4)), 0.01, 0.02)
