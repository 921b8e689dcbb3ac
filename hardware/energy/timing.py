"""Latency per inference of a compiled network on a neuromorphic chip, from its per-core events.

The timing model is SANA-FE's *simple* model (``schedule_messages_timestep_simple`` in SANA-FE's
``src/schedule.cpp``; Boyle et al., IEEE TCAD 44(8), 2025): in every time step each core first
visits its neurons and sends its spike messages, then processes the messages it received; the
step lasts as long as the busiest core, plus the chip's time-step barrier::

    neuron_c  = sum over the core's neurons of  t_visit + updated * t_update + fired * t_spike
                + packets sent by the core * t_message_out
    message_c = messages received by the core * t_message_in
                + sum over kinds of synaptic events on the core * t_synapse(kind)
    step      = max( max_c message_c, max_c neuron_c ) + t_barrier(tiles in use)
    latency   = sum of the steps of one inference (mean over the samples)

``t_barrier`` is a table keyed by the number of tiles that hold neurons: the entry with the
largest key not above it (SANA-FE's ``LookupTable::get``). Network hops cost no time in the
simple model (no contention, no blocking). Input neurons placed on chip have zero visit, update
and spike latency (SANA-FE's ``loihi_inputs`` soma); their packets cost ``t_message_out``.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from snn.errors import SpikeforgeError

TIMING_TERMS = ("neuron_visit", "soma_update", "spike_out", "message_out", "message_in")


@dataclass
class CoreSteps:
    """Per sample, step and core, the events the timing model needs (arrays ``[S, T, C]``, per-core ``[C]``).

    ``neurons``: neurons on each core whose soma is visited every step (input cores: 0);
    ``updates`` / ``spikes``: somas that did work / fired; ``packets_out``: spike messages the
    core sent; ``messages_in``: messages it received; ``synaptic_events[kind]``: synapses those
    messages reached on it; ``tiles``: tiles holding at least one neuron.
    """

    neurons: np.ndarray
    updates: np.ndarray
    spikes: np.ndarray
    packets_out: np.ndarray
    messages_in: np.ndarray
    synaptic_events: dict[str, np.ndarray]
    tiles: int

    @property
    def samples(self) -> int:
        return int(self.updates.shape[0])

    @property
    def steps(self) -> int:
        return int(self.updates.shape[1])


@dataclass(frozen=True)
class TimingModel:
    """Per-event latencies (seconds, each a cited ``Constant`` with unit ``"s"``) and the barrier table."""

    name: str
    source: str
    latencies: Mapping[str, Any]          # TIMING_TERMS and "synapse_<kind>" -> Constant(unit="s")
    barrier: tuple[tuple[int, float], ...]  # (tiles in use, seconds), ascending

    def __post_init__(self) -> None:
        missing = [t for t in TIMING_TERMS if t not in self.latencies]
        if missing:
            raise SpikeforgeError(f"timing model {self.name!r} lacks latencies for {', '.join(missing)}")
        if any(c.unit != "s" for c in self.latencies.values()):
            raise SpikeforgeError(f"timing model {self.name!r}: latencies are in seconds (unit 's')")
        if not self.barrier or [k for k, _ in self.barrier] != sorted(k for k, _ in self.barrier):
            raise SpikeforgeError(f"timing model {self.name!r} needs a barrier table sorted by tiles")

    def barrier_s(self, tiles: int) -> float:
        """The barrier of the largest key not above ``tiles`` (the first entry below every key)."""
        keys = [k for k, _ in self.barrier]
        return self.barrier[max(bisect.bisect_right(keys, tiles) - 1, 0)][1]

    def synapse_s(self, kind: str) -> float:
        key = f"synapse_{kind}"
        if key not in self.latencies:
            raise SpikeforgeError(f"timing model {self.name!r} has no latency for {kind} synapses")
        return self.latencies[key].value

    def step_latencies(self, cores: CoreSteps) -> dict[str, np.ndarray]:
        """``[S, T]`` arrays: the step (barrier included), the busiest core's neuron and message phases."""
        lat = {k: c.value for k, c in self.latencies.items()}
        neuron = (cores.neurons[None, None, :] * lat["neuron_visit"] + cores.updates * lat["soma_update"]
                  + cores.spikes * lat["spike_out"] + cores.packets_out * lat["message_out"])
        message = cores.messages_in * lat["message_in"]
        for kind, events in cores.synaptic_events.items():
            message = message + events * self.synapse_s(kind)
        neuron_max, message_max = neuron.max(axis=2), message.max(axis=2)
        step = np.maximum(neuron_max, message_max) + self.barrier_s(cores.tiles)
        return {"step": step, "neuron": neuron_max, "message": message_max}

    def latency(self, cores: CoreSteps) -> dict[str, Any]:
        """Latency per inference (mean over samples) and what bounds it."""
        parts = self.step_latencies(cores)
        per_sample = parts["step"].sum(axis=1)
        barrier = self.barrier_s(cores.tiles)
        neuron_bound = float((parts["neuron"] >= parts["message"]).mean()) if parts["step"].size else 0.0
        return {"latency_per_inference_s": float(per_sample.mean()) if per_sample.size else 0.0,
                "latency_per_step_s": float(parts["step"].mean()) if parts["step"].size else 0.0,
                "barrier_per_step_s": barrier, "tiles": cores.tiles, "steps": cores.steps,
                "neuron_bound_steps": neuron_bound,
                "model": self.name, "source": self.source}

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source,
                "latencies": {k: c.as_dict() for k, c in self.latencies.items()},
                "barrier": [list(b) for b in self.barrier]}
