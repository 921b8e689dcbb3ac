"""Hardware events of a compiled network's run on a core placement: what an energy profile prices on a chip.

:func:`loihi_activity` runs the bit-exact emulator (:mod:`hardware.lava.emulate`, equal to
Lava's fixed-point run) with soma-work recording and counts, per inference, on the cores of a
:class:`~hardware.lava.placement.Placement`:

- **neuron_visits**: every neuron of every population (relays and the readout included) is
  visited every step: ``size x T``;
- **soma_updates**: visits in which the soma did work: its membrane was not at rest
  (``v[t-1] != 0``), a message reached it, or it has a bias (SANA-FE's LIF ``updated``);
- **spikes** fired; **packets**: one per spike and distinct destination core (the placement's
  routes), with their **hops** between tiles by direction; input values placed on chip send
  packets and hops the same way (input from the host: packets only);
- **synaptic events** per connection, one per message per nonzero synapse it reaches, stored
  by kind: a ``dense`` connection's are dense synapses, a ``conv`` connection's convolutional
  (graded input values count like spikes).

It also returns the per-core, per-step figures the timing model needs
(:class:`~hardware.energy.timing.CoreSteps`). The counts are a
:class:`~hardware.energy.counting.NetworkCounts` of kind ``"loihi"``: one neuron entry per
population, one synapse entry per connection (``"<layer> <- <source>"``), and an ``input``
entry for the input's packets.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from tqdm import tqdm

from hardware.energy.counting import HARDWARE_KIND, SUMMED, LayerCounts, NetworkCounts
from hardware.energy.timing import CoreSteps
from hardware.lava.compile import LoihiConnection, LoihiLayer, LoihiNetwork
from hardware.lava.emulate import emulate
from hardware.lava.placement import LOIHI1, LOIHI2, Limit, Placement, place
from snn.errors import SpikeforgeError
from snn.graph_network import INPUT

TABLES: dict[str, dict[str, Limit]] = {"loihi1": LOIHI1, "loihi2": LOIHI2}


@dataclass
class LoihiActivity:
    """Hardware events per inference (``counts``), per core and step (``cores``), and how they were obtained."""

    counts: NetworkCounts
    cores: CoreSteps
    placement: Placement
    samples: int
    timesteps: int
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {"samples": self.samples, "timesteps": self.timesteps, "cores": len(self.placement.cores),
                "tiles": self.cores.tiles, "chips": self.placement.chips, "totals_per_inference": self.counts.totals(),
                "notes": list(self.notes)}


def placement_table(name: str) -> dict[str, Limit]:
    if name not in TABLES:
        raise SpikeforgeError(f"unknown placement table {name!r}; known: {', '.join(TABLES)}")
    return TABLES[name]


def _synapses_per_core(conn: LoihiConnection, layer: LoihiLayer, placement: Placement) -> np.ndarray:
    """``[N_source, cores of layer]``: nonzero synapses from each source neuron into each core of ``layer``."""
    ids = placement.layers[layer.name]
    if conn.kind == "dense":
        mask = (conn.weight != 0)
        return np.stack([mask[placement.cores[k].start:placement.cores[k].stop].sum(axis=0) for k in ids], axis=1)
    mask = torch.as_tensor(conn.weight != 0, dtype=torch.float64)
    c_out = conn.weight.shape[0]
    spatial = layer.size // c_out
    out_shape = (c_out, spatial // layer.shape[-1], layer.shape[-1]) if len(layer.shape) == 3 else None
    if out_shape is None:
        raise SpikeforgeError(f"layer {layer.name}: a conv connection needs a [C, H, W] population, got {layer.shape}")
    columns = []
    for k in ids:
        target = torch.zeros(layer.size, dtype=torch.float64)
        target[placement.cores[k].start:placement.cores[k].stop] = 1.0
        back = torch.nn.grad.conv2d_input((1, *conn.in_shape), mask, target.reshape(1, *out_shape),
                                          stride=conn.stride, padding=conn.padding, dilation=conn.dilation,
                                          groups=conn.groups)
        columns.append(np.rint(back.numpy().reshape(-1)).astype(np.int64))
    return np.stack(columns, axis=1)


def _events(x: torch.Tensor) -> np.ndarray:
    """``[T, B, ...]`` -> ``[B, T, N]`` float64 indicator of nonzero values (spikes or graded input)."""
    steps, batch = x.shape[:2]
    return (x.reshape(steps, batch, -1) != 0).to(torch.float64).transpose(0, 1).cpu().numpy()


def loihi_activity(net: LoihiNetwork, q: torch.Tensor, placement: Placement | None = None,
                   table: str = "loihi1", delay: bool = False, max_chips: int | None = None) -> LoihiActivity:
    """Emulate quantised input ``q`` (int ``[T, B, *input_shape]``) and count its hardware events on ``placement``
    (default: placed now on ``table``'s chip, :data:`TABLES`). ``delay``: the emulator's mode (``False``: every
    layer's window of T steps, as a reset-streamed Lava run processes one sample; ``True``: one continuous run)."""
    if placement is None:
        placement = place(net, placement_table(table), max_chips=max_chips)
    return _activity_and_emulation(net, q, placement, delay)[0]


def _activity_and_emulation(net: LoihiNetwork, q: torch.Tensor, placement: Placement,
                            delay: bool = False) -> tuple[LoihiActivity, Any]:
    em = emulate(net, q, delay=delay, updates=True)
    steps, batch = int(q.shape[0]), int(q.shape[1])
    n_cores = len(placement.cores)
    per = 1.0 / max(batch, 1)
    on_chip_input = INPUT in placement.layers
    neurons = np.zeros(n_cores)
    updates, spikes, packets_out, messages_in = (np.zeros((batch, steps, n_cores)) for _ in range(4))
    synaptic: dict[str, np.ndarray] = {}
    layers: list[LayerCounts] = []
    events = {INPUT: _events(q), **{name: _events(s) for name, s in em.spikes.items()}}
    core_of = {name: placement.core_of(name) for name in placement.layers}

    # destinations of every source population: [N_source, cores] synapse counts, summed over its connections
    reach_by_source: dict[str, np.ndarray] = {}
    for layer in net.layers:
        ids = placement.layers[layer.name]
        for conn in layer.connections:
            per_core = _synapses_per_core(conn, layer, placement).astype(np.float64)
            # messages are processed in the step they are sent (a recurrent spike of t-1 is counted at t-1)
            hits = events[conn.source] @ per_core                # [B, T, cores of layer]
            kind = conn.kind
            synaptic.setdefault(kind, np.zeros((batch, steps, n_cores)))[:, :, ids] += hits
            full = reach_by_source.setdefault(conn.source, np.zeros((per_core.shape[0], n_cores)))
            full[:, ids] += per_core
            layers.append(LayerCounts(f"{layer.name} <- {conn.source}", "Dense" if kind == "dense" else "Conv",
                                      "synapse", input="graded input" if conn.source == INPUT else "spikes",
                                      synaptic_ops=float(hits.sum()) * per, synapse_kind=kind))
    for source, synapses in reach_by_source.items():
        reach = (synapses > 0).astype(np.float64)               # [N, cores]: one packet per destination core
        messages_in += events[source] @ reach
        fan = reach.sum(axis=1)
        if source in core_of:
            onehot = np.zeros((fan.shape[0], n_cores))
            onehot[np.arange(fan.shape[0]), core_of[source]] = 1.0
            packets_out += events[source] @ (onehot * fan[:, None])
    for layer in net.layers:
        onehot = np.zeros((layer.size, n_cores))
        onehot[np.arange(layer.size), core_of[layer.name]] = 1.0
        neurons += onehot.sum(axis=0)
        spk = events[layer.name]
        upd = _events(em.updated[layer.name])
        spikes += spk @ onehot
        updates += upd @ onehot
    totals = _packets_and_hops(net, placement, events, per)
    for layer in net.layers:
        sent, east_west, north_south = totals[layer.name]
        module = "readout" if layer.readout else ("relay" if layer.relay else "LIF")
        layers.append(LayerCounts(layer.name, module, "neuron", neuron_updates=layer.size * steps,
                                  neuron_visits=layer.size * steps,
                                  soma_updates=float(em.updated[layer.name].sum()) * per,
                                  spikes=float(em.spikes[layer.name].sum()) * per, spiking=True, packets=sent,
                                  hops_east_west=east_west, hops_north_south=north_south))
    sent, east_west, north_south = totals[INPUT]
    layers.append(LayerCounts(INPUT, "input", "input", packets=sent, hops_east_west=east_west,
                              hops_north_south=north_south))
    if on_chip_input:
        for k in placement.layers[INPUT]:
            neurons[k] = 0.0   # input neurons: no soma work (SANA-FE's loihi_inputs)
    tiles = len({(c.chip, c.tile) for c in placement.cores if c.neurons > 0})
    cores = CoreSteps(neurons, updates, spikes, packets_out, messages_in, synaptic, tiles)
    counts = NetworkCounts(HARDWARE_KIND, steps, 1, layers)
    notes = [f"hardware events of the compiled network, emulated bit-exactly ({batch} samples x {steps} steps, "
             f"{'one continuous run' if delay else 'each layer its own window of T steps'}), on {n_cores} cores / "
             f"{tiles} tiles of {placement.chips} chip(s)"]
    return LoihiActivity(counts, cores, placement, batch, steps, notes), em


def _packets_and_hops(net: LoihiNetwork, placement: Placement, events: dict[str, np.ndarray],
                      per: float) -> dict[str, tuple[float, float, float]]:
    """Per source population: packets, east-west and north-south hops per inference (the placement's routes)."""
    out: dict[str, tuple[float, float, float]] = {}
    for source in [INPUT, *(layer.name for layer in net.layers)]:
        routes = placement.routes.get(source)
        if routes is None:
            out[source] = (0.0, 0.0, 0.0)
            continue
        fired = events[source].sum(axis=(0, 1))     # events per neuron over samples and steps
        out[source] = (float(fired @ routes.cores) * per, float(fired @ routes.hops_east_west) * per,
                       float(fired @ routes.hops_north_south) * per)
    return out

def combine(activities: list[LoihiActivity]) -> LoihiActivity:
    """One activity over the samples of several batches (same network, placement and T): per-inference counts
    are averaged, weighted by samples; the per-core steps are concatenated."""
    if not activities:
        raise SpikeforgeError("no batch was counted")
    first = activities[0]
    total = sum(a.samples for a in activities)
    layers = []
    for index, layer in enumerate(first.counts.layers):
        merged = dataclasses.replace(layer)
        for name in SUMMED:
            setattr(merged, name, sum(getattr(a.counts.layers[index], name) * a.samples for a in activities) / total)
        layers.append(merged)
    cat = lambda name: np.concatenate([getattr(a.cores, name) for a in activities])  # noqa: E731
    kinds = {k for a in activities for k in a.cores.synaptic_events}
    synaptic = {k: np.concatenate([a.cores.synaptic_events.get(k, np.zeros_like(a.cores.updates)) for a in activities])
                for k in kinds}
    cores = CoreSteps(first.cores.neurons, cat("updates"), cat("spikes"), cat("packets_out"), cat("messages_in"),
                      synaptic, first.cores.tiles)
    notes = [first.notes[0].replace(f"({first.samples} samples", f"({total} samples")]
    return LoihiActivity(NetworkCounts(HARDWARE_KIND, first.timesteps, 1, layers), cores, first.placement, total,
                         first.timesteps, notes)


def readout_output(net: LoihiNetwork, em: Any) -> torch.Tensor:
    """What the task's readout decodes, ``[T, B, N]`` float: the readout's membrane, or the last layer's spikes."""
    if net.readout is not None:
        return em.membrane[net.readout.name].to(torch.float64)
    return em.spikes[net.layers[-1].name].to(torch.float64)


def energy_activity(model: torch.nn.Module, encode: Callable[[torch.Tensor, int], torch.Tensor],
                    predict: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor, steps: int,
                    table: str, batch: int = 64, progress: bool = False) -> dict[str, Any]:
    """The ``spikeforge.activity`` entry point ``loihi`` (``snn energy``'s Loihi profiles): compile ``model`` for
    Loihi (subtract resets kept, as the network was trained or converted), place it on ``table``'s chip and count
    its hardware events on ``x`` at T = ``steps``. Returns ``{"activity", "accuracy" (of the emulation),
    "placement" (its report)}``; raises :class:`SpikeforgeError` when the network does not compile or fit."""
    from hardware.lava.compile import compile_network

    net = compile_network(model, reset="subtract")
    placement = place(net, placement_table(table))
    parts, correct = [], 0
    starts = range(0, len(x), batch)
    for start in tqdm(starts, desc=f"Loihi events, T = {steps}", unit="batch", disable=not progress or len(starts) < 2,
                      file=sys.stderr, leave=False):
        q = net.quantise_input(encode(x[start:start + batch], steps))
        activity, em = _activity_and_emulation(net, q, placement)
        parts.append(activity)
        correct += int((predict(readout_output(net, em)) == y[start:start + batch]).sum())
    return {"activity": combine(parts), "accuracy": correct / max(len(x), 1), "placement": placement.report(),
            "reset": "subtract kept (Lava simulation: spikeforge's subtractive LIF)"
            if any(layer.reset == "subtract" for layer in net.layers) else "zero"}
