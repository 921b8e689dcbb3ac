"""spikeforge's simulator core: neuron dynamics, surrogate gradients, layers and training.

Tensors are time-major ``[T, B, ...]``. See :mod:`snn.functional` for the equations.

The public names below are imported on first use (PEP 562), so ``import snn`` and the
``snn`` command's start-up do not pay for torch until a name that needs it is touched.
"""

from __future__ import annotations

from snn.lazy import lazy_attributes

# public name -> the module that defines it (a module's own name: the module itself)
_HOMES = {
    "ALIF": "snn.neurons", "IF": "snn.neurons", "LIF": "snn.neurons", "CubaLIF": "snn.neurons",
    "Integrator": "snn.neurons", "NeuronLayer": "snn.neurons", "Sequential": "snn.network",
    "Recorder": "snn.recording", "SpikeforgeError": "snn.errors",
    "FitConfig": "snn.training", "Task": "snn.training", "evaluate": "snn.training", "fit": "snn.training",
    "load_checkpoint": "snn.checkpoint", "save_checkpoint": "snn.checkpoint",
    "encoders": "snn.encoders", "functional": "snn.functional", "losses": "snn.losses", "surrogate": "snn.surrogate",
}

__all__ = list(_HOMES)

__version__ = "0.1.0"

__getattr__, __dir__ = lazy_attributes(__name__, _HOMES)
