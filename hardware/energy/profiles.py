"""Hardware profiles as data, and the pricing of operation counts.

A :class:`Profile` is a table of cited :class:`Constant` s (joules per operation, each with
its source, its evidence — measured on silicon, simulated before silicon, or modelled — and
its scope — a per-operation term or an all-in figure) and rules that say which constants
price which count of :mod:`hardware.energy.counting`::

    energy = sum over layers and counts of  count x sum(factor x constant)

A count with no rule is either ``covered`` (its cost is inside another constant, the profile
says why) or **unpriced**: listed beside the total, or an error with ``strict=True`` — never a
silent zero. An all-in constant (TrueNorth, the GPU) already contains routing, memory and
neuron updates, so a profile that has one may use no other constant.

Adding a profile takes a few lines::

    from hardware.energy.profiles import Constant, Profile, register_profile
    register_profile(Profile(
        "mychip", "My chip (Doe et al. 2024)",
        constants={"ac": Constant(2e-12, "Doe et al., JSSC 2024, Table 3", "measured on silicon", "per-operation")},
        rules={"synaptic_ops": {"ac": 1}}))
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from hardware.energy.counting import HARDWARE_KIND, SYNAPSE_KINDS, NetworkCounts
from hardware.energy.timing import TimingModel
from snn.errors import SpikeforgeError

EVIDENCE = ("measured on silicon", "calibrated to silicon by a third party", "simulated before silicon", "modelled")
SCOPES = ("per-operation", "per-event", "all-in")
UNITS = ("J", "s")
HARDWARE_COUNTS = ("neuron_visits", "soma_updates", "packets", "hops_east_west", "hops_north_south",
                   *(f"{kind}_synaptic_ops" for kind in SYNAPSE_KINDS))
PRICED = ("synaptic_ops", "macs", "neuron_updates", "active_updates", "inactive_updates", "spikes", "activations",
          "weight_reads", "state_reads", "state_writes", *HARDWARE_COUNTS)
MEMORY = "@memory"  # in a rule: the constant of the memory class that holds the array accessed (Profile.memory)
SPLIT_UPDATES = ("active_updates", "inactive_updates")
# Counts that are other forms of the same events: a profile prices one form of each group, the others are skipped.
FORMS = ((("synaptic_ops",), tuple(f"{kind}_synaptic_ops" for kind in SYNAPSE_KINDS)),
         (("neuron_updates",), SPLIT_UPDATES, ("neuron_visits",)))


@dataclass(frozen=True)
class Constant:
    """One cited energy: ``value`` joules per operation."""

    value: float
    source: str
    evidence: str
    scope: str
    unit: str = "J"
    note: str = ""

    def __post_init__(self) -> None:
        if self.unit not in UNITS:
            raise SpikeforgeError(f"constants are energies in joules (unit 'J') or latencies in seconds ('s'), got "
                                  f"{self.unit!r}; convert the value")
        if not (isinstance(self.value, (int, float)) and math.isfinite(self.value) and self.value >= 0):
            raise SpikeforgeError(f"a constant must be a finite number >= 0 {self.unit}, got {self.value!r}")
        if self.evidence not in EVIDENCE:
            raise SpikeforgeError(f"evidence {self.evidence!r} is not one of {', '.join(EVIDENCE)}")
        if self.scope not in SCOPES:
            raise SpikeforgeError(f"scope {self.scope!r} is not one of {', '.join(SCOPES)}")
        if not self.source.strip():
            raise SpikeforgeError("every energy constant needs its source (paper and table)")

    def as_dict(self) -> dict[str, Any]:
        return {"value": self.value, "unit": self.unit, "source": self.source, "evidence": self.evidence,
                "scope": self.scope, "note": self.note}


@dataclass(frozen=True)
class Profile:
    """A named set of constants and the rules that price counts with them.

    ``rules``: count -> {constant name (or ``MEMORY``): factor}. ``covered``: count -> why it
    needs no price of its own. ``memory``: ascending ``(capacity in bytes, constant name)``
    classes; a ``MEMORY`` term takes the smallest class that holds the array accessed (the
    layer's weights for weight reads, its neuron state otherwise). ``unpriced_terms``: costs
    the profile knows of but cannot price from counts (listed beside every total).

    A neuromorphic profile may also price a compiled network's **hardware events** (counts of
    kind ``"loihi"``: synaptic events by synapse kind, soma visits and updates, spikes, packets
    and hops on a core placement, :mod:`hardware.lava.activity`) with ``event_rules`` /
    ``event_covered`` / ``event_unpriced``; ``placement`` names the chip table those events are
    placed on (``"loihi1"``, ``"loihi2"``) and ``timing`` the latency model
    (:mod:`hardware.energy.timing`). A profile with ``rules = {}`` prices hardware events only.
    """

    name: str
    title: str
    constants: Mapping[str, Constant]
    rules: Mapping[str, Mapping[str, float]]
    covered: Mapping[str, str] = field(default_factory=dict)
    memory: tuple[tuple[float, str], ...] = ()
    unpriced_terms: Mapping[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    event_rules: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    event_covered: Mapping[str, str] = field(default_factory=dict)
    event_unpriced: Mapping[str, str] = field(default_factory=dict)
    placement: str = ""
    timing: TimingModel | None = None

    def __post_init__(self) -> None:
        where = f"profile {self.name!r}"
        for rules in (self.rules, self.event_rules):
            for count, terms in rules.items():
                if count not in PRICED:
                    raise SpikeforgeError(f"{where} prices {count!r}, which is not a count; counts: "
                                          f"{', '.join(PRICED)}")
                for constant in terms:
                    if constant == MEMORY and not self.memory:
                        raise SpikeforgeError(f"{where} prices {count!r} by memory size but defines no memory "
                                              "classes")
                    if constant != MEMORY and constant not in self.constants:
                        raise SpikeforgeError(f"{where} prices {count!r} with constant {constant!r}, which the "
                                              f"profile does not define; define it in constants (known: "
                                              f"{', '.join(self.constants)})")
                    if constant != MEMORY and self.constants[constant].unit != "J":
                        raise SpikeforgeError(f"{where} prices {count!r} with {constant!r}, which is not an energy")
            for group in FORMS:
                used = [form for form in group if any(k in rules for k in form)]
                if len(used) > 1:
                    raise SpikeforgeError(f"{where} prices the same events in two forms "
                                          f"({' / '.join('+'.join(f) for f in used)}); keep one of them")
        for _, constant in self.memory:
            if constant not in self.constants:
                raise SpikeforgeError(f"{where} has memory class {constant!r} but no such constant")
        if (self.event_rules or self.timing) and not self.placement:
            raise SpikeforgeError(f"{where} prices hardware events but names no placement table")
        all_in = [name for name, c in self.constants.items() if c.scope == "all-in"]
        if all_in:
            used = {c for terms in self.rules.values() for c in terms}
            if len(all_in) > 1 or used - {all_in[0]}:
                raise SpikeforgeError(f"{where}: the all-in constant {all_in[0]!r} already contains routing, memory "
                                      f"and neuron updates; it must not be combined with other terms "
                                      f"({', '.join(sorted(used - {all_in[0]}) or all_in[1:])})")

    @property
    def prices_events(self) -> bool:
        """Whether the profile prices a compiled network's hardware events (and so wants them)."""
        return bool(self.event_rules)

    @property
    def all_in(self) -> bool:
        return any(c.scope == "all-in" for c in self.constants.values())

    def memory_constant(self, size_bytes: float) -> str:
        for capacity, constant in self.memory:
            if size_bytes <= capacity:
                return constant
        raise SpikeforgeError(f"profile {self.name!r} has no memory class for an array of {size_bytes:.0f} bytes")

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "title": self.title, "all_in": self.all_in,
                "constants": {k: c.as_dict() for k, c in self.constants.items()},
                "rules": {k: dict(v) for k, v in self.rules.items()}, "covered": dict(self.covered),
                "memory": [list(m) for m in self.memory], "unpriced_terms": dict(self.unpriced_terms),
                "event_rules": {k: dict(v) for k, v in self.event_rules.items()},
                "event_covered": dict(self.event_covered), "event_unpriced": dict(self.event_unpriced),
                "placement": self.placement, "timing": None if self.timing is None else self.timing.describe(),
                "notes": list(self.notes)}


