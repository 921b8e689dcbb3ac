"""``snn deploy --backend lava`` and the demo stage "lava" (the digits network on Loihi 2 through Lava).

``snn deploy --model PATH --backend lava --dataset digits --samples N [--json]`` compiles the
checkpoint to Loihi 2 fixed point, runs N test samples in Lava (``Loihi2SimCfg``, fixed_pt,
samples streamed back to back with per-layer resets) and in the torch integer emulation,
and reports ``lava_accuracy``, ``float_accuracy`` (the float SNN on the same samples),
``emulation_accuracy``, ``emulation_agreement`` (fraction of samples whose every spike, in
every layer, and readout membrane equal the emulation's), ``samples``, ``timesteps``, spike
counts per layer and the quantisation report.

Decisions: BatchNorm is folded into the preceding convolution; average pooling is folded
into the following weights (a Dense connection with the exact composed matrix), so the
digits CNN deploys as Conv -> Dense -> Dense -> Dense; the Integrator readout is a LIF that
never fires (du = 4095, dv from beta, largest threshold) whose membrane Lava reports every
step through a Monitor; subtract resets become Loihi's zero reset (listed in the report).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from snn.cli import add_json_flag, positive_int
from snn.errors import SpikeforgeError
from snn.fileio import write_json

BACKENDS = ("lava",)
DEMO_SAMPLES = 100


def deploy(model_path: str | Path, dataset: str = "digits", samples: int = 20, data_dir: str | None = None,
           seed: int = 0, cfg: str = "sim", timeout: float = 600.0, device: str | None = None) -> dict[str, Any]:
    """Compile, run in Lava and in the emulator, and compare; see the module docstring for the keys."""
    from hardware.lava.compile import compile_network
    from hardware.lava.driver import run_in_lava
    from hardware.lava.emulate import emulate
    from snn import data
    from snn.pipeline import load_trained

    if samples < 1:
        raise SpikeforgeError(f"samples must be at least 1, got {samples}")
    model, task = load_trained(model_path)
    net = compile_network(model)
    split = data.load_dataset(dataset, data_dir, seed=seed)
    if tuple(split.input_shape) != net.input_shape:
        raise SpikeforgeError(f"model expects input {net.input_shape} but dataset {dataset} has "
                              f"{tuple(split.input_shape)}; pick the dataset it was trained on")
    x, y = split.x_test[:samples], split.y_test[:samples]
    encoded = task.encode(x, torch.Generator().manual_seed(seed))
    q = net.quantise_input(encoded)
    with torch.no_grad():
        float_out = model(encoded)
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
        "samples": int(len(y)), "timesteps": task.timesteps,
        "lava_accuracy": acc(readout(lava.spikes, lava.membrane)),
        "float_accuracy": acc(float_out),
        "emulation_accuracy": acc(readout(em_spikes, em_membrane)),
        "emulation_agreement": float(match.mean()),
        "spikes_per_sample": {k: v / len(y) for k, v in lava.counts.items()},
        "lava_seconds": lava.seconds, "emulation_seconds": emulation_seconds,
        "quantisation": net.report(),
    }


def _cmd_deploy(args: argparse.Namespace) -> dict[str, Any]:
    if args.backend not in BACKENDS:
        raise SpikeforgeError(f"unknown backend {args.backend!r}; choose one of {', '.join(BACKENDS)}")
    return deploy(args.model, args.dataset, args.samples, args.data_dir, args.seed, args.cfg, args.timeout)


def register(subparsers: argparse._SubParsersAction) -> None:
    from snn.data import DATASETS

    parser = subparsers.add_parser("deploy", help="deploy a trained network to Loihi 2 through Lava and compare")
    parser.add_argument("--model", required=True, help="checkpoint written by 'snn train'")
    parser.add_argument("--backend", default="lava", choices=BACKENDS)
    parser.add_argument("--dataset", default="digits", choices=DATASETS)
    parser.add_argument("--data-dir", default=None, help="folder with the dataset's standard files")
    parser.add_argument("--samples", type=positive_int, default=20, help="test samples to run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cfg", default="sim", choices=("sim", "hw"),
                        help="sim: Loihi2SimCfg fixed_pt on CPU; hw: Loihi2HwCfg (needs lava-loihi)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds before the Lava run is stopped")
    add_json_flag(parser)
    parser.set_defaults(run=_cmd_deploy)


def deploy_stage(out: Path, context: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Demo stage: the trained digits CNN on ``DEMO_SAMPLES`` test digits in Lava, against the emulation."""
    print(f"[snn demo] lava: deploying the digits network to Loihi 2 fixed point ({DEMO_SAMPLES} samples in Lava)",
          file=sys.stderr)
    results = deploy(context["results"]["train"]["checkpoint"], samples=DEMO_SAMPLES)
    write_json(Path(out) / "lava.json", results)
    counts = ", ".join(f"layer {k}: {v:.1f}" for k, v in results["spikes_per_sample"].items())
    notes = results["quantisation"]["notes"]
    lines = [
        "## Loihi 2 through Lava",
        "",
        f"The trained network compiled to Loihi 2 fixed point (8-bit weights, 24-bit state, zero reset) and run "
        f"as real Lava processes with {results['run_config']} on {results['samples']} test digits, against the "
        "torch integer emulation.",
        "",
        "| metric | value |",
        "|---|---|",
        f"| samples whose every spike matches the emulation | {100 * results['emulation_agreement']:.1f}% |",
        f"| Lava accuracy | {100 * results['lava_accuracy']:.1f}% |",
        f"| float SNN accuracy (same samples) | {100 * results['float_accuracy']:.1f}% |",
        f"| Lava wall time | {results['lava_seconds']:.1f} s |",
        f"| emulation wall time | {results['emulation_seconds']:.2f} s |",
        "",
        f"Spikes per sample: {counts}." + (f" Compile notes: {'; '.join(notes)}." if notes else ""),
        "",
    ]
    return results, lines


deploy_stage.order = 30  # type: ignore[attr-defined]
