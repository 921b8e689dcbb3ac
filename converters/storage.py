"""Saving and loading converted SNNs without pickled code.

A converted network is stored as the ANN's factory name plus the SNN's state dict
(folded weights and thresholds) and the conversion options. Loading imports the factory,
rebuilds the same normal form and spiking graph, and loads the tensors; the file is read
with ``torch.load(weights_only=True)`` and written atomically.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from converters.convert import ConvertedSNN, build_spiking_graph
from converters.factory import build_ann
from converters.tracing import activation_sites, normalize
from snn.errors import SpikeforgeError
from snn.fileio import atomic_path, load_torch_file

FORMAT = "spikeforge.converted"
VERSION = 1


def save_converted(path: str | Path, model: ConvertedSNN, ann: str, meta: dict[str, Any] | None = None) -> Path:
    payload = {"format": FORMAT, "version": VERSION, "ann": ann, "options": model.options,
               "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}, "meta": dict(meta or {})}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def load_converted(path: str | Path) -> tuple[ConvertedSNN, dict[str, Any]]:
    """Return the converted SNN and the file's metadata."""
    path = Path(path)
    payload = load_torch_file(path, "converted SNN {path} does not exist; make one with 'snn convert'",
                              "converted SNN {path} is corrupt ({error}); re-run 'snn convert'")
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise SpikeforgeError(f"{path} is not a converted spikeforge SNN; make one with 'snn convert'")
    gm = normalize(build_ann(payload["ann"]))
    placeholders = {name: payload["state_dict"][f"graph.{name}.threshold"] for name in activation_sites(gm)}
    model = ConvertedSNN(build_spiking_graph(gm, placeholders, payload["options"]["v_init"]), payload["options"])
    model.load_state_dict(payload["state_dict"])
    return model.eval(), payload["meta"]
