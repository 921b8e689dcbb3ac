"""Real Lava processes (lava-nc 0.10.0 in .venv-lava) against the torch integer emulation, spike for spike.

Needs the Lava environment: ``make lava-env`` builds ``.venv-lava`` (``make test`` builds it first).
"""

from __future__ import annotations

import os
import subprocess

import h5py
import numpy as np
import pytest
import torch
from torch import nn

from hardware.lava.cli import register
from hardware.lava.compile import compile_network
from hardware.lava.deploy import deploy
from hardware.lava.driver import REPO_ROOT, RUNNER, lava_python, run_in_lava
from hardware.lava.emulate import emulate
from hardware.lava.netx_export import export_netx
from snn.checkpoint import save_checkpoint
from snn.errors import SpikeforgeError
from snn.graph_network import GraphNetwork, Node
from snn.layers import Add, Concat, Scale
from snn.network import Sequential
from snn.neurons import IF, LIF, CubaLIF, Integrator

try:
    lava_python()
except SpikeforgeError:
    pytest.skip("the Lava environment .venv-lava is missing; build it with 'make lava-env' (make test does)",
                allow_module_level=True)

STEPS = 64


def _dense3() -> Sequential:
    return Sequential(nn.Linear(20, 24), LIF(beta=0.9, reset="zero"), nn.Linear(24, 16), LIF(beta=0.8, reset="zero"),
                      nn.Linear(16, 6), IF(reset="zero"), input_shape=(20,))


def _conv2() -> Sequential:
    return Sequential(nn.Conv2d(2, 4, 3, padding=1), LIF(beta=0.9, theta=0.5, reset="zero"),
                      nn.Conv2d(4, 3, 3, stride=2, bias=False), CubaLIF(alpha=0.3, beta=0.95, reset="zero"),
                      input_shape=(2, 6, 6))


def _biased() -> Sequential:
    return Sequential(nn.Linear(10, 12), CubaLIF(alpha=0.2, beta=0.7, bias=0.05, reset="zero"), nn.Linear(12, 8),
                      LIF(beta=0.99, bias=-0.02, theta=0.8, reset="zero"), nn.Linear(8, 4), Integrator(beta=0.95),
                      input_shape=(10,))


@pytest.mark.parametrize("seed, build", [(0, _dense3), (1, _conv2), (2, _biased)])
def test_lava_matches_emulation_spike_for_spike(seed, build):
    torch.manual_seed(seed)
    model = build().eval()
    net = compile_network(model)
    q = net.quantise_input(torch.rand(STEPS, 1, *model.input_shape))
    em = emulate(net, q, delay=True)
    lava = run_in_lava(net, q[:, 0].numpy(), mode="single")
    assert set(lava.spikes) == set(em.spikes)
    for name, spikes in em.spikes.items():
        np.testing.assert_array_equal(lava.spikes[name], spikes[:, 0].numpy(), err_msg=f"layer {name}")
    for name, v in em.membrane.items():
        np.testing.assert_array_equal(lava.membrane[name], v[:, 0].numpy())
    assert sum(lava.counts.values()) > 0
    assert lava.counts == {k: int(s.sum()) for k, s in em.spikes.items()}


def _cnn_checkpoint(path):
    torch.manual_seed(5)
    model = Sequential(nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), LIF(), nn.AvgPool2d(2),
                       nn.Flatten(), nn.Linear(64, 16), LIF(), nn.Linear(16, 10), Integrator(), input_shape=(1, 8, 8))
    with torch.no_grad():
        model[1].running_mean.uniform_(-0.1, 0.1)
        model[1].running_var.uniform_(0.5, 1.5)
        model[1].bias.uniform_(-0.1, 0.3)
        model[0].weight.mul_(3)
    return save_checkpoint(path, model.eval(), task={"timesteps": 4, "encoder": "direct", "readout": "membrane_mean"})


