"""NIR export / import / files: exact round trip, recurrence, and refusal of bad input."""

from __future__ import annotations

import h5py
import nir
import numpy as np
import pytest
import torch
from torch import nn

import snn
from converters import nir_discretisation as D
from converters.nir_export import export_nir
from converters.nir_import import import_nir
from converters.nir_io import load_network, load_nir, save_nir
from snn import encoders
from snn.errors import SpikeforgeError
from snn.graph_network import GraphNetwork, Node
from snn.layers import Add, Concat, Scale
from snn.recording import Recorder


def _network(seed: int = 0) -> snn.Sequential:
    """Every exportable layer kind, per-neuron parameters, both reset modes, a recurrence."""
    torch.manual_seed(seed)
    return snn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        snn.LIF(beta=torch.rand(4, 1, 1) * 0.5 + 0.4, theta=0.7, bias=0.01, reset="zero"),
        nn.AvgPool2d(2), nn.Conv2d(4, 4, 3, padding=1, bias=False), snn.IF(theta=0.9),
        nn.AvgPool2d(2, divisor_override=1), nn.Flatten(), nn.Linear(16, 12),
        snn.CubaLIF(alpha=torch.rand(12), beta=torch.rand(12), theta=torch.rand(12) + 0.5,
                    bias=torch.randn(12) * 0.01, recurrent_features=12, surrogate="arctan"),
        nn.Linear(12, 5, bias=False), snn.Integrator(beta=0.95, bias=0.1),
        input_shape=(1, 8, 8))


def _input(seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(12, 3, 1, 8, 8, generator=g) < 0.4).float() * 2


@pytest.mark.parametrize("dt", [1e-4, 3.3e-3])
def test_round_trip_through_a_file_is_exact(tmp_path, dt, dtype=torch.float32):
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        net = _network()
        path = save_nir(net, tmp_path / "net.nir", dt=dt)
        back = load_network(path)  # dt comes from the file
        x = _input().to(dtype)
        with snn.Recorder(net) as rec, snn.Recorder(back) as rec_back:
            out, out_back = net(x), back(x)
    finally:
        torch.set_default_dtype(previous)
    assert torch.equal(out, out_back)
    for name in rec.spikes:
        assert torch.equal(rec.spikes[name], rec_back.spikes[name])
    assert rec.spikes["8"].sum() > 0
    original, restored = net.state_dict(), back.state_dict()
    assert original.keys() == restored.keys()
    for key in original:
        assert original[key].shape == restored[key].shape and torch.equal(original[key], restored[key]), key
    assert [m.spec() for m in net if hasattr(m, "spec")] == [m.spec() for m in back if hasattr(m, "spec")]


def test_float64_parameters_round_trip_within_an_ulp(tmp_path):
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        net = _network()
        back = load_network(save_nir(net, tmp_path / "net.nir", dt=3.3e-3))
    finally:
        torch.set_default_dtype(previous)
    original, restored = net.state_dict(), back.state_dict()
    for key in original:
        assert torch.allclose(original[key], restored[key], rtol=4e-16, atol=0), key


def test_reset_mode_travels_in_metadata_and_peers_see_zero_reset():
    net = snn.Sequential(nn.Linear(3, 4), snn.LIF(beta=0.9, reset="subtract"), input_shape=(3,))
    graph = export_nir(net)
    node = graph.nodes["1"]
    assert isinstance(node, nir.LIF) and node.metadata[D.RESET_KEY] == "subtract"
    assert np.array_equal(node.v_reset, np.zeros(4))  # what a metadata-blind reader runs
    assert import_nir(graph)[1].reset == "subtract"
    node.metadata = {}
    assert import_nir(graph)[1].reset == "zero"


def test_discretisation_is_forward_euler():
    """The written-down mapping, checked against one Euler step of the NIR LIF equation."""
    dt, beta, bias, theta = 1e-3, 0.9, 0.05, 1.0
    node = export_nir(snn.Sequential(snn.LIF(beta=beta, bias=bias, theta=theta), input_shape=(1,)), dt=dt).nodes["0"]
    tau, r, v_leak = float(node.tau[0]), float(node.r[0]), float(node.v_leak[0])
    v, x = 0.3, 0.2
    euler = v + dt / tau * ((v_leak - v) + r * x)
    ours = np.float32(beta) * v + x + np.float32(bias)
    assert euler == pytest.approx(float(ours), rel=1e-6)


