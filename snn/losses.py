"""Readouts and classification losses for time-major network outputs ``[T, B, C]``.

With s[t] the output spikes (or v[t] the membrane of an :class:`~snn.neurons.Integrator`
readout), y the target class of a sample and CE(z, y) = -log(softmax(z)[y])::

    spike count      n[c]  = sum_t s[t, c]
    spike rate       r[c]  = n[c] / T
    count CE         L = CE(n, y)
    rate MSE         L = mean_c (r[c] - r*[c])^2,  r*[c] = on_rate if c == y else off_rate
    membrane CE      L = CE(v_red, y),  v_red = mean_t v[t] | max_t v[t] | v[T-1]

Every loss is averaged over the batch. Targets are int64 class indices of shape ``[B]``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from snn.errors import SpikeforgeError
from snn.validation import check_time_major

__all__ = [
    "MEMBRANE_REDUCTIONS", "PREDICTION_KINDS",
    "spike_count", "spike_rate", "spike_count_cross_entropy", "rate_mse", "membrane_cross_entropy",
    "predict", "accuracy", "SpikeCountCrossEntropy", "RateMSE", "MembraneCrossEntropy",
]

MEMBRANE_REDUCTIONS: tuple[str, ...] = ("mean", "max", "last")
PREDICTION_KINDS: tuple[str, ...] = ("count", "membrane_mean", "membrane_max", "membrane_last")


def _check_output(output: torch.Tensor, name: str) -> torch.Tensor:
    """``[T, B, C]`` as a floating tensor (0/1 bool or integer spikes become the default float)."""
    output = check_time_major(output, feature_dims=1, name=name)
    return output if output.is_floating_point() else output.to(torch.get_default_dtype())


def _check_target(target: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
    batch, classes = output.shape[1], output.shape[2]
    if not isinstance(target, torch.Tensor):
        raise SpikeforgeError(f"target must be a torch.Tensor of class indices, got {type(target).__name__}; "
                              "convert it with torch.as_tensor(target, dtype=torch.long)")
    if target.dtype != torch.long:
        raise SpikeforgeError(f"target must hold int64 class indices, got dtype {target.dtype}; "
                              "convert it with target.long()")
    if target.shape != (batch,):
        raise SpikeforgeError(f"target of shape {tuple(target.shape)} does not match the output batch: "
                              f"expected [{batch}] (one class index per sample of output [T, B, C])")
    if target.numel() and (target.min() < 0 or target.max() >= classes):
        raise SpikeforgeError(
            f"target holds class indices {target.min().item()}..{target.max().item()} but the output has "
            f"{classes} classes (its last dimension); targets must lie in 0..{classes - 1}: "
            "give the output layer one neuron per class"
        )
    return target


def _check_choice(value: str, options: tuple[str, ...], what: str) -> str:
    if value not in options:
        raise SpikeforgeError(f"unknown {what} {value!r}; choose one of {', '.join(options)}")
    return value


def _check_rate(value: float, name: str) -> float:
    if not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
        raise SpikeforgeError(f"{name} must be a firing rate in [0, 1] (spikes per step), got {value!r}")
    return float(value)


def spike_count(spikes: torch.Tensor) -> torch.Tensor:
    """Spike count per output neuron: ``n[b, c] = sum_t s[t, b, c]``; ``[T, B, C] -> [B, C]``."""
    return _check_output(spikes, "spikes").sum(0)


def spike_rate(spikes: torch.Tensor) -> torch.Tensor:
    """Firing rate per output neuron: ``r[b, c] = (1 / T) sum_t s[t, b, c]``; ``[T, B, C] -> [B, C]``."""
    return _check_output(spikes, "spikes").mean(0)


def spike_count_cross_entropy(spikes: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of spike counts used as logits: ``L = mean_b CE(sum_t s[t, b], y[b])``.

    The surrogate gradient of every spike reaches the loss through the count.
    """
    spikes = _check_output(spikes, "spikes")
    return F.cross_entropy(spikes.sum(0), _check_target(target, spikes))


def _target_rates(target: torch.Tensor, classes: int, on_rate: float, off_rate: float,
                  like: torch.Tensor) -> torch.Tensor:
    rates = torch.full((target.shape[0], classes), off_rate, dtype=like.dtype, device=like.device)
    return rates.scatter_(1, target.unsqueeze(1), on_rate)


