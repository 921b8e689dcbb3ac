"""Core placement under Loihi 2's per-core limits, and spike traffic against a brute-force count.

The Lava tests need ``.venv-lava`` (``make lava-env``) and skip without it; the rest run on torch alone.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from hardware.energy.profiles import SANAFE_TIMING, get_profile, price
from hardware.lava.activity import loihi_activity
from hardware.lava.compile import compile_network
from hardware.lava.driver import lava_python, run_in_lava
from hardware.lava.emulate import emulate
from hardware.lava.placement import (
    EVIDENCE,
    LOIHI1,
    LOIHI2,
    Limit,
    custom_limits,
    incoming_synapses,
    place,
    synapse_bits,
    traffic,
)
from snn.checkpoint import save_checkpoint
from snn.errors import SpikeforgeError
from snn.graph_network import GraphNetwork, Node
from snn.layers import Add
from snn.network import Sequential
from snn.neurons import IF, LIF, Integrator


def _lava_or_skip() -> None:
    try:
        lava_python()
    except SpikeforgeError:
        pytest.skip("the Lava environment .venv-lava is missing; build it with 'make lava-env'")


def _small_chain() -> Sequential:
    """Conv (stride 2, padding 1) -> conv (dilation 2, padding 2) -> dense -> recurrent dense -> readout."""
    torch.manual_seed(11)
    model = Sequential(nn.Conv2d(2, 4, 3, stride=2, padding=1), LIF(beta=0.9, theta=0.5, reset="zero"),
                       nn.Conv2d(4, 4, 3, padding=2, dilation=2), LIF(beta=0.9, theta=0.5, reset="zero"),
                       nn.Flatten(), nn.Linear(64, 12), LIF(beta=0.9, reset="zero", recurrent_features=12),
                       nn.Linear(12, 5), Integrator(beta=0.9), input_shape=(2, 7, 7)).eval()
    with torch.no_grad():
        model[0].weight.mul_(3.0)
        model[2].weight.mul_(3.0)
        model[5].weight.mul_(3.0)
        model[6].recurrent.weight.normal_(0, 0.4)
    return model


def _skip_graph() -> GraphNetwork:
    """A conv block with a delayed identity skip: the compiler adds a relay population."""
    torch.manual_seed(3)
    graph = GraphNetwork([
        Node("conv0", nn.Conv2d(1, 3, 3, padding=1), ("input",)),
        Node("if0", IF(theta=0.6, reset="zero"), ("conv0",)),
        Node("conv1", nn.Conv2d(3, 3, 3, padding=1), ("if0",)),
        Node("if1", IF(theta=0.6, reset="zero"), ("conv1",)),
        Node("conv2", nn.Conv2d(3, 3, 3, stride=2, padding=1), ("if1",)),
        Node("up", nn.Conv2d(3, 3, 1, stride=2), ("if0",)),
        Node("add", Add(), ("conv2", "up")),
        Node("if2", IF(theta=0.6, reset="zero"), ("add",)),
        Node("flat", nn.Flatten(), ("if2",)),
        Node("fc", nn.Linear(3 * 3 * 3, 4), ("flat",)),
        Node("out", Integrator(beta=1.0), ("fc",)),
    ], output="out", input_shape=(1, 6, 6)).eval()
    with torch.no_grad():
        for layer in graph.modules():
            if isinstance(layer, nn.Conv2d):
                layer.weight.mul_(2.0)
    return graph


# Small cores (our test limits, not Loihi's) so that these small networks spread over several cores and chips.
SMALL = custom_limits(neurons_per_core=10, cores_per_chip=4, core_grid_rows=2, core_grid_cols=2, chips_per_system=64)


def _brute_targets(net) -> dict[str, dict[int, set[tuple[str, int]]]]:
    """source -> source neuron -> {(layer, neuron)} with a synapse from it, by direct loops over the raw weights."""
    targets: dict[str, dict[int, set[tuple[str, int]]]] = {}
    for layer in net.layers:
        for c in layer.connections:
            into = targets.setdefault(c.source, {})
            if c.kind == "dense":
                n_out, n_in = c.weight.shape
                for j in range(n_out):
                    for i in range(n_in):
                        if c.weight[j, i] != 0:
                            into.setdefault(i, set()).add((layer.name, j))
                continue
            _, h, w = c.in_shape
            c_out, c_in_g, kh, kw = c.weight.shape
            _, ho, wo = layer.shape
            out_per_group = c_out // c.groups
            for co in range(c_out):
                for y in range(ho):
                    for x in range(wo):
                        j = (co * ho + y) * wo + x
                        for cl in range(c_in_g):
                            ci = (co // out_per_group) * c_in_g + cl
                            for ky in range(kh):
                                for kx in range(kw):
                                    iy = y * c.stride[0] - c.padding[0] + ky * c.dilation[0]
                                    ix = x * c.stride[1] - c.padding[1] + kx * c.dilation[1]
                                    if 0 <= iy < h and 0 <= ix < w and c.weight[co, cl, ky, kx] != 0:
                                        into.setdefault((ci * h + iy) * w + ix, set()).add((layer.name, j))
    return targets


def _brute_traffic(net, placement, spikes, inputs, cols):
    """Every spike event -> the set of destination cores -> packets, hops (chips side by side), chip crossings."""
    targets = _brute_targets(net)
    core_of = {}
    for core in placement.cores:
        for j in range(core.start, core.stop):
            core_of[(core.layer, j)] = core.index
    where = {c.index: (c.chip * cols + c.col, c.row, c.chip) for c in placement.cores}
    packets = east_west = north_south = crossing = 0
    by_layer = {}
    flat = np.asarray(inputs).reshape(*np.asarray(inputs).shape[:2], -1)
    input_packets = 0
    for name, s in [*spikes.items(), (INPUT_NAME, flat)]:
        sent = 0
        for event in np.argwhere(np.asarray(s) != 0):
            i = int(event[-1])
            dest = {core_of[t] for t in targets.get(name, {}).get(i, ())}
            sent += len(dest)
            if (name, i) not in core_of:   # input from the host: no hops
                continue
            source = core_of[(name, i)]
            for d in dest:
                east_west += abs(where[d][0] - where[source][0])
                north_south += abs(where[d][1] - where[source][1])
                crossing += where[d][2] != where[source][2]
        if name == INPUT_NAME:
            input_packets = sent
            continue
        by_layer[name] = sent
        packets += sent
    return {"packets": packets, "hops": east_west + north_south, "east_west": east_west, "north_south": north_south,
            "crossing": crossing, "by_layer": by_layer, "input": input_packets}


INPUT_NAME = "input"


def test_a_layer_larger_than_a_core_gets_several_cores_within_the_limits():
    torch.manual_seed(0)
    net = compile_network(Sequential(nn.Linear(16, 20000), LIF(beta=0.9, reset="zero"), input_shape=(16,)).eval())
    placement = place(net)
    layer = net.layers[0]
    cores = [placement.cores[k] for k in placement.layers[layer.name]]
    # 8,192 neurons per core; 16 synapses each (at most 131,072 bytes per core): neurons bind first
    assert [(c.start, c.stop) for c in cores] == [(0, 8192), (8192, 16384), (16384, 20000)]
    assert sum(c.neurons for c in cores) == layer.size == 20000
    for core in cores:
        assert 0 < core.neurons <= LOIHI2["neurons_per_core"].value
        expected = int(np.count_nonzero(layer.weight[core.start:core.stop]))   # 8-bit synapses: a byte each
        assert core.synapses == core.memory_bytes == expected <= LOIHI2["synaptic_memory_per_core"].value
        assert core.fan_in_axons == 16
    assert [(c.chip, c.row, c.col) for c in cores] == [(0, 0, 0), (0, 0, 1), (0, 0, 2)]
    report = placement.report()
    assert report["cores_used"] == 3 and report["chips"] == 1 and report["max_chips"] == 8
    assert report["layers"][layer.name] == {
        "cores": 3, "neurons": 20000, "chips": [0], "neurons_per_core_max": 8192,
        "synapses_per_core_max": max(c.synapses for c in cores),
        "memory_bytes_per_core_max": max(c.memory_bytes for c in cores),
        "fan_in_axons_per_core_max": 16, "fan_out_axons_per_core_max": 0, "synapses": sum(c.synapses for c in cores)}
    for limit in report["limits"].values():
        assert limit["source"] and limit["evidence"] in EVIDENCE
    assert json.loads(json.dumps(report)) == report


def test_synaptic_memory_splits_a_layer_with_a_large_fan_in():
    torch.manual_seed(1)
    net = compile_network(Sequential(nn.Linear(16, 3000), LIF(beta=0.9, reset="zero"), nn.Linear(3000, 100),
                                     Integrator(), input_shape=(16,)).eval())
    placement = place(net)
    hidden, readout = net.layers
    per_neuron = np.count_nonzero(readout.weight, axis=1)   # up to 3,000 bytes a neuron: ~43 per 128 KiB core
    cores = [placement.cores[k] for k in placement.layers[readout.name]]
    assert len(cores) == 3 and sum(c.neurons for c in cores) == 100
    capacity = LOIHI2["synaptic_memory_per_core"].value
    for core in cores:
        assert core.memory_bytes == per_neuron[core.start:core.stop].sum() <= capacity
        assert core.stop == 100 or core.memory_bytes + per_neuron[core.stop] > capacity   # as full as it can be
        assert core.fan_in_axons == 3000
    assert placement.layers[hidden.name] == [0] and placement.cores[0].fan_out_axons == 3 * 3000


@pytest.mark.parametrize("build, shape", [(_small_chain, (2, 7, 7)), (_skip_graph, (1, 6, 6))])
def test_traffic_equals_a_brute_force_count_from_the_emulated_spikes(build, shape):
    net = compile_network(build())
    assert any(c.kind == "conv" and c.stride != (1, 1) and c.padding != (0, 0)
               for layer in net.layers for c in layer.connections)
    placement = place(net, SMALL)
    assert placement.chips > 1 and any("chips" in n for n in placement.notes)
    torch.manual_seed(1)
    q = net.quantise_input(torch.rand(8, 5, *shape))
    em = emulate(net, q, delay=False)
    for layer in net.layers:
        assert layer.readout or em.spikes[layer.name].sum() > 0, layer.name
    counted = traffic(net, placement, em.spikes, inputs=q, sample_axis=1)
    brute = _brute_traffic(net, placement, {k: v.numpy() for k, v in em.spikes.items()}, q.numpy(), cols=2)
    assert counted["packets_total"] == brute["packets"] > 0
    assert counted["hops_total"] == brute["hops"] > 0
    assert counted["chip_crossing_packets_total"] == brute["crossing"] > 0
    assert counted["input_packets_total"] == brute["input"] > 0
    assert counted["samples"] == 5 and counted["packets_per_inference"] == brute["packets"] / 5
    assert counted["packets_by_layer"] == {k: v / 5 for k, v in brute["by_layer"].items() if k in
                                           counted["packets_by_layer"]}
    # fan-in axons per core: distinct source neurons with a synapse there, from the same loops
    targets = _brute_targets(net)
    for core in placement.cores:
        fan_in = sum(1 for source, by in targets.items() for ts in by.values()
                     if any(t[0] == core.layer and core.start <= t[1] < core.stop for t in ts))
        assert core.fan_in_axons == fan_in
        assert core.neurons <= 10


# Loihi 1's layout at test size: tiles of 2 cores on a 2 x 2 mesh, the input on cores of its own.
SMALL_TILES = custom_limits(LOIHI1, neurons_per_core=10, input_neurons_per_core=30, cores_per_chip=8,
                            core_grid_rows=2, core_grid_cols=2, cores_per_tile=2, chips_per_system=64)


def test_tiles_and_on_chip_input_give_the_brute_force_hops_by_direction():
    model = _small_chain()
    net = compile_network(model)
    placement = place(net, SMALL_TILES)
    inputs = [placement.cores[k] for k in placement.layers[INPUT_NAME]]
    assert [(c.start, c.stop) for c in inputs] == [(0, 30), (30, 60), (60, 90), (90, 98)]
    assert [(c.chip, c.tile, c.slot, c.row, c.col) for c in placement.cores[:6]] == [
        (0, 0, 0, 0, 0), (0, 0, 1, 0, 0), (0, 1, 0, 0, 1), (0, 1, 1, 0, 1), (0, 2, 0, 1, 1), (0, 2, 1, 1, 1)]
    assert placement.report()["input_on_chip"] and placement.report()["cores_used"] == len(placement.cores)
    torch.manual_seed(1)
    q = net.quantise_input(torch.rand(8, 4, 2, 7, 7))
    em = emulate(net, q)
    counted = traffic(net, placement, em.spikes, inputs=q, sample_axis=1)
    brute = _brute_traffic(net, placement, {k: v.numpy() for k, v in em.spikes.items()}, q.numpy(), cols=2)
    assert counted["input_on_chip"] and counted["input_packets_total"] == brute["input"] > 0
    assert counted["packets_total"] == brute["packets"] > 0
    assert counted["hops_east_west_per_inference"] * 4 == brute["east_west"] > 0
    assert counted["hops_north_south_per_inference"] * 4 == brute["north_south"] > 0
    assert counted["hops_total"] == brute["hops"]


def test_loihi1_table_is_sanafe_s_chip():
    assert LOIHI1["neurons_per_core"].value == 1024 and LOIHI1["cores_per_tile"].value == 4
    assert LOIHI1["core_grid_rows"].value * LOIHI1["core_grid_cols"].value * 4 == LOIHI1["cores_per_chip"].value == 128
    assert LOIHI2["cores_per_tile"].value == 1 and LOIHI2["input_neurons_per_core"].value is None


def test_recurrent_packets_stay_on_their_core_with_zero_hops():
    torch.manual_seed(2)
    model = Sequential(nn.Linear(6, 8), LIF(beta=0.9, reset="zero", recurrent_features=8), input_shape=(6,)).eval()
    with torch.no_grad():
        model[0].weight.mul_(3.0)
    net = compile_network(model)
    placement = place(net)
    q = net.quantise_input(torch.rand(10, 3, 6))
    em = emulate(net, q, delay=False)
    counted = traffic(net, placement, em.spikes, inputs=q, sample_axis=1)
    spikes = int(em.spikes["1"].sum())
    assert spikes > 0
    # one core: every spike is one packet to its own core, no hops
    assert counted["packets_total"] == spikes and counted["hops_total"] == 0
    assert counted["same_core_packets_per_inference"] == spikes / 3
    assert counted["input_packets_total"] == int(np.count_nonzero(q.numpy()))


def test_a_fan_in_limit_splits_a_convolution_by_its_receptive_fields():
    torch.manual_seed(4)
    model = Sequential(nn.Conv2d(1, 2, 3, padding=1), LIF(reset="zero"), input_shape=(1, 16, 16)).eval()
    net = compile_network(model)
    free = place(net)
    limited = place(net, custom_limits(fan_in_axons_per_core=60))
    assert len(free.cores) == 1 and free.cores[0].fan_in_axons == 256
    assert len(limited.cores) > 1 and all(c.fan_in_axons <= 60 for c in limited.cores)
    assert sum(c.neurons for c in limited.cores) == 512
    # greedy: each slice but the last is as long as the limit allows (one neuron more reads over 60 inputs)
    sources = {}
    for i, ts in _brute_targets(net)["input"].items():
        for _, j in ts:
            sources.setdefault(j, set()).add(i)
    for core in limited.cores:
        assert len(set().union(*(sources[j] for j in range(core.start, core.stop)))) == core.fan_in_axons
    for core in limited.cores[:-1]:
        assert len(set().union(*(sources[j] for j in range(core.start, core.stop + 1)))) > 60
    with pytest.raises(SpikeforgeError, match=r"neuron 0 of layer 1 reads 4 source neurons, more than the 3 fan-in"):
        place(net, custom_limits(fan_in_axons_per_core=3))


def test_refusals_name_the_numbers():
    torch.manual_seed(5)
    net = compile_network(Sequential(nn.Linear(200, 4), LIF(reset="zero"), input_shape=(200,)).eval())
    most = int(incoming_synapses(net.layers[0].main, net.layers[0]).max())
    assert synapse_bits(net.layers[0].main) == 8 and most > 100
    with pytest.raises(SpikeforgeError, match=rf"has {most:,} incoming synapses, {most:,} bytes at 8 bits each, more "
                                              r"than one core's synaptic memory \(100 bytes\)"):
        place(net, custom_limits(synaptic_memory_per_core=100))
    wide = compile_network(Sequential(nn.Linear(8, 40), LIF(reset="zero"), nn.Linear(40, 3), Integrator(),
                                      input_shape=(8,)).eval())
    small = custom_limits(neurons_per_core=4, cores_per_chip=4, core_grid_rows=2, core_grid_cols=2)
    with pytest.raises(SpikeforgeError, match=r"needs 11 cores \(1: 10, 3: 1\), that is 3 chips of 4 cores; "
                                              r"the system has 2 chip\(s\)"):
        place(wide, small, max_chips=2)
    placed = place(wide, small, max_chips=3)
    assert placed.chips == 3 and "placed on 3 chips" in placed.notes[0]
    assert [(c.chip, c.row, c.col) for c in placed.cores[:5]] == [(0, 0, 0), (0, 0, 1), (0, 1, 1), (0, 1, 0),
                                                                   (1, 0, 0)]
    # a fan-out limit cuts a layer into more cores (its destinations are cut first) ...
    cut = place(wide, custom_limits(fan_out_axons_per_core=2))
    assert len(cut.layers["1"]) == 20 and max(c.fan_out_axons for c in cut.cores) == 2
    # ... and a neuron that alone reaches more cores than the limit is refused
    with pytest.raises(SpikeforgeError, match=r"neuron 0 of 1 sends to 3 cores, more than the 2 fan-out axons"):
        place(wide, custom_limits(neurons_per_core=1, fan_out_axons_per_core=2))
    with pytest.raises(SpikeforgeError, match="must hold the 128 cores"):
        place(wide, custom_limits(core_grid_rows=2, core_grid_cols=2))
    with pytest.raises(SpikeforgeError, match="unknown placement limit"):
        custom_limits(neurons=3)
    with pytest.raises(SpikeforgeError, match="evidence"):
        Limit(1, "x", "a source", "a guess")
    with pytest.raises(SpikeforgeError, match=r"\[S, T, 40\]"):
        traffic(wide, placed, {"1": np.zeros((2, 3, 7)), "3": np.zeros((2, 3, 3))})


def test_lava_spikes_give_the_brute_force_count_of_the_emulation():
    _lava_or_skip()
    net = compile_network(_small_chain())
    placement = place(net, SMALL)
    torch.manual_seed(6)
    steps, samples = 6, 3
    q = net.quantise_input(torch.rand(steps, samples, 2, 7, 7))
    em = emulate(net, q, delay=False)
    lava = run_in_lava(net, q.transpose(0, 1).numpy(), mode="stream", steps_per_sample=steps)
    counted = traffic(net, placement, lava.spikes, inputs=q.transpose(0, 1).numpy(), sample_axis=0)
    brute = _brute_traffic(net, placement, {k: v.numpy() for k, v in em.spikes.items()}, q.numpy(), cols=2)
    assert counted["packets_total"] == brute["packets"] > 0
    assert counted["hops_total"] == brute["hops"] and counted["chip_crossing_packets_total"] == brute["crossing"]
    assert counted["input_packets_total"] == brute["input"] and counted["samples"] == samples


def test_deploy_reports_the_placement_and_the_traffic_of_the_run(tmp_path):
    _lava_or_skip()
    from hardware.lava.deploy import deploy
    from snn import data
    from snn.training import load_trained

    torch.manual_seed(5)
    model = Sequential(nn.Conv2d(1, 4, 3, padding=1), LIF(reset="zero"), nn.AvgPool2d(2), nn.Flatten(),
                       nn.Linear(64, 16), LIF(reset="zero"), nn.Linear(16, 10), Integrator(), input_shape=(1, 8, 8))
    with torch.no_grad():
        model[0].weight.mul_(3)
    path = save_checkpoint(tmp_path / "model.pt", model.eval(),
                           task={"timesteps": 4, "encoder": "direct", "readout": "membrane_mean"})
    results = deploy(path, samples=3)
    report = results["placement"]
    assert results["emulation_agreement"] == 1.0
    assert report["cores_used"] == 3 and report["chips"] == 1
    assert set(report["limits"]) == set(LOIHI2)
    assert report["layers"]["1"]["neurons"] == 256
    # the packets counted from the Lava run equal those of the emulation of the same samples
    loaded, task = load_trained(path)
    net = compile_network(loaded)
    split = data.load_dataset("digits", None, seed=0)
    q = net.quantise_input(task.encode(split.x_test[:3], torch.Generator().manual_seed(0)))
    expected = traffic(net, place(net), emulate(net, q, delay=False).spikes, inputs=q, sample_axis=1)
    assert report["traffic"] == expected and expected["packets_total"] > 0
    assert math.isclose(sum(report["traffic"]["packets_by_layer"].values()), expected["packets_per_inference"])
    # energy and latency of the run on both Loihi profiles, from its hardware events on Loihi 1's cores
    assert set(results["energy_per_inference_j"]) == {"loihi", "loihi-calibrated"}
    low, high = results["energy_per_inference_j"]["loihi"], results["energy_per_inference_j"]["loihi-calibrated"]
    assert 0 < low < high and results["latency_per_inference_s"] > 0
    energy = results["energy"]
    assert energy["events_equal_lava_run"] and energy["events"]["samples"] == 3
    activity = loihi_activity(net, q, table="loihi1")
    for name, joules in results["energy_per_inference_j"].items():
        assert joules == price(activity.counts, get_profile(name)).total_j
        assert energy["profiles"][name]["complete"]
    assert results["latency_per_inference_s"] == SANAFE_TIMING.latency(activity.cores)["latency_per_inference_s"]
    assert "loihi-calibrated is" in energy["why_the_two_differ"]
    json.dumps(results)