def test_flat_recurrent_cycle_imports_like_a_subgraph():
    net = snn.Sequential(nn.Linear(3, 5), snn.LIF(beta=0.8, recurrent_features=5), input_shape=(3,))
    nested = export_nir(net)
    sub = nested.nodes["1"]
    flat_nodes = {"input": nested.nodes["input"], "0": nested.nodes["0"], "lif": sub.nodes["lif"],
                  "w_rec": sub.nodes["w_rec"], "output": nested.nodes["output"]}
    flat = nir.NIRGraph(nodes=flat_nodes, edges=[("input", "0"), ("0", "lif"), ("lif", "w_rec"), ("w_rec", "lif"),
                                                 ("lif", "output")], type_check=False)
    x = (torch.rand(10, 2, 3) < 0.5).float() * 3
    assert torch.equal(import_nir(flat)(x), net(x))
    assert torch.equal(import_nir(nested)(x), net(x))


def test_unsupported_node_is_named():
    graph = export_nir(snn.Sequential(nn.Linear(3, 4), snn.LIF(), input_shape=(3,)))
    graph.nodes["my_delay"] = nir.Delay(delay=np.ones(4))
    graph.edges = [("input", "0"), ("0", "my_delay"), ("my_delay", "1"), ("1", "output")]
    with pytest.raises(SpikeforgeError, match="'my_delay'.*Delay"):
        import_nir(graph)


def test_a_node_with_two_incoming_edges_sums_them():
    torch.manual_seed(0)
    graph = export_nir(snn.Sequential(nn.Linear(3, 4), snn.LIF(), input_shape=(3,)))
    graph.nodes["side"] = nir.Affine(weight=np.ones((4, 3)), bias=np.zeros(4))
    graph.edges += [("input", "side"), ("side", "1")]
    net = import_nir(graph)
    assert isinstance(net, GraphNetwork) and isinstance(net.layers["1_sum"], Add)
    x = torch.rand(6, 2, 3)
    main, lif = net.layers["0"], net.layers["1"]
    with torch.no_grad():
        by_hand = lif(main(x) + x.sum(-1, keepdim=True).expand(6, 2, 4))[0]
        assert torch.allclose(net(x), by_hand, atol=1e-6)


def test_a_cycle_that_is_not_a_recurrent_layer_is_refused():
    graph = export_nir(snn.Sequential(nn.Linear(3, 4), snn.LIF(), nn.Linear(4, 4), snn.LIF(), input_shape=(3,)))
    graph.edges.append(("3", "2"))
    with pytest.raises(SpikeforgeError, match="cycle"):
        import_nir(graph)


def _residual() -> GraphNetwork:
    """A converted network's forms: charged IF with per-channel thresholds, Scale, a residual Add,
    global average pooling and an Integrator readout."""
    torch.manual_seed(2)
    theta = torch.tensor([0.5, 0.8, 1.2])
    return GraphNetwork([
        Node("conv1", nn.Conv2d(1, 3, 3, padding=1), ("input",)),
        Node("if1", snn.IF(theta=theta.reshape(3, 1, 1), v_init=0.5), ("conv1",)),
        Node("amp", Scale(theta), ("if1",)),
        Node("conv2", nn.Conv2d(3, 3, 3, padding=1), ("amp",)),
        Node("add", Add(), ("conv2", "amp")),
        Node("if2", snn.IF(theta=0.7, v_init=0.5), ("add",)),
        Node("pool", nn.AdaptiveAvgPool2d(1), ("if2",)),
        Node("flat", nn.Flatten(), ("pool",)),
        Node("fc", nn.Linear(3, 4), ("flat",)),
        Node("out", snn.Integrator(beta=1.0), ("fc",)),
    ], output="out", input_shape=(1, 6, 6)).eval()


