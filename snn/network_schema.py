"""The schema of network files: every field checked before anything is built from it.

Contract: :func:`check_payload` (a whole checkpoint), :func:`check_network` (a network spec of
:mod:`snn.serialization`), :func:`check_state_dict` (weights against the module built from the
spec) and :func:`probe_network` (one run on a small random spike input) either return or raise
one :class:`~snn.errors.SpikeforgeError` whose single line names the file, the place (``layer 9
(Linear)``, ``node 'add1' (Add)``, ``task``), the field, what was found, what was expected and the
fix. They read plain data only (dicts, lists, text, numbers, tensors): nothing named in a file
is imported or called. :func:`check_network` also propagates the feature shape from
``input_shape`` through a chain (sizes must chain) and estimates the parameter memory of the
spec, refusing a network larger than this machine's physical memory before a byte is allocated.
"""

from __future__ import annotations

import math
import os
from typing import Any, Callable, Iterable

import torch
from torch import nn

from snn.errors import SpikeforgeError, first_line
from snn.neurons import NeuronLayer
from snn.validation import check_timesteps

FIX = "re-create it with 'snn train'"
PAYLOAD_KEYS = ("format", "version", "network", "state_dict", "task", "meta")
REQUIRED_PAYLOAD_KEYS = ("format", "version", "network", "state_dict")
TASK_FIELDS: dict[str, type] = {"timesteps": int, "encoder": str, "readout": str}  # snn.training.Task
PROBE_STEPS = 2
PROBE_DENSITY = 0.05  # sparse enough that every Linear takes the event-driven path (snn.kernels.event_linear)

Kind = tuple[str, Callable[[Any], bool]]
Shape = tuple[int, ...] | None


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return _is_int(v) or (isinstance(v, float) and math.isfinite(v))


def _is_param(v: Any) -> bool:
    if isinstance(v, (list, tuple)):
        return len(v) > 0 and all(_is_param(e) for e in v)
    return _is_number(v)


def _ints(minimum: int, none_ok: bool = False) -> Kind:
    def ok(v: Any) -> bool:
        one = lambda e: (none_ok and e is None) or (_is_int(e) and e >= minimum)  # noqa: E731
        return one(v) or (isinstance(v, (list, tuple)) and 1 <= len(v) <= 3 and all(one(e) for e in v))
    return f"an integer >= {minimum} or a list of them", ok


def _optional(kind: Kind) -> Kind:
    return f"{kind[0]} or null", lambda v: v is None or kind[1](v)


def _surrogate_ok(v: Any) -> bool:
    if v is None or isinstance(v, str):
        return True
    return (isinstance(v, dict) and set(v) <= {"name", "slope"} and isinstance(v.get("name"), str)
            and (v.get("slope") is None or _is_number(v["slope"])))


POS_INT: Kind = ("a positive integer", lambda v: _is_int(v) and v > 0)
INT: Kind = ("an integer", _is_int)
BOOL: Kind = ("true or false", lambda v: isinstance(v, bool))
NUMBER: Kind = ("a finite number", _is_number)
POSITIVE: Kind = ("a positive finite number", lambda v: _is_number(v) and v > 0)
PROBABILITY: Kind = ("a number in [0, 1]", lambda v: _is_number(v) and 0 <= v <= 1)
PARAM: Kind = ("a finite number or a list of finite numbers", _is_param)
TEXT: Kind = ("text", lambda v: isinstance(v, str))
SURROGATE: Kind = ("a surrogate name or {'name': text, 'slope': number}", _surrogate_ok)

_CONV = {"in_channels": POS_INT, "out_channels": POS_INT, "kernel_size": _ints(1), "stride": _ints(1),
         "padding": _ints(0), "dilation": _ints(1), "groups": POS_INT, "bias": BOOL}
_POOL = {"kernel_size": _ints(1), "stride": _optional(_ints(1)), "padding": _ints(0)}
_NORM = {"num_features": POS_INT, "eps": POSITIVE, "momentum": _optional(NUMBER), "affine": BOOL}
_CUBA = {"theta": PARAM, "bias": PARAM, "reset": TEXT, "surrogate": _optional(SURROGATE), "slope": _optional(NUMBER),
         "learn_threshold": BOOL, "detach_reset": BOOL, "recurrent_features": _optional(POS_INT)}

