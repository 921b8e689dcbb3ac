"""Sigma-delta deployment: a converted network as Lava's Delta / SigmaDelta processes with graded spikes.

The rate limit of a converted network is the ANN it came from (checked against the ANN
itself); the torch emulation equals real Lava processes message for message (needs
``.venv-lava``, built by ``make lava-env``); overflows and networks it cannot take are refused.
"""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from converters.convert import convert
from hardware.lava.cli import register
from hardware.lava.driver import lava_python, run_in_lava
from hardware.lava.sdn_compile import compile_sigma_delta, float_logits
from hardware.lava.sdn_deploy import deploy_sigma_delta, stream_frames
from hardware.lava.sdn_emulate import emulate_sigma_delta
from snn import data
from snn.checkpoint import save_checkpoint
from snn.errors import SpikeforgeError
from snn.graph_network import GraphNetwork, Node
from snn.layers import Add
from snn.network import Sequential
from snn.neurons import IF, LIF, Integrator


def _has_lava() -> bool:
    try:
        lava_python()
    except SpikeforgeError:
        return False
    return True


needs_lava = pytest.mark.skipif(not _has_lava(), reason="the Lava environment .venv-lava is missing; build it with "
                                                        "'make lava-env' (make test does)")


def _ann() -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Conv2d(6, 8, 3, padding=1),
                         nn.ReLU(), nn.Flatten(), nn.Linear(128, 24), nn.ReLU(), nn.Linear(24, 10)).eval()


@pytest.fixture(scope="module")
def digits():
    return data.load_dataset("digits", None, seed=0)


@pytest.fixture(scope="module")
def converted(digits):
    loader = DataLoader(TensorDataset(digits.x_train[:128], digits.y_train[:128]), batch_size=64)
    return _ann(), convert(_ann(), loader, channelwise=True).eval()


def test_rate_limit_of_a_converted_network_is_its_ann(converted, digits):
    ann, snn_model = converted
    x = digits.x_test[:64]
    with torch.no_grad():
        expected = ann(x).double()
    torch.testing.assert_close(float_logits(snn_model, x), expected, rtol=1e-5, atol=1e-6)  # the ANN runs in float32


def test_emulation_tracks_the_ann_one_sample_per_step(converted, digits):
    ann, snn_model = converted
    net = compile_sigma_delta(snn_model, digits.x_train[:128])
    x = digits.x_test[:60]
    frames = stream_frames(x, 1, net.depth)
    em = emulate_sigma_delta(net, net.quantise_input(frames.unsqueeze(1)))
    logits = em.readout[torch.arange(60) + net.depth, 0].double() / net.readout.scale
    with torch.no_grad():
        expected = ann(x).double()
    # the answer for sample k (shown at step k) is read `depth` steps later; fixed point vs float64
    assert (logits.argmax(1) == expected.argmax(1)).double().mean() >= 0.95
    assert (logits - expected).abs().max() < 0.05 * expected.abs().max()
    assert all(layer.state_exp in range(8) and layer.vth >= 1 for layer in net.layers)
    assert all(int(np.abs(c.weight).max()) <= 256 for layer in net.layers for c in layer.connections)


@needs_lava
def test_lava_equals_the_emulation_message_for_message(converted, digits):
    _, snn_model = converted
    net = compile_sigma_delta(snn_model, digits.x_train[:128])
    frames = stream_frames(digits.x_test[:5], 2, net.depth)
    q = net.quantise_input(frames.unsqueeze(1))
    em = emulate_sigma_delta(net, q)
    lava = run_in_lava(net, q[:, 0].numpy(), mode="single")
    assert set(lava.spikes) == set(em.messages)
    for name, messages in em.messages.items():
        np.testing.assert_array_equal(lava.spikes[name], messages[:, 0].numpy(), err_msg=name)
        assert np.abs(lava.spikes[name]).max() > 1      # graded payloads, not binary spikes
    np.testing.assert_array_equal(lava.membrane[net.readout.name], em.readout[:, 0].numpy())


