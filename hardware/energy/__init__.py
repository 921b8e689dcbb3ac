"""Energy per inference: operation counts from simulated activity, priced by cited hardware profiles.

- :mod:`hardware.energy.counting`: forward hooks that count, per layer and per inference,
  synaptic operations (accumulates), MACs, neuron updates, spikes, activation sparsity and
  memory traffic from the run actually simulated;
- :mod:`hardware.energy.profiles`: hardware profiles as data (every constant with its value,
  source, evidence and scope) and the pricing of counts;
- :mod:`hardware.energy.report`: tables, JSON and plots;
- :mod:`hardware.energy.cli`: ``snn energy`` and the demo stage.
"""

from hardware.energy.counting import LayerCounts, NetworkCounts, OperationCounter, count_operations
from hardware.energy.profiles import Constant, Estimate, Profile, get_profile, price, register_profile

__all__ = ["Constant", "Estimate", "LayerCounts", "NetworkCounts", "OperationCounter", "Profile",
           "count_operations", "get_profile", "price", "register_profile"]