@dataclass
class Estimate:
    """Energy of one inference of one network on one profile."""

    profile: Profile
    total_j: float
    by_layer: dict[str, float]
    by_term: dict[str, float]
    unpriced: list[dict[str, Any]]
    covered: dict[str, str]
    counts_kind: str = "snn"

    @property
    def by_component(self) -> dict[str, float]:
        """Energy by hardware component, as SANA-FE reports it: synapse, soma, network (and other)."""
        out: dict[str, float] = {}
        for term, joules in self.by_term.items():
            part = COMPONENT.get(term.split(" (on ")[0], "other")
            out[part] = out.get(part, 0.0) + joules
        return out

    @property
    def complete(self) -> bool:
        """True when every count the network has is priced or covered."""
        return not any(item.get("count") is not None for item in self.unpriced)

    def as_dict(self) -> dict[str, Any]:
        return {"profile": self.profile.name, "energy_per_inference_j": self.total_j, "complete": self.complete,
                "counts": "hardware events" if self.counts_kind == HARDWARE_KIND else "simulated operations",
                "by_layer_j": self.by_layer, "by_term_j": self.by_term, "by_component_j": self.by_component,
                "unpriced": self.unpriced,
                "covered": self.covered, "notes": list(self.profile.notes)}


def _price_of(profile: Profile, terms: Mapping[str, float], size_bytes: float) -> float:
    total = 0.0
    for name, factor in terms.items():
        constant = profile.memory_constant(size_bytes) if name == MEMORY else name
        total += factor * profile.constants[constant].value
    return total


