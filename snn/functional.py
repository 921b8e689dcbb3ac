"""Neuron dynamics as pure functions: parameters and state as typed tuples, a step, a scan.

This is the single source of truth of the dynamics contract (docs/DESIGN.md). Per neuron, per
step t, with input x[t] (already weighted):

CUBA-LIF (IF and LIF are special cases)::

    i[t] = alpha * i[t-1] + x[t]                 synaptic current   (alpha = 1 - du)
    v[t] = beta  * v[t-1] + i[t] + bias           membrane           (beta  = 1 - dv)
    s[t] = H(v[t] - theta)                        H(z) = 1 if z > 0, strictly (as on Loihi)
    v[t] = v[t] - s[t] * theta     reset "subtract"
    v[t] = v[t] * (1 - s[t])       reset "zero"

LIF is CUBA with alpha = 0 (i[t] = x[t]); IF is LIF with beta = 1.

Reset "subtract-delayed" (snnTorch's default: ``reset_mechanism="subtract"``,
``reset_delay=True``) takes the threshold off one step later and undecayed; the state v
is kept as it was when the spike test ran (snnTorch's ``mem``)::

    i[t] = alpha * i[t-1] + x[t]
    v[t] = beta  * v[t-1] + i[t] + bias - H(v[t-1] - theta) * theta
    s[t] = H(v[t] - theta)                        (v[t] is stored as is: no reset in step t)

H(v[t-1] - theta) is s[t-1], read back from the stored membrane (v[-1] = 0 gives none).
Against "subtract", a spike costs theta rather than beta * theta of the next membrane, and
the recorded membrane is the one before the reset. ALIF has no such form.

ALIF, adaptive-threshold LIF (Bellec et al., NeurIPS 2018), adds a threshold trace a::

    theta[t] = theta0 + gamma * a[t-1]            effective threshold
    s[t]     = H(v[t] - theta[t])
    v[t]     = v[t] - s[t] * theta[t]  (subtract) or v[t] * (1 - s[t]) (zero)
    a[t]     = rho * a[t-1] + s[t]

Initial state: every variable is 0 at t = -1 (at rest), except for an IF layer built with
``v_init`` (a fraction in [0, 1) of the threshold)::

    v[-1] = v_init * theta                        i[-1] = 0

ANN-to-SNN conversion starts at v_init = 0.5: half the threshold centres the rounding error
of the rate code (Rueckauer et al. 2017; Bu et al., ICLR 2022), so the mean output over T
approaches the ANN activation from both sides.

Recurrent variants add the layer's own spikes of the previous step to the input:
x[t] <- x[t] + W_rec s[t-1].

Non-spiking leaky integrator (readout)::

    v[t] = beta * v[t-1] + x[t] + bias            output is v[t]; it never spikes

H is replaced by a surrogate gradient in the backward pass (:mod:`snn.surrogate`). With
``detach_reset`` the reset term s[t] * theta carries no gradient (as in snnTorch; Zenke &
Vogels 2021 found it trains better).
"""

from __future__ import annotations

from typing import Callable, Literal, NamedTuple

import torch

from snn.errors import SpikeforgeError
from snn.surrogate import Surrogate

Reset = Literal["subtract", "zero", "subtract-delayed"]
RESET_MODES: tuple[str, ...] = ("subtract", "zero")
"""The resets every spiking layer (ALIF included) and every fused kernel implements."""
DELAYED_RESETS: tuple[str, ...] = ("subtract-delayed",)
"""Resets that act in the step after the spike: the CUBA family has them, and only the
step-by-step path runs them."""
RESETS: tuple[str, ...] = RESET_MODES + DELAYED_RESETS
"""Every reset of the CUBA family (IF, LIF, CubaLIF)."""


class CubaParameters(NamedTuple):
    """Parameters of the CUBA-LIF family; each broadcasts against the feature shape."""

    alpha: torch.Tensor
    beta: torch.Tensor
    theta: torch.Tensor
    bias: torch.Tensor


class CubaState(NamedTuple):
    """Synaptic current ``i`` and membrane ``v``, shaped like one step of input."""

    i: torch.Tensor
    v: torch.Tensor


class AlifParameters(NamedTuple):
    """CUBA parameters plus the threshold-adaptation decay ``rho`` and strength ``gamma``."""

    alpha: torch.Tensor
    beta: torch.Tensor
    theta: torch.Tensor
    bias: torch.Tensor
    rho: torch.Tensor
    gamma: torch.Tensor


class AlifState(NamedTuple):
    """Current ``i``, membrane ``v`` and threshold-adaptation trace ``a``."""

    i: torch.Tensor
    v: torch.Tensor
    a: torch.Tensor


