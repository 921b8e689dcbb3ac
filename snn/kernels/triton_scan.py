"""Fused multi-step neuron scan as Triton kernels, for CUDA tensors.

The same algorithm as the numba kernels of :mod:`snn.kernels.numba_scan` (which are the specification),
written once for the GPU: one Triton program per block of ``BLOCK`` features of one batch
row (grid ``(B, cdiv(F, BLOCK))``), the loop over time inside the kernel and the neuron
state in registers. Layout: ``x, spikes, vstore [T, B, F]`` contiguous; states
``i, v, a [B, F]`` contiguous (a only with ALIF); parameters ``alpha, beta, theta, bias, rho, gamma`` as
contiguous ``[F]`` arrays (one value per feature, shared by the batch).

The equations, forward and backward, are those of :mod:`snn.kernels`; here the backward reads
the stored pre-reset membrane v[t] (``vstore``) where the numba kernels replay the forward
from x.

Every flag (reset, ALIF, store, detach, surrogate code, which parameter gradients are
needed) is a ``tl.constexpr``: each setting compiles to its own kernel with no branch left
on it. The kernels perform the numba kernels' rounded operations in the same order, and are
launched with floating-point contraction disabled (no fused multiply-add), so forward spikes
and states are bit-identical to the CPU paths; gradients agree to rounding (the GPU's
``exp`` and float32 division are not correctly rounded).

Without a GPU the kernels run in Triton's interpreter (``TRITON_INTERPRET=1``) on CPU
tensors. The kernels are wrapped with ``triton.jit`` when first launched, under the
interpreter setting of that moment, so the variable may be set after this module (or
triton) was imported.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import types

import torch

from snn.errors import SpikeforgeError
from snn.kernels.layout import (
    PARAM_NAMES,
    FusedConfig,
    Saved,
    compilable,
    flat_parameters,
    membrane_backward_inputs,
)
from snn.validation import NEURON_INPUT_FIX, check_finite

try:  # triton is optional; without it the fused scan runs its torch loop on CUDA
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - exercised only where triton is missing
    triton = None
    tl = None

NAME = "triton"
BLOCK_MAX = 512  # features per program at most (two per thread, so up to 8 warps)
BLOCK_MIN = 16
# kernels read only constexpr globals
HALF_PI = tl.constexpr(math.pi / 2) if tl is not None else math.pi / 2


def _interpret() -> bool:
    """True when Triton runs kernels in its interpreter (``TRITON_INTERPRET=1``)."""
    knobs = getattr(triton, "knobs", None)
    if knobs is not None:
        return bool(knobs.runtime.interpret)
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


def triton_available() -> bool:
    """True when triton imports and can run here: a CUDA device, or the interpreter is on."""
    return triton is not None and (_interpret() or torch.cuda.is_available())


def available(x: torch.Tensor, cfg: FusedConfig, forced: bool = False) -> bool:
    """CUDA tensors (any device when ``forced``) of float32 / float64 with a built-in surrogate,
    where triton can run; forced where it cannot raises, naming the fix."""
    if not compilable(x, cfg):
        return False
    if forced and not triton_available():
        raise SpikeforgeError("SPIKEFORGE_FUSED_BACKEND=triton, but triton cannot run here; install triton and "
                              "use a CUDA device (or set TRITON_INTERPRET=1 for its CPU interpreter)")
    return triton_available()


# --------------------------------------------------------------------------- kernels
# Plain functions, wrapped by ``triton.jit`` in ``_kernel`` at their first launch (see the module
# docstring), together with the device functions they call (``_DEVICE_FUNCTIONS``, wrapped under
# the same setting; the compiler inlines them). They call only triton builtins besides: triton's
# own jit-ed helpers (tl.zeros, tl.sum, tl.sigmoid, ...) were wrapped when triton was imported and
# do not run in an interpreter switched on later.
def _forward_step(i, v, a, x, al, be, thr, bi, rh, ga, SUBTRACT: tl.constexpr, ADAPTIVE: tl.constexpr):
    """One forward neuron-step (the equations of :mod:`snn.kernels`) on a block of neurons:
    ``(i[t], v[t], s[t], vr[t], a[t])`` from ``i, vr, a`` of step t-1 and the input x[t]."""
    i = al * i + x
    vt = be * v + i + bi
    if ADAPTIVE:
        th = thr + ga * a
    else:
        th = thr
    fire = vt - th > 0
    # v - 1*th == v - th and v*(1-1) == 0 exactly: the reference's rounding
    if SUBTRACT:
        v = tl.where(fire, vt - th, vt)
    else:
        v = tl.where(fire, 0.0, vt)
    if ADAPTIVE:
        a = rh * a + fire.to(vt.dtype)
    return i, vt, fire, v, a


def _surrogate_grad(z, k, zero, CODE: tl.constexpr):
    """sigma'(z) of surrogate ``CODE`` (SURROGATE_CODES) with slope k."""
    if CODE == 0:  # fast_sigmoid
        d = 1.0 + k * tl.abs(z)
        sg = 1.0 / (d * d)
    elif CODE == 1:  # arctan
        u = k * HALF_PI * z  # (pi/2 k) z as the reference rounds it
        sg = (k / 2) / (1.0 + u * u)
    elif CODE == 2:  # sigmoid
        e = 1.0 / (1.0 + tl.exp(-k * z))
        sg = k * e * (1.0 - e)
    elif CODE == 3:  # triangle
        sg = k * tl.maximum(zero, 1.0 - k * tl.abs(z))
    else:  # boxcar
        sg = tl.where(tl.abs(k * z) < 0.5, k, zero)
    return sg


