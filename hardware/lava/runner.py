"""Run an exported network in Lava. This script runs INSIDE ``.venv-lava`` (Python 3.10, lava-nc 0.10.0).

    python runner.py --net NET.net --input IN.npy --out RESULT.npz [--mode stream|single]
                     [--steps-per-sample T] [--cfg sim|hw]

It imports nothing from spikeforge (torch is not installed here). It reads the netx HDF5 file
written by :mod:`hardware.lava.netx_export` and builds real Lava processes: a ``RingBuffer``
input source sending 8-bit graded spikes, one ``Dense``, ``DelayDense`` (a skip path
delayed to meet a longer one) or ``Conv`` per connection (several may feed one LIF: Lava
adds them), one LIF per population, a ``RingBuffer`` sink per population and a ``Monitor``
on the readout's ``v``. A layer compiled with reset "subtract" is a LIF run by a model that
subtracts the threshold on a spike (:func:`_subtractive_models`, given to the run
configuration's ``exception_proc_model_map``). A layer that starts charged gets a second ``RingBuffer`` sending its
charge (a graded spike through a ``Dense`` of ones) so that it arrives with the layer's first
input of every sample.
It runs them with ``Loihi2SimCfg(select_tag="fixed_pt")`` (``--cfg hw``: ``Loihi2HwCfg``,
which needs lava-loihi).

``--mode single``: input ``[T, *input_shape]``, one continuous run of T steps from rest.
``--mode stream``: input ``[S, T, *input_shape]``; the S samples are played back to back
(S*T + D steps for a network of depth D) and a layer at depth d (steps from the input along
its longest path, one per connection) is reset to rest at every step with
``time_step % T == (d + 1) % T`` (``LIFReset``): exactly when its first input of a sample
arrives. The result holds, per layer, the spikes of each sample's window ``[S, T, N]``. A
network with recurrent layers gets one silent step after each sample (period P = T + 1): a
recurrent layer is sent an inhibiting charge ``-gap_charge`` for its gap step, large enough
that it cannot fire there, so no spike of one sample reaches the next through its recurrent
synapses (the compiler bounds the charge; :mod:`hardware.lava.compile`).

The result file (``.npz``, written atomically) holds ``spikes/<name>`` ([T, N] or
[S, T, N], neurons in torch order C, H, W), ``membrane/<name>`` for the readout, and
``counts`` (JSON: spikes per layer). Exit status 0 on success; 2 with one line on stderr
naming the cause otherwise.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import os
import sys
import tempfile

import h5py
import numpy as np


class RunnerError(Exception):
    pass


def _read(path: str) -> tuple[dict, list[dict]]:
    try:
        with h5py.File(path, "r") as f:
            meta = json.loads(f["spikeforge"].attrs["meta"])
            table = f["layer"] if "layer" in f else f["spikeforge"]["layer"]
            layers, k = [], 0
            for key in sorted(table.keys(), key=int):
                g = table[key]
                kind = g["type"][()].decode() if isinstance(g["type"][()], bytes) else str(g["type"][()])
                if kind not in ("conv", "dense", "dense_rec"):
                    continue
                spec = dict(meta["layers"][k])
                spec["weight"] = np.asarray(g["weight"][()], dtype=np.int64)
                spec["bias"] = np.asarray(f["spikeforge"][f"bias_{k}"][()], dtype=np.int64)
                n = g["neuron"]
                spec.update(du=int(n["iDecay"][()]) - 1, dv=int(n["vDecay"][()]), vth=int(n["vThMant"][()]))
                conns = spec.get("connections") or [{"source": "input" if k == 0 else layers[-1]["name"],
                                                     "kind": spec["kind"], "in_shape": spec["in_shape"], "delay": 0,
                                                     "graded": spec["graded_input"], "weight_exp": spec["weight_exp"],
                                                     "stride": spec["stride"], "padding": spec["padding"],
                                                     "dilation": spec["dilation"], "groups": spec["groups"]}]
                conns = [dict(c) for c in conns]
                conns[0]["weight"] = spec["weight"]
                for j, c in enumerate(conns[1:], start=1):
                    c["weight"] = np.asarray(f["spikeforge"][f"weight_{k}_{j}"][()], dtype=np.int64)
                spec["connections"] = conns
                spec.setdefault("depth", k + 1)
                spec.setdefault("v_init_mant", 0)
                layers.append(spec)
                k += 1
    except (OSError, KeyError, ValueError) as error:
        raise RunnerError(f"{path} is not a spikeforge netx file ({error}); export it with hardware.lava.netx_export"
                          ) from error
    return meta, layers


def _whc(shape: list[int]) -> tuple[int, ...]:
    return tuple(shape[::-1])


def _adapt(port, whc: bool, shape: list[int], kind: str):
    """The source port as the connection reads it: (W, H, C) for a Conv, flat torch order for a Dense."""
    if kind == "conv":
        return port if whc else port.reshape(tuple(shape)).transpose([2, 1, 0])
    return port.transpose([2, 1, 0]).flatten() if whc else port


def _whc_rows(weight: np.ndarray, shape: list[int]) -> np.ndarray:
    """Dense rows in torch (C, H, W) order -> (W, H, C) order, for a population Lava lays out as WHC."""
    c, h, w = shape
    return weight.reshape(c, h, w, -1).transpose(2, 1, 0, 3).reshape(c * h * w, -1)


def _connection(c: dict, whc_target: bool, shape: list[int]):
    """One Lava connection process (``Conv``, ``Dense`` or ``DelayDense``) and its output port."""
    from lava.proc.conv.process import Conv
    from lava.proc.dense.process import DelayDense, Dense

    graded = int(c.get("message_bits") or (8 if c["graded"] else 0))
    if c["kind"] == "conv":
        w = c["weight"][:, :, ::-1, ::-1].transpose(0, 3, 2, 1)
        conn = Conv(weight=np.ascontiguousarray(w).astype(np.int32), input_shape=_whc(c["in_shape"]),
                    padding=tuple(c["padding"][::-1]), stride=tuple(c["stride"][::-1]),
                    dilation=tuple(c["dilation"][::-1]), groups=c["groups"], num_message_bits=graded)
        return conn, conn.a_out
    weight = _whc_rows(c["weight"], shape) if whc_target else c["weight"]
    common = dict(weights=np.ascontiguousarray(weight).astype(np.int32), num_message_bits=graded,
                  weight_exp=int(c["weight_exp"]))
    conn = DelayDense(delays=int(c["delay"]), **common) if c["delay"] else Dense(**common)
    return conn, (conn.a_out.reshape(_whc(shape)) if whc_target else conn.a_out)


def _wire(connections: list[dict], ports: dict, whc: bool, shape: list[int], a_in) -> list:
    """One connection process per entry, from its source's port (``ports``: name -> (port, whc, shape))
    into the population's ``a_in``; returns the processes."""
    made = []
    for c in connections:
        port, port_whc, port_shape = ports[c["source"]]
        conn, out = _connection(c, whc, shape)
        _adapt(port, port_whc, port_shape, c["kind"]).connect(conn.s_in)
        out.connect(a_in)
        made.append(conn)
    return made


