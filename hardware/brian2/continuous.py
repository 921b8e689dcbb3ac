"""Continuous-time mode: the same network as Brian2 ODEs with physical time constants.

One step of the discrete contract stands for a duration ``step`` (default 1 ms). The
decay factors map to time constants by

    beta  = exp(-step / tau_mem)      tau_mem = -step / ln(beta)     (beta = 1: no leak, IF)
    alpha = exp(-step / tau_syn)      tau_syn = -step / ln(alpha)    (alpha = 0: no synaptic current, LIF)

and a per-step input ``x`` (conv / linear offsets ``b_in``, neuron ``bias``, direct input
current ``W a``) becomes the current ``x / step``. Brian2 integrates, with ``method="exact"``
and the user's ``dt``::

    dI/dt = -I / tau_syn + (W a + b_in) / step                   (CUBA)
    dv/dt = -v / tau_mem + I / step + bias / step
    LIF:    dv/dt = -v / tau_mem + (W a + b_in + bias) / step
    on a presynaptic spike: I += w (CUBA) or v += w (LIF, IF, Integrator)
    v > theta  ->  spike;  v -= theta (subtract) or v = 0 (zero)

What converges as dt -> 0: Brian2's exact integration of these ODEs converges to the
ODE's solution, and so does the *discrete contract rescaled to step dt*
(:func:`rescale_graph`: beta' = beta^(dt/step) = exp(-dt/tau_mem), alpha' likewise, every
per-step current scaled by dt/step, spike weights unchanged). Firing rates of the two
agree to within a tolerance that shrinks with dt (see ``tests/test_brian2_continuous.py``);
for a first-layer LIF neuron with constant current J = x/step the limit is the textbook
rate 1 / (tau_mem ln(J tau_mem / (J tau_mem - theta))). The discrete network at dt = step
(the trained one) is NOT the limit: it differs by O(step / tau).

Inputs are constant analog values (direct encoding) held for ``duration``. ALIF has no
continuous form here.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from hardware.brian2.build import brian_target
from hardware.brian2.targets import check_size, check_target
from hardware.graph import NetworkGraph, Population
from snn.errors import SpikeforgeError
from snn.network import Sequential
from snn.neurons import CubaLIF, Integrator


@dataclass
class ContinuousResult:
    """Spike counts ``[S, n]`` per spiking population, rates in Hz, the run's wall time."""

    counts: dict[str, np.ndarray]
    duration_s: float
    dt_s: float
    run_seconds: float

    def rates(self) -> dict[str, np.ndarray]:
        return {name: c / self.duration_s for name, c in self.counts.items()}


def _uniform(pop: Population, key: str) -> float:
    values = pop.params[key]
    if not np.all(values == values[0]):
        raise SpikeforgeError(f"layer {pop.name} has per-neuron {key}; the continuous-time mode needs one time "
                              "constant per layer (use the discrete mode)")
    return float(values[0])


def time_constant(decay: float, step_s: float) -> float | None:
    """``tau = -step / ln(decay)`` in seconds; ``None`` for decay 1 (no leak); 0 for decay 0."""
    if decay >= 1.0:
        return None
    if decay <= 0.0:
        return 0.0
    return -step_s / math.log(decay)


def rescale_graph(graph: NetworkGraph, fraction: float) -> NetworkGraph:
    """The discrete contract at a step ``f = fraction`` times the original, matching the ODEs above.

    Decays go to the power f (beta' = exp(-dt/tau)). A constant current enters v through
    one integration in a LIF (v += x f) but through two in a CUBA neuron (I += x f, then
    v += I f); a spike jumps v by w (LIF) but I by w (CUBA), which reaches v as w f.
    With I' = f I the contract's form is kept: LIF populations scale per-step currents
    (bias, b_in, direct-input weights) by f and keep spike weights; CUBA populations scale
    bias by f, b_in and direct-input weights by f^2, and spike weights by f.
    """
    out = copy.deepcopy(graph)
    for k, pop in enumerate(out.populations):
        has_current = pop.kind == "cuba" and not np.all(pop.params["alpha"] == 0)
        for key in ("alpha", "beta"):
            if key in pop.params:
                pop.params[key] = pop.params[key] ** fraction
        pop.params["bias"] = pop.params["bias"] * fraction
        current = fraction ** 2 if has_current else fraction
        pop.bias_in = pop.bias_in * current
        pop.weight = pop.weight * (current if k == 0 else (fraction if has_current else 1.0))
        if pop.recurrent is not None and has_current:
            pop.recurrent = pop.recurrent * fraction
    return out


