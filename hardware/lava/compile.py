"""Compile a spiking network of :mod:`snn` to Loihi 2 fixed point.

The network is read through :func:`hardware.graph.split_network` (shared with Brian2): the
stateless layers between two neuron layers form one affine map ``x = W s + b``; this module
adds Loihi's refusals and the quantisation. A map that is a single ``Conv2d``
(optionally followed by an eval-mode ``BatchNorm2d``, folded) becomes a Lava ``Conv``
connection; every other affine chain (average pooling, Flatten, Linear, BatchNorm, ...)
becomes a ``Dense`` connection with the exact float64 matrix of the chain (average pooling is
a convolution with fixed weights 1/k^2, so it is folded into the following weights).

Fixed point, per layer with scale ``lam`` (integer units per float unit):

- weights   ``w = mant * 2**wexp``; mixed-sign layers store ``wexp = 1`` and an 8-bit signed
  mantissa ``mant`` in [-128, 127] (Lava's 8-bit MIXED synapse drops the LSB), single-sign
  layers ``wexp = 0`` and an 8-bit magnitude. ``lam`` is chosen so that the largest weight
  uses the whole mantissa, unless the threshold would not fit its 17 bits (then lower).
  The first layer's weights include the input scale (inputs in [0, 1] become graded
  spikes ``q = round(L x)``).
  The input levels L are the largest (<= 255) that keep that possible (:func:`input_levels`).
- threshold ``vth = round(lam * theta)`` (17 bits; Lava compares ``v > vth << 6``)
- bias      ``bias_mant = round(lam * bias)`` (13 bits signed) with ``bias_exp = 6`` (netx's choice)
- decays    ``du = 4095 - round(4096 alpha)``, ``dv = round(4096 (1 - beta))``, 12 bits
  (Lava's current decay is ``(4096 - du - 1) / 4096``, its voltage decay ``(4096 - dv) / 4096``)
- state     u and v are 24-bit; ``v`` in units of ``64 * lam``.

Loihi's LIF resets to zero. By default a layer with reset "subtract" is compiled with zero
reset and the change is listed in the report (``strict=True`` refuses it instead). With
``reset="subtract"`` such a layer keeps its reset: ``v -= vth << 6`` on a spike, run by our
subtractive LIF process model (:mod:`hardware.lava.runner`: Lava's bit-accurate LIF with
``reset_voltage`` replaced), in Lava's fixed-point simulation; a Loihi 2 chip needs the same
neuron as microcode (``--cfg hw`` refuses it until then).

A recurrent layer's weights become a ``Dense`` from its spikes to its own input (Lava's
one-step synapse delivers ``W s[t-1]``, the contract's recurrence); see :func:`_gap_charge`
for how streamed samples are kept apart. The non-spiking ``Integrator`` readout becomes a
LIF with ``du = 4095`` (no current memory), the largest threshold and its membrane read
every step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from hardware.graph import LayerCheck, Segment, layer_label, split_network
from snn.errors import SpikeforgeError
from snn.graph_network import INPUT, GraphNetwork, network_nodes
from snn.layers import Add, Concat, Scale
from snn.network import Sequential
from snn.neurons import ALIF, IF, LIF, CubaLIF, Integrator, NeuronLayer

# Loihi 2 limits. Intel's Loihi 2 brief (2021): 128 neuromorphic cores per chip, up to 8,192
# neurons per core, 128 KB synaptic memory per core. A layer may spread over the cores of one
# chip; one neuron's incoming synapses must fit one core's synaptic memory (8-bit synapses).
NEURONS_PER_CORE = 8192
CORES_PER_CHIP = 128
MAX_LAYER_NEURONS = NEURONS_PER_CORE * CORES_PER_CHIP
MAX_FAN_IN = 128 * 1024
MAX_DELAY = 63                # Loihi 2 synaptic delays are 6 bits (lava's DelayDense checks the same)
# Field widths of lava-nc 0.10.0's PyLifModelBitAcc / PyDenseModelBitAcc.
VTH_MAX = 2 ** 17 - 1
BIAS_MANT_MAX = 2 ** 12 - 1
BIAS_EXP = 6
DECAY_MAX = 4095
INPUT_LEVELS = 255            # inputs in [0, 1] -> 8-bit graded spikes
DENSE_ELEMENT_LIMIT = 2 ** 26  # dense matrices above this are refused (memory), not a Loihi limit

SUPPORTED_NEURONS = (IF, LIF, CubaLIF, Integrator)
RESETS = ("zero", "subtract")  # compile_network's reset: Loihi's zero reset everywhere, or keep subtraction
# Why ALIF is refused: lava-nc 0.10.0's adaptive neuron (lava/proc/atrlif/process.py) differs from ours.
ALIF_MISMATCH = ("Lava's adaptive neuron ATRLIF does not reproduce ALIF's equations: it never resets v but adds a "
                 "refractory state r += 2 theta[t] on a spike and tests (v - r) >= theta (ALIF: v > theta_t, then a "
                 "zero or subtract reset), and it decays its threshold before the test, theta_0 + rho (theta - "
                 "theta_0), where ALIF tests theta + gamma a[t-1]")
# The affine layers compiled and tested here: a subset of hardware.graph.AFFINE_LAYERS.
AFFINE = (nn.Linear, nn.Conv2d, nn.BatchNorm1d, nn.BatchNorm2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Flatten,
          nn.Dropout, nn.Identity, Scale, Add, Concat)
CONV_TAIL = (nn.BatchNorm2d, nn.Dropout, nn.Identity)


@dataclass
class LoihiConnection:
    """One Lava connection into a population: ``Dense`` (``DelayDense`` when ``delay > 0``) or ``Conv``.

    ``source`` is ``"input"`` or the name of the layer it reads; ``weight``: dense
    ``[n_out, n_in]`` or conv ``[C_out, C_in/groups, kh, kw]`` (torch layout), integers as
    Lava's synapse holds them. ``delay`` is the synaptic delay on top of the step every
    connection takes (it aligns a skip path with a longer one); ``graded``: the source sends
    graded spikes (the input).
    """

    source: str
    kind: str
    in_shape: tuple[int, ...]
    weight: np.ndarray
    weight_exp: int = 0           # Lava's Dense weight_exp (the mantissa exponent is folded into weight)
    mantissa_exp: int = 0
    delay: int = 0
    graded: bool = False
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1


@dataclass
class LoihiLayer:
    """One compiled population: a LIF fed by one or more connections (the main one first).

    ``shape``: the population's torch shape. ``depth``: steps from the input to this layer
    in Lava (one per connection along the longest path). ``v_init_mant``: the charge a layer
    that starts charged receives when a sample's first input arrives (``round(v_init * vth)``
    in activation units; 0: starts at rest).
    """

    name: str
    shape: tuple[int, ...]
    du: int
    dv: int
    vth: int
    bias_mant: np.ndarray
    scale: float
    connections: list[LoihiConnection]
    bias_exp: int = BIAS_EXP
    readout: bool = False
    depth: int = 1
    v_init_mant: int = 0
    relay: bool = False           # added by the compiler to delay a skip path (not a layer of the network)
    gap_charge: int = 0           # recurrent layer: the inhibition of its silent step between streamed samples
    stream_refusal: str = ""      # recurrent layer that cannot be kept silent there: why
    reset: str = "zero"           # "subtract": v -= vth << 6 on a spike (our subtractive LIF process model)
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return int(math.prod(self.shape))

    @property
    def main(self) -> LoihiConnection:
        return self.connections[0]

    # The main connection's fields, as a chain's layer has them.
    kind = property(lambda self: self.main.kind)
    weight = property(lambda self: self.main.weight)
    in_shape = property(lambda self: self.main.in_shape)
    weight_exp = property(lambda self: self.main.weight_exp)
    mantissa_exp = property(lambda self: self.main.mantissa_exp)
    graded_input = property(lambda self: self.main.graded)
    stride = property(lambda self: self.main.stride)
    padding = property(lambda self: self.main.padding)
    dilation = property(lambda self: self.main.dilation)
    groups = property(lambda self: self.main.groups)

    @property
    def recurrent(self) -> bool:
        """Whether a connection reads the layer's own spikes."""
        return any(c.source == self.name for c in self.connections)


