"""Input checks shared by layers, encoders and the CLI.

Each check raises :class:`~snn.errors.SpikeforgeError` with a message that names the
cause and the fix, instead of letting a shape or NaN error surface deep in a kernel.
"""

from __future__ import annotations

import torch

from snn.errors import SpikeforgeError


def check_timesteps(timesteps: int) -> int:
    """Return ``timesteps`` if it is a positive integer, else raise."""
    if isinstance(timesteps, bool) or not isinstance(timesteps, int):
        raise SpikeforgeError(f"timesteps must be an integer, got {timesteps!r}")
    if timesteps < 1:
        raise SpikeforgeError(f"timesteps must be at least 1, got {timesteps}; a spiking network needs T >= 1 steps")
    return timesteps


DATA_FIX = "clean or clip the data before simulating"
NEURON_INPUT_FIX = ("clean or clip the network input, or find the layer before this one that overflows "
                    "(diverging weights: lower the learning rate)")


class NonFiniteError(SpikeforgeError):
    """A tensor a check needs finite holds NaN or infinity (training tells diverged weights from bad data by it)."""


def check_finite(x: torch.Tensor, name: str = "input", fix: str = DATA_FIX) -> torch.Tensor:
    """Raise if ``x`` holds NaN or infinity (they would silently poison every membrane).

    One reduction first: a finite sum proves every element finite (a NaN or an infinity
    makes the sum non-finite). Only a non-finite sum, which float overflow of large but
    finite values can also cause, pays for the element-wise check.
    """
    if x.is_floating_point() and x.numel() and not torch.isfinite(x.sum()) and not torch.isfinite(x).all():
        bad = "NaN" if torch.isnan(x).any() else "infinity"
        raise NonFiniteError(f"{name} contains {bad}; {fix}")
    return x


def check_time_major(x: torch.Tensor, feature_dims: int | None = None, name: str = "input") -> torch.Tensor:
    """Check that ``x`` is time-major ``[T, B, *features]``.

    With ``feature_dims`` given, ``x`` must have exactly ``feature_dims + 2`` dimensions;
    otherwise at least 3 (time, batch and one feature dimension).
    """
    if not isinstance(x, torch.Tensor):
        raise SpikeforgeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    expected = None if feature_dims is None else feature_dims + 2
    too_few = x.ndim < 3 if expected is None else x.ndim != expected
    if too_few:
        want = "at least 3" if expected is None else str(expected)
        raise SpikeforgeError(
            f"{name} of shape {tuple(x.shape)} is not time-major: expected [T, B, ...] with {want} dimensions; "
            "add a leading time dimension, e.g. snn.encoders.direct(x, timesteps=T)"
        )
    if x.shape[0] == 0:
        raise SpikeforgeError(f"{name} has T = 0 timesteps; a spiking network needs T >= 1 steps")
    return x
