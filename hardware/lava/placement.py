"""Core placement of a compiled Loihi network, and the spike traffic between its cores.

:func:`place` splits every population of a :class:`~hardware.lava.compile.LoihiNetwork`
(relays and the readout included) into contiguous slices of its flat torch neuron order, one
slice per core, each slice as large as every per-core limit of the chip's table allows
(:data:`LOIHI2`, or :data:`LOIHI1`: the chip SANA-FE's calibrated Loihi file describes;
neurons, synaptic memory of the slice's incoming synapses, fan-in axons where a limit is
given), so a layer takes as few cores as those limits allow (greedy filling is optimal for
contiguous slices). Cores are numbered in layer order and laid on the chips' router meshes:
core ``g`` is on chip ``g // cores_per_chip``; within its chip, ``cores_per_tile`` consecutive
cores share one tile (router; Loihi 2: one core per router, Loihi 1: four), and tiles fill the
mesh row by row in snake order (row ``r`` runs left to right when ``r`` is even, right to left
when odd), so consecutive tiles are neighbours. Where the table places the input on chip
(``input_neurons_per_core``: Loihi 1, as SANA-FE maps input neurons), the input population
takes the first cores, like a layer without synapses; otherwise input values come from the
host. A network that needs more than one chip is placed on several (a note says so); one that
needs more chips than ``max_chips`` is refused with the numbers, before anything runs.

Synapse memory, :func:`synapse_bits`: a synapse is one nonzero weight of the compiled
connection (dense: a nonzero entry of ``weight[n_out, n_in]``; conv: a kernel tap with a
nonzero weight whose input position lies inside the (zero-padded) input, counted for every
output position: no weight sharing, so a convolution costs as much as its unrolled matrix, an
upper bound), stored with 8 bits (the compiled 8-bit mantissa: 7 bits and a sign for a
mixed-sign connection, an 8-bit magnitude otherwise) and no per-axon header or index bits
(Loihi 2's synapse encoding is not published). A core needs ``ceil(sum of its neurons'
incoming synapse bits / 8)`` bytes.

Traffic model, :func:`traffic` (as Loihi routes: one spike message per destination core, which
fans it out to its synapses there): a spike of neuron ``i`` of population ``P`` is one packet to
every distinct core that holds a neuron with a synapse from ``i``, over every connection that
reads ``P`` (recurrent connections and relays included). A packet to the core of the source
itself counts as a packet with zero hops. Hops are the Manhattan distance between the two
cores' tiles on the mesh, X-then-Y as Loihi routes, split into east-west hops (columns) and
north-south hops (rows), the chips side by side in one row (chip ``k``'s mesh starts at column
``k * cols``: our assumption; the inter-chip links are not modelled), and packets between
chips are also counted on their own. Input values: each nonzero input value is one packet
(8-bit payload when graded) to every core that holds a neuron with a synapse from that input,
counted apart; from the host (no hops: the host is not on the mesh) unless the input is placed
on chip (then from its core, with hops, as a layer's spikes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from hardware.lava.compile import LoihiConnection, LoihiLayer, LoihiNetwork
from snn.errors import SpikeforgeError
from snn.graph_network import INPUT

EVIDENCE = ("published", "derived from published figures", "secondary report", "our assumption", "not published")

BRIEF = ("Intel Labs, 'Taking Neuromorphic Computing to the Next Level with Loihi 2', technology brief, 2021 (its "
         "chip figures as open-neuromorphic.org's Loihi 2 page repeats them)")
DAVIES = ("Davies et al., 'Loihi: A Neuromorphic Manycore Processor with On-Chip Learning', IEEE Micro 38(1), 2018")
NENGO_LOIHI = ("nengo-loihi (github.com/nengo/nengo-loihi), nengo_loihi/block.py (base64-encoded there: "
               "MAX_COMPARTMENTS = 1024, MAX_IN_AXONS = MAX_OUT_AXONS = 4096, "
               "MAX_SYNAPSE_BITS = 1048576, SynapseConfig.bits_per_axon)")
PRESS_2021 = ("a 2021 press report of the Loihi 2 launch (fbhtechinfo.com, 'Intel's new Loihi-2 chip uses 1 million "
              "neurons'): '128 cores in a two-dimensional 8x16 mesh', '128 Kbyte of local SRAM per "
              "core, flexibly partitioned', Kapoho Point with eight chips")
HALA_POINT = ("Intel, Hala Point announcement, April 2024: 1,152 Loihi 2 chips, 140,544 neuromorphic cores, "
              "1.15 billion neurons, 128 billion synapses")
HALA_POINT_CHIPS = 1152
SYNAPSE_BITS = 8
INPUT_PAYLOAD_BITS = 8        # graded input spikes: input levels <= 255 (hardware.lava.compile.INPUT_LEVELS)
SYNAPSE_RULE = ("a synapse is a nonzero compiled weight (conv: a nonzero in-bounds kernel tap, for every output "
                "position: no weight sharing, an upper bound); a core's memory is ceil(synapses x synapse_bits / 8) "
                "bytes, no header or index bits; neuron state and routing tables are not counted")


@dataclass(frozen=True)
class Limit:
    """One per-core or per-chip figure: ``value`` in ``unit`` (``None``: not published, not checked),
    where it comes from (``source``), how sure it is (``evidence``, one of :data:`EVIDENCE`) and a note."""

    value: int | None
    unit: str
    source: str
    evidence: str
    note: str = ""

    def __post_init__(self) -> None:
        if self.evidence not in EVIDENCE:
            raise SpikeforgeError(f"evidence {self.evidence!r} is not one of {', '.join(EVIDENCE)}")
        if not self.source.strip():
            raise SpikeforgeError("every placement limit needs its source")
        if self.value is not None and (not isinstance(self.value, int) or self.value < 1):
            raise SpikeforgeError(f"a placement limit must be a positive integer or None, got {self.value!r}")

    def as_dict(self) -> dict[str, Any]:
        return {"value": self.value, "unit": self.unit, "source": self.source, "evidence": self.evidence,
                "note": self.note}


LOIHI2: dict[str, Limit] = {
    "neurons_per_core": Limit(
        8192, "neurons", BRIEF + ": up to 1 million neurons per chip on 128 neuromorphic cores (read as 2^20 / 128)",
        "derived from published figures",
        "cross-check: 8,192 x 140,544 cores = 1.151 billion, Hala Point's 1.15 billion neurons (" + HALA_POINT + "); "
        "Loihi 1 had 1,024 compartments per core (" + DAVIES + "; " + NENGO_LOIHI + "); Loihi 2 allocates neuron "
        "state flexibly, so a neuron model with more state fits fewer"),
    "synaptic_memory_per_core": Limit(
        128 * 1024, "bytes", PRESS_2021 + "; Loihi 1: 128 KB synaptic memory per core, " + DAVIES + " and "
        + NENGO_LOIHI + " (2^20 bits)",
        "our assumption",
        "Loihi 2's core memory is shared flexibly between synapses, neuron state and routing and the split is not "
        "published: we give synapses Loihi 1's 128 KiB. Cross-check: the brief's 120 million synapses per chip over "
        "128 cores are 937,500 per core, 114 KiB at 1-bit weights"),
    "synapse_bits": Limit(
        SYNAPSE_BITS, "bits per synapse", "hardware.lava.compile: the 8-bit weight mantissa Lava's Dense and Conv "
        "hold (num_weight_bits = 8 in lava-nc 0.10.0)",
        "our assumption",
        "no header or index bits: Loihi 2's synapse encoding is not published (Loihi 1's, " + NENGO_LOIHI + ", adds "
        "10 bits per run of up to 64 synapses of an axon and rounds each run up to 64-bit words: +12.5% for a run "
        "of 64 8-bit weights); a convolution counts every synapse of its unrolled matrix (no weight sharing): "
        "an upper bound; netx's optimize_weight_bits may store fewer bits (e.g. a relay's identity weights)"),
    "fan_in_axons_per_core": Limit(
        None, "axons", DAVIES + " and " + NENGO_LOIHI + ": Loihi 1 has 4,096 input axons per core", "not published",
        "Loihi 2's figure is not published: not checked, reported per core (distinct source neurons with a synapse "
        "on the core); pass a value to check one"),
    "fan_out_axons_per_core": Limit(
        None, "axons", DAVIES + " and " + NENGO_LOIHI + ": Loihi 1 has 4,096 output axons per core", "not published",
        "Loihi 2's figure is not published: not checked, reported per core (one per neuron and destination core); "
        "pass a value to check one"),
    "cores_per_chip": Limit(
        128, "cores", BRIEF + ": 128 neuromorphic cores per chip", "published",
        "Hala Point has 140,544 cores on 1,152 chips, 122 per chip (" + HALA_POINT + ")"),
    "core_grid_rows": Limit(
        8, "rows", PRESS_2021, "secondary report",
        "our assumption: one mesh router per core (Loihi 1 routed between tiles of cores: " + DAVIES + ", Table 2 "
        "prices spikes within a tile and per tile hop); cores fill "
        "the grid in snake order; hops are Manhattan distances on it"),
    "core_grid_cols": Limit(16, "columns", PRESS_2021, "secondary report", "see core_grid_rows"),
    "cores_per_tile": Limit(1, "cores", PRESS_2021, "our assumption",
                            "one mesh router per core: the 8x16 mesh of the report holds the 128 cores"),
    "input_neurons_per_core": Limit(
        None, "neurons", "Lava's host interfaces (lava-nc 0.10.0: a RingBuffer or io.source process feeds the first "
        "synapses)", "our assumption", "None: input values come from the host, off the mesh (no hops)"),
    "chips_per_system": Limit(
        8, "chips", PRESS_2021 + " (Kapoho Point: a board of eight Loihi 2 chips)", "secondary report",
        f"the default max_chips of place(); Hala Point holds {HALA_POINT_CHIPS:,} (" + HALA_POINT + ")"),
}

SANAFE_LOIHI = ("SANA-FE (github.com/SLAM-Lab/SANA-FE), arch/loihi.yaml, shipped as sanafe/examples/loihi.yaml in the "
                "sanafe 2.2.9 wheel on PyPI, identical to the repository's file at commit "
                "8951ab0711676a773261284d2e8c9d995156cb3d (sha256 359988170f66470d...)")

# Loihi 1 as SANA-FE's calibrated architecture file lays it out (the chip the "loihi-calibrated" energy profile prices).
LOIHI1: dict[str, Limit] = {
    "neurons_per_core": Limit(1024, "neurons", SANAFE_LOIHI + " (max_neurons_supported: 1024); " + DAVIES
                              + ": 1,024 compartments per core", "published"),
    "synaptic_memory_per_core": Limit(128 * 1024, "bytes", DAVIES + "; " + NENGO_LOIHI + " (2^20 bits)", "published",
                                      "synapses at 8 bits each, no headers (Loihi 1's run headers are not counted)"),
    "synapse_bits": LOIHI2["synapse_bits"],
    "fan_in_axons_per_core": Limit(4096, "axons", DAVIES + "; " + NENGO_LOIHI, "published"),
    "fan_out_axons_per_core": Limit(4096, "axons", DAVIES + "; " + NENGO_LOIHI, "published"),
    "cores_per_chip": Limit(128, "cores", DAVIES + ": 128 neuromorphic cores; " + SANAFE_LOIHI
                            + " (32 tiles of 4 cores)", "published"),
    "core_grid_rows": Limit(4, "rows of tiles", SANAFE_LOIHI + " (mesh height: 4)", "published",
                            "the mesh of tiles (routers); hops are counted between tiles, X then Y"),
    "core_grid_cols": Limit(8, "columns of tiles", SANAFE_LOIHI + " (mesh width: 8)", "published",
                            "see core_grid_rows"),
    "cores_per_tile": Limit(4, "cores", SANAFE_LOIHI + " (loihi_core[0..3] in every tile); " + DAVIES
                            + " (Table 2 prices spikes within a tile and per tile hop)", "published"),
    "input_neurons_per_core": Limit(1024, "neurons", SANAFE_LOIHI + " (input neurons: soma loihi_inputs[0..1023] "
                                    "on every core, free of energy and latency)", "our assumption",
                                    "input spikes enter from input neurons placed on cores, as SANA-FE maps them"),
    "chips_per_system": Limit(32, "chips", "Intel's Nahuku board (32 Loihi chips), as Davies et al., 'Advancing "
                              "neuromorphic computing with Loihi', Proc. IEEE 109(5), 2021, describe it",
                              "secondary report", "SANA-FE's file describes one chip; several chips are laid side "
                              "by side in one row (our assumption)"),
}


def custom_limits(base: Mapping[str, Limit] = LOIHI2, **values: int | None) -> dict[str, Limit]:
    """``base`` with some values replaced (e.g. ``custom_limits(neurons_per_core=64)``), each marked as the caller's."""
    unknown = set(values) - set(base)
    if unknown:
        raise SpikeforgeError(f"unknown placement limit(s) {', '.join(sorted(unknown))}; known: {', '.join(base)}")
    out = dict(base)
    for name, value in values.items():
        out[name] = replace(base[name], value=value, evidence="our assumption",
                            note=f"set by the caller (the table's value: {base[name].value})")
    return out