@dataclass
class LoihiNetwork:
    """Input shape, input quantisation levels and the compiled layers, in order."""

    input_shape: tuple[int, ...]
    layers: list[LoihiLayer]
    input_levels: int = INPUT_LEVELS
    notes: list[str] = field(default_factory=list)

    @property
    def readout(self) -> LoihiLayer | None:
        return self.layers[-1] if self.layers and self.layers[-1].readout else None

    def quantise_input(self, x: torch.Tensor) -> torch.Tensor:
        """Float input ``[T, B, *input_shape]`` in [0, 1] -> int64 graded spikes ``round(L x)``."""
        return quantise_input(x, self.input_shape, self.input_levels)

    def is_chain(self) -> bool:
        """Each layer reads only the one before it (the first the input), with no extra delay."""
        previous = INPUT
        for layer in self.layers:
            if [(c.source, c.delay) for c in layer.connections] != [(previous, 0)]:
                return False
            previous = layer.name
        return True

    @property
    def netx_compatible(self) -> bool:
        """Whether lava-dl's netx reader describes the network fully: a chain of zero-reset CUBA layers starting
        at rest, a layer of it recurrent as netx's ``dense_rec`` (a Dense layer whose feed-forward and recurrent
        weights one 8-bit sign mode holds: netx optimises them together)."""
        previous = INPUT
        for layer in self.layers:
            if layer.v_init_mant or layer.reset != "zero":
                return False
            links = [(c.source, c.delay) for c in layer.connections]
            if links == [(previous, 0), (layer.name, 0)]:
                if layer.kind != "dense" or not _one_sign_mode([c.weight for c in layer.connections]):
                    return False
            elif links != [(previous, 0)]:
                return False
            previous = layer.name
        return True

    def stream_refusal(self) -> str:
        """Why samples of this network cannot be streamed back to back ("" when they can)."""
        return next((layer.stream_refusal for layer in self.layers if layer.stream_refusal), "")

    @property
    def recurrent(self) -> list[str]:
        """Names of the layers with a connection from their own spikes (recurrent layers)."""
        return [layer.name for layer in self.layers if layer.recurrent]

    @property
    def depth(self) -> int:
        """Steps a sample's first input takes to reach the deepest layer (one per connection)."""
        return max((layer.depth for layer in self.layers), default=0)

    def report(self) -> dict[str, Any]:
        return {"layers": {layer.name: layer.report for layer in self.layers}, "notes": list(self.notes),
                "input_levels": self.input_levels, "netx_compatible": self.netx_compatible}


