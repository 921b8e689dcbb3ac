"""Integer emulation of a sigma-delta network in torch, bit-exact with lava-nc 0.10.0's fixed-point models.

Per step t, exactly as ``PyDeltaModelFixed``, ``PyDenseModelBitAcc`` / ``PyConvModelFixed``
and ``PySigmaDeltaModelFixed`` compute it (one continuous run: nothing is reset)::

    input Delta   delta = q[t] - act + residue;   m = delta where |delta| >= vth else 0
                  residue = delta - m;            act = q[t]
    connection    a[t] = W m_source[t - 1]        dense (Lava's 8-bit weights, no exponent);
                                                  conv: wrapped to 24 bits; zero at t = 0
    SigmaDelta    sigma += a[t];  act_new = relu(sigma + (bias << e))   (UNIT: no relu)
                  delta = act_new - act + residue
                  s = delta where |delta| >= (vth << e) else 0;  residue = delta - s;  act = act_new
                  m = s >> e                      (e = state_exp; arithmetic shift)

A population sums its connections. The emulation checks the widths Lava's models declare
(messages within ``message_bits``, ``sigma`` and ``act`` within 24 bits) and refuses a run
that would overflow them, naming the layer: Lava's Python models would silently wrap.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from hardware.lava.emulate import _Connection, check_emulator_input
from hardware.lava.sdn_compile import STATE_MAX, SigmaDeltaNetwork
from snn.errors import SpikeforgeError
from snn.graph_network import INPUT


@dataclass
class SigmaDeltaEmulation:
    """Per population (the input Delta as ``"input"``): messages ``[T, B, N]`` int64 (0 where none was sent),
    and the readout's ``act`` ``[T, B, classes]``."""

    messages: dict[str, torch.Tensor]
    readout: torch.Tensor


def _delta(values: torch.Tensor, vth: int, shift: int) -> torch.Tensor:
    """Lava's delta encoder over time: ``values`` ``[T, B, N]`` -> messages ``[T, B, N]``."""
    act = torch.zeros_like(values[0])
    residue = torch.zeros_like(act)
    out = []
    for value in values:
        delta = value - act + residue
        sent = torch.where(delta.abs() >= vth, delta, torch.zeros_like(delta))
        residue = delta - sent
        act = value
        out.append(sent >> shift)
    return torch.stack(out)


def _check_width(name: str, what: str, values: torch.Tensor, limit: int, fix: str) -> None:
    largest = int(values.abs().max().item()) if values.numel() else 0
    if largest > limit:
        raise SpikeforgeError(f"layer {name}: a {what} of {largest} overflows its {limit.bit_length() + 1} bits in "
                              f"this run; {fix}")


def emulate_sigma_delta(net: SigmaDeltaNetwork, q: torch.Tensor, device: str | torch.device | None = None
                        ) -> SigmaDeltaEmulation:
    """Run frames ``q`` (int ``[T, B, *input_shape]``, see :meth:`SigmaDeltaNetwork.quantise_input`) continuously."""
    check_emulator_input(q, net.input_shape, "SigmaDeltaNetwork")
    dev = torch.device(device) if device is not None else q.device
    steps, batch = q.shape[:2]
    frames = q.to(dev).long().reshape(steps, batch, -1)
    message_max = 2 ** (net.message_bits - 1) - 1
    fix = ("deploy with --message-bits 24" if net.message_bits < 24 else "rescale the input") + \
        " or calibrate on inputs that cover this range"
    messages = {INPUT: _delta(frames, net.input_vth, 0)}
    largest = {INPUT: int(messages[INPUT].abs().max().item()) if q.numel() else 0}
    readout = torch.zeros(0)
    with torch.no_grad():
        for layer in net.layers:
            a = torch.zeros(steps, batch, layer.size, dtype=torch.long, device=dev)
            for c in layer.connections:
                m = messages[c.source]
                part = _Connection(c, dev, max(largest[c.source], 1))(m.reshape(steps * batch, *c.in_shape))
                part = part.reshape(steps, batch, -1)
                a[1:] += part[:-1]           # Lava's synapse sends the previous step's accumulation
            sigma = torch.cumsum(a, dim=0)
            _check_width(layer.name, "sigma", sigma, STATE_MAX, fix)
            bias = torch.as_tensor(layer.bias.reshape(-1) << layer.state_exp, dtype=torch.long, device=dev)
            act = torch.relu(sigma + bias) if layer.relu else sigma + bias
            _check_width(layer.name, "activation", act, STATE_MAX, fix)
            sent = _delta(act, layer.vth << layer.state_exp, layer.state_exp)
            _check_width(layer.name, "graded payload", sent, message_max, fix)
            messages[layer.name] = sent
            largest[layer.name] = int(sent.abs().max().item()) if sent.numel() else 0
            readout = act
    return SigmaDeltaEmulation(messages, readout)


def message_counts(messages: dict[str, torch.Tensor | np.ndarray]) -> dict[str, int]:
    """Graded messages sent per population (nonzero payloads)."""
    return {name: int((m != 0).sum()) for name, m in messages.items()}
