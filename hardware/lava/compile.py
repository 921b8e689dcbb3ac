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

Loihi resets to zero. A layer with reset "subtract" is compiled with zero reset and the
change is listed in the report (``strict=True`` refuses it instead). The non-spiking
``Integrator`` readout becomes a LIF with ``du = 4095`` (no current memory), the largest
threshold and its membrane read every step.
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
from snn.layers import Scale
from snn.network import Sequential
from snn.neurons import IF, LIF, CubaLIF, Integrator, NeuronLayer

# Loihi 2 limits. Intel's Loihi 2 brief (2021): 128 neuromorphic cores per chip, up to 8,192
# neurons per core, 128 KB synaptic memory per core. A layer may spread over the cores of one
# chip; one neuron's incoming synapses must fit one core's synaptic memory (8-bit synapses).
NEURONS_PER_CORE = 8192
CORES_PER_CHIP = 128
MAX_LAYER_NEURONS = NEURONS_PER_CORE * CORES_PER_CHIP
MAX_FAN_IN = 128 * 1024
# Field widths of lava-nc 0.10.0's PyLifModelBitAcc / PyDenseModelBitAcc.
VTH_MAX = 2 ** 17 - 1
BIAS_MANT_MAX = 2 ** 12 - 1
BIAS_EXP = 6
DECAY_MAX = 4095
INPUT_LEVELS = 255            # inputs in [0, 1] -> 8-bit graded spikes
DENSE_ELEMENT_LIMIT = 2 ** 26  # dense matrices above this are refused (memory), not a Loihi limit

SUPPORTED_NEURONS = (IF, LIF, CubaLIF, Integrator)
# The affine layers compiled and tested here: a subset of hardware.graph.AFFINE_LAYERS.
AFFINE = (nn.Linear, nn.Conv2d, nn.BatchNorm1d, nn.BatchNorm2d, nn.AvgPool2d, nn.Flatten, nn.Dropout, nn.Identity,
          Scale)
CONV_TAIL = (nn.BatchNorm2d, nn.Dropout, nn.Identity)


@dataclass
class LoihiLayer:
    """One compiled layer: a connection (dense or conv) feeding a LIF population.

    ``weight``: dense ``[n_out, n_in]`` or conv ``[C_out, C_in/groups, kh, kw]`` (torch layout),
    integers as Lava's synapse holds them. ``shape``: the population's torch shape.
    """

    name: str
    kind: str
    in_shape: tuple[int, ...]
    shape: tuple[int, ...]
    weight: np.ndarray
    du: int
    dv: int
    vth: int
    bias_mant: np.ndarray
    scale: float
    weight_exp: int = 0           # Lava's Dense weight_exp (the mantissa exponent is folded into weight)
    mantissa_exp: int = 0
    bias_exp: int = BIAS_EXP
    readout: bool = False
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    graded_input: bool = False
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return int(math.prod(self.shape))


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
        """Float input ``[T, B, *input_shape]`` in [0, 1] -> int64 graded spikes ``round(255 x)``."""
        if tuple(x.shape[2:]) != self.input_shape:
            raise SpikeforgeError(f"input has feature shape {tuple(x.shape[2:])}, the compiled network expects "
                                  f"{self.input_shape} after [T, B]")
        if not torch.isfinite(x).all() or x.min() < 0 or x.max() > 1:
            raise SpikeforgeError("Loihi input must lie in [0, 1] (it becomes 8-bit graded spikes); "
                                  "scale the input or use a rate encoder")
        return torch.round(x.double() * self.input_levels).long()

    def report(self) -> dict[str, Any]:
        return {"layers": {layer.name: layer.report for layer in self.layers}, "notes": list(self.notes),
                "input_levels": self.input_levels}


def _check_layer(name: str, layer: nn.Module) -> None:
    label = layer_label(name, layer)
    if isinstance(layer, NeuronLayer):
        if not isinstance(layer, SUPPORTED_NEURONS):
            raise SpikeforgeError(f"{label} cannot run on Loihi 2 through Lava's LIF: only IF, LIF, "
                                  "CubaLIF and an Integrator readout compile; replace it and retrain")
        if getattr(layer, "recurrent", None) is not None:
            raise SpikeforgeError(f"{label} is recurrent; the Loihi compiler here handles feed-forward "
                                  "networks only; set recurrent_features=None")
        if getattr(layer, "v_init", 0.0):
            raise SpikeforgeError(f"{label} starts charged (v_init = {layer.v_init} theta); the Loihi compiler "
                                  "here starts every neuron at rest; set layer.v_init = 0 (and re-check the "
                                  "accuracy) to deploy it")
        return
    if type(layer) not in AFFINE:
        raise SpikeforgeError(f"{label} is not supported on Loihi 2: only "
                              f"{', '.join(t.__name__ for t in AFFINE)} map to synapses; replace it "
                              "(e.g. MaxPool by AvgPool) and retrain")
    if isinstance(layer, nn.Conv2d) and layer.padding_mode != "zeros":
        raise SpikeforgeError(f"{label} uses padding_mode={layer.padding_mode!r}; Loihi convolution "
                              "pads with zeros only")