def price(counts: NetworkCounts, profile: Profile, strict: bool = False, fallback: Profile | None = None) -> Estimate:
    """Price per-inference ``counts`` on ``profile`` (see the module docstring).

    ``fallback``: a count ``profile`` cannot price (e.g. the MACs of a direct-encoded first
    layer on Loihi) is priced on this profile instead — as if that layer ran off-chip — and
    reported as such (term ``"macs (on cmos45)"``); off-chip MACs also pay the fallback's
    weight reads. Not allowed for an all-in profile (nothing may be added on top of it).
    """
    if fallback is not None and profile.all_in:
        raise SpikeforgeError(f"profile {profile.name!r} is all-in: nothing may be added on top of it, so it takes "
                              "no fallback profile; drop the fallback")
    events = counts.kind == HARDWARE_KIND
    if events and not profile.prices_events:
        raise SpikeforgeError(f"profile {profile.name!r} prices simulated operations, not a compiled network's "
                              "hardware events; price the simulation's counts with it")
    if not events and not profile.rules:
        raise SpikeforgeError(f"profile {profile.name!r} prices a compiled network's hardware events only (packets, "
                              "soma visits, synapse kinds on a core placement); count them with "
                              "hardware.lava.activity (snn energy and snn deploy do)")
    rules = profile.event_rules if events else profile.rules
    covered_rules = profile.event_covered if events else profile.covered
    skipped = _other_forms(rules)
    by_layer: dict[str, float] = {}
    by_term: dict[str, float] = {}
    unpriced: list[dict[str, Any]] = []
    covered: dict[str, str] = {}
    for layer in counts.layers:
        energy = 0.0
        for count, value in layer.priced_counts().items():
            if value == 0 or count in skipped:
                continue
            if count in rules:
                size = layer.weight_bytes if count == "weight_reads" else layer.state_bytes
                joules = value * _price_of(profile, rules[count], size)
                energy += joules
                by_term[count] = by_term.get(count, 0.0) + joules
            elif count in covered_rules:
                covered[count] = covered_rules[count]
            elif fallback is not None and count in fallback.rules:
                size = layer.weight_bytes if count in ("macs", "weight_reads") else layer.state_bytes
                joules = value * _price_of(fallback, fallback.rules[count], size)
                if count == "macs" and "weight_reads" in fallback.rules:
                    joules += value * _price_of(fallback, fallback.rules["weight_reads"], layer.weight_bytes)
                energy += joules
                term = f"{count} (on {fallback.name})"
                by_term[term] = by_term.get(term, 0.0) + joules
            else:
                if strict:
                    raise SpikeforgeError(f"profile {profile.name!r} has no constant for {count!r} "
                                          f"({value:g} per inference in layer {layer.name!r}); add a rule for it to "
                                          "the profile, choose another profile, or drop strict to list it as unpriced")
                unpriced.append({"layer": layer.name, "count": count, "value": value,
                                 "reason": f"profile {profile.name!r} has no constant for {count!r}"})
        by_layer[layer.name] = energy
    terms = profile.event_unpriced if events else profile.unpriced_terms
    unpriced += [{"layer": None, "count": None, "term": term, "reason": reason} for term, reason in terms.items()]
    return Estimate(profile, sum(by_layer.values()), by_layer, by_term, unpriced, covered, counts.kind)


def _other_forms(rules: Mapping[str, Any]) -> set[str]:
    """Counts to skip: in every group of :data:`FORMS`, the forms the rules do not use (the first form is kept
    when none is used, so that unpriced events are listed once)."""
    skipped: set[str] = set()
    for group in FORMS:
        used = [form for form in group if any(k in rules for k in form)] or [group[0]]
        skipped |= {count for form in group if form not in used for count in form}
    return skipped


