"""Compile a converted network to a Loihi 2 sigma-delta network (Lava's ``lava.proc.sdn``), graded spikes.

A converted network (``snn convert``: IF neurons with per-channel thresholds theta, Scale
layers carrying the spike amplitudes, an Integrator readout) is a rate-coded stand-in for
the ReLU ANN it came from. Its rate limit is that ANN: an IF neuron fed ``z`` fires at the
rate ``clip(z / theta, 0, 1)``. The sigma-delta network computes the ANN directly, without
the upper clip, one graded message per change of an activation:

- the input is a Lava ``Delta`` encoder: it receives the 8-bit frame ``q = round(L x)``
  every step and sends its change (``spike_exp = state_exp = 0``, ``vth = 1``: every change,
  exactly);
- each IF layer is a ``SigmaDelta`` neuron (``act_mode = RELU``) whose activation is the
  ANN's ``a = relu(z)``: the next layer's weights, which read spikes of rate ``a / theta``
  through a Scale by theta, are divided back by theta (one scale per matrix, the ANN's own
  weights; folding thresholds into rows instead, as LIF must, would spread the rows over an
  order of magnitude and cost 8-bit weights bits): ``sigma += a_in``; ``act = relu(sigma +
  bias << state_exp)``; ``delta = act - act_prev + residue``; it sends ``delta >> state_exp``
  where ``|delta| >= vth << state_exp`` and keeps the rest as ``residue``;
- the Integrator readout is a ``SigmaDelta`` with ``act_mode = UNIT`` (``act = sigma +
  bias``, no ReLU: the ANN's logits), read through a Monitor on ``act``;
- every connection is a ``Dense`` or ``Conv`` with ``num_message_bits`` set (graded input).

**Steps the signal needs.** Every connection delays by one step (Lava's synapse sends the
previous step's accumulation) and the encoders add none, so a frame reaches a layer at depth
``d`` exactly ``d`` steps later, and the readout at depth D holds the network's answer for
the frame shown at step t at step ``t + D``. Samples can therefore be streamed one per step
(``T = 1``); each is read D steps after it was shown. Nothing is reset between samples
(Lava's sigma-delta neurons have no reset): the next sample is sent as its difference.

**Fixed point, per layer** (integers as lava-nc 0.10.0's ``PySigmaDeltaModelFixed`` holds
them). ``K``: state units per float unit of the layer's ``z``; ``mu = 2**state_exp / K``:
float value of one message unit; the input's is ``1 / L``. Calibration inputs (training
samples) give ``z_max`` (largest ``|z|``) and ``a_max`` (largest activation) of the float
network; ``headroom`` (2) is the margin kept above them.

- weights ``W_q = round(W K mu_source 2**k)``, 8 bit (mixed sign: even values in [-256, 254], as
  Lava's 8-bit synapse drops the LSB), with ``weight_exp = -k``: a dense connection takes the
  largest k that keeps the mantissa within 8 bits (Lava shifts its sum right by k, rounding
  toward minus infinity), a conv ``k = 0`` (Lava's Conv model takes no exponent);
- ``K = min(255 / (max|W| mu_source), (2**23 - 1) / (headroom z_max))``: the weights use
  their 8 bits unless the 24-bit state (``sigma``, ``act``) would overflow;
- ``state_exp``: the smallest in 0..7 (3 bits) with ``K (headroom a_max + step) / 2**state_exp``
  within the signed ``message_bits`` (16 by default: lava-dl netx's SDNN default; 24 is the
  precision of the models' ``s_out``) and the bias within its 16 bits; ``K`` is lowered if 7
  is not enough;
- ``vth`` (the activation quantisation step): ``step`` times the layer's largest threshold
  (``theta``, the calibrated 99.9th percentile of the ANN's activation; default step 1/256,
  an 8-bit activation), ``vth = max(1, round(step theta_max / mu))`` message units (Lava
  multiplies it by ``2**state_exp``);
- ``bias = round(b K / 2**state_exp)`` (Lava multiplies it by ``2**state_exp``; 16-bit
  signed), ``spike_exp = 0`` everywhere.

What a layer sends is exact up to its ``residue`` (below ``vth``) and the ``state_exp`` low
bits each message drops (Lava's right shift). Values beyond the headroom are found by the
emulation, which refuses a payload or a state that overflows its bits before Lava runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from hardware.graph import Segment, layer_label, split_network
from hardware.lava.compile import (
    INPUT_LEVELS,
    LoihiConnection,
    _connections,
    _FloatConnection,
    _pair,
    _quantise_weights,
    _total_bias,
    quantise_input,
)
from snn.errors import SpikeforgeError
from snn.graph_network import INPUT, GraphNetwork
from snn.network import Sequential
from snn.neurons import IF, Integrator, NeuronLayer

MESSAGE_BITS = (16, 24)       # lava-dl netx's SDNN default; the precision of Lava's fixed-point s_out
STATE_MAX = 2 ** 23 - 1       # sigma, act, residue: 24-bit signed in PySigmaDeltaModelFixed
BIAS_MAX = 2 ** 15 - 1        # its bias: 16-bit signed
STATE_EXP_MAX = 7             # state_exp: 3 bits
WEIGHT_SHIFT_MAX = 16        # right shift of a dense connection's sum (negative weight_exp)
DEFAULT_STEP = 1 / 256
DEFAULT_HEADROOM = 2.0
INPUT_VTH = 1                 # the input Delta sends every change of the 8-bit frame


@dataclass
class SigmaDeltaLayer:
    """One ``SigmaDelta`` process and the connections into it (integers as Lava holds them).

    ``bias`` and ``vth`` are the process arguments (Lava scales both by ``2**state_exp``);
    ``scale`` is K (state units per float unit); ``relu`` is False for the readout (UNIT).
    """

    name: str
    shape: tuple[int, ...]
    connections: list[LoihiConnection]
    bias: np.ndarray
    vth: int
    state_exp: int
    scale: float
    relu: bool = True
    depth: int = 1
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return int(math.prod(self.shape))

    @property
    def kind(self) -> str:
        return self.connections[0].kind

    @property
    def message_unit(self) -> float:
        """Float value (of the ANN activation ``relu(z)``) of one unit of the layer's messages."""
        return 2.0 ** self.state_exp / self.scale


