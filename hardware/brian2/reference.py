"""The torch reference run the Brian2 backend is compared with.

The network is run in float64 (Brian2 computes in float64), in eval mode, on the same
encoded input; spikes of every spiking layer and membranes of every Integrator are
recorded with :class:`snn.recording.Recorder`.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import numpy as np
import torch

from snn.graph_network import GraphNetwork
from snn.network import Sequential
from snn.neurons import Integrator
from snn.recording import Recorder


@dataclass
class TorchResult:
    """Spikes ``[T, S, n]`` (bool) per spiking layer, membranes ``[T, S, n]`` per Integrator."""

    spikes: dict[str, np.ndarray]
    membrane: dict[str, np.ndarray]
    run_seconds: float


def run_torch(model: Sequential | GraphNetwork, inputs: torch.Tensor | np.ndarray, dtype: torch.dtype = torch.float64,
              batch: int = 256) -> TorchResult:
    """Run ``model`` on ``inputs`` (``[T, S, ...]``) in ``dtype``; record every neuron layer."""
    net = copy.deepcopy(model).to(dtype).eval()
    x = torch.as_tensor(np.asarray(inputs)).to(dtype)
    integrators = {name for name, m in net.neuron_layers() if isinstance(m, Integrator)}
    spikes: dict[str, list[np.ndarray]] = {}
    membrane: dict[str, list[np.ndarray]] = {}
    start = time.perf_counter()
    with torch.no_grad():
        for first in range(0, x.shape[1], batch):
            with Recorder(net, spikes=True, membrane=bool(integrators)) as rec:
                net(x[:, first:first + batch])
            for name, s in rec.spikes.items():
                spikes.setdefault(name, []).append(s.reshape(s.shape[0], s.shape[1], -1).numpy() > 0.5)
            for name in integrators:
                v = rec.membrane[name]
                membrane.setdefault(name, []).append(v.reshape(v.shape[0], v.shape[1], -1).numpy())
    elapsed = time.perf_counter() - start
    return TorchResult({k: np.concatenate(v, axis=1) for k, v in spikes.items()},
                       {k: np.concatenate(v, axis=1) for k, v in membrane.items()}, elapsed)
