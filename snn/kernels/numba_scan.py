"""The numba backend of the fused scan (CPU): kernels compiled per setting of the flags.

The kernels follow the equations of :mod:`snn.kernels` one for one: :func:`_step_kernel` is one
forward neuron-step, :func:`_adjoint_kernel` the mirrored adjoint neuron-step of BPTT; the
forward kernel loops the first over time, the backward kernel replays the forward with it
(rebuilding v from the saved input x) and then loops the second down from t = T-1.

Layout: x, spikes [T, B, F]; state [B, F]; parameters [6, F] (alpha..gamma, one value per
feature, shared by the batch; one array, so one argument to unbox per call); parameter
gradients [6, B, F] (partial sums per batch row; rows not needed are never written).
A work item is one batch row b and a chunk of CHUNK features; items are independent, so
the parallel kernels split them across threads without locks.
Every flag (:class:`~snn.kernels.layout.KernelFlags`) is a compile-time constant of the
kernel built for it: the inner loop over features has no branch on it left, and LLVM
vectorises it. Settings that no inner loop reads per element (:class:`~snn.kernels.layout.KernelSwitches`:
detach_reset, a start at rest, no final-state gradient, a donated input) are the kernels'
first argument instead, one compiled kernel serving them all at no measured cost; the
surrogate stays a flag (as an argument its five-way branch in the inner loop made the
backward 2x slower, measured).
Serial and parallel variants are written out twice on purpose: one Python function jitted
with and without parallel=True shares numba's on-disk cache entry, so one would silently
run the other's code. Constants come in the data's precision: numba widens a bare
float literal to float64, which halves the vector width of a float32 loop (measured ~1.8x
slower).
"""

from __future__ import annotations

import functools
import math
import os

import numpy as np
import torch

from snn.errors import SpikeforgeError
from snn.kernels.jit_cache import cached_jit, call, stable_identity
from snn.kernels.layout import (
    FusedConfig,
    KernelFlags,
    KernelSwitches,
    Saved,
    as_one_row,
    compilable,
    flat_parameters,
)
from snn.validation import NEURON_INPUT_FIX, check_finite

try:  # numba is optional at import time; without it the torch-loop backend runs everywhere
    import numba
    from numba import njit, prange
except ImportError:  # pragma: no cover - exercised only where numba is missing
    numba = None

NAME = "numba"
CHUNK = 2048  # neurons per parallel work item: a chunk's state stays in L1 while t advances
# Kernels run on one thread below this many elements (T*N): thread start-up and, on a shared
# machine, waiting for the slowest thread cost more than they save. None: always serial.
PARALLEL_MIN_ELEMENTS: int | None = int(os.environ.get("SPIKEFORGE_FUSED_PARALLEL_MIN", 1 << 18))


def numba_available() -> bool:
    return numba is not None


def available(x: torch.Tensor, cfg: FusedConfig, forced: bool = False) -> bool:
    """CPU tensors of float32 / float64 with a built-in surrogate, where numba is installed."""
    return numba is not None and x.device.type == "cpu" and compilable(x, cfg)


def _parallel(x: torch.Tensor) -> bool:
    """Split work items across numba threads only for big work (see ``PARALLEL_MIN_ELEMENTS``)."""
    return PARALLEL_MIN_ELEMENTS is not None and x.numel() >= PARALLEL_MIN_ELEMENTS and numba.get_num_threads() > 1


# --------------------------------------------------------------------------- neuron-steps
if numba is not None:

    @njit(inline="always", cache=True, error_model="numpy")
    def _sg(code, k, z, one, half, half_pi):
        """sigma'(z) of surrogate ``code`` (SURROGATE_CODES) with slope k."""
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

    stable_identity((), _sg)


@functools.lru_cache(maxsize=None)
def _parameter_views(uniform: bool):
    """``(views, at)``. ``views(params, lo, hi) -> (rows, firsts)``: the six parameter rows over
    features ``[lo, hi)`` and their first values; ``at(rows, firsts, j)``: feature j's six
    values. With ``uniform`` (every parameter a scalar, params ``[6, 1]``) ``at`` returns the
    first values, hoisted out of the loops; otherwise row[j]."""

    @njit(inline="always", cache=True, error_model="numpy")
    def views(params, lo, hi):
        if uniform:
            lo, hi = 0, 1
        rows = (params[0, lo:hi], params[1, lo:hi], params[2, lo:hi], params[3, lo:hi], params[4, lo:hi],
                params[5, lo:hi])
        firsts = (params[0, 0], params[1, 0], params[2, 0], params[3, 0], params[4, 0], params[5, 0])
        return rows, firsts

    @njit(inline="always", cache=True, error_model="numpy")
    def at(rows, firsts, j):
        if uniform:
            return firsts
        return rows[0][j], rows[1][j], rows[2][j], rows[3][j], rows[4][j], rows[5][j]

    return stable_identity((uniform,), views, at)