def _loihi_check(model: Sequential) -> LayerCheck:
    """Loihi's refusals for :func:`hardware.graph.split_network`; an Integrator only as the last layer."""
    children = list(model.named_children())
    last = children[-1][0] if children else None

    def check(name: str, layer: nn.Module) -> None:
        _check_layer(name, layer)
        if isinstance(layer, Integrator) and name != last:
            raise SpikeforgeError(f"{layer_label(name, layer)} is not the last layer; an Integrator is only "
                                  "supported as the readout")
    return check


def _pair(v: Any) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _conv_chain(layers: Sequence[nn.Module], in_shape: tuple[int, ...]):
    """``(weight, bias, conv)`` in float64 if the chain is one Conv2d (+ BN / Dropout / Identity), else None."""
    if len(in_shape) != 3 or not layers or not isinstance(layers[0], nn.Conv2d):
        return None
    if not all(isinstance(m, CONV_TAIL) for m in layers[1:]) or sum(isinstance(m, nn.BatchNorm2d) for m in layers) > 1:
        return None
    conv = layers[0]
    w = conv.weight.detach().double().cpu().numpy().copy()
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


def _connection(segment: Segment) -> tuple[str, np.ndarray, np.ndarray, nn.Conv2d | None]:
    """``(kind, float64 weight, bias, conv)``: a Lava ``Conv`` for a lone Conv2d (+ BN), else ``Dense``."""
    chain = _conv_chain(segment.layers, segment.in_shape)
    if chain is not None:
        w, b, conv = chain
        return "conv", w, b, conv
    n_in = int(math.prod(segment.in_shape))
    if n_in * segment.size > DENSE_ELEMENT_LIMIT:
        raise SpikeforgeError(f"the connection into {segment.label} needs a dense {n_in}x{segment.size} matrix; "
                              "too large to compile here; make it smaller")
    sparse, b, _ = segment.affine_map()
    return "dense", sparse.toarray().T, b, None


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


def _check_capacity(label: str, n: int, kind: str, w: np.ndarray, b_in: np.ndarray) -> int:
    """Refuse a layer one chip cannot hold or weights that are not finite; return the fan-in."""
    if n > MAX_LAYER_NEURONS:
        raise SpikeforgeError(f"{label} has {n:,} neurons; one Loihi 2 chip holds at most {MAX_LAYER_NEURONS:,} "
                              f"({CORES_PER_CHIP} cores x {NEURONS_PER_CORE:,}); make the layer smaller")
    fan_in = int(w[0].size) if kind == "conv" else int(np.count_nonzero(w, axis=1).max(initial=0))
    if fan_in > MAX_FAN_IN:
        raise SpikeforgeError(f"{label} has a fan-in of {fan_in:,} synapses per neuron; one Loihi 2 core holds at "
                              f"most {MAX_FAN_IN:,}; make the previous layer smaller")
    if not np.isfinite(w).all() or not np.isfinite(b_in).all():
        raise SpikeforgeError(f"the weights feeding {label} are not finite (NaN/inf); they cannot be quantised; "
                              "retrain or fix the checkpoint")
    return fan_in