COMPONENT = {**{c: "synapse" for c in ("synaptic_ops", "macs", "weight_reads",
                                       *(f"{k}_synaptic_ops" for k in SYNAPSE_KINDS))},
             **{c: "soma" for c in ("neuron_updates", "active_updates", "inactive_updates", "neuron_visits",
                                    "soma_updates", "spikes", "activations", "state_reads", "state_writes")},
             **{c: "network" for c in ("packets", "hops_east_west", "hops_north_south")}}


# ---- the constants ------------------------------------------------------------------------

pJ = 1e-12
HOROWITZ = ("Horowitz, 'Computing's Energy Problem (and what we can do about it)', ISSCC 2014, "
            "energy table for 45 nm, 0.9 V")
# Horowitz, ISSCC 2014, 45 nm 0.9 V table: modelled figures, one operation each.
HOROWITZ_45NM: dict[str, Constant] = {
    "fp32_add": Constant(0.9 * pJ, HOROWITZ + " (32b float add 0.9 pJ)", "modelled", "per-operation"),
    "fp32_mult": Constant(3.7 * pJ, HOROWITZ + " (32b float mult 3.7 pJ)", "modelled", "per-operation"),
    "int8_add": Constant(0.03 * pJ, HOROWITZ + " (8b int add 0.03 pJ)", "modelled", "per-operation"),
    "int8_mult": Constant(0.2 * pJ, HOROWITZ + " (8b int mult 0.2 pJ)", "modelled", "per-operation"),
    "int32_add": Constant(0.1 * pJ, HOROWITZ + " (32b int add 0.1 pJ)", "modelled", "per-operation"),
    "int32_mult": Constant(3.1 * pJ, HOROWITZ + " (32b int mult 3.1 pJ)", "modelled", "per-operation"),
    "sram_8kb": Constant(10 * pJ, HOROWITZ + " (64-bit read, 8 KB SRAM: 10 pJ)", "modelled", "per-operation"),
    "sram_32kb": Constant(20 * pJ, HOROWITZ + " (64-bit read, 32 KB SRAM: 20 pJ)", "modelled", "per-operation"),
    "sram_1mb": Constant(100 * pJ, HOROWITZ + " (64-bit read, 1 MB SRAM: 100 pJ)", "modelled", "per-operation"),
    "dram": Constant(1300 * pJ, HOROWITZ + " (64-bit DRAM access 1.3-2.6 nJ)", "modelled", "per-operation",
                     note="the low end of the 1.3-2.6 nJ range (optimistic)"),
}
SRAM_LADDER = ((8 * 1024, "sram_8kb"), (32 * 1024, "sram_32kb"), (1024 * 1024, "sram_1mb"), (math.inf, "dram"))

CMOS45 = Profile(
    "cmos45", "45 nm CMOS, fp32 (Horowitz, ISSCC 2014)",
    constants=HOROWITZ_45NM,
    rules={"synaptic_ops": {"fp32_add": 1}, "macs": {"fp32_mult": 1, "fp32_add": 1},
           "neuron_updates": {"fp32_mult": 1, "fp32_add": 2}, "activations": {"fp32_add": 1},
           "spikes": {"sram_8kb": 1}, "weight_reads": {MEMORY: 1}, "state_reads": {MEMORY: 1},
           "state_writes": {MEMORY: 1}},
    memory=SRAM_LADDER,
    notes=("an SNN accumulate (AC) is one fp32 add; an ANN multiply-accumulate is one fp32 mult + add (4.6 pJ)",
           "a neuron update is one fp32 mult (leak) + two adds (integrate, threshold compare); an ANN "
           "activation one add (the compare)",
           "memory rule: every 32-bit word access is one 64-bit SRAM access of the smallest Horowitz class "
           "(8 KB, 32 KB, 1 MB) that holds the array accessed (the layer's fp32 weights, or its neuron state); "
           "larger arrays are priced as DRAM (1.3 nJ, the low end); writes cost as much as reads; "
           "a spike is one write into an 8 KB event queue",
           "one weight read per executed operation (no reuse in registers): an upper bound for both networks"),
)

DAVIES = ("Davies et al., 'Loihi: A Neuromorphic Manycore Processor with On-Chip Learning', IEEE Micro 38(1), "
          "2018, Table 2 (p. 96), pre-silicon SDF and SPICE simulations")
