"""Hardware profiles: cited constants, pricing = counts x constants, and every bad input an error."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hardware.energy.counting import count_operations
from hardware.energy.profiles import (
    HOROWITZ_45NM,
    MEMORY,
    PROFILES,
    SRAM_LADDER,
    Constant,
    Profile,
    get_profile,
    parse_profiles,
    price,
    register_profile,
)
from hardware.energy.report import estimate_json, layer_table, ratio
from snn import encoders
from snn.errors import SpikeforgeError
from snn.network import Sequential
from snn.neurons import LIF, Integrator


def _network_counts(encoding: str = "rate"):
    torch.manual_seed(0)
    model = Sequential(nn.Conv2d(1, 4, 3, stride=2, padding=1, bias=False), LIF(theta=0.2), nn.Flatten(),
                       nn.Linear(4 * 4 * 4, 5), Integrator(), input_shape=(1, 8, 8)).eval()
    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    inputs = encoders.rate(x, 6, generator=torch.Generator().manual_seed(2)) if encoding == "rate" \
        else encoders.direct(x, 6)
    return count_operations(model, inputs)[0]


def _by_hand(counts, profile: Profile) -> float:
    """Independent re-statement of the pricing rule: sum over layers and rules of count x constants."""
    split = "active_updates" in profile.rules
    total = 0.0
    for layer in counts.layers:
        values = layer.priced_counts()
        for count, terms in profile.rules.items():
            if count == "neuron_updates" and split:
                continue
            for name, factor in terms.items():
                if name == MEMORY:
                    size = layer.weight_bytes if count == "weight_reads" else layer.state_bytes
                    name = next(c for cap, c in profile.memory if size <= cap)
                total += values[count] * factor * profile.constants[name].value
    return total


@pytest.mark.parametrize("name", ["loihi", "loihi2-borrowed-loihi1", "cmos45", "truenorth", "gpu"])
def test_spike_input_network_is_priced_completely_as_counts_times_constants(name):
    counts = _network_counts("rate")
    profile = get_profile(name)
    estimate = price(counts, profile, strict=True)
    assert estimate.total_j > 0
    assert estimate.total_j == pytest.approx(_by_hand(counts, profile))
    assert estimate.total_j == pytest.approx(sum(estimate.by_layer.values()))
    assert estimate.complete
    for constant in profile.constants.values():
        assert constant.source and constant.evidence and constant.scope and constant.unit == "J"


def test_loihi_split_updates_and_its_caveats_are_reported():
    counts = _network_counts("rate")
    estimate = price(counts, get_profile("loihi"))
    lif = counts.layers[1]
    assert estimate.by_layer[lif.name] == pytest.approx(lif.spikes * 81e-12 + (lif.neuron_updates - lif.spikes) * 52e-12
                                                        + lif.spikes * 1.7e-12)
    report = estimate_json(counts, estimate)
    assert any("MINIMUM" in note for note in report["notes"])
    assert report["constants"]["synaptic_spike_op"]["evidence"] == "simulated before silicon"
    assert "Table 2" in report["constants"]["synaptic_spike_op"]["source"]
    assert [u["term"] for u in report["unpriced"]] == ["tile_hops"]
    assert "borrowed" in get_profile("loihi2-borrowed-loihi1").name


def test_a_count_the_profile_cannot_price_is_listed_or_an_error_never_zero():
    counts = _network_counts("direct")  # analog first layer: MACs
    macs = counts.layers[0].macs
    assert macs > 0
    with pytest.raises(SpikeforgeError, match="'loihi' has no constant for 'macs'"):
        price(counts, get_profile("loihi"), strict=True)
    estimate = price(counts, get_profile("loihi"))
    assert not estimate.complete
    assert {"layer": counts.layers[0].name, "count": "macs", "value": macs} == \
        {k: v for k, v in estimate.unpriced[0].items() if k in ("layer", "count", "value")}
    assert "unpriced on loihi: macs" in layer_table("SNN", counts, [estimate])
    fallback = price(counts, get_profile("loihi"), fallback=get_profile("cmos45"))
    cmos = get_profile("cmos45")
    off_chip = macs * (cmos.constants["fp32_mult"].value + cmos.constants["fp32_add"].value + cmos.constants[
        cmos.memory_constant(counts.layers[0].weight_bytes)].value)
    assert fallback.complete
    assert fallback.by_term["macs (on cmos45)"] == pytest.approx(off_chip)
    with pytest.raises(SpikeforgeError, match="all-in"):
        price(counts, get_profile("truenorth"), fallback=cmos)
    assert ratio(estimate, price(counts, cmos)) is None


def test_all_in_truenorth_adds_nothing_on_top():
    counts = _network_counts("rate")
    estimate = price(counts, get_profile("truenorth"), strict=True)
    assert estimate.total_j == pytest.approx(counts.total("synaptic_ops") * 26e-12)
    assert set(estimate.by_term) == {"synaptic_ops"}
    assert {"neuron_updates", "spikes", "weight_reads"} <= set(estimate.covered)
    assert get_profile("truenorth").constants["synaptic_event"].scope == "all-in"
    with pytest.raises(SpikeforgeError, match="must not be combined"):
        Profile("bad", "all-in plus a term", {"event": Constant(26e-12, "x", "measured on silicon", "all-in"),
                                             "hop": Constant(3e-12, "y", "modelled", "per-operation")},
                {"synaptic_ops": {"event": 1}, "spikes": {"hop": 1}})


def test_unknown_profile_lists_known_ones():
    with pytest.raises(SpikeforgeError, match="unknown energy profile 'loihi3'.*loihi, .*cmos45"):
        get_profile("loihi3")
    with pytest.raises(SpikeforgeError, match="unknown energy profile"):
        parse_profiles("loihi,nope")
    assert [p.name for p in parse_profiles("loihi, cmos45,loihi")] == ["loihi", "cmos45"]


def test_profile_missing_a_constant_is_refused_naming_it():
    with pytest.raises(SpikeforgeError, match="constant 'fp32_mult'"):
        Profile("half", "half a profile", {"fp32_add": HOROWITZ_45NM["fp32_add"]},
                {"macs": {"fp32_mult": 1, "fp32_add": 1}})
    with pytest.raises(SpikeforgeError, match="evidence"):
        Constant(1e-12, "somewhere", "rumour", "per-operation")
    with pytest.raises(SpikeforgeError, match="source"):
        Constant(1e-12, " ", "modelled", "per-operation")
    with pytest.raises(SpikeforgeError, match="not a count"):
        Profile("typo", "typo", {"a": HOROWITZ_45NM["fp32_add"]}, {"synops": {"a": 1}})


def test_a_user_adds_a_profile_in_a_few_lines():
    int8 = Profile("cmos45-int8-test", "45 nm CMOS, int8 weights, int32 accumulators", HOROWITZ_45NM,
                   {"synaptic_ops": {"int32_add": 1}, "macs": {"int8_mult": 1, "int32_add": 1},
                    "neuron_updates": {"int32_mult": 1, "int32_add": 2}, "spikes": {"sram_8kb": 1},
                    "weight_reads": {MEMORY: 0.25}, "state_reads": {MEMORY: 1}, "state_writes": {MEMORY: 1}},
                   memory=SRAM_LADDER)
    try:
        register_profile(int8)
        counts = _network_counts("direct")
        estimate = price(counts, get_profile("cmos45-int8-test"), strict=True)
        assert estimate.total_j == pytest.approx(_by_hand(counts, int8))
        assert estimate.total_j < price(counts, get_profile("cmos45"), strict=True).total_j
        with pytest.raises(SpikeforgeError, match="exists"):
            register_profile(int8)
    finally:
        PROFILES.pop("cmos45-int8-test", None)
