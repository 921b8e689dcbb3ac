"""SANA-FE (``sanafe``, GPL-3.0; tests only) against our integer Loihi emulator: spikes, counts, energy, latency.

The bridge (``tests/sanafe_bridge.py``) maps a compiled network onto SANA-FE's Loihi
architecture file as placed by ``LOIHI1``. SANA-FE must reproduce the emulator spike for spike in
every layer; its message count must be one per spike and distinct destination core of the
placement's routes, its synaptic-event count one per spike and synapse, and its energy and
time-step latency must follow from those counts and the file's per-event figures.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

pytest.importorskip("sanafe")

from sanafe_bridge import run_sanafe, synapses  # noqa: E402  (after the skip: it imports sanafe)

from hardware.lava.compile import LoihiConnection, LoihiLayer, LoihiNetwork, compile_network  # noqa: E402
from hardware.lava.emulate import emulate, lava_dense_weights  # noqa: E402
from hardware.lava.placement import LOIHI1, custom_limits, place  # noqa: E402
from snn.graph_network import INPUT  # noqa: E402
from snn.network import Sequential  # noqa: E402
from snn.neurons import LIF, CubaLIF, Integrator  # noqa: E402

# Per-event figures of sanafe 2.2.9's examples/loihi.yaml (Davies et al. 2018), joules and seconds.
SYNAPSE_ENERGY = {"dense": 35.5e-12, "conv": 24.0e-12}
SOMA_ACCESS, SOMA_UPDATE, SOMA_SPIKE = 51.2e-12, 21.6e-12, 69.3e-12
MESSAGE_OUT, HOP_EAST_WEST, HOP_NORTH_SOUTH = 111.0e-12, 3.0e-12, 4.2e-12
LATENCY_ACCESS_NEURON = 6.0e-9
LATENCY_SYNC = {1: 0.6e-6, 2: 1.0e-6, 4: 1.4e-6, 29: 1.8e-6}   # by mapped tiles: the largest key <= tiles


# The emulator records which somas did work (SANA-FE's "updated") where it can.
UPDATES = {"updates": True} if "updates" in inspect.signature(emulate).parameters else {}


def _mlp(hidden: int = 32, bias: bool = True) -> Sequential:
    torch.manual_seed(0)
    model = Sequential(nn.Linear(64, hidden, bias=bias), LIF(beta=0.9, reset="zero"),
                       nn.Linear(hidden, 10, bias=bias), LIF(beta=0.8, reset="zero"), input_shape=(64,)).eval()
    with torch.no_grad():
        model[0].weight.mul_(3.0)
        model[2].weight.mul_(3.0)
    return model


def _cnn() -> Sequential:
    """Padding, then stride 2 with dilation 2, then a dense readout of LIF neurons."""
    torch.manual_seed(1)
    model = Sequential(nn.Conv2d(1, 4, 3, padding=1), LIF(beta=0.9, reset="zero"),
                       nn.Conv2d(4, 4, 3, stride=2, padding=2, dilation=2), LIF(beta=0.9, reset="zero"),
                       nn.Flatten(), nn.Linear(64, 10), LIF(beta=0.9, reset="zero"), input_shape=(1, 8, 8)).eval()
    with torch.no_grad():
        model[0].weight.mul_(2.0)
        model[2].weight.mul_(3.0)
        model[5].weight.mul_(3.0)
    return model


def _recurrent() -> Sequential:
    """A recurrent layer that resets by subtraction, then an Integrator readout (its membrane is compared)."""
    torch.manual_seed(2)
    model = Sequential(nn.Linear(16, 12), LIF(beta=0.9, reset="subtract", recurrent_features=12),
                       nn.Linear(12, 5), Integrator(beta=0.9), input_shape=(16,)).eval()
    with torch.no_grad():
        model[0].weight.mul_(3.0)
        model[1].recurrent.weight.normal_(0, 0.4)
    return model


def _spikes(net: LoihiNetwork, steps: int, batch: int, rate: float = 0.3, seed: int = 5) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(steps, batch, *net.input_shape, generator=g) < rate).long() * net.input_levels


def _source_spikes(net: LoihiNetwork, q: torch.Tensor, spikes: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Per population (input included) its binary spikes ``[T, B, N]``."""
    steps, batch = q.shape[:2]
    out = {INPUT: (q.reshape(steps, batch, -1) != 0).numpy().astype(np.int64)}
    out.update({name: s.numpy().astype(np.int64) for name, s in spikes.items()})
    return out


