"""The fused scan's autograd node: picks a backend from a table, saves what its backward reads.

A backend is a module with ``NAME``, ``available(x, cfg, forced) -> bool``,
``forward(x, state0, params, param_shape, cfg, needs, store) -> (spikes, (i, v, a), Saved)``
and ``backward(ctx, gs, final_grads, saved, state0, params, param_needs) -> (dL/dx, state
gradients, [6] parameter gradients)``. :data:`BACKENDS` lists them in order of preference;
the first available for the input runs, and the torch loop (available for everything) last.
``SPIKEFORGE_FUSED_BACKEND`` names one to force (it falls back to the torch loop where it
cannot run, but triton, which raises).
"""

from __future__ import annotations

import importlib
import math
import os
from types import ModuleType

import torch

from snn import functional
from snn.errors import SpikeforgeError
from snn.kernels import torch_scan
from snn.kernels.layout import FusedConfig, Saved, flat_parameters, per_feature
from snn.surrogate import Surrogate

# in order of preference; a name maps to its module, imported at first use (triton is slow to import)
BACKENDS: dict[str, str] = {"numba": "snn.kernels.numba_scan", "triton": "snn.kernels.triton_scan",
                            "torch": "snn.kernels.torch_scan"}
# the device a backend's inputs live on, checked before its module is imported; None: any
_DEVICES: dict[str, str | None] = {"numba": "cpu", "triton": "cuda", "torch": None}
FORCED_BACKEND: str | None = os.environ.get("SPIKEFORGE_FUSED_BACKEND") or None


def _backend(name: str) -> ModuleType:
    return importlib.import_module(BACKENDS[name])


def choose_backend(x: torch.Tensor, cfg: FusedConfig) -> ModuleType:
    """The first backend of :data:`BACKENDS` available for ``x`` and ``cfg`` (only the forced one,
    if ``SPIKEFORGE_FUSED_BACKEND`` names one; a forced backend runs on any device)."""
    if FORCED_BACKEND is not None and FORCED_BACKEND not in BACKENDS:
        raise SpikeforgeError(f"SPIKEFORGE_FUSED_BACKEND={FORCED_BACKEND!r} is not a fused backend; "
                              f"use one of {', '.join(BACKENDS)} or unset it")
    for name, device in _DEVICES.items():
        forced = FORCED_BACKEND == name
        if FORCED_BACKEND in (None, name) and (forced or device in (None, x.device.type)):
            backend = _backend(name)
            if backend.available(x, cfg, forced):
                return backend
    return torch_scan


class FusedScan(torch.autograd.Function):
    """``(x [T, B, F], i0, v0, a0 [B, F], alpha..gamma, cfg, param_shape) -> (spikes [T, B, F], i, v, a [B, F])``.

    ``i0 = v0 = a0 = None`` starts at rest (all zero) without materialising the zeros.
    Each parameter broadcasts to ``param_shape`` (``F`` = its number of elements); its
    gradient comes back in the parameter's own shape.

    Saved for the backward (:class:`~snn.kernels.layout.Saved`), one value per neuron-step
    plus ``[B, F]`` arrays and the parameters (per-feature ones as given; all-scalar ones as
    the ``[6, 1]`` copy the numba kernels read):

    - numba (CPU): the input ``x`` itself (a tensor that exists anyway, so the forward
      writes nothing extra) and the initial state; the backward replays the forward per
      work item to rebuild v.
    - Triton and the torch loop: the pre-reset membrane ``v [T, B, F]`` (as SpikingJelly);
      spikes, reset membranes, currents and the ALIF trace are recomputed from it. An
      initial state is kept only where a gradient needs it (``i0`` for alpha, ``v0`` for
      alpha and beta, ``a0`` for ALIF); the kernels get an empty stand-in otherwise.
    """

    @staticmethod
    def forward(ctx, x, i0, v0, a0, alpha, beta, theta, bias, rho, gamma, cfg: FusedConfig,  # type: ignore[override]
                param_shape: torch.Size):
        store = torch.is_grad_enabled() or any(ctx.needs_input_grad)
        given = (alpha, beta, theta, bias, rho, gamma)
        zero_state = i0 is None
        backend = choose_backend(x, cfg)
        spikes, (i, v, a), saved = backend.forward(x, None if zero_state else (i0, v0, a0), given, param_shape, cfg,
                                                   ctx.needs_input_grad, store)
        if store:
            _save(ctx, saved, (i0, v0, a0), given, zero_state, x.shape[1:], param_shape)
        ctx.cfg, ctx.backend = cfg, backend
        return spikes, i, v, a

    @staticmethod
    def backward(ctx, gs, g_i, g_v, g_a):  # type: ignore[override]
        saved, i0, v0, a0, *given = ctx.saved_tensors  # saved: x (numba) or the membrane v (otherwise)
        uniform = ctx.uniform_params is not None
        params = ctx.uniform_params if uniform else flat_parameters(given, ctx.param_shape, saved)
        needs = ctx.needs_input_grad
        param_needs = tuple(bool(n) for n in needs[4:10])
        if not ctx.cfg.adaptive:  # rho and gamma do not enter the CUBA dynamics
            param_needs = param_needs[:4] + (False, False)
        gx, (g_i, g_v, g_a), flat_grads = ctx.backend.backward(ctx, gs, (g_i, g_v, g_a), saved, (i0, v0, a0), params,
                                                               param_needs)
        param_grads = [None if not needs[4 + j] else
                       torch.zeros(shape, dtype=dtype, device=device) if g is None else
                       g.reshape(ctx.param_shape).sum_to_size(shape).to(dtype)
                       for j, (g, (shape, dtype, device)) in enumerate(zip(flat_grads, ctx.param_meta))]
        state_grads = [None] * 3 if ctx.zero_state else [g if n else None for g, n in zip((g_i, g_v, g_a), needs[1:4])]
        return (gx, *state_grads, *param_grads, None, None)


