"""Neuron layers: thin ``torch.nn.Module`` wrappers around :mod:`snn.functional`.

Every layer takes a time-major input ``[T, B, ...]`` and an optional explicit state and
returns ``(output, final_state)``. With ``state=None`` the layer starts from rest (all
zeros), so nothing carries over between batches and there is no global ``reset_net``;
pass the returned state back in to continue a stream.

Parameters (decays, threshold, bias) are scalars or tensors broadcastable to the feature
shape (per-neuron values). ``learn_*`` flags make them trainable; decays are clamped to
[0, 1] and the threshold to at least ``1e-3`` in the forward pass.

Equations: see :mod:`snn.functional`.

Execution: spiking layers run their time loop fused (:mod:`snn.kernels`, one autograd node
with a hand-written BPTT backward) whenever that is equivalent: ``layer.fused = None``
(default) picks the fused path when the layer has no recurrent weight, no membrane
recording is requested and its reset is one the kernels implement ("subtract", "zero"; a
CUBA-family layer with snnTorch's ``"subtract-delayed"`` always runs step by step);
``False`` forces the plain step-by-step reference (:func:`snn.functional.scan`); ``True``
demands the fused path.

Example::

    lif = LIF(beta=0.9)
    spikes, state = lif(torch.rand(16, 4, 100))   # T=16, B=4, 100 neurons
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from snn import functional
from snn import surrogate as surrogates
from snn.errors import SpikeforgeError
from snn.validation import NEURON_INPUT_FIX, check_finite, check_time_major

Number = float | torch.Tensor

MIN_THRESHOLD = 1e-3


class NeuronLayer(nn.Module):
    """Base of every layer that scans over time (spiking neurons and integrators).

    Subclasses list their float parameters in ``_parameter_names`` and implement
    ``_step_and_state``. ``record_membrane = True`` makes ``forward`` keep the membrane
    trace in ``self.membrane_trace`` (used by :class:`snn.recording.Recorder`).
    ``fused`` chooses the execution path (see the module docstring).
    """

    _parameter_names: tuple[str, ...] = ()
    _state_type: type[NamedTuple]

    def __init__(self, recurrent_features: int | None = None) -> None:
        super().__init__()
        self.record_membrane = False
        self.membrane_trace: torch.Tensor | None = None
        self.fused: bool | None = None
        self.recurrent_features = recurrent_features
        self.recurrent: nn.Linear | None = None
        if recurrent_features is not None:
            if recurrent_features < 1:
                raise SpikeforgeError(f"recurrent_features must be positive, got {recurrent_features}")
            self.recurrent = nn.Linear(recurrent_features, recurrent_features, bias=False)

    def _register(self, name: str, value: Number, learn: bool) -> None:
        tensor = torch.as_tensor(value, dtype=torch.get_default_dtype()).clone()
        if not torch.isfinite(tensor).all():
            raise SpikeforgeError(f"{type(self).__name__} parameter {name} must be finite, got {value}")
        if learn:
            self.register_parameter(name, nn.Parameter(tensor))
        else:
            self.register_buffer(name, tensor)

    def _check_decay(self, name: str) -> None:
        value = getattr(self, name)
        if ((value < 0) | (value > 1)).any():
            raise SpikeforgeError(f"{type(self).__name__} decay {name} must lie in [0, 1], got {value.tolist()}")

    def _step(self):
        """Return ``step(x_t, state) -> (out_t, state)`` with current parameter values."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor, state: NamedTuple | None = None,
                donate_input: bool = False) -> tuple[torch.Tensor, NamedTuple]:
        """Spikes ``[T, B, ...]`` and the final state for input ``x [T, B, ...]``.

        ``donate_input``: nothing else reads ``x`` (a temporary of the caller, as in
        :class:`snn.network.Sequential`), so the fused CPU backward may write dL/dx over it
        (one ``[T, B, ...]`` buffer less at the backward's peak; a second backward through
        the same graph then raises).
        """
        check_time_major(x, name=f"{type(self).__name__} input")
        if state is None:
            state = self.start_state(x[0])
        if self.recurrent is not None and x.shape[-1] != self.recurrent_features:
            raise SpikeforgeError(f"{type(self).__name__} has {self.recurrent_features} recurrent features "
                                  f"but its input has {x.shape[-1]}; flatten the input or set recurrent_features")
        if self._runs_fused():  # state None: the kernel starts at rest without materialising zeros
            self.membrane_trace = None  # the fused kernels check the input for NaN / infinity themselves
            return self._fused_scan(x, state, donate_input=True) if donate_input else self._fused_scan(x, state)
        check_finite(x, self._input_name(), NEURON_INPUT_FIX)
        if state is None:
            state = functional.initial_state(self._state_type, x[0])
        weight = None if self.recurrent is None else self.recurrent.weight
        out, state, trace = functional.scan(self._step(), x, state, weight, self.record_membrane)
        self.membrane_trace = trace
        return out, state

    def start_state(self, like: torch.Tensor) -> NamedTuple | None:
        """The state at t = -1 when none is given, shaped like one input step ``like``; None: at
        rest (all zero, which the fused kernels set up without materialising it)."""
        return None

    def _fused_scan(self, x: torch.Tensor, state: NamedTuple | None,
                    donate_input: bool = False) -> tuple[torch.Tensor, NamedTuple]:
        """Whole-sequence fused forward; subclasses with a fused kernel override this."""
        raise NotImplementedError

    def _input_name(self) -> str:
        return f"{type(self).__name__} input"

    def _runs_fused(self) -> bool:
        choice = getattr(self, "fused", None)
        has_kernel = type(self)._fused_scan is not NeuronLayer._fused_scan
        if choice is False:
            return False
        delayed = getattr(self, "reset", None) in functional.DELAYED_RESETS
        if choice is True and delayed:
            raise SpikeforgeError(f"{type(self).__name__} with reset {self.reset!r} has no fused kernel (it runs step "
                                  "by step); set layer.fused = None or False")
        if choice is True and (not has_kernel or self.recurrent is not None):
            raise SpikeforgeError(f"{type(self).__name__} cannot run fused (recurrent weight or no fused kernel); "
                                  "set layer.fused = None or False")
        return has_kernel and self.recurrent is None and not self.record_membrane and not delayed

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Per-neuron parameters saved from a layer built with scalars: adopt their shape.
        for name in self._parameter_names:
            key = prefix + name
            current = getattr(self, name)
            if key in state_dict and state_dict[key].shape != current.shape:
                current.data = torch.empty_like(state_dict[key], dtype=current.dtype)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def spec(self) -> dict[str, Any]:
        """Constructor arguments as JSON (per-neuron values live in the state dict)."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.spec().items() if k != "type")


def _scalar(t: torch.Tensor) -> float | list:
    """Parameter as JSON: shortest decimal that round-trips through float32 (0.9, not 0.8999999761)."""
    values = [float(str(np.float32(v))) for v in t.detach().cpu().reshape(-1).tolist()]
    return values[0] if t.numel() == 1 else np.array(values).reshape(tuple(t.shape)).tolist()


class CubaFamily(NeuronLayer):
    """Shared implementation of IF, LIF and CUBA-LIF (they differ only in alpha/beta)."""

    _parameter_names = ("alpha", "beta", "theta", "bias")
    _state_type = functional.CubaState
    v_init: float = 0.0  # IF only: v[-1] = v_init * theta (the contract's initial state)

    def __init__(self, alpha: Number, beta: Number, theta: Number, bias: Number, reset: str,
                 surrogate: str | surrogates.Surrogate | None, slope: float | None, learn_alpha: bool,
                 learn_beta: bool, learn_threshold: bool, detach_reset: bool,
                 recurrent_features: int | None) -> None:
        super().__init__(recurrent_features)
        self.reset = functional.check_reset(reset)
        self.surrogate = surrogates.get(surrogate, slope)
        self.detach_reset = detach_reset
        self._register("alpha", alpha, learn_alpha)
        self._register("beta", beta, learn_beta)
        self._register("theta", theta, learn_threshold)
        self._register("bias", bias, False)
        self._check_decay("alpha")
        self._check_decay("beta")
        if (self.theta <= 0).any():
            raise SpikeforgeError(f"{type(self).__name__} threshold theta must be positive, got {_scalar(self.theta)}")

    def parameters_now(self) -> functional.CubaParameters:
        """Effective (clamped) parameters used by the dynamics."""
        return functional.CubaParameters(self.alpha.clamp(0, 1), self.beta.clamp(0, 1),
                                self.theta.clamp(min=MIN_THRESHOLD), self.bias)

    def start_state(self, like: torch.Tensor) -> functional.CubaState | None:
        if not self.v_init:
            return None
        return functional.charged_state(like, self.parameters_now().theta, self.v_init)

    def _step(self):
        p = self.parameters_now()
        return lambda x, s: functional.cuba_step(x, s, p, self.surrogate, self.reset, self.detach_reset)

    def _fused_scan(self, x: torch.Tensor, state: NamedTuple | None,
                    donate_input: bool = False) -> tuple[torch.Tensor, NamedTuple]:
        from snn.kernels import cuba_scan
        return cuba_scan(x, state, self.parameters_now(), self.surrogate, self.reset, self.detach_reset,
                         self._input_name(), donate_input)

    def _common_spec(self) -> dict[str, Any]:
        return {"theta": _scalar(self.theta), "bias": _scalar(self.bias), "reset": self.reset,
                "surrogate": self.surrogate.spec(), "learn_threshold": isinstance(self.theta, nn.Parameter),
                "detach_reset": self.detach_reset, "recurrent_features": self.recurrent_features}


class IF(CubaFamily):
    """Integrate-and-fire: v[t] = v[t-1] + x[t] + bias; spike when v > theta, then reset.

    IF is LIF with beta = 1 (no leak). Reset ``"subtract"`` keeps the residue above
    threshold (the right choice for ANN-to-SNN conversion), ``"zero"`` clears it.
    ``v_init`` in [0, 1): without a given state the layer starts charged, v[-1] = v_init *
    theta (0.5 in converted networks; see :mod:`snn.functional`).

    >>> layer = IF(theta=1.0, v_init=0.5)
    >>> spikes, state = layer(torch.full((3, 1, 1), 0.5))  # v: 1.0, 1.5 -> spike, 1.0
    >>> spikes.flatten().tolist()
    [0.0, 1.0, 0.0]
    """

    def __init__(self, theta: Number = 1.0, bias: Number = 0.0, reset: str = "subtract",
                 surrogate: str | surrogates.Surrogate | None = None, slope: float | None = None,
                 learn_threshold: bool = False, detach_reset: bool = True,
                 recurrent_features: int | None = None, v_init: float = 0.0) -> None:
        super().__init__(0.0, 1.0, theta, bias, reset, surrogate, slope, False, False, learn_threshold,
                         detach_reset, recurrent_features)
        if not 0 <= v_init < 1:
            raise SpikeforgeError(f"IF initial membrane fraction v_init must lie in [0, 1), got {v_init}")
        self.v_init = float(v_init)

    def spec(self) -> dict[str, Any]:
        return {"type": "IF", **self._common_spec(), **({"v_init": self.v_init} if self.v_init else {})}


class LIF(CubaFamily):
    """Leaky integrate-and-fire: v[t] = beta v[t-1] + x[t] + bias; s[t] = H(v[t] - theta).

    beta = 1 - dv is the membrane decay per step (beta = exp(-dt / tau_mem) for a
    continuous-time time constant). LIF is CUBA-LIF with alpha = 0.

    ``reset="subtract-delayed"`` is snnTorch's ``Leaky`` with its defaults: the threshold
    comes off one step after the spike, undecayed,
    v[t] = beta v[t-1] + x[t] + bias - H(v[t-1] - theta) theta (:mod:`snn.functional`);
    such a layer runs step by step (no fused kernel).

    >>> layer = LIF(beta=0.5, reset="subtract-delayed")
    >>> spikes, state = layer(torch.tensor([1.5, 0.0, 0.0]).reshape(3, 1, 1))  # v: 1.5, -0.25, -0.125
    >>> spikes.flatten().tolist(), state.v.item()
    ([1.0, 0.0, 0.0], -0.125)
    """

    def __init__(self, beta: Number = 0.9, theta: Number = 1.0, bias: Number = 0.0, reset: str = "subtract",
                 surrogate: str | surrogates.Surrogate | None = None, slope: float | None = None,
                 learn_beta: bool = False, learn_threshold: bool = False, detach_reset: bool = True,
                 recurrent_features: int | None = None) -> None:
        super().__init__(0.0, beta, theta, bias, reset, surrogate, slope, False, learn_beta, learn_threshold,
                         detach_reset, recurrent_features)

    def spec(self) -> dict[str, Any]:
        return {"type": "LIF", "beta": _scalar(self.beta), "learn_beta": isinstance(self.beta, nn.Parameter),
                **self._common_spec()}


class CubaLIF(CubaFamily):
    """Current-based LIF: i[t] = alpha i[t-1] + x[t]; v[t] = beta v[t-1] + i[t] + bias.

    s[t] = H(v[t] - theta), then reset (subtract or zero). alpha = 1 - du, beta = 1 - dv,
    exactly as Loihi's CUBA neuron.
    """

    def __init__(self, alpha: Number = 0.8, beta: Number = 0.9, theta: Number = 1.0, bias: Number = 0.0,
                 reset: str = "subtract", surrogate: str | surrogates.Surrogate | None = None,
                 slope: float | None = None, learn_alpha: bool = False, learn_beta: bool = False,
                 learn_threshold: bool = False, detach_reset: bool = True,
                 recurrent_features: int | None = None) -> None:
        super().__init__(alpha, beta, theta, bias, reset, surrogate, slope, learn_alpha, learn_beta,
                         learn_threshold, detach_reset, recurrent_features)

    def spec(self) -> dict[str, Any]:
        return {"type": "CubaLIF", "alpha": _scalar(self.alpha), "beta": _scalar(self.beta),
                "learn_alpha": isinstance(self.alpha, nn.Parameter),
                "learn_beta": isinstance(self.beta, nn.Parameter), **self._common_spec()}


class ALIF(NeuronLayer):
    """Adaptive-threshold LIF (Bellec et al., NeurIPS 2018).

    i[t] = alpha i[t-1] + x[t];  v[t] = beta v[t-1] + i[t] + bias;
    theta[t] = theta0 + gamma a[t-1];  s[t] = H(v[t] - theta[t]);
    reset by theta[t] (subtract) or to zero;  a[t] = rho a[t-1] + s[t].
    Each spike raises the threshold by gamma, which decays back with rho per step.
    """

    _parameter_names = ("alpha", "beta", "theta", "bias", "rho", "gamma")
    _state_type = functional.AlifState

    def __init__(self, beta: Number = 0.9, rho: Number = 0.95, gamma: Number = 0.2, theta: Number = 1.0,
                 alpha: Number = 0.0, bias: Number = 0.0, reset: str = "subtract",
                 surrogate: str | surrogates.Surrogate | None = None, slope: float | None = None,
                 learn_beta: bool = False, learn_threshold: bool = False, detach_reset: bool = True,
                 recurrent_features: int | None = None) -> None:
        super().__init__(recurrent_features)
        self.reset = functional.check_reset(reset, functional.RESET_MODES, "ALIF")
        self.surrogate = surrogates.get(surrogate, slope)
        self.detach_reset = detach_reset
        self._register("alpha", alpha, False)
        self._register("beta", beta, learn_beta)
        self._register("theta", theta, learn_threshold)
        self._register("bias", bias, False)
        self._register("rho", rho, False)
        self._register("gamma", gamma, False)
        for name in ("alpha", "beta", "rho"):
            self._check_decay(name)
        if (self.theta <= 0).any() or (self.gamma < 0).any():
            raise SpikeforgeError("ALIF needs theta > 0 and gamma >= 0")

    def parameters_now(self) -> functional.AlifParameters:
        return functional.AlifParameters(self.alpha.clamp(0, 1), self.beta.clamp(0, 1),
                                         self.theta.clamp(min=MIN_THRESHOLD), self.bias, self.rho, self.gamma)

    def _step(self):
        p = self.parameters_now()
        return lambda x, s: functional.alif_step(x, s, p, self.surrogate, self.reset, self.detach_reset)

    def _fused_scan(self, x: torch.Tensor, state: NamedTuple | None,
                    donate_input: bool = False) -> tuple[torch.Tensor, NamedTuple]:
        from snn.kernels import alif_scan
        return alif_scan(x, state, self.parameters_now(), self.surrogate, self.reset, self.detach_reset,
                         self._input_name(), donate_input)

    def spec(self) -> dict[str, Any]:
        return {"type": "ALIF", "beta": _scalar(self.beta), "rho": _scalar(self.rho), "gamma": _scalar(self.gamma),
                "theta": _scalar(self.theta), "alpha": _scalar(self.alpha), "bias": _scalar(self.bias),
                "reset": self.reset, "surrogate": self.surrogate.spec(),
                "learn_beta": isinstance(self.beta, nn.Parameter),
                "learn_threshold": isinstance(self.theta, nn.Parameter), "detach_reset": self.detach_reset,
                "recurrent_features": self.recurrent_features}


class Integrator(NeuronLayer):
    """Non-spiking leaky integrator readout: v[t] = beta v[t-1] + x[t] + bias; output v[t].

    The usual output layer of a trained SNN: its membrane is read as class scores
    (see :func:`snn.losses.membrane_cross_entropy`). beta = 1 sums the input.
    """

    _parameter_names = ("beta", "bias")
    _state_type = functional.IntegratorState

    def __init__(self, beta: Number = 1.0, bias: Number = 0.0, learn_beta: bool = False) -> None:
        super().__init__(None)
        self._register("beta", beta, learn_beta)
        self._register("bias", bias, False)
        self._check_decay("beta")

    def parameters_now(self) -> functional.IntegratorParameters:
        """Effective (clamped) parameters used by the dynamics: beta in [0, 1]."""
        return functional.IntegratorParameters(self.beta.clamp(0, 1), self.bias)

    def _step(self):
        p = self.parameters_now()
        return lambda x, s: functional.integrator_step(x, s, p)

    def spec(self) -> dict[str, Any]:
        return {"type": "Integrator", "beta": _scalar(self.beta), "bias": _scalar(self.bias),
                "learn_beta": isinstance(self.beta, nn.Parameter)}


NEURON_TYPES: dict[str, type[NeuronLayer]] = {
    "IF": IF, "LIF": LIF, "CubaLIF": CubaLIF, "ALIF": ALIF, "Integrator": Integrator,
}

# Short names used on the command line.
NEURONS_BY_FLAG: dict[str, type[NeuronLayer]] = {"if": IF, "lif": LIF, "cuba": CubaLIF, "alif": ALIF}


def neuron_from_flag(name: str, **kwargs: Any) -> NeuronLayer:
    """Build a spiking neuron layer from its CLI name (``if``, ``lif``, ``cuba``, ``alif``)."""
    if name not in NEURONS_BY_FLAG:
        raise SpikeforgeError(f"unknown neuron {name!r}; choose one of {', '.join(NEURONS_BY_FLAG)}")
    return NEURONS_BY_FLAG[name](**kwargs)
