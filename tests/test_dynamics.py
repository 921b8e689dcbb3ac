"""Neuron dynamics against closed forms of the dynamics contract (docs/DESIGN.md)."""

from __future__ import annotations

import math

import pytest
import torch

from snn import functional
from snn.errors import SpikeforgeError
from snn.neurons import ALIF, IF, LIF, CubaLIF, Integrator


def constant(value: float, steps: int, neurons: int = 1) -> torch.Tensor:
    return torch.full((steps, 1, neurons), value, dtype=torch.float64)


@pytest.mark.parametrize("c", [0.375, 0.25, 0.6875])  # dyadic, so the float arithmetic is exact
def test_if_subtract_fires_at_predicted_rate(c: float) -> None:
    steps, theta = 64, 1.0
    spikes, _ = IF(theta=theta).double()(constant(c, steps))
    counts = spikes[:, 0, 0].cumsum(0)
    for t in range(1, steps + 1):
        # After t steps the integral is t*c; strict '>' fires one fewer spike on exact multiples.
        assert counts[t - 1].item() == math.ceil(t * c / theta) - 1
    assert abs(counts[-1].item() / steps - c / theta) <= 1 / steps


@pytest.mark.parametrize("c", [0.3, 0.45, 0.8])
def test_if_zero_reset_fires_every_k_steps(c: float) -> None:
    steps, theta = 60, 1.0
    spikes, _ = IF(theta=theta, reset="zero").double()(constant(c, steps))
    period = math.floor(theta / c) + 1  # smallest k with k*c > theta
    times = spikes[:, 0, 0].nonzero().flatten().tolist()
    assert times == list(range(period - 1, steps, period))


def test_strictly_greater_threshold() -> None:
    spikes, state = IF(theta=1.0).double()(constant(0.5, 2))
    assert spikes.sum().item() == 0  # v reaches exactly theta at t=1: no spike
    assert state.v.item() == 1.0


@pytest.mark.parametrize("beta", [0.5, 0.9, 0.99])
def test_lif_free_decay_follows_beta_power(beta: float) -> None:
    steps, v0 = 20, 0.8
    lif = LIF(beta=beta, theta=10.0).double()
    lif.record_membrane = True
    start = functional.CubaState(torch.zeros(1, 1, dtype=torch.float64), torch.full((1, 1), v0, dtype=torch.float64))
    lif(constant(0.0, steps), start)
    beta = lif.beta.item()  # the float32-stored value the layer really uses
    expected = torch.tensor([v0 * beta ** (t + 1) for t in range(steps)], dtype=torch.float64)
    torch.testing.assert_close(lif.membrane_trace[:, 0, 0], expected, rtol=1e-12, atol=1e-14)