@functools.lru_cache(maxsize=None)
def _step_kernel(subtract: bool, adaptive: bool, instant_current: bool):
    """One forward neuron-step at feature j, shared by the forward kernel and the backward's
    replay: the same rounded operations in the same order are what make the replayed v and
    spikes bit-identical. Takes feature j's parameters ``p``, updates the state ``ib, vb, ab``
    and returns ``(v[t], spike)``::

        i = alpha i + x;  v[t] = beta vr + i + bias;  th = theta + gamma a;  s = v[t] - th > 0
        vr = v[t] - th if s else v[t]  (subtract)  |  0 if s else v[t]  (zero);  a = rho a + s

    ``instant_current`` (alpha = 0, LIF): i[t] = x[t] (0 * i[t-1] + x[t] rounds to x[t]), so
    ``ib`` is neither read nor written."""

    @njit(inline="always", cache=True, error_model="numpy")
    def step(j, xj, ib, vb, ab, p, one, zero):
        al, be, thr, bi, rh, ga = p
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

    return stable_identity((subtract, adaptive, instant_current), step)


@functools.lru_cache(maxsize=None)
def _reset_kernel(subtract: bool, adaptive: bool):
    """``vr(v, a, p, zero)``: the reset membrane after a step with pre-reset membrane v and
    trace a before it, exactly as the forward formed it (the spike recomputed bit for bit)."""

    @njit(inline="always", cache=True, error_model="numpy")
    def reset(v, a, p, zero):
        th = p[2] + p[5] * a if adaptive else p[2]
        if v - th > 0:
            return v - th if subtract else zero * v
        return v

    return stable_identity((subtract, adaptive), reset)


@functools.lru_cache(maxsize=None)
def _adjoint_kernel(subtract: bool, adaptive: bool, code: int, needs: tuple[bool, ...], instant_current: bool):
    """One adjoint neuron-step at feature j (BPTT, step t), the mirror of :func:`_step_kernel`.

    Takes v[t], dL/ds[t] ``ds``, the trace a[t-1] and the reset membrane vr[t-1]; updates the
    adjoints ``gib, gvb, gab`` (g_i, g_vr, g_a from step t+1 on entry, from step t on exit),
    adds the parameter-gradient increments into ``acc`` (the rows ``needs`` flags) and returns
    dL/dx[t]::

        g_v = g_vr | g_vr (1 - s);  g_th = -s g_vr | 0;  g_s = dL/ds + g_a (- th g_vr | - v g_vr)
        g_z = g_s sigma'(v - th);  g_v += g_z;  g_th -= g_z
        theta += g_th;  gamma += g_th a[t-1];  rho += g_a a[t-1];  g_a <- rho g_a + gamma g_th
        beta += g_v vr[t-1];  bias += g_v;  g_vr <- beta g_v;  g_i += g_v;  dL/dx[t] = g_i
        alpha += g_i[t+1] i[t]  (i[t] = v[t] - beta vr[t-1] - bias; di_next holds g_i[t+1]);  g_i <- alpha g_i

    ``instant_current``: dL/dx[t] = g_v (the current's adjoint alpha g_i vanishes)."""
    need_alpha, need_beta, need_theta, need_bias, need_rho, need_gamma = needs

    @njit(inline="always", cache=True, error_model="numpy")
    def adjoint(j, v, ds, a_prev, vp, gib, gvb, gab, acc, di_next, p, detach, kslope, one, zero, half, half_pi):
        al, be, thr, bi, rh, ga = p
        th = thr + ga * a_prev if adaptive else thr
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
        if adaptive:
            ds += gab[j]
        if not detach:
            ds += dr
        dz = ds * _sg(code, kslope, v - th, one, half, half_pi)
        dv += dz
        dth -= dz
        if need_theta:
            acc[2][j] += dth
        if adaptive:
            if need_gamma:
                acc[5][j] += dth * a_prev
            if need_rho:
                acc[4][j] += gab[j] * a_prev
            gab[j] = rh * gab[j] + ga * dth
        if need_beta:
            acc[1][j] += dv * vp
        if need_bias:
            acc[3][j] += dv
        gvb[j] = be * dv
        di = dv if instant_current else gib[j] + dv
        if need_alpha:
            acc[0][j] += di_next[j] * (v - be * vp - bi)  # dL/di[t+1] * i[t]
            di_next[j] = di
        if not instant_current:
            gib[j] = al * di
        return di

    return stable_identity((subtract, adaptive, code, needs, instant_current), adjoint)


