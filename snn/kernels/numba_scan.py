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

Memory kept for the backward: one value per neuron-step. The numba kernels keep the input
x (which exists anyway, so the forward writes only the spikes) and replay the forward per
work item to rebuild v; Triton and the torch loop keep the pre-reset membrane v. From v,
the spikes (``v - th > 0``, the same rounded operations as the forward), vr[t-1],
i[t-1] = v[t-1] - beta vr[t-2] - bias and the ALIF trace a are recomputed. Parameters are
stored once per feature ``F`` and shared by the batch.

Backends, chosen per call: on CPU, numba kernels compiled for each setting of the flags
(reset, ALIF, detach, surrogate, which gradients are needed) so that the inner loop over
features has no branch and vectorises, parallel over (batch row, feature block) work
items; on CUDA, the Triton kernels of :mod:`snn.fused_triton` when triton is installed.
A custom surrogate, another dtype, or CUDA without triton runs the same algorithm as a
torch loop over T, calling ``surrogate.grad``. ``SPIKEFORGE_FUSED_BACKEND`` (numba, triton,
torch) forces one, e.g. triton on CPU tensors under ``TRITON_INTERPRET=1`` for tests.
Forward spikes are bit-identical to the step-by-step path: every backend performs the
same rounded operations in the same order.
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass, field

import numpy as np
import torch

from snn import functional as F
from snn.errors import SpikeforgeError
from snn.surrogate import Surrogate
from snn.validation import NEURON_INPUT_FIX, check_finite

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
PARALLEL_MIN_ELEMENTS: int | None = int(os.environ.get("SPIKEFORGE_FUSED_PARALLEL_MIN", 1 << 18))
BACKENDS = ("numba", "triton", "torch")
FORCED_BACKEND: str | None = os.environ.get("SPIKEFORGE_FUSED_BACKEND") or None


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

    @property
    def kernel_code(self) -> int:
        """Surrogate code for the compiled kernel, or -1 when the torch loop must run."""
        if type(self.surrogate).__name__ in _BUILTIN_CLASSES and self.surrogate.name in SURROGATE_CODES:
            return SURROGATE_CODES[self.surrogate.name]
        return -1


def numba_available() -> bool:
    return numba is not None


# --------------------------------------------------------------------------- numba kernels
# Serial and parallel variants are written out twice on purpose: one Python function jitted
# with and without parallel=True shares numba's on-disk cache entry, so one would silently
# run the other's code.
# Layout: x, spikes [T, B, F]; state [B, F]; parameters [6, F] (alpha..gamma, one value per
# feature, shared by the batch; one array, so one argument to unbox per call); parameter
# gradients [6, B, F] (partial sums per batch row; rows not needed are never written).
# A work item is one batch row b and a chunk of CHUNK features; items are independent, so
# the parallel kernels split them across threads without locks.
# Every flag (reset, ALIF, detach, surrogate, which gradients are needed) is a compile-time
# constant of the kernel built for it: the inner loop over features has no branch left,
# and LLVM vectorises it.
if numba is not None:

    @njit(inline="always", cache=True, error_model="numpy")
    def _sg(code, k, z, one, half, half_pi):
        # Constants come in the data's precision: numba widens a bare float literal to
        # float64, which halves the vector width of a float32 loop (measured ~1.8x slower).
        if code == 0:
            d = one + k * abs(z)
            return one / (d * d)
        if code == 1:
            u = half_pi * k * z
            return (k * half) / (one + u * u)
        if code == 2:
            e = one / (one + math.exp(-k * z))
            return k * e * (one - e)
        if code == 3:
            return k * max(one - one, one - k * abs(z))
        return k if abs(k * z) < half else one - one


@functools.lru_cache(maxsize=None)
def _parameter_views(uniform: bool):
    """``views(params, lo, hi) -> (rows, firsts)``: the six parameter rows over features
    ``[lo, hi)`` and their first values. With ``uniform`` (every parameter a scalar, params
    ``[6, 1]``) the kernels use the first values, hoisted out of the loops; otherwise row[j]."""

    @njit(inline="always", cache=True, error_model="numpy")
    def views(params, lo, hi):
        if uniform:
            lo, hi = 0, 1
        rows = (params[0, lo:hi], params[1, lo:hi], params[2, lo:hi], params[3, lo:hi], params[4, lo:hi],
                params[5, lo:hi])
        firsts = (params[0, 0], params[1, 0], params[2, 0], params[3, 0], params[4, 0], params[5, 0])
        return rows, firsts

    return views


