"""The discrete-time dynamics contract, reproduced exactly in Brian2.

One Brian2 step (``dt`` = 1 ms stands for one step of the contract) runs, per population
k in running order, three scheduled operations, all in the ``groups`` slot so that a
population integrates the spikes its sources emitted in the SAME step (torch has no
inter-layer delay; Brian2's default schedule would add one step per layer)::

    order 3k    run_regularly   i = alpha i + (x + b_in)            (CUBA; LIF alpha = 0, IF beta = 1)
                                v = beta v + i + bias
                                spk = [v > theta]                    strictly greater
                                v = v - spk theta  |  v (1 - spk)    reset subtract | zero
                                x = 0                                input consumed
    order 3k+1  thresholder     spike event where spk = 1
    order 3k+2  on_pre          x_post += w  for every outgoing synapse of a spiking neuron

A population with several sources (a residual addition, a concatenation) has one
``Synapses`` object per projection of :mod:`hardware.graph`, each acting in its source's
slot: all of them before the population's own update, since sources come first in the
running order.

ALIF adds ``theta_t = theta + gamma adapt``, resets by ``theta_t`` and updates
``adapt = rho adapt + spk``; the Integrator readout runs ``v = beta v + (x + b_in) + bias``
and never spikes. The input population (order 0-2) holds the encoded input value of the
step (from a 2-D ``TimedArray``); its event fires where the value is non-zero and its
synapses add ``w * value``, so rate-coded spikes (value 1) and direct current injection
(any value) share one path. ``w`` and ``b_in`` are the sparse affine map of
:mod:`hardware.graph` (conv expanded to synapses, BatchNorm folded, pooling as
fixed weights).

Samples: ``batch`` samples run side by side as copies of every population (neuron index
``b * n + j``); further samples follow in time, and a ``fresh(t)`` flag that is 1 on the
first step of every sample zeroes the state there (or sets v to v_init * theta for an IF
layer that starts charged), exactly like a new torch forward.
Brian2 computes in float64: compare with the torch network in float64.
"""

from __future__ import annotations

import contextlib
import math
import tempfile
import time
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from hardware.brian2.targets import check_size, check_target
from hardware.graph import NetworkGraph, Population
from snn.errors import SpikeforgeError
from snn.graph_network import INPUT

# Synapses (all copies) the automatic batch size aims at: a few million keep NumPy fast.
AUTO_BATCH_SYNAPSES = 4_000_000

_CUBA_MODEL = """
x : 1
xr : 1
I : 1
v : 1
spk : 1
alpha : 1 (constant)
beta : 1 (constant)
theta : 1 (constant)
bias : 1 (constant)
b_in : 1 (constant)
"""
_ALIF_EXTRA = """
adapt : 1
rho : 1 (constant)
gamma : 1 (constant)
"""
_INTEGRATOR_MODEL = """
x : 1
v : 1
beta : 1 (constant)
bias : 1 (constant)
b_in : 1 (constant)
"""


def update_code(population: Population) -> str:
    """The per-step statements of ``population`` (``fresh`` = 1 on a sample's first step)."""
    keep = "(1 - fresh(t))"
    if population.kind == "integrator":
        return f"v = beta * v * {keep} + (x + b_in) + bias\nx = 0"
    start = f"(v * {keep} + v0 * fresh(t))" if population.v_start is not None else f"v * {keep}"
    lines = [f"I = alpha * I * {keep} + ((x + b_in) + xr * {keep})",
             f"v = beta * {start} + I + bias"]
    threshold = "theta"
    if population.kind == "alif":
        lines.append(f"theta_t = theta + gamma * adapt * {keep}")
        threshold = "theta_t"
    lines.append(f"spk = int(v > {threshold})")
    lines.append(f"v = v - spk * {threshold}" if population.reset == "subtract" else "v = v * (1 - spk)")
    if population.kind == "alif":
        lines.append(f"adapt = rho * adapt * {keep} + spk")
    lines += ["x = 0", "xr = 0"]
    return "\n".join(lines)