def quantise_input(x: torch.Tensor, input_shape: tuple[int, ...], levels: int) -> torch.Tensor:
    """Float input ``[T, B, *input_shape]`` in [0, 1] -> int64 ``round(levels x)`` (8-bit graded values)."""
    if tuple(x.shape[2:]) != input_shape:
        raise SpikeforgeError(f"input has feature shape {tuple(x.shape[2:])}, the compiled network expects "
                              f"{input_shape} after [T, B]")
    if not torch.isfinite(x).all() or x.min() < 0 or x.max() > 1:
        raise SpikeforgeError("Loihi input must lie in [0, 1] (it becomes 8-bit graded spikes); "
                              "scale the input or use a rate encoder")
    return torch.round(x.double() * levels).long()


def _one_sign_mode(weights: Sequence[np.ndarray]) -> bool:
    """Whether these synapse integers stay exact under one 8-bit sign mode (mixed: even values in [-256, 254])."""
    w = np.concatenate([np.ravel(x) for x in weights])
    if (w < 0).any() and (w > 0).any():
        return bool((w % 2 == 0).all() and w.min() >= -256 and w.max() <= 254)
    return bool(np.abs(w).max(initial=0) <= 255)


def _check_layer(name: str, layer: nn.Module) -> None:
    label = layer_label(name, layer)
    if isinstance(layer, NeuronLayer):
        if isinstance(layer, ALIF):
            raise SpikeforgeError(f"{label} cannot run on Loihi 2 through Lava: {ALIF_MISMATCH}; replace it by LIF "
                                  "and retrain")
        if not isinstance(layer, SUPPORTED_NEURONS):
            raise SpikeforgeError(f"{label} cannot run on Loihi 2 through Lava's LIF: only IF, LIF, "
                                  "CubaLIF and an Integrator readout compile; replace it and retrain")
        if getattr(layer, "recurrent", None) is not None and isinstance(layer, Integrator):
            raise SpikeforgeError(f"{label} is a recurrent readout; an Integrator readout compiles without "
                                  "recurrence only; set recurrent_features=None")
        return
    if type(layer) not in AFFINE:
        raise SpikeforgeError(f"{label} is not supported on Loihi 2: only "
                              f"{', '.join(t.__name__ for t in AFFINE)} map to synapses; replace it "
                              "(e.g. MaxPool by AvgPool) and retrain")
    if isinstance(layer, nn.Conv2d) and layer.padding_mode != "zeros":
        raise SpikeforgeError(f"{label} uses padding_mode={layer.padding_mode!r}; Loihi convolution "
                              "pads with zeros only")


def _loihi_check(model: Sequential | GraphNetwork) -> LayerCheck:
    """Loihi's refusals for :func:`hardware.graph.split_network`; an Integrator only as the network's output."""
    _, output, _ = network_nodes(model)

    def check(name: str, layer: nn.Module) -> None:
        _check_layer(name, layer)
        if isinstance(layer, Integrator) and name != output:
            raise SpikeforgeError(f"{layer_label(name, layer)} is not the last layer; an Integrator is only "
                                  "supported as the readout")
    return check


def _pair(v: Any) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _identity_conv(channels: int) -> nn.Conv2d:
    conv = nn.Conv2d(channels, channels, 1, bias=False).double()
    with torch.no_grad():
        conv.weight.copy_(torch.eye(channels, dtype=torch.float64).reshape(channels, channels, 1, 1))
    return conv