# layer type -> (required fields, every field it may have and its kind)
LAYER_FIELDS: dict[str, tuple[tuple[str, ...], dict[str, Kind]]] = {
    "Linear": (("in_features", "out_features"), {"in_features": POS_INT, "out_features": POS_INT, "bias": BOOL}),
    "Conv1d": (("in_channels", "out_channels", "kernel_size"), _CONV),
    "Conv2d": (("in_channels", "out_channels", "kernel_size"), _CONV),
    "BatchNorm1d": (("num_features",), _NORM),
    "BatchNorm2d": (("num_features",), _NORM),
    "Dropout": ((), {"p": PROBABILITY}),
    "MaxPool1d": (("kernel_size",), _POOL),
    "MaxPool2d": (("kernel_size",), _POOL),
    "AvgPool1d": (("kernel_size",), _POOL),
    "AvgPool2d": (("kernel_size",), _POOL),
    "AdaptiveAvgPool2d": (("output_size",), {"output_size": _ints(1, none_ok=True)}),
    "Flatten": ((), {"start_dim": INT, "end_dim": INT}),
    "Identity": ((), {}),
    "Scale": ((), {"factor": PARAM}),
    "Add": ((), {}),
    "Concat": ((), {"dim": INT}),
    "SpikeMaxPool2d": (("kernel_size",), {**_POOL, "dilation": _ints(1), "ceil_mode": BOOL}),
    "IF": ((), {**_CUBA, "v_init": NUMBER}),
    "LIF": ((), {**_CUBA, "beta": PARAM, "learn_beta": BOOL}),
    "CubaLIF": ((), {**_CUBA, "alpha": PARAM, "beta": PARAM, "learn_alpha": BOOL, "learn_beta": BOOL}),
    "ALIF": ((), {**_CUBA, "alpha": PARAM, "beta": PARAM, "rho": PARAM, "gamma": PARAM, "learn_beta": BOOL}),
    "Integrator": ((), {"beta": PARAM, "bias": PARAM, "learn_beta": BOOL}),
}
NEURONS = ("IF", "LIF", "CubaLIF", "ALIF", "Integrator")


def _found(value: Any) -> str:
    text = repr(value) if not isinstance(value, (dict, list, tuple)) else f"{type(value).__name__} {value!r}"
    return text if len(text) <= 60 else text[:57] + "..."


def _fail(source: str, where: str, message: str) -> SpikeforgeError:
    return SpikeforgeError(f"{source}: {where}: {message}; {FIX}")


def _where(index: int | str, kind: Any) -> str:
    label = f"layer {index}" if isinstance(index, int) else f"node {index!r}"
    return f"{label} ({kind})" if isinstance(kind, str) else label


# --- the payload ------------------------------------------------------------------------------------------


def check_payload(payload: Any, source: str) -> None:
    """Check a whole checkpoint dictionary (header, network spec, task, meta, state dict types)."""
    if not isinstance(payload, dict):
        raise _fail(source, "file", f"holds {type(payload).__name__}, expected a checkpoint dictionary")
    unknown = [k for k in payload if k not in PAYLOAD_KEYS]
    if unknown:
        raise _fail(source, "file", f"has unknown key {_found(unknown[0])}, expected only {', '.join(PAYLOAD_KEYS)}")
    missing = [k for k in REQUIRED_PAYLOAD_KEYS if k not in payload]
    if missing:
        raise _fail(source, "file", f"has no {missing[0]!r} entry, expected {', '.join(REQUIRED_PAYLOAD_KEYS)}")
    check_network(payload["network"], source)
    check_task(payload.get("task", {}), source)
    if not isinstance(payload.get("meta", {}), dict):
        raise _fail(source, "meta", f"is {_found(payload['meta'])}, expected a dictionary")
    _check_tensors(payload["state_dict"], source)


def check_task(task: Any, source: str) -> None:
    """``task`` is a dictionary of :class:`snn.training.Task` fields only, of the right types."""
    if not isinstance(task, dict):
        raise _fail(source, "task", f"is {_found(task)}, expected a dictionary of {', '.join(TASK_FIELDS)}")
    for key, value in task.items():
        if key not in TASK_FIELDS:
            raise _fail(source, "task", f"has unknown field {_found(key)}, expected only {', '.join(TASK_FIELDS)}")
        wanted = TASK_FIELDS[key]
        if not isinstance(value, wanted) or isinstance(value, bool):
            raise _fail(source, f"task field {key!r}", f"is {_found(value)}, expected {wanted.__name__}")
    if "timesteps" in task:
        try:
            check_timesteps(task["timesteps"])
        except SpikeforgeError as error:
            raise _fail(source, "task field 'timesteps'", str(error)) from error