class IntegratorParameters(NamedTuple):
    beta: torch.Tensor
    bias: torch.Tensor


class IntegratorState(NamedTuple):
    v: torch.Tensor


def check_reset(reset: str, modes: tuple[str, ...] = RESETS, layer: str = "") -> str:
    """``reset`` if it is one of ``modes``; else a :class:`SpikeforgeError` listing them."""
    if reset not in modes:
        known = " or ".join(repr(m) for m in modes)
        if reset in RESETS:
            raise SpikeforgeError(f"{layer or 'this layer'} has no reset {reset!r}; choose {known}")
        raise SpikeforgeError(f"unknown reset mode {reset!r}; choose {known}")
    return reset


def _reset(v: torch.Tensor, s: torch.Tensor, theta: torch.Tensor, reset: str, detach_reset: bool) -> torch.Tensor:
    r = s.detach() if detach_reset else s
    if reset == "subtract":
        return v - r * theta
    return v * (1 - r)


def cuba_step(x: torch.Tensor, state: CubaState, p: CubaParameters, surrogate: Surrogate,
              reset: str = "subtract", detach_reset: bool = True) -> tuple[torch.Tensor, CubaState]:
    """One step of CUBA-LIF; returns ``(s[t], state[t])`` (v after reset; with "subtract-delayed"
    v before its reset, which the next step applies)."""
    i = p.alpha * state.i + x
    v = p.beta * state.v + i + p.bias
    if reset == "subtract-delayed":
        # s[t-1], from the membrane it was tested on (detached: the bare Heaviside, no autograd node)
        previous = (state.v - p.theta > 0).to(v.dtype) if detach_reset else surrogate(state.v - p.theta)
        v = v - previous * p.theta
        return surrogate(v - p.theta), CubaState(i, v)
    s = surrogate(v - p.theta)
    return s, CubaState(i, _reset(v, s, p.theta, reset, detach_reset))


def alif_step(x: torch.Tensor, state: AlifState, p: AlifParameters, surrogate: Surrogate,
              reset: str = "subtract", detach_reset: bool = True) -> tuple[torch.Tensor, AlifState]:
    """One step of the adaptive-threshold LIF; returns ``(s[t], state[t])``."""
    i = p.alpha * state.i + x
    v = p.beta * state.v + i + p.bias
    theta = p.theta + p.gamma * state.a
    s = surrogate(v - theta)
    a = p.rho * state.a + s
    return s, AlifState(i, _reset(v, s, theta, reset, detach_reset), a)


def integrator_step(x: torch.Tensor, state: IntegratorState, p: IntegratorParameters
                    ) -> tuple[torch.Tensor, IntegratorState]:
    """One step of the non-spiking leaky integrator; the output is the membrane itself."""
    v = p.beta * state.v + x + p.bias
    return v, IntegratorState(v)


def initial_state(kind: type[NamedTuple], like: torch.Tensor) -> NamedTuple:
    """All-zero state of ``kind`` shaped like one step of input ``like`` (``[B, ...]``)."""
    return kind(*(torch.zeros_like(like) for _ in kind._fields))


def charged_state(like: torch.Tensor, theta: torch.Tensor, v_init: float) -> CubaState:
    """The CUBA state at t = -1 of a layer that starts charged: ``i = 0, v = v_init * theta``."""
    return CubaState(torch.zeros_like(like), (v_init * theta).to(like.dtype).expand_as(like).clone())


Step = Callable[[torch.Tensor, NamedTuple], tuple[torch.Tensor, NamedTuple]]


def scan(step: Step, x: torch.Tensor, state: NamedTuple, recurrent_weight: torch.Tensor | None = None,
         record_membrane: bool = False) -> tuple[torch.Tensor, NamedTuple, torch.Tensor | None]:
    """Run ``step`` over the time axis of ``x`` (``[T, B, ...]``).

    Returns the outputs ``[T, B, ...]``, the final state and, with ``record_membrane``,
    the membrane after each step (``[T, B, ...]``). With ``recurrent_weight`` (``[N, N]``),
    the input at step t gains ``s[t-1] @ W^T``.
    """
    outputs, membranes = [], []
    previous: torch.Tensor | None = None
    for t in range(x.shape[0]):
        xt = x[t]
        if recurrent_weight is not None and previous is not None:
            xt = xt + previous @ recurrent_weight.t()
        previous, state = step(xt, state)
        outputs.append(previous)
        if record_membrane:
            membranes.append(state.v)  # type: ignore[attr-defined]
    return torch.stack(outputs), state, (torch.stack(membranes) if record_membrane else None)
