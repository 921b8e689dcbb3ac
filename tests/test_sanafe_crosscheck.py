"""Our calibrated Loihi profile against SANA-FE itself (``sanafe``, GPL-3.0; tests only).

1. Every constant of the ``loihi-calibrated`` profile and of its timing model equals the value in
   the architecture file of the installed ``sanafe`` package, and carries its source, evidence
   and scope.
2. The same network, the same input spikes and the same core mapping (our ``LOIHI1`` placement,
   built into SANA-FE by ``tests/sanafe_bridge.py``): our energy per component (synapse, soma,
   network), priced from our own hardware-event counts (:mod:`hardware.lava.activity`), equals
   SANA-FE's within 1%, and our latency per inference equals its simple timing model's within
   5%, on a small MLP spread over two rows of tiles and on a small convolutional network.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

sanafe = pytest.importorskip("sanafe")
yaml = pytest.importorskip("yaml")

from sanafe_bridge import run_sanafe  # noqa: E402  (after the skip: it imports sanafe)
from test_sanafe_bridge import _cnn, _mlp, _spikes  # noqa: E402

from hardware.energy.profiles import (  # noqa: E402
    SANAFE_BARRIER,
    SANAFE_EVIDENCE,
    SANAFE_KEYS,
    SANAFE_LATENCY_KEYS,
    get_profile,
    price,
)
from hardware.lava.activity import loihi_activity  # noqa: E402
from hardware.lava.compile import compile_network  # noqa: E402
from hardware.lava.placement import LOIHI1, custom_limits, place  # noqa: E402

ENERGY_TOLERANCE, LATENCY_TOLERANCE = 0.01, 0.05


def _architecture() -> dict:
    path = Path(sanafe.__file__).parent / "examples" / "loihi.yaml"
    return yaml.safe_load(path.read_text())["architecture"]


def _attribute(arch: dict, section: str, unit: str, attribute: str) -> float:
    """One attribute of the file: a tile's, or a core unit's (``section``: synapse, dendrite, soma, axon_in, ...)."""
    tile = arch["tile"][0]
    if section == "tile":
        return float(tile["attributes"][attribute])
    units = {u["name"].split("[")[0]: u for u in tile["core"][0][section]}
    return float(units[unit]["attributes"][attribute])


def test_every_calibrated_constant_is_the_one_in_sanafes_file():
    arch = _architecture()
    profile = get_profile("loihi-calibrated")
    assert set(profile.constants) == set(SANAFE_KEYS)
    for name, (section, unit, attribute) in SANAFE_KEYS.items():
        constant = profile.constants[name]
        assert constant.value == pytest.approx(_attribute(arch, section, unit, attribute), rel=1e-12), name
        assert constant.evidence == SANAFE_EVIDENCE and constant.scope == "per-event" and constant.unit == "J"
        assert "loihi.yaml" in constant.source and "sanafe 2.2.9" in constant.source and "TCAD" in constant.source
        assert attribute in constant.source
    timing = profile.timing
    assert timing is not None and set(timing.latencies) == set(SANAFE_LATENCY_KEYS)
    for name, (section, unit, attribute) in SANAFE_LATENCY_KEYS.items():
        latency = timing.latencies[name]
        assert latency.value == pytest.approx(_attribute(arch, section, unit, attribute), rel=1e-12), name
        assert latency.unit == "s" and latency.evidence == SANAFE_EVIDENCE and attribute in latency.source
    # the time-step barrier: the architecture's latency_sync table, by tiles in use
    table = arch["attributes"]["latency_sync"]
    assert arch["attributes"]["sync_model"] == "table"
    assert SANAFE_BARRIER == tuple(sorted((int(k), float(v)) for k, v in table.items()))
    # both directions of an axis cost the same: a hop per axis is priced at their mean without loss
    assert _attribute(arch, "tile", "", "energy_east_hop") == _attribute(arch, "tile", "", "energy_west_hop")
    assert _attribute(arch, "tile", "", "energy_north_hop") == _attribute(arch, "tile", "", "energy_south_hop")
    # the chip the placement table LOIHI1 lays out
    assert (arch["attributes"]["width"], arch["attributes"]["height"]) == (LOIHI1["core_grid_cols"].value,
                                                                        LOIHI1["core_grid_rows"].value)
    core = arch["tile"][0]["core"][0]
    assert int(core["attributes"]["max_neurons_supported"]) == LOIHI1["neurons_per_core"].value
    assert core["name"].endswith("[0..3]") and LOIHI1["cores_per_tile"].value == 4


def _compare(net, placement, q) -> tuple[dict, dict]:
    ours = loihi_activity(net, q, placement, delay=True)   # SANA-FE runs one continuous run per sample
    estimate = price(ours.counts, get_profile("loihi-calibrated"))
    timing = get_profile("loihi-calibrated").timing
    theirs = run_sanafe(net, placement, q)
    mine = estimate.by_component
    for part in ("synapse", "soma", "network"):
        assert theirs["energy"][part] > 0, part
        assert mine[part] == pytest.approx(theirs["energy"][part], rel=ENERGY_TOLERANCE), part
    assert estimate.total_j == pytest.approx(theirs["energy"]["total"], rel=ENERGY_TOLERANCE)
    assert theirs["energy"]["dendrite"] == 0 and estimate.complete
    latency = timing.latency(ours.cores)["latency_per_inference_s"]
    assert latency == pytest.approx(theirs["sim_time"], rel=LATENCY_TOLERANCE)
    return {"ours": mine, "latency": latency}, theirs


def test_mlp_energy_per_component_and_latency_equal_sanafes():
    """64-32-10 LIF on two-neuron cores: 14 tiles on both rows of the mesh (east-west and north-south hops)."""
    net = compile_network(_mlp())
    placement = place(net, custom_limits(LOIHI1, neurons_per_core=2, input_neurons_per_core=2))
    ours, theirs = _compare(net, placement, _spikes(net, 20, 3))
    assert theirs["mapping"]["mapped_tiles"] == 14 and theirs["total"]["hops"] > 0


def test_convolutional_network_energy_per_component_and_latency_equal_sanafes():
    net = compile_network(_cnn())
    placement = place(net, custom_limits(LOIHI1, neurons_per_core=32))
    ours, theirs = _compare(net, placement, _spikes(net, 16, 2, rate=0.4))
    assert theirs["mapping"]["synapses"]["conv"] > 0


def test_default_loihi1_placement_of_a_network_equals_sanafe_too():
    """The real table (1,024 neurons per core, input on its own core): the placement `snn energy` makes."""
    torch.manual_seed(3)
    net = compile_network(_mlp(hidden=48))
    _compare(net, place(net, LOIHI1), _spikes(net, 12, 2, rate=0.25))