def graph_to_torch(graph: NetworkGraph) -> Sequential:
    """A plain Linear + neuron Sequential computing ``graph`` (dense weights; for small nets)."""
    layers: list[nn.Module] = [nn.Flatten()]
    for pop in graph.populations:
        linear = nn.Linear(pop.weight.shape[0], pop.size).double()
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(pop.weight.toarray().T))
            linear.bias.copy_(torch.from_numpy(pop.bias_in))
        layers.append(linear)
        p = {k: torch.from_numpy(v) for k, v in pop.params.items()}
        if pop.kind == "integrator":
            neuron: nn.Module = Integrator(beta=p["beta"], bias=p["bias"])
        elif pop.kind == "cuba":
            neuron = CubaLIF(alpha=p["alpha"], beta=p["beta"], theta=p["theta"], bias=p["bias"], reset=pop.reset)
        else:
            raise SpikeforgeError(f"layer {pop.name} ({pop.kind}) has no plain-torch form here")
        layers.append(neuron)
    return Sequential(*layers, input_shape=graph.input_shape).double().eval()


def _equations(pop: Population, first: bool, step_s: float) -> tuple[str, str, dict]:
    """(model equations, on_pre target variable, namespace) of one population."""
    from brian2 import second

    ns = {"step": step_s * second}
    tau_m = time_constant(_uniform(pop, "beta"), step_s)
    tau_s = time_constant(_uniform(pop, "alpha"), step_s) if pop.kind == "cuba" else 0.0
    if tau_m == 0.0:
        raise SpikeforgeError(f"layer {pop.name} has beta = 0 (no memory); it has no continuous-time form")
    leak = "" if tau_m is None else "-v / tau_m + "
    if tau_m is not None:
        ns["tau_m"] = tau_m * second
    drive = "(X + b_in)" if first else "b_in"
    if tau_s == 0.0:
        eqs = f"dv/dt = {leak}({drive} + bias) / step : 1\n"
        target = "v"
    else:
        ns["tau_s"] = tau_s * second
        eqs = f"dI/dt = -I / tau_s + {drive} / step : 1\ndv/dt = {leak}(I + bias) / step : 1\n"
        target = "I"
    eqs += "theta : 1 (constant)\nbias : 1 (constant)\nb_in : 1 (constant)\n"
    if first:
        eqs += "X : 1\n"
    return eqs, target, ns


def run_continuous(graph: NetworkGraph, values: np.ndarray, duration_s: float, dt_s: float, step_s: float = 1e-3,
                   target: str = "numpy", max_synapses: int | None = None) -> ContinuousResult:
    """Integrate ``graph`` as ODEs for ``duration_s`` with step ``dt_s``; ``values`` ``[S, *input_shape]``
    are constant direct inputs (all samples side by side). Returns spike counts per population."""
    check_target(target)
    if not graph.is_chain():
        raise SpikeforgeError("the network is a graph with residual additions or concatenations; the continuous-time "
                              "Brian2 mode runs chains of layers only; use the discrete mode (snn simulate "
                              "--backend brian2), which runs graphs spike for spike")
    for pop in graph.populations:   # refused before any Brian2 object exists
        if pop.kind == "alif":
            raise SpikeforgeError(f"layer {pop.name} (ALIF) has no continuous-time form here; use the discrete mode")
        if pop.v_start is not None:
            raise SpikeforgeError(f"layer {pop.name} starts charged (v_init); the continuous-time mode starts at "
                                  "rest; use the discrete mode")
    values = np.asarray(values, dtype=np.float64)
    if tuple(values.shape[1:]) != graph.input_shape:
        raise SpikeforgeError(f"continuous input must be [S, {', '.join(map(str, graph.input_shape))}], "
                              f"got {list(values.shape)}")
    if not (dt_s > 0 and duration_s > dt_s):
        raise SpikeforgeError(f"need 0 < dt < duration, got dt={dt_s} s, duration={duration_s} s")
    samples = values.shape[0]
    check_size(graph.synapses, graph.neurons, samples, target, max_synapses)
    with brian_target(target):
        return _simulate(graph, values.reshape(samples, -1), duration_s, dt_s, step_s)


