"""Event-driven fully connected layer on CPU: the forward adds only the weight rows of active inputs.

The input of a spiking network's Linear layer is a spike map (or an event frame): most
entries are zero. A dense matmul multiplies all of them; here each sample n adds only the
rows of the transposed weight ``W^T [in, out]`` whose input is non-zero::

    y[n, :] = b + sum_{j : x[n, j] != 0} x[n, j] * W^T[j, :]

so the cost of the forward follows the input's activity. The backward is the dense one
(the gradient arriving from the neurons is dense)::

    dL/dx = g W,   dL/dW = g^T x,   dL/db = sum_n g[n]

The result equals ``torch.nn.functional.linear`` up to the rounding of the sum's order
(the order is fixed per sample, so runs are deterministic whatever the thread count).

:func:`event_linear` picks this path when it pays: a CPU float32 / float64 input of
``[N, in]``, at least ``MIN_OUT_FEATURES`` outputs, and at most ``MAX_DENSITY`` of the
entries non-zero in the first ``DENSITY_PROBE_ROWS`` rows (``MAX_DENSITY_NARROW`` below
``WIDE_OUT_FEATURES`` outputs); otherwise it calls the dense ``linear``.
:class:`snn.network.Sequential` uses it for its ``nn.Linear`` layers.
"""

from __future__ import annotations

import numpy as np
import torch

from snn.errors import SpikeforgeError
from snn.kernels import numba_scan
from snn.kernels.jit_cache import call

# Where the event-driven forward beats torch's matmul, measured on a 2-core AVX-512 CPU
# (float32, 784 inputs): the break-even density is ~0.17 at 64 outputs, ~0.3 at 128 and
# 0.4-0.45 at 256-512; below ~64 outputs scanning the input costs more than the matmul.
MIN_OUT_FEATURES = 64
WIDE_OUT_FEATURES = 128
MAX_DENSITY = 0.25  # for WIDE_OUT_FEATURES or more outputs
MAX_DENSITY_NARROW = 0.12  # for MIN_OUT_FEATURES .. WIDE_OUT_FEATURES - 1 outputs
DENSITY_PROBE_ROWS = 256
_ROWS_PER_ITEM = 16  # samples per parallel work item (one scratch index array each)

if numba_scan.numba_available():
    from numba import njit, prange

    @njit(inline="always", cache=True, boundscheck=False)
    def _row(x_row, weight_t, bias, out_row, active):
        """out_row = bias + sum of x_row[j] * weight_t[j] over the non-zero x_row[j]."""
        count = 0
        for j in range(x_row.shape[0]):  # branch-free compaction of the active indices
            active[count] = j
            count += x_row[j] != 0
        for q in range(out_row.shape[0]):
            out_row[q] = bias[q]
        r = 0
        # Eight weight rows per pass over the output row: one load and store of the
        # accumulator per eight multiply-adds (the output row stays in L1).
        while r + 8 <= count:
            j0, j1, j2, j3 = active[r], active[r + 1], active[r + 2], active[r + 3]
            j4, j5, j6, j7 = active[r + 4], active[r + 5], active[r + 6], active[r + 7]
            v0, v1, v2, v3 = x_row[j0], x_row[j1], x_row[j2], x_row[j3]
            v4, v5, v6, v7 = x_row[j4], x_row[j5], x_row[j6], x_row[j7]
            w0, w1, w2, w3 = weight_t[j0], weight_t[j1], weight_t[j2], weight_t[j3]
            w4, w5, w6, w7 = weight_t[j4], weight_t[j5], weight_t[j6], weight_t[j7]
            for q in range(out_row.shape[0]):
                out_row[q] += (((v0 * w0[q] + v1 * w1[q]) + (v2 * w2[q] + v3 * w3[q]))
                               + ((v4 * w4[q] + v5 * w5[q]) + (v6 * w6[q] + v7 * w7[q])))
            r += 8
        while r < count:
            j = active[r]
            v, w = x_row[j], weight_t[j]
            for q in range(out_row.shape[0]):
                out_row[q] += v * w[q]
            r += 1

    # Serial and parallel drivers are two functions on purpose (see snn.kernels.numba_scan: one function
    # jitted both ways shares numba's cache entry).
    @njit(cache=True, nogil=True, boundscheck=False)
    def event_currents_serial(x, weight_t, bias, out):
        """out[n] = bias + sum over non-zero x[n, j] of x[n, j] * weight_t[j], one thread."""
        active = np.empty(x.shape[1], np.int64)
        for n in range(x.shape[0]):
            _row(x[n], weight_t, bias, out[n], active)

    @njit(cache=True, nogil=True, parallel=True, boundscheck=False)
    def event_currents_parallel(x, weight_t, bias, out):
        """As :func:`event_currents_serial`, samples split across threads."""
        items = (x.shape[0] + _ROWS_PER_ITEM - 1) // _ROWS_PER_ITEM
        for item in prange(items):
            active = np.empty(x.shape[1], np.int64)
            for n in range(item * _ROWS_PER_ITEM, min(x.shape[0], (item + 1) * _ROWS_PER_ITEM)):
                _row(x[n], weight_t, bias, out[n], active)