def test_deploy_streams_samples_with_resets(tmp_path):
    results = deploy(_cnn_checkpoint(tmp_path / "model.pt"), samples=3)
    assert results["emulation_agreement"] == 1.0
    assert results["samples"] == 3 and results["timesteps"] == 4
    assert 0.0 <= results["lava_accuracy"] <= 1.0 and 0.0 <= results["float_accuracy"] <= 1.0
    assert results["lava_accuracy"] == results["emulation_accuracy"]
    assert sum(results["spikes_per_sample"].values()) > 0


def test_deploy_verb_parses(tmp_path):
    import argparse
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["deploy", "--model", "m.pt", "--backend", "lava", "--samples", "5", "--json"])
    assert args.samples == 5 and args.backend == "lava" and args.json


def test_exported_file_loads_in_netx(tmp_path):
    torch.manual_seed(6)
    model = Sequential(nn.Conv2d(1, 4, 3, padding=1), LIF(reset="zero"), nn.AvgPool2d(2), nn.Flatten(),
                       nn.Linear(64, 10), Integrator(), input_shape=(1, 8, 8)).eval()
    path = export_netx(compile_network(model), tmp_path / "net.net")
    done = subprocess.run([str(lava_python()), str(RUNNER), "--net", str(path), "--netx-check"], capture_output=True,
                          text=True, timeout=300, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr
    assert "Conv" in done.stdout and "Dense" in done.stdout


def test_recurrent_chain_is_written_as_netx_dense_rec_and_loads_in_netx(tmp_path):
    torch.manual_seed(7)
    model = Sequential(nn.Flatten(), nn.Linear(8, 12), LIF(reset="zero", recurrent_features=12), nn.Linear(12, 4),
                       Integrator(), input_shape=(8,)).eval()
    net = compile_network(model)
    assert net.recurrent and net.netx_compatible
    path = export_netx(net, tmp_path / "net.net")
    with h5py.File(path, "r") as f:
        assert f["layer/1/type"][()].decode() == "dense_rec"
        np.testing.assert_array_equal(f["layer/1/weight_rec"][()], net.layers[0].connections[1].weight)
    done = subprocess.run([str(lava_python()), str(RUNNER), "--net", str(path), "--netx-check"], capture_output=True,
                          text=True, timeout=300, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr
    q = net.quantise_input(torch.rand(10, 1, 8))
    lava = run_in_lava(net, q[:, 0].numpy(), mode="single")      # our runner reads the netx table too
    np.testing.assert_array_equal(lava.spikes[net.layers[0].name], emulate(net, q).spikes[net.layers[0].name][:, 0])


def test_hang_is_stopped_by_the_timeout_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", None)
    torch.manual_seed(0)
    net = compile_network(_dense3().eval())
    q = net.quantise_input(torch.rand(STEPS, 1, 20))[:, 0].numpy()
    with pytest.raises(SpikeforgeError, match="did not finish"):
        run_in_lava(net, q, timeout=0.5)
    assert list(tmp_path.iterdir()) == []


def _processes() -> dict[int, tuple[int, int, str]]:
    """Every process on the machine: pid -> (parent pid, session id, state), from /proc."""
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2:].split()
            table[int(entry)] = (int(fields[1]), int(fields[3]), fields[0])
    return table


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="counts processes through Linux's /proc")
def test_after_a_timeout_no_process_of_the_run_is_left_alive():
    """A run too long for its timeout: while it runs, every process in the session of the runner this
    test started is recorded (the runner and Lava's workers); after the time-out none is alive."""
    import threading

    me, seen, stop = os.getpid(), set(), threading.Event()

    def record() -> None:
        while not stop.is_set():
            table = _processes()
            sessions = {sid for pid, (ppid, sid, _) in table.items() if ppid == me and sid != os.getsid(0)}
            seen.update(pid for pid, (_, sid, _) in table.items() if sid in sessions)
            stop.wait(0.1)
    torch.manual_seed(0)
    net = compile_network(_dense3().eval())
    q = net.quantise_input(torch.rand(200_000, 1, 20))[:, 0].numpy()
    watcher = threading.Thread(target=record)
    watcher.start()
    try:
        with pytest.raises(SpikeforgeError, match="did not finish"):
            run_in_lava(net, q, timeout=15)
    finally:
        stop.set()
        watcher.join()
    assert len(seen) >= 3, f"the run had not started Lava's workers within its timeout: {sorted(seen)}"
    table = _processes()
    survivors = [pid for pid in seen if pid in table and table[pid][2] != "Z"]
    assert survivors == [], f"{len(survivors)} of the run's {len(seen)} processes survived the time-out"
    assert [pid for pid in seen if pid in table] == [], "a killed process of the run is still in the table"


