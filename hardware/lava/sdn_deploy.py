"""The job behind ``snn deploy --neuron sigma-delta``: a converted network as a Loihi 2 sigma-delta network.

:func:`deploy_sigma_delta` compiles the checkpoint (:mod:`hardware.lava.sdn_compile`, sized
on 256 training samples), streams N test samples through real Lava processes
(``Loihi2SimCfg(select_tag="fixed_pt")``) and through the torch emulation in one continuous
run, each sample shown for T steps (default 1) and read ``latency_steps`` (the network's
depth) steps after its last one, and reports: ``lava_accuracy``, ``emulation_accuracy``,
``ann_accuracy`` (the float rate limit of the converted network: every IF a ReLU, i.e. the
ANN it came from), ``snn_accuracy`` (the converted spiking network itself, at the
checkpoint's T), ``emulation_agreement`` (fraction of samples whose every message, in every
layer and the input encoder, and readout activation in its window equal the emulation's),
``identical`` (the whole run equal), ``messages_per_sample`` per layer and
``graded_messages_per_inference`` (nonzero payloads of ``message_bits`` bits), and the
quantisation report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from hardware.lava.driver import run_in_lava
from hardware.lava.sdn_compile import compile_sigma_delta, float_logits
from hardware.lava.sdn_emulate import emulate_sigma_delta, message_counts
from snn import data
from snn.errors import SpikeforgeError
from snn.graph_network import INPUT
from snn.training import load_trained_with_meta

CALIBRATION_SAMPLES = 256
NEURON_MODEL = ("Lava's SigmaDelta (PySigmaDeltaModelFixed; RELU, the readout UNIT) fed by Dense / Conv with graded "
                "input, a Delta encoder on the input (PyDeltaModelFixed)")


def stream_frames(x: torch.Tensor, timesteps: int, tail: int) -> torch.Tensor:
    """Samples ``[S, *shape]`` shown ``timesteps`` steps each, the last held ``tail`` steps more:
    ``[S T + tail, *shape]``."""
    shown = x.unsqueeze(1).expand(x.shape[0], timesteps, *x.shape[1:]).reshape(-1, *x.shape[1:])
    return torch.cat([shown, shown[-1:].expand(tail, *x.shape[1:])])


def deploy_sigma_delta(model_path: str | Path, dataset: str = "digits", samples: int = 20,
                       data_dir: str | None = None, seed: int | None = None, cfg: str = "sim", timeout: float = 600.0,
                       device: str | None = None, timesteps: int | None = None,
                       message_bits: int = 16) -> dict[str, Any]:
    """Compile, run in Lava and in the emulator, and compare; see the module docstring for the keys."""
    if samples < 1:
        raise SpikeforgeError(f"samples must be at least 1, got {samples}")
    steps_per_sample = 1 if timesteps is None else int(timesteps)
    model, task, meta = load_trained_with_meta(model_path)
    split, choice = data.load_model_split(meta, f"checkpoint {model_path}", dataset, data_dir, seed, task.encoder,
                                          task.timesteps)
    seed = choice.seed
    net = compile_sigma_delta(model, split.x_train[:CALIBRATION_SAMPLES], message_bits=message_bits)
    data.check_input_shape(net.input_shape, split, task.step_shape(split.input_shape))
    x, y = split.x_test[:samples], split.y_test[:samples]
    latency = net.depth
    q = net.quantise_input(stream_frames(x, steps_per_sample, latency).unsqueeze(1))
    em = emulate_sigma_delta(net, q, device=device)   # refuses an overflow before Lava runs
    lava = run_in_lava(net, q[:, 0].cpu().numpy(), mode="single", cfg=cfg, timeout=timeout)
    readout = net.readout.name
    em_messages = {k: v[:, 0].cpu().numpy() for k, v in em.messages.items()}
    em_readout = em.readout[:, 0].cpu().numpy()
    depth = {INPUT: 0, **{layer.name: layer.depth for layer in net.layers}}
    starts = np.arange(len(y)) * steps_per_sample
    match = np.ones(len(y), dtype=bool)
    for name, m in em_messages.items():
        for k, start in enumerate(starts + depth[name]):
            window = slice(start, start + steps_per_sample)
            match[k] &= np.array_equal(lava.spikes[name][window], m[window])
    for k, start in enumerate(starts + latency):
        window = slice(start, start + steps_per_sample)
        match[k] &= np.array_equal(lava.membrane[readout][window], em_readout[window])
    identical = all(np.array_equal(lava.spikes[k], m) for k, m in em_messages.items()) and \
        np.array_equal(lava.membrane[readout], em_readout)
    read_at = torch.as_tensor(starts + steps_per_sample - 1 + latency)

    def acc(logits: torch.Tensor) -> float:
        return float((logits.argmax(-1) == y).double().mean())

    with torch.no_grad():
        snn_out = model(task.encode(x, torch.Generator().manual_seed(seed)))
    counts = message_counts(em_messages)
    return {
        "backend": "lava", "neuron": "sigma-delta", "neuron_model": NEURON_MODEL,
        "run_config": "Loihi2SimCfg(select_tag='fixed_pt')" if cfg == "sim" else "Loihi2HwCfg",
        "samples": int(len(y)), "timesteps": steps_per_sample, "latency_steps": latency,
        "steps_run": int(q.shape[0]), "message_bits": net.message_bits,
        "lava_accuracy": acc(torch.from_numpy(lava.membrane[readout])[read_at]),
        "emulation_accuracy": acc(torch.from_numpy(em_readout)[read_at]),
        "ann_accuracy": acc(float_logits(model, x)),
        "snn_accuracy": float((task.predict(snn_out) == y).double().mean()), "snn_timesteps": task.timesteps,
        "emulation_agreement": float(match.mean()), "identical": bool(identical),
        "messages_per_sample": {k: v / len(y) for k, v in counts.items()},
        "graded_messages_per_inference": sum(counts.values()) / len(y),
        "lava_messages_per_sample": {k: v / len(y) for k, v in lava.counts.items()},
        "lava_seconds": lava.seconds, "netx_compatible": False,
        "quantisation": net.report(),
    }
