"""Checkpoints: network spec (JSON-able), weights and task settings in one torch file.

The file is a plain dictionary of strings, numbers, lists and tensors, written atomically
and read with ``torch.load(weights_only=True)``: loading a checkpoint never runs code from
it. Layout::

    {"format": "spikeforge.checkpoint", "version": 1,
     "network": {"layers": [...], "input_shape": [...]},   # or {"nodes": [...], "output": ...}; snn.serialization
     "state_dict": {...}, "task": {...}, "meta": {...}}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from snn.errors import SpikeforgeError
from snn.fileio import atomic_path, load_torch_file
from snn.graph_network import GraphNetwork
from snn.network import Sequential
from snn.serialization import build_network, network_spec

FORMAT = "spikeforge.checkpoint"
VERSION = 1
OLD_CONVERTED_FORMAT = "spikeforge.converted"  # snn convert's first format, refused (it named code to import)


@dataclass
class Checkpoint:
    """A loaded checkpoint: the rebuilt network plus what it was trained for."""

    model: Sequential | GraphNetwork
    task: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


def save_checkpoint(path: str | Path, model: Sequential | GraphNetwork, task: dict[str, Any] | None = None,
                    meta: dict[str, Any] | None = None) -> Path:
    """Write ``model`` (spec + weights on CPU) with ``task`` and ``meta`` atomically to ``path``."""
    payload = {
        "format": FORMAT, "version": VERSION, "network": network_spec(model),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "task": dict(task or {}), "meta": dict(meta or {}),
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint`; clear errors for bad files."""
    path = Path(path)
    payload = load_torch_file(path, "checkpoint {path} does not exist; make one with 'snn train' or 'snn convert'",
                              "checkpoint {path} is corrupt or not a torch file ({error}); re-create it with "
                              "'snn train'", map_location)
    if isinstance(payload, dict) and payload.get("format") == OLD_CONVERTED_FORMAT:
        ann = payload.get("ann") if isinstance(payload.get("ann"), str) else "package.module:factory"
        raise SpikeforgeError(f"{path} is a converted SNN of spikeforge's first format (it names the ANN factory "
                              f"{ann}, and loading it would import that code); re-create it as a self-contained "
                              f"checkpoint with: snn convert --ann {ann} --weights ANN_WEIGHTS.pt --out DIR")
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise SpikeforgeError(f"{path} is not a spikeforge checkpoint (no '{FORMAT}' header); "
                              "re-create it with 'snn train' or 'snn convert'")
    if payload.get("version") != VERSION:
        raise SpikeforgeError(f"checkpoint {path} has version {payload.get('version')}, this spikeforge reads "
                              f"version {VERSION}; upgrade spikeforge")
    model = build_network(payload["network"])
    try:
        model.load_state_dict(payload["state_dict"])
    except (RuntimeError, KeyError) as error:
        raise SpikeforgeError(f"checkpoint {path} weights do not fit its network spec: {error}") from error
    return Checkpoint(model, payload.get("task", {}), payload.get("meta", {}))