def _simulate(graph: NetworkGraph, values: np.ndarray, duration_s: float, dt_s: float,
              step_s: float) -> ContinuousResult:
    import brian2 as b2

    batch, n_in = values.shape
    dt = dt_s * b2.second
    source = b2.NeuronGroup(batch * n_in, "value : 1 (constant)", dt=dt, name="input")
    source.value = values.reshape(-1)
    objects: list = [source]
    monitors = {}
    pre = source
    for k, pop in enumerate(graph.populations, start=1):
        eqs, var, ns = _equations(pop, k == 1, step_s)
        kwargs = {}
        if pop.spiking:
            kwargs = {"threshold": "v > theta", "reset": "v -= theta" if pop.reset == "subtract" else "v = 0"}
        group = b2.NeuronGroup(batch * pop.size, eqs, method="exact", dt=dt, namespace=ns, name=f"layer_{k}",
                               **kwargs)
        if pop.spiking:
            group.theta = np.tile(pop.params["theta"], batch)
        group.bias = np.tile(pop.params["bias"], batch)
        group.b_in = np.tile(pop.bias_in, batch)
        objects.append(group)
        if k == 1:
            syn = _summed(source, group, pop.weight, batch, dt)
        else:
            syn = _plain(pre, group, pop.weight, batch, f"{var}_post += w", dt, f"syn_{k}")
        objects.append(syn)
        if pop.recurrent is not None:
            objects.append(_plain(group, group, pop.recurrent, batch, f"{var}_post += w", dt, f"rec_{k}"))
        if pop.spiking:
            monitors[pop.name] = (b2.SpikeMonitor(group, record=False, name=f"spikes_{k}"), pop.size)
            objects.append(monitors[pop.name][0])
        pre = group
    net = b2.Network(*objects)
    start = time.perf_counter()
    net.run(duration_s * b2.second)
    elapsed = time.perf_counter() - start
    counts = {name: np.asarray(mon.count).reshape(batch, size).astype(float) for name, (mon, size) in monitors.items()}
    return ContinuousResult(counts, duration_s, dt_s, elapsed)


def _summed(source, group, weight: sp.csr_matrix, batch: int, dt):
    """Direct input as a continuous current: X_post = sum w * value_pre every step."""
    import brian2 as b2

    coo = weight.tocoo()
    n_pre, n_post = weight.shape
    offsets = np.arange(batch)[:, None]
    syn = b2.Synapses(source, group, "w : 1 (constant)\nX_post = w * value_pre : 1 (summed)", dt=dt, name="syn_1")
    syn.connect(i=(coo.row[None] + offsets * n_pre).reshape(-1), j=(coo.col[None] + offsets * n_post).reshape(-1))
    syn.w = np.tile(coo.data, batch)
    return syn


def _plain(pre, post, weight: sp.csr_matrix, batch: int, on_pre: str, dt, name: str):
    import brian2 as b2

    coo = weight.tocoo()
    n_pre, n_post = weight.shape
    offsets = np.arange(batch)[:, None]
    syn = b2.Synapses(pre, post, "w : 1 (constant)", on_pre=on_pre, dt=dt, name=name)
    syn.connect(i=(coo.row[None] + offsets * n_pre).reshape(-1), j=(coo.col[None] + offsets * n_post).reshape(-1))
    syn.w = np.tile(coo.data, batch)
    return syn