def _charge_times(spec: dict, steps: int, period: int | None, samples: int | None, offset: int = 0) -> list[int]:
    """Source steps at which a layer is sent a charge ``offset`` steps into each window (it arrives one
    step later): its starting charge (offset 0) or, for a recurrent layer, the inhibition of the gap
    step after each window (offset T)."""
    first = spec["depth"] - 1 + offset
    starts = [first] if period is None else [k * period + first for k in range(samples)]
    return [t for t in starts if t < steps]


@functools.cache
def _subtractive_models() -> dict:
    """Lava's bit-accurate LIF models that reset by subtraction, ``v -= vth << 6`` where a neuron
    spiked (``PyLifModelBitAcc`` / ``PyLifResetModelBitAcc`` with ``reset_voltage`` replaced; every
    other step unchanged), by the process class they run."""
    from lava.proc.lif.models import PyLifModelBitAcc, PyLifResetModelBitAcc
    from lava.proc.lif.process import LIF, LIFReset

    class PySubtractiveLifModel(PyLifModelBitAcc):
        def reset_voltage(self, spike_vector: np.ndarray) -> None:
            self.v[spike_vector] -= self.effective_vth

    class PySubtractiveLifResetModel(PyLifResetModelBitAcc):
        def reset_voltage(self, spike_vector: np.ndarray) -> None:
            self.v[spike_vector] -= self.effective_vth

    return {LIF: PySubtractiveLifModel, LIFReset: PySubtractiveLifResetModel}


