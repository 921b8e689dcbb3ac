"""Brian2 backend: spike-for-spike equality with the torch reference, CLI verb, demo stage, bad input."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch
from torch import nn

from hardware.brian2.build import run_discrete
from hardware.brian2.cli import brian2_stage, register
from hardware.brian2.reference import run_torch
from hardware.graph import estimate_synapses, network_graph, split_network
from snn import encoders
from snn.checkpoint import save_checkpoint
from snn.errors import SpikeforgeError
from snn.models import build_cnn
from snn.network import Sequential
from snn.neurons import ALIF, IF, LIF, CubaLIF, Integrator

STEPS = 100


def _neuron(kind: str, reset: str) -> nn.Module:
    return {"if": lambda: IF(theta=1.0, reset=reset), "lif": lambda: LIF(beta=0.9, reset=reset),
            "cuba": lambda: CubaLIF(alpha=0.6, beta=0.85, reset=reset)}[kind]()


def _assert_same(reference, brian) -> None:
    assert list(reference.spikes) == list(brian.spikes)
    for name, spikes in reference.spikes.items():
        assert spikes.sum() > 0, f"layer {name} never spikes; the comparison would prove nothing"
        np.testing.assert_array_equal(brian.spikes[name], spikes, err_msg=f"layer {name}")
    for name, v in reference.membrane.items():
        np.testing.assert_allclose(brian.membrane[name], v, rtol=0, atol=1e-9)


@pytest.mark.parametrize("reset", ["subtract", "zero"])
@pytest.mark.parametrize("kind", ["if", "lif", "cuba"])
def test_dense_three_layers_match_torch_spike_for_spike(kind: str, reset: str) -> None:
    torch.manual_seed(3)
    net = Sequential(nn.Linear(24, 32), _neuron(kind, reset), nn.Linear(32, 16), _neuron(kind, reset),
                     nn.Linear(16, 6), _neuron(kind, reset), input_shape=(24,)).eval()
    with torch.no_grad():
        for layer in (net[0], net[2], net[4]):
            layer.weight.mul_(2.5)
    x = encoders.rate(torch.rand(5, 24), STEPS, generator=torch.Generator().manual_seed(1))
    brian = run_discrete(network_graph(net), x.numpy(), batch=2)  # 2 side by side, 3 chunks in time
    _assert_same(run_torch(net, x), brian)


def _conv_net() -> Sequential:
    torch.manual_seed(0)
    net = Sequential(nn.Conv2d(2, 4, 3, stride=2, padding=1), nn.BatchNorm2d(4),
                     CubaLIF(alpha=0.6, beta=0.85, reset="zero"),
                     nn.AvgPool2d(2), nn.Conv2d(4, 6, 3, padding=1), ALIF(reset="subtract"), nn.Flatten(),
                     nn.Linear(6 * 2 * 2, 8), LIF(beta=0.9, recurrent_features=8), nn.Linear(8, 3),
                     Integrator(beta=0.95), input_shape=(2, 8, 8))
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.1, 0.1)
    return net.eval()


@pytest.mark.parametrize("encoder", ["rate", "direct"])
def test_conv_net_matches_torch_spike_for_spike(encoder: str) -> None:
    net = _conv_net()
    images = torch.rand(4, 2, 8, 8) * 1.5
    x = (encoders.rate(images.clamp(0, 1), STEPS, generator=torch.Generator().manual_seed(2)) if encoder == "rate"
         else encoders.direct(images, STEPS))
    graph = network_graph(net)
    assert [p.kind for p in graph.populations] == ["cuba", "alif", "cuba", "integrator"]
    _assert_same(run_torch(net, x), run_discrete(graph, x.numpy(), batch=3))


def test_conv_expansion_equals_the_torch_layers() -> None:
    net = _conv_net()
    graph = network_graph(net)
    conv = graph.populations[0]
    s = torch.rand(3, 2, 8, 8, dtype=torch.float64)
    expected = net[1].double()(net[0].double()(s)).reshape(3, -1)
    got = s.reshape(3, -1).numpy() @ conv.weight.toarray() + conv.bias_in
    np.testing.assert_allclose(got, expected.detach().numpy(), atol=1e-12)
    assert conv.weight.nnz <= estimate_synapses(net)


def _checkpoint(tmp_path, encoder: str = "direct"):
    torch.manual_seed(0)
    model = build_cnn((1, 8, 8), 10, channels=(4, 8), hidden=16)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.mul_(3.0)
    return save_checkpoint(tmp_path / "model.pt", model, {"timesteps": 8, "encoder": encoder,
                                                         "readout": "membrane_mean"})


def _cli(argv: list[str]) -> dict:
    parser = argparse.ArgumentParser(prog="snn")
    register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return json.loads(json.dumps(args.run(args)))


@pytest.mark.parametrize("encoder", ["direct", "rate"])
def test_simulate_verb_compares_digits_cnn(tmp_path, encoder: str) -> None:
    path = _checkpoint(tmp_path, encoder)
    result = _cli(["simulate", "--model", str(path), "--backend", "brian2", "--dataset", "digits",
                   "--samples", "12", "--compare", "--json"])
    assert result["compare"]["match_fraction"] == 1.0
    assert result["compare"]["matching_samples"] == 12
    assert sum(result["spike_counts"].values()) > 0
    torch_run = _cli(["simulate", "--model", str(path), "--backend", "torch", "--samples", "12", "--json"])
    assert torch_run["accuracy"] == result["accuracy"]
    assert torch_run["spike_counts"] == result["spike_counts"]


def test_demo_stage_reports_agreement(tmp_path, monkeypatch) -> None:
    import hardware.brian2.cli as cli
    monkeypatch.setattr(cli, "DEMO_SAMPLES", 10)
    path = _checkpoint(tmp_path)
    networks = [{"label": "trained SNN", "path": str(path), "timesteps": None},
                {"label": "the same at T = 3", "path": str(path), "timesteps": 3}]
    results, lines = brian2_stage(tmp_path, {"options": {}, "results": {}, "networks": networks})
    runs = results["networks"]
    assert [r["compare"]["match_fraction"] for r in runs.values()] == [1.0, 1.0]
    assert runs["the same at T = 3"]["timesteps"] == 3
    written = json.loads((tmp_path / "brian2.json").read_text())
    assert [r["samples"] for r in written.values()] == [10, 10]
    assert any("identical spike trains" in line for line in lines)
    assert sum(line.startswith("| the same at T = 3 | 3 |") for line in lines) == 1


def test_layer_without_brian2_equivalent_is_named() -> None:
    net = Sequential(nn.Conv2d(1, 2, 3), LIF(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(18, 2), Integrator(),
                     input_shape=(1, 8, 8))
    with pytest.raises(SpikeforgeError, match=r"layer 2 \(MaxPool2d\) has no Brian2 equivalent"):
        network_graph(net)
    with pytest.raises(SpikeforgeError, match="ends in stateless layers"):
        network_graph(Sequential(nn.Linear(4, 2), LIF(), nn.Linear(2, 2), input_shape=(4,)))


def test_segments_carry_shapes_and_the_clamped_parameters() -> None:
    net = Sequential(nn.Conv2d(1, 2, 3), nn.AvgPool2d(2), LIF(beta=0.9), nn.Flatten(), nn.Linear(18, 2),
                     Integrator(beta=1.0, learn_beta=True), input_shape=(1, 8, 8)).eval()
    with torch.no_grad():
        net[5].beta.fill_(1.5)  # trained past 1: the dynamics clamp it, so must every backend
    shape, (hidden, readout) = split_network(net)
    assert shape == (1, 8, 8) and hidden.in_shape == (1, 8, 8) and hidden.shape == (2, 3, 3)
    assert hidden.folded == ["0", "1"] and readout.folded == ["3", "4"] and readout.in_shape == (2, 3, 3)
    assert readout.parameters()["beta"].tolist() == [1.0, 1.0]
    assert network_graph(net).populations[1].params["beta"].tolist() == [1.0, 1.0]


def test_network_too_large_names_an_estimate() -> None:
    net = Sequential(nn.Linear(100, 100), LIF(), input_shape=(100,))
    graph = network_graph(net)
    with pytest.raises(SpikeforgeError, match=r"10,000 synapses .* x 8 parallel sample\(s\) = 80,000 synapses"):
        run_discrete(graph, np.zeros((4, 8, 100)), batch=8, max_synapses=50_000)


def test_missing_compiler_for_standalone(monkeypatch) -> None:
    graph = network_graph(Sequential(nn.Linear(4, 2), LIF(), input_shape=(4,)))
    monkeypatch.setenv("CXX", "/nonexistent/bin/c++")
    with pytest.raises(SpikeforgeError, match="needs a C\\+\\+ compiler.*c\\+\\+' was not found"):
        run_discrete(graph, np.zeros((3, 1, 4)), target="cpp_standalone")
    with pytest.raises(SpikeforgeError, match="unknown Brian2 target"):
        run_discrete(graph, np.zeros((3, 1, 4)), target="gpu")


@pytest.mark.slow
def test_cpp_standalone_target_matches_torch(tmp_path) -> None:
    torch.manual_seed(5)
    net = Sequential(nn.Linear(8, 10), LIF(beta=0.9), nn.Linear(10, 4), CubaLIF(alpha=0.5, beta=0.9, reset="zero"),
                     input_shape=(8,)).eval()
    with torch.no_grad():
        net[0].weight.mul_(3.0)
        net[2].weight.mul_(3.0)
    x = encoders.rate(torch.rand(3, 8), STEPS, generator=torch.Generator().manual_seed(1))
    brian = run_discrete(network_graph(net), x.numpy(), target="cpp_standalone", directory=str(tmp_path / "cpp"))
    _assert_same(run_torch(net, x), brian)
    assert (tmp_path / "cpp" / "main").exists()
