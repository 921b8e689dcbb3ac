"""Converted networks on disk: an ordinary spikeforge checkpoint (:mod:`snn.checkpoint`).

A converted network is a spikeforge network like any other, so ``snn convert`` writes the
same self-contained file ``snn train`` does: the JSON network spec, the tensors, and the task
it is read with (direct encoding, the accumulated-membrane readout ``membrane_last``, the
largest T converted for). Loading needs no user code and imports nothing the file names.

Files of the first format (``spikeforge.converted``: the ANN factory's name plus tensors,
rebuilt by importing the factory) are refused by :func:`snn.checkpoint.load_checkpoint`, with
the command that re-creates them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from snn.checkpoint import save_checkpoint
from snn.graph_network import GraphNetwork
from snn.network import Sequential

READOUT = "membrane_last"


def conversion_task(timesteps: int) -> dict[str, Any]:
    """The task a converted network is read with at ``timesteps`` steps."""
    return {"timesteps": int(timesteps), "encoder": "direct", "readout": READOUT}


def save_converted(path: str | Path, model: Sequential | GraphNetwork, timesteps: int,
                   meta: dict[str, Any] | None = None) -> Path:
    """Write the converted ``model`` as a checkpoint read at ``timesteps`` steps (atomically)."""
    return save_checkpoint(path, model, conversion_task(timesteps), {"converted": True, **dict(meta or {})})