def _build(meta: dict, layers: list[dict], data: np.ndarray, steps: int, period: int | None,
           samples: int | None = None, window: int | None = None):
    from lava.proc.dense.process import Dense
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source
    from lava.proc.lif.process import LIF, LIFReset
    from lava.proc.monitor.process import Monitor

    subtractive = {}   # LIF process -> its subtractive model (the run configuration's exception map)

    in_shape = meta["input_shape"]
    input_whc = len(in_shape) == 3 and any(c["kind"] == "conv" for spec in layers for c in spec["connections"]
                                           if c["source"] == "input")
    if input_whc:   # Lava's Conv reads (W, H, C)
        src_data = data.reshape(steps, *in_shape).transpose(3, 2, 1, 0)
    else:
        src_data = data.reshape(steps, -1).T
    source = Source(data=np.ascontiguousarray(src_data).astype(np.int32))
    ports = {"input": (source.s_out, input_whc, in_shape)}
    procs, sinks, monitor, monitor_target = [source], {}, None, None
    for spec in layers:
        shape = spec["shape"]
        whc = spec["kind"] == "conv"
        lif_shape = _whc(shape) if whc else (int(np.prod(shape)),)
        bias = spec["bias"].reshape(shape).transpose(2, 1, 0) if whc else spec["bias"]
        common = dict(shape=lif_shape, du=spec["du"], dv=spec["dv"], vth=spec["vth"], bias_mant=bias.astype(np.int32),
                      bias_exp=6)
        if period is None:
            lif = LIF(**common)
        else:
            lif = LIFReset(**common, reset_interval=period, reset_offset=(spec["depth"] + 1) % period)
        if spec.get("reset", "zero") == "subtract":
            subtractive[lif] = _subtractive_models()[type(lif)]
        ports[spec["name"]] = (lif.s_out, whc, shape)   # before its connections: a recurrent layer reads itself
        procs += _wire(spec["connections"], ports, whc, shape, lif.a_in)
        gap = spec.get("gap_charge", 0) if period is not None else 0
        if spec["v_init_mant"] or gap:
            charge = np.zeros((1, steps), dtype=np.int32)
            charge[0, _charge_times(spec, steps, period, samples)] = spec["v_init_mant"]
            if gap:
                charge[0, _charge_times(spec, steps, period, samples, window)] = -gap
            charger = Source(data=charge)
            feed = Dense(weights=np.ones((int(np.prod(shape)), 1), dtype=np.int32), num_message_bits=24)
            charger.s_out.connect(feed.s_in)
            (feed.a_out.reshape(lif_shape) if whc else feed.a_out).connect(lif.a_in)
            procs += [charger, feed]
        sink = Sink(shape=lif_shape, buffer=steps)
        lif.s_out.connect(sink.a_in)
        sinks[spec["name"]] = (sink, spec)
        if spec["readout"]:
            monitor = Monitor()
            monitor.probe(lif.v, steps)
            monitor_target = (lif, spec)
        procs.append(lif)
    return procs, sinks, (monitor, monitor_target) if monitor is not None else None, subtractive