# Davies et al., IEEE Micro 2018, Table 2: pre-silicon simulation, per operation.
LOIHI_TABLE2: dict[str, Constant] = {
    "synaptic_spike_op": Constant(23.6 * pJ, DAVIES + " (energy per synaptic spike op, min: 23.6 pJ)",
                                  "simulated before silicon", "per-operation",
                                  note="the MINIMUM in Table 2: the synaptic energy is a lower bound"),
    "neuron_update_active": Constant(81 * pJ, DAVIES + " (energy per neuron update, active: 81 pJ)",
                                     "simulated before silicon", "per-operation"),
    "neuron_update_inactive": Constant(52 * pJ, DAVIES + " (energy per neuron update, inactive: 52 pJ)",
                                       "simulated before silicon", "per-operation"),
    "within_tile_spike": Constant(1.7 * pJ, DAVIES + " (within-tile spike energy: 1.7 pJ)",
                                  "simulated before silicon", "per-operation"),
    "tile_hop_east_west": Constant(3.0 * pJ, DAVIES + " (energy per tile hop, E-W: 3.0 pJ)",
                                   "simulated before silicon", "per-operation",
                                   note="priced on a core placement (hardware events); unpriced otherwise"),
    "tile_hop_north_south": Constant(4.0 * pJ, DAVIES + " (energy per tile hop, N-S: 4.0 pJ)",
                                     "simulated before silicon", "per-operation",
                                     note="priced on a core placement (hardware events); unpriced otherwise"),
}
LOIHI_RULES = {"synaptic_ops": {"synaptic_spike_op": 1}, "active_updates": {"neuron_update_active": 1},
               "inactive_updates": {"neuron_update_inactive": 1}, "spikes": {"within_tile_spike": 1}}
LOIHI_COVERED = {"weight_reads": "the synapse read is part of the synaptic spike op",
                 "state_reads": "neuron state access is part of the neuron update",
                 "state_writes": "neuron state access is part of the neuron update"}
LOIHI_UNPRICED = {"tile_hops": "mesh hops (3.0 pJ E-W / 4.0 pJ N-S per hop, Table 2) need a placement of the layers "
                               "on cores; every spike is priced as within-tile only (a lower bound)"}
# The same table on a compiled network's hardware events: every packet is a within-tile spike, plus its tile hops.
LOIHI_EVENT_RULES = {"synaptic_ops": {"synaptic_spike_op": 1}, "active_updates": {"neuron_update_active": 1},
                     "inactive_updates": {"neuron_update_inactive": 1}, "packets": {"within_tile_spike": 1},
                     "hops_east_west": {"tile_hop_east_west": 1}, "hops_north_south": {"tile_hop_north_south": 1}}
LOIHI_EVENT_COVERED = {"weight_reads": "the synapse read is part of the synaptic spike op",
                       "soma_updates": "Table 2 prices every neuron update, active or inactive, whatever its work",
                       "spikes": "a spike costs its packets (within-tile spike energy per packet) and their hops"}
LOIHI_NOTES = ("23.6 pJ per synaptic spike op is the MINIMUM of Table 2 (pre-silicon simulation): a lower bound",
               "an update is 'active' when the neuron spikes in that step, 'inactive' otherwise (our reading of "
               "the table's active / inactive)",
               "on a compiled network's hardware events: one within-tile spike (1.7 pJ) per packet plus 3.0 / 4.0 pJ "
               "per east-west / north-south tile hop, on Loihi 1's tiles (placement loihi1)",
               "on simulated operations (a network that does not compile for Loihi): MACs (an analog, direct-encoded "
               "first layer) have no Loihi price: run that layer off-chip or use a spike encoder")

LOIHI = Profile("loihi", "Intel Loihi, pre-silicon lower bound (Davies et al., IEEE Micro 2018, Table 2)", LOIHI_TABLE2,
                LOIHI_RULES, LOIHI_COVERED, unpriced_terms=LOIHI_UNPRICED, notes=LOIHI_NOTES,
                event_rules=LOIHI_EVENT_RULES, event_covered=LOIHI_EVENT_COVERED, placement="loihi1")
LOIHI2_BORROWED = Profile(
    "loihi2-borrowed-loihi1", "Intel Loihi 2 priced with Loihi 1 figures (Intel publishes no Loihi 2 per-op energies)",
    LOIHI_TABLE2, LOIHI_RULES, LOIHI_COVERED, unpriced_terms=LOIHI_UNPRICED,
    notes=("Intel publishes no per-operation energies for Loihi 2: these are Loihi 1's Table 2 figures, borrowed",
           "on hardware events, placed on Loihi 2's cores (one router per core, placement loihi2)", *LOIHI_NOTES),
    event_rules=LOIHI_EVENT_RULES, event_covered=LOIHI_EVENT_COVERED, placement="loihi2")