def _check_tensors(state: Any, source: str) -> None:
    if not isinstance(state, dict):
        raise _fail(source, "state_dict", f"is {type(state).__name__}, expected a dictionary of name -> tensor")
    for key, value in state.items():
        if not isinstance(key, str):
            raise _fail(source, "state_dict", f"has key {_found(key)}, expected text")
        if not isinstance(value, torch.Tensor):
            raise _fail(source, f"state_dict entry {key!r}", f"is {type(value).__name__}, expected a tensor")
        if value.is_meta or value.device.type != "cpu":
            raise _fail(source, f"state_dict entry {key!r}", f"is on the {value.device.type} device (no data), "
                        "expected a CPU tensor with values")
        if value.is_complex() or (value.is_floating_point() and not bool(torch.isfinite(value).all())):
            raise _fail(source, f"state_dict entry {key!r}", "holds NaN, infinite or complex values, expected "
                        "finite real numbers")


# --- the network spec -------------------------------------------------------------------------------------


def check_network(spec: Any, source: str = "network spec") -> None:
    """Check a network spec's structure and field types, its memory and (for a chain) its shapes."""
    if not isinstance(spec, dict):
        raise _fail(source, "network", f"is {_found(spec)}, expected a dictionary with 'layers' or 'nodes'")
    shape = _input_shape(spec.get("input_shape"), source)
    if "nodes" in spec:
        entries = _graph_layers(spec, source)
    elif isinstance(spec.get("layers"), list):
        entries = list(enumerate(spec["layers"]))
    else:
        raise _fail(source, "network", f"has 'layers' = {_found(spec.get('layers'))}, expected a list of layer "
                    "dictionaries (a chain) or a 'nodes' list (a graph)")
    unknown = [k for k in spec if k not in ("layers", "nodes", "output", "input_shape")]
    if unknown:
        raise _fail(source, "network", f"has unknown key {_found(unknown[0])}, expected layers or nodes, "
                    "output, input_shape")
    for index, layer in entries:
        check_layer(layer, index, source)
    shapes = propagate_shapes([layer for _, layer in entries], shape, source) if "layers" in spec else []
    check_memory(entries, shapes, source)


def _input_shape(value: Any, source: str) -> Shape:
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or not value or not all(_is_int(d) and d > 0 for d in value):
        raise _fail(source, "network input_shape", f"is {_found(value)}, expected a list of positive integers "
                    "such as [1, 8, 8]")
    return tuple(value)


def _graph_layers(spec: dict, source: str) -> list[tuple[str | int, Any]]:
    if not isinstance(spec["nodes"], list) or not spec["nodes"]:
        raise _fail(source, "network", f"has 'nodes' = {_found(spec['nodes'])}, expected a list of nodes")
    entries: list[tuple[str | int, Any]] = []
    for k, node in enumerate(spec["nodes"]):
        if not isinstance(node, dict) or not isinstance(node.get("name"), str) or "layer" not in node \
                or not isinstance(node.get("inputs"), list) or not all(isinstance(i, str) for i in node["inputs"]):
            raise SpikeforgeError(f"{source}: node {k} must be a mapping with 'name' (text), 'layer' (a layer spec) "
                                  f"and 'inputs' (a list of node names), found {_found(node)}; {FIX}")
        entries.append((node["name"], node["layer"]))
    if not isinstance(spec.get("output"), str):
        raise _fail(source, "network output", f"is {_found(spec.get('output'))}, expected the name of a node")
    return entries


def check_layer(layer: Any, index: int | str, source: str) -> None:
    """One layer dictionary: a known type, known fields only, each of its kind, required ones present."""
    if not isinstance(layer, dict):
        raise _fail(source, _where(index, None), f"is {_found(layer)}, expected a layer dictionary")
    kind = layer.get("type")
    if not isinstance(kind, str) or kind not in LAYER_FIELDS:
        raise _fail(source, _where(index, None), f"has unknown layer type {_found(kind)}, expected one of "
                    f"{', '.join(LAYER_FIELDS)}")
    required, fields = LAYER_FIELDS[kind]
    for name, value in layer.items():
        if name == "type":
            continue
        if name not in fields:
            raise _fail(source, _where(index, kind), f"has unknown field {name!r}, expected only "
                        f"{', '.join(fields) or 'none'}")
        if not fields[name][1](value):
            raise _fail(source, f"{_where(index, kind)} field {name!r}", f"is {_found(value)}, expected "
                        f"{fields[name][0]}")
    for name in required:
        if name not in layer:
            raise _fail(source, _where(index, kind), f"has no field {name!r}, expected {fields[name][0]}")
    if kind.startswith("Conv") and (layer["in_channels"] % layer.get("groups", 1)
                                    or layer["out_channels"] % layer.get("groups", 1)):
        raise _fail(source, f"{_where(index, kind)} field 'groups'", f"is {layer['groups']}, expected a divisor "
                    f"of in_channels {layer['in_channels']} and out_channels {layer['out_channels']}")


