"""Event-driven batch-1 streaming inference on CPU: cost follows input activity.

A dense simulation multiplies the whole weight matrix with every input frame. Here each
fully connected layer keeps its weight transposed, ``W^T [in, out]``, so that the weight
row of input j is contiguous, and per step adds only the rows of the inputs that are
non-zero (the ones that spiked)::

    I[t] = b + sum_{j : x_j[t] != 0} x_j[t] * W^T[j, :]

The neuron layer after it then runs the dynamics contract on ``I`` (the fused kernel of
:mod:`snn.kernels`, forward only). Spikes of one layer are the events of the next. State is
kept between calls, so a stream can be fed in chunks of any length::

    net = EventDrivenNetwork.from_sequential(model)      # Linear / neuron stacks
    out = net.run(frames)     # frames [T, in] (one sample, no batch axis) -> [T, out]
    net.reset()               # back to rest

Supported layers: ``nn.Flatten`` (a no-op for one sample), ``nn.Linear``, and the spiking
layers IF, LIF, CubaLIF, ALIF (not recurrent) and :class:`~snn.neurons.Integrator`. The
result equals the dense simulation up to float rounding of the sum order. A layer with
snnTorch's ``"subtract-delayed"`` reset (no fused kernel) runs its step function instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from snn import functional
from snn.errors import SpikeforgeError
from snn.kernels import FusedConfig, FusedScan, numba_available
from snn.kernels.event_linear import check_event_operands, event_currents
from snn.kernels.jit_cache import call
from snn.neurons import ALIF, CubaFamily, Integrator, NeuronLayer

if numba_available():
    from numba import njit

    @njit(cache=True, nogil=True)
    def _integrate(x, beta, bias, v):
        """Leaky integrator readout: v = beta v + x[t] + bias; returns the trace."""
        out = np.empty_like(x)
        for t in range(x.shape[0]):
            for k in range(x.shape[1]):
                v[k] = beta[k] * v[k] + x[t, k] + bias[k]
                out[t, k] = v[k]
        return out


def _currents_torch(x: np.ndarray, weight_t: np.ndarray, bias: np.ndarray) -> np.ndarray:
    out = np.empty((x.shape[0], weight_t.shape[1]), dtype=weight_t.dtype)
    for t in range(x.shape[0]):
        active = np.nonzero(x[t])[0]
        out[t] = bias + x[t, active] @ weight_t[active]
    return out


@dataclass
class _Linear:
    weight_t: np.ndarray  # [in, out], contiguous rows per input
    bias: np.ndarray
    name: str = "Linear"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Currents ``[T, out]`` of events ``x [T, in]``; a width other than ``in`` is refused (no kernel runs)."""
        x = np.ascontiguousarray(x, dtype=self.weight_t.dtype)
        check_event_operands(x, self.weight_t, self.bias, self.name)
        if numba_available():
            return event_currents(x, self.weight_t, self.bias, self.name)
        return _currents_torch(x, self.weight_t, self.bias)


class _Neuron:
    """A spiking layer's parameters as flat arrays and its state, kept between calls."""

    def __init__(self, layer: NeuronLayer, width: int, dtype: torch.dtype) -> None:
        if layer.recurrent is not None:
            raise SpikeforgeError(f"{type(layer).__name__} with a recurrent weight cannot run event-driven; "
                                  "use the dense simulation (model(x)) for recurrent layers")
        self.layer = layer
        self.integrator = isinstance(layer, Integrator)
        shape = torch.Size([width])
        with torch.no_grad():
            if self.integrator:
                p = tuple(layer.parameters_now())
            elif isinstance(layer, ALIF):
                p = tuple(layer.parameters_now())
            elif isinstance(layer, CubaFamily):
                zero = torch.zeros(())
                p = (*layer.parameters_now(), zero, zero)
            else:
                raise SpikeforgeError(f"event-driven inference does not support {type(layer).__name__}")
            try:
                self.params = tuple(q.to(dtype).expand(shape).contiguous() for q in p)
            except RuntimeError as error:
                sizes = ", ".join(str(tuple(q.shape)) for q in p)
                raise SpikeforgeError(f"{type(layer).__name__} parameters of shapes {sizes} do not fit its {width} "
                                      "neurons; give one value or one per neuron") from error
        self.width, self.dtype = width, dtype
        self.stepwise = getattr(layer, "reset", None) in functional.DELAYED_RESETS  # no fused kernel for it
        self.reset()

    def reset(self) -> None:
        shape = (self.width,) if self.integrator else (1, self.width)  # FusedScan keeps state as [B, F]
        self.state = tuple(torch.zeros(shape, dtype=self.dtype) for _ in range(1 if self.integrator else 3))

    def __call__(self, currents: np.ndarray) -> np.ndarray:
        """Outputs ``[T, width]`` of currents ``[T, width]`` (other shapes and dtypes are refused: the
        kernels index the parameter and state arrays by the currents' width without bounds checks)."""
        expected = np.dtype(str(self.dtype).removeprefix("torch."))
        if currents.ndim != 2 or currents.shape[1] != self.width or currents.dtype != expected:
            raise SpikeforgeError(f"{type(self.layer).__name__} layer of {self.width} neurons got currents of shape "
                                  f"{tuple(currents.shape)} ({currents.dtype}), expected [T, {self.width}] "
                                  f"({expected})")
        currents = np.ascontiguousarray(currents)
        if self.integrator:
            (v,) = self.state
            if numba_available():
                return call(_integrate, currents, self.params[0].numpy(), self.params[1].numpy(), v.numpy())
            out = np.empty_like(currents)
            for t in range(currents.shape[0]):
                v.mul_(self.params[0]).add_(torch.from_numpy(currents[t])).add_(self.params[1])
                out[t] = v.numpy()
            return out
        if self.stepwise:
            return self._steps(currents)
        cfg = FusedConfig(self.layer.surrogate, self.layer.reset, self.layer.detach_reset,
                          adaptive=isinstance(self.layer, ALIF))
        with torch.no_grad():
            spikes, i, v, a = FusedScan.apply(torch.from_numpy(currents)[:, None], *self.state, *self.params, cfg,
                                              torch.Size([self.width]))
        self.state = (i, v, a)
        return spikes[:, 0].numpy()

    def _steps(self, currents: np.ndarray) -> np.ndarray:
        """The layer's own step function, one step at a time (the CUBA family's delayed reset)."""
        alpha, beta, theta, bias = self.params[:4]
        step, p = functional.cuba_step, functional.CubaParameters(alpha, beta, theta, bias)
        state = functional.CubaState(self.state[0], self.state[1])
        out = np.empty_like(currents)
        with torch.no_grad():
            for t in range(currents.shape[0]):
                s, state = step(torch.from_numpy(currents[t])[None], state, p, self.layer.surrogate,
                                self.layer.reset, self.layer.detach_reset)
                out[t] = s[0].numpy()
        self.state = (state.i, state.v, self.state[2])
        return out