def _reset_membrane(v, th, SUBTRACT: tl.constexpr):
    """vr from the pre-reset membrane v and its threshold th, exactly as the forward formed it."""
    fire = v - th > 0
    if SUBTRACT:
        vr = tl.where(fire, v - th, v)
    else:
        vr = tl.where(fire, 0.0 * v, v)
    return vr


def _adjoint_step(v, ds, g_i, g_vr, g_a, a_prev, vp, di_next, acc, al, be, thr, bi, rh, ga, k, zero,
                  SUBTRACT: tl.constexpr, ADAPTIVE: tl.constexpr, DETACH: tl.constexpr, CODE: tl.constexpr,
                  NEED_ALPHA: tl.constexpr, NEED_BETA: tl.constexpr, NEED_THETA: tl.constexpr,
                  NEED_BIAS: tl.constexpr, NEED_RHO: tl.constexpr, NEED_GAMMA: tl.constexpr):
    """One adjoint neuron-step (BPTT, step t; the equations of :mod:`snn.kernels`) on a block of
    neurons, the mirror of :func:`_forward_step`: from v[t], dL/ds[t] ``ds``, a[t-1], vr[t-1]
    ``vp`` and the adjoints of step t+1, ``(dL/dx[t], g_i, g_vr, g_a of step t, di_next, acc)``;
    ``acc`` holds the six parameter-gradient sums (alpha..gamma), ``di_next`` g_i[t+1] for alpha's."""
    acc_alpha, acc_beta, acc_theta, acc_bias, acc_rho, acc_gamma = acc
    if ADAPTIVE:
        th = thr + ga * a_prev
    else:
        th = thr
    s = (v - th > 0).to(v.dtype)  # the forward's spike, recomputed bit for bit
    if SUBTRACT:
        dv = g_vr
        dth = -s * g_vr
        dr = -th * g_vr
    else:
        dv = g_vr * (1.0 - s)
        dth = 0.0 * g_vr
        dr = -v * g_vr
    if ADAPTIVE:
        ds += g_a
    if not DETACH:
        ds += dr
    dz = ds * _surrogate_grad(v - th, k, zero, CODE)
    dv += dz
    dth -= dz
    if NEED_THETA:
        acc_theta += dth
    if ADAPTIVE:
        if NEED_GAMMA:
            acc_gamma += dth * a_prev
        if NEED_RHO:
            acc_rho += g_a * a_prev
        g_a = rh * g_a + ga * dth
    if NEED_BETA:
        acc_beta += dv * vp
    if NEED_BIAS:
        acc_bias += dv
    g_vr = be * dv
    di = g_i + dv
    if NEED_ALPHA:
        acc_alpha += di_next * (v - be * vp - bi)  # dL/di[t+1] * i[t]
        di_next = di
    g_i = al * di
    return di, g_i, g_vr, g_a, di_next, (acc_alpha, acc_beta, acc_theta, acc_bias, acc_rho, acc_gamma)