# ---- Loihi calibrated to silicon: SANA-FE's architecture file ----------------------------------------------------
SANAFE_FILE = ("SANA-FE (github.com/SLAM-Lab/SANA-FE), arch/loihi.yaml, shipped as sanafe/examples/loihi.yaml in the "
               "sanafe 2.2.9 wheel (PyPI), identical to the repository's file at commit "
               "8951ab0711676a773261284d2e8c9d995156cb3d (sha256 359988170f66470d...)")
SANAFE_PAPER = ("Boyle et al., 'SANA-FE: Simulating Advanced Neuromorphic Architectures for Fast Exploration', "
                "IEEE TCAD 44(8), 2025: the Loihi description calibrated against measurements on Loihi silicon "
                "(reported: energy within 12%, latency within 25% on three applications)")
SANAFE_EVIDENCE = "calibrated to silicon by a third party"
# constant -> (the file's hardware section, unit name, attribute): the test reads each one back from the installed file.
SANAFE_KEYS: dict[str, tuple[str, str, str]] = {
    "dense_synapse": ("synapse", "loihi_dense_synapse", "energy_process_spike"),
    "sparse_synapse": ("synapse", "loihi_sparse_synapse", "energy_process_spike"),
    "conv_synapse": ("synapse", "loihi_conv_synapse", "energy_process_spike"),
    "dendrite_update": ("dendrite", "loihi_dendrites", "energy_update"),
    "neuron_access": ("soma", "loihi_lif", "energy_access_neuron"),
    "neuron_update": ("soma", "loihi_lif", "energy_update_neuron"),
    "spike_out": ("soma", "loihi_lif", "energy_spike_out"),
    "message_out": ("axon_out", "loihi_out", "energy_message_out"),
    "message_in": ("axon_in", "loihi_in", "energy_message_in"),
    "hop_east": ("tile", "loihi_tile", "energy_east_hop"),
    "hop_west": ("tile", "loihi_tile", "energy_west_hop"),
    "hop_north": ("tile", "loihi_tile", "energy_north_hop"),
    "hop_south": ("tile", "loihi_tile", "energy_south_hop"),
}
SANAFE_LATENCY_KEYS: dict[str, tuple[str, str, str]] = {
    "neuron_visit": ("soma", "loihi_lif", "latency_access_neuron"),
    "soma_update": ("soma", "loihi_lif", "latency_update_neuron"),
    "spike_out": ("soma", "loihi_lif", "latency_spike_out"),
    "message_out": ("axon_out", "loihi_out", "latency_message_out"),
    "message_in": ("axon_in", "loihi_in", "latency_message_in"),
    "synapse_dense": ("synapse", "loihi_dense_synapse", "latency_process_spike"),
    "synapse_sparse": ("synapse", "loihi_sparse_synapse", "latency_process_spike"),
    "synapse_conv": ("synapse", "loihi_conv_synapse", "latency_process_spike"),
    "dendrite_update": ("dendrite", "loihi_dendrites", "latency_update"),
    "hop_east_west": ("tile", "loihi_tile", "latency_east_hop"),
    "hop_north_south": ("tile", "loihi_tile", "latency_north_hop"),
}


def _sanafe(value: float, key: tuple[str, str, str], what: str, unit: str = "J", note: str = "") -> Constant:
    section, unit_name, attribute = key
    return Constant(value, f"{SANAFE_FILE}: {section} {unit_name}, {attribute} = {value:g} ({what}); {SANAFE_PAPER}",
                    SANAFE_EVIDENCE, "per-event", unit=unit, note=note)


