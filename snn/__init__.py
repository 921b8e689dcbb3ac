"""spikeforge's simulator core: neuron dynamics, surrogate gradients, layers and training.

Tensors are time-major ``[T, B, ...]``. See :mod:`snn.functional` for the equations.
"""

from snn import encoders, functional, losses, surrogate
from snn.checkpoint import load_checkpoint, save_checkpoint
from snn.errors import SpikeforgeError
from snn.network import Sequential
from snn.neurons import ALIF, IF, LIF, CubaLIF, Integrator, NeuronLayer
from snn.recording import Recorder
from snn.training import FitConfig, Task, evaluate, fit

__all__ = [
    "ALIF", "IF", "LIF", "CubaLIF", "Integrator", "NeuronLayer", "Sequential", "Recorder", "SpikeforgeError",
    "FitConfig", "Task", "evaluate", "fit", "load_checkpoint", "save_checkpoint",
    "encoders", "functional", "losses", "surrogate",
]

__version__ = "0.1.0"
