"""Integer emulation of a compiled Loihi 2 network in torch, bit-exact with Lava's fixed-point models.

Per layer and step, exactly as lava-nc 0.10.0 computes it (``PyDenseModelBitAcc``,
``PyConvModelFixed``, ``AbstractPyLifModelFixed`` / ``PyLifModelBitAcc``)::

    a      = W s_in                     dense: weights clipped/truncated as Lava's 8-bit synapse,
             (<< weight_exp)            then shifted by weight_exp; sent through an int32 port
    a      = wrap24(conv(s_in, W))      conv: 24-bit signed wrap, no weight exponent
    u      = trunc0(u * (4096 - du - 1) / 4096) + (a << 6)          trunc0: rounding toward zero
    u      = u - 2**24 if u > 2**23;  u + 2**24 if u <= -2**23       Lava's 24-bit wrap
    v      = clip(trunc0(v * (4096 - dv) / 4096) + u + (bias_mant << 6), -(2**23 - 1), 2**23 - 1)
    s      = v > (vth << 6);   v = 0 where s                         zero reset
                               (v = v - (vth << 6) where s: a layer compiled with reset "subtract")

A population sums its connections (Lava's InPort adds what every connected OutPort sends,
wrapping at 32 bits). Every connection delays by one step (Lava's synapse sends the previous
step's accumulation) plus its own synaptic ``delay`` (``DelayDense``, which aligns a skip path
with a longer one): with ``delay=True`` a layer at step t sees its source's output of step
``t - 1 - delay`` (and zeros before), which is what one continuous Lava run produces. With
``delay=False`` every layer sees step t of its sources: the per-sample window a
reset-streamed Lava run produces (``LIFReset`` with a per-layer reset offset at its depth;
see :mod:`hardware.lava.runner`). A recurrent layer's connection from itself carries
``W s[t-1]`` in both modes. A layer that starts charged receives ``v_init_mant`` once,
in the step its sample's first input arrives (step ``depth``; step 0 of a window).

Batched over samples, device-agnostic (CPU or CUDA). Integer sums are exact: they run in
float32 when the compile-time bound on ``sum |w| * max input`` is below 2**24, else float64.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from hardware.lava.compile import LoihiConnection, LoihiLayer, LoihiNetwork
from snn.errors import SpikeforgeError
from snn.graph_network import INPUT

UV_MAX = 2 ** 23
EXACT_FLOAT32 = 2 ** 24


def lava_dense_weights(weight: np.ndarray, num_weight_bits: int = 8) -> np.ndarray:
    """Lava's ``clip_weights`` then ``truncate_weights`` (utils/weightutils.py) on an integer matrix."""
    w = weight.astype(np.int64)
    mixed = bool(w.min() < 0 < w.max())
    inhibitory = (not mixed) and w.max() <= 0 and w.min() < 0
    if inhibitory:
        w = -w
    w = np.clip(w, -(2 ** 8) * int(mixed), 2 ** 8 - 1)
    shift = 8 - num_weight_bits + int(mixed)
    w = (w >> shift) << shift
    return -w if inhibitory else w


