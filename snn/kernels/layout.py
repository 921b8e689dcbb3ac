"""The layout every fused backend shares: parameter order, surrogate codes, settings, flags.

Arrays: input ``x`` and spikes ``[T, B, F]``; state ``i, v, a [B, F]``; parameters one
``[6, F]`` array in :data:`PARAM_NAMES` order (one value per feature, shared by the batch).
Nothing here compiles anything or imports a backend.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch

from snn.errors import SpikeforgeError
from snn.functional import RESET_MODES
from snn.surrogate import Surrogate

FUSED_RESETS: tuple[str, ...] = RESET_MODES  # snn.functional's DELAYED_RESETS run step by step
PARAM_NAMES: tuple[str, ...] = ("alpha", "beta", "theta", "bias", "rho", "gamma")  # rows of params, parts
SURROGATE_CODES: dict[str, int] = {"fast_sigmoid": 0, "arctan": 1, "sigmoid": 2, "triangle": 3, "boxcar": 4}
_BUILTIN_CLASSES: set[str] = {"FastSigmoid", "ArcTan", "Sigmoid", "Triangle", "Boxcar"}


@dataclass(frozen=True)
class FusedConfig:
    """Non-tensor settings of one fused scan."""

    surrogate: Surrogate
    reset: str = "subtract"
    detach_reset: bool = True
    adaptive: bool = False  # ALIF: threshold trace a, parameters rho and gamma
    input_name: str = field(default="neuron input", compare=False)  # for the NaN / infinity error
    # Nothing but this scan reads the input: the numba backward writes dL/dx over it.
    donated_input: bool = False

    def __post_init__(self) -> None:
        if self.reset not in FUSED_RESETS:
            raise SpikeforgeError(f"the fused kernels reset by 'subtract' or 'zero', not {self.reset!r}; run the "
                                  "layer step by step (layer.fused = False)")

    @property
    def kernel_code(self) -> int:
        """Surrogate code for the compiled kernels, or -1 when the torch loop must run."""
        if type(self.surrogate).__name__ in _BUILTIN_CLASSES and self.surrogate.name in SURROGATE_CODES:
            return SURROGATE_CODES[self.surrogate.name]
        return -1

    @property
    def subtract(self) -> bool:
        return self.reset == "subtract"


class KernelFlags(NamedTuple):
    """The compile-time settings of one numba kernel: each setting compiles its own kernel,
    whose inner loop then has no branch on them left. The forward reads ``subtract``,
    ``adaptive``, ``instant_current`` and ``uniform`` only; the rest keep their defaults there,
    so one forward kernel serves every backward setting."""

    subtract: bool = True  # reset by subtraction (else to zero)
    adaptive: bool = False  # ALIF: threshold trace a
    instant_current: bool = False  # alpha = 0 and no alpha gradient (LIF): i[t] = x[t], no current state
    uniform: bool = False  # every parameter one value: params [6, 1], hoisted out of the loops
    code: int = 0  # surrogate derivative, SURROGATE_CODES
    needs: tuple[bool, ...] = (False,) * 6  # which parameter gradients (PARAM_NAMES order) are computed
    uniform_gs: bool = False  # dL/dspikes is one value for every neuron-step, passed as [1, 1, 1]


class KernelSwitches(NamedTuple):
    """The run-time settings of a numba kernel, its first argument: read once per work item or
    row, not per element, so a branch on them costs nothing measurable and one compiled kernel
    serves all their combinations (2 x 2 x 2 x 2 fewer compilations than as flags)."""

    detach: bool = True  # the reset carries no gradient (detach_reset)
    zero_start: bool = False  # the scan starts at rest: the initial state is not read (zeroed in the kernel)
    zero_final: bool = False  # no gradient reached the final state: g_i, g_v, g_a zeroed in the kernel
    in_place: bool = False  # dL/dx is written over the (donated) input, which the replay reads from there


class Saved(NamedTuple):
    """What a backend's forward hands :class:`~snn.kernels.scan.FusedScan` to keep for its backward."""

    tensor: torch.Tensor  # [T, B, F]: the input x (numba replays the forward) or the pre-reset membrane v
    keep: tuple[bool, bool, bool]  # which of the initial states i0, v0, a0 the backward reads
    uniform_params: torch.Tensor | None = None  # numba, all-scalar parameters: the [6, 1] copy its kernels read
    instant_current: bool = False  # numba: the LIF kernels (no current state) ran


def compilable(x: torch.Tensor, cfg: FusedConfig) -> bool:
    """A built-in surrogate and float32 / float64 data: what the compiled backends need."""
    return cfg.kernel_code >= 0 and x.dtype in (torch.float32, torch.float64)


def flat_parameters(params, param_shape: torch.Size, like: torch.Tensor) -> torch.Tensor:
    """The six parameters broadcast to ``param_shape`` in one contiguous ``[6, F]`` array (one copy)."""
    features = math.prod(param_shape)
    if all(p.dim() == 0 for p in params):  # the usual scalars: fewer small torch calls
        return torch.stack(params).detach().to(like.dtype)[:, None].expand(len(params), features).contiguous()
    rows = torch.stack([p.detach().to(like.dtype).expand(param_shape) for p in params])
    return rows.reshape(len(params), features)


def per_feature(x: torch.Tensor, params: tuple[torch.Tensor, ...]) -> bool:
    """True when every parameter broadcasts to one sample's shape ``x.shape[2:]``.

    Then parameters are stored once per feature (the usual case: scalars, per-channel or
    per-neuron values); a parameter that varies along the batch makes each step one row of
    ``B*F`` neurons instead.
    """
    sample = tuple(x.shape[2:])

    def fits(shape: tuple[int, ...]) -> bool:  # numpy broadcasting rules, without torch's checks
        return len(shape) <= len(sample) and all(d in (1, s) for d, s in zip(shape[::-1], sample[::-1]))
    return all(fits(tuple(p.shape)) for p in params)


def as_one_row(a: np.ndarray) -> np.ndarray:
    """``[..., B, F] -> [..., 1, B*F]``, a view. Neurons with uniform (scalar) parameters are
    all alike, so the kernels run the batch as one long row: work items of contiguous
    neurons, whatever the layer width (a 10-output classifier included)."""
    return a.reshape(*a.shape[:-2], 1, a.shape[-2] * a.shape[-1])


def membrane_backward_inputs(ctx, gs, final_grads, vstore: torch.Tensor, state0):
    """``(gs, (g_i, g_v, g_a), state0)`` as the backends that saved the membrane read them: zeros
    where no gradient arrived or where a gradient reads the initial state of a scan that started
    at rest; final-state gradients as fresh contiguous tensors (the kernels update them in place)."""
    shape = ctx.state_shape
    if ctx.zero_state:
        state0 = tuple(vstore.new_zeros(shape) if k else None for k in ctx.keep)
    finals = tuple(vstore.new_zeros(shape) if g is None else g.contiguous().clone() for g in final_grads)
    return (torch.zeros_like(vstore) if gs is None else gs), finals, state0
