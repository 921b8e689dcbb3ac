"""The sequential container: stateless torch layers on folded time, neurons over time.

A spiking network is a stack of ordinary torch layers (Linear, Conv2d, BatchNorm,
Dropout, pooling, Flatten, ...) and neuron layers (:mod:`snn.neurons`). Stateless layers
see the time-folded tensor ``[T*B, ...]`` (one big batched call per layer, no loop over
time); neuron layers, and layers marked ``time_major = True`` (:class:`snn.layers.SpikeMaxPool2d`),
see ``[T, B, ...]`` and scan over T. Any torch layer that maps a batch
to a batch drops in unchanged.

Note: Dropout and BatchNorm on the folded tensor draw a fresh mask / pool statistics over
all T*B samples; that is the usual "time-distributed" convention.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn
from torch.nn.modules import module as torch_module

from snn.errors import SpikeforgeError
from snn.kernels.event_linear import event_linear
from snn.neurons import ALIF, CubaFamily, NeuronLayer
from snn.validation import check_time_major

NetworkState = list[Optional[tuple]]
# Layers whose backward keeps their input and weight but never their output; the tests
# prove it per type (gradients with and without donated neuron inputs are identical).
_OUTPUT_NOT_SAVED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.BatchNorm1d, nn.BatchNorm2d)
_DONATING_SCANS = (CubaFamily._fused_scan, ALIF._fused_scan)  # a subclass's own scan may keep its input


class Sequential(nn.Sequential):
    """Time-major sequential network.

    ``forward(x)`` takes ``[T, B, *input_shape]`` and returns ``[T, B, *output_shape]``.
    NaN or infinity is rejected by the first neuron layer it reaches (each neuron layer
    checks its input; the fused CPU kernels do it in the pass that reads the input anyway).
    ``forward(x, state, return_state=True)`` also returns the final state of every
    neuron layer (a list, ``None`` for stateless layers), to continue a stream.

    On CPU, a plain ``nn.Linear`` whose input is sparse (spikes, event frames) runs
    event-driven (:mod:`snn.kernels.event_linear`: only the weight rows of non-zero inputs are
    added; same result up to the sum's rounding order). ``event_driven_linear=False`` turns
    that off; a layer with hooks always runs its own ``forward``.

    A neuron layer right after a Linear, convolution or batch norm (without hooks) gets
    its input as a temporary nobody else sees, so its fused CPU backward writes dL/dx
    over it (``donate_input``): one ``[T, B, F]`` buffer less at the backward's peak. The
    graph can then be run backward only once (``retain_graph=True`` and a second backward
    raise); ``donate_neuron_inputs=False`` keeps the inputs.
    """

    def __init__(self, *layers: nn.Module, input_shape: Sequence[int] | None = None,
                 event_driven_linear: bool = True, donate_neuron_inputs: bool = True) -> None:
        super().__init__(*layers)
        self.input_shape = None if input_shape is None else tuple(int(d) for d in input_shape)
        self.event_driven_linear = event_driven_linear
        self.donate_neuron_inputs = donate_neuron_inputs

    def neuron_layers(self) -> list[tuple[str, NeuronLayer]]:
        return [(name, m) for name, m in self.named_children() if isinstance(m, NeuronLayer)]

    def forward(self, x: torch.Tensor, state: NetworkState | None = None,  # type: ignore[override]
                return_state: bool = False):
        check_time_major(x, None if self.input_shape is None else len(self.input_shape), name="network input")
        if self.input_shape is not None and tuple(x.shape[2:]) != self.input_shape:
            raise SpikeforgeError(f"network input has feature shape {tuple(x.shape[2:])}, "
                                  f"but the network expects {self.input_shape} after [T, B]")
        steps, batch = x.shape[:2]
        new_state: NetworkState = []
        h, folded = x, False
        temporary = False  # h is a fresh layer output that only this loop holds
        for index, layer in enumerate(self):
            if isinstance(layer, NeuronLayer):
                if folded:
                    h = h.reshape(steps, batch, *h.shape[1:])
                    folded = False
                layer_state = None if state is None else state[index]
                if temporary and self.donate_neuron_inputs and _takes_donation(layer):
                    h, layer_state = layer(h, layer_state, donate_input=True)
                else:
                    h, layer_state = layer(h, layer_state)
                new_state.append(layer_state)
                temporary = False
            elif getattr(layer, "time_major", False):  # e.g. snn.layers.SpikeMaxPool2d: a count over time
                if folded:
                    h = h.reshape(steps, batch, *h.shape[1:])
                    folded = False
                h = layer(h)
                new_state.append(None)
                temporary = False
            else:
                if not folded:
                    h = h.reshape(steps * batch, *h.shape[2:])
                    folded = True
                hooked = _has_hooks(layer)  # a hooked layer runs its own call, so its hooks fire
                temporary = type(layer) in _OUTPUT_NOT_SAVED and not hooked
                if self.event_driven_linear and type(layer) is nn.Linear and not hooked:
                    h = event_linear(h, layer.weight, layer.bias)
                else:
                    h = layer(h)
                new_state.append(None)
        if folded:
            h = h.reshape(steps, batch, *h.shape[1:])
        return (h, new_state) if return_state else h


def _has_hooks(layer: nn.Module) -> bool:
    """Whether calling the layer runs anything besides its ``forward`` (its own or global hooks)."""
    return bool(layer._forward_hooks or layer._forward_pre_hooks or layer._backward_hooks
                or layer._backward_pre_hooks or torch_module._has_any_global_hook())


def _takes_donation(layer: NeuronLayer) -> bool:
    """A built-in fused neuron (its own ``forward`` and scan, no hooks) that accepts a donated input."""
    return (type(layer).forward is NeuronLayer.forward and type(layer)._fused_scan in _DONATING_SCANS
            and not _has_hooks(layer))