SANAFE_LOIHI: dict[str, Constant] = {
    "dense_synapse": _sanafe(35.5 * pJ, SANAFE_KEYS["dense_synapse"], "per synaptic event, dense synapses"),
    "sparse_synapse": _sanafe(33.6 * pJ, SANAFE_KEYS["sparse_synapse"], "per synaptic event, sparse synapses"),
    "conv_synapse": _sanafe(24.0 * pJ, SANAFE_KEYS["conv_synapse"], "per synaptic event, convolutional synapses"),
    "dendrite_update": _sanafe(0.0, SANAFE_KEYS["dendrite_update"], "per synaptic event: the dendrite's accumulate"),
    "neuron_access": _sanafe(51.2 * pJ, SANAFE_KEYS["neuron_access"], "per neuron visited, every step"),
    "neuron_update": _sanafe(21.6 * pJ, SANAFE_KEYS["neuron_update"], "per visit in which the soma does work"),
    "spike_out": _sanafe(69.3 * pJ, SANAFE_KEYS["spike_out"], "per spike fired"),
    "message_out": _sanafe(111.0 * pJ, SANAFE_KEYS["message_out"], "per spike packet sent to a destination core"),
    "message_in": _sanafe(0.0, SANAFE_KEYS["message_in"], "per spike packet received"),
    "hop_east": _sanafe(3.0 * pJ, SANAFE_KEYS["hop_east"], "per east hop"),
    "hop_west": _sanafe(3.0 * pJ, SANAFE_KEYS["hop_west"], "per west hop"),
    "hop_north": _sanafe(4.2 * pJ, SANAFE_KEYS["hop_north"], "per north hop"),
    "hop_south": _sanafe(4.2 * pJ, SANAFE_KEYS["hop_south"], "per south hop"),
}
SANAFE_LATENCIES: dict[str, Constant] = {
    "neuron_visit": _sanafe(6.0e-9, SANAFE_LATENCY_KEYS["neuron_visit"], "per neuron visited", "s"),
    "soma_update": _sanafe(3.7e-9, SANAFE_LATENCY_KEYS["soma_update"], "per soma update", "s"),
    "spike_out": _sanafe(30.0e-9, SANAFE_LATENCY_KEYS["spike_out"], "per spike fired", "s"),
    "message_out": _sanafe(5.1e-9, SANAFE_LATENCY_KEYS["message_out"], "per packet sent", "s"),
    "message_in": _sanafe(16.0e-9, SANAFE_LATENCY_KEYS["message_in"], "per packet received", "s"),
    "synapse_dense": _sanafe(3.8e-9, SANAFE_LATENCY_KEYS["synapse_dense"], "per dense synaptic event", "s"),
    "synapse_sparse": _sanafe(4.7e-9, SANAFE_LATENCY_KEYS["synapse_sparse"], "per sparse synaptic event", "s"),
    "synapse_conv": _sanafe(3.1e-9, SANAFE_LATENCY_KEYS["synapse_conv"], "per convolutional synaptic event", "s"),
    "dendrite_update": _sanafe(0.0, SANAFE_LATENCY_KEYS["dendrite_update"], "per synaptic event", "s"),
    "hop_east_west": _sanafe(4.1e-9, SANAFE_LATENCY_KEYS["hop_east_west"], "per east or west hop", "s",
                             note="no time in the simple timing model (no network contention)"),
    "hop_north_south": _sanafe(6.5e-9, SANAFE_LATENCY_KEYS["hop_north_south"], "per north or south hop", "s",
                               note="no time in the simple timing model (no network contention)"),
}
# architecture: attributes: latency_sync {tiles in use: seconds} (sync_model: table)
SANAFE_BARRIER = ((1, 0.6e-6), (2, 1.0e-6), (4, 1.4e-6), (29, 1.8e-6))
SANAFE_TIMING = TimingModel(
    "SANA-FE simple timing model (src/schedule.cpp, schedule_messages_timestep_simple)",
    SANAFE_FILE + " (per-event latencies; architecture latency_sync table: 0.6 / 1.0 / 1.4 / 1.8 us from 1 / 2 / 4 / "
    "29 tiles in use)", SANAFE_LATENCIES, SANAFE_BARRIER)