def _conv_chain(layers: Sequence[nn.Module], in_shape: tuple[int, ...]):
    """``(weight, bias, conv)`` in float64 if the chain is one Conv2d (+ BN / Dropout / Identity), else None.

    Leading :class:`~snn.layers.Scale` layers (a converted network's spike amplitudes, one
    factor per input channel) fold into the convolution's input channels; a path of Scales
    only (a residual identity) is a 1x1 convolution.
    """
    layers = [m for m in layers if not isinstance(m, (nn.Identity, nn.Dropout))]   # no-ops in eval mode
    lead = 0
    while lead < len(layers) and isinstance(layers[lead], Scale):
        lead += 1
    scales, layers = layers[:lead], layers[lead:]
    if len(in_shape) == 3 and not layers:   # an identity (or scaled) path: a 1x1 convolution
        layers = [_identity_conv(in_shape[0])]
    if len(in_shape) != 3 or not layers or not isinstance(layers[0], nn.Conv2d) or layers[0].groups != 1:
        return None
    if not all(isinstance(m, CONV_TAIL) for m in layers[1:]) or sum(isinstance(m, nn.BatchNorm2d) for m in layers) > 1:
        return None
    conv = layers[0]
    w = conv.weight.detach().double().cpu().numpy().copy()
    for scale in scales:
        factor = scale.factor.detach().double().cpu().numpy()
        if factor.size not in (1, w.shape[1]):
            return None
        w = w * factor.reshape(1, -1, 1, 1)
    b = np.zeros(w.shape[0]) if conv.bias is None else conv.bias.detach().double().cpu().numpy().copy()
    for m in layers[1:]:
        if isinstance(m, nn.BatchNorm2d):
            if m.running_var is None:
                raise SpikeforgeError("BatchNorm2d without running statistics cannot be folded; "
                                      "set track_running_stats=True and retrain")
            gamma = (m.weight.detach().double().cpu().numpy() if m.weight is not None else np.ones(w.shape[0]))
            beta = (m.bias.detach().double().cpu().numpy() if m.bias is not None else np.zeros(w.shape[0]))
            k = gamma / np.sqrt(m.running_var.detach().double().cpu().numpy() + m.eps)
            w = w * k[:, None, None, None]
            b = (b - m.running_mean.detach().double().cpu().numpy()) * k + beta
    return w, b, conv


@dataclass
class _FloatConnection:
    """A connection before quantisation: float64 weight (dense ``[n_out, n_in]`` or conv) and its conv layer."""

    source: str
    kind: str
    in_shape: tuple[int, ...]
    weight: np.ndarray
    delay: int = 0
    conv: nn.Conv2d | None = None


def _dense_size_check(segment: Segment, n_in: int) -> None:
    if n_in * segment.size > DENSE_ELEMENT_LIMIT:
        raise SpikeforgeError(f"the connection into {segment.label} needs a dense {n_in}x{segment.size} matrix; "
                              "too large to compile here; make it smaller")


@dataclass(frozen=True)
class _Relay:
    """A population that repeats its source's spikes one step later (a step of a delayed skip path)."""

    name: str
    source: str
    shape: tuple[int, ...]
    depth: int


def _connections(segment: Segment, depths: dict[str, int]
                 ) -> tuple[list[_FloatConnection], np.ndarray, bool, list[_Relay]]:
    """The segment's connections in float64, its offset ``b``, whether ``b`` is per output channel,
    and the relay populations its delayed paths need.

    A chain that is one Conv2d (+ BN) becomes a ``Conv``; so does a branch of a residual block
    that is one (``scale -> conv -> bn -> Add``) or an identity (a 1x1 ``Conv``). A path
    shorter than the longest into the population is delayed by ``delay = depth - 1 -
    depth(source)`` steps: a convolution path from a spiking source through ``delay`` relay
    populations (LIF with vth = 0, du = dv = 4095: each repeats its input spikes one step
    later; fed by a 1x1 identity ``Conv``, so a CIFAR-sized skip stays compact), any other
    as a ``DelayDense`` (Loihi 2's synaptic delay, at most :data:`MAX_DELAY` steps). Every
    other projection is a ``Dense`` with the exact matrix.
    """
    delays = {source: segment.depth - 1 - depths[source] for source in segment.sources}
    if segment.is_chain():
        chain = _conv_chain(segment.layers, segment.in_shape)
        if chain is not None:
            w, b, conv = chain
            return [_FloatConnection(segment.sources[0], "conv", segment.in_shape, w, 0, conv)], b, True, []
    projections = None
    out: list[_FloatConnection] = []
    relays: list[_Relay] = []
    for source, shape in zip(segment.sources, segment.source_shapes):
        path = segment.path(source) if len(segment.sources) > 1 else None
        delay = delays[source]
        chain = _conv_chain(path, shape) if path is not None and (not out or out[0].kind == "conv") else None
        if chain is not None and (delay == 0 or source != INPUT):
            reads = source
            for step in range(1, delay + 1):
                relays.append(_Relay(f"{source}_relay{step}", reads, shape, depths[source] + step))
                reads = relays[-1].name
            out.append(_FloatConnection(reads, "conv", shape, chain[0], 0, chain[2]))
            continue
        if delay > MAX_DELAY:
            raise SpikeforgeError(f"the path from {source} into {segment.label} skips {delay} connections; Loihi 2 "
                                  f"delays a synapse by at most {MAX_DELAY} steps; shorten the skip connection")
        _dense_size_check(segment, int(math.prod(shape)))
        if projections is None:
            projections, _ = segment.projections()
        weight = dict(projections)[source]
        out.append(_FloatConnection(source, "dense", shape, weight.toarray().T, delay))
    return out, segment.offset(), False, relays