@needs_lava
def test_deploy_reports_agreement_and_messages(converted, tmp_path):
    _, snn_model = converted
    path = save_checkpoint(tmp_path / "c.pt", snn_model,
                           task={"timesteps": 4, "encoder": "direct", "readout": "membrane_last"})
    result = deploy_sigma_delta(path, samples=6)
    assert result["emulation_agreement"] == 1.0 and result["identical"]
    assert result["lava_accuracy"] == result["emulation_accuracy"]
    assert result["latency_steps"] == 4 and result["timesteps"] == 1 and result["steps_run"] == 6 + 4
    assert result["graded_messages_per_inference"] == pytest.approx(sum(result["messages_per_sample"].values()))
    assert result["messages_per_sample"] == result["lava_messages_per_sample"]


def test_payload_beyond_its_bits_is_refused_before_lava_runs(digits):
    torch.manual_seed(0)
    chain = Sequential(nn.Flatten(), nn.Linear(64, 16, bias=False), IF(), nn.Linear(16, 10, bias=False), Integrator(),
                       input_shape=(1, 8, 8))
    with torch.no_grad():
        chain[1].weight.uniform_(0, 0.1)
    net = compile_sigma_delta(chain, digits.x_train[:128] * 0.01)   # calibrated on nearly dark digits
    q = net.quantise_input(stream_frames(digits.x_test[:4], 1, net.depth).unsqueeze(1))
    with pytest.raises(SpikeforgeError, match="layer 2: a graded payload of .* overflows its 16 bits"):
        emulate_sigma_delta(net, q)


def test_networks_sigma_delta_cannot_take_are_refused(digits):
    lif = Sequential(nn.Flatten(), nn.Linear(64, 10), LIF(), nn.Linear(10, 10), Integrator(), input_shape=(1, 8, 8))
    with pytest.raises(SpikeforgeError, match="not an IF neuron.*--neuron lif"):
        compile_sigma_delta(lif, digits.x_train[:8])
    nodes = [Node("flat", nn.Flatten(), ("input",)), Node("fc1", nn.Linear(64, 16), ("flat",)),
             Node("if1", IF(), ("fc1",)), Node("fc2", nn.Linear(16, 16), ("if1",)), Node("if2", IF(), ("fc2",)),
             Node("add", Add(), ("if1", "if2")), Node("fc3", nn.Linear(16, 10), ("add",)),
             Node("out", Integrator(), ("fc3",))]
    with pytest.raises(SpikeforgeError, match="chains .* skip connections"):
        compile_sigma_delta(GraphNetwork(nodes, output="out", input_shape=(1, 8, 8)), digits.x_train[:8])
    chain = Sequential(nn.Flatten(), nn.Linear(64, 10), IF(), nn.Linear(10, 10), Integrator(), input_shape=(1, 8, 8))
    with pytest.raises(SpikeforgeError, match="message_bits"):
        compile_sigma_delta(chain, digits.x_train[:8], message_bits=12)
    with pytest.raises(SpikeforgeError, match="calibration inputs"):
        compile_sigma_delta(chain, digits.x_train[:8, 0])


def test_deploy_verb_takes_the_neuron_and_refuses_a_reset_for_sigma_delta(tmp_path):
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["deploy", "--model", str(tmp_path / "m.pt"), "--neuron", "sigma-delta",
                              "--message-bits", "24", "--reset", "subtract"])
    assert args.neuron == "sigma-delta" and args.message_bits == 24
    with pytest.raises(SpikeforgeError, match="no reset"):
        args.run(args)
    assert not list(tmp_path.iterdir())


@needs_lava
def test_demo_lava_stage_also_runs_a_converted_network_as_sigma_delta(converted, tmp_path):
    from hardware.lava.cli import deploy_stage
    _, snn_model = converted
    path = save_checkpoint(tmp_path / "c.pt", snn_model,
                           task={"timesteps": 4, "encoder": "direct", "readout": "membrane_last"})
    network = {"label": "converted SNN (T = 4)", "path": str(path), "timesteps": 4, "converted": True}
    results, lines = deploy_stage(tmp_path, {"options": {"samples": 3}, "results": {}, "networks": [network]})
    graded = results["sigma_delta"]["converted SNN (T = 4)"]
    assert graded["emulation_agreement"] == 1.0 and graded["samples"] == 3
    assert results["networks"]["converted SNN (T = 4)"]["placement"]["cores_used"] >= 4
    text = "\n".join(lines)
    assert "graded messages / inference" in text and "packets / inference" in text
    assert (tmp_path / "lava.json").exists()
