"""Stateless layers that spiking networks need beside torch's own: a fixed per-channel scale,
the two merges of a graph (addition, concatenation) and max pooling of spike trains.

:class:`Scale`, :class:`Add` and :class:`Concat` are affine, so every backend folds them into
the synapses around them; :class:`SpikeMaxPool2d` keeps a running count over time, so it
sees the time-major tensor ``[T, B, ...]`` (``time_major = True``) like a neuron layer does.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from snn.errors import SpikeforgeError


class Scale(nn.Module):
    """``y = factor * x`` with a fixed factor per channel (dimension 1 of ``[N, C, ...]``) or one for all.

    A converted network's IF layer emits spikes of amplitude theta (the ANN activation it
    stands for is ``theta * rate``): IF(theta) followed by Scale(theta). On hardware the scale
    folds into the next layer's weights, so the spikes themselves stay 0/1.
    """

    def __init__(self, factor: torch.Tensor | float | Sequence[float] = 1.0) -> None:
        super().__init__()
        factor = torch.as_tensor(factor, dtype=torch.get_default_dtype()).clone()
        if factor.dim() > 1 and any(d != 1 for d in factor.shape[1:]):
            raise SpikeforgeError(f"Scale takes one factor or one per channel, got shape {tuple(factor.shape)}")
        if not torch.isfinite(factor).all():
            raise SpikeforgeError("Scale factor must be finite")
        self.register_buffer("factor", factor.reshape(-1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.factor.to(x.dtype)
        if f.numel() == 1:
            return x * f[0]
        if x.dim() < 2 or x.shape[1] != f.numel():
            raise SpikeforgeError(f"Scale has {f.numel()} channel factors but its input has shape {tuple(x.shape)}")
        return x * f.reshape(1, -1, *([1] * (x.dim() - 2)))

    def spec(self) -> dict[str, Any]:
        return {"type": "Scale", "factor": [0.0] * self.factor.numel()}  # values live in the state dict

    def extra_repr(self) -> str:
        return f"channels={self.factor.numel()}"


class Add(nn.Module):
    """``y = x_1 + x_2 + ...`` (left to right): the merge of a residual block."""

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        if len(xs) < 2:
            raise SpikeforgeError(f"Add needs at least two inputs, got {len(xs)}")
        out = xs[0]
        for x in xs[1:]:
            if x.shape != out.shape:
                raise SpikeforgeError(f"Add inputs differ in shape: {tuple(out.shape)} and {tuple(x.shape)}")
            out = out + x
        return out

    def spec(self) -> dict[str, Any]:
        return {"type": "Add"}


class Concat(nn.Module):
    """``torch.cat(xs, dim)`` along ``dim`` of ``[N, ...]`` (1: channels), as the ANN wrote it."""

    def __init__(self, dim: int = 1) -> None:
        super().__init__()
        if dim == 0:
            raise SpikeforgeError("Concat along dim 0 (the batch) is not a layer; concatenate features (dim >= 1)")
        self.dim = int(dim)

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        try:
            return torch.cat(xs, self.dim)
        except RuntimeError as error:
            shapes = ", ".join(str(tuple(x.shape)) for x in xs)
            raise SpikeforgeError(f"Concat(dim={self.dim}) cannot join inputs of shapes {shapes}") from error

    def spec(self) -> dict[str, Any]:
        return {"type": "Concat", "dim": self.dim}


class SpikeMaxPool2d(nn.Module):
    """Max pooling of spike trains by gating on the running input count (Rueckauer et al. 2017).

    For input ``x [T, B, C, H, W]``, at step t each window passes on the input of the unit whose
    count ``sum_{k<=t} x[k]`` is largest (the first on ties): the output rate tends to the
    largest input rate, as max pooling of the ANN's activations would give, and the output
    stays a spike train.
    """

    time_major = True

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, ceil_mode: bool = False) -> None:
        super().__init__()
        self.pool = nn.MaxPool2d(kernel_size, stride, padding, dilation, ceil_mode=ceil_mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        steps, batch = x.shape[:2]
        flat = x.reshape(steps * batch, *x.shape[2:])
        running = x.cumsum(0).reshape(flat.shape)
        p = self.pool
        _, index = F.max_pool2d(running, p.kernel_size, p.stride, p.padding, p.dilation, p.ceil_mode,
                                return_indices=True)
        gathered = flat.flatten(2).gather(2, index.flatten(2)).reshape(index.shape)
        return gathered.reshape(steps, batch, *index.shape[1:])

    def spec(self) -> dict[str, Any]:
        p = self.pool
        return {"type": "SpikeMaxPool2d", "kernel_size": p.kernel_size, "stride": p.stride, "padding": p.padding,
                "dilation": p.dilation, "ceil_mode": p.ceil_mode}


STATELESS_LAYERS: dict[str, type[nn.Module]] = {
    "Scale": Scale, "Add": Add, "Concat": Concat, "SpikeMaxPool2d": SpikeMaxPool2d,
}