def _threshold_trace(vs_ptr, tr_ptr, row, mask, thr, rh, ga, a0, steps, stride):
    """The ALIF trace a[t] (after step t) into ``tr`` from the spikes recomputed from the stored
    membrane, in forward order (the backward reads a[t-1] and a[t-2] as it runs down)."""
    a = a0
    off = row
    for _t in range(steps):
        fire = tl.load(vs_ptr + off, mask=mask, other=0.0) - (thr + ga * a) > 0
        a = rh * a + fire.to(a0.dtype)
        tl.store(tr_ptr + off, a, mask=mask)
        off += stride


def _forward_kernel(x_ptr, i_ptr, v_ptr, a_ptr, alpha_ptr, beta_ptr, theta_ptr, bias_ptr, rho_ptr, gamma_ptr,
                    s_ptr, vs_ptr, steps, features, stride,
                    SUBTRACT: tl.constexpr, ADAPTIVE: tl.constexpr, STORE: tl.constexpr, BLOCK: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)
    f = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = f < features
    DT = x_ptr.dtype.element_ty
    al = tl.load(alpha_ptr + f, mask=mask, other=0.0)
    be = tl.load(beta_ptr + f, mask=mask, other=0.0)
    thr = tl.load(theta_ptr + f, mask=mask, other=0.0)
    bi = tl.load(bias_ptr + f, mask=mask, other=0.0)
    row = b * features + f  # int64: offset of (b, f) in a [B, F] state, and of (0, b, f) in [T, B, F]
    i = tl.load(i_ptr + row, mask=mask, other=0.0)
    v = tl.load(v_ptr + row, mask=mask, other=0.0)
    if ADAPTIVE:
        rh = tl.load(rho_ptr + f, mask=mask, other=0.0)
        ga = tl.load(gamma_ptr + f, mask=mask, other=0.0)
        a = tl.load(a_ptr + row, mask=mask, other=0.0)
    else:  # unread
        a = tl.full([BLOCK], 0.0, DT)
        rh = a
        ga = a
    off = row
    for _t in range(steps):
        i, vt, fire, v, a = _forward_step(i, v, a, tl.load(x_ptr + off, mask=mask, other=0.0), al, be, thr, bi,
                                          rh, ga, SUBTRACT, ADAPTIVE)
        if STORE:
            tl.store(vs_ptr + off, vt, mask=mask)
        tl.store(s_ptr + off, fire.to(DT), mask=mask)
        off += stride
    tl.store(i_ptr + row, i, mask=mask)
    tl.store(v_ptr + row, v, mask=mask)
    if ADAPTIVE:
        tl.store(a_ptr + row, a, mask=mask)