def _read_sdn(path: str) -> tuple[dict, list[dict]] | None:
    """A sigma-delta file's meta and layers (weights and biases attached), or None for a LIF file."""
    try:
        with h5py.File(path, "r") as f:
            meta = json.loads(f["spikeforge"].attrs["meta"])
            if meta.get("format") != "spikeforge.loihi.sdn":
                return None
            layers = []
            for k, spec in enumerate(meta["layers"]):
                spec = dict(spec, bias=np.asarray(f["spikeforge"][f"bias_{k}"][()], dtype=np.int64))
                spec["connections"] = [dict(c, message_bits=meta["message_bits"],
                                            weight=np.asarray(f["spikeforge"][f"weight_{k}_{j}"][()], dtype=np.int64))
                                       for j, c in enumerate(spec["connections"])]
                layers.append(spec)
    except (OSError, KeyError, ValueError) as error:
        raise RunnerError(f"{path} is not a spikeforge Loihi file ({error}); export it with hardware.lava.netx_export"
                          ) from error
    return meta, layers


def _build_sdn(meta: dict, layers: list[dict], data: np.ndarray, steps: int):
    """Sigma-delta processes: RingBuffer -> Delta encoder -> (Dense | Conv -> SigmaDelta) per layer, a sink on
    every encoder and neuron (graded messages) and a Monitor on the readout's ``act``."""
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source
    from lava.proc.monitor.process import Monitor
    from lava.proc.sdn.process import ActivationMode, Delta, SigmaDelta

    in_shape = meta["input_shape"]
    input_whc = len(in_shape) == 3 and layers[0]["kind"] == "conv"
    if input_whc:
        src_data = data.reshape(steps, *in_shape).transpose(3, 2, 1, 0)
    else:
        src_data = data.reshape(steps, -1).T
    source = Source(data=np.ascontiguousarray(src_data).astype(np.int32))
    in_lava_shape = _whc(in_shape) if input_whc else (int(np.prod(in_shape)),)
    encoder = Delta(shape=in_lava_shape, vth=int(meta["input_vth"]), spike_exp=0, state_exp=0)
    source.s_out.connect(encoder.a_in)
    ports = {"input": (encoder.s_out, input_whc, in_shape)}
    sinks = {"input": (Sink(shape=in_lava_shape, buffer=steps), {"kind": "conv" if input_whc else "dense"})}
    encoder.s_out.connect(sinks["input"][0].a_in)
    procs, probe = [source, encoder], None
    for spec in layers:
        shape = spec["shape"]
        whc = spec["kind"] == "conv"
        lava_shape = _whc(shape) if whc else (int(np.prod(shape)),)
        bias = spec["bias"].reshape(shape).transpose(2, 1, 0) if whc else spec["bias"]
        neuron = SigmaDelta(shape=lava_shape, vth=int(spec["vth"]), bias=np.ascontiguousarray(bias).astype(np.int32),
                            act_mode=ActivationMode.RELU if spec["relu"] else ActivationMode.UNIT,
                            spike_exp=0, state_exp=int(spec["state_exp"]))
        procs += _wire(spec["connections"], ports, whc, shape, neuron.a_in)
        ports[spec["name"]] = (neuron.s_out, whc, shape)
        sink = Sink(shape=lava_shape, buffer=steps)
        neuron.s_out.connect(sink.a_in)
        sinks[spec["name"]] = (sink, spec)
        if spec["readout"]:
            monitor = Monitor()
            monitor.probe(neuron.act, steps)
            probe = (monitor, neuron, spec)
        procs.append(neuron)
    return procs, sinks, probe


def run_sdn(meta: dict, layers: list[dict], data: np.ndarray, out_path: str, cfg: str) -> None:
    """One continuous run of a sigma-delta network over the frames ``data`` ``[steps, *input_shape]``."""
    from lava.magma.core.run_conditions import RunSteps

    if tuple(data.shape[1:]) != tuple(meta["input_shape"]):
        raise RunnerError(f"input feature shape {data.shape[1:]} does not match the network's {meta['input_shape']}")
    steps = data.shape[0]
    if cfg == "hw":
        _run_config(cfg, {})
    procs, sinks, (monitor, neuron, spec) = _build_sdn(meta, layers, data, steps)
    anchor = procs[-1]
    try:
        anchor.run(condition=RunSteps(num_steps=steps), run_cfg=_run_config(cfg, {}))
        result = {f"spikes/{name}": _torch_order(np.asarray(sink.data.get()), s).astype(np.int64)
                  for name, (sink, s) in sinks.items()}
        got = monitor.get_data()
        act = np.asarray(next(iter(got.values()))["act"])
        act = _torch_order(act.T.reshape(*neuron.act.shape, steps), spec)
        result[f"membrane/{spec['name']}"] = act.astype(np.int64)
    finally:
        anchor.stop()
    counts = {name[len("spikes/"):]: int((s != 0).sum()) for name, s in result.items() if name.startswith("spikes/")}
    result["counts"] = np.array(json.dumps(counts))
    _write_result(result, out_path)