@dataclass
class SigmaDeltaNetwork:
    """Input shape and levels, the ``Delta`` input's threshold, the layers in order (the readout last)."""

    input_shape: tuple[int, ...]
    layers: list[SigmaDeltaLayer]
    input_levels: int = INPUT_LEVELS
    message_bits: int = 16
    input_vth: int = INPUT_VTH
    notes: list[str] = field(default_factory=list)

    @property
    def readout(self) -> SigmaDeltaLayer:
        return self.layers[-1]

    @property
    def depth(self) -> int:
        """Steps from a frame to the readout's answer for it (one per connection)."""
        return max(layer.depth for layer in self.layers)

    def quantise_input(self, x: torch.Tensor) -> torch.Tensor:
        """Float input ``[T, B, *input_shape]`` in [0, 1] -> int64 frames ``round(L x)`` for the Delta encoder."""
        return quantise_input(x, self.input_shape, self.input_levels)

    def report(self) -> dict[str, Any]:
        return {"layers": {layer.name: layer.report for layer in self.layers}, "notes": list(self.notes),
                "input_levels": self.input_levels, "message_bits": self.message_bits, "depth": self.depth,
                "netx_compatible": False}


def _check(name: str, layer: torch.nn.Module) -> None:
    if isinstance(layer, NeuronLayer) and not isinstance(layer, (IF, Integrator)):
        raise SpikeforgeError(f"{layer_label(name, layer)} is not an IF neuron; a sigma-delta network deploys a "
                              "converted network (IF neurons, an Integrator readout: snn convert), whose rate limit "
                              "is a ReLU; deploy this one with --neuron lif")
    if isinstance(layer, NeuronLayer) and getattr(layer, "recurrent", None) is not None:
        raise SpikeforgeError(f"{layer_label(name, layer)} is recurrent; a sigma-delta network is feed-forward; "
                              "deploy it with --neuron lif")


