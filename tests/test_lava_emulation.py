"""Loihi 2 compile, torch integer emulation and netx export (no Lava needed; see test_lava_run.py for Lava)."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
from torch import nn

from hardware.graph import AFFINE_LAYERS
from hardware.lava.compile import AFFINE, MAX_FAN_IN, MAX_LAYER_NEURONS, compile_network, decay_constants
from hardware.lava.driver import run_in_lava
from hardware.lava.emulate import emulate, lava_dense_weights
from hardware.lava.netx_export import export_netx
from snn.errors import SpikeforgeError
from snn.network import Sequential
from snn.neurons import ALIF, IF, LIF, CubaLIF, Integrator


def dense_net(seed: int = 0, bias: float = 0.0, linear_bias: bool = True) -> Sequential:
    torch.manual_seed(seed)
    return Sequential(nn.Linear(12, 16, bias=linear_bias), LIF(beta=0.9, reset="zero", bias=bias),
                      nn.Linear(16, 8, bias=linear_bias), CubaLIF(alpha=0.5, beta=0.8, reset="zero"),
                      nn.Linear(8, 4, bias=linear_bias), Integrator(),
                      input_shape=(12,)).eval()


def test_compile_uses_the_precision_and_reports_the_error():
    net = compile_network(dense_net())
    first, second, readout = net.layers
    assert first.kind == "dense" and readout.readout and readout.vth == 2 ** 17 - 1
    for layer in net.layers:
        assert np.all(layer.weight % 2 == 0) and np.abs(layer.weight).max() <= 256   # Lava's 8-bit MIXED synapse
        assert np.array_equal(lava_dense_weights(layer.weight), layer.weight)      # Lava keeps them unchanged
        assert np.abs(layer.weight).max() >= 250                                   # the mantissa is used in full
        assert layer.report["weight_max_abs_error"] <= 0.5 * 2 / layer.scale + 1e-12
    assert (second.du, second.dv) == decay_constants(0.5, 0.8) == (4095 - 2048, 819)
    assert (4096 - second.du - 1) / 4096 == 0.5


def test_emulator_delay_shifts_each_layer_by_one_step():
    net = compile_network(dense_net(1, linear_bias=False))   # no bias: nothing moves before input arrives
    q = net.quantise_input(torch.rand(20, 3, 12))
    delayed, aligned = emulate(net, q, delay=True), emulate(net, q, delay=False)
    for k, name in enumerate(delayed.spikes, start=1):
        assert torch.equal(delayed.spikes[name][k:], aligned.spikes[name][:-k])
        assert not delayed.spikes[name][:k].any()
    assert any(s.any() for s in aligned.spikes.values())


def test_emulator_tracks_the_float_network():
    model = dense_net(2)
    net = compile_network(model)
    x = torch.rand(16, 8, 12)
    em = emulate(net, net.quantise_input(x), delay=False)
    with torch.no_grad():
        out = model(torch.round(x * 255) / 255)
    readout = em.membrane[net.readout.name].double() / (64 * net.readout.scale)
    assert net.input_levels <= 255
    assert torch.corrcoef(torch.stack([readout.flatten(), out.flatten().double()]))[0, 1] > 0.95


def test_emulator_wraps_and_clips_like_lava():
    torch.manual_seed(0)
    model = Sequential(nn.Linear(4, 2), IF(reset="zero", theta=1.0), input_shape=(4,)).eval()
    net = compile_network(model)
    layer = net.layers[0]
    layer.vth = 2 ** 17 - 1
    layer.weight[:] = 254
    layer.bias_mant[:] = 0
    em = emulate(net, torch.full((3, 1, 4), 255, dtype=torch.long), delay=False)
    # a = 4 * 254 * 255 = 259080; a << 6 = 16581120 > 2**23 wraps to 16581120 - 2**24 = -196096 (Lava's 24-bit wrap)
    assert em.spikes[layer.name].sum() == 0
    layer.weight[:] = 100   # a << 6 = 6528000 < 2**23: no wrap; v clips at 2**23 - 1 on step 1, fires, resets to 0
    em = emulate(net, torch.full((3, 1, 4), 255, dtype=torch.long), delay=False)
    assert em.spikes[layer.name][:, 0].tolist() == [[0, 0], [1, 1], [0, 0]]


@pytest.mark.parametrize("build, message", [
    (lambda: Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2), LIF(), input_shape=(1, 8, 8)), "not supported"),
    (lambda: Sequential(nn.Linear(4, 3), ALIF(), input_shape=(4,)), r"layer 1 \(ALIF\) cannot run on Loihi 2 "
                                                                   r"through Lava: Lava's adaptive neuron ATRLIF"),
    (lambda: Sequential(nn.Linear(1, MAX_LAYER_NEURONS + 1), LIF(reset="zero"), input_shape=(1,)), "neurons"),
    (lambda: Sequential(nn.Conv2d(MAX_FAN_IN // 9 + 1, 1, 3), LIF(reset="zero"),
                        input_shape=(MAX_FAN_IN // 9 + 1, 3, 3)), "fan-in"),
    (lambda: Sequential(nn.Linear(4, 3), LIF(reset="subtract"), input_shape=(4,)), "zero"),
])
def test_compile_refuses_what_loihi_cannot_hold(build, message):
    with pytest.raises(SpikeforgeError, match=message):
        compile_network(build().eval(), strict=True)


def test_loihi_affine_layers_are_a_subset_of_the_graphs() -> None:
    assert set(AFFINE) <= set(AFFINE_LAYERS)


@pytest.mark.parametrize("fill", [float("nan"), 0.0])
def test_compile_refuses_weights_that_cannot_be_quantised(fill):
    model = Sequential(nn.Linear(4, 3), LIF(reset="zero"), input_shape=(4,)).eval()
    with torch.no_grad():
        model[0].weight.fill_(fill)
    with pytest.raises(SpikeforgeError, match="quantised|not finite|all zero"):
        compile_network(model)


def test_input_outside_the_graded_spike_range_is_refused():
    net = compile_network(dense_net())
    with pytest.raises(SpikeforgeError, match=r"\[0, 1\]"):
        net.quantise_input(torch.full((2, 1, 12), 1.5))


def test_netx_export_schema(tmp_path):
    torch.manual_seed(3)
    model = Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), LIF(reset="zero"), nn.AvgPool2d(2),
                       nn.Flatten(), nn.Linear(64, 10), Integrator(), input_shape=(1, 8, 8)).eval()
    net = compile_network(model)
    path = export_netx(net, tmp_path / "net.net")
    with h5py.File(path, "r") as f:
        types = [f["layer"][k]["type"][()].decode() for k in sorted(f["layer"], key=int)]
        assert types == ["input", "conv", "flatten", "dense"]
        conv, dense = f["layer"]["1"], f["layer"]["3"]
        assert list(f["layer"]["0"]["shape"][()]) == [1, 8, 8]
        assert conv["weight"].shape == (4, 1, 3, 3) and np.array_equal(conv["weight"][()], net.layers[0].weight)
        assert dense["weight"].shape == (10, 256)
        assert conv["neuron"]["iDecay"][()] == net.layers[0].du + 1
        assert conv["neuron"]["vThMant"][()] == net.layers[0].vth
        assert dense["neuron"]["type"][()].decode() == "CUBA"
    assert [p.name for p in tmp_path.iterdir()] == ["net.net"]   # atomic: no temporary file left


def test_missing_lava_environment_names_the_make_target(monkeypatch, tmp_path):
    monkeypatch.setenv("SPIKEFORGE_LAVA_VENV", str(tmp_path / "nowhere"))
    net = compile_network(dense_net())
    with pytest.raises(SpikeforgeError, match="make lava-env"):
        run_in_lava(net, np.zeros((4, 12), dtype=np.int32))


@pytest.mark.gpu
def test_emulator_on_gpu_equals_cpu():
    net = compile_network(dense_net(4, bias=0.05))
    q = net.quantise_input(torch.rand(32, 16, 12))
    cpu, gpu = emulate(net, q, device="cpu"), emulate(net, q, device="cuda")
    for name in cpu.spikes:
        assert torch.equal(cpu.spikes[name], gpu.spikes[name].cpu())
    for name in cpu.membrane:
        assert torch.equal(cpu.membrane[name], gpu.membrane[name].cpu())


def test_recurrent_layer_with_per_neuron_parameters_is_refused_with_the_fix():
    model = Sequential(nn.Linear(6, 5), LIF(beta=torch.linspace(0.5, 0.9, 5), reset="zero", recurrent_features=5),
                       nn.Linear(5, 3), Integrator(), input_shape=(6,)).eval()
    with pytest.raises(SpikeforgeError, match=r"per-neuron beta values; Lava's LIF takes one beta per layer; use a "
                                              r"scalar"):
        compile_network(model)