# --------------------------------------------------------------------------- kernels
@functools.lru_cache(maxsize=None)
def _forward_kernels(flags: KernelFlags):
    """``(serial, parallel)`` forward kernels for ``flags`` (those the forward reads, see
    :class:`KernelFlags`), called as ``kernel(switches, x, i, v, a, params, spikes)``.

    ``switches.zero_start`` (:class:`KernelSwitches`): the state arrays arrive uninitialised
    and each work item zeroes its own slice (no separate pass over ``[B, F]`` memory).
    ``uniform``: params ``[6, 1]``.
    ``instant_current``: the final current is the last input. Nothing is stored for the
    backward: it rebuilds v from the input x (one array fewer to write per neuron-step).
    Returns how many work items met NaN or infinity in x (the input check, folded into the
    pass that reads x anyway).
    """
    adaptive, instant_current = flags.adaptive, flags.instant_current
    step = _step_kernel(flags.subtract, adaptive, instant_current)
    views, at = _parameter_views(flags.uniform)
    key = tuple(flags)

    @cached_jit(key, error_model="numpy")
    def item(b, lo, hi, sw, x, i_state, v_state, a_state, params, spikes):
        # Views over [lo, hi) and indices from 0: LLVM then knows no index is negative,
        # drops numba's wraparound checks and vectorises the loop.
        n = hi - lo
        one, zero = x.dtype.type(1.0), x.dtype.type(0.0)  # in x's precision (module docstring)
        rows, firsts = views(params, lo, hi)
        ib, vb, ab = i_state[b, lo:hi], v_state[b, lo:hi], a_state[b, lo:hi]
        if sw.zero_start:
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
                _, fire = step(j, xj, ib, vb, ab, at(rows, firsts, j), one, zero)
                sr[j] = one if fire else zero
        if instant_current and x.shape[0] > 0:
            ib[:] = x[x.shape[0] - 1, b, lo:hi]
        return 1 if nonfinite else 0

    @cached_jit(key, nogil=True, error_model="numpy")
    def serial(sw, x, i_state, v_state, a_state, params, spikes):
        batch, features = x.shape[1], x.shape[2]
        chunks = (features + CHUNK - 1) // CHUNK
        nonfinite = 0
        for w in range(batch * chunks):
            b, c = w // chunks, w % chunks
            nonfinite += item(b, c * CHUNK, min(features, c * CHUNK + CHUNK), sw, x, i_state, v_state, a_state,
                              params, spikes)
        return nonfinite

    @cached_jit(key, parallel=True, nogil=True, error_model="numpy")
    def parallel(sw, x, i_state, v_state, a_state, params, spikes):
        batch, features = x.shape[1], x.shape[2]
        chunks = (features + CHUNK - 1) // CHUNK
        nonfinite = 0
        for w in prange(batch * chunks):
            b, c = w // chunks, w % chunks
            nonfinite += item(b, c * CHUNK, min(features, c * CHUNK + CHUNK), sw, x, i_state, v_state, a_state,
                              params, spikes)
        return nonfinite

    return serial, parallel