def synapse_bits(conn: LoihiConnection, limits: Mapping[str, Limit] = LOIHI2) -> int:
    """Bits one synapse of ``conn`` takes in core memory: the table's ``synapse_bits`` (8: the compiled mantissa,
    7 bits and a sign when mixed-sign, an 8-bit magnitude otherwise), whatever the connection."""
    limit = limits.get("synapse_bits")
    return int(limit.value if limit is not None and limit.value is not None else SYNAPSE_BITS)


def _conv_geometry(conn: LoihiConnection, layer: LoihiLayer) -> tuple[int, int, int]:
    c_in, h, w = conn.in_shape
    kh, kw = conn.weight.shape[2:]
    ho = (h + 2 * conn.padding[0] - conn.dilation[0] * (kh - 1) - 1) // conn.stride[0] + 1
    wo = (w + 2 * conn.padding[1] - conn.dilation[1] * (kw - 1) - 1) // conn.stride[1] + 1
    if conn.weight.shape[0] * ho * wo != layer.size:
        raise SpikeforgeError(f"layer {layer.name}: its conv connection from {conn.source} gives "
                              f"{conn.weight.shape[0]}x{ho}x{wo} outputs for {layer.size} neurons; recompile")
    return conn.weight.shape[0], ho, wo


def _conv_kwargs(conn: LoihiConnection) -> dict[str, Any]:
    return {"stride": conn.stride, "padding": conn.padding, "dilation": conn.dilation, "groups": conn.groups}


