"""Recording of spikes and membrane potentials per layer, through forward hooks.

Usage::

    with Recorder(model) as rec:
        model(x)
    rec.spikes["2"]      # [T, B, ...] spikes of child "2"
    rec.membrane["2"]    # [T, B, ...] membrane after reset, same layer

Nothing is recorded (and nothing costs) outside the ``with`` block. Tensors are detached.
Layers are named by the network's ``neuron_layers()`` (a Sequential's child names, a
GraphNetwork's node names), for any other module as in ``model.named_modules()``.
"""

from __future__ import annotations

import torch
from torch import nn

from snn.neurons import Integrator, NeuronLayer


class Recorder:
    """Context manager that records every neuron layer's output and membrane trace."""

    def __init__(self, model: nn.Module, spikes: bool = True, membrane: bool = True) -> None:
        self.model = model
        self.record_spikes = spikes
        self.record_membrane = membrane
        self.spikes: dict[str, torch.Tensor] = {}
        self.membrane: dict[str, torch.Tensor] = {}
        self._handles: list = []
        named = getattr(model, "neuron_layers", None)
        self._layers = dict(named()) if callable(named) else {
            name: m for name, m in model.named_modules() if isinstance(m, NeuronLayer)}

    def _hook(self, name: str):
        def hook(module: NeuronLayer, inputs, output) -> None:
            out = output[0] if isinstance(output, tuple) else output
            if self.record_spikes and not isinstance(module, Integrator):
                self.spikes[name] = out.detach()
            if self.record_membrane and module.membrane_trace is not None:
                self.membrane[name] = module.membrane_trace.detach()
        return hook

    def __enter__(self) -> "Recorder":
        self.spikes.clear()
        self.membrane.clear()
        for name, layer in self._layers.items():
            layer.record_membrane = self.record_membrane
            self._handles.append(layer.register_forward_hook(self._hook(name)))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        for layer in self._layers.values():
            layer.record_membrane = False
            layer.membrane_trace = None