@functools.lru_cache(maxsize=None)
def _backward_kernels(flags: KernelFlags):
    """``(serial, parallel)`` backward kernels for ``flags``, called as
    ``kernel(switches, slope, gs, g_i, g_v, g_a, x, i0, v0, a0, params, gx, gparams)``
    (``switches``: :class:`~snn.kernels.layout.KernelSwitches`).

    Input ``x [T, B, F]`` and the initial state ``i0, v0, a0 [B, F]``: each work item first
    replays the forward over its slice (same operations, so v[t] and the spikes are
    bit-identical), writing v[t] into its slice of ``gx``; BPTT then runs down from t = T-1,
    reading v[t] (and v[t-1], not yet overwritten) and writing dL/dx[t] in its place. No
    scratch of ``[T, n]``: reading v from a separate scratch made the BPTT loop 2-3x slower
    (measured; cause not pinned down). ``switches.zero_start``: the initial state is not read
    (stand-ins). ``switches.zero_final``: g_i, g_v, g_a arrive uninitialised and each work item
    zeroes its own slice. ``uniform_gs``: ``gs`` is a ``[1, 1, 1]`` array (the expanded gradient of
    ``out.sum()`` or ``out.mean()``). ``instant_current``: plus the final state's g_i at
    t = T-1. ``switches.in_place``: ``gx`` holds the input on entry (a donated input); the replay reads
    it from there, element by element before overwriting it, and ``x`` is not read.
    ``gparams [6, B, F]`` receives the per-row partial gradients of the parameters flagged in
    ``needs`` (``[6, 1, 1]`` when none is).
    """
    adaptive, instant_current, needs = flags.adaptive, flags.instant_current, flags.needs
    uniform_gs = flags.uniform_gs
    need_alpha, need_beta, need_theta, need_bias, need_rho, need_gamma = needs
    need_vr = need_alpha or need_beta  # vr[t-1], rebuilt from v[t-1] and its recomputed spike
    step = _step_kernel(flags.subtract, adaptive, instant_current)
    reset = _reset_kernel(flags.subtract, adaptive)
    adjoint = _adjoint_kernel(flags.subtract, adaptive, flags.code, needs, instant_current)
    views, at = _parameter_views(flags.uniform)
    key = tuple(flags)

    @njit(inline="always", cache=True, error_model="numpy")
    def replay(b, lo, hi, in_place, x, ib, vb, ab, gx, a_trace, rows, firsts, one, zero):
        """The forward of row b over [lo, hi) from the state in ib, vb, ab: v[t] into gx, a[t] into a_trace."""
        for t in range(x.shape[0]):
            vt, at_row = gx[t, b, lo:hi], a_trace[t if adaptive else 0]
            xr = vt if in_place else x[t, b, lo:hi]  # in place: the same view, read before written
            for j in range(hi - lo):
                vt[j], _ = step(j, xr[j], ib, vb, ab, at(rows, firsts, j), one, zero)
                if adaptive:
                    at_row[j] = ab[j]

    @njit(inline="always", cache=True, error_model="numpy")
    def bptt(b, lo, hi, detach, kslope, gs, gib, gvb, gab, gx, a_trace, v0b, a0b, acc, di_next, rows, firsts,
             one, zero, half, half_pi):
        """The adjoint steps of row b over [lo, hi), t = T-1 down to 0: dL/dx[t] over v[t] in gx."""
        for t in range(gx.shape[0] - 1, -1, -1):
            v_row = gx_row = gx[t, b, lo:hi]  # v[t] in, dL/dx[t] out (element by element)
            gs_row = gs[0, 0, 0:1] if uniform_gs else gs[t, b, lo:hi]
            vp_row = gx[t - 1, b, lo:hi] if t > 0 else v0b  # still v[t-1]: the sweep runs down
            ap_row = (a_trace[t - 1] if t > 0 else a0b) if adaptive else a0b  # a[t-1]: threshold of step t
            app_row = (a_trace[t - 2] if t > 1 else a0b) if adaptive else a0b  # a[t-2]: threshold of step t-1
            for j in range(hi - lo):
                p = at(rows, firsts, j)
                vp = zero
                if need_vr:  # vr[t-1] exactly as the forward formed it
                    vp = reset(vp_row[j], app_row[j], p, zero) if t > 0 else vp_row[j]
                gx_row[j] = adjoint(j, v_row[j], gs_row[0] if uniform_gs else gs_row[j],
                                    ap_row[j] if adaptive else zero, vp, gib, gvb, gab, acc, di_next, p,
                                    detach, kslope, one, zero, half, half_pi)

    @cached_jit(key, error_model="numpy")
    def item(b0, b1, lo, hi, sw, slope, gs, g_i, g_v, g_a, x, i0, v0, a0, params, gx, gparams):
        # Views over [lo, hi), indices from 0 (see the forward kernel).
        steps, n = x.shape[0], hi - lo
        # constants and the slope in x's precision (module docstring)
        one, zero, half, half_pi = x.dtype.type(1.0), x.dtype.type(0.0), x.dtype.type(0.5), x.dtype.type(math.pi / 2)
        kslope = x.dtype.type(slope)
        rows, firsts = views(params, lo, hi)
        # Rows b0..b1 share one set of scratch arrays (a batch of short rows is one work item).
        a_trace = np.empty((steps if adaptive else 1, n), x.dtype)  # ALIF trace a[t], after step t
        i0b, v0b, a0b = np.zeros(n, x.dtype), np.zeros(n, x.dtype), np.zeros(n, x.dtype)  # state at t = -1
        ib, vb, ab = np.empty(n, x.dtype), np.empty(n, x.dtype), np.empty(n, x.dtype)  # replayed state
        acc = np.zeros((6, n), gs.dtype)  # parameter gradients of one row
        accs = (acc[0], acc[1], acc[2], acc[3], acc[4], acc[5])
        di_next = np.zeros(n, gs.dtype)
        for b in range(b0, b1):
            gib, gvb, gab = g_i[b, lo:hi], g_v[b, lo:hi], g_a[b, lo:hi]
            if sw.zero_final:
                gib[:] = 0.0
                gvb[:] = 0.0
                if adaptive:
                    gab[:] = 0.0
            if not sw.zero_start:
                i0b[:] = i0[b, lo:hi]
                v0b[:] = v0[b, lo:hi]
                if adaptive:
                    a0b[:] = a0[b, lo:hi]
            ib[:] = i0b
            vb[:] = v0b
            ab[:] = a0b
            replay(b, lo, hi, sw.in_place, x, ib, vb, ab, gx, a_trace, rows, firsts, one, zero)
            acc[:] = 0.0
            di_next[:] = 0.0
            bptt(b, lo, hi, sw.detach, kslope, gs, gib, gvb, gab, gx, a_trace, v0b, a0b, accs, di_next, rows, firsts,
                 one, zero, half, half_pi)
            if instant_current:  # the final state's g_i enters at t = T-1 only; dL/di0 = 0 * g_i = 0
                if not sw.zero_final and steps > 0:
                    last = gx[steps - 1, b, lo:hi]
                    for j in range(n):
                        last[j] += gib[j]
                gib[:] = 0.0
            if need_alpha:
                for j in range(n):
                    accs[0][j] += di_next[j] * i0b[j]
            for k, need in ((0, need_alpha), (1, need_beta), (2, need_theta), (3, need_bias), (4, need_rho),
                            (5, need_gamma)):
                if need:
                    gparams[k, b, lo:hi] = acc[k]

    @cached_jit(key, nogil=True, error_model="numpy")
    def serial(sw, slope, gs, g_i, g_v, g_a, x, i0, v0, a0, params, gx, gparams):
        batch, features = x.shape[1], x.shape[2]
        chunks = (features + CHUNK - 1) // CHUNK
        rows = max(1, CHUNK // max(features, 1))
        groups = (batch + rows - 1) // rows
        for w in range(groups * chunks):
            g, c = w // chunks, w % chunks
            item(g * rows, min(batch, g * rows + rows), c * CHUNK, min(features, c * CHUNK + CHUNK), sw,
                 slope, gs, g_i, g_v, g_a, x, i0, v0, a0, params, gx, gparams)

    @cached_jit(key, parallel=True, nogil=True, error_model="numpy")
    def parallel(sw, slope, gs, g_i, g_v, g_a, x, i0, v0, a0, params, gx, gparams):
        batch, features = x.shape[1], x.shape[2]
        chunks = (features + CHUNK - 1) // CHUNK
        rows = max(1, CHUNK // max(features, 1))
        groups = (batch + rows - 1) // rows
        for w in prange(groups * chunks):
            g, c = w // chunks, w % chunks
            item(g * rows, min(batch, g * rows + rows), c * CHUNK, min(features, c * CHUNK + CHUNK), sw,
                 slope, gs, g_i, g_v, g_a, x, i0, v0, a0, params, gx, gparams)

    stable_identity(key, replay, bptt)
    return serial, parallel


# --------------------------------------------------------------------------- host side
def forward(x: torch.Tensor, state0, given: tuple[torch.Tensor, ...], param_shape: torch.Size, cfg: FusedConfig,
            needs: tuple[bool, ...], store: bool):
    """The numba forward of :class:`~snn.kernels.scan.FusedScan`: ``(spikes, (i, v, a), Saved)``.
    Keeps the input x (which exists anyway) for the backward's replay; checks x for NaN and
    infinity in the pass that reads it."""
    state_shape = x.shape[1:]
    # all scalars (the usual case): params [6, 1], values hoisted out of the kernels' loops
    uniform = all(p.dim() == 0 for p in given)
    params = torch.stack(given).to(x.dtype).reshape(6, 1) if uniform else flat_parameters(given, param_shape, x)
    xs = x.contiguous()
    if state0 is None:  # zeroed inside the kernel; CUBA never touches its stand-in a
        i, v = torch.empty(state_shape, dtype=xs.dtype), torch.empty(state_shape, dtype=xs.dtype)
        a = torch.empty(state_shape if cfg.adaptive else (state_shape[0], 0), dtype=xs.dtype)
    else:
        i, v, a = (s.clone() for s in state0)
    spikes = torch.empty_like(xs)
    # LIF (alpha = 0, no alpha gradient): no current state in the kernels
    instant = uniform and not needs[4] and float(params[0, 0]) == 0.0
    flags = KernelFlags(subtract=cfg.subtract, adaptive=cfg.adaptive, instant_current=instant, uniform=uniform)
    serial, parallel = _forward_kernels(flags)
    kernel = parallel if _parallel(xs) else serial
    arrays = [t.numpy() for t in (xs, i, v, a, spikes)]
    if uniform:
        arrays = [as_one_row(t) for t in arrays]
    if call(kernel, KernelSwitches(zero_start=state0 is None), *arrays[:4], params.numpy(), arrays[4]):
        check_finite(xs, cfg.input_name, NEURON_INPUT_FIX)  # non-finite input seen: raise, naming which
    return spikes, (i, v, a), Saved(xs, (True, True, cfg.adaptive), params if uniform else None, instant)


def backward(ctx, gs, final_grads, x: torch.Tensor, state0, params: torch.Tensor, param_needs: tuple[bool, ...]):
    """The numba backward of :class:`~snn.kernels.scan.FusedScan`: ``(dL/dx, state gradients at
    t = 0, [6] parameter gradients [F] or None)``. Scratch that goes back to no caller
    (stand-ins, the state gradients of a network that started at rest, unneeded parameter
    partials) is plain numpy."""
    cfg: FusedConfig = ctx.cfg
    shape = ctx.state_shape
    uniform = ctx.uniform_params is not None
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
    gs, uniform_gs = _spike_gradients(gs, x)
    gx = _input_gradient_buffer(ctx, x)
    gparams = x.new_empty((6, *shape)) if any(param_needs) else None
    flags = KernelFlags(subtract=cfg.subtract, adaptive=cfg.adaptive, instant_current=ctx.instant_current,
                        uniform=uniform, code=cfg.kernel_code, needs=param_needs, uniform_gs=uniform_gs)
    switches = KernelSwitches(detach=cfg.detach_reset, zero_start=ctx.zero_state, zero_final=zero_final,
                              in_place=cfg.donated_input)
    serial, parallel = _backward_kernels(flags)
    kernel = parallel if _parallel(x) else serial
    arrays = [gs.numpy(), *finals, xn, i0, v0, a0, gx.numpy(),
              np.empty((6, 1, 1), dtype) if gparams is None else gparams.numpy()]
    if uniform:
        arrays = [as_one_row(a) for a in arrays]
    call(kernel, switches, float(cfg.surrogate.slope), *arrays[:8], params.numpy(), *arrays[8:])
    flat_grads = [gparams[k].sum(0) if need else None for k, need in enumerate(param_needs)]
    return gx, state_grads, flat_grads


def _spike_gradients(gs: torch.Tensor | None, x: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """``(dL/dspikes as the kernels read it, uniform_gs)``. out.sum() / out.mean() send one value
    expanded over every neuron-step: read once as ``[1, 1, 1]`` instead of materialising ``[T, B, F]``."""
    if gs is None:
        return x.new_zeros((1, 1, 1)), True
    uniform_gs = gs.numel() > 0 and all(st == 0 for st in gs.stride())
    return (gs.as_strided((1, 1, 1), (1, 1, 1)).clone() if uniform_gs else gs.contiguous()), uniform_gs


def _input_gradient_buffer(ctx, x: torch.Tensor) -> torch.Tensor:
    """Where the kernel writes dL/dx: over a donated input, which nothing else reads (once), or a new tensor."""
    cfg: FusedConfig = ctx.cfg
    if not cfg.donated_input:
        return torch.empty_like(x)
    if getattr(ctx, "input_spent", False):
        raise SpikeforgeError(f"the {cfg.input_name} was overwritten by the first backward through this graph "
                              "(a memory saving of the fused CPU path); run backward once per forward, or "
                              "build the network with Sequential(..., donate_neuron_inputs=False) to keep it")
    ctx.input_spent = True
    return x.detach()