def test_failed_run_and_missing_hardware_are_clear_errors(tmp_path, monkeypatch):
    torch.manual_seed(0)
    net = compile_network(_dense3().eval())
    with pytest.raises(SpikeforgeError, match="does not match|failed"):
        run_in_lava(net, np.zeros((4, 7), dtype=np.int32))
    with pytest.raises(SpikeforgeError, match="lava-loihi"):
        run_in_lava(net, np.zeros((4, 20), dtype=np.int32), cfg="hw")
    kept = compile_network(Sequential(nn.Linear(20, 6), IF(), input_shape=(20,)).eval(), reset="subtract")
    with pytest.raises(SpikeforgeError, match="microcode neuron; deploy with --reset zero"):
        run_in_lava(kept, np.zeros((4, 20), dtype=np.int32), cfg="hw")
    with pytest.raises(SpikeforgeError, match="unknown reset 'one'"):
        compile_network(_dense3().eval(), reset="one")


def _residual_graph() -> GraphNetwork:
    """A conv main path with a delayed identity skip (a relay population), charged IF layers with
    per-channel thresholds, a Scale and a concatenation whose short path is a DelayDense into a
    flat population: every connection form of the compiler."""
    torch.manual_seed(3)
    theta = torch.tensor([0.5, 0.7, 0.9, 1.1])
    net = GraphNetwork([
        Node("conv0", nn.Conv2d(1, 4, 3, padding=1), ("input",)),
        Node("if0", IF(theta=0.6, v_init=0.5), ("conv0",)),
        Node("conv1", nn.Conv2d(4, 4, 3, padding=1), ("if0",)),
        Node("if1", IF(theta=theta.reshape(4, 1, 1), v_init=0.5), ("conv1",)),
        Node("amp", Scale(theta), ("if1",)),
        Node("conv2", nn.Conv2d(4, 4, 3, padding=1), ("amp",)),
        Node("add", Add(), ("conv2", "if0")),
        Node("if2", LIF(beta=0.9, theta=0.8, reset="zero"), ("add",)),
        Node("both", Concat(1), ("if2", "if1")),
        Node("flat", nn.Flatten(), ("both",)),
        Node("fc", nn.Linear(8 * 6 * 6, 5), ("flat",)),
        Node("out", Integrator(beta=1.0), ("fc",)),
    ], output="out", input_shape=(1, 6, 6)).eval()
    with torch.no_grad():
        for layer in net.modules():
            if isinstance(layer, nn.Conv2d):
                layer.weight.mul_(2.0)
    return net