@dataclass
class BrianResult:
    """Outputs of a Brian2 run, time-major like torch: spikes ``[T, S, n]`` (bool) per spiking
    population, membrane ``[T, S, n]`` per integrator population."""

    spikes: dict[str, np.ndarray]
    membrane: dict[str, np.ndarray]
    build_seconds: float
    run_seconds: float
    synapses: int
    batch: int
    target: str
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)


def auto_batch(graph: NetworkGraph, samples: int) -> int:
    return max(1, min(samples, AUTO_BATCH_SYNAPSES // max(1, graph.synapses)))


@contextlib.contextmanager
def brian_target(target: str, directory: str | None = None) -> Iterator[None]:
    """Select ``target`` for the duration of the block and restore Brian2's previous state."""
    from brian2 import prefs, set_device
    from brian2.devices.device import get_device, reset_device

    previous = prefs.codegen.target
    if target == "cpp_standalone":
        with contextlib.ExitStack() as stack:
            folder = directory or stack.enter_context(tempfile.TemporaryDirectory(prefix="spikeforge-brian2-"))
            set_device("cpp_standalone", directory=folder, build_on_run=True, with_output=False)
            try:
                yield
            finally:
                get_device().reinit()
                reset_device()
        return
    prefs.codegen.target = target
    try:
        yield
    finally:
        prefs.codegen.target = previous


def run_discrete(graph: NetworkGraph, inputs: np.ndarray, batch: int | None = None, target: str = "numpy",
                 directory: str | None = None, max_synapses: int | None = None) -> BrianResult:
    """Simulate ``graph`` in Brian2 on ``inputs`` (``[T, S, *input_shape]``, the encoded input).

    ``batch`` samples run in parallel (default: as many as keep ~4 M synapses); the rest
    follow in time. Returns spikes and readout membranes shaped ``[T, S, n]``.
    """
    check_target(target)
    inputs = np.asarray(inputs, dtype=np.float64)
    if inputs.ndim < 2 or tuple(inputs.shape[2:]) != graph.input_shape:
        raise SpikeforgeError(f"Brian2 input must be [T, S, {', '.join(map(str, graph.input_shape))}], "
                              f"got {list(inputs.shape)}; encode the samples first (time-major)")
    if not np.isfinite(inputs).all():
        raise SpikeforgeError("Brian2 input contains NaN or inf; check the data and the encoder")
    steps, samples = inputs.shape[:2]
    batch = auto_batch(graph, samples) if batch is None else min(int(batch), samples)
    if batch < 1:
        raise SpikeforgeError(f"batch must be at least 1, got {batch}")
    check_size(graph.synapses, graph.neurons, batch, target, max_synapses)
    with brian_target(target, directory):
        return _simulate(graph, inputs.reshape(steps, samples, -1), batch, target)


def _simulate(graph: NetworkGraph, inputs: np.ndarray, batch: int, target: str) -> BrianResult:
    import brian2 as b2

    start = time.perf_counter()
    steps, samples, n_in = inputs.shape
    chunks = math.ceil(samples / batch)
    padded = np.zeros((steps, chunks * batch, n_in))
    padded[:, :samples] = inputs
    # time index c*T + t, neuron index b*n_in + j
    table = padded.reshape(steps, chunks, batch * n_in).transpose(1, 0, 2).reshape(chunks * steps, batch * n_in)
    dt = 1 * b2.ms
    fresh = b2.TimedArray(np.tile(np.eye(1, steps)[0], chunks), dt=dt, name="fresh")
    stimulus = b2.TimedArray(table, dt=dt, name="stimulus")
    namespace = {"fresh": fresh, "stimulus": stimulus}

    source = b2.NeuronGroup(batch * n_in, "value : 1", threshold="value != 0", reset="", dt=dt, namespace=namespace,
                            name="input")
    source.run_regularly("value = stimulus(t, i)", when="groups", order=0, dt=dt)
    source.set_event_schedule("spike", when="groups", order=1)
    objects: list = [source]
    groups, monitors, states, synapses = {INPUT: source}, {}, {}, 0
    index = {INPUT: 0}
    for k, pop in enumerate(graph.populations, start=1):
        group = _group(pop, batch, dt, namespace, k)
        objects.append(group)
        for j, (name, weight) in enumerate(pop.projections):
            # the source's synapses act right after its own update and spike event (order 3i + 2)
            syn = _connect(groups[name], group, weight, batch, "x_post += w * value_pre" if name == INPUT
                           else "x_post += w", 3 * index[name] + 2, dt, f"syn_{k}" if j == 0 else f"syn_{k}_{j}")
            objects.append(syn)
            synapses += len(syn)
        if pop.recurrent is not None:
            rec = _connect(group, group, pop.recurrent, batch, "xr_post += w", 3 * k + 2, dt, f"rec_{k}")
            objects.append(rec)
            synapses += len(rec)
        if pop.spiking:
            monitors[pop.name] = b2.SpikeMonitor(group, record=True, name=f"spikes_{k}")
            objects.append(monitors[pop.name])
        else:
            states[pop.name] = b2.StateMonitor(group, "v", record=True, when="end", dt=dt, name=f"state_{k}")
            objects.append(states[pop.name])
        groups[pop.name], index[pop.name] = group, k
    net = b2.Network(*objects)
    built = time.perf_counter()
    # Brian2's own progress report on stderr (start, every 10 s of wall time, end): runs can take minutes.
    net.run(chunks * steps * dt, namespace=namespace, report="stderr", report_period=10 * b2.second)
    ran = time.perf_counter()

    sizes = {p.name: p.size for p in graph.populations}
    spikes = {name: _spike_array(mon, steps, chunks, batch, sizes[name], samples) for name, mon in monitors.items()}
    membrane = {}
    for name, mon in states.items():
        v = np.asarray(mon.v)
        # v: [batch * n, chunks * T] -> [T, S, n]
        v = v.reshape(batch, sizes[name], chunks, steps).transpose(3, 2, 0, 1).reshape(steps, chunks * batch, -1)
        membrane[name] = v[:, :samples].copy()
    return BrianResult(spikes, membrane, built - start, ran - built, synapses, batch, target,
                       {p.name: p.shape for p in graph.populations})


def _group(pop: Population, batch: int, dt, namespace: dict, k: int):
    import brian2 as b2

    model = _INTEGRATOR_MODEL if pop.kind == "integrator" else _CUBA_MODEL + (_ALIF_EXTRA if pop.kind == "alif" else "")
    kwargs = {"threshold": "spk > 0.5", "reset": ""} if pop.spiking else {}
    if pop.v_start is not None:
        model += "v0 : 1 (constant)\n"
    group = b2.NeuronGroup(batch * pop.size, model, dt=dt, namespace=namespace, name=f"layer_{k}", **kwargs)
    for key, values in pop.params.items():
        setattr(group, key, np.tile(values, batch))
    if pop.v_start is not None:
        group.v0 = np.tile(pop.v_start, batch)
    group.b_in = np.tile(pop.bias_in, batch)
    group.run_regularly(update_code(pop), when="groups", order=3 * k, dt=dt)
    if pop.spiking:
        group.set_event_schedule("spike", when="groups", order=3 * k + 1)
    return group


def _connect(pre, post, weight, batch: int, on_pre: str, order: int, dt, name: str):
    import brian2 as b2

    coo = weight.tocoo()
    n_pre, n_post = weight.shape
    offsets = np.arange(batch)[:, None]
    i = (coo.row[None, :] + offsets * n_pre).reshape(-1)
    j = (coo.col[None, :] + offsets * n_post).reshape(-1)
    syn = b2.Synapses(pre, post, "w : 1 (constant)", on_pre=on_pre, dt=dt, name=name)
    syn.connect(i=i.astype(np.int32), j=j.astype(np.int32))
    syn.w = np.tile(coo.data, batch)
    syn.pre.when = "groups"
    syn.pre.order = order
    return syn


def _spike_array(monitor, steps: int, chunks: int, batch: int, size: int, samples: int) -> np.ndarray:
    """SpikeMonitor (neuron b*n + j, time step c*T + t) -> bool ``[T, S, n]``."""
    out = np.zeros((steps, chunks * batch, size), dtype=bool)
    index = np.asarray(monitor.i, dtype=np.int64)
    step = np.rint(np.asarray(monitor.t) / 1e-3).astype(np.int64)
    out[step % steps, (step // steps) * batch + index // size, index % size] = True
    return out[:, :samples]