def _mask(conn: LoihiConnection) -> torch.Tensor:
    return torch.as_tensor(conn.weight != 0, dtype=torch.float64)


def incoming_synapses(conn: LoihiConnection, layer: LoihiLayer) -> np.ndarray:
    """Synapses of ``conn`` into each neuron of ``layer`` (flat torch order): nonzero weights (conv: in-bounds taps)."""
    if conn.kind == "dense":
        return np.count_nonzero(conn.weight, axis=1).astype(np.int64)
    _conv_geometry(conn, layer)
    ones = torch.ones(1, *conn.in_shape, dtype=torch.float64)
    counts = F.conv2d(ones, _mask(conn), **_conv_kwargs(conn))
    return np.rint(counts.numpy()).astype(np.int64).reshape(-1)


def _reach(conn: LoihiConnection, layer: LoihiLayer, start: int, stop: int) -> np.ndarray:
    """Which source neurons of ``conn`` have a synapse into neurons ``start:stop`` of ``layer`` (bool, flat)."""
    if conn.kind == "dense":
        return (conn.weight[start:stop] != 0).any(axis=0)
    c_out, ho, wo = _conv_geometry(conn, layer)
    target = torch.zeros(c_out * ho * wo, dtype=torch.float64)
    target[start:stop] = 1.0
    # the adjoint of the convolution: every input that reaches a marked output, through a nonzero tap
    back = torch.nn.grad.conv2d_input((1, *conn.in_shape), _mask(conn), target.reshape(1, c_out, ho, wo),
                                      **_conv_kwargs(conn))
    return back.numpy().reshape(-1) > 0.5