def _backward_kernel(gs_ptr, gs_st, gs_sb, gs_sf, gs_last, gi_ptr, gv_ptr, ga_ptr, vs_ptr, tr_ptr,
                     i0_ptr, v0_ptr, a0_ptr, alpha_ptr, beta_ptr, theta_ptr, bias_ptr, rho_ptr, gamma_ptr,
                     gx_ptr, palpha_ptr, pbeta_ptr, ptheta_ptr, pbias_ptr, prho_ptr, pgamma_ptr,
                     slope: tl.float64, steps, features, stride, last,
                     SUBTRACT: tl.constexpr, ADAPTIVE: tl.constexpr, DETACH: tl.constexpr, CODE: tl.constexpr,
                     NEED_ALPHA: tl.constexpr, NEED_BETA: tl.constexpr, NEED_THETA: tl.constexpr,
                     NEED_BIAS: tl.constexpr, NEED_RHO: tl.constexpr, NEED_GAMMA: tl.constexpr,
                     BLOCK: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)
    f = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = f < features
    DT = vs_ptr.dtype.element_ty
    k = tl.full([BLOCK], slope, DT)  # surrogate slope
    al = tl.load(alpha_ptr + f, mask=mask, other=0.0)
    be = tl.load(beta_ptr + f, mask=mask, other=0.0)
    thr = tl.load(theta_ptr + f, mask=mask, other=0.0)
    bi = tl.load(bias_ptr + f, mask=mask, other=0.0)
    row = b * features + f  # offset of (b, f) in [B, F], and of (0, b, f) in vstore / gx / trace
    g_i = tl.load(gi_ptr + row, mask=mask, other=0.0)
    g_v = tl.load(gv_ptr + row, mask=mask, other=0.0)
    zero = tl.full([BLOCK], 0.0, DT)
    i0 = zero
    v0 = zero
    if NEED_ALPHA:
        i0 = tl.load(i0_ptr + row, mask=mask, other=0.0)
    if NEED_ALPHA or NEED_BETA:
        v0 = tl.load(v0_ptr + row, mask=mask, other=0.0)
    rh = zero  # rh, ga, g_a, a0, ap: unread without ADAPTIVE
    ga = zero
    g_a = zero
    a0 = zero
    ap = zero
    if ADAPTIVE:
        rh = tl.load(rho_ptr + f, mask=mask, other=0.0)
        ga = tl.load(gamma_ptr + f, mask=mask, other=0.0)
        g_a = tl.load(ga_ptr + row, mask=mask, other=0.0)
        a0 = tl.load(a0_ptr + row, mask=mask, other=0.0)
        _threshold_trace(vs_ptr, tr_ptr, row, mask, thr, rh, ga, a0, steps, stride)
        tl.debug_barrier()
    acc = (zero, zero, zero, zero, zero, zero)  # alpha..gamma
    di_next = zero
    off = row + last  # step t in vstore, gx and the trace
    goff = b * gs_sb + f.to(tl.int64) * gs_sf + gs_last  # step t in gs (any strides)
    v = tl.load(vs_ptr + off, mask=mask, other=0.0)
    if ADAPTIVE:  # a[t-1]: the threshold trace of step t
        ap = tl.where(steps > 1, tl.load(tr_ptr + tl.where(steps > 1, off - stride, off), mask=mask, other=0.0), a0)
    for kk in range(steps):
        t = steps - 1 - kk
        offp = tl.where(t > 0, off - stride, off)  # step t-1 (clamped at t = 0)
        v_prev = tl.load(vs_ptr + offp, mask=mask, other=0.0)  # v[t-1]; unused at t = 0
        vp = zero
        if ADAPTIVE:  # a[t-2]: the threshold trace of step t-1
            app = tl.where(t > 1, tl.load(tr_ptr + tl.where(t > 1, offp - stride, offp), mask=mask, other=0.0), a0)
        if NEED_ALPHA or NEED_BETA:  # vr[t-1] exactly as the forward formed it
            if ADAPTIVE:
                th_p = thr + ga * app
            else:
                th_p = thr
            vp = tl.where(t > 0, _reset_membrane(v_prev, th_p, SUBTRACT), v0)
        di, g_i, g_v, g_a, di_next, acc = _adjoint_step(
            v, tl.load(gs_ptr + goff, mask=mask, other=0.0), g_i, g_v, g_a, ap, vp, di_next, acc,
            al, be, thr, bi, rh, ga, k, zero, SUBTRACT, ADAPTIVE, DETACH, CODE,
            NEED_ALPHA, NEED_BETA, NEED_THETA, NEED_BIAS, NEED_RHO, NEED_GAMMA)
        tl.store(gx_ptr + off, di, mask=mask)
        v = v_prev
        if ADAPTIVE:
            ap = app
        off = offp
        goff -= gs_st
    _store_parts(acc, di_next, i0, row, mask, palpha_ptr, pbeta_ptr, ptheta_ptr, pbias_ptr, prho_ptr, pgamma_ptr,
                 NEED_ALPHA, NEED_BETA, NEED_THETA, NEED_BIAS, NEED_RHO, NEED_GAMMA)
    tl.store(gi_ptr + row, g_i, mask=mask)
    tl.store(gv_ptr + row, g_v, mask=mask)
    if ADAPTIVE:
        tl.store(ga_ptr + row, g_a, mask=mask)