def _synaptic_events(net: LoihiNetwork, sources: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per synapse kind and sample: spikes times the synapses they reach (torch's conv, not the bridge's expansion)."""
    batch = next(iter(sources.values())).shape[1]
    events = {"dense": np.zeros(batch, dtype=np.int64), "conv": np.zeros(batch, dtype=np.int64)}
    for layer in net.layers:
        for conn in layer.connections:
            s = torch.as_tensor(sources[conn.source], dtype=torch.float64)   # [T, B, N]
            if conn.kind == "dense":
                mask = torch.as_tensor(lava_dense_weights(conn.weight) != 0, dtype=torch.float64)
                events["dense"] += (s @ mask.t()).sum(dim=(0, 2)).round().long().numpy()
            else:
                mask = torch.as_tensor(conn.weight != 0, dtype=torch.float64)
                x = s.reshape(-1, *conn.in_shape)
                y = F.conv2d(x, mask, stride=conn.stride, padding=conn.padding, dilation=conn.dilation,
                             groups=conn.groups)
                events["conv"] += y.reshape(s.shape[0], batch, -1).sum(dim=(0, 2)).round().long().numpy()
    return events


def _check(net: LoihiNetwork, placement, q: torch.Tensor, **kwargs) -> tuple[dict, dict]:
    """SANA-FE's spikes equal the emulator's; its counts and energy follow from them (per sample).

    Returns SANA-FE's result and the totals counted from the emulation and the placement's routes."""
    result = run_sanafe(net, placement, q, **kwargs)
    emulation = emulate(net, q, **UPDATES)
    steps, batch = q.shape[:2]
    for layer in net.layers:
        ours = emulation.spikes[layer.name].numpy()
        assert layer.readout or ours.any(), f"layer {layer.name} is silent: the test would prove nothing"
        np.testing.assert_array_equal(result["spike_trains"][layer.name], ours, err_msg=f"layer {layer.name}")
    np.testing.assert_array_equal(result["spike_trains"][INPUT], (q.reshape(steps, batch, -1) != 0).numpy())
    readout = net.readout
    if readout is not None:
        assert emulation.membrane[readout.name].any()
        np.testing.assert_array_equal(result["membrane"][readout.name], emulation.membrane[readout.name].numpy())

    sources = _source_spikes(net, q, emulation.spikes)
    per_neuron = {name: s.sum(axis=0) for name, s in sources.items()}          # [B, N]
    routes = placement.routes
    packets = sum(per_neuron[name] @ routes[name].cores for name in per_neuron)
    east_west = sum(per_neuron[name] @ routes[name].hops_east_west for name in per_neuron)
    north_south = sum(per_neuron[name] @ routes[name].hops_north_south for name in per_neuron)
    events = _synaptic_events(net, sources)
    fired = sum(s.sum(axis=(0, 2)) for s in sources.values())
    input_fired = sources[INPUT].sum(axis=(0, 2))
    lif_fired = fired - input_fired
    lif_neurons = sum(layer.size for layer in net.layers)
    for b, sample in enumerate(result["per_sample"]):
        assert sample["neurons_fired"] == fired[b]
        assert sample["packets_sent"] == packets[b]               # one per spike and distinct destination core
        assert sample["hops"] == east_west[b] + north_south[b]
        assert sample["spikes"] == events["dense"][b] + events["conv"][b]   # SANA-FE's "spikes": synaptic events
        energy = sample["energy"]
        lif_updated = sample["neurons_updated"] - input_fired[b]  # an input neuron counts as updated when it fires
        assert lif_fired[b] <= lif_updated <= lif_neurons * steps
        if UPDATES:   # the emulator's account of SANA-FE's updated somas
            assert lif_updated == sum(int(u[:, b].sum()) for u in emulation.updated.values())
        expected = {
            "synapse": sum(SYNAPSE_ENERGY[k] * events[k][b] for k in events),
            "dendrite": 0.0,
            "soma": SOMA_ACCESS * lif_neurons * steps + SOMA_UPDATE * lif_updated + SOMA_SPIKE * lif_fired[b],
            "network": MESSAGE_OUT * packets[b] + HOP_EAST_WEST * east_west[b] + HOP_NORTH_SOUTH * north_south[b],
        }
        expected["total"] = sum(expected.values())
        for key, value in expected.items():
            assert energy[key] == pytest.approx(value, rel=1e-9, abs=1e-18), key
        assert sample["sim_time"] == pytest.approx(sum(sample["sim_time_per_step"]), rel=1e-12)
    total = result["total"]
    assert total["packets_sent"] == packets.sum() and total["neurons_fired"] == fired.sum()
    assert result["per_inference"]["energy"]["total"] == pytest.approx(total["energy"]["total"] / batch)
    counted = {"packets": int(packets.sum()), "hops_east_west": int(east_west.sum()),
               "hops_north_south": int(north_south.sum()), "synaptic_events": int(sum(events.values()).sum())}
    return result, counted


def test_mlp_spread_over_two_rows_of_tiles_matches_the_emulator():
    """64-32-10 LIF on 53 cores of two neurons (14 tiles, both snake directions): every hop kind is used."""
    net = compile_network(_mlp())
    placement = place(net, custom_limits(LOIHI1, neurons_per_core=2, input_neurons_per_core=2))
    assert {c.row for c in placement.cores} == {0, 1}
    result, counted = _check(net, placement, _spikes(net, 20, 3))
    assert result["mapping"]["mapped_tiles"] == 14
    assert counted["hops_east_west"] > 0 and counted["hops_north_south"] > 0   # both hop prices are exercised


def test_cnn_with_padding_stride_and_dilation_matches_the_emulator():
    net = compile_network(_cnn())
    assert [c.kind for layer in net.layers for c in layer.connections] == ["conv", "conv", "dense"]
    placement = place(net, custom_limits(LOIHI1, neurons_per_core=32))
    result, _ = _check(net, placement, _spikes(net, 16, 2, rate=0.4))
    taps = result["mapping"]["synapses"]
    assert taps["conv"] > 0 and taps["dense"] > 0


@pytest.mark.parametrize("stride, padding, dilation, groups", [(1, 0, 1, 1), (2, 1, 1, 2), (1, 2, 2, 1), (2, 2, 2, 4)])
def test_conv_expansion_is_the_convolution(stride, padding, dilation, groups):
    """The bridge's synapses of a conv connection, as a matrix, are torch's convolution (zero taps left out)."""
    g = torch.Generator().manual_seed(stride + 3 * padding + 7 * groups)
    weight = torch.randint(-3, 4, (8, 4 // groups, 3, 3), generator=g)
    conn = LoihiConnection(INPUT, "conv", (4, 7, 6), weight.numpy(), stride=(stride, stride),
                           padding=(padding, padding), dilation=(dilation, dilation), groups=groups)
    eye = torch.eye(4 * 7 * 6, dtype=torch.float64).reshape(-1, 4, 7, 6)
    matrix = F.conv2d(eye, weight.double(), stride=stride, padding=padding, dilation=dilation, groups=groups)
    out_shape = tuple(matrix.shape[1:])
    matrix = matrix.reshape(eye.shape[0], -1).t().numpy()                       # [n_out, n_in]
    layer = LoihiLayer("conv", out_shape, 4095, 0, 1, np.zeros(int(np.prod(out_shape)), dtype=np.int64), 1.0, [conn])
    src, dst, w = synapses(conn, layer)
    built = np.zeros_like(matrix)
    np.add.at(built, (dst, src), w)
    np.testing.assert_array_equal(built, matrix)
    assert len(src) == np.count_nonzero(matrix) and (w != 0).all()   # one synapse per nonzero in-bounds tap


def test_recurrent_subtract_reset_and_readout_membrane_match_the_emulator():
    net = compile_network(_recurrent(), reset="subtract")
    assert net.layers[0].recurrent and net.layers[0].reset == "subtract" and net.readout is not None
    _check(net, place(net, LOIHI1), _spikes(net, 24, 2, rate=0.4))


def test_detailed_timing_changes_latency_only():
    net = compile_network(_mlp())
    placement = place(net, custom_limits(LOIHI1, neurons_per_core=8, input_neurons_per_core=16))
    q = _spikes(net, 10, 1)
    simple = run_sanafe(net, placement, q)
    detailed, _ = _check(net, placement, q, timing_model="detailed")
    for key in ("spikes", "packets_sent", "neurons_updated", "neurons_fired", "hops"):
        assert simple["total"][key] == detailed["total"][key]
    assert simple["energy"]["total"] == pytest.approx(detailed["energy"]["total"], rel=1e-12)
    assert detailed["sim_time"] > 0 and detailed["sim_time"] != simple["sim_time"]


@pytest.mark.parametrize("hidden, per_core, tiles", [(32, 1024, 1), (32, 16, 2), (32, 8, 4), (48, 1, 31)])
def test_silent_step_takes_the_sync_barrier_of_the_mapped_tiles(hidden, per_core, tiles):
    """No input, no bias: each step is the slowest core's neuron reads (6 ns each) plus SANA-FE's barrier,
    looked up by the number of tiles holding neurons (input neurons included): the largest key <= tiles."""
    net = compile_network(_mlp(hidden, bias=False))
    placement = place(net, custom_limits(LOIHI1, neurons_per_core=per_core, input_neurons_per_core=per_core))
    result = run_sanafe(net, placement, torch.zeros(3, 1, 64, dtype=torch.long))
    assert result["mapping"]["mapped_tiles"] == tiles
    sync = LATENCY_SYNC[max(k for k in LATENCY_SYNC if k <= tiles)]
    slowest = max(c.neurons for c in placement.cores if c.layer != INPUT) * LATENCY_ACCESS_NEURON
    assert result["per_sample"][0]["sim_time_per_step"] == pytest.approx([sync + slowest] * 3, rel=1e-12)
    sample = result["per_sample"][0]
    assert sample["neurons_updated"] == sample["packets_sent"] == sample["spikes"] == 0
    assert sample["energy"]["soma"] == pytest.approx(SOMA_ACCESS * (hidden + 10) * 3, rel=1e-12)


def test_bridge_refuses_what_it_cannot_map_exactly():
    net = compile_network(_mlp())
    placement = place(net, LOIHI1)
    graded = _spikes(net, 4, 1)
    graded[0, 0, 0], graded[1, 0, 0] = 3, 5
    with pytest.raises(ValueError, match="one level L"):
        run_sanafe(net, placement, graded)
    with pytest.raises(ValueError, match="keeps the input off chip"):
        run_sanafe(net, place(net), _spikes(net, 4, 1))
    cuba = Sequential(nn.Linear(8, 4), CubaLIF(alpha=0.5, reset="zero"), input_shape=(8,)).eval()
    cuba_net = compile_network(cuba)
    with pytest.raises(ValueError, match="du = 4095"):
        run_sanafe(cuba_net, place(cuba_net, LOIHI1), _spikes(cuba_net, 4, 1))