def _float_forward(conn: _FloatConnection, x: torch.Tensor) -> torch.Tensor:
    """The connection's float64 map on ``x`` ``[B, *in_shape]`` -> ``[B, N]``."""
    w = torch.as_tensor(conn.weight, dtype=torch.float64)
    if conn.kind == "dense":
        return x.reshape(x.shape[0], -1) @ w.t()
    c = conn.conv
    return F.conv2d(x.reshape(x.shape[0], *conn.in_shape), w, stride=_pair(c.stride), padding=_pair(c.padding),
                    dilation=_pair(c.dilation), groups=int(c.groups)).reshape(x.shape[0], -1)


@dataclass
class _Plan:
    segment: Segment
    connections: list[_FloatConnection]
    bias: np.ndarray
    relu: bool


def _plan(model: Sequential | GraphNetwork, input_shape: Sequence[int] | None
          ) -> tuple[tuple[int, ...], list[_Plan], list[str]]:
    """Float64 connections in the ANN's units, per population (a chain only)."""
    first_shape, segments = split_network(model, input_shape, backend="Loihi (sigma-delta)", check=_check)
    if not isinstance(segments[-1].neuron, Integrator):
        raise SpikeforgeError("the network does not end in an Integrator readout; a sigma-delta network reads the "
                              "ANN's logits from one; convert the network with snn convert")
    depths = {INPUT: 0, **{s.name: s.depth for s in segments}}
    plans, notes, previous = [], [], INPUT
    for segment in segments:
        if isinstance(segment.neuron, Integrator) and segment is not segments[-1]:
            raise SpikeforgeError(f"{segment.label} is not the last layer; an Integrator is only supported as the "
                                  "readout")
        if segment.sources != (previous,):
            raise SpikeforgeError(f"{segment.label} reads {', '.join(segment.sources)}; sigma-delta deployment "
                                  "compiles chains (each layer reading the one before), not skip connections yet; "
                                  "deploy this network with --neuron lif")
        conns, b_in, per_channel, _ = _connections(segment, depths)
        params = segment.parameters()
        relu = not isinstance(segment.neuron, Integrator)
        if not relu and float(params["beta"].min()) != 1.0:
            raise SpikeforgeError(f"{segment.label} leaks (beta < 1); a sigma-delta readout sums exactly; use beta = 1")
        if plans:   # the source's spikes stood for rate = a / theta; its activation a comes as it is
            for c in conns:
                c.weight = _unscale_inputs(plans[-1].segment, c)
        plans.append(_Plan(segment, conns, _total_bias(params["bias"], b_in, per_channel, segment.size), relu))
        previous = segment.name
    return first_shape, plans, notes


def _unscale_inputs(source: Segment, conn: _FloatConnection) -> np.ndarray:
    """``conn``'s weights divided by its source's thresholds, per input neuron (dense) or channel (conv).

    The converted network's weights read spikes of rate ``a / theta`` (a Scale by theta puts
    the amplitude back); a sigma-delta layer sends the ANN activation ``a`` itself, so every
    row keeps the ANN's own weights, one scale for the whole matrix, instead of rows divided by
    thresholds that differ by an order of magnitude (which would cost 8-bit weights 3 bits).
    """
    theta = source.parameters()["theta"].astype(np.float64).reshape(-1)
    if theta.size == 1:
        return conn.weight / theta[0]
    if conn.kind == "dense":
        return conn.weight / theta[None, :]
    channels = theta.reshape(conn.weight.shape[1] * conn.groups, -1)
    if np.ptp(channels, axis=1).max() > 0:
        raise SpikeforgeError(f"{source.label} has thresholds that vary within a channel; a convolution after it "
                              "reads one per channel; convert with channel-wise or layer-wise thresholds")
    return conn.weight / channels[:, 0].reshape(1, -1, 1, 1)