def _store_parts(acc, di_next, i0, row, mask, palpha_ptr, pbeta_ptr, ptheta_ptr, pbias_ptr, prho_ptr, pgamma_ptr,
                 NEED_ALPHA: tl.constexpr, NEED_BETA: tl.constexpr, NEED_THETA: tl.constexpr,
                 NEED_BIAS: tl.constexpr, NEED_RHO: tl.constexpr, NEED_GAMMA: tl.constexpr):
    """The parameter partials of the needed parameters: alpha's last term (g_i[0] i[-1]) added."""
    acc_alpha, acc_beta, acc_theta, acc_bias, acc_rho, acc_gamma = acc
    if NEED_ALPHA:
        acc_alpha += di_next * i0
        tl.store(palpha_ptr + row, acc_alpha, mask=mask)
    if NEED_BETA:
        tl.store(pbeta_ptr + row, acc_beta, mask=mask)
    if NEED_THETA:
        tl.store(ptheta_ptr + row, acc_theta, mask=mask)
    if NEED_BIAS:
        tl.store(pbias_ptr + row, acc_bias, mask=mask)
    if NEED_RHO:
        tl.store(prho_ptr + row, acc_rho, mask=mask)
    if NEED_GAMMA:
        tl.store(pgamma_ptr + row, acc_gamma, mask=mask)


_DEVICE_FUNCTIONS = {fn.__name__: fn for fn in (_forward_step, _surrogate_grad, _reset_membrane, _adjoint_step,
                                                _threshold_trace, _store_parts)}


def _kernel(fn):
    """``fn`` wrapped by ``triton.jit`` under the interpreter setting of this moment."""
    return _jit(fn, _interpret())


@functools.lru_cache(maxsize=None)
def _jit(fn, interpret: bool):
    # ``interpret`` only keys the cache: triton.jit itself reads the same setting and returns
    # a compiled (JITFunction) or an interpreted kernel (InterpretedFunction)
    return triton.jit(_bound(fn, interpret))


def _bound(fn, interpret: bool):
    """A copy of ``fn`` whose device functions (the ``_DEVICE_FUNCTIONS`` it names) are the
    ``triton.jit`` wrappers made under the same interpreter setting."""
    called = {name: _jit(_DEVICE_FUNCTIONS[name], interpret) for name in fn.__code__.co_names
              if name in _DEVICE_FUNCTIONS}
    bound = types.FunctionType(fn.__code__, {**fn.__globals__, **called}, fn.__name__, fn.__defaults__,
                               fn.__closure__)
    bound.__qualname__, bound.__annotations__, bound.__doc__ = fn.__qualname__, fn.__annotations__, fn.__doc__
    bound.__module__ = fn.__module__
    return bound