@functools.lru_cache(maxsize=None)
def _step_kernel(subtract: bool, adaptive: bool, instant_current: bool):
    """One neuron-step of the forward at feature j, shared by the forward kernel and the
    backward's replay: the same rounded operations in the same order are what make the
    replayed v and spikes bit-identical. Takes feature j's parameter values, updates the
    state ``ib, vb, ab`` and returns ``(v[t], spike)``. ``instant_current`` (alpha = 0, LIF):
    i[t] = x[t] (0 * i[t-1] + x[t] rounds to x[t]), so ``ib`` is neither read nor written."""

    @njit(inline="always", cache=True, error_model="numpy")
    def step(j, xj, ib, vb, ab, al, be, thr, bi, rh, ga, one, zero):
        i = xj if instant_current else al * ib[j] + xj
        v = be * vb[j] + i + bi
        th = thr + ga * ab[j] if adaptive else thr
        fire = v - th > 0
        if not instant_current:
            ib[j] = i
        # v - 1*th == v - th and v*(1-1) == 0 exactly: the reference's rounding
        if subtract:
            vb[j] = v - th if fire else v
        else:
            vb[j] = zero if fire else v
        if adaptive:
            ab[j] = rh * ab[j] + (one if fire else zero)
        return v, fire

    return step


@functools.lru_cache(maxsize=None)
def _forward_kernels(subtract: bool, adaptive: bool, zero_state: bool, uniform: bool, instant_current: bool):
    """``(serial, parallel)`` forward kernels for one setting of the flags.

    ``zero_state``: the state arrays arrive uninitialised and each work item zeroes its
    own slice (no separate pass over ``[B, F]`` memory). ``uniform``: every parameter is
    one value, params ``[6, 1]``. ``instant_current``: alpha = 0 (LIF), i[t] = x[t], the
    final current is the last input. Nothing is stored for the backward: it rebuilds v from
    the input x (one array fewer to write per neuron-step). Returns how many work items
    met NaN or infinity in x (the input check, folded into the pass that reads x anyway).
    """
    step = _step_kernel(subtract, adaptive, instant_current)
    views = _parameter_views(uniform)

    @njit(cache=True, error_model="numpy")
    def item(b, lo, hi, x, i_state, v_state, a_state, params, spikes):
        # Views over [lo, hi) and indices from 0: LLVM then knows no index is negative,
        # drops numba's wraparound checks and vectorises the loop.
        n = hi - lo
        one, zero = x.dtype.type(1.0), x.dtype.type(0.0)  # in x's precision (see _sg)
        (al, be, thr, bi, rh, ga), (al0, be0, thr0, bi0, rh0, ga0) = views(params, lo, hi)
        ib, vb, ab = i_state[b, lo:hi], v_state[b, lo:hi], a_state[b, lo:hi]
        if zero_state:
            ib[:] = 0.0
            vb[:] = 0.0
            if adaptive:
                ab[:] = 0.0
        nonfinite = False
        for t in range(x.shape[0]):
            xr, sr = x[t, b, lo:hi], spikes[t, b, lo:hi]
            for j in range(n):
                xj = xr[j]
                nonfinite |= xj - xj != zero  # NaN for NaN and +-inf: the input check, in the same pass
                if uniform:
                    _, fire = step(j, xj, ib, vb, ab, al0, be0, thr0, bi0, rh0, ga0, one, zero)
                else:
                    _, fire = step(j, xj, ib, vb, ab, al[j], be[j], thr[j], bi[j], rh[j], ga[j], one, zero)
                sr[j] = one if fire else zero
        if instant_current and x.shape[0] > 0:
            ib[:] = x[x.shape[0] - 1, b, lo:hi]
        return 1 if nonfinite else 0

    @njit(cache=True, nogil=True, error_model="numpy")
    def serial(x, i_state, v_state, a_state, params, spikes):
        batch, features = x.shape[1], x.shape[2]
        chunks = (features + CHUNK - 1) // CHUNK
        nonfinite = 0
        for w in range(batch * chunks):
            b, c = w // chunks, w % chunks
            nonfinite += item(b, c * CHUNK, min(features, c * CHUNK + CHUNK), x, i_state, v_state, a_state, params,
                              spikes)
        return nonfinite

    @njit(parallel=True, cache=True, nogil=True, error_model="numpy")
    def parallel(x, i_state, v_state, a_state, params, spikes):
        batch, features = x.shape[1], x.shape[2]
        chunks = (features + CHUNK - 1) // CHUNK
        nonfinite = 0
        for w in prange(batch * chunks):
            b, c = w // chunks, w % chunks
            nonfinite += item(b, c * CHUNK, min(features, c * CHUNK + CHUNK), x, i_state, v_state, a_state, params,
                              spikes)
        return nonfinite

    return serial, parallel