# --- shapes -------------------------------------------------------------------------------------------------


def _tuple(value: Any, dims: int) -> tuple:
    return tuple(value) if isinstance(value, (list, tuple)) else (value,) * dims


def _window_out(size: int, k: int, s: int, p: int, d: int = 1, ceil: bool = False) -> int:
    span = size + 2 * p - d * (k - 1) - 1
    out = (-(-span // s) if ceil else span // s) + 1
    if ceil and (out - 1) * s >= size + p:
        out -= 1
    return out


def _spatial(spec: dict, shape: tuple[int, ...], dims: int, where: str, conv: bool) -> tuple[int, ...]:
    """Output size of a convolution / pooling window over the last ``dims`` axes of ``shape``."""
    k = _tuple(spec["kernel_size"], dims)
    s = _tuple(spec.get("stride") or spec["kernel_size"], dims) if not conv else _tuple(spec.get("stride", 1), dims)
    p, d = _tuple(spec.get("padding", 0), dims), _tuple(spec.get("dilation", 1), dims)
    if not len(k) == len(s) == len(p) == len(d) == dims:
        raise SpikeforgeError(f"{where}: kernel_size, stride, padding and dilation give {len(k)}, {len(s)}, "
                              f"{len(p)}, {len(d)} values, expected {dims} each")
    if not conv and any(pi > ki // 2 for pi, ki in zip(p, k)):
        raise SpikeforgeError(f"{where}: padding {p} is more than half the kernel {k}")
    out = tuple(_window_out(n, *a, spec.get("ceil_mode", False)) for n, *a in zip(shape[-dims:], k, s, p, d))
    if any(o < 1 for o in out):
        raise SpikeforgeError(f"{where}: input {shape} gives an empty output {out}, expected a kernel that fits")
    return out


def _features(shape: tuple[int, ...], dims: int, channels: int, what: str, where: str) -> None:
    if len(shape) != dims + 1:
        raise SpikeforgeError(f"{where}: its input has shape {shape}, expected {dims + 1} axes (channels and "
                              f"{dims} spatial)")
    if shape[0] != channels:
        raise SpikeforgeError(f"{where}: {what} is {channels} but the layer before it gives {shape[0]} channels "
                              f"(input {shape})")


def _flatten(spec: dict, shape: tuple[int, ...], where: str) -> tuple[int, ...]:
    full = (1, *shape)
    start, end = spec.get("start_dim", 1), spec.get("end_dim", -1)
    s, e = start % len(full) if -len(full) <= start < len(full) else None, \
        end % len(full) if -len(full) <= end < len(full) else None
    if s is None or e is None or s == 0 or s > e:
        raise SpikeforgeError(f"{where}: start_dim {start} and end_dim {end} do not fit its input of shape {shape} "
                              "(after the batch axis), expected 1 <= start_dim <= end_dim")
    return full[1:s] + (math.prod(full[s:e + 1]),) + full[e + 1:]


def layer_output_shape(spec: dict, shape: tuple[int, ...], where: str) -> tuple[int, ...]:
    """The feature shape (no batch axis) a checked layer gives for input ``shape``, or an error."""
    kind = spec["type"]
    if kind == "Linear":
        if shape[-1] != spec["in_features"]:
            raise SpikeforgeError(f"{where}: in_features is {spec['in_features']} but the layer before it gives "
                                  f"{shape[-1]} features (input {shape})")
        return (*shape[:-1], spec["out_features"])
    if kind in ("Conv1d", "Conv2d"):
        dims = int(kind[-2])
        _features(shape, dims, spec["in_channels"], "in_channels", where)
        return (spec["out_channels"], *_spatial(spec, shape, dims, where, conv=True))
    if kind in ("BatchNorm1d", "BatchNorm2d"):
        dims = {"BatchNorm2d": 2}.get(kind, len(shape) - 1 if len(shape) == 2 else 0)
        _features(shape, dims, spec["num_features"], "num_features", where)
        return shape
    if kind in ("MaxPool1d", "MaxPool2d", "AvgPool1d", "AvgPool2d", "SpikeMaxPool2d"):
        dims = int(kind[-2])
        if len(shape) != dims + 1:
            raise SpikeforgeError(f"{where}: its input has shape {shape}, expected {dims + 1} axes")
        return (shape[0], *_spatial(spec, shape, dims, where, conv=False))
    if kind == "AdaptiveAvgPool2d":
        if len(shape) != 3:
            raise SpikeforgeError(f"{where}: its input has shape {shape}, expected 3 axes (C, H, W)")
        size = _tuple(spec["output_size"], 2)
        return (shape[0], *(n if o is None else o for o, n in zip(size, shape[1:])))
    if kind == "Flatten":
        return _flatten(spec, shape, where)
    if kind in ("Add", "Concat"):
        raise SpikeforgeError(f"{where}: merges several inputs, which only a graph network ('nodes') has")
    return _same_shape(spec, shape, where)


def _same_shape(spec: dict, shape: tuple[int, ...], where: str) -> tuple[int, ...]:
    """Layers that keep the shape: neurons (their recurrent width), Scale (its channels), Dropout, Identity."""
    if spec.get("recurrent_features") is not None and spec["recurrent_features"] != shape[-1]:
        raise SpikeforgeError(f"{where}: recurrent_features is {spec['recurrent_features']} but its input has "
                              f"{shape[-1]} features")
    factor = spec.get("factor")
    if spec["type"] == "Scale" and isinstance(factor, list) and len(factor) > 1 and len(factor) != shape[0]:
        raise SpikeforgeError(f"{where}: has {len(factor)} channel factors but its input has {shape[0]} channels")
    return shape


def propagate_shapes(layers: list[dict], shape: Shape, source: str) -> list[Shape]:
    """The input feature shape of every layer of a chain (None where not known: no ``input_shape``
    and no Linear yet), followed by the network's output shape; an error names the first misfit."""
    shapes: list[Shape] = []
    for index, spec in enumerate(layers):
        shapes.append(shape)
        where = _where(index, spec["type"])
        if shape is None:
            shape = (spec["out_features"],) if spec["type"] == "Linear" else None
            continue
        try:
            shape = layer_output_shape(spec, shape, where)
        except SpikeforgeError as error:
            raise SpikeforgeError(f"{source}: {error}; the layer sizes do not chain: {FIX}") from error
    shapes.append(shape)
    return shapes


# --- memory -------------------------------------------------------------------------------------------------


def layer_parameters(spec: dict) -> int:
    """Number of parameter and buffer values a checked layer spec allocates."""
    kind = spec["type"]
    if kind == "Linear":
        return spec["in_features"] * spec["out_features"] + spec["out_features"] * spec.get("bias", True)
    if kind in ("Conv1d", "Conv2d"):
        k = math.prod(_tuple(spec["kernel_size"], int(kind[-2])))
        out = spec["out_channels"]
        return out * (spec["in_channels"] // spec.get("groups", 1)) * k + out * spec.get("bias", True)
    if kind.startswith("BatchNorm"):
        return 4 * spec["num_features"]
    recurrent = spec.get("recurrent_features") or 0
    return recurrent * recurrent


def _describe(spec: dict) -> str:
    kind = spec["type"]
    if kind == "Linear":
        return f"Linear {spec['in_features']} -> {spec['out_features']}"
    if kind.startswith("Conv"):
        return f"{kind} {spec['in_channels']} -> {spec['out_channels']}"
    return kind


def physical_memory() -> int | None:
    """Bytes of physical memory of this machine (None where the system does not say)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def check_memory(entries: Iterable[tuple[int | str, dict]], shapes: list[Shape], source: str) -> None:
    """Refuse a spec whose weights (and one probe's activations) exceed this machine's physical memory."""
    limit = physical_memory()
    if limit is None:
        return
    item = torch.empty((), dtype=torch.get_default_dtype()).element_size()
    sizes = [(index, spec, layer_parameters(spec) * item) for index, spec in entries]
    activations = sum(math.prod(s) for s in shapes if s is not None) * PROBE_STEPS * item * 2
    total = sum(size for _, _, size in sizes) + activations
    if total <= limit:
        return
    index, spec, size = max(sizes, key=lambda entry: entry[2])
    gib = 2 ** 30
    raise SpikeforgeError(f"{source}: {_where(index, None)} ({_describe(spec)}) needs {size / gib:.1f} GiB of "
                          f"weights; the network needs {total / gib:.1f} GiB in all, more than this machine's "
                          f"{limit / gib:.1f} GiB of memory: the file is damaged or not a network this machine "
                          f"can hold; {FIX} with smaller layers")


# --- weights and the probe ----------------------------------------------------------------------------------


def check_state_dict(state: dict, model: nn.Module, source: str, widths: dict[str, tuple[int, ...]] | None = None
                     ) -> None:
    """The file's tensors are exactly the module's: the same names, kinds and shapes. A neuron layer's
    per-neuron parameter may have any shape that broadcasts to its features (``widths``: the input
    feature shape per layer name, where known)."""
    _check_tensors(state, source)
    expected = model.state_dict()
    for key in expected:
        if key not in state:
            raise _fail(source, "state_dict", f"has no tensor {key!r}, which its network spec needs")
    for key, value in state.items():
        if key not in expected:
            raise _fail(source, "state_dict", f"has tensor {key!r}, which its network spec does not have")
        want = expected[key]
        if value.is_floating_point() != want.is_floating_point():
            raise _fail(source, f"state_dict entry {key!r}", f"has dtype {value.dtype}, expected {want.dtype}")
        owner, _, name = key.rpartition(".")
        module = model.get_submodule(owner) if owner else model
        if isinstance(module, NeuronLayer) and name in module._parameter_names:
            _check_neuron_param(key, value, (widths or {}).get(owner), source)
        elif tuple(value.shape) != tuple(want.shape):
            raise _fail(source, f"state_dict entry {key!r}", f"has shape {tuple(value.shape)}, expected "
                        f"{tuple(want.shape)} (from the network spec)")


def _check_neuron_param(key: str, value: torch.Tensor, width: tuple[int, ...] | None, source: str) -> None:
    if width is None:
        return
    try:
        fits = torch.broadcast_shapes(value.shape, width) == torch.Size(width)
    except RuntimeError:
        fits = False
    if not fits:
        raise _fail(source, f"state_dict entry {key!r}", f"has shape {tuple(value.shape)}, expected one that "
                    f"broadcasts to the layer's {width} features")


def layer_widths(spec: dict) -> dict[str, tuple[int, ...]]:
    """Input feature shape per layer name of a checked chain spec, where known."""
    if "layers" not in spec:
        return {}
    shapes = propagate_shapes(spec["layers"], _input_shape(spec.get("input_shape"), "network spec"), "network spec")
    return {str(k): s for k, s in enumerate(shapes[:-1]) if s is not None}


def probe_shape(model: nn.Module) -> tuple[int, ...] | None:
    """The input feature shape to probe ``model`` with: its ``input_shape``, else the first Linear's width."""
    if getattr(model, "input_shape", None) is not None:
        return tuple(model.input_shape)
    first = next((m for m in model.children() if not isinstance(m, (nn.Flatten, nn.Identity))), None) \
        if isinstance(model, nn.Sequential) else None
    return (first.in_features,) if isinstance(first, nn.Linear) else None


def probe_network(model: nn.Module, source: str, fix: str = FIX) -> None:
    """Run ``model`` once on a small random spike input (seeded, sparse: every path runs, the
    event-driven Linear included) in eval mode without gradients; its train/eval flags and the
    global random state are left as they were. Any failure is one :class:`SpikeforgeError`."""
    shape = probe_shape(model)
    if shape is None:
        return
    generator = torch.Generator().manual_seed(0)
    x = (torch.rand((PROBE_STEPS, 1, *shape), generator=generator) < PROBE_DENSITY).to(torch.get_default_dtype())
    x.view(-1)[0] = 1.0  # at least one event
    modes = [(m, m.training) for m in model.modules()]
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            model.eval()
            out = model(x)
        if isinstance(out, torch.Tensor) and out.is_floating_point() and not bool(torch.isfinite(out).all()):
            raise SpikeforgeError("its output holds NaN or infinity")
    except SpikeforgeError as error:
        raise SpikeforgeError(f"{source}: the network does not run on a spike input of shape {shape}: "
                              f"{first_line(error, type(error).__name__)}; {fix}") from error
    except (RuntimeError, ValueError, IndexError, TypeError) as error:
        raise SpikeforgeError(f"{source}: the network does not run on a spike input of shape {shape}: "
                              f"{first_line(error, type(error).__name__)}; {fix}") from error
    finally:
        for module, mode in modes:
            module.training = mode