def _recurrent_connection(segment: Segment) -> list[_FloatConnection]:
    """The layer's recurrent weights as a ``Dense`` from its own spikes to its own input.

    Lava's synapse sends the previous step's accumulation, so the layer receives ``W s[t-1]``
    at step t: the contract's ``x[t] + W s[t-1]`` exactly, with no extra delay.
    """
    recurrent = getattr(segment.neuron, "recurrent", None)
    if recurrent is None:
        return []
    if len(segment.shape) != 1:
        raise SpikeforgeError(f"{segment.label} is recurrent over the last of its {len(segment.shape)} feature "
                              "dimensions; Loihi's recurrent Dense connects flat layers only; flatten before it")
    weight = recurrent.weight.detach().double().cpu().numpy().copy()
    return [_FloatConnection(segment.name, "dense", segment.shape, weight, 0)]


def _gap_charge(layer: LoihiLayer) -> tuple[int, str]:
    """``(M, "")``: the charge that keeps a recurrent layer silent in the step between two streamed
    samples, so that none of its spikes reaches the next sample through its recurrent synapses;
    ``(0, why)`` when no charge can.

    At that step a zero-reset layer with du = 4095 holds ``v <= vth << 6`` and receives
    ``a + bias`` with ``a`` between the sums of the negative and of the positive weights of its
    spiking sources (the input is zero there), so ``M = max(positive sum + bias)`` keeps
    ``v <= vth << 6``, and ``u = (a - M) << 6`` must not wrap its 24 bits: ``M - min(negative
    sum) < 2^17``. The next window starts with a reset, so nothing of the charge remains.
    """
    if layer.reset != "zero" or layer.du != DECAY_MAX:
        what = "a subtract reset" if layer.reset != "zero" else "a current that decays (CubaLIF)"
        return 0, (f"layer {layer.name} is recurrent with {what}, which a one-step inhibition cannot keep silent "
                   "between streamed samples")
    positive, negative = np.zeros(layer.size), np.zeros(layer.size)
    for c in layer.connections:
        if c.source == INPUT:   # the input is zero between samples
            continue
        w = c.weight.astype(np.float64)
        if c.kind == "conv":
            per_channel = w.reshape(w.shape[0], -1)
            repeat = layer.size // w.shape[0]
            positive += np.repeat(np.clip(per_channel, 0, None).sum(1), repeat)
            negative += np.repeat(np.clip(per_channel, None, 0).sum(1), repeat)
        else:
            positive += np.clip(w, 0, None).sum(1)
            negative += np.clip(w, None, 0).sum(1)
    bias = layer.bias_mant.reshape(-1).astype(np.float64)
    charge = int(max(1.0, float((positive + np.clip(bias, 0, None)).max())))
    if charge - float(negative.min()) >= 2 ** 17:
        return 0, (f"layer {layer.name} is recurrent with synapses that can bring {charge - negative.min():.0f} "
                   "activation units in one step, more than a one-step inhibition can cancel within Loihi's 24-bit "
                   "current (2^17)")
    return charge, ""


def _relay_layer(relay: _Relay) -> LoihiLayer:
    """``v = a << 6`` for one input spike (weight 1, no current or membrane memory) > ``vth << 6 = 0``:
    a spike in, a spike out one step later; no input, no spike."""
    channels = relay.shape[0]
    eye = np.eye(channels, dtype=np.int64).reshape(channels, channels, 1, 1)
    n = int(math.prod(relay.shape))
    layer = LoihiLayer(relay.name, relay.shape, DECAY_MAX, DECAY_MAX, 0, np.zeros(n, dtype=np.int64), 1.0,
                       [LoihiConnection(relay.source, "conv", relay.shape, eye)], depth=relay.depth, relay=True)
    layer.report = {"kind": "relay", "neurons": n, "depth": relay.depth, "source": relay.source,
                    "connections": [{"source": relay.source, "kind": "conv", "delay": 0}]}
    return layer


def _uniform(name: str, label: str, values: np.ndarray) -> float:
    if np.ptp(values) > 0:
        raise SpikeforgeError(f"{label} has per-neuron {name} values; Lava's LIF takes one {name} per layer; "
                              "use a scalar and retrain")
    return float(values[0])