def check_event_operands(x: np.ndarray, weight_t: np.ndarray, bias: np.ndarray, name: str = "Linear") -> None:
    """What the kernels rely on (they run without bounds checks): ``x [N, in]``, ``weight_t [in, out]``
    and ``bias [out]``, all C-contiguous of one float dtype. Else one :class:`SpikeforgeError` naming
    the layer (``name``) and the misfit, before any memory is read."""
    if weight_t.ndim != 2 or bias.shape != (weight_t.shape[1],):
        raise SpikeforgeError(f"{name}: weight^T {weight_t.shape} and bias {bias.shape} do not fit, expected "
                              "[in_features, out_features] and [out_features]")
    if x.ndim != 2 or x.shape[1] != weight_t.shape[0]:
        width = x.shape[-1] if x.ndim else 0
        raise SpikeforgeError(f"{name} (in_features={weight_t.shape[0]}, out_features={weight_t.shape[1]}) got an "
                              f"input of shape {tuple(x.shape)} with {width} features, expected [N, "
                              f"{weight_t.shape[0]}]; the layer before it gives a different width: fix the "
                              "network's layer sizes")
    if not (x.dtype == weight_t.dtype == bias.dtype and x.dtype in (np.float32, np.float64)):
        raise SpikeforgeError(f"{name}: input, weight and bias have dtypes {x.dtype}, {weight_t.dtype}, "
                              f"{bias.dtype}, expected one of float32 / float64")
    for what, a in (("input", x), ("weight^T", weight_t), ("bias", bias)):
        if not a.flags.c_contiguous:
            raise SpikeforgeError(f"{name}: the {what} is not C-contiguous, which the event-driven kernel needs")


def event_currents(x: np.ndarray, weight_t: np.ndarray, bias: np.ndarray, name: str = "Linear") -> np.ndarray:
    """``bias + x @ weight_t`` over the non-zero entries of ``x [N, in]`` only (numba required).

    ``weight_t [in, out]`` and ``bias [out]`` must be C-contiguous arrays of ``x``'s dtype; that and
    the shapes are checked (:func:`check_event_operands`) before the kernel runs.
    """
    check_event_operands(x, weight_t, bias, name)
    out = np.empty((x.shape[0], weight_t.shape[1]), dtype=weight_t.dtype)
    threshold = numba_scan.PARALLEL_MIN_ELEMENTS
    parallel = threshold is not None and x.size >= threshold
    call(event_currents_parallel if parallel else event_currents_serial, x, weight_t, bias, out)
    return out


class EventLinear(torch.autograd.Function):
    """``linear(x, W, b)`` with the event-driven forward and the dense backward (module docstring)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None):  # type: ignore[override]
        weight_t = weight.detach().t().contiguous().numpy()
        b = np.zeros(weight.shape[0], weight_t.dtype) if bias is None else \
            bias.detach().to(weight.dtype).contiguous().numpy()
        out = event_currents(x.detach().contiguous().numpy(), weight_t, b)
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return torch.from_numpy(out)

    @staticmethod
    def backward(ctx, g: torch.Tensor):  # type: ignore[override]
        x, weight = ctx.saved_tensors
        grad_x = g @ weight if ctx.needs_input_grad[0] else None
        grad_w = g.t() @ x if ctx.needs_input_grad[1] else None
        grad_b = g.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return grad_x, grad_w, grad_b


def worth_it(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether the event-driven forward is expected to beat the dense matmul for this input."""
    if not (numba_scan.numba_available() and x.device.type == "cpu" and weight.device.type == "cpu"
            and x.dim() == 2
            and x.dtype in (torch.float32, torch.float64) and weight.dtype == x.dtype
            and weight.shape[0] >= MIN_OUT_FEATURES and x.shape[0] > 0 and x.shape[1] == weight.shape[1]):
        return False
    probe = x[:DENSITY_PROBE_ROWS]
    limit = MAX_DENSITY if weight.shape[0] >= WIDE_OUT_FEATURES else MAX_DENSITY_NARROW
    return int(torch.count_nonzero(probe)) <= limit * probe.numel()


def check_linear_input(x: torch.Tensor, weight: torch.Tensor) -> None:
    """``x [..., in]`` fits ``weight [out, in]``; else one :class:`SpikeforgeError` naming the layer."""
    if weight.dim() != 2 or x.dim() < 1 or x.shape[-1] != weight.shape[1]:
        width = x.shape[-1] if x.dim() else 0
        raise SpikeforgeError(f"Linear (in_features={weight.shape[-1]}, out_features={weight.shape[0]}) got an "
                              f"input with {width} features (shape {tuple(x.shape)}), expected "
                              f"{weight.shape[-1]}; the layer before it gives a different width: fix the "
                              "network's layer sizes")


def event_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``torch.nn.functional.linear(x, weight, bias)``, event-driven where that is faster; an input
    whose width is not ``in_features`` is refused (:func:`check_linear_input`) on either path."""
    check_linear_input(x, weight)
    if worth_it(x, weight):
        return EventLinear.apply(x, weight, bias)
    return torch.nn.functional.linear(x, weight, bias)
