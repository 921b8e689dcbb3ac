"""The job behind ``snn deploy --backend lava``: compile a checkpoint to Loihi 2 fixed point and
run it in Lava and in the torch integer emulation, then compare.

:func:`deploy` runs N test samples in Lava (``Loihi2SimCfg``, fixed_pt, samples streamed back
to back with per-layer resets) and in the emulation, and reports ``lava_accuracy``,
``float_accuracy`` (the float SNN on the same samples, with its own reset),
``float_accuracy_deployed_reset`` (the same with the resets that were deployed: every
subtract reset made Loihi's zero reset, unless ``reset="subtract"`` kept them; what Lava
should match up to quantisation), ``emulation_accuracy``,
``emulation_agreement`` (fraction of samples whose every spike, in every layer, and readout
membrane equal the emulation's), ``samples``, ``timesteps``, ``reset`` and ``neuron_model`` (which
LIF model ran: Lava's, or our subtractive one, labelled as running in Lava's simulation only),
``netx_compatible`` (whether lava-dl's netx reader describes the file fully), spike counts per
layer and the quantisation report.

``placement`` (:mod:`hardware.lava.placement`): the cores every layer takes under Loihi 2's
per-core limits (each with its source and evidence), the synapses and memory per core, the
chips needed, and ``traffic``: the spike packets between cores per inference (and their mesh
hops, chip-crossing and input packets) counted from the Lava run's spikes. A network that
cannot be placed is refused before anything runs.

Energy and latency of the run (:mod:`hardware.lava.activity`): the run's hardware events (soma
visits and updates, spikes, synaptic events by synapse kind, packets and hops on Loihi 1's cores,
the chip both Loihi energy profiles describe), counted from the emulation of the same input,
which is checked spike for spike against the Lava run (``energy.events_equal_lava_run``), and
priced on ``loihi`` (Davies et al. 2018, Table 2: the pre-silicon lower bound) and
``loihi-calibrated`` (SANA-FE's Loihi file, calibrated to silicon): ``energy_per_inference_j``
(per profile), ``latency_per_inference_s`` (SANA-FE's simple timing model) and ``energy`` (per
component, the band between the two and why they differ).

Any network of the toolkit deploys: a chain (``snn train``) or a graph with residual
additions and concatenations (``snn convert``); see :mod:`hardware.lava.compile`.

Decisions: BatchNorm is folded into the preceding convolution; average pooling is folded
into the following weights (a Dense connection with the exact composed matrix), so the
digits CNN deploys as Conv -> Dense -> Dense -> Dense; the Integrator readout is a LIF that
never fires (du = 4095, dv from beta, largest threshold) whose membrane Lava reports every
step through a Monitor; subtract resets become Loihi's zero reset (listed in the report), or
with ``reset="subtract"`` stay subtract resets (a subtractive LIF model in Lava's simulator).
"""

from __future__ import annotations

import copy
import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hardware.energy.profiles import SANAFE_TIMING, get_profile, price
from hardware.energy.report import explain_band
from hardware.lava.activity import loihi_activity as count_activity
from hardware.lava.compile import LoihiNetwork, compile_network
from hardware.lava.driver import run_in_lava
from hardware.lava.emulate import emulate
from hardware.lava.placement import place, traffic
from snn import data
from snn.errors import SpikeforgeError
from snn.neurons import NeuronLayer
from snn.training import load_trained_with_meta

NEURON_MODELS = {
    "zero": "Lava's LIF (PyLifModelBitAcc; Loihi 2's zero reset)",
    "subtract": "spikeforge's subtractive LIF (a subclass of Lava's PyLifModelBitAcc) for the layers that reset by "
                "subtraction: Lava's simulation only; silicon needs a custom neuron program",
}


