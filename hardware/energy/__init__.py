"""Energy per inference: operation counts from simulated activity, priced by cited hardware profiles.

- :mod:`hardware.energy.counting`: forward hooks that count, per layer and per inference,
  synaptic operations (accumulates), MACs, neuron updates, spikes, activation sparsity and
  memory traffic from the run actually simulated;
- :mod:`hardware.energy.profiles`: hardware profiles as data (every constant with its value,
  source, evidence and scope) and the pricing of counts, and of a compiled network's hardware
  events (Loihi: the pre-silicon Table 2 and SANA-FE's silicon-calibrated file);
- :mod:`hardware.energy.timing`: latency per inference from per-core events (SANA-FE's simple
  timing model);
- :mod:`hardware.energy.report`: tables, JSON and plots;
- :mod:`hardware.energy.run`: the job behind ``snn energy`` (simulate, count, price, plot);
- :mod:`hardware.energy.cli`: ``snn energy`` and the demo stage.

The names below load on first use, so ``snn energy --help`` does not import torch.
"""

from __future__ import annotations

from snn.lazy import lazy_attributes

_HOMES = {name: "hardware.energy.counting" for name in ("LayerCounts", "NetworkCounts", "OperationCounter",
                                                       "count_operations")}
_HOMES |= {name: "hardware.energy.profiles" for name in ("Constant", "Estimate", "Profile", "get_profile", "price",
                                                         "register_profile")}
_HOMES |= {name: "hardware.energy.timing" for name in ("CoreSteps", "TimingModel")}
__all__ = sorted(_HOMES)
__getattr__, __dir__ = lazy_attributes(__name__, _HOMES)