def test_residual_network_round_trips_through_a_file(tmp_path):
    net = _residual()
    graph = export_nir(net)
    assert ("amp", "if2") in graph.edges and ("conv2", "if2") in graph.edges  # the Add is NIR's edge sum
    back = load_network(save_nir(net, tmp_path / "residual.nir")).eval()
    assert isinstance(back, GraphNetwork) and not back.is_chain()
    x = encoders.direct(torch.rand(4, 1, 6, 6) * 2, 12)
    with torch.no_grad(), Recorder(net, membrane=False) as ours, Recorder(back, membrane=False) as theirs:
        assert torch.equal(back(x), net(x))
    assert sum(int(s.sum()) for s in ours.spikes.values()) > 0
    assert list(ours.spikes) == list(theirs.spikes)
    assert all(torch.equal(ours.spikes[k], theirs.spikes[k]) for k in ours.spikes)


def test_concatenation_has_no_nir_form():
    net = GraphNetwork([Node("a", nn.Linear(3, 2), ("input",)), Node("b", nn.Linear(3, 2), ("input",)),
                        Node("cat", Concat(1), ("a", "b")), Node("lif", snn.LIF(), ("cat",))],
                       output="lif", input_shape=(3,))
    with pytest.raises(SpikeforgeError, match=r"layer cat \(Concat\).*no concatenation"):
        export_nir(net)


def test_export_refuses_layers_without_a_nir_form():
    with pytest.raises(SpikeforgeError, match="layer 1 \\(ALIF\\)"):
        export_nir(snn.Sequential(nn.Linear(3, 4), snn.ALIF(), input_shape=(3,)))
    with pytest.raises(SpikeforgeError, match="layer 1 \\(BatchNorm1d\\)"):
        export_nir(snn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), snn.LIF(), input_shape=(3,)))
    with pytest.raises(SpikeforgeError, match="bias"):
        export_nir(snn.Sequential(nn.Linear(3, 4), snn.IF(bias=0.1), input_shape=(3,)))


def test_non_zero_v_reset_is_refused():
    graph = export_nir(snn.Sequential(nn.Linear(3, 4), snn.LIF(), input_shape=(3,)))
    graph.nodes["1"].v_reset = np.full(4, 0.2)
    with pytest.raises(SpikeforgeError, match="'1'.*v_reset"):
        import_nir(graph)


def test_malformed_files_are_refused(tmp_path):
    text = tmp_path / "notes.nir"
    text.write_text("not a network")
    with pytest.raises(SpikeforgeError, match="not an HDF5 file"):
        load_nir(text)
    empty = tmp_path / "empty.h5"
    with h5py.File(empty, "w") as f:
        f.create_dataset("x", data=np.arange(3))
    with pytest.raises(SpikeforgeError, match="no NIR graph"):
        load_nir(empty)
    good = save_nir(snn.Sequential(nn.Linear(30, 40), snn.LIF(), input_shape=(30,)), tmp_path / "good.nir")
    truncated = tmp_path / "truncated.nir"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(SpikeforgeError, match="truncated or corrupt"):
        load_network(truncated)
    with pytest.raises(SpikeforgeError, match="does not exist"):
        load_nir(tmp_path / "missing.nir")


def test_unknown_node_type_in_a_file_is_named(tmp_path):
    path = save_nir(snn.Sequential(nn.Linear(3, 4), snn.LIF(), input_shape=(3,)), tmp_path / "g.nir")
    with h5py.File(path, "a") as f:
        del f["node/nodes/1/type"]
        f["node/nodes/1"].create_dataset("type", data="FancyNeuron", dtype=h5py.string_dtype())
    with pytest.raises(SpikeforgeError, match="'1'.*FancyNeuron"):
        load_nir(path)


def test_failed_save_leaves_no_file(tmp_path):
    target = tmp_path / "out.nir"
    with pytest.raises(SpikeforgeError):
        save_nir(snn.Sequential(nn.Linear(3, 4), snn.ALIF(), input_shape=(3,)), target)
    assert list(tmp_path.iterdir()) == []


def test_short_time_constant_names_the_node():
    graph = export_nir(snn.Sequential(nn.Linear(3, 4), snn.LIF(beta=0.5), input_shape=(3,)), dt=1e-3)
    with pytest.raises(SpikeforgeError, match="'1'.*tau"):
        import_nir(graph, dt=1e-2)