def test_cuba_current_and_membrane_free_decay() -> None:
    alpha, beta, i0, steps = 0.6, 0.9, 0.5, 25
    cuba = CubaLIF(alpha=alpha, beta=beta, theta=10.0).double()
    cuba.record_membrane = True
    start = functional.CubaState(torch.full((1, 1), i0, dtype=torch.float64), torch.zeros(1, 1, dtype=torch.float64))
    _, final = cuba(constant(0.0, steps), start)
    alpha, beta = cuba.alpha.item(), cuba.beta.item()
    assert final.i.item() == pytest.approx(i0 * alpha ** steps, rel=1e-12)
    # v[t] = sum_{k=1}^{t+1} beta^(t+1-k) alpha^k i0 = i0 alpha (alpha^(t+1) - beta^(t+1)) / (alpha - beta)
    expected = torch.tensor([i0 * alpha * (alpha ** (t + 1) - beta ** (t + 1)) / (alpha - beta)
                             for t in range(steps)], dtype=torch.float64)
    torch.testing.assert_close(cuba.membrane_trace[:, 0, 0], expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("reset, residue", [("subtract", 0.25), ("zero", 0.0)])
def test_reset_modes(reset: str, residue: float) -> None:
    lif = LIF(beta=1.0, theta=1.0, reset=reset).double()
    spikes, state = lif(constant(1.25, 1))
    assert spikes.item() == 1.0
    assert state.v.item() == residue


def test_bias_is_added_every_step() -> None:
    spikes, state = IF(theta=100.0, bias=0.125).double()(constant(0.0, 8))
    assert state.v.item() == 1.0 and spikes.sum() == 0


def test_alif_threshold_adapts() -> None:
    steps = 200
    spikes, _ = ALIF(beta=1.0, rho=0.98, gamma=0.5, theta=1.0).double()(constant(0.4, steps))
    times = spikes[:, 0, 0].nonzero().flatten()
    intervals = times.diff()
    assert intervals[-1] > intervals[0]  # adaptation slows firing
    assert bool((intervals[1:] >= intervals[:-1] - 1).all())
    plain, _ = LIF(beta=1.0, theta=1.0).double()(constant(0.4, steps))
    same, _ = ALIF(beta=1.0, rho=0.98, gamma=0.0, theta=1.0).double()(constant(0.4, steps))
    assert torch.equal(plain, same)  # gamma = 0 is plain LIF


def test_recurrent_layer_matches_explicit_loop() -> None:
    torch.manual_seed(0)
    layer = LIF(beta=0.8, recurrent_features=5).double()
    x = torch.rand(30, 3, 5, dtype=torch.float64)
    spikes, _ = layer(x)
    w = layer.recurrent.weight.detach()
    v = torch.zeros(3, 5, dtype=torch.float64)
    s = torch.zeros(3, 5, dtype=torch.float64)
    for t in range(30):
        v = 0.8 * v + x[t] + s @ w.t()
        s = (v > 1.0).double()
        v = v - s
        assert torch.equal(spikes[t], s)


def test_state_continues_a_stream() -> None:
    torch.manual_seed(0)
    layer = CubaLIF(alpha=0.7, beta=0.9).double()
    x = torch.rand(40, 2, 6, dtype=torch.float64)
    whole, _ = layer(x)
    first, state = layer(x[:17])
    second, _ = layer(x[17:], state)
    assert torch.equal(whole, torch.cat([first, second]))


def test_each_call_starts_from_rest() -> None:
    layer = LIF(beta=0.9).double()
    x = torch.rand(10, 2, 4, dtype=torch.float64)
    assert torch.equal(layer(x)[0], layer(x)[0])  # no reset_net needed between batches


def test_integrator_sums_input() -> None:
    out, _ = Integrator().double()(constant(0.25, 4))
    assert out[:, 0, 0].tolist() == [0.25, 0.5, 0.75, 1.0]


def test_per_neuron_parameters_broadcast() -> None:
    layer = LIF(beta=torch.tensor([1.0, 0.5]), theta=torch.tensor([1.0, 2.0])).double()
    spikes, _ = layer(torch.full((4, 1, 2), 1.5, dtype=torch.float64))
    assert spikes[:, 0, 0].tolist() == [1, 1, 1, 1]
    assert spikes[:, 0, 1].tolist() == [0, 1, 0, 1]  # v: 1.5, 2.25 -> fire -> 0.25, 1.625, 2.3125


@pytest.mark.parametrize("bad", [
    lambda: LIF(beta=1.5), lambda: CubaLIF(alpha=-0.1), lambda: IF(theta=0.0), lambda: LIF(reset="hard"),
    lambda: LIF(surrogate="nope"), lambda: LIF(beta=float("nan")), lambda: ALIF(gamma=-1.0),
])
def test_bad_parameters_are_refused(bad) -> None:
    with pytest.raises(SpikeforgeError):
        bad()


def test_input_without_time_dimension_is_refused() -> None:
    with pytest.raises(SpikeforgeError, match="time-major"):
        LIF()(torch.rand(4, 10)[0])
    with pytest.raises(SpikeforgeError, match="T = 0"):
        LIF()(torch.rand(0, 2, 3))
