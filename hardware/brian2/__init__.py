"""Brian2 backend: the dynamics contract in Brian2, spike for spike, plus a continuous-time mode.

The network arrives as a :class:`hardware.graph.NetworkGraph` (populations joined by sparse
affine maps: conv as synapses, BatchNorm folded), shared with the other backends.

- :mod:`.build`      discrete-time contract in Brian2 (exact), batched samples
- :mod:`.continuous` ODE form with time constants (``method="exact"``), beta = exp(-dt / tau)
- :mod:`.targets`    code-generation targets (numpy, cython, cpp_standalone) and size checks
- :mod:`.reference`  the torch float64 reference run
- :mod:`.simulate`   dataset runs and the torch/Brian2 comparison behind ``snn simulate``
"""

from __future__ import annotations

from hardware.brian2.build import BrianResult, run_discrete
from hardware.brian2.targets import TARGETS

__all__ = ["TARGETS", "BrianResult", "run_discrete"]