def float_network(plans: Sequence[_Plan], x: torch.Tensor) -> list[torch.Tensor]:
    """Each population's float64 activation ``[B, N]`` for input ``x`` ``[B, *input_shape]`` (the last: logits)."""
    out, a = [], x.double()
    for plan in plans:
        z = sum(_float_forward(c, a) for c in plan.connections) + torch.as_tensor(plan.bias, dtype=torch.float64)
        a = torch.relu(z) if plan.relu else z
        out.append(a)
    return out


def _layer_scale(label: str, conns: Sequence[_FloatConnection], source_unit: float, z_max: float, a_max: float,
                 b_max: float, step: float, headroom: float, message_bits: int) -> tuple[float, int]:
    """``(K, state_exp)`` for one layer (see the module docstring): the weights fill 8 bits unless the
    24-bit state, the ``message_bits`` payload or the 16-bit bias (both in units of ``2**state_exp``) would
    overflow."""
    wmax = max(float(np.abs(c.weight).max(initial=0.0)) for c in conns)
    if wmax == 0:
        raise SpikeforgeError(f"the weights feeding {label} are all zero; nothing to quantise; retrain")
    k = min(255.0 / (wmax * source_unit), STATE_MAX / (headroom * max(z_max, b_max, 1e-12)))
    per_unit = (2 ** (message_bits - 1) - 1) / (headroom * max(a_max, 1e-12) + step)   # largest K / 2**state_exp
    if b_max > 0:
        per_unit = min(per_unit, BIAS_MAX / b_max)
    state_exp = next((e for e in range(STATE_EXP_MAX + 1) if k / 2 ** e <= per_unit), STATE_EXP_MAX)
    return min(k, per_unit * 2 ** state_exp), state_exp


def _weight_shift(conn: _FloatConnection, scale: float) -> int:
    """Bits a dense connection's weights gain with a negative ``weight_exp`` (Lava shifts the sum right by
    them): as many as keep the 8-bit mantissa; 0 for a conv (Lava's Conv model takes no exponent)."""
    if conn.kind != "dense":
        return 0
    largest = float(np.abs(conn.weight).max(initial=0.0)) * scale
    return max(0, min(WEIGHT_SHIFT_MAX, int(math.floor(math.log2(254.0 / largest))))) if largest > 0 else 0


