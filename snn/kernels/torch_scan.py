"""The torch-loop backend of the fused scan: any device, dtype and surrogate.

The algorithm of the compiled backends as a loop over T of torch operations: the forward
keeps the pre-reset membrane v; the backward recomputes the spikes, reset membranes,
currents and the ALIF trace from it and runs :func:`_adjoint_step` (the equations of
:mod:`snn.kernels`) down from t = T-1, calling ``surrogate.grad``. It runs what the
compiled backends cannot: a custom surrogate, another dtype, CUDA without triton.
"""

from __future__ import annotations

import torch

from snn.kernels.layout import PARAM_NAMES, FusedConfig, Saved, flat_parameters, membrane_backward_inputs
from snn.validation import NEURON_INPUT_FIX, check_finite

NAME = "torch"


def available(x: torch.Tensor, cfg: FusedConfig, forced: bool = False) -> bool:
    """Always: the fallback."""
    return True


def _step(xt: torch.Tensor, state, p, cfg: FusedConfig):
    """One forward step: ``(v[t], s[t], (i, vr, a))`` (the equations of :mod:`snn.kernels`)."""
    i, v, a = state
    alpha, beta, theta, bias, rho, gamma = p
    i = alpha * i + xt
    vt = beta * v + i + bias
    th = theta + gamma * a if cfg.adaptive else theta
    s = (vt - th > 0).to(xt.dtype)
    v = vt - s * th if cfg.subtract else vt * (1 - s)
    if cfg.adaptive:
        a = rho * a + s
    return vt, s, (i, v, a)


def _torch_forward(x, state, p, cfg: FusedConfig, store: bool):
    """Spikes, the final ``(i, v, a)`` and, with ``store``, the pre-reset membrane ``v [T, B, F]``."""
    state = tuple(t.clone() for t in state)
    spikes = torch.empty_like(x)
    vstore = torch.empty_like(x) if store else None
    for t in range(x.shape[0]):
        vt, spikes[t], state = _step(x[t], state, p, cfg)
        if store:
            vstore[t] = vt
    return spikes, state, vstore


def _recompute_spikes(vstore, a0, p, cfg: FusedConfig):
    """The forward's spikes from the stored membrane (same operations, so bit-identical),
    and for ALIF the trace ``a[t]`` after every step."""
    _, _, theta, _, rho, gamma = p
    if not cfg.adaptive:
        return (vstore - theta > 0).to(vstore.dtype), None
    spikes, a_trace, a = torch.empty_like(vstore), torch.empty_like(vstore), a0
    for t in range(vstore.shape[0]):
        spikes[t] = (vstore[t] - (theta + gamma * a) > 0).to(vstore.dtype)
        a = rho * a + spikes[t]
        a_trace[t] = a
    return spikes, a_trace


def _adjoint_step(v, s, th, gs_t, a_prev, vr_prev, i_prev, adjoints, p, cfg: FusedConfig, grads: dict):
    """One adjoint step (BPTT, step t): ``(dL/dx[t], (g_i, g_vr, g_a) of step t)`` from those of
    step t+1; adds the parameter-gradient increments into ``grads`` (alpha's only when
    ``i_prev``, the current i[t-1], is given)."""
    g_i, g_v, g_a = adjoints
    alpha, beta, _, _, rho, gamma = p
    if cfg.subtract:
        dv, dth, dr = g_v, -s * g_v, -th * g_v
    else:
        dv, dth, dr = g_v * (1 - s), torch.zeros_like(g_v), -v * g_v
    ds = gs_t
    if cfg.adaptive:
        ds = ds + g_a
    if not cfg.detach_reset:
        ds = ds + dr
    dz = ds * cfg.surrogate.grad(v - th)
    dv = dv + dz
    dth = dth - dz
    grads["theta"] += dth
    if cfg.adaptive:
        grads["gamma"] += dth * a_prev
        grads["rho"] += g_a * a_prev
        g_a = rho * g_a + gamma * dth
    grads["beta"] += dv * vr_prev
    grads["bias"] += dv
    g_v = beta * dv
    di = g_i + dv
    if i_prev is not None:
        grads["alpha"] += di * i_prev
    return di, (alpha * di, g_v, g_a)


def _torch_backward(gs, g_i, g_v, g_a, vstore, state0, p, cfg: FusedConfig, need_alpha: bool):
    """dL/dx, dL/d(initial state) and the parameter gradients per neuron ``{name: [B, F]}``."""
    i0, v0, a0 = state0
    _, beta, theta, bias, _, gamma = p
    spikes, a_trace = _recompute_spikes(vstore, a0, p, cfg)

    def a_at(t):  # a after step t; t = -1 is the initial trace
        return a_trace[t] if t >= 0 else a0

    def th_at(t):  # threshold used at step t
        return theta + gamma * a_at(t - 1) if cfg.adaptive else theta

    def vr_at(t):
        if t < 0:
            return v0
        return vstore[t] - spikes[t] * th_at(t) if cfg.subtract else vstore[t] * (1 - spikes[t])

    gx = torch.empty_like(gs)
    grads = {k: torch.zeros_like(v0) for k in PARAM_NAMES}
    adjoints = (g_i, g_v, g_a)
    for t in range(gs.shape[0] - 1, -1, -1):
        i_prev = None
        if need_alpha:
            i_prev = i0 if t == 0 else vstore[t - 1] - beta * vr_at(t - 2) - bias
        gx[t], adjoints = _adjoint_step(vstore[t], spikes[t], th_at(t), gs[t], a_at(t - 1) if cfg.adaptive else None,
                                        vr_at(t - 1), i_prev, adjoints, p, cfg, grads)
    return gx, adjoints, grads


# --------------------------------------------------------------------------- host side
def forward(x: torch.Tensor, state0, given: tuple[torch.Tensor, ...], param_shape: torch.Size, cfg: FusedConfig,
            needs: tuple[bool, ...], store: bool):
    """The torch-loop forward of :class:`~snn.kernels.scan.FusedScan`: ``(spikes, (i, v, a), Saved)``."""
    check_finite(x, cfg.input_name, NEURON_INPUT_FIX)
    params = flat_parameters(given, param_shape, x)
    if state0 is None:
        state0 = (x.new_zeros(x.shape[1:]),) * 3
    spikes, final, vstore = _torch_forward(x, state0, params.unbind(0), cfg, store)
    return spikes, final, Saved(vstore, (True, True, True))


def backward(ctx, gs, final_grads, vstore: torch.Tensor, state0, params: torch.Tensor,
             param_needs: tuple[bool, ...]):
    """The torch-loop backward of :class:`~snn.kernels.scan.FusedScan`: ``(dL/dx, state gradients
    at t = 0, [6] parameter gradients [F])``."""
    gs, finals, state0 = membrane_backward_inputs(ctx, gs, final_grads, vstore, state0)
    gx, state_grads, grads = _torch_backward(gs, *finals, vstore, state0, params.unbind(0), ctx.cfg,
                                             ctx.needs_input_grad[4])
    return gx, state_grads, [grads[k].sum(0) for k in PARAM_NAMES]
