"""Fused multi-step neurons: the whole time loop in one autograd node, BPTT written by hand.

The step-by-step path (:func:`snn.functional.scan`) builds one autograd graph node per
operation per step and keeps every intermediate tensor alive for the backward pass. This
module runs the same dynamics contract (:mod:`snn.functional`) for the CUBA-LIF family and
ALIF as one custom :class:`torch.autograd.Function`:

forward, per neuron m and step t (ALIF; CUBA-LIF is gamma = rho = 0, LIF alpha = 0, IF beta = 1)::

    i[t] = alpha i[t-1] + x[t];  v[t] = beta vr[t-1] + i[t] + bias
    th[t] = theta + gamma a[t-1];  s[t] = H(v[t] - th[t])
    vr[t] = v[t] - s[t] th[t]  (subtract)  |  v[t] (1 - s[t])  (zero);  a[t] = rho a[t-1] + s[t]

backward (adjoints g_*, running from t = T-1 down to 0; r = s, or 0 with ``detach_reset``)::

    subtract: g_v = g_vr, g_th = -s g_vr, g_s += -th g_vr (if not detached)
    zero:     g_v = g_vr (1 - s),         g_s += -v g_vr  (if not detached)
    g_s += dL/ds[t] + g_a;  g_z = g_s sigma'(v - th);  g_v += g_z;  g_th -= g_z
    g_theta += g_th;  g_gamma += g_th a[t-1];  g_rho += g_a a[t-1];  g_a <- rho g_a + gamma g_th
    g_beta += g_v vr[t-1];  g_bias += g_v;  g_vr <- beta g_v
    g_i = g_i + g_v;  dL/dx[t] = g_i;  g_alpha += g_i i[t-1];  g_i <- alpha g_i

Memory kept for the backward: the pre-reset membrane v ``[T, N]`` in the input dtype and
the spikes as ``uint8``; everything else (vr[t-1] from v[t-1] and s[t-1]; i[t-1] as
v[t-1] - beta vr[t-2] - bias; the ALIF trace a from the spikes) is recomputed.

On CPU the loops run in numba-compiled kernels over contiguous ``[T, N]`` arrays,
parallel over blocks of neurons (float32 and float64). The five built-in surrogates are
implemented in the kernel by name and slope; a custom surrogate (or a CUDA tensor) runs
the same algorithm as a torch loop over T, calling ``surrogate.grad``. Forward spikes are
bit-identical to the step-by-step path: the kernel performs the same rounded operations
in the same order.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
import torch

from snn import functional as F
from snn.surrogate import Surrogate

try:  # numba is optional at import time; without it the torch-loop path runs everywhere
    import numba
    from numba import njit, prange
except ImportError:  # pragma: no cover - exercised only where numba is missing
    numba = None

SURROGATE_CODES: dict[str, int] = {"fast_sigmoid": 0, "arctan": 1, "sigmoid": 2, "triangle": 3, "boxcar": 4}
_BUILTIN_CLASSES: set[str] = {"FastSigmoid", "ArcTan", "Sigmoid", "Triangle", "Boxcar"}
CHUNK = 2048  # neurons per parallel work item: a chunk's state stays in L1 while t advances
# Kernels run on one thread below this many elements (T*N): thread start-up and, on a shared
# machine, waiting for the slowest thread cost more than they save. None: always serial.
PARALLEL_MIN_ELEMENTS: int | None = int(os.environ.get("SPIKEFORGE_FUSED_PARALLEL_MIN", 1 << 22))


@dataclass(frozen=True)
class FusedConfig:
    """Non-tensor settings of one fused scan."""

    surrogate: Surrogate
    reset: str = "subtract"
    detach_reset: bool = True
    adaptive: bool = False  # ALIF: threshold trace a, parameters rho and gamma

    @property
    def kernel_code(self) -> int:
        """Surrogate code for the compiled kernel, or -1 when the torch loop must run."""
        if type(self.surrogate).__name__ in _BUILTIN_CLASSES and self.surrogate.name in SURROGATE_CODES:
            return SURROGATE_CODES[self.surrogate.name]
        return -1


def numba_available() -> bool:
    return numba is not None


# --------------------------------------------------------------------------- numba kernels
if numba is not None:

    @njit(inline="always", cache=True)
    def _sg(code, k, z):
        if code == 0:
            d = 1.0 + k * abs(z)
            return 1.0 / (d * d)
        if code == 1:
            u = math.pi / 2 * k * z
            return (k / 2) / (1.0 + u * u)
        if code == 2:
            e = 1.0 / (1.0 + math.exp(-k * z))
            return k * e * (1.0 - e)
        if code == 3:
            return k * max(0.0, 1.0 - k * abs(z))
        return k if abs(k * z) < 0.5 else 0.0

    @njit(cache=True)
    def _forward_range(lo, hi, x, i_state, v_state, a_state, alpha, beta, theta, bias, rho, gamma,
                       subtract, adaptive, store, spikes, spikes_u8, vstore):
        """Steps 0..T-1 for neurons lo..hi-1: time outer, neurons inner (independent, SIMD-friendly)."""
        for t in range(x.shape[0]):
            xr, sr = x[t], spikes[t]
            for m in range(lo, hi):
                i = alpha[m] * i_state[m] + xr[m]
                v = beta[m] * v_state[m] + i + bias[m]
                th = theta[m] + gamma[m] * a_state[m] if adaptive else theta[m]
                fire = v - th > 0
                if store:
                    vstore[t, m] = v
                    spikes_u8[t, m] = 1 if fire else 0
                sr[m] = 1 if fire else 0
                i_state[m] = i
                # v - 1*th == v - th and v*(1-1) == 0 exactly: the reference's rounding
                if subtract:
                    v_state[m] = v - th if fire else v
                else:
                    v_state[m] = 0 if fire else v
                if adaptive:
                    a_state[m] = rho[m] * a_state[m] + (1 if fire else 0)

    @njit(cache=True, nogil=True)
    def _forward_serial(x, i_state, v_state, a_state, alpha, beta, theta, bias, rho, gamma,
                        subtract, adaptive, store, spikes, spikes_u8, vstore):
        _forward_range(0, x.shape[1], x, i_state, v_state, a_state, alpha, beta, theta, bias, rho, gamma,
                       subtract, adaptive, store, spikes, spikes_u8, vstore)

    @njit(parallel=True, cache=True, nogil=True)
    def _forward_parallel(x, i_state, v_state, a_state, alpha, beta, theta, bias, rho, gamma,
                          subtract, adaptive, store, spikes, spikes_u8, vstore):
        n = x.shape[1]
        for c in prange((n + CHUNK - 1) // CHUNK):
            _forward_range(c * CHUNK, min(n, c * CHUNK + CHUNK), x, i_state, v_state, a_state, alpha, beta,
                           theta, bias, rho, gamma, subtract, adaptive, store, spikes, spikes_u8, vstore)

    @njit(cache=True)
    def _backward_range(lo, hi, gs, g_i, g_v, g_a, spikes_u8, vstore, i0, v0, a0, alpha, beta, theta, bias, rho,
                        gamma, subtract, adaptive, detach, need_alpha, code, slope, a_trace,
                        gx, galpha, gbeta, gtheta, gbias, grho, ggamma):
        """Reverse sweep over neurons lo..hi-1; the inner loop has no t-dependent branch.

        Row t-1 (membrane, spikes, threshold trace) is read for vr[t-1]; the initial state
        stands in for row -1 with "no spike". i[t] = v[t] - beta vr[t-1] - bias is formed at
        step t and meets dL/di[t+1] kept from the previous iteration (for g_alpha).
        """
        steps = gs.shape[0]
        if adaptive:  # a[t] from the spikes, forward order; a_trace[t] = a after step t
            for m in range(lo, hi):
                a_trace[0, m] = rho[m] * a0[m] + spikes_u8[0, m]
            for t in range(1, steps):
                for m in range(lo, hi):
                    a_trace[t, m] = rho[m] * a_trace[t - 1, m] + spikes_u8[t, m]
        no_spike = np.zeros(hi, np.uint8)
        di_next = np.zeros(hi, gs.dtype)
        for t in range(steps - 1, -1, -1):
            v_row, s_row, gs_row, gx_row = vstore[t], spikes_u8[t], gs[t], gx[t]
            vp_row = vstore[t - 1] if t > 0 else v0
            sp_row = spikes_u8[t - 1] if t > 0 else no_spike
            a_prev_row = a_trace[t - 1] if t > 0 else a0       # a[t-1]: threshold of step t
            a_pp_row = a_trace[t - 2] if t > 1 else a0         # a[t-2]: threshold of step t-1
            for m in range(lo, hi):
                th = theta[m] + gamma[m] * a_prev_row[m] if adaptive else theta[m]
                v = v_row[m]
                s = 1.0 if s_row[m] else 0.0
                gvr = g_v[m]
                if subtract:
                    dv = gvr
                    dth = -s * gvr
                    dr = -th * gvr
                else:
                    dv = gvr * (1.0 - s)
                    dth = 0.0 * gvr
                    dr = -v * gvr
                ds = gs_row[m] + (g_a[m] if adaptive else 0.0) + (0.0 if detach else dr)
                dz = ds * _sg(code, slope, v - th)
                dv += dz
                dth -= dz
                gtheta[m] += dth
                if adaptive:
                    ggamma[m] += dth * a_prev_row[m]
                    grho[m] += g_a[m] * a_prev_row[m]
                    g_a[m] = rho[m] * g_a[m] + gamma[m] * dth
                # vr[t-1] exactly as the forward formed it
                vp = vp_row[m]
                if sp_row[m]:
                    th_p = theta[m] + gamma[m] * a_pp_row[m] if adaptive else theta[m]
                    vp = vp - th_p if subtract else 0.0 * vp
                gbeta[m] += dv * vp
                gbias[m] += dv
                g_v[m] = beta[m] * dv
                di = g_i[m] + dv
                gx_row[m] = di
                if need_alpha:
                    galpha[m] += di_next[m] * (v - beta[m] * vp - bias[m])  # dL/di[t+1] * i[t]
                    di_next[m] = di
                g_i[m] = alpha[m] * di
        if need_alpha:
            for m in range(lo, hi):
                galpha[m] += di_next[m] * i0[m]


    @njit(cache=True, nogil=True)
    def _backward_serial(gs, g_i, g_v, g_a, spikes_u8, vstore, i0, v0, a0, alpha, beta, theta, bias, rho,
                         gamma, subtract, adaptive, detach, need_alpha, code, slope, a_trace,
                         gx, galpha, gbeta, gtheta, gbias, grho, ggamma):
        """Reverse sweep; g_i, g_v, g_a hold dL/d(final state) on entry, dL/d(initial state) on exit."""
        _backward_range(0, gs.shape[1], gs, g_i, g_v, g_a, spikes_u8, vstore, i0, v0, a0, alpha, beta, theta,
                        bias, rho, gamma, subtract, adaptive, detach, need_alpha, code, slope, a_trace,
                        gx, galpha, gbeta, gtheta, gbias, grho, ggamma)

    @njit(parallel=True, cache=True, nogil=True)
    def _backward_parallel(gs, g_i, g_v, g_a, spikes_u8, vstore, i0, v0, a0, alpha, beta, theta, bias, rho,
                           gamma, subtract, adaptive, detach, need_alpha, code, slope, a_trace,
                           gx, galpha, gbeta, gtheta, gbias, grho, ggamma):
        n = gs.shape[1]
        for c in prange((n + CHUNK - 1) // CHUNK):
            _backward_range(c * CHUNK, min(n, c * CHUNK + CHUNK), gs, g_i, g_v, g_a, spikes_u8, vstore, i0, v0,
                            a0, alpha, beta, theta, bias, rho, gamma, subtract, adaptive, detach, need_alpha,
                            code, slope, a_trace, gx, galpha, gbeta, gtheta, gbias, grho, ggamma)


# --------------------------------------------------------------------------- torch loops
def _torch_forward(x, state, p, cfg: FusedConfig, store: bool):
    i, v, a = (t.clone() for t in state)
    alpha, beta, theta, bias, rho, gamma = p
    spikes = torch.empty_like(x)
    vstore = torch.empty_like(x) if store else None
    for t in range(x.shape[0]):
        i = alpha * i + x[t]
        vt = beta * v + i + bias
        th = theta + gamma * a if cfg.adaptive else theta
        s = (vt - th > 0).to(x.dtype)
        if store:
            vstore[t] = vt
        spikes[t] = s
        v = vt - s * th if cfg.reset == "subtract" else vt * (1 - s)
        if cfg.adaptive:
            a = rho * a + s
    return spikes, (i, v, a), vstore


def _torch_backward(gs, g_i, g_v, g_a, spikes, vstore, state0, p, cfg: FusedConfig, need_alpha: bool):
    i0, v0, a0 = state0
    alpha, beta, theta, bias, rho, gamma = p
    steps = gs.shape[0]
    subtract = cfg.reset == "subtract"
    a_trace = []
    if cfg.adaptive:
        a = a0
        for t in range(steps):
            a = rho * a + spikes[t]
            a_trace.append(a)

    def a_at(t):  # a after step t; t = -1 is the initial trace
        return a_trace[t] if t >= 0 else a0

    def th_at(t):  # threshold used at step t
        return theta + gamma * a_at(t - 1) if cfg.adaptive else theta

    def vr_at(t):
        if t < 0:
            return v0
        return vstore[t] - spikes[t] * th_at(t) if subtract else vstore[t] * (1 - spikes[t])

    gx = torch.empty_like(gs)
    grads = {k: torch.zeros_like(v0) for k in ("alpha", "beta", "theta", "bias", "rho", "gamma")}
    for t in range(steps - 1, -1, -1):
        v, s, th = vstore[t], spikes[t], th_at(t)
        if subtract:
            dv, dth, dr = g_v, -s * g_v, -th * g_v
        else:
            dv, dth, dr = g_v * (1 - s), torch.zeros_like(g_v), -v * g_v
        ds = gs[t]
        if cfg.adaptive:
            ds = ds + g_a
        if not cfg.detach_reset:
            ds = ds + dr
        dz = ds * cfg.surrogate.grad(v - th)
        dv = dv + dz
        dth = dth - dz
        grads["theta"] += dth
        if cfg.adaptive:
            a_prev = a_at(t - 1)
            grads["gamma"] += dth * a_prev
            grads["rho"] += g_a * a_prev
            g_a = rho * g_a + gamma * dth
        grads["beta"] += dv * vr_at(t - 1)
        grads["bias"] += dv
        g_v = beta * dv
        di = g_i + dv
        gx[t] = di
        if need_alpha:
            i_prev = i0 if t == 0 else vstore[t - 1] - beta * vr_at(t - 2) - bias
            grads["alpha"] += di * i_prev
        g_i = alpha * di
    return gx, (g_i, g_v, g_a), grads


# --------------------------------------------------------------------------- autograd function
_PARAM_NAMES = ("alpha", "beta", "theta", "bias", "rho", "gamma")


def _use_kernel(x: torch.Tensor, cfg: FusedConfig) -> bool:
    return (numba is not None and x.device.type == "cpu" and cfg.kernel_code >= 0
            and x.dtype in (torch.float32, torch.float64))


def _parallel(x: torch.Tensor) -> bool:
    """Split neurons across numba threads only for big work (see ``PARALLEL_MIN_ELEMENTS``)."""
    return PARALLEL_MIN_ELEMENTS is not None and x.numel() >= PARALLEL_MIN_ELEMENTS and numba.get_num_threads() > 1


class FusedScan(torch.autograd.Function):
    """``(x [T, N], i0, v0, a0 [N], alpha..gamma [N]) -> (spikes [T, N], i, v, a [N])``."""

    @staticmethod
    def forward(ctx, x, i0, v0, a0, alpha, beta, theta, bias, rho, gamma, cfg: FusedConfig):  # type: ignore[override]
        store = torch.is_grad_enabled() or any(ctx.needs_input_grad)
        params = (alpha, beta, theta, bias, rho, gamma)
        if _use_kernel(x, cfg):
            xs = x.contiguous()
            i, v, a = i0.clone(), v0.clone(), a0.clone()
            spikes = torch.empty_like(xs)
            spikes_u8 = torch.empty(xs.shape if store else (1, 1), dtype=torch.uint8)
            vstore = torch.empty(xs.shape if store else (1, 1), dtype=xs.dtype)
            kernel = _forward_parallel if _parallel(xs) else _forward_serial
            kernel(xs.numpy(), i.numpy(), v.numpy(), a.numpy(), *(q.numpy() for q in params),
                            cfg.reset == "subtract", cfg.adaptive, store, spikes.numpy(), spikes_u8.numpy(),
                            vstore.numpy())
        else:
            spikes, (i, v, a), vstore = _torch_forward(x, (i0, v0, a0), params, cfg, store)
            spikes_u8 = spikes.to(torch.uint8) if store else None
        if store:
            ctx.save_for_backward(spikes_u8, vstore, i0, v0, a0, *params)
        ctx.cfg = cfg
        return spikes, i, v, a

    @staticmethod
    def backward(ctx, gs, g_i, g_v, g_a):  # type: ignore[override]
        spikes_u8, vstore, i0, v0, a0, *params = ctx.saved_tensors
        cfg: FusedConfig = ctx.cfg
        need_alpha = ctx.needs_input_grad[4]
        g_i, g_v, g_a = (torch.zeros_like(v0) if g is None else g.contiguous().clone() for g in (g_i, g_v, g_a))
        gs = torch.zeros_like(vstore) if gs is None else gs.contiguous()
        if _use_kernel(vstore, cfg):
            gx = torch.empty_like(gs)
            grads = {k: torch.zeros_like(v0) for k in _PARAM_NAMES}
            a_trace = torch.empty(gs.shape if cfg.adaptive else (1, 1), dtype=gs.dtype)
            kernel = _backward_parallel if _parallel(gs) else _backward_serial
            kernel(gs.numpy(), g_i.numpy(), g_v.numpy(), g_a.numpy(), spikes_u8.numpy(), vstore.numpy(),
                             i0.numpy(), v0.numpy(), a0.numpy(), *(q.numpy() for q in params),
                             cfg.reset == "subtract", cfg.adaptive, cfg.detach_reset, need_alpha,
                             cfg.kernel_code, float(cfg.surrogate.slope), a_trace.numpy(), gx.numpy(),
                             *(grads[k].numpy() for k in _PARAM_NAMES))
        else:
            gx, (g_i, g_v, g_a), grads = _torch_backward(gs, g_i, g_v, g_a, spikes_u8.to(gs.dtype), vstore,
                                                         (i0, v0, a0), params, cfg, need_alpha)
        needs = ctx.needs_input_grad
        param_grads = [grads[k] if needs[4 + j] else None for j, k in enumerate(_PARAM_NAMES)]
        return (gx, g_i if needs[1] else None, g_v if needs[2] else None, g_a if needs[3] else None,
                *param_grads, None)


def _flat(p: torch.Tensor, feature_shape: torch.Size, like: torch.Tensor) -> torch.Tensor:
    """A parameter broadcast to one step of input and flattened to ``[N]``."""
    return p.to(like.dtype).expand(feature_shape).reshape(-1).contiguous()


def _unflat(t: torch.Tensor, feature_shape: torch.Size) -> torch.Tensor:
    return t.reshape(feature_shape)


def fused_scan(x: torch.Tensor, i0: torch.Tensor, v0: torch.Tensor, a0: torch.Tensor,
               params: tuple[torch.Tensor, ...], cfg: FusedConfig):
    """Run the fused scan on ``x [T, B, ...]``; returns spikes and the final ``(i, v, a)``."""
    steps, feature_shape = x.shape[0], x.shape[1:]
    flat = [_flat(p, feature_shape, x) for p in params]
    state = [s.expand(feature_shape).reshape(-1).contiguous() for s in (i0, v0, a0)]
    spikes, i, v, a = FusedScan.apply(x.reshape(steps, -1), *state, *flat, cfg)
    return spikes.reshape(x.shape), _unflat(i, feature_shape), _unflat(v, feature_shape), _unflat(a, feature_shape)


def cuba_scan(x: torch.Tensor, state: F.CubaState, p: F.CubaParameters, surrogate: Surrogate,
              reset: str = "subtract", detach_reset: bool = True) -> tuple[torch.Tensor, F.CubaState]:
    """Fused equivalent of ``scan(cuba_step, ...)``: spikes ``[T, B, ...]`` and the final state."""
    zero = torch.zeros((), dtype=x.dtype, device=x.device)
    cfg = FusedConfig(surrogate, reset, detach_reset, adaptive=False)
    spikes, i, v, _ = fused_scan(x, state.i, state.v, zero, (p.alpha, p.beta, p.theta, p.bias, zero, zero), cfg)
    return spikes, F.CubaState(i, v)


def alif_scan(x: torch.Tensor, state: F.AlifState, p: F.AlifParameters, surrogate: Surrogate,
              reset: str = "subtract", detach_reset: bool = True) -> tuple[torch.Tensor, F.AlifState]:
    """Fused equivalent of ``scan(alif_step, ...)``: spikes ``[T, B, ...]`` and the final state."""
    cfg = FusedConfig(surrogate, reset, detach_reset, adaptive=True)
    spikes, i, v, a = fused_scan(x, state.i, state.v, state.a, tuple(p), cfg)
    return spikes, F.AlifState(i, v, a)