def compile_sigma_delta(model: Sequential | GraphNetwork, calibration: torch.Tensor,
                        input_shape: Sequence[int] | None = None, step: float = DEFAULT_STEP,
                        message_bits: int = 16, headroom: float = DEFAULT_HEADROOM) -> SigmaDeltaNetwork:
    """Compile a converted ``model`` to a sigma-delta network; ``calibration``: float inputs ``[B, *input_shape]``
    in [0, 1] (training samples) that size the fixed point. See the module docstring."""
    if message_bits not in MESSAGE_BITS:
        raise SpikeforgeError(f"message_bits must be one of {MESSAGE_BITS}, got {message_bits}")
    if not (0 < step < 1) or not headroom >= 1:
        raise SpikeforgeError(f"the activation step must lie in (0, 1) and the headroom be at least 1; got "
                              f"step={step}, headroom={headroom}")
    first_shape, plans, notes = _plan(model, input_shape)
    if calibration.dim() < 2 or tuple(calibration.shape[1:]) != tuple(first_shape) or len(calibration) == 0:
        raise SpikeforgeError(f"calibration inputs must be [B, {', '.join(map(str, first_shape))}] with B >= 1, "
                              f"got {tuple(calibration.shape)}")
    with torch.no_grad():
        activations = float_network(plans, calibration)
        pre = [sum(_float_forward(c, a) for c in p.connections) + torch.as_tensor(p.bias, dtype=torch.float64)
               for p, a in zip(plans, [calibration.double(), *activations[:-1]])]
    unit, layers = 1.0 / INPUT_LEVELS, []
    for plan, z, a in zip(plans, pre, activations):
        label = plan.segment.label
        z_max, a_max = float(z.abs().max()), float(a.abs().max())
        b_max = float(np.abs(plan.bias).max(initial=0.0))
        # the activation step in the ANN's units: a fraction of the layer's calibrated scale (its largest threshold)
        act_step = step * float(plan.segment.parameters()["theta"].max()) if plan.relu else 0.0
        k, state_exp = _layer_scale(label, plan.connections, unit, z_max, a_max, b_max, act_step, headroom,
                                    message_bits)
        compiled = []
        for c in plan.connections:
            shift = _weight_shift(c, k * unit)
            q, mant_exp = _quantise_weights(c.weight, k * unit * 2 ** shift)
            conn = LoihiConnection(c.source, c.kind, c.in_shape, q, weight_exp=-shift, mantissa_exp=mant_exp,
                                   graded=True)
            if c.conv is not None:
                conn.stride, conn.padding = _pair(c.conv.stride), _pair(c.conv.padding)
                conn.dilation, conn.groups = _pair(c.conv.dilation), int(c.conv.groups)
            compiled.append(conn)
        bias = np.round(plan.bias * k / 2 ** state_exp).astype(np.int64)
        if np.abs(bias).max(initial=0) > BIAS_MAX:
            raise SpikeforgeError(f"{label}: its bias needs {int(np.abs(bias).max())} units, more than the 16-bit "
                                  "bias of Lava's SigmaDelta; rescale the layer")
        message_unit = 2.0 ** state_exp / k
        vth = max(1, int(round(act_step / message_unit))) if plan.relu else 1
        layer = SigmaDeltaLayer(plan.segment.name, plan.segment.shape, compiled, bias, vth, state_exp, k,
                                relu=plan.relu, depth=plan.segment.depth)
        q_all = np.concatenate([c.weight.ravel() for c in compiled])
        w_all = np.concatenate([c.weight.ravel() for c in plan.connections])
        layer.report = {
            "kind": layer.kind, "neuron": "SigmaDelta (RELU)" if plan.relu else "SigmaDelta (UNIT, readout)",
            "neurons": layer.size, "depth": layer.depth, "scale": k, "state_exp": state_exp, "spike_exp": 0,
            "vth": vth, "activation_step": vth * message_unit if plan.relu else None,
            "message_unit": message_unit, "calibrated_z_max": z_max, "calibrated_activation_max": a_max,
            "weight_mantissa_max": int(np.abs(q_all).max()), "weight_exp": [c.weight_exp for c in compiled],
            "weight_max_abs_error": float(np.abs(np.concatenate(
                [c.weight.ravel() * 2.0 ** c.weight_exp for c in compiled]) / (k * unit) - w_all).max()),
            "bias_max_abs_error": float(np.abs(bias * 2 ** state_exp / k - plan.bias).max(initial=0.0)),
        }
        layers.append(layer)
        unit = message_unit
    return SigmaDeltaNetwork(tuple(first_shape), layers, message_bits=message_bits, notes=notes)


def float_logits(model: Sequential | GraphNetwork, x: torch.Tensor, input_shape: Sequence[int] | None = None
                 ) -> torch.Tensor:
    """The converted network's rate limit without its upper clip (every IF a ReLU): the ANN's logits
    ``[B, classes]``."""
    _, plans, _ = _plan(model, input_shape)
    with torch.no_grad():
        return float_network(plans, x)[-1]