def _write_result(result: dict, out_path: str) -> None:
    directory = os.path.dirname(os.path.abspath(out_path))
    fd, tmp = tempfile.mkstemp(prefix=".result.", suffix=".npz", dir=directory)
    os.close(fd)
    try:
        with open(tmp, "wb") as handle:
            np.savez(handle, **result)
        os.replace(tmp, out_path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _torch_order(raw: np.ndarray, spec: dict) -> np.ndarray:
    """Sink data (``lif_shape + (steps,)``) -> ``[steps, N]`` in torch (C, H, W) order."""
    if spec["kind"] == "conv":
        return raw.transpose(3, 2, 1, 0).reshape(raw.shape[-1], -1)
    return raw.T


def _run_config(cfg: str, subtractive: dict):
    from lava.magma.core.run_configs import Loihi2HwCfg, Loihi2SimCfg
    if cfg == "sim":
        return Loihi2SimCfg(select_tag="fixed_pt", exception_proc_model_map=subtractive)
    if importlib.util.find_spec("lava.magma.compiler.subcompilers.nc") is None:
        raise RunnerError("--cfg hw needs lava-loihi (Intel's Loihi 2 extension, available to INRC members), which "
                          "is not installed in this Lava environment; install it on the Loihi host or use --cfg sim")
    return Loihi2HwCfg()


def run(net_path: str, input_path: str, out_path: str, mode: str, steps_per_sample: int | None, cfg: str) -> None:
    from lava.magma.core.run_conditions import RunSteps

    data = np.load(input_path)
    sdn = _read_sdn(net_path)
    if sdn is not None:
        if mode != "single":
            raise RunnerError("a sigma-delta network runs continuously (its neurons have no reset); use --mode single")
        run_sdn(*sdn, data, out_path, cfg)
        return
    meta, layers = _read(net_path)
    if mode == "single":
        steps, period, depth, samples, window = data.shape[0], None, 0, None, None
    else:
        if data.ndim < 2 or not steps_per_sample or data.shape[1] != steps_per_sample:
            raise RunnerError(f"stream input must be [S, T, ...] with T = --steps-per-sample, got {data.shape}")
        samples, depth = data.shape[0], max(spec["depth"] for spec in layers)
        gap = int(any(spec.get("gap_charge", 0) for spec in layers))   # one silent step between samples
        data = np.concatenate([data, np.zeros((samples, gap, *data.shape[2:]), data.dtype)], axis=1)
        data = np.concatenate([data.reshape(-1, *data.shape[2:]), np.zeros((depth, *data.shape[2:]), data.dtype)])
        steps, window, period = data.shape[0], steps_per_sample, steps_per_sample + gap
    if tuple(data.shape[1:]) != tuple(meta["input_shape"]):
        raise RunnerError(f"input feature shape {data.shape[1:]} does not match the network's {meta['input_shape']}")
    if cfg == "hw":   # refused before anything is built
        if any(spec.get("reset", "zero") == "subtract" for spec in layers):
            raise RunnerError("the network keeps a subtract reset, which runs here as a Python process model of "
                              "Lava's simulator; Loihi 2 needs it as a microcode neuron; deploy with --reset zero "
                              "for --cfg hw")
        _run_config(cfg, {})
    procs, sinks, probe, subtractive = _build(meta, layers, data, steps, period, samples, window)
    run_cfg = _run_config(cfg, subtractive)
    anchor = procs[-1]
    try:
        anchor.run(condition=RunSteps(num_steps=steps), run_cfg=run_cfg)
        raw = {name: _torch_order(np.asarray(sink.data.get()), spec) for name, (sink, spec) in sinks.items()}
        membrane = {}
        if probe is not None:
            monitor, (lif, spec) = probe
            got = monitor.get_data()
            v = np.asarray(next(iter(got.values()))["v"])
            membrane[spec["name"]] = _torch_order(v.T.reshape(*lif.v.shape, steps), spec)
    finally:
        anchor.stop()
    result: dict[str, np.ndarray] = {}
    depth = {spec["name"]: spec["depth"] for spec in layers}
    for name, s in raw.items():
        if samples is not None:     # window of sample k for a layer at depth d starts at k*P + d
            d = depth[name]
            s = np.stack([s[k * period + d: k * period + d + window] for k in range(samples)])
        result[f"spikes/{name}"] = s.astype(np.uint8)
    for name, v in membrane.items():
        if samples is not None:
            d = depth[name]
            v = np.stack([v[k * period + d: k * period + d + window] for k in range(samples)])
        result[f"membrane/{name}"] = v.astype(np.int64)
    counts = {name[len("spikes/"):]: int(s.sum()) for name, s in result.items() if name.startswith("spikes/")}
    result["counts"] = np.array(json.dumps(counts))
    _write_result(result, out_path)


def netx_check(net_path: str) -> str:
    """Load the file with lava-dl's own reader ``lava.lib.dl.netx.hdf5.Network`` and return its layer table.

    lava-dl 0.6.0's netx package imports torch in two places that the HDF5 reader does not
    need: ``netx/__init__.py`` (its PyTorch ``sequential_modules``) and
    ``lava.lib.dl.slayer`` (only for resonate-and-fire neurons). torch is deliberately absent
    here (lava-dl pins a multi-GB CUDA build), so without torch the package is entered
    without its ``__init__`` and the slayer import is a stub that refuses RF neurons.
    ``netx/hdf5.py`` itself then runs unchanged.
    """
    import types
    if importlib.util.find_spec("torch") is None:
        spec = importlib.util.find_spec("lava.lib.dl")
        if spec is None or not spec.submodule_search_locations:
            raise RunnerError("lava-dl is not installed in this Lava environment; re-run 'make lava-env'")
        netx = types.ModuleType("lava.lib.dl.netx")
        netx.__path__ = [os.path.join(list(spec.submodule_search_locations)[0], "netx")]
        sys.modules.setdefault("lava.lib.dl.netx", netx)
        def refuse(*_args, **_kwargs):
            raise RunnerError("RF neurons need lava-dl's slayer (torch)")
        for name in ("lava.lib.dl.slayer", "lava.lib.dl.slayer.neuron"):
            sys.modules.setdefault(name, types.ModuleType(name))
        rf = types.ModuleType("lava.lib.dl.slayer.neuron.rf")
        rf.neuron_params = refuse
        sys.modules.setdefault("lava.lib.dl.slayer.neuron.rf", rf)
    from lava.lib.dl.netx import hdf5
    net = hdf5.Network(net_config=net_path)
    return str(net)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--net", required=True)
    parser.add_argument("--input")
    parser.add_argument("--out")
    parser.add_argument("--mode", choices=("single", "stream"), default="single")
    parser.add_argument("--steps-per-sample", type=int, default=None)
    parser.add_argument("--cfg", choices=("sim", "hw"), default="sim")
    parser.add_argument("--netx-check", action="store_true", help="only load the file with lava-dl's netx reader")
    args = parser.parse_args(argv)
    try:
        if args.netx_check:
            print(netx_check(args.net))
            return 0
        if not args.input or not args.out:
            raise RunnerError("--input and --out are required")
        run(args.net, args.input, args.out, args.mode, args.steps_per_sample, args.cfg)
    except RunnerError as error:
        print(f"lava runner: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