@pytest.mark.parametrize("mode, reset", [("single", "zero"), ("stream", "zero"), ("stream", "subtract")])
def test_residual_graph_with_charged_layers_matches_the_emulation(mode, reset, tmp_path):
    net = compile_network(_residual_graph(), reset=reset)
    # IF resets by subtraction: Loihi's zero reset by default, our subtractive LIF model with reset="subtract"
    assert [layer.reset for layer in net.layers] == [reset, reset, "zero", "zero", "zero"]
    wiring = {layer.name: [(c.source, c.kind, c.delay) for c in layer.connections] for layer in net.layers}
    # the identity skip waits one step in a relay population; the concatenation's short path in a DelayDense
    assert wiring["if0_relay1"] == [("if0", "conv", 0)] and net.layers[2].relay
    assert wiring["if2"] == [("if1", "conv", 0), ("if0_relay1", "conv", 0)]
    assert wiring["out"] == [("if2", "dense", 0), ("if1", "dense", 1)]
    assert [layer.depth for layer in net.layers] == [1, 2, 2, 3, 4]
    assert net.layers[0].v_init_mant == round(0.5 * net.layers[0].vth) and not net.netx_compatible
    with h5py.File(export_netx(net, tmp_path / "graph.net"), "r") as f:  # netx (a chain format) cannot misread it
        assert "layer" not in f and "layer" in f["spikeforge"]
    steps, samples = 10, 3
    q = net.quantise_input(torch.rand(steps, samples, 1, 6, 6))
    if mode == "single":
        em = emulate(net, q[:, :1], delay=True)
        lava = run_in_lava(net, q[:, 0].numpy(), mode="single")
        expected = {k: s[:, 0].numpy() for k, s in em.spikes.items()}
        expected_v = {k: v[:, 0].numpy() for k, v in em.membrane.items()}
    else:
        em = emulate(net, q, delay=False)
        lava = run_in_lava(net, q.transpose(0, 1).numpy(), mode="stream", steps_per_sample=steps)
        expected = {k: s.transpose(0, 1).numpy() for k, s in em.spikes.items()}
        expected_v = {k: v.transpose(0, 1).numpy() for k, v in em.membrane.items()}
    for name, spikes in expected.items():
        assert spikes.sum() > 0 or name == "out", name
        np.testing.assert_array_equal(lava.spikes[name], spikes, err_msg=f"layer {name}")
    for name, v in expected_v.items():
        np.testing.assert_array_equal(lava.membrane[name], v)


def test_recurrent_layer_matches_the_emulation_in_one_run():
    """The recurrent weights are a Dense from the layer's spikes to its own input: Lava's one-step
    synapse delivers W s[t-1], the contract's recurrence, with nothing added."""
    torch.manual_seed(7)
    model = Sequential(nn.Linear(12, 16), LIF(beta=0.9, reset="zero", recurrent_features=16), nn.Linear(16, 4),
                       Integrator(beta=0.9), input_shape=(12,)).eval()
    with torch.no_grad():
        model[0].weight.mul_(2.0)
        model[1].recurrent.weight.normal_(0, 0.4)
    net = compile_network(model)
    assert net.recurrent == ["1"] and [c.source for c in net.layers[0].connections] == ["input", "1"]
    q = net.quantise_input(torch.rand(STEPS, 1, 12))
    em = emulate(net, q, delay=True)
    lava = run_in_lava(net, q[:, 0].numpy(), mode="single")
    assert em.spikes["1"].sum() > 0
    np.testing.assert_array_equal(lava.spikes["1"], em.spikes["1"][:, 0].numpy())
    np.testing.assert_array_equal(lava.membrane["3"], em.membrane["3"][:, 0].numpy())
    # streamed: one silent step after each sample (an inhibiting charge) keeps the samples apart
    assert net.layers[0].gap_charge > 0 and not net.stream_refusal()
    steps, samples = 12, 4
    q = net.quantise_input(torch.rand(steps, samples, 12))
    em = emulate(net, q, delay=False)   # every sample from rest, s[-1] = 0: the contract
    lava = run_in_lava(net, q.transpose(0, 1).numpy(), mode="stream", steps_per_sample=steps)
    assert em.spikes["1"][-1].sum() > 0   # spikes at the end of samples that would leak without the gap
    np.testing.assert_array_equal(lava.spikes["1"], em.spikes["1"].transpose(0, 1).numpy())
    np.testing.assert_array_equal(lava.membrane["3"], em.membrane["3"].transpose(0, 1).numpy())


def test_recurrent_layer_that_cannot_be_kept_silent_is_not_streamed():
    model = Sequential(nn.Linear(6, 5), CubaLIF(alpha=0.5, beta=0.9, reset="zero", recurrent_features=5),
                       input_shape=(6,)).eval()
    net = compile_network(model)
    assert "a current that decays (CubaLIF)" in net.stream_refusal()
    with pytest.raises(SpikeforgeError, match=r"layer 1 is recurrent with a current that decays .*mode='single'"):
        run_in_lava(net, np.zeros((2, 4, 6), dtype=np.int32), mode="stream", steps_per_sample=4)
