"""Run a dataset through a trained network on the torch or Brian2 backend, and compare.

``simulate`` loads a checkpoint (``snn train``), encodes ``samples`` test samples with the
checkpoint's task (direct current injection or seeded rate spikes), runs them on
``backend`` and reports accuracy, spike counts per layer and wall time. With ``compare``
it also runs the torch reference (float64) on the same encoded input and reports the
fraction of samples whose spike trains agree exactly in every spiking layer.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np
import torch

from hardware.brian2.build import run_discrete
from hardware.brian2.reference import run_torch
from hardware.graph import network_graph
from snn import data
from snn.errors import SpikeforgeError
from snn.losses import predict
from snn.training import Task, load_trained_with_meta

BACKENDS = ("torch", "brian2")


def _outputs(result, task: Task) -> np.ndarray:
    """The readout tensor ``[T, S, C]`` the task's prediction reads."""
    if task.readout == "count":
        name = list(result.spikes)[-1]
        return result.spikes[name].astype(np.float64)
    if not result.membrane:
        raise SpikeforgeError("the task reads an Integrator membrane but the network has none")
    return result.membrane[list(result.membrane)[-1]]


def agreement(reference, other) -> dict[str, Any]:
    """Per-sample exact spike-train agreement over all spiking layers, and readout differences."""
    names = list(reference.spikes)
    if names != list(other.spikes):
        raise SpikeforgeError(f"layers differ between runs: {names} vs {list(other.spikes)}")
    samples = next(iter(reference.spikes.values())).shape[1] if names else 0
    match = np.ones(samples, dtype=bool)
    mismatched: dict[str, int] = {}
    for name in names:
        diff = reference.spikes[name] != other.spikes[name]
        match &= ~diff.any(axis=(0, 2))
        mismatched[name] = int(diff.sum())
    readout = {name: float(np.abs(reference.membrane[name] - other.membrane[name]).max())
               for name in reference.membrane}
    return {"matching_samples": int(match.sum()), "samples": samples,
            "match_fraction": float(match.mean()) if samples else 1.0,
            "mismatched_spikes": mismatched, "readout_max_abs_diff": readout}


def simulate(model_path: str, backend: str = "brian2", dataset: str = "digits", samples: int = 20,
             compare: bool = False, target: str = "numpy", batch: int | None = None, seed: int | None = None,
             data_dir: str | None = None, timesteps: int | None = None) -> dict[str, Any]:
    """Simulate ``samples`` test samples of ``dataset`` with the checkpoint at ``model_path``.

    ``timesteps`` overrides the checkpoint's T (a converted network runs at any T). The samples come
    from the test split the model was trained with (:func:`snn.data.load_model_split`; ``seed=None``:
    the model's seed).
    """
    if backend not in BACKENDS:
        raise SpikeforgeError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if samples < 1:
        raise SpikeforgeError(f"samples must be at least 1, got {samples}")
    model, task, meta = load_trained_with_meta(model_path)
    trained_steps = task.timesteps
    if timesteps is not None:
        task = dataclasses.replace(task, timesteps=timesteps)
    split, choice = data.load_model_split(meta, f"checkpoint {model_path}", dataset, data_dir, seed, task.encoder,
                                          trained_steps)
    seed = choice.seed
    data.check_input_shape(model.input_shape, split, task.step_shape(split.input_shape))
    x, y = split.x_test[:samples], split.y_test[:samples]
    inputs = task.encode(x.double(), torch.Generator().manual_seed(seed)).contiguous().numpy()

    graph = network_graph(model) if backend == "brian2" else None
    start = time.perf_counter()
    if backend == "brian2":
        result = run_discrete(graph, inputs, batch=batch, target=target)
    else:
        result = run_torch(model, inputs)
    wall = time.perf_counter() - start
    prediction = predict(torch.from_numpy(_outputs(result, task)), kind=task.readout).numpy()
    counts = {name: int(s.sum()) for name, s in result.spikes.items()}
    out: dict[str, Any] = {
        "backend": backend, "dataset": dataset, "samples": int(len(y)), "timesteps": task.timesteps,
        "encoder": task.encoder, "accuracy": float((prediction == y.numpy()).mean()),
        "spike_counts": counts, "spikes_per_sample": {k: v / len(y) for k, v in counts.items()},
        "wall_seconds": wall, "model": str(model_path), "split": {"dataset": dataset, "seed": seed},
        "warnings": list(choice.warnings),
    }
    if backend == "brian2":
        out.update({"target": target, "synapses": result.synapses, "batch": result.batch,
                    "build_seconds": result.build_seconds, "run_seconds": result.run_seconds})
    if compare:
        reference = run_torch(model, inputs) if backend == "brian2" else result
        ref_pred = predict(torch.from_numpy(_outputs(reference, task)), kind=task.readout).numpy()
        out["compare"] = {**agreement(reference, result), "reference": "torch float64",
                          "prediction_agreement": float((ref_pred == prediction).mean())}
    return out