LOIHI_CALIBRATED = Profile(
    "loihi-calibrated", "Intel Loihi, calibrated to silicon (SANA-FE's Loihi architecture, Boyle et al., TCAD 2025)",
    SANAFE_LOIHI, rules={},
    event_rules={"dense_synaptic_ops": {"dense_synapse": 1, "dendrite_update": 1},
                 "sparse_synaptic_ops": {"sparse_synapse": 1, "dendrite_update": 1},
                 "conv_synaptic_ops": {"conv_synapse": 1, "dendrite_update": 1},
                 "neuron_visits": {"neuron_access": 1}, "soma_updates": {"neuron_update": 1},
                 "spikes": {"spike_out": 1}, "packets": {"message_out": 1, "message_in": 1},
                 "hops_east_west": {"hop_east": 0.5, "hop_west": 0.5},
                 "hops_north_south": {"hop_north": 0.5, "hop_south": 0.5}},
    event_covered={"weight_reads": "the synapse read is part of the synaptic event"},
    placement="loihi1", timing=SANAFE_TIMING,
    notes=("every constant is SANA-FE's Loihi file's own (calibrated by its authors against measurements on Loihi "
           "silicon: energy within 12%, latency within 25% on their three applications); the file's header credits "
           "Davies et al. 2018's SPICE figures, whose values differ (e.g. 35.5 vs 23.6 pJ per dense synaptic event)",
           "every neuron is visited every step (51.2 pJ); a visit in which the soma does work (membrane not at rest, "
           "a message arrived, or a bias) adds 21.6 pJ, a spike 69.3 pJ; each packet (one per spike and destination "
           "core) 111 pJ; hops 3.0 pJ east-west, 4.2 pJ north-south (both directions of an axis cost the same in "
           "the file, so each hop is priced at the mean of the two)",
           "synapses: a Linear layer's are dense, a convolution's convolutional; graded input values are packets "
           "and synaptic events like spikes (SANA-FE's input neurons send binary spikes)",
           "placed on Loihi 1's cores as SANA-FE's file lays them out (32 tiles of 4 cores, 1,024 neurons per core, "
           "input neurons on cores of their own); latency: SANA-FE's simple timing model"))

MEROLLA = ("Merolla et al., 'A million spiking-neuron integrated circuit with a scalable communication network and "
           "interface', Science 345(6197), 2014")
TRUENORTH = Profile(
    "truenorth", "IBM TrueNorth (Merolla et al., Science 2014), all-in",
    # Merolla et al., Science 2014: 26 pJ per synaptic event = total chip power / synaptic events, one operating point.
    constants={"synaptic_event": Constant(26 * pJ, MEROLLA + " (26 pJ per synaptic event: total chip power over "
                                          "synaptic events at one operating point)", "measured on silicon", "all-in")},
    rules={"synaptic_ops": {"synaptic_event": 1}},
    covered={c: "inside the all-in 26 pJ per synaptic event (total chip power)"
             for c in ("neuron_updates", "spikes", "weight_reads", "state_reads", "state_writes")},
    notes=("26 pJ per synaptic event is an all-in figure (routing, memory, neuron updates inside): nothing is added",
           "measured at one operating point; other activity levels change the per-event energy"),
)

A100 = ("NVIDIA A100 Tensor Core GPU datasheet (SXM4): 19.5 TFLOP/s FP32 at 400 W max TDP -> 400 / 19.5e12 "
        "= 20.5 pJ per FLOP")
GPU = Profile(
    "gpu", "GPU, NVIDIA A100 SXM4 board power at peak FP32 throughput, all-in",
    # NVIDIA A100 datasheet: 400 W / 19.5 TFLOP/s = 20.5 pJ/FLOP, all-in board power at peak throughput.
    constants={"fp32_flop": Constant(400 / 19.5e12, A100, "modelled", "all-in",
                                     note="optimistic bound: peak throughput, real utilisation is lower")},
    rules={"macs": {"fp32_flop": 2}, "synaptic_ops": {"fp32_flop": 1}, "neuron_updates": {"fp32_flop": 3},
           "activations": {"fp32_flop": 1}},
    covered={c: "inside all-in board power" for c in ("spikes", "weight_reads", "state_reads", "state_writes")},
    notes=("all-in board power at peak FP32 throughput (20.5 pJ/FLOP, 41 pJ per MAC): an optimistic bound",
           "prices the counted operations; a dense GPU kernel executes every MAC whatever the sparsity"),
)

PROFILES: dict[str, Profile] = {}


def register_profile(profile: Profile, replace: bool = False) -> Profile:
    if profile.name in PROFILES and not replace:
        raise SpikeforgeError(f"a profile named {profile.name!r} exists; pick another name or pass replace=True")
    PROFILES[profile.name] = profile
    return profile


for _profile in (LOIHI, LOIHI_CALIBRATED, LOIHI2_BORROWED, CMOS45, TRUENORTH, GPU):
    register_profile(_profile)


def get_profile(name: str) -> Profile:
    if name not in PROFILES:
        raise SpikeforgeError(f"unknown energy profile {name!r}; known profiles: {', '.join(PROFILES)}")
    return PROFILES[name]


def parse_profiles(text: str) -> list[Profile]:
    """``"loihi,cmos45"`` -> the two profiles (unknown names are an error listing the known ones)."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise SpikeforgeError(f"--profile is empty; choose from {', '.join(PROFILES)}")
    return [get_profile(name) for name in dict.fromkeys(names)]