@dataclass
class Core:
    """One core: the neurons ``start:stop`` of ``layer`` (``"input"``: input neurons placed on chip) and what they
    hold; on chip ``chip``, in tile ``tile`` (slot ``slot`` of its ``cores_per_tile``), the tile at ``row``, ``col``
    of the mesh."""

    index: int
    layer: str
    start: int
    stop: int
    synapses: int
    memory_bytes: int
    chip: int = 0
    row: int = 0
    col: int = 0
    fan_in_axons: int = 0
    fan_out_axons: int = 0
    tile: int = 0
    slot: int = 0

    @property
    def neurons(self) -> int:
        return self.stop - self.start

    def as_dict(self) -> dict[str, Any]:
        return {"core": self.index, "chip": self.chip, "tile": self.tile, "slot": self.slot, "row": self.row,
                "col": self.col, "layer": self.layer,
                "neurons": [self.start, self.stop], "synapses": self.synapses, "memory_bytes": self.memory_bytes,
                "fan_in_axons": self.fan_in_axons, "fan_out_axons": self.fan_out_axons}


@dataclass
class _Routes:
    """Per source neuron: distinct destination cores, their summed hops (east-west, north-south), how many are on
    another chip, and whether its own core is one of them."""

    cores: np.ndarray
    hops_east_west: np.ndarray
    hops_north_south: np.ndarray
    chip_crossing: np.ndarray
    same_core: np.ndarray

    @property
    def hops(self) -> np.ndarray:
        return self.hops_east_west + self.hops_north_south