def _wrap(x: torch.Tensor, bits: int) -> torch.Tensor:
    base = 1 << bits
    return torch.remainder(x + base // 2, base) - base // 2


def _trunc_decay(x: torch.Tensor, factor: int) -> torch.Tensor:
    """``sign(x * f) * (|x * f| >> 12)``: decay with rounding toward zero."""
    p = x * factor
    return torch.sign(p) * (torch.abs(p) >> 12)


@dataclass
class Emulation:
    """Per-layer spikes ``[T, B, N]`` (uint8, torch order of neurons) and the readout membrane ``[T, B, N]`` (int64).

    ``updated`` (with ``emulate(..., updates=True)``): per layer and step, whether the neuron's soma did work
    (uint8 ``[T, B, N]``): its membrane was not at rest (``v[t-1] != 0``), a synaptic message reached it (a
    spike or nonzero input value on a nonzero synapse into it), or it has a bias; the other neurons are only
    visited (SANA-FE's LIF ``updated`` status, :mod:`hardware.lava.activity`).
    """

    spikes: dict[str, torch.Tensor]
    membrane: dict[str, torch.Tensor]
    updated: dict[str, torch.Tensor] = field(default_factory=dict)


class _Connection:
    def __init__(self, conn: LoihiConnection, device: torch.device, max_in: int) -> None:
        self.conn = conn
        if conn.kind == "dense":
            w = lava_dense_weights(conn.weight)
        else:
            w = conn.weight.astype(np.int64)
        bound = float(np.abs(w).reshape(w.shape[0], -1).sum(axis=1).max(initial=0)) * max_in
        self.dtype = torch.float32 if bound < EXACT_FLOAT32 else torch.float64
        self.weight = torch.as_tensor(w, dtype=self.dtype, device=device)

    def __call__(self, s: torch.Tensor) -> torch.Tensor:
        """``s``: ``[B, *in_shape]`` integers -> int64 activation ``[B, N]``."""
        conn, x = self.conn, s.to(self.dtype)
        if conn.kind == "dense":
            a = torch.round(x.reshape(x.shape[0], -1) @ self.weight.t()).long()
            e = conn.weight_exp
            a = a << e if e > 0 else a >> (-e)
            return _wrap(a, 32)
        a = F.conv2d(x.reshape(x.shape[0], *conn.in_shape), self.weight, stride=conn.stride,
                     padding=conn.padding, dilation=conn.dilation, groups=conn.groups)
        return _wrap(torch.round(a).long(), 24).reshape(x.shape[0], -1)


def _lif_step(a: torch.Tensor, u: torch.Tensor, v: torch.Tensor, layer: LoihiLayer, bias: torch.Tensor):
    act = _wrap(_wrap(a, 32) << 6, 32)
    d = _wrap(_trunc_decay(u, 4096 - layer.du - 1) + act, 32)
    w = torch.where(d > UV_MAX, d - 2 * UV_MAX, d)
    u = torch.where(w <= -UV_MAX, d + 2 * UV_MAX, w)
    v = torch.clamp(_trunc_decay(v, 4096 - layer.dv) + u + bias, -(UV_MAX - 1), UV_MAX - 1)
    s = v > (layer.vth << 6)
    if layer.reset == "subtract":
        return s, u, torch.where(s, v - (layer.vth << 6), v)
    return s, u, torch.where(s, torch.zeros_like(v), v)


def _delayed(a: torch.Tensor, steps: int) -> torch.Tensor:
    """``a`` shifted later in time by ``steps`` (zeros first)."""
    if steps <= 0:
        return a
    return torch.cat([torch.zeros_like(a[:steps]), a[:-steps]])[:a.shape[0]]


def check_emulator_input(q: torch.Tensor, input_shape: tuple[int, ...], network: str) -> None:
    """Refuse ``q`` unless it is integer ``[T, B, *input_shape]`` (what ``<network>.quantise_input`` makes)."""
    if q.dim() < 3 or tuple(q.shape[2:]) != input_shape:
        raise SpikeforgeError(f"emulator input must be [T, B, *{input_shape}], got {tuple(q.shape)}")
    if q.is_floating_point():
        raise SpikeforgeError(f"emulator input must be integers; use {network}.quantise_input")


def _reached(conn: LoihiConnection, h: torch.Tensor) -> torch.Tensor:
    """``[B, N]`` bool: which neurons of the target receive a message from nonzero values ``h`` ``[B, *in_shape]``."""
    mask = torch.as_tensor(conn.weight != 0, dtype=torch.float32, device=h.device)
    x = (h != 0).to(torch.float32)
    if conn.kind == "dense":
        return (x.reshape(x.shape[0], -1) @ mask.t()) > 0
    out = F.conv2d(x.reshape(x.shape[0], *conn.in_shape), mask, stride=conn.stride, padding=conn.padding,
                   dilation=conn.dilation, groups=conn.groups)
    return out.reshape(x.shape[0], -1) > 0


def emulate(net: LoihiNetwork, q: torch.Tensor, delay: bool = True,
            device: str | torch.device | None = None, updates: bool = False) -> Emulation:
    """Run quantised input ``q`` (int ``[T, B, *input_shape]``, see :meth:`LoihiNetwork.quantise_input`).

    ``updates=True`` also records which neurons' somas did work in each step (``Emulation.updated``)."""
    check_emulator_input(q, net.input_shape, "LoihiNetwork")
    dev = torch.device(device) if device is not None else q.device
    steps, batch = q.shape[:2]
    outputs = {INPUT: q.to(dev).long()}
    largest = {INPUT: int(outputs[INPUT].abs().max().item()) if q.numel() else 0}
    spikes: dict[str, torch.Tensor] = {}
    membrane: dict[str, torch.Tensor] = {}
    updated: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for layer in net.layers:
            a = torch.zeros(steps, batch, layer.size, dtype=torch.long, device=dev)
            reached = torch.zeros(steps, batch, layer.size, dtype=torch.bool, device=dev) if updates else None
            recurrent = [_Connection(c, dev, 1) for c in layer.connections if c.source == layer.name]
            recurrent_reach = [c for c in layer.connections if c.source == layer.name]
            for c in layer.connections:
                if c.source == layer.name:
                    continue
                h = outputs[c.source]
                part = _Connection(c, dev, max(largest[c.source], 1))(h.reshape(steps * batch, *h.shape[2:]))
                a = a + _delayed(part.reshape(steps, batch, -1), 1 + c.delay if delay else 0)
                if reached is not None:
                    got = _reached(c, h.reshape(steps * batch, *h.shape[2:])).reshape(steps, batch, -1)
                    reached |= _delayed(got, 1 + c.delay if delay else 0)
            if layer.v_init_mant:   # the one-time charge arrives with the sample's first input
                start = layer.depth if delay else 0
                if start < steps:
                    a[start] += layer.v_init_mant
                    if reached is not None:
                        reached[start] = True
            bias = torch.as_tensor(layer.bias_mant.reshape(-1) << layer.bias_exp, dtype=torch.long, device=dev)
            u = torch.zeros(batch, layer.size, dtype=torch.long, device=dev)
            v = torch.zeros_like(u)
            out, vs, works = [], [], []
            s = torch.zeros(batch, layer.size, dtype=torch.bool, device=dev)
            biased = bias != 0
            for t in range(steps):
                a_t = a[t]
                if reached is not None:
                    work = reached[t] | (v != 0) | biased
                    for conn in recurrent_reach:
                        work = work | _reached(conn, s)
                    works.append(work)
                for conn in recurrent:   # W s[t-1]: Lava's one-step synapse from the layer to itself
                    a_t = a_t + conn(s.long())
                s, u, v = _lif_step(a_t, u, v, layer, bias)
                out.append(s)
                if layer.readout:
                    vs.append(v)
            spk = torch.stack(out).to(torch.uint8)
            spikes[layer.name] = spk
            if works:
                updated[layer.name] = torch.stack(works).to(torch.uint8)
            if layer.readout:
                membrane[layer.name] = torch.stack(vs)
            outputs[layer.name], largest[layer.name] = spk.reshape(steps, batch, *layer.shape), 1
    return Emulation(spikes, membrane, updated)
