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

from snn.errors import SpikeforgeError, first_line
from snn.fileio import atomic_path, load_torch_file
from snn.graph_network import GraphNetwork
from snn.network import Sequential
from snn.network_schema import check_payload, check_state_dict, layer_widths, probe_network
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
    """Read a checkpoint written by :func:`save_checkpoint`; clear errors for bad files.

    The file is read onto the CPU whatever devices its tensors name (``map_location`` only moves
    the finished model), checked against :mod:`snn.network_schema` before anything is built, its
    weights checked against the built network, and the network run once on a small random spike
    input: a file that passes runs; any other is refused with one :class:`SpikeforgeError` line.
    """
    path = Path(path)
    payload = load_torch_file(path, "checkpoint {path} does not exist; make one with 'snn train' or 'snn convert'",
                              "checkpoint {path} is corrupt or not a torch file ({error}); re-create it with "
                              "'snn train'", "cpu")
    _check_header(payload, path)
    source = f"checkpoint {path}"
    check_payload(payload, source)
    model = build_network(payload["network"], source)
    check_state_dict(payload["state_dict"], model, source, layer_widths(payload["network"]))
    try:
        model.load_state_dict(payload["state_dict"])
    except (RuntimeError, KeyError) as error:
        raise SpikeforgeError(f"{source}: its weights do not fit its network spec: "
                              f"{first_line(error, type(error).__name__)}; re-create it with "
                              "'snn train'") from error
    probe_network(model, source)
    if torch.device(map_location).type != "cpu":
        model.to(map_location)
    return Checkpoint(model, dict(payload.get("task", {})), dict(payload.get("meta", {})))


def _check_header(payload: Any, path: Path) -> None:
    """The format and version entries: a spikeforge checkpoint this version reads (not the old converted one)."""
    if isinstance(payload, dict) and payload.get("format") == OLD_CONVERTED_FORMAT:
        ann = payload.get("ann") if isinstance(payload.get("ann"), str) else "package.module:factory"
        raise SpikeforgeError(f"{path} is a converted SNN of spikeforge's first format (it names the ANN factory "
                              f"{ann}, and loading it would import that code); re-create it as a self-contained "
                              f"checkpoint with: snn convert --ann {ann} --weights ANN_WEIGHTS.pt --out DIR")
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise SpikeforgeError(f"{path} is not a spikeforge checkpoint (no '{FORMAT}' header); "
                              "re-create it with 'snn train' or 'snn convert'")
    if payload.get("version") != VERSION:
        raise SpikeforgeError(f"checkpoint {path} has version {payload.get('version')!r}, this spikeforge reads "
                              f"version {VERSION}; upgrade spikeforge")