class EventDrivenNetwork:
    """Batch-1 streaming simulation of a Linear / neuron stack that only touches active inputs."""

    def __init__(self, stages: list) -> None:
        self.stages = stages

    @classmethod
    def from_sequential(cls, model: nn.Module, dtype: torch.dtype = torch.float32) -> "EventDrivenNetwork":
        """Build from a :class:`snn.network.Sequential` (or any iterable of modules)."""
        stages: list = []
        width: int | None = None
        for index, module in enumerate(model):
            if isinstance(module, nn.Flatten):
                continue
            if isinstance(module, nn.Linear):
                w = module.weight.detach().to(dtype)
                if width is not None and w.shape[1] != width:
                    raise SpikeforgeError(f"layer {index} (Linear) has in_features {w.shape[1]} but the layer "
                                          f"before it gives {width} features; fix the network's layer sizes")
                b = torch.zeros(w.shape[0], dtype=dtype) if module.bias is None else module.bias.detach().to(dtype)
                stages.append(_Linear(np.ascontiguousarray(w.t().numpy()), b.numpy().copy(),
                                      f"layer {index} (Linear)"))
                width = w.shape[0]
            elif isinstance(module, NeuronLayer):
                if width is None:
                    raise SpikeforgeError("event-driven inference needs a Linear layer before each neuron layer")
                stages.append(_Neuron(module, width, dtype))
            else:
                raise SpikeforgeError(f"event-driven inference supports Flatten, Linear and neuron layers, not "
                                      f"{type(module).__name__}; run the model densely (model(x)) instead")
        if not stages:
            raise SpikeforgeError("the model has no layers to run")
        return cls(stages)

    def reset(self) -> None:
        """Return every neuron to rest (start a new stream)."""
        for stage in self.stages:
            if isinstance(stage, _Neuron):
                stage.reset()

    def run(self, frames: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Feed ``frames [T, in]`` (or ``[T, 1, ...]``, one sample); return the last layer's ``[T, out]``."""
        x = frames.detach().cpu().numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
        if x.ndim < 2:
            raise SpikeforgeError(f"frames must be [T, features...] for one sample, got shape {tuple(x.shape)}")
        h = x.reshape(x.shape[0], -1)
        first = self.stages[0]
        if isinstance(first, _Linear) and h.shape[1] != first.weight_t.shape[0]:
            raise SpikeforgeError(f"frames have {h.shape[1]} features per step but the network's first layer "
                                  f"({first.name}) takes {first.weight_t.shape[0]}; feed frames [T, "
                                  f"{first.weight_t.shape[0]}]")
        for stage in self.stages:
            h = stage(h)
        return torch.from_numpy(np.ascontiguousarray(h))

    def step(self, frame: torch.Tensor | np.ndarray) -> torch.Tensor:
        """One step of the stream: ``frame [in]`` -> ``[out]``."""
        x = frame.detach().cpu().numpy() if isinstance(frame, torch.Tensor) else np.asarray(frame)
        return self.run(x.reshape(1, -1))[0]


def dense_step_simulation(model: nn.Module, frames: torch.Tensor) -> torch.Tensor:
    """Reference: the same stack stepped one frame at a time with dense matmuls (batch 1).

    A lean loop (``torch.nn.functional.linear`` and each layer's step function), so that a
    comparison measures the arithmetic, not framework overhead.
    """
    layers = [m for m in model if not isinstance(m, nn.Flatten)]
    steps = [m._step() if isinstance(m, NeuronLayer) else None for m in layers]
    states: list = [None] * len(layers)
    outputs = []
    with torch.no_grad():
        for t in range(frames.shape[0]):
            h = frames[t].reshape(1, -1)
            for k, layer in enumerate(layers):
                if steps[k] is None:
                    h = torch.nn.functional.linear(h, layer.weight, layer.bias)
                else:
                    if states[k] is None:
                        states[k] = functional.initial_state(layer._state_type, h)
                    h, states[k] = steps[k](h, states[k])
            outputs.append(h[0])
    return torch.stack(outputs)