def with_loihi_reset(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose spiking layers reset to zero, as Loihi 2's LIF does (what was deployed)."""
    copied = copy.deepcopy(model)
    for module in copied.modules():
        if isinstance(module, NeuronLayer) and getattr(module, "reset", None) == "subtract":
            module.reset = "zero"
    return copied


def deploy(model_path: str | Path, dataset: str = "digits", samples: int = 20, data_dir: str | None = None,
           seed: int | None = None, cfg: str = "sim", timeout: float = 600.0, device: str | None = None,
           timesteps: int | None = None, reset: str = "zero") -> dict[str, Any]:
    """Compile, run in Lava and in the emulator, and compare; see the module docstring for the keys.

    ``timesteps`` overrides the checkpoint's T (a converted network runs at any T); ``reset``
    is :func:`~hardware.lava.compile.compile_network`'s (``"subtract"`` keeps subtract resets).
    """
    if samples < 1:
        raise SpikeforgeError(f"samples must be at least 1, got {samples}")
    model, task, meta = load_trained_with_meta(model_path)
    trained_steps = task.timesteps
    if timesteps is not None:
        task = dataclasses.replace(task, timesteps=timesteps)
    net = compile_network(model, reset=reset)
    # --- core placement (hardware.lava.placement): refused here, before anything runs, when it cannot fit ---
    placement = place(net)
    # --- end core placement ---
    split, choice = data.load_model_split(meta, f"checkpoint {model_path}", dataset, data_dir, seed, task.encoder,
                                          trained_steps)
    seed = choice.seed
    data.check_input_shape(net.input_shape, split, task.step_shape(split.input_shape))
    x, y = split.x_test[:samples], split.y_test[:samples]
    encoded = task.encode(x, torch.Generator().manual_seed(seed))
    q = net.quantise_input(encoded)
    with torch.no_grad():
        float_out = model(encoded)
        changed = reset == "zero" and any(getattr(m, "reset", None) == "subtract" for m in model.modules()
                                          if isinstance(m, NeuronLayer))
        deployed_out = with_loihi_reset(model)(encoded) if changed else float_out   # same resets: same run
    start = time.perf_counter()
    em = emulate(net, q, delay=False, device=device)
    emulation_seconds = time.perf_counter() - start
    lava = run_in_lava(net, q.transpose(0, 1).cpu().numpy(), mode="stream", steps_per_sample=task.timesteps,
                       cfg=cfg, timeout=timeout)

    def readout(spikes: dict[str, np.ndarray], membrane: dict[str, np.ndarray]) -> torch.Tensor:
        if net.readout is not None:
            return torch.from_numpy(np.asarray(membrane[net.readout.name], dtype=np.float64)).transpose(0, 1)
        return torch.from_numpy(np.asarray(spikes[net.layers[-1].name], dtype=np.float64)).transpose(0, 1)

    em_spikes = {k: v.transpose(0, 1).cpu().numpy() for k, v in em.spikes.items()}
    em_membrane = {k: v.transpose(0, 1).cpu().numpy() for k, v in em.membrane.items()}
    match = np.ones(len(y), dtype=bool)
    for name, s in em_spikes.items():
        match &= (lava.spikes[name] == s).all(axis=(1, 2))
    for name, v in em_membrane.items():
        match &= (lava.membrane[name] == v).all(axis=(1, 2))

    def acc(out: torch.Tensor) -> float:
        return float((task.predict(out) == y).double().mean())

    return {
        "backend": "lava", "run_config": "Loihi2SimCfg(select_tag='fixed_pt')" if cfg == "sim" else "Loihi2HwCfg",
        "samples": int(len(y)), "timesteps": task.timesteps, "reset": reset, "neuron_model": NEURON_MODELS[reset],
        "netx_compatible": net.netx_compatible,
        "lava_accuracy": acc(readout(lava.spikes, lava.membrane)),
        "float_accuracy": acc(float_out),
        "float_accuracy_deployed_reset": acc(deployed_out),
        "emulation_accuracy": acc(readout(em_spikes, em_membrane)),
        "emulation_agreement": float(match.mean()),
        "spikes_per_sample": {k: v / len(y) for k, v in lava.counts.items()},
        "lava_seconds": lava.seconds, "emulation_seconds": emulation_seconds,
        "quantisation": net.report(),
        # --- core placement: the cores and the spike traffic between them, counted from the Lava run ---
        "placement": {**placement.report(),
                      "traffic": traffic(net, placement, lava.spikes, inputs=q.transpose(0, 1).cpu().numpy(),
                                         sample_axis=0)},
        # --- end core placement ---
        **run_energy(net, q, em_spikes, lava.spikes),
    }


ENERGY_PROFILES = ("loihi", "loihi-calibrated")


def run_energy(net: LoihiNetwork, q: torch.Tensor, em_spikes: dict[str, np.ndarray],
               lava_spikes: dict[str, np.ndarray]) -> dict[str, Any]:
    """Energy and latency per inference of the run on both Loihi profiles (see the module docstring)."""
    activity = count_activity(net, q.cpu(), table="loihi1")
    equal = all(np.array_equal(lava_spikes[name], s) for name, s in em_spikes.items() if name in lava_spikes)
    estimates = {name: price(activity.counts, get_profile(name)) for name in ENERGY_PROFILES}
    latency = SANAFE_TIMING.latency(activity.cores)
    low, high = estimates["loihi"], estimates["loihi-calibrated"]
    return {
        "energy_per_inference_j": {name: e.total_j for name, e in estimates.items()},
        "latency_per_inference_s": latency["latency_per_inference_s"],
        "energy": {
            "events_equal_lava_run": equal,
            "events": activity.summary(),
            "profiles": {name: {"energy_per_inference_j": e.total_j, "by_component_j": e.by_component,
                                "by_term_j": e.by_term, "complete": e.complete, "unpriced": e.unpriced,
                                "notes": list(e.profile.notes)} for name, e in estimates.items()},
            "latency": latency,
            "why_the_two_differ": explain_band(low, high),
            "placement_table": "loihi1 (Loihi 1's cores as SANA-FE's file lays them out: the chip both profiles "
                               "describe)",
        },
    }
