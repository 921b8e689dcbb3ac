"""Accuracy-versus-timesteps plot of converted SNNs, with the ANN as a reference line."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

from matplotlib.figure import Figure

from snn.errors import SpikeforgeError
from snn.fileio import atomic_path


def plot_accuracy_vs_timesteps(curves: Mapping[str, Mapping[int, float]], path: str | os.PathLike,
                               ann_accuracy: float | None = None, title: str = "ANN-to-SNN conversion") -> Path:
    """One line per curve (label -> {T: accuracy in [0, 1]}), log2 T axis, dashed ANN line."""
    if not curves or any(not curve for curve in curves.values()):
        raise SpikeforgeError("nothing to plot: give at least one non-empty accuracy curve")
    fig = Figure(figsize=(6.4, 4.0), layout="constrained")
    ax = fig.subplots()
    for label, curve in curves.items():
        steps = sorted(curve)
        ax.plot(steps, [100 * curve[t] for t in steps], marker="o", label=label)
    if ann_accuracy is not None:
        ax.axhline(100 * ann_accuracy, color="black", linestyle="--", label=f"ANN ({100 * ann_accuracy:.2f}%)")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("timesteps T")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    return Path(path)