@dataclass
class Placement:
    """The cores of every layer (``layers[name]``: core indices, in neuron order), the cores, and the routes
    (per source population, ``"input"`` included) that :func:`traffic` prices spikes with."""

    limits: dict[str, Limit]
    max_chips: int
    cores: list[Core]
    layers: dict[str, list[int]]
    routes: dict[str, _Routes] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def chips(self) -> int:
        return max((c.chip for c in self.cores), default=-1) + 1

    def core_of(self, layer: str) -> np.ndarray:
        """The core index of every neuron of ``layer`` (flat torch order)."""
        return np.concatenate([np.full(self.cores[k].neurons, k, dtype=np.int64) for k in self.layers[layer]])

    def report(self) -> dict[str, Any]:
        layers = {}
        for name, ids in self.layers.items():
            cores = [self.cores[k] for k in ids]
            layers[name] = {
                "cores": len(cores), "neurons": sum(c.neurons for c in cores),
                "chips": sorted({c.chip for c in cores}),
                "neurons_per_core_max": max(c.neurons for c in cores),
                "synapses_per_core_max": max(c.synapses for c in cores),
                "memory_bytes_per_core_max": max(c.memory_bytes for c in cores),
                "fan_in_axons_per_core_max": max(c.fan_in_axons for c in cores),
                "fan_out_axons_per_core_max": max(c.fan_out_axons for c in cores),
                "synapses": sum(c.synapses for c in cores),
            }
        return {"limits": {k: v.as_dict() for k, v in self.limits.items()}, "layers": layers,
                "cores": [c.as_dict() for c in self.cores], "cores_used": len(self.cores), "chips": self.chips,
                "max_chips": self.max_chips, "synapse_rule": SYNAPSE_RULE,
                "grid": "cores in layer order, chip by chip; cores_per_tile cores per tile; tiles row by row in snake "
                        "order", "input_on_chip": INPUT in self.layers,
                "notes": list(self.notes)}


def _value(limits: Mapping[str, Limit], name: str) -> int | None:
    if name not in limits:
        raise SpikeforgeError(f"the placement limits lack {name!r}; start from LOIHI2 (custom_limits)")
    return limits[name].value


def _fan_in(layer: LoihiLayer, start: int, stop: int) -> int:
    """Distinct source neurons (summed over source populations) with a synapse into ``start:stop``."""
    by_source: dict[str, np.ndarray] = {}
    for conn in layer.connections:
        reach = _reach(conn, layer, start, stop)
        by_source[conn.source] = reach | by_source[conn.source] if conn.source in by_source else reach
    return int(sum(int(r.sum()) for r in by_source.values()))


def _bounded(start: int, stop: int, prefix: np.ndarray, limit: int) -> int:
    """The largest ``stop' <= stop`` with ``prefix[stop'] - prefix[start] <= limit`` (``prefix``: cumulative sums)."""
    return min(stop, int(np.searchsorted(prefix, prefix[start] + limit, side="right")) - 1)