def _total_bias(bias: np.ndarray, b_in: np.ndarray, kind: str, n: int) -> np.ndarray:
    """Neuron bias plus the connection's offset (per output channel for conv), one value per neuron."""
    if bias.size == 1:
        bias = np.full(n, bias[0])
    return bias + np.broadcast_to(b_in.reshape(-1) if kind == "dense" else np.repeat(b_in, n // b_in.size), (n,))


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


def _report(layer: LoihiLayer, fan_in: int, w: np.ndarray, bias: np.ndarray, theta: float | None,
            alpha: float, beta: float) -> dict[str, Any]:
    """Quantisation errors and headroom of one compiled layer against its float64 original."""
    q, lam, vth, du, dv = layer.weight, layer.scale, layer.vth, layer.du, layer.dv
    err = np.abs(q / lam - w)
    return {
        "kind": layer.kind, "neurons": layer.size, "fan_in": fan_in, "scale": lam,
        "weight_mantissa_exp": layer.mantissa_exp,
        "weight_max_abs_error": float(err.max()),
        "weight_rel_rms_error": float(np.sqrt((err ** 2).mean()) / max(np.sqrt((w ** 2).mean()), 1e-300)),
        "weights_zeroed": int(((q == 0) & (w != 0)).sum()), "mantissa_max": int(np.abs(q).max() >> layer.mantissa_exp),
        "vth": vth, "threshold_error": 0.0 if theta is None else float(abs(vth / lam - theta)),
        "bias_max_abs_error": float(np.abs(layer.bias_mant / lam - bias).max(initial=0.0)),
        "du": du, "dv": dv, "alpha_loihi": (4096 - du - 1) / 4096, "beta_loihi": (4096 - dv) / 4096,
        "alpha_error": abs((4096 - du - 1) / 4096 - alpha), "beta_error": abs((4096 - dv) / 4096 - beta),
        "headroom_thresholds": (2 ** 23 - 1) / (64 * vth),
    }


def _reset_note(label: str, neuron: NeuronLayer, strict: bool, notes: list[str]) -> None:
    if getattr(neuron, "reset", "zero") == "subtract":
        if strict:
            raise SpikeforgeError(f"{label} resets by subtraction; Loihi 2's LIF resets to zero; build it with "
                                  "reset='zero' or compile with strict=False")
        notes.append(f"{label}: reset 'subtract' compiled as Loihi's zero reset")


def _layer(segment: Segment, kind: str, w: np.ndarray, b_in: np.ndarray, input_scale: float, strict: bool,
           conv: nn.Conv2d | None, notes: list[str]) -> LoihiLayer:
    label, n = segment.label, segment.size
    fan_in = _check_capacity(label, n, kind, w, b_in)
    w = w / input_scale
    params = segment.parameters()
    readout = isinstance(segment.neuron, Integrator)
    alpha = _uniform("alpha", label, params["alpha"]) if "alpha" in params else 0.0
    beta = _uniform("beta", label, params["beta"])
    if not readout:
        _reset_note(label, segment.neuron, strict, notes)
    bias = _total_bias(params["bias"], b_in, kind, n)
    if float(np.abs(w).max(initial=0.0)) == 0:
        raise SpikeforgeError(f"the weights feeding {label} are all zero; nothing to quantise; retrain")
    theta = None if readout else _uniform("theta", label, params["theta"])
    lam = _scale(label, w, bias, theta)
    q, mant_exp = _quantise_weights(w, lam)
    if not q.any():
        raise SpikeforgeError(f"the weights feeding {label} all round to zero at scale {lam:.3g}; they cannot be "
                              "quantised to 8 bits next to this threshold; rescale the weights / threshold")
    vth = VTH_MAX if readout else int(round(lam * theta))
    if vth < 1:
        raise SpikeforgeError(f"{label}: threshold {theta} rounds to 0 at scale {lam:.3g}; rescale the layer")
    du, dv = decay_constants(alpha, beta)
    layer = LoihiLayer(segment.name, kind, segment.in_shape, segment.shape, q, du, dv, vth,
                       np.round(bias * lam).astype(np.int64), lam, mantissa_exp=mant_exp, readout=readout)
    layer.report = _report(layer, fan_in, w, bias, theta, alpha, beta)
    if conv is not None:
        layer.stride, layer.padding = _pair(conv.stride), _pair(conv.padding)
        layer.dilation, layer.groups = _pair(conv.dilation), int(conv.groups)
    return layer


def compile_network(model: Sequential, input_shape: Sequence[int] | None = None, strict: bool = False) -> LoihiNetwork:
    """Compile ``model`` (eval mode) to Loihi 2 fixed point; raises :class:`SpikeforgeError` on what Loihi cannot hold.

    Every layer is checked (Loihi's refusals, then the graph's) before any is quantised.
    """
    first_shape, segments = split_network(model, input_shape, backend="Loihi", check=_loihi_check(model))
    layers, notes, levels = [], [], INPUT_LEVELS
    for segment in segments:
        kind, w, b, conv = _connection(segment)
        if not layers:
            levels = input_levels(segment.neuron, w, b)
        compiled = _layer(segment, kind, w, b, 1.0 if layers else levels, strict, conv, notes)
        compiled.graded_input = not layers
        layers.append(compiled)
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
