"""Brian2 backend: the dynamics contract in Brian2, spike for spike, plus a continuous-time mode.

The network arrives as a :class:`hardware.graph.NetworkGraph` (populations joined by sparse
affine maps: conv as synapses, BatchNorm folded), shared with the other backends.

- :mod:`.build`      discrete-time contract in Brian2 (exact), batched samples
- :mod:`.continuous` ODE form with time constants (``method="exact"``), beta = exp(-dt / tau)
- :mod:`.targets`    code-generation targets (numpy, cython, cpp_standalone) and size checks
- :mod:`.reference`  the torch float64 reference run
- :mod:`.simulate`   dataset runs and the torch/Brian2 comparison behind ``snn simulate``
- :mod:`.cli`        ``snn simulate`` and the demo stage

The names below load on first use, so ``snn simulate --help`` does not import torch.
"""

from __future__ import annotations

from snn.lazy import lazy_attributes

_HOMES = {"BrianResult": "hardware.brian2.build", "run_discrete": "hardware.brian2.build",
          "TARGETS": "hardware.brian2.targets"}
__all__ = list(_HOMES)
__getattr__, __dir__ = lazy_attributes(__name__, _HOMES)