def _save(ctx, saved: Saved, state0, given, zero_state: bool, state_shape: torch.Size, param_shape: torch.Size):
    """Keep what the backward reads: the saved ``[T, B, F]`` tensor, the initial states it reads,
    per-feature parameters as given ([6, F] can be ~1 MiB for a conv layer; re-expanded in
    backward) and for all-scalar parameters the [6, 1] copy the kernels read; the parameters'
    shapes and dtypes shape their gradients (keeping the tensors would add their bytes for nothing)."""
    uniform = saved.uniform_params is not None
    ctx.save_for_backward(saved.tensor, *(None if zero_state or not k else s for s, k in zip(state0, saved.keep)),
                          *((None,) * 6 if uniform else given))
    ctx.param_meta = tuple((p.shape, p.dtype, p.device) for p in given)
    ctx.state_shape, ctx.param_shape, ctx.zero_state, ctx.keep = state_shape, param_shape, zero_state, saved.keep
    ctx.uniform_params = saved.uniform_params
    ctx.instant_current = saved.instant_current


def fused_scan(x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None,
               params: tuple[torch.Tensor, ...], cfg: FusedConfig):
    """Run the fused scan on ``x [T, B, ...]`` from ``state = (i0, v0, a0)`` (None: all zero);
    returns spikes and the final ``(i, v, a)``."""
    steps, step_shape = x.shape[0], x.shape[1:]
    param_shape = x.shape[2:] if per_feature(x, params) else step_shape
    features = math.prod(param_shape)
    batch = math.prod(step_shape) // features if features else 0
    start = [None] * 3 if state is None else [s.expand(step_shape).reshape(batch, features).contiguous()
                                              for s in state]
    flat = x.dim() == 3 and features == x.shape[2]  # already [T, B, F]: no reshape (each is an autograd node)
    spikes, i, v, a = FusedScan.apply(x if flat else x.reshape(steps, batch, features), *start, *params, cfg,
                                      param_shape)
    if flat:
        return spikes, i, v, a
    a = a.reshape(step_shape) if cfg.adaptive else a  # CUBA: an unused stand-in
    return spikes.reshape(x.shape), i.reshape(step_shape), v.reshape(step_shape), a


def cuba_scan(x: torch.Tensor, state: functional.CubaState | None, p: functional.CubaParameters, surrogate: Surrogate,
              reset: str = "subtract", detach_reset: bool = True,
              input_name: str = "neuron input", donate_input: bool = False
              ) -> tuple[torch.Tensor, functional.CubaState]:
    """Fused equivalent of ``scan(cuba_step, ...)`` (``state=None``: start at rest, all zero):
    spikes ``[T, B, ...]`` and the final state. NaN or infinity in ``x`` raises
    :class:`SpikeforgeError` naming ``input_name``. ``donate_input``: see :attr:`FusedConfig.donated_input`."""
    zero = torch.zeros((), dtype=x.dtype, device=x.device)
    cfg = FusedConfig(surrogate, reset, detach_reset, adaptive=False, input_name=input_name,
                      donated_input=donate_input)
    start = None if state is None else (state.i, state.v, zero)
    spikes, i, v, _ = fused_scan(x, start, (p.alpha, p.beta, p.theta, p.bias, zero, zero), cfg)
    return spikes, functional.CubaState(i, v)


def alif_scan(x: torch.Tensor, state: functional.AlifState | None, p: functional.AlifParameters, surrogate: Surrogate,
              reset: str = "subtract", detach_reset: bool = True,
              input_name: str = "neuron input", donate_input: bool = False
              ) -> tuple[torch.Tensor, functional.AlifState]:
    """Fused equivalent of ``scan(alif_step, ...)`` (``state=None``: start at rest, all zero):
    spikes ``[T, B, ...]`` and the final state. NaN or infinity in ``x`` raises
    :class:`SpikeforgeError` naming ``input_name``. ``donate_input``: see :attr:`FusedConfig.donated_input`."""
    cfg = FusedConfig(surrogate, reset, detach_reset, adaptive=True, input_name=input_name,
                      donated_input=donate_input)
    spikes, i, v, a = fused_scan(x, None if state is None else tuple(state), tuple(p), cfg)
    return spikes, functional.AlifState(i, v, a)