def rate_mse(spikes: torch.Tensor, target: torch.Tensor, on_rate: float = 0.8,
             off_rate: float = 0.2) -> torch.Tensor:
    """MSE between firing rates and target rates (snnTorch's ``mse_count_loss`` idea, on rates).

    ``L = mean_{b,c} (r[b, c] - r*[b, c])^2`` with ``r[b, c] = (1/T) sum_t s[t, b, c]`` and
    ``r*[b, c] = on_rate`` if ``c == y[b]`` else ``off_rate``. Asking the wrong classes for
    a small non-zero rate (rather than silence) keeps their neurons alive and trainable.
    """
    spikes = _check_output(spikes, "spikes")
    target = _check_target(target, spikes)
    on_rate, off_rate = _check_rate(on_rate, "on_rate"), _check_rate(off_rate, "off_rate")
    rates = spikes.mean(0)
    return F.mse_loss(rates, _target_rates(target, spikes.shape[2], on_rate, off_rate, rates))


def _reduce_membrane(membrane: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return membrane.mean(0)
    if reduction == "max":
        return membrane.max(0).values
    return membrane[-1]


def membrane_cross_entropy(membrane: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy of the readout membrane reduced over time: ``L = mean_b CE(v_red[b], y[b])``.

    ``reduction``: ``"mean"`` ``v_red = (1/T) sum_t v[t]``, ``"max"`` ``v_red = max_t v[t]``
    (per class), ``"last"`` ``v_red = v[T-1]``.
    """
    _check_choice(reduction, MEMBRANE_REDUCTIONS, "membrane reduction")
    membrane = _check_output(membrane, "membrane")
    return F.cross_entropy(_reduce_membrane(membrane, reduction), _check_target(target, membrane))


def predict(output: torch.Tensor, kind: str = "count") -> torch.Tensor:
    """Predicted class per sample, ``[T, B, C] -> [B]`` int64: ``argmax_c`` of the readout.

    ``kind``: ``"count"`` (``sum_t s[t]``, for spiking outputs), ``"membrane_mean"``,
    ``"membrane_max"``, ``"membrane_last"`` (the reductions of :func:`membrane_cross_entropy`).
    Ties go to the lowest class index (so an output that never spikes predicts class 0).
    """
    _check_choice(kind, PREDICTION_KINDS, "prediction kind")
    output = _check_output(output, "output")
    scores = output.sum(0) if kind == "count" else _reduce_membrane(output, kind.removeprefix("membrane_"))
    return scores.argmax(dim=1)


def accuracy(output: torch.Tensor, target: torch.Tensor, kind: str = "count") -> float:
    """Fraction of samples whose :func:`predict` equals the target: ``mean_b [y_hat[b] == y[b]]``."""
    _check_choice(kind, PREDICTION_KINDS, "prediction kind")
    output = _check_output(output, "output")
    target = _check_target(target, output)
    if target.numel() == 0:
        raise SpikeforgeError("accuracy of an empty batch (B = 0) is undefined; pass at least one sample")
    return (predict(output, kind) == target).double().mean().item()


class SpikeCountCrossEntropy(nn.Module):
    """Module form of :func:`spike_count_cross_entropy`: ``L = CE(sum_t s[t], y)``."""

    def forward(self, spikes: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return spike_count_cross_entropy(spikes, target)


class RateMSE(nn.Module):
    """Module form of :func:`rate_mse`: ``L = mean (r - r*)^2``, r* = on_rate / off_rate."""

    def __init__(self, on_rate: float = 0.8, off_rate: float = 0.2) -> None:
        super().__init__()
        self.on_rate = _check_rate(on_rate, "on_rate")
        self.off_rate = _check_rate(off_rate, "off_rate")

    def forward(self, spikes: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return rate_mse(spikes, target, self.on_rate, self.off_rate)

    def extra_repr(self) -> str:
        return f"on_rate={self.on_rate}, off_rate={self.off_rate}"


class MembraneCrossEntropy(nn.Module):
    """Module form of :func:`membrane_cross_entropy`: ``L = CE(v_red, y)``, v_red by ``reduction``."""

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        self.reduction = _check_choice(reduction, MEMBRANE_REDUCTIONS, "membrane reduction")

    def forward(self, membrane: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return membrane_cross_entropy(membrane, target, self.reduction)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"
