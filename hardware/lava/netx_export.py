"""Write a compiled network as a lava-dl netx HDF5 file (``lava.lib.dl.netx.hdf5.Network`` reads it).

Layout (netx's, as read by lava-dl 0.6.0 ``netx/hdf5.py``)::

    layer/0            type "input", shape [C, H, W] (netx reverses it to Lava's WHC)
    layer/k            type "conv":  weight [C_out, C_in/g, kh, kw] (torch layout; netx flips and
                                     transposes it to Lava's [C_out, W, H, C_in]), stride, padding,
                                     dilation, groups, kernelSize, inChannels, outChannels, shape
                       type "flatten" (between a conv population and a dense layer)
                       type "dense": weight [n_out, n_in], shape [n_out]
                       type "dense_rec": a recurrent layer, also weight_rec [n_out, n_out]
                       each with bias (13-bit mantissa; netx uses bias_exp = 6) and neuron
                       {type "CUBA", iDecay = du + 1, vDecay = dv, vThMant = vth, refDelay 1,
                        gradedSpike False}
    spikeforge         our extras (attributes): format, input_levels, names, readout flags,
                       per-layer scales; netx ignores it. The runner reads everything from here
                       and ``layer/*``.

What netx (lava-dl 0.6.0) describes: a chain of input, conv, flatten, dense and dense_rec
(recurrent) layers of zero-reset CUBA neurons starting at rest, or of sigma-delta neurons
with ``state_exp = 6`` everywhere. It has no addition block (a residual sum), and its
``pool``, ``average`` and ``concat`` layer types raise NotImplementedError; it has no initial
charge, no subtract reset, no per-layer ``state_exp`` and no bias on a ``Sigma`` readout.
A network netx cannot describe (a graph with residual or skip connections, a layer that
starts charged or resets by subtraction: ``LoihiNetwork.netx_compatible`` is false; every
sigma-delta network of :func:`export_sdn`) is written with the same table
under ``spikeforge/layer`` instead of ``layer`` (format ``spikeforge.loihi.graph``), so that
netx refuses it rather than run a different network; the spikeforge group then also lists
every layer's connections (source, kind, synaptic delay) with the extra ones' weights as
``weight_<layer>_<j>``, its depth and its one-time charge ``v_init_mant``.

Weights are the integers Lava's synapse holds (mixed sign: even values in [-256, 254]), so
netx's ``optimize_weight_bits`` represents them exactly. Written atomically.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from hardware.lava.compile import LoihiConnection, LoihiNetwork
from snn.errors import SpikeforgeError
from snn.fileio import atomic_path

FORMAT = "spikeforge.loihi.netx"
GRAPH_FORMAT = "spikeforge.loihi.graph"


def _connection_meta(c: LoihiConnection) -> dict:
    return {"source": c.source, "kind": c.kind, "in_shape": list(c.in_shape), "delay": c.delay, "graded": c.graded,
            "weight_exp": c.weight_exp, "stride": list(c.stride), "padding": list(c.padding),
            "dilation": list(c.dilation), "groups": c.groups}


def export_netx(net: LoihiNetwork, path: str | Path) -> Path:
    """Write ``net`` to ``path`` (``.net``); returns the path."""
    netx = net.netx_compatible
    entries: list[dict] = [{"type": "input", "shape": np.array(net.input_shape, dtype=np.int64)}]
    prev_conv = len(net.input_shape) == 3
    for layer in net.layers:
        neuron = {"type": "CUBA", "iDecay": layer.du + 1, "vDecay": layer.dv, "vThMant": layer.vth,
                  "refDelay": 1, "gradedSpike": False}
        entry: dict = {"neuron": neuron, "bias": layer.bias_mant.astype(np.int64),
                       "weight": layer.weight.astype(np.int64)}
        if layer.kind == "conv":
            if netx and not prev_conv:
                raise SpikeforgeError(f"layer {layer.name}: a convolution after a dense layer needs a reshape that "
                                      "netx cannot express; restructure the network")
            c_out, c_in, kh, kw = layer.weight.shape
            entry.update(type="conv", shape=np.array(layer.shape, dtype=np.int64), stride=np.array(layer.stride[::-1]),
                         padding=np.array(layer.padding[::-1]), dilation=np.array(layer.dilation[::-1]),
                         groups=layer.groups, kernelSize=np.array([kw, kh]), inChannels=c_in * layer.groups,
                         outChannels=c_out)
            entry["bias"] = layer.bias_mant.reshape(layer.shape)[:, 0, 0].astype(np.int64)
        else:
            if prev_conv:
                entries.append({"type": "flatten"})
            entry.update(type="dense", shape=np.array([layer.size], dtype=np.int64))
            if netx and layer.recurrent:   # netx's recurrent Dense block
                entry.update(type="dense_rec", weight_rec=layer.connections[1].weight.astype(np.int64))
        entries.append(entry)
        prev_conv = layer.kind == "conv"
    meta = {"format": FORMAT if netx else GRAPH_FORMAT, "input_levels": net.input_levels,
            "input_shape": list(net.input_shape), "depth": net.depth,
            "layers": [{"name": layer.name, "kind": layer.kind, "shape": list(layer.shape),
                        "in_shape": list(layer.in_shape), "readout": layer.readout, "scale": layer.scale,
                        "weight_exp": layer.weight_exp, "graded_input": layer.graded_input,
                        "stride": list(layer.stride), "padding": list(layer.padding),
                        "dilation": list(layer.dilation), "groups": layer.groups, "depth": layer.depth,
                        "v_init_mant": layer.v_init_mant, "reset": layer.reset, "gap_charge": layer.gap_charge,
                        "connections": [_connection_meta(c) for c in layer.connections]}
                       for layer in net.layers]}
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            extra = f.create_group("spikeforge")
            group = (f if netx else extra).create_group("layer")
            for index, entry in enumerate(entries):
                g = group.create_group(str(index))
                for key, value in entry.items():
                    if key == "neuron":
                        n = g.create_group("neuron")
                        for nk, nv in value.items():
                            n.create_dataset(nk, data=nv)
                    else:
                        g.create_dataset(key, data=value)
            extra.attrs["meta"] = json.dumps(meta)
            for index, layer in enumerate(net.layers):
                extra.create_dataset(f"bias_{index}", data=layer.bias_mant.astype(np.int64))
                for j, c in enumerate(layer.connections[1:], start=1):
                    extra.create_dataset(f"weight_{index}_{j}", data=c.weight.astype(np.int64))
    return Path(path)


SDN_FORMAT = "spikeforge.loihi.sdn"


def export_sdn(net, path: str | Path) -> Path:
    """Write a :class:`~hardware.lava.sdn_compile.SigmaDeltaNetwork` to ``path`` (format ``spikeforge.loihi.sdn``).

    Everything is under the ``spikeforge`` group (netx cannot describe it: its SDNN blocks fix
    ``state_exp = 6`` for every layer and read the output as a ``Sigma`` without a bias, where
    this network chooses ``state_exp`` per layer and its readout has one): the meta JSON
    (per layer: name, shape, relu, vth, state_exp, depth, connections), ``bias_<k>`` and
    ``weight_<k>_<j>`` for connection j of layer k. Written atomically.
    """
    meta = {"format": SDN_FORMAT, "input_levels": net.input_levels, "input_shape": list(net.input_shape),
            "input_vth": net.input_vth, "message_bits": net.message_bits, "depth": net.depth,
            "layers": [{"name": layer.name, "kind": layer.kind, "shape": list(layer.shape), "relu": layer.relu,
                        "readout": index == len(net.layers) - 1, "vth": layer.vth, "state_exp": layer.state_exp,
                        "depth": layer.depth, "connections": [_connection_meta(c) for c in layer.connections]}
                       for index, layer in enumerate(net.layers)]}
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            extra = f.create_group("spikeforge")
            extra.attrs["meta"] = json.dumps(meta)
            for index, layer in enumerate(net.layers):
                extra.create_dataset(f"bias_{index}", data=layer.bias.astype(np.int64))
                for j, c in enumerate(layer.connections):
                    extra.create_dataset(f"weight_{index}_{j}", data=c.weight.astype(np.int64))
    return Path(path)
