"""Encoders: turn data into time-major spike (or current) trains ``[T, B, ...]``.

Each encoder is a pure function plus a thin :class:`torch.nn.Module` wrapper that holds
its parameters. With x the input and T the number of timesteps:

rate (Poisson / Bernoulli)::

    s[t] ~ Bernoulli(clamp(gain * x, 0, 1))        independently for every t

latency (time to first spike; at most one spike per input, stronger input fires earlier)::

    log:     t* = tau * ln(x / (x - theta))        for x > theta
    linear:  t* = (T - 1) * (1 - x)                for x > theta
    s[t] = 1 if t == clip(round(t*), 0, T - 1) and x > theta, else 0

delta (send-on-delta; the input is already a time series x[t])::

    r = x[0];  for t >= 1:
        x[t] - r > theta  ->  s[t] = +1, r = x[t]
        r - x[t] > theta  ->  s[t] = -1, r = x[t]

direct (current injection)::

    s[t] = x                                       for every t

rows (an image read as a sequence, one row after another: a temporal task)::

    s[t] = x[..., floor(t H / T), :]  flattened      x of shape [B, (C,) H, W], T a multiple of H

frames (a sample that is already a sequence, e.g. binned events ``[B, T, ...]``)::

    s[t] = x[:, t]                                 x of shape [B, T, ...], T the task's timesteps

Outputs follow the input's device and (floating) dtype; integer or boolean inputs give
the default float dtype.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from snn.errors import SpikeforgeError
from snn.validation import check_finite, check_time_major, check_timesteps

__all__ = [
    "rate", "latency", "delta", "direct", "rows", "frames",
    "RateEncoder", "LatencyEncoder", "DeltaEncoder", "DirectEncoder",
]


def _check_tensor(x: torch.Tensor, name: str = "input") -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise SpikeforgeError(f"{name} must be a torch.Tensor, got {type(x).__name__}; convert it with torch.as_tensor")
    return check_finite(x, name)


def _float_dtype(x: torch.Tensor) -> torch.dtype:
    return x.dtype if x.is_floating_point() else torch.get_default_dtype()


def _check_nonnegative(value: float, name: str) -> float:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
        raise SpikeforgeError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def _check_generator(generator: torch.Generator | None, x: torch.Tensor) -> None:
    if generator is not None and generator.device.type != x.device.type:
        raise SpikeforgeError(
            f"generator is on {generator.device.type} but the input is on {x.device.type}; "
            f"pass torch.Generator(device={x.device.type!r}) or generator=None"
        )


def rate(x: torch.Tensor, timesteps: int, gain: float = 1.0,
         generator: torch.Generator | None = None) -> torch.Tensor:
    """Rate (Bernoulli) coding: ``s[t] ~ Bernoulli(clamp(gain * x, 0, 1))``, i.i.d. over t.

    The expected firing rate of each input is ``clamp(gain * x, 0, 1)`` spikes per step.
    ``x`` must be non-negative; values with ``gain * x > 1`` fire at every step.
    Returns ``[T, *x.shape]`` of 0/1 values. ``generator`` (on ``x``'s device) makes the
    draw reproducible.
    """
    timesteps = check_timesteps(timesteps)
    x = _check_tensor(x)
    gain = _check_nonnegative(gain, "gain")
    if (x < 0).any():
        raise SpikeforgeError(
            f"rate coding needs non-negative input (a firing probability), got minimum {x.min().item():g}; "
            "rescale the data to [0, 1], e.g. (x - x.min()) / (x.max() - x.min())"
        )
    _check_generator(generator, x)
    p = (gain * x.to(_float_dtype(x))).clamp(0.0, 1.0)
    return torch.bernoulli(p.unsqueeze(0).expand(timesteps, *x.shape), generator=generator)


def _log_times(x: torch.Tensor, timesteps: int, tau: float, threshold: float, normalize: bool,
               epsilon: float) -> torch.Tensor:
    # Clamping to threshold + epsilon keeps ln finite; it only touches inputs that are
    # masked out (x <= threshold) or that fire at the latest time anyway.
    x = x.clamp(min=threshold + epsilon)
    t = tau * torch.log(x / (x - threshold))
    if normalize:
        t_max = tau * math.log((threshold + epsilon) / epsilon)
        t = t * (timesteps - 1) / t_max
    return t


def latency(x: torch.Tensor, timesteps: int, tau: float = 1.0, threshold: float = 0.01,
            linear: bool = False, normalize: bool = True, *, epsilon: float = 1e-7) -> torch.Tensor:
    """Latency (time-to-first-spike) coding: one spike at most per input, stronger fires earlier.

    Spike time t* of an input x > theta (``threshold``); inputs x <= theta never fire:

    - log (default, as snnTorch's ``spikegen.latency``): ``t* = tau * ln(x / (x - theta))``,
      the time an RC circuit charged by x needs to reach theta. t* grows without bound
      as x -> theta, so x is first clamped to at least ``theta + epsilon``; with
      ``normalize`` the largest possible time ``t_max = tau * ln((theta + epsilon) / epsilon)``
      maps to T - 1: ``t* <- t* * (T - 1) / t_max`` (tau then cancels).
    - linear: ``t* = (T - 1) * (1 - x)`` with ``normalize``, ``t* = tau * (1 - x)`` without.

    The spike lands at step ``clip(round(t*), 0, T - 1)``; without ``normalize``, times
    past the window therefore fire at T - 1. Returns ``[T, *x.shape]`` of 0/1 values.
    """
    timesteps = check_timesteps(timesteps)
    x = _check_tensor(x)
    threshold = _check_nonnegative(threshold, "threshold")
    if not (math.isfinite(tau) and tau > 0):
        raise SpikeforgeError(f"tau must be a positive number, got {tau!r}")
    if not (math.isfinite(epsilon) and epsilon > 0):
        raise SpikeforgeError(f"epsilon must be a small positive number, got {epsilon!r}")
    if not linear and threshold == 0:
        raise SpikeforgeError("log latency coding needs threshold > 0 (ln(x / (x - 0)) is 0 for every x); "
                              "pass a small threshold such as 0.01, or linear=True")
    x = x.to(_float_dtype(x))
    if linear:
        scale = timesteps - 1 if normalize else tau
        t_star = scale * (1.0 - x)
    else:
        t_star = _log_times(x, timesteps, tau, threshold, normalize, epsilon)
    step = t_star.round().clamp(0, timesteps - 1).long()
    fires = x > threshold
    time = torch.arange(timesteps, device=x.device).view(timesteps, *([1] * x.ndim))
    return ((time == step) & fires).to(x.dtype)


def delta(x: torch.Tensor, threshold: float = 0.1, off_spikes: bool = True) -> torch.Tensor:
    """Send-on-delta coding of a time series ``x`` of shape ``[T, B, ...]``.

    A reference r starts at x[0]; step 0 never spikes. For t = 1 .. T-1::

        x[t] - r > theta  ->  s[t] = +1 (ON),  r = x[t]
        r - x[t] > theta  ->  s[t] = -1 (OFF), r = x[t]
        otherwise         ->  s[t] =  0

    The comparison is strict, so a change of exactly theta does not spike. With
    ``off_spikes=False`` OFF events emit 0 instead of -1 (the reference still moves).
    Returns the shape of ``x`` with values in {-1, 0, 1} (or {0, 1}).
    """
    x = check_time_major(x, name="delta input")
    x = check_finite(x, "delta input").to(_float_dtype(x))
    threshold = _check_nonnegative(threshold, "threshold")
    out = torch.zeros_like(x)
    reference = x[0]
    for t in range(1, x.shape[0]):
        on = x[t] - reference > threshold
        off = reference - x[t] > threshold
        out[t] = on.to(x.dtype) - off.to(x.dtype) if off_spikes else on.to(x.dtype)
        reference = torch.where(on | off, x[t], reference)
    return out


def rows(x: torch.Tensor, timesteps: int) -> torch.Tensor:
    """Rows coding: the image's H rows are the steps, each shown for ``T / H`` steps, as current.

    ``x`` is ``[B, C, H, W]`` or ``[B, H, W]``; returns ``[T, B, C * W]``: step t holds row
    ``floor(t H / T)`` of every channel, flattened channel-major. The network then sees one
    row at a time and must remember the rest (a recurrent layer's task).
    """
    timesteps = check_timesteps(timesteps)
    x = _check_tensor(x)
    if x.dim() not in (3, 4):
        raise SpikeforgeError(f"the rows encoder reads images [B, C, H, W] or [B, H, W], got {tuple(x.shape)}")
    if x.dim() == 3:
        x = x.unsqueeze(1)
    batch, channels, height, width = x.shape
    if timesteps % height:
        raise SpikeforgeError(f"the rows encoder shows each of the image's {height} rows for T / {height} steps; "
                              f"--timesteps must be a multiple of {height}, got {timesteps}")
    if not x.is_floating_point():
        x = x.to(torch.get_default_dtype())
    sequence = x.permute(2, 0, 1, 3).reshape(height, batch, channels * width)
    return sequence.repeat_interleave(timesteps // height, dim=0)


def frames(x: torch.Tensor, timesteps: int) -> torch.Tensor:
    """Frames coding: a batch of sequences ``[B, T, ...]`` (binned event recordings) -> ``[T, B, ...]``.

    Step t is every sample's frame t, unchanged (event counts enter as current). The samples'
    T must equal ``timesteps``: the data fixes the number of steps (bin the events to T frames).
    Returns a transposed *view* of ``x`` (no copy); gradients flow back to ``x``.
    """
    timesteps = check_timesteps(timesteps)
    x = _check_tensor(x)
    if x.dim() < 3:
        raise SpikeforgeError(f"the frames encoder reads sequences [B, T, ...] (e.g. binned events [B, T, C, H, W] "
                              f"or [B, T, channels]), got {tuple(x.shape)}")
    if x.shape[1] != timesteps:
        raise SpikeforgeError(f"the data holds {x.shape[1]} time bins per sample but the task runs {timesteps} "
                              f"steps; bin the events to {timesteps} frames (--time-bins {timesteps}) or run "
                              f"--timesteps {x.shape[1]}")
    if not x.is_floating_point():
        x = x.to(torch.get_default_dtype())
    return x.transpose(0, 1)


def direct(x: torch.Tensor, timesteps: int) -> torch.Tensor:
    """Direct (current-injection) coding: ``s[t] = x`` for t = 0 .. T-1.

    Returns ``[T, *x.shape]`` as an expanded *view* of ``x`` (no copy, stride 0 over T),
    which is what stateless layers and neurons need. Writing into it in place writes
    into ``x`` at every step: call ``.contiguous()`` (or ``.clone()``) first if you must.
    Gradients flow back to ``x``.
    """
    timesteps = check_timesteps(timesteps)
    x = _check_tensor(x)
    if not x.is_floating_point():
        x = x.to(torch.get_default_dtype())
    return x.unsqueeze(0).expand(timesteps, *x.shape)


class RateEncoder(nn.Module):
    """Module form of :func:`rate`: ``s[t] ~ Bernoulli(clamp(gain * x, 0, 1))``."""

    def __init__(self, timesteps: int, gain: float = 1.0) -> None:
        super().__init__()
        self.timesteps = check_timesteps(timesteps)
        self.gain = _check_nonnegative(gain, "gain")

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return rate(x, self.timesteps, self.gain, generator)

    def extra_repr(self) -> str:
        return f"timesteps={self.timesteps}, gain={self.gain}"


class LatencyEncoder(nn.Module):
    """Module form of :func:`latency`: log ``t* = tau ln(x / (x - theta))`` or linear ``t* = (T-1)(1-x)``."""

    def __init__(self, timesteps: int, tau: float = 1.0, threshold: float = 0.01, linear: bool = False,
                 normalize: bool = True, *, epsilon: float = 1e-7) -> None:
        super().__init__()
        self.timesteps = check_timesteps(timesteps)
        self.tau, self.threshold, self.epsilon = tau, threshold, epsilon
        self.linear, self.normalize = linear, normalize

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return latency(x, self.timesteps, self.tau, self.threshold, self.linear, self.normalize,
                       epsilon=self.epsilon)

    def extra_repr(self) -> str:
        return (f"timesteps={self.timesteps}, tau={self.tau}, threshold={self.threshold}, "
                f"linear={self.linear}, normalize={self.normalize}")


class DeltaEncoder(nn.Module):
    """Module form of :func:`delta`: s[t] = +1 / -1 when x[t] moves more than theta from the last event."""

    def __init__(self, threshold: float = 0.1, off_spikes: bool = True) -> None:
        super().__init__()
        self.threshold = _check_nonnegative(threshold, "threshold")
        self.off_spikes = off_spikes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return delta(x, self.threshold, self.off_spikes)

    def extra_repr(self) -> str:
        return f"threshold={self.threshold}, off_spikes={self.off_spikes}"


class DirectEncoder(nn.Module):
    """Module form of :func:`direct`: s[t] = x for every t (an expanded view)."""

    def __init__(self, timesteps: int) -> None:
        super().__init__()
        self.timesteps = check_timesteps(timesteps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return direct(x, self.timesteps)

    def extra_repr(self) -> str:
        return f"timesteps={self.timesteps}"
