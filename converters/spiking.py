"""Spiking replacements for ANN operations, running on the time-folded tensor ``[T*B, ...]``.

Both modules need the number of steps T of the current run; :class:`ConvertedSNN` sets
``steps`` on them before each forward pass.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from snn import functional as dynamics
from snn.surrogate import FastSigmoid


class TimeAware(nn.Module):
    """A module that unfolds ``[T*B, ...]`` into ``[T, B, ...]``; ``steps`` is T."""

    steps: int = 1

    def unfold(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(self.steps, x.shape[0] // self.steps, *x.shape[1:])


class SpikingActivation(TimeAware):
    """IF neuron replacing a ReLU-like activation with clip ``theta`` (its threshold).

    Per step, with the contract's IF dynamics (alpha = 0, beta = 1) and reset by subtraction::

        v[t] = v[t-1] + x[t];   s[t] = H(v[t] - theta);   v[t] -= s[t] * theta;   out[t] = s[t] * theta

    starting from v[-1] = v_init * theta (half the threshold by default, which centres the
    quantization error). The mean of ``out`` over T approximates clamp(x, 0, theta).
    ``theta`` is a scalar (layer-wise) or one value per channel (dimension 1 of the input).
    Spikes of the last run are counted in ``spike_count`` (for reports and energy).
    """

    def __init__(self, threshold: torch.Tensor, v_init: float = 0.5) -> None:
        super().__init__()
        self.register_buffer("threshold", torch.as_tensor(threshold, dtype=torch.float32).clone())
        self.v_init = float(v_init)
        self.spike_count = 0.0
        self._surrogate = FastSigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xs = self.unfold(x)
        theta = self.threshold.to(x.dtype)
        if theta.dim() == 1:  # per channel: broadcast over the spatial dimensions
            theta = theta.reshape(-1, *([1] * (xs.dim() - 3)))
        params = dynamics.CubaParameters(torch.zeros_like(theta), torch.ones_like(theta), theta,
                                         torch.zeros_like(theta))
        start = dynamics.CubaState(torch.zeros_like(xs[0]), (self.v_init * theta).expand_as(xs[0]).clone())
        step = lambda xt, s: dynamics.cuba_step(xt, s, params, self._surrogate, "subtract")  # noqa: E731
        spikes, _, _ = dynamics.scan(step, xs, start)
        self.spike_count = float(spikes.sum())
        return (spikes * theta).reshape(x.shape)

    def extra_repr(self) -> str:
        shape = "layer-wise" if self.threshold.dim() == 0 else f"channel-wise [{self.threshold.numel()}]"
        return f"threshold={shape}, v_init={self.v_init}"


class SpikingMaxPool(TimeAware):
    """Max pooling of spike trains by gating on the running spike count (Rueckauer et al. 2017).

    At step t each pooling window passes on the input of the unit whose cumulative input
    sum_{k<=t} x[k] is largest (first such unit on ties), so the output rate converges to
    the largest input rate, as max pooling of the ANN activations would give; the output
    stays a spike train (no spike amplitudes are added).
    """

    def __init__(self, pool: nn.MaxPool1d | nn.MaxPool2d) -> None:
        super().__init__()
        self.pool = pool
        self._pool_fn = F.max_pool2d if isinstance(pool, nn.MaxPool2d) else F.max_pool1d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        running = self.unfold(x).cumsum(0).reshape(x.shape)
        p = self.pool
        _, index = self._pool_fn(running, p.kernel_size, p.stride, p.padding, p.dilation, p.ceil_mode,
                                 return_indices=True)
        gathered = x.flatten(2).gather(2, index.flatten(2))
        return gathered.reshape(index.shape)