def _launch_shape(batch: int, features: int, device: torch.device) -> tuple[int, int]:
    """``(BLOCK, num_warps)``: up to ``BLOCK_MAX`` features per program, two per thread."""
    block = max(BLOCK_MIN, min(BLOCK_MAX, triton.next_power_of_2(features)))
    if device.type == "cuda":  # few rows: narrower programs, so that every SM gets some
        sms = torch.cuda.get_device_properties(device).multi_processor_count
        while block > 64 and batch * triton.cdiv(features, block) < 2 * sms:
            block //= 2
    return block, max(1, min(8, block // 64))


def _check(where: str, device: torch.device, dtype: torch.dtype, shape: tuple[int, ...],
           **tensors: torch.Tensor) -> None:
    """Every tensor contiguous, of ``shape``, ``dtype`` and on ``device``; the device runs triton."""
    if device.type != "cuda" and not _interpret():
        raise ValueError(f"{where}: triton kernels need CUDA tensors (or TRITON_INTERPRET=1), got {device}")
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"{where}: float32 or float64 tensors only, got {dtype}")
    for name, t in tensors.items():
        if t.device != device or t.dtype != dtype or tuple(t.shape) != shape or not t.is_contiguous():
            raise ValueError(f"{where}: {name} must be a contiguous {dtype} tensor of shape {list(shape)} on "
                             f"{device}, got {t.dtype} {list(t.shape)} on {t.device}")


# --------------------------------------------------------------------------- launchers
# A tensor the kernel variant never reads or writes (a stand-in: a state, initial state,
# parameter or part that the flags leave out) is not handed to the kernel: a tensor known to
# be on the device takes its place, so stand-ins may have any shape and live anywhere.
def triton_forward(x: torch.Tensor, i_state: torch.Tensor, v_state: torch.Tensor, a_state: torch.Tensor,
                   params: tuple, *, subtract: bool, adaptive: bool, store: bool,
                   spikes: torch.Tensor, vstore: torch.Tensor) -> None:
    """Forward scan over ``x [T, B, F]``: the dynamics of :func:`snn.kernels.numba_scan._forward_kernels`, plus
    the stored membrane (the numba path keeps x instead and replays).

    Updates the states ``i_state, v_state, a_state [B, F]`` in place, writes
    ``spikes [T, B, F]`` (0/1 in x's dtype) and, with ``store``, the pre-reset membrane
    v[t] into ``vstore [T, B, F]``. ``params`` is ``(alpha, beta, theta, bias, rho, gamma)``,
    each a contiguous ``[F]`` tensor. Without ``adaptive``, ``a_state``, rho and gamma are
    neither read nor written, and without ``store`` neither is ``vstore``: they may be
    stand-ins of any shape. Per step, for every batch row b and feature f::

        i = alpha i + x[t];  v[t] = beta v + i + bias;  th = theta + gamma a (adaptive) | theta
        s[t] = (v[t] - th > 0);  v = v[t] - th if s[t] else v[t] (subtract) | 0 if s[t] else v[t] (zero)
        a = rho a + s[t]  (adaptive)
    """
    if len(params) != 6:
        raise ValueError("triton_forward: params must hold 6 tensors (alpha..gamma)")
    steps, batch, features = x.shape
    where, device, dtype = "triton_forward", x.device, x.dtype
    alpha, beta, theta, bias, rho, gamma = params
    if not adaptive:
        a_state, rho, gamma = i_state, alpha, alpha
    if not store:
        vstore = spikes
    _check(where, device, dtype, (steps, batch, features), x=x, spikes=spikes, vstore=vstore)
    _check(where, device, dtype, (batch, features), i_state=i_state, v_state=v_state, a_state=a_state)
    _check(where, device, dtype, (features,), alpha=alpha, beta=beta, theta=theta, bias=bias, rho=rho, gamma=gamma)
    if steps == 0 or batch == 0 or features == 0:
        return
    block, warps = _launch_shape(batch, features, device)
    with torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext():
        _kernel(_forward_kernel)[(batch, triton.cdiv(features, block))](
            x, i_state, v_state, a_state, alpha, beta, theta, bias, rho, gamma, spikes, vstore,
            steps, features, batch * features,
            SUBTRACT=bool(subtract), ADAPTIVE=bool(adaptive), STORE=bool(store), BLOCK=block,
            num_warps=warps, enable_fp_fusion=False)


def triton_backward(gs: torch.Tensor, g_i: torch.Tensor, g_v: torch.Tensor, g_a: torch.Tensor,
                    vstore: torch.Tensor, i0: torch.Tensor, v0: torch.Tensor, a0: torch.Tensor, params: tuple, *,
                    subtract: bool, adaptive: bool, detach: bool, code: int, slope: float,
                    needs: tuple[bool, ...], gx: torch.Tensor, parts: list) -> None:
    """Backward scan (BPTT) from t = T-1 down to 0: the gradients of :func:`snn.kernels.numba_scan._backward_kernels`,
    read from the stored membrane instead of a replay of x.

    ``gs [T, B, F]`` is dL/dspikes, with any strides (an expanded tensor is read in place).
    ``g_i, g_v, g_a [B, F]`` hold dL/d(final state) on entry and dL/d(initial state) on
    exit. ``vstore [T, B, F]`` is the forward's pre-reset membrane: the spikes
    (``v[t] - th > 0``, bit for bit the forward's), the reset membranes vr[t-1], the
    currents i[t-1] and, with ``adaptive``, the threshold trace a[t] are recomputed from it
    and from the initial state ``i0, v0, a0 [B, F]``. ``params`` as in :func:`triton_forward`;
    ``code`` names the surrogate derivative sigma' (:data:`snn.kernels.layout.SURROGATE_CODES`) and
    ``slope`` its k. Writes ``gx [T, B, F]`` = dL/dx and, for each of alpha..gamma whose
    ``needs`` flag is set, its partial gradient per (b, f) into ``parts[j] [B, F]`` (the
    caller sums over the batch).

    Stand-ins, neither read nor written (any shape, e.g. ``[B, 0]``): ``i0`` unless alpha's
    gradient is needed, ``v0`` unless alpha's or beta's is, ``a0``, ``g_a``, rho and gamma
    without ``adaptive``, and the parts that are not needed. Per step (with ``detach``
    the reset carries no gradient: the ``g_s += -th g_vr`` / ``-v g_vr`` terms drop)::

        subtract: g_v = g_vr, g_th = -s g_vr, g_s = -th g_vr
        zero:     g_v = g_vr (1 - s), g_th = 0, g_s = -v g_vr
        g_s += dL/ds[t] + g_a;  g_z = g_s sigma'(v - th);  g_v += g_z;  g_th -= g_z
        g_theta += g_th;  g_gamma += g_th a[t-1];  g_rho += g_a a[t-1];  g_a <- rho g_a + gamma g_th
        g_beta += g_v vr[t-1];  g_bias += g_v;  g_vr <- beta g_v
        g_i = g_i + g_v;  dL/dx[t] = g_i;  g_alpha += g_i i[t-1];  g_i <- alpha g_i

    With ``adaptive`` the kernel first sweeps forward over t to rebuild a[t] into a scratch
    ``[T, B, F]`` buffer allocated here.
    """
    needs = tuple(bool(n) for n in needs)
    if len(needs) != 6 or len(parts) != 6 or len(params) != 6:
        raise ValueError("triton_backward: needs, parts and params must each hold 6 entries (alpha..gamma)")
    steps, batch, features = vstore.shape
    where, device, dtype = "triton_backward", vstore.device, vstore.dtype
    alpha, beta, theta, bias, rho, gamma = params
    parts = [part if need else g_i for part, need in zip(parts, needs)]
    if not needs[0]:
        i0 = g_i
    if not (needs[0] or needs[1]):
        v0 = g_i
    if not adaptive:
        a0, g_a, rho, gamma = g_i, g_i, alpha, alpha
    if gs.shape != vstore.shape or gs.device != device or gs.dtype != dtype:
        raise ValueError(f"{where}: gs must have vstore's shape {list(vstore.shape)}, dtype and device")
    _check(where, device, dtype, (steps, batch, features), vstore=vstore, gx=gx)
    _check(where, device, dtype, (batch, features), g_i=g_i, g_v=g_v, g_a=g_a, i0=i0, v0=v0, a0=a0,
           **{f"part of {name}": part for name, part in zip(PARAM_NAMES, parts)})
    _check(where, device, dtype, (features,), alpha=alpha, beta=beta, theta=theta, bias=bias, rho=rho, gamma=gamma)
    if steps == 0 or batch == 0 or features == 0:  # dL/d(state) passes through unchanged
        for part, need in zip(parts, needs):
            if need:
                part.zero_()
        return
    scratch = torch.empty((steps, batch, features) if adaptive else (1,), dtype=dtype, device=device)
    gs_st, gs_sb, gs_sf = gs.stride()
    block, warps = _launch_shape(batch, features, device)
    with torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext():
        _kernel(_backward_kernel)[(batch, triton.cdiv(features, block))](
            gs, gs_st, gs_sb, gs_sf, (steps - 1) * gs_st, g_i, g_v, g_a, vstore, scratch, i0, v0, a0,
            alpha, beta, theta, bias, rho, gamma, gx, *parts,
            float(slope), steps, features, batch * features, (steps - 1) * batch * features,
            SUBTRACT=bool(subtract), ADAPTIVE=bool(adaptive), DETACH=bool(detach), CODE=int(code),
            NEED_ALPHA=needs[0], NEED_BETA=needs[1], NEED_THETA=needs[2], NEED_BIAS=needs[3],
            NEED_RHO=needs[4], NEED_GAMMA=needs[5], BLOCK=block, num_warps=warps, enable_fp_fusion=False)


# --------------------------------------------------------------------------- host side
def forward(x: torch.Tensor, state0, given: tuple[torch.Tensor, ...], param_shape: torch.Size, cfg: FusedConfig,
            needs: tuple[bool, ...], store: bool):
    """The Triton forward of :class:`~snn.kernels.scan.FusedScan`: ``(spikes, (i, v, a), Saved)``.
    Keeps the pre-reset membrane v (when a backward may follow) and the initial states a
    gradient reads."""
    check_finite(x, cfg.input_name, NEURON_INPUT_FIX)
    params = flat_parameters(given, param_shape, x)
    xs = x.contiguous()
    state_shape = xs.shape[1:]
    if state0 is None:
        i, v = xs.new_zeros(state_shape), xs.new_zeros(state_shape)
        a = xs.new_zeros(state_shape if cfg.adaptive else (state_shape[0], 0))
    else:
        i, v, a = (s.clone() for s in state0)
    spikes = torch.empty_like(xs)
    vstore = xs.new_empty(xs.shape if store else (1, 1, 1))
    triton_forward(xs, i, v, a, params.unbind(0), subtract=cfg.subtract, adaptive=cfg.adaptive, store=store,
                   spikes=spikes, vstore=vstore)
    return spikes, (i, v, a), Saved(vstore, (needs[4], needs[4] or needs[5], cfg.adaptive))


def backward(ctx, gs, final_grads, vstore: torch.Tensor, state0, params: torch.Tensor,
             param_needs: tuple[bool, ...]):
    """The Triton backward of :class:`~snn.kernels.scan.FusedScan` (it reads ``gs`` with any
    strides in place): ``(dL/dx, state gradients at t = 0, [6] parameter gradients [F] or None)``."""
    cfg: FusedConfig = ctx.cfg
    shape = ctx.state_shape
    gs, finals, state0 = membrane_backward_inputs(ctx, gs, final_grads, vstore, state0)
    stand_in = vstore.new_zeros((shape[0], 0))
    i0, v0, a0 = (stand_in if s is None else s for s in state0)
    gx = vstore.new_empty(vstore.shape)
    gparams = vstore.new_empty((6, *shape) if any(param_needs) else (6, 1, 1))
    triton_backward(gs, *finals, vstore, i0, v0, a0, params.unbind(0), subtract=cfg.subtract,
                    adaptive=cfg.adaptive, detach=cfg.detach_reset, code=cfg.kernel_code,
                    slope=float(cfg.surrogate.slope), needs=param_needs, gx=gx, parts=list(gparams.unbind(0)))
    return gx, finals, [gparams[k].sum(0) if need else None for k, need in enumerate(param_needs)]
