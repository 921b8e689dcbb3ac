from __future__ import annotations

import math

import pytest
import torch

from snn import encoders
from snn.encoders import DeltaEncoder, DirectEncoder, LatencyEncoder, RateEncoder
from snn.errors import SpikeforgeError


def first_spike_step(spikes: torch.Tensor) -> torch.Tensor:
    """Step of the first spike per input; T where an input never fires."""
    timesteps = spikes.shape[0]
    fired = spikes.any(0)
    return torch.where(fired, spikes.argmax(0), torch.full_like(fired, timesteps, dtype=torch.long))


# --- rate ---------------------------------------------------------------------------------

def test_rate_matches_probability_within_statistical_tolerance():
    x = torch.tensor([0.05, 0.25, 0.5, 0.75, 0.95])
    timesteps = 20_000
    spikes = encoders.rate(x, timesteps, generator=torch.Generator().manual_seed(0))
    assert spikes.shape == (timesteps, 5)
    # Std of a Bernoulli mean is sqrt(p(1-p)/T) <= 0.5/sqrt(20000) ~ 0.0035; 0.02 is > 5 sigma.
    assert torch.allclose(spikes.mean(0), x, atol=0.02)


def test_rate_gain_scales_and_clamps():
    x = torch.tensor([0.2, 0.8])
    spikes = encoders.rate(x, 20_000, gain=2.0, generator=torch.Generator().manual_seed(1))
    # gain * x = [0.4, 1.6] -> probabilities [0.4, 1.0]; same 5-sigma tolerance as above.
    assert abs(spikes[:, 0].mean().item() - 0.4) < 0.02
    assert spikes[:, 1].eq(1).all()


def test_rate_seeded_generator_is_reproducible():
    x = torch.rand(3, 7, generator=torch.Generator().manual_seed(5))
    a = encoders.rate(x, 32, generator=torch.Generator().manual_seed(42))
    b = encoders.rate(x, 32, generator=torch.Generator().manual_seed(42))
    c = encoders.rate(x, 32, generator=torch.Generator().manual_seed(43))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_rate_zero_never_fires_one_always_fires():
    x = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    spikes = encoders.rate(x, 500, generator=torch.Generator().manual_seed(0))
    assert spikes.shape == (500, 2, 2)
    assert torch.equal(spikes, x.expand(500, 2, 2))


def test_rate_keeps_dtype_and_module_matches_function():
    x = torch.rand(4, 3, dtype=torch.float64)
    out = RateEncoder(10, gain=0.5)(x, generator=torch.Generator().manual_seed(3))
    assert out.dtype == torch.float64
    assert torch.equal(out, encoders.rate(x, 10, 0.5, torch.Generator().manual_seed(3)))
    assert set(out.unique().tolist()) <= {0.0, 1.0}


# --- latency ------------------------------------------------------------------------------

@pytest.mark.parametrize("linear", [False, True])
def test_latency_at_most_one_spike_and_monotone(linear):
    x = torch.linspace(0, 1, 201).view(1, -1)
    spikes = encoders.latency(x, 25, linear=linear)
    assert spikes.shape == (25, 1, 201)
    assert spikes.sum(0).le(1).all()
    steps = first_spike_step(spikes).flatten()
    assert (steps[1:] <= steps[:-1]).all(), "a larger input must not fire later"


@pytest.mark.parametrize("linear", [False, True])
def test_latency_below_threshold_never_fires(linear):
    x = torch.tensor([-1.0, 0.0, 0.05, 0.1, 0.1001, 0.5])
    spikes = encoders.latency(x, 10, threshold=0.1, linear=linear)
    assert torch.equal(spikes.sum(0), torch.tensor([0.0, 0, 0, 0, 1, 1]))


def test_latency_linear_known_values():
    # t* = (T - 1)(1 - x) with T = 11: x = 0.2 -> 8, 0.5 -> 5, 0.75 -> 2.5 -> 2 (round half even), 1 -> 0.
    x = torch.tensor([0.0, 0.005, 0.2, 0.5, 0.75, 1.0])
    spikes = encoders.latency(x, 11, threshold=0.01, linear=True)
    assert first_spike_step(spikes).tolist() == [11, 11, 8, 5, 2, 0]


def test_latency_log_known_values_without_normalize():
    # t* = tau ln(x / (x - theta)) with tau = 5, theta = 0.25:
    # x = 0.5 -> 5 ln 2 = 3.47 -> 3; x = 1 -> 5 ln(4/3) = 1.44 -> 1; x = 0.26 -> 5 ln 26 = 16.3 -> clip 9.
    x = torch.tensor([0.5, 1.0, 0.26])
    spikes = encoders.latency(x, 10, tau=5.0, threshold=0.25, normalize=False)
    assert first_spike_step(spikes).tolist() == [3, 1, 9]


def test_latency_log_normalized_maps_largest_time_to_last_step():
    theta, eps, timesteps = 0.01, 1e-7, 20
    t_max = math.log((theta + eps) / eps)
    x = torch.tensor([theta + eps, 0.02, 1.0], dtype=torch.float64)
    expected = [timesteps - 1, round(math.log(0.02 / 0.01) * (timesteps - 1) / t_max), 0]
    spikes = LatencyEncoder(timesteps, threshold=theta)(x)
    assert spikes.dtype == torch.float64
    assert first_spike_step(spikes).tolist() == expected