def decay_constants(alpha: float, beta: float) -> tuple[int, int]:
    """12-bit ``(du, dv)``: Lava decays u by ``(4096 - du - 1)/4096`` and v by ``(4096 - dv)/4096``."""
    du = int(min(max(DECAY_MAX - round(4096 * alpha), 0), DECAY_MAX))
    dv = int(min(max(round(4096 * (1 - beta)), 0), DECAY_MAX))
    return du, dv


def _quantise_weights(w: np.ndarray, lam: float) -> tuple[np.ndarray, int]:
    """Integers as Lava's 8-bit synapse holds them: mixed sign -> even in [-256, 254], else 8-bit magnitude."""
    scaled = w * lam
    mixed = bool((w > 0).any() and (w < 0).any())
    if mixed:
        mant = np.clip(np.round(scaled / 2), -128, 127)
        return (2 * mant).astype(np.int64), 1
    return np.clip(np.round(scaled), -255, 255).astype(np.int64), 0


def _check_capacity(label: str, n: int, connections: Sequence[_FloatConnection], b_in: np.ndarray) -> int:
    """Refuse a layer one chip cannot hold or weights that are not finite; return the fan-in."""
    if n > MAX_LAYER_NEURONS:
        raise SpikeforgeError(f"{label} has {n:,} neurons; one Loihi 2 chip holds at most {MAX_LAYER_NEURONS:,} "
                              f"({CORES_PER_CHIP} cores x {NEURONS_PER_CORE:,}); make the layer smaller")
    fan_in = sum(int(c.weight[0].size) if c.kind == "conv" else int(np.count_nonzero(c.weight, axis=1).max(initial=0))
                 for c in connections)
    if fan_in > MAX_FAN_IN:
        raise SpikeforgeError(f"{label} has a fan-in of {fan_in:,} synapses per neuron; one Loihi 2 core holds at "
                              f"most {MAX_FAN_IN:,}; make the previous layer smaller")
    if not all(np.isfinite(c.weight).all() for c in connections) or not np.isfinite(b_in).all():
        raise SpikeforgeError(f"the weights feeding {label} are not finite (NaN/inf); they cannot be quantised; "
                              "retrain or fix the checkpoint")
    return fan_in