@functools.lru_cache(maxsize=None)
def _backward_kernels(subtract: bool, adaptive: bool, detach: bool, code: int, needs: tuple[bool, ...],
                      zero_start: bool, zero_final: bool, uniform_gs: bool, uniform: bool, instant_current: bool,
                      in_place: bool):
    """``(serial, parallel)`` backward kernels; ``needs`` flags the gradients of alpha..gamma.

    Input ``x [T, B, F]`` and the initial state ``i0, v0, a0 [B, F]``: each work item first
    replays the forward over its slice (same operations, so v[t] and the spikes are
    bit-identical), writing v[t] into its slice of ``gx``; BPTT then runs down from t = T-1,
    reading v[t] (and v[t-1], not yet overwritten) and writing dL/dx[t] in its place. No
    scratch of ``[T, n]``: reading v from a separate scratch made the BPTT loop 2-3x slower
    (measured; cause not pinned down). ``zero_start``: the forward started at rest; the initial state is not
    read (stand-ins).
    ``zero_final``: no gradient reached the final state; g_i, g_v, g_a arrive uninitialised
    and each work item zeroes its own slice. ``uniform_gs``: dL/dspikes is one value for
    every neuron-step (the expanded gradient of ``out.sum()`` or ``out.mean()``), passed as
    a ``[1, 1, 1]`` array. ``uniform``: every parameter is one value, params ``[6, 1]``.
    ``instant_current``: alpha = 0 and no alpha gradient (LIF): dL/dx[t] = g_v[t] (the
    current's adjoint alpha g_i vanishes), plus the final state's g_i at t = T-1.
    ``in_place``: ``gx`` holds the input on entry (a donated input); the replay reads it
    from there, element by element before overwriting it, and ``x`` is not read.
    ``gparams [6, B, F]`` receives the per-row partial gradients of
    the parameters flagged in ``needs`` (``[6, 1, 1]`` when none is).
    """
    need_alpha, need_beta, need_theta, need_bias, need_rho, need_gamma = needs
    need_vr = need_alpha or need_beta  # vr[t-1], rebuilt from v[t-1] and its recomputed spike
    step = _step_kernel(subtract, adaptive, instant_current)
    views = _parameter_views(uniform)

    @njit(cache=True, error_model="numpy")
    def item(b0, b1, lo, hi, slope, gs, g_i, g_v, g_a, x, i0, v0, a0, params, gx, gparams):
        # Views over [lo, hi), indices from 0 (see the forward kernel).
        steps, n = x.shape[0], hi - lo
        # constants and the slope in x's precision (see _sg)
        one, zero, half, half_pi = x.dtype.type(1.0), x.dtype.type(0.0), x.dtype.type(0.5), x.dtype.type(math.pi / 2)
        kslope = x.dtype.type(slope)
        (al, be, thr, bi, rh, ga), (al0, be0, thr0, bi0, rh0, ga0) = views(params, lo, hi)
        # Rows b0..b1 share one set of scratch arrays (a batch of short rows is one work item).
        a_trace = np.empty((steps if adaptive else 1, n), x.dtype)  # ALIF trace a[t], after step t
        i0b, v0b, a0b = np.zeros(n, x.dtype), np.zeros(n, x.dtype), np.zeros(n, x.dtype)  # state at t = -1
        ib, vb, ab = np.empty(n, x.dtype), np.empty(n, x.dtype), np.empty(n, x.dtype)  # replayed state
        acc = np.zeros((6, n), gs.dtype)  # parameter gradients of one row
        di_next = np.zeros(n, gs.dtype)
        for b in range(b0, b1):
            gib, gvb, gab = g_i[b, lo:hi], g_v[b, lo:hi], g_a[b, lo:hi]
            if zero_final:
                gib[:] = 0.0
                gvb[:] = 0.0
                if adaptive:
                    gab[:] = 0.0
            if not zero_start:
                i0b[:] = i0[b, lo:hi]
                v0b[:] = v0[b, lo:hi]
                if adaptive:
                    a0b[:] = a0[b, lo:hi]
            # replay the forward of this row (the forward kernel's operations, in its order)
            ib[:] = i0b
            vb[:] = v0b
            ab[:] = a0b
            for t in range(steps):
                vt, at = gx[t, b, lo:hi], a_trace[t if adaptive else 0]
                xr = vt if in_place else x[t, b, lo:hi]  # in place: the same view, read before written
                for j in range(n):
                    if uniform:
                        vt[j], _ = step(j, xr[j], ib, vb, ab, al0, be0, thr0, bi0, rh0, ga0, one, zero)
                    else:
                        vt[j], _ = step(j, xr[j], ib, vb, ab, al[j], be[j], thr[j], bi[j], rh[j], ga[j], one, zero)
                    if adaptive:
                        at[j] = ab[j]
            acc[:] = 0.0
            di_next[:] = 0.0
            acc_alpha, acc_beta, acc_theta = acc[0], acc[1], acc[2]
            acc_bias, acc_rho, acc_gamma = acc[3], acc[4], acc[5]
            for t in range(steps - 1, -1, -1):
                v_row = gx_row = gx[t, b, lo:hi]  # v[t] in, dL/dx[t] out (element by element)
                gs_row = gs[0, 0, 0:1] if uniform_gs else gs[t, b, lo:hi]
                vp_row = gx[t - 1, b, lo:hi] if t > 0 else v0b  # still v[t-1]: the sweep runs down
                ap_row = (a_trace[t - 1] if t > 0 else a0b) if adaptive else a0b        # a[t-1]: threshold of step t
                app_row = (a_trace[t - 2] if t > 1 else a0b) if adaptive else a0b       # a[t-2]: threshold of step t-1
                for j in range(n):
                    if uniform:
                        alj, bej, thrj, bij, rhj, gaj = al0, be0, thr0, bi0, rh0, ga0
                    else:
                        alj, bej, thrj, bij, rhj, gaj = al[j], be[j], thr[j], bi[j], rh[j], ga[j]
                    a_prev = ap_row[j] if adaptive else zero
                    th = thrj + gaj * a_prev if adaptive else thrj
                    v = v_row[j]
                    s = one if v - th > 0 else zero  # the forward's spike, recomputed bit for bit
                    gvr = gvb[j]
                    if subtract:
                        dv = gvr
                        dth = -s * gvr
                        dr = -th * gvr
                    else:
                        dv = gvr * (one - s)
                        dth = zero * gvr
                        dr = -v * gvr
                    ds = gs_row[0] if uniform_gs else gs_row[j]
                    if adaptive:
                        ds += gab[j]
                    if not detach:
                        ds += dr
                    dz = ds * _sg(code, kslope, v - th, one, half, half_pi)
                    dv += dz
                    dth -= dz
                    if need_theta:
                        acc_theta[j] += dth
                    if adaptive:
                        if need_gamma:
                            acc_gamma[j] += dth * a_prev
                        if need_rho:
                            acc_rho[j] += gab[j] * a_prev
                        gab[j] = rhj * gab[j] + gaj * dth
                    vp = zero
                    if need_vr:  # vr[t-1] exactly as the forward formed it
                        vp = vp_row[j]
                        if t > 0:
                            th_p = thrj + gaj * app_row[j] if adaptive else thrj
                            if vp - th_p > 0:
                                vp = vp - th_p if subtract else zero * vp
                    if need_beta:
                        acc_beta[j] += dv * vp
                    if need_bias:
                        acc_bias[j] += dv
                    gvb[j] = bej * dv
                    di = dv if instant_current else gib[j] + dv
                    gx_row[j] = di
                    if need_alpha:
                        acc_alpha[j] += di_next[j] * (v - bej * vp - bij)  # dL/di[t+1] * i[t]
                        di_next[j] = di
                    if not instant_current:
                        gib[j] = alj * di
            if instant_current:  # the final state's g_i enters at t = T-1 only; dL/di0 = 0 * g_i = 0
                if not zero_final and steps > 0:
                    last = gx[steps - 1, b, lo:hi]
                    for j in range(n):
                        last[j] += gib[j]
                gib[:] = 0.0
            if need_alpha:
                for j in range(n):
                    acc_alpha[j] += di_next[j] * i0b[j]
            for k, need in ((0, need_alpha), (1, need_beta), (2, need_theta), (3, need_bias), (4, need_rho),
                            (5, need_gamma)):
                if need:
                    gparams[k, b, lo:hi] = acc[k]

    @njit(cache=True, nogil=True, error_model="numpy")
    def serial(slope, gs, g_i, g_v, g_a, x, i0, v0, a0, params, gx, gparams):
        batch, features = x.shape[1], x.shape[2]
        chunks = (features + CHUNK - 1) // CHUNK
        rows = max(1, CHUNK // max(features, 1))
        groups = (batch + rows - 1) // rows
        for w in range(groups * chunks):
            g, c = w // chunks, w % chunks
            item(g * rows, min(batch, g * rows + rows), c * CHUNK, min(features, c * CHUNK + CHUNK), slope,
                 gs, g_i, g_v, g_a, x, i0, v0, a0, params, gx, gparams)

    @njit(parallel=True, cache=True, nogil=True, error_model="numpy")
    def parallel(slope, gs, g_i, g_v, g_a, x, i0, v0, a0, params, gx, gparams):
        batch, features = x.shape[1], x.shape[2]
        chunks = (features + CHUNK - 1) // CHUNK
        rows = max(1, CHUNK // max(features, 1))
        groups = (batch + rows - 1) // rows
        for w in prange(groups * chunks):
            g, c = w // chunks, w % chunks
            item(g * rows, min(batch, g * rows + rows), c * CHUNK, min(features, c * CHUNK + CHUNK), slope,
                 gs, g_i, g_v, g_a, x, i0, v0, a0, params, gx, gparams)

    return serial, parallel


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


def _torch_backward(gs, g_i, g_v, g_a, vstore, state0, p, cfg: FusedConfig, need_alpha: bool):
    i0, v0, a0 = state0
    alpha, beta, theta, bias, rho, gamma = p
    steps = gs.shape[0]
    subtract = cfg.reset == "subtract"
    spikes, a_trace = _recompute_spikes(vstore, a0, p, cfg)

    def a_at(t):  # a after step t; t = -1 is the initial trace
        return a_trace[t] if t >= 0 else a0

    def th_at(t):  # threshold used at step t
        return theta + gamma * a_at(t - 1) if cfg.adaptive else theta

    def vr_at(t):
        if t < 0:
            return v0
        return vstore[t] - spikes[t] * th_at(t) if subtract else vstore[t] * (1 - spikes[t])

    gx = torch.empty_like(gs)
    grads = {k: torch.zeros_like(v0) for k in _PARAM_NAMES}
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


def _check_backend() -> None:
    if FORCED_BACKEND is not None and FORCED_BACKEND not in BACKENDS:
        raise SpikeforgeError(f"SPIKEFORGE_FUSED_BACKEND={FORCED_BACKEND!r} is not a fused backend; "
                              f"use one of {', '.join(BACKENDS)} or unset it")


def _compilable(x: torch.Tensor, cfg: FusedConfig) -> bool:
    return cfg.kernel_code >= 0 and x.dtype in (torch.float32, torch.float64)


def _use_kernel(x: torch.Tensor, cfg: FusedConfig) -> bool:
    """CPU tensors run the numba kernels."""
    _check_backend()
    if FORCED_BACKEND is not None and FORCED_BACKEND != "numba":
        return False
    return numba is not None and x.device.type == "cpu" and _compilable(x, cfg)


def _use_triton(x: torch.Tensor, cfg: FusedConfig) -> bool:
    """CUDA tensors run the Triton kernels (snn.fused_triton) when triton is installed."""
    _check_backend()
    if FORCED_BACKEND is not None and FORCED_BACKEND != "triton":
        return False
    if not _compilable(x, cfg) or (x.device.type != "cuda" and FORCED_BACKEND != "triton"):
        return False
    from snn.fused_triton import triton_available
    if FORCED_BACKEND == "triton" and not triton_available():
        raise SpikeforgeError("SPIKEFORGE_FUSED_BACKEND=triton, but triton cannot run here; install triton and "
                              "use a CUDA device (or set TRITON_INTERPRET=1 for its CPU interpreter)")
    return triton_available()


def _parallel(x: torch.Tensor) -> bool:
    """Split work items across numba threads only for big work (see ``PARALLEL_MIN_ELEMENTS``)."""
    return PARALLEL_MIN_ELEMENTS is not None and x.numel() >= PARALLEL_MIN_ELEMENTS and numba.get_num_threads() > 1


class FusedScan(torch.autograd.Function):
    """``(x [T, B, F], i0, v0, a0 [B, F], alpha..gamma, cfg, param_shape) -> (spikes [T, B, F], i, v, a [B, F])``.

    ``i0 = v0 = a0 = None`` starts at rest (all zero) without materialising the zeros.
    Each parameter broadcasts to ``param_shape`` (``F`` = its number of elements); its
    gradient comes back in the parameter's own shape.

    Saved for the backward, one value per neuron-step plus ``[B, F]`` arrays and the
    parameters (per-feature ones as given; all-scalar ones as the ``[6, 1]`` copy the
    kernels read):

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
        state_shape = x.shape[1:]
        zero_state = i0 is None
        needs = ctx.needs_input_grad
        uniform = instant = False
        if _use_kernel(x, cfg):
            backend = "numba"
            # all scalars (the usual case): params [6, 1], values hoisted out of the kernels' loops
            uniform = all(p.dim() == 0 for p in given)
            params = torch.stack(given).to(x.dtype).reshape(6, 1) if uniform else \
                _flat_parameters(given, param_shape, x)
            xs = x.contiguous()
            if zero_state:  # zeroed inside the kernel; CUBA never touches its stand-in a
                i, v = torch.empty(state_shape, dtype=xs.dtype), torch.empty(state_shape, dtype=xs.dtype)
                a = torch.empty(state_shape if cfg.adaptive else (state_shape[0], 0), dtype=xs.dtype)
            else:
                i, v, a = i0.clone(), v0.clone(), a0.clone()
            spikes = torch.empty_like(xs)
            # LIF (alpha = 0, no alpha gradient): no current state in the kernels
            instant = uniform and not needs[4] and float(params[0, 0]) == 0.0
            serial, parallel = _forward_kernels(cfg.reset == "subtract", cfg.adaptive, zero_state, uniform, instant)
            kernel = parallel if _parallel(xs) else serial
            arrays = [t.numpy() for t in (xs, i, v, a, spikes)]
            if uniform:
                arrays = [_as_one_row(t) for t in arrays]
            if kernel(*arrays[:4], params.numpy(), arrays[4]):
                check_finite(xs, cfg.input_name, NEURON_INPUT_FIX)  # non-finite input seen: raise, naming which
            saved, keep = xs, (True, True, cfg.adaptive)
        elif _use_triton(x, cfg):
            from snn.fused_triton import triton_forward
            backend = "triton"
            check_finite(x, cfg.input_name, NEURON_INPUT_FIX)
            params = _flat_parameters(given, param_shape, x)
            xs = x.contiguous()
            if zero_state:
                i, v = xs.new_zeros(state_shape), xs.new_zeros(state_shape)
                a = xs.new_zeros(state_shape if cfg.adaptive else (state_shape[0], 0))
            else:
                i, v, a = i0.clone(), v0.clone(), a0.clone()
            spikes = torch.empty_like(xs)
            saved = xs.new_empty(xs.shape if store else (1, 1, 1))
            triton_forward(xs, i, v, a, params.unbind(0), subtract=cfg.reset == "subtract", adaptive=cfg.adaptive,
                           store=store, spikes=spikes, vstore=saved)
            keep = (needs[4], needs[4] or needs[5], cfg.adaptive)
        else:
            backend = "torch"
            check_finite(x, cfg.input_name, NEURON_INPUT_FIX)
            params = _flat_parameters(given, param_shape, x)
            if zero_state:
                i0 = v0 = a0 = x.new_zeros(state_shape)
            spikes, (i, v, a), saved = _torch_forward(x, (i0, v0, a0), params.unbind(0), cfg, store)
            keep = (True, True, True)
        if store:
            # per-feature parameters as given ([6, F] can be ~1 MiB for a conv layer), re-expanded in backward;
            # uniform: the [6, 1] copy in ctx is all the kernels read; the parameters' shapes and
            # dtypes shape their gradients (keeping the tensors would add their bytes for nothing)
            ctx.save_for_backward(saved, *(None if zero_state or not k else s for s, k in zip((i0, v0, a0), keep)),
                                  *((None,) * 6 if uniform else given))
            ctx.param_meta = tuple((p.shape, p.dtype, p.device) for p in given)
            ctx.state_shape, ctx.param_shape, ctx.zero_state, ctx.keep = state_shape, param_shape, zero_state, keep
            ctx.uniform_params = params if uniform else None  # [6, 1]: nothing to save memory on
            ctx.instant_current = backend == "numba" and instant
        ctx.cfg, ctx.backend = cfg, backend
        return spikes, i, v, a

    @staticmethod
    def backward(ctx, gs, g_i, g_v, g_a):  # type: ignore[override]
        saved, i0, v0, a0, *given = ctx.saved_tensors  # saved: x (numba) or the membrane v (otherwise)
        uniform = ctx.uniform_params is not None
        params = ctx.uniform_params if uniform else _flat_parameters(given, ctx.param_shape, saved)
        cfg: FusedConfig = ctx.cfg
        needs = ctx.needs_input_grad
        shape = ctx.state_shape
        backend = ctx.backend
        param_needs = tuple(bool(n) for n in needs[4:10])
        if not cfg.adaptive:  # rho and gamma do not enter the CUBA dynamics
            param_needs = param_needs[:4] + (False, False)
        if backend == "numba":
            gx, (g_i, g_v, g_a), flat_grads = _numba_backward(ctx, gs, (g_i, g_v, g_a), saved, (i0, v0, a0), params,
                                                              param_needs, uniform)
        else:
            if ctx.zero_state:  # zeros where a gradient reads the initial state
                i0, v0, a0 = (saved.new_zeros(shape) if k else None for k in ctx.keep)
            g_i, g_v, g_a = (saved.new_zeros(shape) if g is None else g.contiguous().clone() for g in (g_i, g_v, g_a))
            gs = torch.zeros_like(saved) if gs is None else gs
            if backend == "torch":
                gx, (g_i, g_v, g_a), grads = _torch_backward(gs, g_i, g_v, g_a, saved, (i0, v0, a0),
                                                             params.unbind(0), cfg, needs[4])
                flat_grads = [grads[k].sum(0) for k in _PARAM_NAMES]
            else:  # Triton reads gs with any strides in place
                from snn.fused_triton import triton_backward
                stand_in = saved.new_zeros((shape[0], 0))
                i0, v0, a0 = (stand_in if s is None else s for s in (i0, v0, a0))
                gx = saved.new_empty(saved.shape)
                gparams = saved.new_empty((6, *shape) if any(param_needs) else (6, 1, 1))
                triton_backward(gs, g_i, g_v, g_a, saved, i0, v0, a0, params.unbind(0),
                                subtract=cfg.reset == "subtract", adaptive=cfg.adaptive, detach=cfg.detach_reset,
                                code=cfg.kernel_code, slope=float(cfg.surrogate.slope), needs=param_needs, gx=gx,
                                parts=list(gparams.unbind(0)))
                flat_grads = [gparams[k].sum(0) if need else None for k, need in enumerate(param_needs)]
        param_grads = [None if not needs[4 + j] else
                       torch.zeros(shape, dtype=dtype, device=device) if g is None else
                       g.reshape(ctx.param_shape).sum_to_size(shape).to(dtype)
                       for j, (g, (shape, dtype, device)) in enumerate(zip(flat_grads, ctx.param_meta))]
        state_grads = [None] * 3 if ctx.zero_state else [g if n else None for g, n in zip((g_i, g_v, g_a), needs[1:4])]
        return (gx, *state_grads, *param_grads, None, None)


def _numba_backward(ctx, gs, final_grads, x, state0, params, param_needs, uniform: bool):
    """The numba backward of :class:`FusedScan`: ``(dL/dx, state gradients at t = 0, [6] parameter
    gradients [F] or None)``. Scratch that goes back to no caller (stand-ins, the state
    gradients of a network that started at rest, unneeded parameter partials) is plain numpy."""
    cfg: FusedConfig = ctx.cfg
    shape = ctx.state_shape
    xn = x.numpy()
    dtype = xn.dtype
    stand_in = np.empty((shape[0], 0), dtype)
    i0, v0, a0 = (stand_in if s is None else s.numpy() for s in state0)
    zero_final = all(g is None for g in final_grads)
    shapes = (shape, shape, shape if cfg.adaptive else (shape[0], 0))
    state_grads = (None, None, None)
    if zero_final and ctx.zero_state:  # scratch only, zeroed inside the kernel
        finals = [np.empty(sh, dtype) for sh in shapes]
    else:  # the kernel leaves dL/d(initial state) in them
        state_grads = tuple(x.new_empty(sh) if zero_final else x.new_zeros(sh) if g is None else g.contiguous().clone()
                            for g, sh in zip(final_grads, shapes))
        finals = [g.numpy() for g in state_grads]
    if gs is None:
        gs = x.new_zeros((1, 1, 1))
        uniform_gs = True
    else:
        # out.sum() / out.mean() send one value expanded over every neuron-step: read it once
        # instead of materialising [T, B, F]
        uniform_gs = gs.numel() > 0 and all(st == 0 for st in gs.stride())
        gs = gs.as_strided((1, 1, 1), (1, 1, 1)).clone() if uniform_gs else gs.contiguous()
    if cfg.donated_input:  # dL/dx is written over the input, which nothing else reads
        if getattr(ctx, "input_spent", False):
            raise SpikeforgeError(f"the {cfg.input_name} was overwritten by the first backward through this graph "
                                  "(a memory saving of the fused CPU path); run backward once per forward, or "
                                  "build the network with Sequential(..., donate_neuron_inputs=False) to keep it")
        ctx.input_spent = True
        gx = x.detach()
    else:
        gx = torch.empty_like(x)
    gparams = x.new_empty((6, *shape)) if any(param_needs) else None
    serial, parallel = _backward_kernels(cfg.reset == "subtract", cfg.adaptive, cfg.detach_reset, cfg.kernel_code,
                                         param_needs, ctx.zero_state, zero_final, uniform_gs, uniform,
                                         ctx.instant_current, cfg.donated_input)
    kernel = parallel if _parallel(x) else serial
    arrays = [gs.numpy(), *finals, xn, i0, v0, a0, gx.numpy(),
              np.empty((6, 1, 1), dtype) if gparams is None else gparams.numpy()]
    if uniform:
        arrays = [_as_one_row(a) for a in arrays]
    kernel(float(cfg.surrogate.slope), *arrays[:8], params.numpy(), *arrays[8:])
    flat_grads = [gparams[k].sum(0) if need else None for k, need in enumerate(param_needs)]
    return gx, state_grads, flat_grads


def _as_one_row(a: np.ndarray) -> np.ndarray:
    """``[..., B, F] -> [..., 1, B*F]``, a view. Neurons with uniform (scalar) parameters are
    all alike, so the kernels run the batch as one long row: work items of ``CHUNK``
    contiguous neurons, whatever the layer width (a 10-output classifier included)."""
    return a.reshape(*a.shape[:-2], 1, a.shape[-2] * a.shape[-1])


def _flat_parameters(params, param_shape: torch.Size, like: torch.Tensor) -> torch.Tensor:
    """The six parameters broadcast to ``param_shape`` in one contiguous ``[6, F]`` array (one copy)."""
    features = math.prod(param_shape)
    if all(p.dim() == 0 for p in params):  # the usual scalars: fewer small torch calls
        return torch.stack(params).detach().to(like.dtype)[:, None].expand(len(params), features).contiguous()
    rows = torch.stack([p.detach().to(like.dtype).expand(param_shape) for p in params])
    return rows.reshape(len(params), features)


def _per_feature(x: torch.Tensor, params: tuple[torch.Tensor, ...]) -> bool:
    """True when every parameter broadcasts to one sample's shape ``x.shape[2:]``.

    Then parameters are stored once per feature (the usual case: scalars, per-channel or
    per-neuron values); a parameter that varies along the batch makes each step one row of
    ``B*F`` neurons instead.
    """
    sample = tuple(x.shape[2:])

    def fits(shape: tuple[int, ...]) -> bool:  # numpy broadcasting rules, without torch's checks
        return len(shape) <= len(sample) and all(d in (1, s) for d, s in zip(shape[::-1], sample[::-1]))
    return all(fits(tuple(p.shape)) for p in params)


def fused_scan(x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None,
               params: tuple[torch.Tensor, ...], cfg: FusedConfig):
    """Run the fused scan on ``x [T, B, ...]`` from ``state = (i0, v0, a0)`` (None: all zero);
    returns spikes and the final ``(i, v, a)``."""
    steps, step_shape = x.shape[0], x.shape[1:]
    param_shape = x.shape[2:] if _per_feature(x, params) else step_shape
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


def cuba_scan(x: torch.Tensor, state: F.CubaState | None, p: F.CubaParameters, surrogate: Surrogate,
              reset: str = "subtract", detach_reset: bool = True,
              input_name: str = "neuron input", donate_input: bool = False) -> tuple[torch.Tensor, F.CubaState]:
    """Fused equivalent of ``scan(cuba_step, ...)`` (``state=None``: start at rest, all zero):
    spikes ``[T, B, ...]`` and the final state. NaN or infinity in ``x`` raises
    :class:`SpikeforgeError` naming ``input_name``. ``donate_input``: see :attr:`FusedConfig.donated_input`."""
    zero = torch.zeros((), dtype=x.dtype, device=x.device)
    cfg = FusedConfig(surrogate, reset, detach_reset, adaptive=False, input_name=input_name,
                      donated_input=donate_input)
    start = None if state is None else (state.i, state.v, zero)
    spikes, i, v, _ = fused_scan(x, start, (p.alpha, p.beta, p.theta, p.bias, zero, zero), cfg)
    return spikes, F.CubaState(i, v)


def alif_scan(x: torch.Tensor, state: F.AlifState | None, p: F.AlifParameters, surrogate: Surrogate,
              reset: str = "subtract", detach_reset: bool = True,
              input_name: str = "neuron input", donate_input: bool = False) -> tuple[torch.Tensor, F.AlifState]:
    """Fused equivalent of ``scan(alif_step, ...)`` (``state=None``: start at rest, all zero):
    spikes ``[T, B, ...]`` and the final state. NaN or infinity in ``x`` raises
    :class:`SpikeforgeError` naming ``input_name``. ``donate_input``: see :attr:`FusedConfig.donated_input`."""
    cfg = FusedConfig(surrogate, reset, detach_reset, adaptive=True, input_name=input_name,
                      donated_input=donate_input)
    spikes, i, v, a = fused_scan(x, None if state is None else tuple(state), tuple(p), cfg)
    return spikes, F.AlifState(i, v, a)
