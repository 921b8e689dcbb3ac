"""NIR files (HDF5): save atomically, load with clear errors for anything that is not one.

``save_nir(net_or_graph, path)`` writes through a temporary file and a rename
(:func:`snn.fileio.atomic_path`), so a failed export leaves no file behind.
``load_nir(path)`` returns the :class:`nir.NIRGraph`; ``load_network(path)`` the runnable
:class:`snn.network.Sequential` (a chain) or :class:`snn.graph_network.GraphNetwork`. A
missing file, a file that is not HDF5, a truncated
HDF5 file, an HDF5 file without a NIR graph and a graph naming an unknown node type are
refused with a :class:`~snn.errors.SpikeforgeError`; nothing in the file is executed.

The jobs of ``snn nir`` (:mod:`converters.nir_cli`): :func:`checkpoint_to_nir` writes the
network of a spikeforge checkpoint as a NIR file, :func:`nir_to_checkpoint` a NIR file
(read in a producer's dialect, :mod:`converters.nir_dialects`) as a checkpoint. Both check
everything before they write, and write atomically: bad input leaves no file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import h5py
import nir
import nir.ir
from nir.serialization import hdf2dict

from converters import nir_discretisation as D
from converters.nir_dialects import get_dialect
from converters.nir_export import export_nir
from converters.nir_import import import_nir, resolve_dt
from snn.checkpoint import load_checkpoint, save_checkpoint
from snn.errors import SpikeforgeError
from snn.fileio import atomic_path
from snn.graph_network import GraphNetwork, network_nodes
from snn.network import Sequential
from snn.neurons import NeuronLayer

KNOWN_TYPES = set(nir.ir.__all__) - {"NIRNode", "str2NIRNode", "dict2NIRNode"}


def save_nir(model: Sequential | GraphNetwork | nir.NIRGraph, path: str | os.PathLike,
             input_shape: Sequence[int] | None = None, dt: float = D.DEFAULT_DT) -> Path:
    """Write ``model`` (a network, exported with ``dt``, or a NIR graph) to ``path`` atomically."""
    graph = model if isinstance(model, nir.NIRGraph) else export_nir(model, input_shape=input_shape, dt=dt)
    with atomic_path(path) as tmp:
        nir.write(tmp, graph)
    return Path(path)


def _check_types(node: dict, where: str) -> None:
    """Name the node whose type this nir version does not know (nir itself only asserts)."""
    kind = node.get("type")
    if kind not in KNOWN_TYPES:
        raise SpikeforgeError(f"NIR node {where!r} has type {kind!r}, which the installed nir package does not "
                              f"know (nir {getattr(nir, '__version__', '?')}); upgrade nir or re-export the graph")
    for name, child in (node.get("nodes") or {}).items():
        if not isinstance(child, dict):
            raise SpikeforgeError(f"NIR node {name!r} in {where!r} is not a node group; the file is malformed")
        _check_types(child, name)


def load_nir(path: str | os.PathLike) -> nir.NIRGraph:
    """Read the NIR graph stored at ``path`` (type checks are left to the import)."""
    path = Path(path)
    if not path.is_file():
        raise SpikeforgeError(f"NIR file {path} does not exist; check the path")
    if not h5py.is_hdf5(path):
        raise SpikeforgeError(f"{path} is not an HDF5 file, so not a NIR file; export the network with a NIR "
                              "writer (nir.write, snntorch.export_nir, norse.torch.to_nir + nir.write)")
    try:
        with h5py.File(path, "r") as f:
            if "node" not in f:
                raise SpikeforgeError(f"{path} is an HDF5 file but holds no NIR graph (no 'node' group); "
                                      "is it a NIR file?")
            data: dict[str, Any] = hdf2dict(f["node"])
    except SpikeforgeError:
        raise
    except (OSError, RuntimeError, KeyError, ValueError) as exc:
        raise SpikeforgeError(f"{path} cannot be read as HDF5 ({exc}); the file is truncated or corrupt: "
                              "write it again") from exc
    if data.get("type") != "NIRGraph":
        raise SpikeforgeError(f"{path} holds a NIR {data.get('type')!r} node, not a NIRGraph; save a whole graph")
    _check_types(data, "<root>")
    data["type_check"] = False
    try:
        graph = nir.dict2NIRNode(data)
    except (AssertionError, KeyError, TypeError, ValueError) as exc:
        raise SpikeforgeError(f"{path} is not a valid NIR graph ({type(exc).__name__}: {exc}); "
                              "re-export it with a NIR writer") from exc
    return graph


def load_network(path: str | os.PathLike, dt: float | None = None,
                 dialect: str | None = None) -> Sequential | GraphNetwork:
    """Load ``path`` and build the network (time step: ``dt``, else the file's, else the dialect's;
    ``dialect``: the producer of the file, :mod:`converters.nir_dialects`)."""
    return import_nir(load_nir(path), dt=dt, dialect=dialect)


def _target(out: str | os.PathLike, source: str | os.PathLike, what: str) -> Path:
    """``out`` as a file to write: not a folder, not the file being read."""
    out = Path(out)
    if out.is_dir():
        example = out / ("net.nir" if what == "NIR file" else "model.pt")
        raise SpikeforgeError(f"--out {out} is a folder; name the {what} to write (e.g. {example})")
    if out.exists() and Path(source).exists() and out.resolve() == Path(source).resolve():
        raise SpikeforgeError(f"--out {out} is the file being read; write the {what} to another path")
    return out


def _layers(model: Sequential | GraphNetwork) -> list[dict[str, Any]]:
    nodes, _, _ = network_nodes(model)
    return [{"name": n.name, "type": type(n.layer).__name__,
             **({"reset": n.layer.reset} if getattr(n.layer, "reset", None) else {})}
            for n in nodes if isinstance(n.layer, NeuronLayer)]


def checkpoint_to_nir(model_path: str | os.PathLike, out: str | os.PathLike, dt: float = D.DEFAULT_DT,
                      input_shape: Sequence[int] | None = None) -> dict[str, Any]:
    """Write the network of the checkpoint at ``model_path`` as the NIR file ``out`` (time step ``dt``)."""
    out = _target(out, model_path, "NIR file")
    dt = D.check_dt(dt)
    model = load_checkpoint(model_path).model.eval()
    if input_shape is None and model.input_shape is None:
        raise SpikeforgeError(f"the network in {model_path} records no input shape; pass it (snn nir export "
                              "--input-shape C,H,W: the feature shape after [T, B])")
    graph = export_nir(model, input_shape=input_shape, dt=dt)
    save_nir(graph, out)
    return {"model": str(model_path), "nir": str(out), "dt": dt, "edges": len(graph.edges),
            "nodes": {name: type(node).__name__ for name, node in graph.nodes.items()},
            "neuron_layers": _layers(model), "bytes": out.stat().st_size}


def nir_to_checkpoint(nir_path: str | os.PathLike, out: str | os.PathLike, dialect: str | None = None,
                      dt: float | None = None) -> dict[str, Any]:
    """Read the NIR file ``nir_path`` as ``dialect``'s producer runs it and save the network as the
    checkpoint ``out`` (no task settings: fine-tune it with ``snn train --init``)."""
    out = _target(out, nir_path, "checkpoint")
    reading = get_dialect(dialect)
    graph = load_nir(nir_path)
    used = resolve_dt(graph, dt, reading.name)
    model = import_nir(graph, dt=used, dialect=reading.name)
    save_checkpoint(out, model, meta={"source": "nir", "nir_file": str(nir_path), "dialect": reading.name,
                                      "dt": used})
    return {"nir": str(nir_path), "checkpoint": str(out), "dialect": reading.name, "dt": used,
            "network": "graph" if isinstance(model, GraphNetwork) else "chain",
            "input_shape": list(model.input_shape or ()), "neuron_layers": _layers(model),
            "parameters": sum(p.numel() for p in model.parameters())}