def _fan_out_limited(name: str, size: int, slices: list[tuple[int, int, int, int]], fan_out: np.ndarray,
                     limit: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of ``slices`` cut further so that no core sends to more than ``limit`` (neuron, destination
    core) pairs."""
    if not size:
        return [(start, stop) for start, stop, _, _ in slices]
    worst = int(fan_out.argmax())
    if fan_out[worst] > limit:
        raise SpikeforgeError(f"neuron {worst} of {name} sends to {int(fan_out[worst]):,} cores, more than the "
                              f"{limit:,} fan-out axons of one core; make the layers after it smaller")
    prefix = np.concatenate([[0], np.cumsum(fan_out)])
    out = []
    for start, stop, _, _ in slices:
        while start < stop:
            cut = _bounded(start, stop, prefix, limit)
            out.append((start, cut))
            start = cut
    return out


def _destinations(net: LoihiNetwork, source: str, slices: Mapping[str, list[tuple[int, int, int, int]]]) -> np.ndarray:
    """Per neuron of ``source``: the destination cores it reaches (feed-forward connections; the slices given)."""
    size = _population_size(net, source)
    count = np.zeros(size, dtype=np.int64)
    for layer in net.layers:
        conns = [c for c in layer.connections if c.source == source and c.source != layer.name]
        for start, stop, _, _ in slices.get(layer.name, []) if conns else []:
            reach = np.zeros(size, dtype=bool)
            for conn in conns:
                reach |= _reach(conn, layer, start, stop)
            count += reach
    return count


def _synapse_counts(layer: LoihiLayer, limits: Mapping[str, Limit]) -> tuple[np.ndarray, np.ndarray]:
    """Incoming synapses and their bits, per neuron of ``layer``."""
    synapses = np.zeros(layer.size, dtype=np.int64)
    bits = np.zeros(layer.size, dtype=np.int64)
    for conn in layer.connections:
        count = incoming_synapses(conn, layer)
        synapses += count
        bits += count * synapse_bits(conn, limits)
    return synapses, bits


def _slices(layer: LoihiLayer, limits: Mapping[str, Limit]) -> list[tuple[int, int, int, int]]:
    """``(start, stop, synapses, bits)`` of each core of ``layer``: greedy, each slice as large as the limits allow."""
    n = layer.size
    synapses, bits = _synapse_counts(layer, limits)
    capacity = 8 * int(_value(limits, "synaptic_memory_per_core") or 0)
    per_core = int(_value(limits, "neurons_per_core") or n)
    fan_in_limit = _value(limits, "fan_in_axons_per_core")
    worst = int(bits.argmax()) if n else 0
    if n and capacity and bits[worst] > capacity:
        raise SpikeforgeError(
            f"neuron {worst} of layer {layer.name} has {int(synapses[worst]):,} incoming synapses, "
            f"{math.ceil(bits[worst] / 8):,} bytes at {SYNAPSE_BITS} bits each, more than one core's synaptic memory "
            f"({capacity // 8:,} bytes); no split of the layer can hold it; make the layers before it smaller or "
            "their connections sparser")
    prefix = np.concatenate([[0], np.cumsum(bits)])
    out = []
    start = 0
    while start < n:
        stop = min(start + per_core, n)
        if capacity:
            stop = min(stop, int(np.searchsorted(prefix, prefix[start] + capacity, side="right")) - 1)
        if fan_in_limit is not None and _fan_in(layer, start, stop) > fan_in_limit:
            if _fan_in(layer, start, start + 1) > fan_in_limit:
                raise SpikeforgeError(
                    f"neuron {start} of layer {layer.name} reads {_fan_in(layer, start, start + 1):,} source "
                    f"neurons, more than the {fan_in_limit:,} fan-in axons of one core; make the layers before it "
                    "smaller")
            low, high = start + 1, stop   # fits at low, not at high
            while high - low > 1:
                mid = (low + high) // 2
                low, high = (mid, high) if _fan_in(layer, start, mid) <= fan_in_limit else (low, mid)
            stop = low
        out.append((start, stop, int(synapses[start:stop].sum()), int(prefix[stop] - prefix[start])))
        start = stop
    return out


def _recount(layer: LoihiLayer, limits: Mapping[str, Limit],
             slices: list[tuple[int, int]]) -> list[tuple[int, int, int, int]]:
    """``(start, stop, synapses, bits)`` of re-cut slices of ``layer``."""
    synapses, bits = _synapse_counts(layer, limits)
    return [(start, stop, int(synapses[start:stop].sum()), int(bits[start:stop].sum())) for start, stop in slices]


def _grid(index: int, limits: Mapping[str, Limit]) -> tuple[int, int, int, int, int]:
    """``(chip, tile, slot, row, col)`` of core ``index``: chips in turn; on a chip ``cores_per_tile`` cores per tile,
    tiles row by row in snake order."""
    per_chip = int(_value(limits, "cores_per_chip") or 1)
    per_tile = int(limits["cores_per_tile"].value or 1) if "cores_per_tile" in limits else 1
    cols = int(_value(limits, "core_grid_cols") or per_chip)
    chip, k = divmod(index, per_chip)
    tile, slot = divmod(k, per_tile)
    row, col = divmod(tile, cols)
    return chip, tile, slot, row, col if row % 2 == 0 else cols - 1 - col


def _population_size(net: LoihiNetwork, name: str) -> int:
    if name == INPUT:
        return int(math.prod(net.input_shape))
    return next(layer.size for layer in net.layers if layer.name == name)


def _route(net: LoihiNetwork, placement: Placement) -> None:
    """Fill ``placement.routes`` and every core's fan-in / fan-out axons from the connections."""
    x = np.array([c.chip * int(_value(placement.limits, "core_grid_cols") or 1) + c.col for c in placement.cores])
    y = np.array([c.row for c in placement.cores])
    chip = np.array([c.chip for c in placement.cores])
    for source in [INPUT, *(layer.name for layer in net.layers)]:
        size = _population_size(net, source)
        cores, east_west, north_south, crossing, local = (np.zeros(size, dtype=np.int64) for _ in range(5))
        own = placement.core_of(source) if source in placement.layers else None
        for layer in net.layers:
            conns = [c for c in layer.connections if c.source == source]
            for k in placement.layers[layer.name] if conns else []:
                core = placement.cores[k]
                reach = np.zeros(size, dtype=bool)
                for conn in conns:
                    reach |= _reach(conn, layer, core.start, core.stop)
                core.fan_in_axons += int(reach.sum())
                cores += reach
                if own is not None:
                    east_west += reach * np.abs(x[own] - x[k])
                    north_south += reach * np.abs(y[own] - y[k])
                    crossing += reach & (chip[own] != chip[k])
                    local += reach & (own == k)
        placement.routes[source] = _Routes(cores, east_west, north_south, crossing, local)
        if own is not None:
            for k, out in enumerate(np.bincount(own, weights=cores, minlength=len(placement.cores))):
                placement.cores[k].fan_out_axons += int(out)


def place(net: LoihiNetwork, limits: Mapping[str, Limit] = LOIHI2, max_chips: int | None = None) -> Placement:
    """Split every population over cores under ``limits`` and lay the cores on chips; see the module docstring.

    ``max_chips``: how many chips the system has (default: the table's ``chips_per_system``, Kapoho Point's 8;
    :data:`HALA_POINT_CHIPS` for Hala Point). Raises :class:`SpikeforgeError` when a neuron cannot fit one core
    or the network needs more chips.
    """
    limits = dict(limits)
    per_chip = int(_value(limits, "cores_per_chip") or 0)
    rows, cols = _value(limits, "core_grid_rows"), _value(limits, "core_grid_cols")
    per_tile = int(limits["cores_per_tile"].value or 1) if "cores_per_tile" in limits else 1
    if not per_chip or not rows or not cols or rows * cols * per_tile < per_chip:
        raise SpikeforgeError(f"the mesh ({rows} x {cols} tiles of {per_tile} core(s)) must hold the {per_chip} cores "
                              "of a chip; fix the limits")
    max_chips = int(_value(limits, "chips_per_system") or 1) if max_chips is None else int(max_chips)
    if max_chips < 1:
        raise SpikeforgeError(f"max_chips must be at least 1, got {max_chips}")
    sliced: dict[str, list[tuple[int, int, int, int]]] = {layer.name: _slices(layer, limits) for layer in net.layers}
    input_per_core = limits["input_neurons_per_core"].value if "input_neurons_per_core" in limits else None
    fan_out_limit = _value(limits, "fan_out_axons_per_core")
    # Fan-out: a core's (neuron, destination core) pairs depend on how its destinations are sliced, which does not
    # depend on it: cut the populations last to first (a layer's destinations come after it).
    order = [layer.name for layer in net.layers]
    if input_per_core:
        size = _population_size(net, INPUT)
        sliced[INPUT] = [(start, min(start + input_per_core, size), 0, 0) for start in range(0, size, input_per_core)]
        order.insert(0, INPUT)
    if fan_out_limit is not None:
        for name in reversed(order):
            cut = _fan_out_limited(name, _population_size(net, name), sliced[name],
                                   _destinations(net, name, sliced), fan_out_limit)
            layer = next((layer for layer in net.layers if layer.name == name), None)
            sliced[name] = [(a, b, 0, 0) for a, b in cut] if layer is None else _recount(layer, limits, cut)
    planned: list[tuple[str, list[tuple[int, int, int, int]]]] = [(name, sliced[name]) for name in order]
    needed = sum(len(slices) for _, slices in planned)
    chips = max(1, math.ceil(needed / per_chip))
    if chips > max_chips:
        largest = sorted(planned, key=lambda p: -len(p[1]))[:3]
        biggest = ", ".join(f"{name}: {len(slices):,}" for name, slices in largest)
        raise SpikeforgeError(
            f"the network needs {needed:,} cores ({biggest}"
            f"{', ...' if len(planned) > 3 else ''}), that is {chips:,} chips of {per_chip} cores; the system has "
            f"{max_chips:,} chip(s); make the layers smaller or sparser, or place on a larger system "
            f"(max_chips={HALA_POINT_CHIPS} for Hala Point)")
    cores: list[Core] = []
    layers: dict[str, list[int]] = {}
    for name, slices in planned:
        layers[name] = []
        for start, stop, synapses, bits in slices:
            index = len(cores)
            chip, tile, slot, row, col = _grid(index, limits)
            cores.append(Core(index, name, start, stop, synapses, math.ceil(bits / 8), chip, row, col,
                              tile=tile, slot=slot))
            layers[name].append(index)
    placement = Placement(limits, max_chips, cores, layers)
    if chips > 1:
        placement.notes.append(f"the network needs {needed:,} cores: placed on {chips} chips of {per_chip} cores "
                               "(spikes between chips are counted as chip-crossing packets)")
    _route(net, placement)
    fan_out = _value(limits, "fan_out_axons_per_core")
    over = [c for c in cores if fan_out is not None and c.fan_out_axons > fan_out]
    if over:
        worst = max(over, key=lambda c: c.fan_out_axons)
        raise SpikeforgeError(f"core {worst.index} (layer {worst.layer}, neurons {worst.start}:{worst.stop}) sends to "
                              f"{worst.fan_out_axons:,} (neuron, core) pairs, more than the {fan_out:,} fan-out axons "
                              "of one core; lower neurons_per_core or make the layers after it smaller")
    return placement


def _counts(array: Any, sample_axis: int, name: str, size: int) -> tuple[np.ndarray, int]:
    """Events per neuron summed over samples and steps, and the number of samples."""
    if hasattr(array, "detach"):
        array = array.detach().cpu().numpy()
    a = np.asarray(array)
    if a.ndim < 3 or int(math.prod(a.shape[2:])) != size:
        raise SpikeforgeError(f"{name}: expected [S, T, {size}] or [T, B, {size}] events, got shape {a.shape}")
    samples = int(a.shape[sample_axis])
    return np.count_nonzero(a.reshape(-1, size), axis=0).astype(np.int64), samples


def traffic(net: LoihiNetwork, placement: Placement, spikes: Mapping[str, Any], inputs: Any = None,
            sample_axis: int = 0) -> dict[str, Any]:
    """Spike traffic between cores measured from a run (the model: see the module docstring).

    ``spikes[name]``: a layer's spikes, ``[S, T, N]`` as a Lava run returns them (``sample_axis=0``) or
    ``[T, B, N]`` as :func:`~hardware.lava.emulate.emulate` does (``sample_axis=1``); ``inputs``: the graded
    input, ``[S, T, *input_shape]`` / ``[T, B, *input_shape]`` on the same axes (None: input packets not
    counted). Figures per inference are totals over all steps divided by the samples.
    """
    if sample_axis not in (0, 1):
        raise SpikeforgeError(f"sample_axis must be 0 ([S, T, N]) or 1 ([T, B, N]), got {sample_axis}")
    packets, east_west, north_south, crossing, same_core = 0, 0, 0, 0, 0
    by_layer: dict[str, int] = {}
    samples: int | None = None
    for layer in net.layers:
        routes = placement.routes[layer.name]
        if not routes.cores.any():
            continue
        if layer.name not in spikes:
            raise SpikeforgeError(f"traffic needs the spikes of layer {layer.name}, which the run did not record")
        counts, n = _counts(spikes[layer.name], sample_axis, f"spikes of layer {layer.name}", layer.size)
        samples = n if samples is None else samples
        by_layer[layer.name] = int(counts @ routes.cores)
        packets += by_layer[layer.name]
        east_west += int(counts @ routes.hops_east_west)
        north_south += int(counts @ routes.hops_north_south)
        crossing += int(counts @ routes.chip_crossing)
        same_core += int(counts @ routes.same_core)
    input_packets = None
    if inputs is not None:
        counts, n = _counts(inputs, sample_axis, "input", _population_size(net, INPUT))
        samples = n if samples is None else samples
        routes = placement.routes[INPUT]
        input_packets = int(counts @ routes.cores)
        east_west += int(counts @ routes.hops_east_west)
        north_south += int(counts @ routes.hops_north_south)
        crossing += int(counts @ routes.chip_crossing)
    n = max(samples or 1, 1)
    hops = east_west + north_south
    return {
        "model": "one packet per spike and distinct destination core (same core: a packet, 0 hops); hops: Manhattan "
                 "distance between tiles on the mesh, chips side by side; input: one packet per nonzero input value "
                 "and destination core, " + ("from its input core on chip (hops counted)" if INPUT in placement.layers
                                             else "from the host (no hops)"),
        "input_on_chip": INPUT in placement.layers,
        "samples": samples or 0,
        "packets_total": packets, "packets_per_inference": packets / n,
        "hops_total": hops, "hops_per_inference": hops / n,
        "hops_east_west_per_inference": east_west / n, "hops_north_south_per_inference": north_south / n,
        "packets_by_layer": {k: v / n for k, v in by_layer.items()},
        "chip_crossing_packets_total": crossing, "chip_crossing_packets_per_inference": crossing / n,
        "same_core_packets_per_inference": same_core / n,
        "input_packets_total": input_packets,
        "input_packets_per_inference": None if input_packets is None else input_packets / n,
        "input_payload_bits": INPUT_PAYLOAD_BITS,
    }
