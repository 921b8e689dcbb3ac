"""Fused multi-step neurons: the whole time loop in one autograd node, BPTT written by hand.

Everything here runs :mod:`snn.functional` faster; users never import it directly (the
neuron layers of :mod:`snn.neurons` and :class:`snn.network.Sequential` do). This docstring
is the contract every backend implements.

The step-by-step path (:func:`snn.functional.scan`) builds one autograd graph node per
operation per step and keeps every intermediate tensor alive for the backward pass. The
fused scan runs the same dynamics for the CUBA-LIF family and ALIF as one custom
:class:`torch.autograd.Function` (:class:`~snn.kernels.scan.FusedScan`).

Forward, one neuron-step of neuron m at step t (ALIF; CUBA-LIF is gamma = rho = 0, LIF
alpha = 0, IF beta = 1)::

    i[t] = alpha i[t-1] + x[t];  v[t] = beta vr[t-1] + i[t] + bias
    th[t] = theta + gamma a[t-1];  s[t] = H(v[t] - th[t])
    vr[t] = v[t] - s[t] th[t]  (subtract)  |  v[t] (1 - s[t])  (zero);  a[t] = rho a[t-1] + s[t]

Adjoint, one neuron-step of BPTT (adjoints g_*, running from t = T-1 down to 0; the
reset's terms in g_s drop with ``detach_reset``)::

    subtract: g_v = g_vr, g_th = -s g_vr, g_s += -th g_vr (if not detached)
    zero:     g_v = g_vr (1 - s),         g_s += -v g_vr  (if not detached)
    g_s += dL/ds[t] + g_a;  g_z = g_s sigma'(v - th);  g_v += g_z;  g_th -= g_z
    g_theta += g_th;  g_gamma += g_th a[t-1];  g_rho += g_a a[t-1];  g_a <- rho g_a + gamma g_th
    g_beta += g_v vr[t-1];  g_bias += g_v;  g_vr <- beta g_v
    g_i = g_i + g_v;  dL/dx[t] = g_i;  g_alpha += g_i i[t-1];  g_i <- alpha g_i

Each backend writes these two steps once (a forward neuron-step and its mirrored adjoint
neuron-step) and loops them: :mod:`~snn.kernels.numba_scan` (CPU), :mod:`~snn.kernels.triton_scan`
(CUDA) and :mod:`~snn.kernels.torch_scan` (anything else). The shared layout (parameter
order, surrogate codes, settings, the numba kernels' compile-time flags and run-time switches)
is :mod:`~snn.kernels.layout`.

Saved for the backward: one value per neuron-step. The numba kernels keep the input x
(which exists anyway, so the forward writes only the spikes) and replay the forward per
work item to rebuild v; Triton and the torch loop keep the pre-reset membrane v. From v,
the spikes (``v - th > 0``, the same rounded operations as the forward), vr[t-1],
i[t-1] = v[t-1] - beta vr[t-2] - bias and the ALIF trace a are recomputed. Parameters are
stored once per feature ``F`` and shared by the batch.

Bit-identity: forward spikes and states are bit-identical to the step-by-step path, on
every backend: each performs the same rounded operations in the same order (Triton with
floating-point contraction off). Gradients agree to rounding.

Backends, chosen per call from the table of :mod:`~snn.kernels.scan` (the first that is
available for the input): on CPU, numba kernels compiled for each setting of the flags so
that the inner loop over features has no branch and vectorises, parallel over (batch row,
feature block) work items; on CUDA, the Triton kernels when triton is installed. A custom
surrogate, another dtype, or CUDA without triton runs the same algorithm as a torch loop
over T, calling ``surrogate.grad``. Environment:

- ``SPIKEFORGE_FUSED_BACKEND`` (numba, triton, torch) forces one, e.g. triton on CPU
  tensors under ``TRITON_INTERPRET=1`` for tests.
- ``SPIKEFORGE_FUSED_PARALLEL_MIN`` (default 2**18): the numba kernels (and the event-driven
  Linear) split work across threads from this many elements (T*N) on.

The event-driven Linear (:mod:`snn.kernels.event_linear`, imported from there) lives here
too: the numba forward of a Linear layer that adds only the weight rows of active inputs.
"""

from snn.kernels.layout import PARAM_NAMES, SURROGATE_CODES, FusedConfig, KernelFlags, KernelSwitches
from snn.kernels.numba_scan import numba_available
from snn.kernels.scan import FusedScan, alif_scan, cuba_scan, fused_scan

__all__ = ["PARAM_NAMES", "SURROGATE_CODES", "FusedConfig", "FusedScan", "KernelFlags", "KernelSwitches", "alif_scan",
           "cuba_scan", "fused_scan", "numba_available"]
