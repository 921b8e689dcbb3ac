"""Run a compiled Loihi network in SANA-FE (Boyle et al., IEEE TCAD 2025): an independent check of our Loihi model.

SANA-FE (``pip install sanafe``) is GPL-3.0. Only ``tests/`` and ``benchmarks/`` import it; the
package (``snn``, ``converters``, ``hardware``) never does. :func:`run_sanafe` builds a SANA-FE
network from a :class:`~hardware.lava.compile.LoihiNetwork` and a
:class:`~hardware.lava.placement.Placement` made with the Loihi 1 table (``LOIHI1``: the chip of
SANA-FE's ``loihi.yaml``, the input population placed on cores), runs every sample on SANA-FE's
Loihi architecture and returns SANA-FE's energy, latency and activity counts with the spike
trains it produced.

What it maps, exactly (SANA-FE's ``leaky_integrate_fire`` soma, ``LoihiLifModel::update``,
against :func:`hardware.lava.emulate.emulate` with ``delay=True``):

- a neuron of a layer -> soma ``loihi_lif`` with ``threshold = vth``, ``bias = (bias_mant <<
  bias_exp) / 64``, ``leak_decay = (4096 - dv) / 4096``, ``input_decay = 0`` (``du = 4095``),
  ``reset_mode`` ``hard`` (to 0) or ``soft`` (reset ``subtract``); SANA-FE's potential is our
  ``v / 64`` (it quantises the potential to 1/64 after the leak, rounding toward zero, as
  ``trunc0(v (4096 - dv) / 4096)`` does), its synaptic current our activation ``a``;
- an input neuron -> soma ``loihi_inputs[j]`` (``j``: its position on its core; SANA-FE's input
  unit holds one spike train, so one unit per neuron) with ``spikes`` = ``q != 0``; each input
  neuron must send one level ``L`` (its nonzero values all equal), folded into its weights;
- a synapse -> one SANA-FE connection per nonzero effective weight (dense: Lava's 8-bit weights
  of :func:`~hardware.lava.emulate.lava_dense_weights` shifted by ``weight_exp``; conv: one per
  nonzero kernel tap inside the zero-padded input, for every output position), on synapse unit
  ``loihi_dense_synapse`` or ``loihi_conv_synapse`` by the connection's kind. SANA-FE copies the
  destination neuron's ``default_synapse_hw_name`` into a connection when it is made, so the
  destination neurons' default is set to the connection's kind before its synapses are added;
- a core of the placement -> ``arch.tiles[x * height + y].cores[slot]`` (SANA-FE numbers tiles
  column-major: ``x = id // height``, ``y = id % height``) with ``x = col``, ``y = row`` of the
  core's tile on the mesh;
- a connection delivers one step later in both (SANA-FE buffers a step's synaptic input before
  the soma: it is integrated in the next time-step), so SANA-FE's time-step ``k`` (from 1) is
  our step ``k - 1``; a recurrent connection as well (``W s[t-1]``).

What it refuses (:class:`ValueError`, with the reason): ``v_init_mant != 0``, ``du != 4095``
(SANA-FE keeps the current in floating point, Lava truncates it), a synaptic ``delay``, a
negative ``weight_exp`` on a dense connection (Lava shifts the sum, not each weight), a reset
other than zero / subtract, input that is not spikes of one level per neuron, a placement that
does not place the input on cores (not ``LOIHI1``), spans several chips or does not fit the
architecture's mesh. Not modelled by SANA-FE, so equal only while values stay in range: Lava's
24-bit wrap of ``u`` (and of a convolution's sum), its 32-bit activation wrap and its clip of
``v`` at ``+-(2^23 - 1)``.

Counts as SANA-FE reports them (``chip.sim``'s ``RunData``): ``spikes`` is the number of
synaptic events (synapse look-ups), not of neuron spikes; ``packets_sent`` one message per
firing neuron and distinct destination core (a message to the source's own core included);
``neurons_fired`` counts input neurons too; ``neurons_updated`` a neuron whose potential was
nonzero, that received a message, has a bias, or fired (an input neuron only when it fires).

The chip is sanafe's ``loihi.yaml`` with its input units (free of energy and latency) cut to
those the mapping uses, and time is SANA-FE's ``"simple"`` model unless ``timing_model`` says
otherwise (``chip.sim(..., timing_model=...)``; the Python API's default is ``"detailed"``).
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import re
import tempfile
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np
import sanafe
import torch

from hardware.lava.compile import LoihiConnection, LoihiLayer, LoihiNetwork
from hardware.lava.emulate import lava_dense_weights
from snn.graph_network import INPUT

SYNAPSE_HW = {"dense": "loihi_dense_synapse", "conv": "loihi_conv_synapse"}
LIF_HW = "loihi_lif"
INPUT_HW = "loihi_inputs[{}]"
TIMING_MODELS = ("simple", "detailed")   # SANA-FE's "cycle" needs its Booksim2 NoC model (one chip per process)
COUNTS = ("spikes", "packets_sent", "neurons_updated", "neurons_fired", "hops")
ENERGY = ("synapse", "dendrite", "soma", "network", "total")


def _refuse(message: str) -> None:
    raise ValueError(f"SANA-FE bridge: {message}")


def _check_layer(layer: LoihiLayer) -> None:
    if layer.v_init_mant:
        _refuse(f"layer {layer.name} starts charged (v_init_mant = {layer.v_init_mant}); SANA-FE's LIF has no "
                "one-time charge on the first input")
    if layer.du != 4095:
        _refuse(f"layer {layer.name} has a current decay (du = {layer.du}); SANA-FE keeps the current in floating "
                "point where Lava truncates it, so only du = 4095 (no current memory) maps exactly")
    if layer.reset not in ("zero", "subtract"):
        _refuse(f"layer {layer.name} has reset {layer.reset!r}; only 'zero' and 'subtract' map")
    for conn in layer.connections:
        if conn.kind not in SYNAPSE_HW:
            _refuse(f"layer {layer.name}: connection kind {conn.kind!r} from {conn.source} is not dense or conv")
        if conn.delay:
            _refuse(f"layer {layer.name}: the connection from {conn.source} has a synaptic delay ({conn.delay}); "
                    "SANA-FE's delay dendrite indexes delays by synapse address, which is not unique across synapse "
                    "units")
        if conn.kind == "dense" and conn.weight_exp < 0:
            _refuse(f"layer {layer.name}: the dense connection from {conn.source} has weight_exp = "
                    f"{conn.weight_exp}; Lava shifts the summed activation right, which no per-synapse weight "
                    "reproduces")


def _bias(layer: LoihiLayer) -> list[int | float]:
    """SANA-FE bias per neuron, ``(bias_mant << bias_exp) / 64``: an int where whole (floats arrive as float32)."""
    mant = np.broadcast_to(np.asarray(layer.bias_mant, dtype=np.int64).reshape(-1), (layer.size,))
    out: list[int | float] = []
    for m in mant.tolist():
        units = m << layer.bias_exp if layer.bias_exp >= 0 else m / 2 ** -layer.bias_exp
        b = units / 64
        if float(b).is_integer():
            out.append(int(b))
        elif float(np.float32(b)) == b:
            out.append(float(b))
        else:
            _refuse(f"layer {layer.name}: bias {b} is not exact in SANA-FE's float32 attributes")
    return out


def _conv_synapses(conn: LoihiConnection, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(src, dst, w)`` flat torch indices of every nonzero in-bounds tap of a convolution, per output position."""
    c_in, h, w_in = conn.in_shape
    c_out, cin_g, kh, kw = conn.weight.shape
    (sh, sw), (ph, pw), (dh, dw), groups = conn.stride, conn.padding, conn.dilation, conn.groups
    ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    wo = (w_in + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    if c_out * ho * wo != out_size:
        _refuse(f"conv from {conn.source}: {c_out}x{ho}x{wo} outputs for a layer of {out_size} neurons")
    weight = conn.weight.astype(np.int64)
    co, ci, ky, kx = np.nonzero(weight)
    taps = weight[co, ci, ky, kx]
    channel_in = (co // (c_out // groups)) * cin_g + ci
    yo, xo = np.meshgrid(np.arange(ho), np.arange(wo), indexing="ij")
    yo, xo = yo.reshape(-1, 1), xo.reshape(-1, 1)                     # [positions, 1] x [1, taps]
    y = yo * sh - ph + ky[None] * dh
    x = xo * sw - pw + kx[None] * dw
    inside = (y >= 0) & (y < h) & (x >= 0) & (x < w_in)
    src = (channel_in[None] * h + y) * w_in + x
    dst = (co[None] * ho + yo) * wo + xo
    wgt = np.broadcast_to(taps[None], src.shape)
    return src[inside], dst[inside], wgt[inside]


def synapses(conn: LoihiConnection, layer: LoihiLayer) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(src, dst, w)``: the synapses of ``conn`` as the emulator computes with them (nonzero effective weights)."""
    if conn.kind == "dense":
        w = lava_dense_weights(conn.weight) << max(conn.weight_exp, 0)
        dst, src = np.nonzero(w)
        return src, dst, w[dst, src]
    return _conv_synapses(conn, layer.size)


def spike_levels(q: torch.Tensor) -> np.ndarray:
    """Per input neuron the one level ``L`` its nonzero values take (0 where it never sends); refuses anything else."""
    flat = q.detach().cpu().reshape(q.shape[0] * q.shape[1], -1).numpy().astype(np.int64)
    level = flat[np.argmax(flat != 0, axis=0), np.arange(flat.shape[1])]   # the first nonzero value (or 0)
    bad = (flat != 0) & (flat != level[None])
    if bad.any():
        i = int(np.nonzero(bad.any(axis=0))[0][0])
        values = sorted(set(flat[:, i][flat[:, i] != 0].tolist()))
        _refuse(f"input neuron {i} sends the values {values[:5]}; SANA-FE's input neurons send binary spikes, so "
                "every nonzero value of a neuron must be one level L (spike input q in {0, L})")
    return level


def _architecture(path: str | os.PathLike | None, input_units: int) -> tuple[Any, int, int]:
    """``(architecture, mesh width, mesh height)`` from a SANA-FE architecture file (default: its Loihi file).

    The file's input soma units ``loihi_inputs[0..K]`` (free of energy and latency; SANA-FE holds one
    input neuron per unit) are cut to the ``input_units`` the mapping uses: SANA-FE builds every unit
    of every core, and 1,024 per core take seconds to build and free.
    """
    text = (files("sanafe.examples") / "loihi.yaml").read_text() if path is None else Path(path).read_text()
    mesh = [re.search(rf"^\s*{key}:\s*(\d+)\s*$", text, re.MULTILINE) for key in ("width", "height")]
    if mesh[0] is None or mesh[1] is None:
        _refuse(f"the architecture file {path} gives no mesh width and height")
    text = re.sub(r"(name:\s*loihi_inputs)\[0\.\.\d+\]", rf"\g<1>[0..{max(input_units, 1) - 1}]", text)
    with tempfile.TemporaryDirectory() as tmp:
        trimmed = Path(tmp) / "arch.yaml"
        trimmed.write_text(text)
        arch = sanafe.load_arch(str(trimmed))
    return arch, int(mesh[0].group(1)), int(mesh[1].group(1))


def _mapping(net: LoihiNetwork, placement: Any, width: int, height: int, per_tile: int) -> list[tuple[int, int]]:
    """SANA-FE ``(tile id, core offset)`` of every placement core; refuses a placement SANA-FE's chip cannot hold."""
    if INPUT not in placement.layers:
        _refuse("the placement keeps the input off chip; place with hardware.lava.placement.LOIHI1, which puts the "
                "input neurons on cores as SANA-FE maps them")
    sizes = {INPUT: int(math.prod(net.input_shape)), **{layer.name: layer.size for layer in net.layers}}
    for name, size in sizes.items():
        spans = sorted((placement.cores[k].start, placement.cores[k].stop) for k in placement.layers.get(name, []))
        if not spans or spans[0][0] != 0 or spans[-1][1] != size or any(a[1] != b[0] for a, b in zip(spans, spans[1:])):
            _refuse(f"the placement's cores do not hold the {size} neurons of {name} once each; place this network")
    out = []
    for core in placement.cores:
        if core.chip != 0:
            _refuse(f"core {core.index} is on chip {core.chip}; SANA-FE's Loihi file describes one chip")
        if not (0 <= core.row < height and 0 <= core.col < width and 0 <= core.slot < per_tile):
            _refuse(f"core {core.index} (tile row {core.row}, col {core.col}, slot {core.slot}) is outside SANA-FE's "
                    f"mesh of {width} x {height} tiles of {per_tile} cores")
        out.append((core.col * height + core.row, core.slot))
    if len(set(out)) != len(out):
        _refuse("two placement cores share one SANA-FE core")
    return out


def build(net: LoihiNetwork, placement: Any, levels: np.ndarray,
          arch: str | os.PathLike | None = None) -> tuple[Any, Any, dict[str, Any]]:
    """The SANA-FE network and loaded chip for ``net`` on ``placement``, ``levels`` (per input neuron, see
    :func:`spike_levels`) folded into the input's weights; with the mapping and the synapses built (an input neuron
    that never sends gets none)."""
    for layer in net.layers:
        _check_layer(layer)
    input_units = max((c.neurons for c in placement.cores if c.layer == INPUT), default=1)
    arch, width, height = _architecture(arch, input_units)
    tiles = arch.tiles
    per_tile = min(len(tile.cores) for tile in tiles)
    if len(tiles) != width * height:
        _refuse(f"the architecture has {len(tiles)} tiles, not its mesh's {width} x {height}")
    where = _mapping(net, placement, width, height, per_tile)
    chip = sanafe.SpikingChip(arch)
    n_input = int(math.prod(net.input_shape))
    snn = sanafe.Network()
    groups = {INPUT: snn.create_neuron_group(INPUT, n_input, log_spikes=True)}
    for layer in net.layers:
        attributes = {"threshold": int(layer.vth), "leak_decay": (4096 - layer.dv) / 4096, "input_decay": 0.0,
                      "reset_mode": "soft" if layer.reset == "subtract" else "hard", "reset": 0.0}
        groups[layer.name] = snn.create_neuron_group(layer.name, layer.size, model_attributes=attributes,
                                                     soma_hw_name=LIF_HW, log_spikes=True,
                                                     log_potential=layer is net.readout)
        for neuron, b in zip(groups[layer.name], _bias(layer)):
            if b:
                neuron.set_attributes(model_attributes={"bias": b})
    cores = {key: tiles[key[0]].cores[key[1]] for key in set(where)}
    for core, key in zip(placement.cores, where):
        group = groups[core.layer]
        for i in range(core.start, core.stop):
            neuron = group[i]
            if core.layer == INPUT:
                neuron.set_attributes(soma_hw_name=INPUT_HW.format(i - core.start))
            neuron.map_to_core(cores[key])
    counts = {"synapses": {kind: 0 for kind in SYNAPSE_HW}}
    unit = {name: "" for name in groups}   # each group's default synapse unit (SANA-FE's default: the core's first)
    for layer in net.layers:
        dest = groups[layer.name]
        for conn in layer.connections:
            src, dst, w = synapses(conn, layer)
            if conn.source == INPUT:
                w = w * levels[src]
                keep = w != 0
                src, dst, w = src[keep], dst[keep], w[keep]
            if not len(src):
                continue
            if unit[layer.name] != SYNAPSE_HW[conn.kind]:   # a connection takes its destination's unit, when made
                unit[layer.name] = SYNAPSE_HW[conn.kind]
                for neuron in dest:
                    neuron.set_attributes(default_synapse_hw_name=unit[layer.name])
            groups[conn.source].connect_neurons_sparse(dest, {"weight": w.astype(np.int64).tolist()},
                                                       list(zip(src.tolist(), dst.tolist())))
            counts["synapses"][conn.kind] += int(len(src))
    chip.load(snn)
    info = {"cores": [{"core": c.index, "layer": c.layer, "tile": t, "core_offset": s, "x": t // height,
                       "y": t % height} for c, (t, s) in zip(placement.cores, where)],
            "mapped_tiles": len({t for t, _ in where}), "mapped_cores": len(where), "mesh": (width, height),
            **counts}
    return snn, chip, info


def _trains(trace: list, sizes: dict[str, int], steps: int) -> dict[str, np.ndarray]:
    out = {name: np.zeros((steps, n), dtype=np.uint8) for name, n in sizes.items()}
    for t, fired in enumerate(trace[:steps]):
        for address in fired:
            out[address.group_name][t, address.neuron_offset] = 1
    return out


def run_sanafe(net: LoihiNetwork, placement: Any, q: torch.Tensor, timesteps: int | None = None, *,
               timing_model: str = "simple", arch: str | os.PathLike | None = None) -> dict[str, Any]:
    """Run every sample of ``q`` (int ``[T, B, *input_shape]``, spikes of one level per input neuron) in SANA-FE.

    ``timesteps``: steps to simulate (default ``T``; beyond ``T`` the input is silent). ``timing_model``:
    SANA-FE's ``"simple"`` (per core the larger of its neuron and message processing, the slowest core,
    plus the time-step barrier; hop latency not counted) or ``"detailed"`` (its NoC scheduler; the API's
    default). ``arch``: a SANA-FE architecture file (default: sanafe's ``loihi.yaml``). Each sample
    starts from a reset chip. Returns per sample and per inference (mean over samples) ``energy`` by
    component (joules; per step in ``energy_per_step``), ``sim_time`` (seconds; per step in
    ``sim_time_per_step``) and SANA-FE's counts
    (:data:`COUNTS`, see the module docstring), with ``spike_trains[name]`` uint8 ``[timesteps, B, N]``
    (``"input"`` included) and the readout's ``membrane`` (int64, our units: SANA-FE's potential x 64).
    """
    if timing_model not in TIMING_MODELS:
        _refuse(f"timing model {timing_model!r}; choose one of {', '.join(TIMING_MODELS)}")
    if q.dim() < 3 or tuple(q.shape[2:]) != tuple(net.input_shape) or q.is_floating_point():
        _refuse(f"q must be integer [T, B, *{tuple(net.input_shape)}], got {q.dtype} {tuple(q.shape)}")
    steps_in, batch = int(q.shape[0]), int(q.shape[1])
    steps = steps_in if timesteps is None else int(timesteps)
    if steps < 1:
        _refuse(f"timesteps must be at least 1, got {steps}")
    levels = spike_levels(q)
    network, chip, info = build(net, placement, levels, arch)   # the network stays alive while the chip runs
    flat = (q.detach().cpu().reshape(steps_in, batch, -1) != 0).numpy()
    sizes = {INPUT: flat.shape[2], **{layer.name: layer.size for layer in net.layers}}
    readout = net.readout
    inputs = chip.mapped_neuron_groups[INPUT]
    samples, trains, membrane = [], {name: [] for name in sizes}, []
    for b in range(batch):
        chip.reset()
        for i, neuron in enumerate(inputs):
            neuron.set_attributes(model_attributes={"spikes": [bool(s) for s in flat[:steps, b, i]]})
        with contextlib.redirect_stdout(io.StringIO()):   # SANA-FE prints its progress
            run = chip.sim(steps, timing_model=timing_model, processing_threads=1, spike_trace=True,
                           perf_trace=True, potential_trace=readout is not None)
        perf = run["perf_trace"]
        samples.append({"energy": {k: float(run["energy"][k]) for k in ENERGY}, "sim_time": float(run["sim_time"]),
                        "sim_time_per_step": [float(x) for x in perf["sim_time"]],
                        "energy_per_step": {k: [float(x) for x in perf[f"{k}_energy"]] for k in ENERGY},
                        "spikes": int(run["spikes"]), "packets_sent": int(run["packets_sent"]),
                        "neurons_updated": int(run["neurons_updated"]), "neurons_fired": int(run["neurons_fired"]),
                        "hops": int(sum(perf["hops"])), "timesteps": int(run["timesteps_executed"])})
        for name, train in _trains(run["spike_trace"], sizes, steps).items():
            trains[name].append(train)
        if readout is not None:
            membrane.append(np.rint(np.asarray(run["potential_trace"], dtype=np.float64) * 64).astype(np.int64))
    total = {"energy": {k: sum(s["energy"][k] for s in samples) for k in ENERGY},
             "sim_time": sum(s["sim_time"] for s in samples), **{k: sum(s[k] for s in samples) for k in COUNTS}}
    mean = {"energy": {k: v / batch for k, v in total["energy"].items()}, "sim_time": total["sim_time"] / batch,
            "sim_time_per_step": (np.mean([s["sim_time_per_step"] for s in samples], axis=0).tolist()),
            **{k: total[k] / batch for k in COUNTS}}
    out = {"timing_model": timing_model, "timesteps": steps, "samples": batch, "input_levels": levels,
           "per_sample": samples, "total": total, "per_inference": mean,
           "energy": mean["energy"], "sim_time": mean["sim_time"],
           "spike_trains": {name: np.stack(t, axis=1) for name, t in trains.items()},
           "mapping": info}
    if readout is not None:
        out["membrane"] = {readout.name: np.stack(membrane, axis=1)}
    return out