# --- delta --------------------------------------------------------------------------------

DELTA_INPUT = torch.tensor([
    [0.0, 1.0],
    [0.125, 1.0],
    [0.5, 1.0],    # ch0: +0.5 over r = 0 -> ON, r = 0.5
    [0.625, 0.5],  # ch1: -0.5 under r = 1 -> OFF, r = 0.5
    [0.25, 0.5],   # ch0: exactly -0.25 from r = 0.5: strict comparison, no spike
    [0.0, 1.0],    # ch0: -0.5 -> OFF, r = 0; ch1: +0.5 over r = 0.5 -> ON, r = 1
    [-0.5, 1.0],   # ch0: -0.5 -> OFF, r = -0.5
]).view(7, 1, 2)


def test_delta_hand_worked_sequence():
    expected = torch.tensor([[0, 0], [0, 0], [1, 0], [0, -1], [0, 0], [-1, 1], [-1, 0]], dtype=torch.float32)
    out = encoders.delta(DELTA_INPUT, threshold=0.25)
    assert torch.equal(out, expected.view(7, 1, 2))


def test_delta_without_off_spikes_drops_negatives_but_moves_reference():
    # ch1's ON at t = 5 only exists because the dropped OFF at t = 3 still moved r to 0.5.
    expected = torch.tensor([[0, 0], [0, 0], [1, 0], [0, 0], [0, 0], [0, 1], [0, 0]], dtype=torch.float32)
    out = DeltaEncoder(threshold=0.25, off_spikes=False)(DELTA_INPUT)
    assert torch.equal(out, expected.view(7, 1, 2))


# --- direct -------------------------------------------------------------------------------

def test_direct_equals_input_at_every_step_and_is_a_view():
    x = torch.randn(2, 3, 4)
    out = DirectEncoder(5)(x)
    assert out.shape == (5, 2, 3, 4)
    for t in range(5):
        assert torch.equal(out[t], x)
    assert out.data_ptr() == x.data_ptr()


def test_direct_passes_gradients():
    x = torch.randn(3, 2, requires_grad=True)
    encoders.direct(x, 4).sum().backward()
    assert torch.equal(x.grad, torch.full((3, 2), 4.0))


# --- errors -------------------------------------------------------------------------------

@pytest.mark.parametrize("encode", [
    lambda x, t: encoders.rate(x, t),
    lambda x, t: encoders.latency(x, t),
    lambda x, t: encoders.direct(x, t),
])
def test_zero_or_negative_timesteps_rejected(encode):
    for timesteps in (0, -3):
        with pytest.raises(SpikeforgeError, match="timesteps must be at least 1"):
            encode(torch.rand(2, 3), timesteps)


@pytest.mark.parametrize("encode", [
    lambda x: encoders.rate(x, 4),
    lambda x: encoders.latency(x, 4),
    lambda x: encoders.direct(x, 4),
    lambda x: encoders.delta(x.view(2, 1, 3)),
])
def test_nan_input_rejected(encode):
    x = torch.tensor([[0.1, float("nan"), 0.3], [0.2, 0.2, 0.2]])
    with pytest.raises(SpikeforgeError, match="contains NaN; clean or clip"):
        encode(x)


def test_negative_rate_input_rejected_with_fix():
    with pytest.raises(SpikeforgeError, match=r"non-negative input.*got minimum -0.5.*rescale the data to \[0, 1\]"):
        encoders.rate(torch.tensor([0.2, -0.5]), 4)


def test_delta_rejects_non_time_major_input():
    with pytest.raises(SpikeforgeError, match=r"delta input of shape \(5, 3\) is not time-major.*\[T, B, \.\.\.\]"):
        encoders.delta(torch.rand(5, 3))


def test_bad_parameters_rejected():
    with pytest.raises(SpikeforgeError, match="threshold must be a finite number >= 0"):
        encoders.delta(torch.rand(3, 1, 2), threshold=-0.1)
    with pytest.raises(SpikeforgeError, match="gain must be a finite number >= 0"):
        RateEncoder(4, gain=-1.0)
    with pytest.raises(SpikeforgeError, match="needs threshold > 0.*linear=True"):
        encoders.latency(torch.rand(3), 4, threshold=0.0)


def test_rows_shows_the_image_one_row_at_a_time():
    x = torch.arange(2 * 1 * 3 * 4, dtype=torch.float32).reshape(2, 1, 3, 4)
    s = encoders.rows(x, 6)   # 3 rows, each for 2 steps
    assert s.shape == (6, 2, 4)
    for t in range(6):
        assert torch.equal(s[t], x[:, 0, t // 2, :])
    two_channels = torch.rand(1, 2, 3, 4)
    assert torch.equal(encoders.rows(two_channels, 3)[1, 0], two_channels[0, :, 1, :].reshape(-1))
    with pytest.raises(SpikeforgeError, match="multiple of 3"):
        encoders.rows(x, 4)