def _total_bias(bias: np.ndarray, b_in: np.ndarray, per_channel: bool, n: int) -> np.ndarray:
    """Neuron bias plus the connections' offset (``per_channel``: one per conv output channel), one value per neuron."""
    if bias.size == 1:
        bias = np.full(n, bias[0])
    return bias + np.broadcast_to(np.repeat(b_in, n // b_in.size) if per_channel else b_in.reshape(-1), (n,))


def _scale(label: str, w: np.ndarray, bias: np.ndarray, theta: float | None) -> float:
    """``lam``: the largest weight fills the mantissa unless the threshold (17 bits) or bias (13 bits) must fit.

    ``theta`` is ``None`` for the readout (its threshold is the largest one).
    """
    wmax = float(np.abs(w).max(initial=0.0))
    mixed = bool((w > 0).any() and (w < 0).any())
    lam = (254.0 if mixed else 255.0) / wmax
    if theta is not None and lam * theta > VTH_MAX:
        lam = VTH_MAX / theta
    bmax = float(np.abs(bias).max(initial=0.0))
    if bmax * lam > BIAS_MANT_MAX:
        lam = BIAS_MANT_MAX / bmax
        if theta is not None and lam * theta < 16:
            raise SpikeforgeError(f"{label}: the bias ({bmax:.3g}) is too large relative to the weights and threshold "
                                  f"to fit a 13-bit bias mantissa with a usable threshold; rescale the layer")
    return lam


def _report(layer: LoihiLayer, fan_in: int, weights: Sequence[np.ndarray], bias: np.ndarray, theta: float | None,
            alpha: float, beta: float) -> dict[str, Any]:
    """Quantisation errors and headroom of one compiled layer against its float64 original."""
    lam, vth, du, dv = layer.scale, layer.vth, layer.du, layer.dv
    q = np.concatenate([c.weight.ravel() for c in layer.connections])
    w = np.concatenate([np.ravel(x) for x in weights])
    err = np.abs(q / lam - w)
    return {
        "kind": layer.kind, "neurons": layer.size, "fan_in": fan_in, "scale": lam, "depth": layer.depth,
        "connections": [{"source": c.source, "kind": c.kind if not c.delay else "delay_dense", "delay": c.delay}
                        for c in layer.connections],
        "weight_mantissa_exp": layer.mantissa_exp,
        "weight_max_abs_error": float(err.max()),
        "weight_rel_rms_error": float(np.sqrt((err ** 2).mean()) / max(np.sqrt((w ** 2).mean()), 1e-300)),
        "weights_zeroed": int(((q == 0) & (w != 0)).sum()),
        "mantissa_max": max(int(np.abs(c.weight).max() >> c.mantissa_exp) for c in layer.connections),
        "vth": vth, "threshold_error": 0.0 if theta is None else float(abs(vth / lam - theta)),
        "bias_max_abs_error": float(np.abs(layer.bias_mant / lam - bias).max(initial=0.0)),
        "v_init_mant": layer.v_init_mant,
        "du": du, "dv": dv, "alpha_loihi": (4096 - du - 1) / 4096, "beta_loihi": (4096 - dv) / 4096,
        "alpha_error": abs((4096 - du - 1) / 4096 - alpha), "beta_error": abs((4096 - dv) / 4096 - beta),
        "headroom_thresholds": (2 ** 23 - 1) / (64 * vth),
    }


def _deployed_reset(label: str, neuron: NeuronLayer, strict: bool, reset: str, notes: list[str]) -> str:
    """The reset the layer gets on Loihi: its own with ``reset="subtract"``, else Loihi's zero reset."""
    if getattr(neuron, "reset", "zero") != "subtract":
        return "zero"
    if reset == "subtract":
        notes.append(f"{label}: reset by subtraction (spikeforge's subtractive LIF process model)")
        return "subtract"
    if strict:
        raise SpikeforgeError(f"{label} resets by subtraction; Loihi 2's LIF resets to zero; build it with "
                              "reset='zero', compile with reset='subtract' (snn deploy --reset subtract) or "
                              "with strict=False")
    notes.append(f"{label}: reset 'subtract' compiled as Loihi's zero reset (snn deploy --reset subtract keeps it)")
    return "zero"


def _fold_thresholds(segment: Segment, connections: Sequence[_FloatConnection], weights: list[np.ndarray],
                     bias: np.ndarray, theta: np.ndarray, notes: list[str]
                     ) -> tuple[list[np.ndarray], np.ndarray, float]:
    """One threshold per layer, as Lava's LIF takes: per-neuron thresholds theta_j fold into the weights.

    A CUBA neuron is linear below threshold, so dividing neuron j's input weights and bias
    by theta_j and comparing with 1 gives the same spikes (its current and membrane are
    scaled by 1/theta_j throughout; a zero or a subtract reset scales alike, v_init is
    relative to theta). A conv connection needs one threshold per output channel.
    """
    if np.ptp(theta) == 0:
        return weights, bias, float(theta[0])
    folded = []
    for c, w in zip(connections, weights):
        if c.kind == "dense":
            folded.append(w / theta[:, None])
            continue
        channels = theta.reshape(w.shape[0], -1)
        if np.ptp(channels, axis=1).max() > 0:
            raise SpikeforgeError(f"{segment.label} has thresholds that vary within a channel; a Loihi "
                                  "convolution takes one per output channel; use per-channel thresholds")
        folded.append(w / channels[:, 0].reshape(-1, 1, 1, 1))
    notes.append(f"{segment.label}: per-channel thresholds folded into its weights (threshold 1)")
    return folded, bias / theta, 1.0


def _v_init_mant(segment: Segment, vth: int, du: int, dv: int) -> int:
    """``round(v_init * vth)``: the one-time charge that stands for v[-1] = v_init * theta (0 when at rest).

    Exact only where the current has no memory and the membrane does not leak (IF: du = 4095,
    dv = 0): the charge then adds to v once, as a starting value would.
    """
    v_init = float(getattr(segment.neuron, "v_init", 0.0))
    if not v_init:
        return 0
    if du != DECAY_MAX or dv != 0:
        raise SpikeforgeError(f"{segment.label} starts charged (v_init = {v_init}) but leaks (du = {du}, dv = {dv}); "
                              "Loihi starts it with a one-time charge, which equals a starting membrane only for "
                              "IF neurons; set v_init = 0 or use IF")
    return int(round(v_init * vth))


def _layer(segment: Segment, connections: list[_FloatConnection], b_in: np.ndarray, per_channel: bool,
           input_scale: float, strict: bool, notes: list[str], reset: str = "zero") -> LoihiLayer:
    label, n = segment.label, segment.size
    fan_in = _check_capacity(label, n, connections, b_in)
    weights = [c.weight / input_scale if c.source == INPUT else c.weight for c in connections]
    params = segment.parameters()
    readout = isinstance(segment.neuron, Integrator)
    alpha = _uniform("alpha", label, params["alpha"]) if "alpha" in params else 0.0
    beta = _uniform("beta", label, params["beta"])
    deployed = "zero" if readout else _deployed_reset(label, segment.neuron, strict, reset, notes)
    bias = _total_bias(params["bias"], b_in, per_channel, n)
    theta = None
    if not readout:
        weights, bias, theta = _fold_thresholds(segment, connections, weights, bias, params["theta"], notes)
    every = np.concatenate([w.ravel() for w in weights])
    if float(np.abs(every).max(initial=0.0)) == 0:
        raise SpikeforgeError(f"the weights feeding {label} are all zero; nothing to quantise; retrain")
    lam = _scale(label, every, bias, theta)
    compiled = []
    for c, w in zip(connections, weights):
        q, mant_exp = _quantise_weights(w, lam)
        conn = LoihiConnection(c.source, c.kind, c.in_shape, q, mantissa_exp=mant_exp, delay=c.delay,
                               graded=c.source == INPUT)
        if c.conv is not None:
            conn.stride, conn.padding = _pair(c.conv.stride), _pair(c.conv.padding)
            conn.dilation, conn.groups = _pair(c.conv.dilation), int(c.conv.groups)
        compiled.append(conn)
    if not any(c.weight.any() for c in compiled):
        raise SpikeforgeError(f"the weights feeding {label} all round to zero at scale {lam:.3g}; they cannot be "
                              "quantised to 8 bits next to this threshold; rescale the weights / threshold")
    vth = VTH_MAX if readout else int(round(lam * theta))
    if vth < 1:
        raise SpikeforgeError(f"{label}: threshold {theta} rounds to 0 at scale {lam:.3g}; rescale the layer")
    du, dv = decay_constants(alpha, beta)
    layer = LoihiLayer(segment.name, segment.shape, du, dv, vth, np.round(bias * lam).astype(np.int64), lam,
                       compiled, readout=readout, depth=segment.depth, v_init_mant=_v_init_mant(segment, vth, du, dv),
                       reset=deployed)
    layer.report = _report(layer, fan_in, weights, bias, theta, alpha, beta)
    return layer


def compile_network(model: Sequential | GraphNetwork, input_shape: Sequence[int] | None = None,
                    strict: bool = False, reset: str = "zero") -> LoihiNetwork:
    """Compile ``model`` (eval mode) to Loihi 2 fixed point; raises :class:`SpikeforgeError` on what Loihi cannot hold.

    Every layer is checked (Loihi's refusals, then the graph's) before any is quantised.
    ``reset``: ``"zero"`` compiles every layer with Lava's LIF (Loihi's zero reset; a netx file
    any Loihi 2 host runs); ``"subtract"`` keeps a subtract reset where the layer has one
    (:data:`RESETS`; see the module docstring).
    """
    if reset not in RESETS:
        raise SpikeforgeError(f"unknown reset {reset!r}; choose one of {', '.join(RESETS)}")
    first_shape, segments = split_network(model, input_shape, backend="Loihi", check=_loihi_check(model))
    depths = {INPUT: 0, **{segment.name: segment.depth for segment in segments}}
    planned = []
    for segment in segments:
        conns, offset, per_channel, relays = _connections(segment, depths)
        planned.append((segment, conns + _recurrent_connection(segment), offset, per_channel, relays))
    reading_input = [(segment.neuron, c.weight, b) for segment, conns, b, _, _ in planned for c in conns
                     if c.source == INPUT]
    levels = min((input_levels(*args) for args in reading_input), default=INPUT_LEVELS)
    layers: list[LoihiLayer] = []
    notes: list[str] = []
    placed: set[str] = set()
    for segment, conns, b, per_channel, relays in planned:
        for relay in relays:
            if relay.name not in placed:
                placed.add(relay.name)
                layers.append(_relay_layer(relay))
        if relays:
            notes.append(f"{segment.label}: a skip path delayed by {len(relays)} relay population(s) "
                         f"({', '.join(r.name for r in relays)}) to meet the longer path")
        layers.append(_layer(segment, conns, b, per_channel, levels, strict, notes, reset))
        if layers[-1].recurrent:
            layers[-1].gap_charge, layers[-1].stream_refusal = _gap_charge(layers[-1])
    return LoihiNetwork(first_shape, layers, input_levels=levels, notes=notes)


def input_levels(neuron: NeuronLayer, w: np.ndarray, b: np.ndarray) -> int:
    """Graded-spike levels L for inputs in [0, 1] (``q = round(L x)``, L <= 255).

    The first layer's weights per level are ``w / L``; L is the largest value that still lets
    the weight mantissa use all 8 bits with the threshold in 17 bits and the bias in 13.
    """
    wmax = float(np.abs(w).max(initial=0.0))
    if wmax == 0 or not np.isfinite(wmax):
        return INPUT_LEVELS
    theta = 0.0 if isinstance(neuron, Integrator) else float(neuron.parameters_now().theta.max())
    bmax = float(neuron.bias.detach().double().abs().max()) + float(np.abs(b).max(initial=0.0))
    limit = float(INPUT_LEVELS)
    if theta > 0:
        limit = min(limit, VTH_MAX * wmax / (254 * theta))
    if bmax > 0:
        limit = min(limit, BIAS_MANT_MAX * wmax / (254 * bmax))
    return int(max(1, math.floor(limit)))
