"""PNG plots of spiking activity and training progress.

Figures are built as :class:`matplotlib.figure.Figure` objects (Agg rendering, no global
pyplot state, safe without a display). Each function validates its input, writes the PNG
atomically (a temporary file beside the target, then a rename), and returns its path.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from snn.errors import SpikeforgeError
from snn.fileio import atomic_path
from snn.validation import check_finite

HISTORY_KEYS = ("epoch", "train_loss", "train_accuracy")
# Optional held-out accuracies, drawn when present.
HELD_OUT_KEYS = (("val_accuracy", "validation"), ("test_accuracy", "test"))


def _as_time_by_neuron(x: torch.Tensor, name: str) -> torch.Tensor:
    """Reduce ``[T, N]`` or ``[T, B, ...]`` (sample 0, features flattened) to a CPU float ``[T, N]``."""
    if not isinstance(x, torch.Tensor):
        raise SpikeforgeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim < 2:
        raise SpikeforgeError(f"{name} of shape {tuple(x.shape)} has too few dimensions: expected [T, N] or "
                              "[T, B, ...]; add a time dimension first")
    if x.numel() == 0:
        raise SpikeforgeError(f"{name} of shape {tuple(x.shape)} is empty; record at least one step and neuron")
    if x.ndim > 2:
        x = x[:, 0].reshape(x.shape[0], -1)
    return check_finite(x.detach().cpu().float(), name)


def _check_positive(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SpikeforgeError(f"{name} must be a positive integer, got {value!r}")
    return value


def _save(fig: Figure, path: str | os.PathLike) -> Path:
    with atomic_path(path) as tmp:
        # The temp name ends in .tmp, so the format must be given explicitly.
        fig.savefig(tmp, format="png", dpi=120)
    fig.clear()
    return Path(path)


def plot_raster(spikes: torch.Tensor, path: str | os.PathLike, title: str = "spike raster",
                max_neurons: int = 200) -> Path:
    """Spike raster (time on x, neuron index on y) of the first ``max_neurons`` neurons.

    ``spikes`` is ``[T, N]`` or ``[T, B, ...]`` (then sample 0 is drawn, features flattened);
    any non-zero entry counts as a spike.
    """
    grid = _as_time_by_neuron(spikes, "spikes")[:, :_check_positive(max_neurons, "max_neurons")]
    steps, neurons = grid.shape
    times, index = torch.nonzero(grid != 0, as_tuple=True)
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.add_subplot()
    ax.scatter(times.numpy(), index.numpy(), marker="|", s=30, linewidths=1, color="black")
    ax.set_xlim(-0.5, steps - 0.5)
    ax.set_ylim(-0.5, neurons - 0.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("time step")
    ax.set_ylabel("neuron")
    ax.set_title(f"{title} ({len(times)} spikes, {neurons} neurons)")
    return _save(fig, path)


def plot_membrane(membrane: torch.Tensor, path: str | os.PathLike, threshold: float | None = None,
                  neurons: int = 5, spikes: torch.Tensor | None = None,
                  title: str = "membrane potential") -> Path:
    """Membrane traces of the first ``neurons`` neurons over time.

    ``membrane`` (and ``spikes``, if given) is ``[T, N]`` or ``[T, B, ...]``; with
    ``threshold`` a dashed line is drawn; with ``spikes`` (same shape) spike times are marked.
    """
    traces = _as_time_by_neuron(membrane, "membrane")[:, :_check_positive(neurons, "neurons")]
    marks = None
    if spikes is not None:
        if not isinstance(spikes, torch.Tensor) or spikes.shape != membrane.shape:
            shape = tuple(spikes.shape) if isinstance(spikes, torch.Tensor) else type(spikes).__name__
            raise SpikeforgeError(f"spikes {shape} must match membrane {tuple(membrane.shape)}; "
                                  "pass the same layer's spikes and membrane")
        marks = _as_time_by_neuron(spikes, "spikes")[:, :traces.shape[1]]
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.add_subplot()
    steps = torch.arange(traces.shape[0]).numpy()
    for n in range(traces.shape[1]):
        (line,) = ax.plot(steps, traces[:, n].numpy(), label=f"neuron {n}")
        if marks is not None:
            fired = torch.nonzero(marks[:, n] != 0).flatten()
            # Membranes are recorded after reset, so mark spikes at the threshold, not on the trace.
            level = traces[fired, n] if threshold is None else torch.full((len(fired),), float(threshold))
            ax.plot(fired.numpy(), level.numpy(), linestyle="none", marker="v", color=line.get_color())
    if threshold is not None:
        ax.axhline(float(threshold), linestyle="--", color="gray", label="threshold")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("time step")
    ax.set_ylabel("membrane potential")
    ax.set_title(title)
    ax.legend(loc="best", fontsize="small")
    return _save(fig, path)


def _check_history(history: Sequence[Mapping[str, float]]) -> None:
    if isinstance(history, (str, bytes)) or not isinstance(history, Sequence) or len(history) == 0:
        raise SpikeforgeError("training history is empty or not a list; train for at least one epoch first")
    for i, item in enumerate(history):
        if not isinstance(item, Mapping):
            raise SpikeforgeError(f"history entry {i} is a {type(item).__name__}, not a dict with keys "
                                  f"{', '.join(HISTORY_KEYS)}")
        missing = [key for key in HISTORY_KEYS if key not in item]
        if missing:
            raise SpikeforgeError(f"history entry {i} lacks {', '.join(missing)}; each entry needs "
                                  f"{', '.join(HISTORY_KEYS)}")


def plot_training_curves(history: Sequence[Mapping[str, float]], path: str | os.PathLike,
                         title: str = "training curves") -> Path:
    """Loss (left) and train/test accuracy in % (right) per epoch.

    ``history`` holds one dict per epoch with keys ``epoch``, ``train_loss`` and
    ``train_accuracy``, plus ``val_accuracy`` and/or ``test_accuracy`` where measured
    (accuracies as fractions in [0, 1]) — :func:`snn.training.fit`'s history as it is.
    """
    _check_history(history)
    epochs = [item["epoch"] for item in history]
    fig = Figure(figsize=(9, 3.6), layout="constrained")
    loss_ax, acc_ax = fig.subplots(1, 2)
    loss_ax.plot(epochs, [item["train_loss"] for item in history], marker="o", label="train")
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("loss")
    loss_ax.legend()
    for key, label in (("train_accuracy", "train"), *HELD_OUT_KEYS):
        if key not in history[0]:
            continue
        acc_ax.plot(epochs, [100 * item[key] for item in history], marker="o", label=label)
    acc_ax.set_xlabel("epoch")
    acc_ax.set_ylabel("accuracy (%)")
    acc_ax.legend()
    for ax in (loss_ax, acc_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(title)
    return _save(fig, path)
