"""GraphNetwork: residual and concatenating spiking networks, their file format, and bad graphs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from snn import encoders
from snn.checkpoint import load_checkpoint, save_checkpoint
from snn.errors import SpikeforgeError
from snn.graph_network import GraphNetwork, Node
from snn.layers import Add, Concat, Scale
from snn.network import Sequential
from snn.neurons import IF, LIF, Integrator
from snn.serialization import build_network, network_spec


def _residual() -> GraphNetwork:
    torch.manual_seed(0)
    return GraphNetwork([
        Node("conv1", nn.Conv2d(1, 4, 3, padding=1), ("input",)),
        Node("if1", IF(theta=0.5, v_init=0.5), ("conv1",)),
        Node("conv2", nn.Conv2d(4, 4, 3, padding=1), ("if1",)),
        Node("add", Add(), ("conv2", "if1")),
        Node("if2", LIF(beta=0.9, theta=0.5), ("add",)),
        Node("gain", Scale([1.0, 2.0, 0.5, 1.5]), ("if2",)),
        Node("both", Concat(1), ("gain", "if1")),
        Node("flat", nn.Flatten(), ("both",)),
        Node("fc", nn.Linear(8 * 6 * 6, 3), ("flat",)),
        Node("out", Integrator(beta=1.0), ("fc",)),
    ], output="out", input_shape=(1, 6, 6))


def _by_hand(net: GraphNetwork, x: torch.Tensor) -> torch.Tensor:
    """The same graph written out with the layers' own calls, time folded by hand."""
    steps, batch = x.shape[:2]
    fold = lambda t: t.reshape(steps * batch, *t.shape[2:])  # noqa: E731
    unfold = lambda t: t.reshape(steps, batch, *t.shape[1:])  # noqa: E731
    L = net.layers  # noqa: N806
    s1 = L["if1"](unfold(L["conv1"](fold(x))))[0]
    s2 = L["if2"](unfold(L["conv2"](fold(s1))) + s1)[0]
    joined = torch.cat([L["gain"](fold(s2)), fold(s1)], 1)
    return L["out"](unfold(L["fc"](L["flat"](joined))))[0]


def test_forward_equals_the_graph_written_by_hand() -> None:
    net = _residual().eval()
    x = encoders.direct(torch.rand(3, 1, 6, 6) * 2, 8)
    with torch.no_grad():
        assert torch.equal(net(x), _by_hand(net, x))
    assert not net.is_chain()


def test_an_activation_is_freed_once_its_last_reader_has_run() -> None:
    """The forward pass holds only values still to be read: conv1's output dies after if1 (its only
    reader), if1's spikes live until "both" (their last reader) and die before "fc" runs."""
    import weakref

    net = _residual().eval()
    kept: dict[str, weakref.ref] = {}
    alive_at: dict[str, dict[str, bool]] = {}

    def remember(name: str):
        def hook(module, inputs, output) -> None:
            kept[name] = weakref.ref(output[0] if isinstance(output, tuple) else output)
        return hook

    def look(name: str):
        def hook(module, inputs) -> None:
            alive_at[name] = {k: ref() is not None for k, ref in kept.items()}
        return hook
    net.layers["conv1"].register_forward_hook(remember("conv1"))
    net.layers["if1"].register_forward_hook(remember("if1"))
    for name in ("conv2", "fc"):
        net.layers[name].register_forward_pre_hook(look(name))
    with torch.no_grad():
        net(encoders.direct(torch.rand(2, 1, 6, 6), 3))
    assert alive_at["conv2"] == {"conv1": False, "if1": True}
    assert alive_at["fc"] == {"conv1": False, "if1": False}


def test_gradients_flow_to_every_weight() -> None:
    net = _residual()
    net(encoders.direct(torch.rand(4, 1, 6, 6) * 2, 6))[-1].sum().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_checkpoint_round_trip_keeps_graph_and_outputs(tmp_path) -> None:
    net = _residual().eval()
    save_checkpoint(tmp_path / "g.pt", net, {"timesteps": 8})
    loaded = load_checkpoint(tmp_path / "g.pt").model.eval()
    assert isinstance(loaded, GraphNetwork) and loaded.order == net.order and loaded.inputs == net.inputs
    x = encoders.direct(torch.rand(2, 1, 6, 6), 8)
    with torch.no_grad():
        assert torch.equal(loaded(x), net(x))


def test_a_chain_is_a_graph_with_one_path() -> None:
    layers = [nn.Linear(4, 5), IF(), nn.Linear(5, 2), Integrator()]
    graph = GraphNetwork([Node(f"n{k}", m, (f"n{k - 1}" if k else "input",)) for k, m in enumerate(layers)], "n3",
                         (4,))
    assert graph.is_chain()
    x = torch.rand(5, 3, 4)
    assert torch.equal(graph(x), Sequential(*layers, input_shape=(4,))(x))


def _spec(nodes: list[dict], output: str = "b") -> dict:
    return {"nodes": nodes, "output": output, "input_shape": [4]}


LINEAR = {"type": "Linear", "in_features": 4, "out_features": 4, "bias": True}


@pytest.mark.parametrize(("spec", "message"), [
    (_spec([{"name": "a", "layer": LINEAR, "inputs": ["b"]}, {"name": "b", "layer": LINEAR, "inputs": ["a"]}]),
     r"cycle: (a -> b -> a|b -> a -> b)"),
    (_spec([{"name": "b", "layer": LINEAR, "inputs": ["nowhere"]}]), r"node 'b' reads 'nowhere', which is not a node"),
    (_spec([{"name": "b", "layer": {"type": "Evil", "module": "os"}, "inputs": ["input"]}]),
     r"unknown layer type 'Evil'"),
    (_spec([{"name": "a", "layer": LINEAR, "inputs": ["input"]},
            {"name": "b", "layer": {"type": "Linear", "in_features": 7, "out_features": 2, "bias": True},
             "inputs": ["a"]}]), r"node 'b' \(Linear\) cannot run on its input \(4,\)"),
    (_spec([{"name": "b", "layer": {"type": "Add"}, "inputs": ["input"]}]), r"merges inputs but reads 1"),
    (_spec([{"name": "b", "layer": LINEAR, "inputs": ["input", "input"]}]), r"only Add and Concat take several"),
    (_spec([{"name": "b", "layer": LINEAR, "inputs": ["input"]}], output="z"), r"output 'z' is not one of its nodes"),
    (_spec([{"name": "b", "layer": LINEAR}]), r"node 0 must be a mapping with 'name'"),
])
def test_bad_graphs_are_clear_errors(spec: dict, message: str) -> None:
    with pytest.raises(SpikeforgeError, match=message):
        build_network(spec)


def test_a_bad_graph_in_a_file_is_a_clear_error_and_writes_nothing(tmp_path) -> None:
    net = _residual()
    spec = network_spec(net)
    spec["nodes"][2]["inputs"] = ["add"]  # conv2 <- add <- conv2: a cycle
    path = tmp_path / "bad.pt"
    torch.save({"format": "spikeforge.checkpoint", "version": 1, "network": spec, "state_dict": net.state_dict(),
                "task": {}, "meta": {}}, path)
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(SpikeforgeError, match="cycle"):
        load_checkpoint(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_brian2_runs_the_graph_spike_for_spike() -> None:
    """Residual addition, concatenation, Scale and a charged IF: one Brian2 synapse set per
    projection, all populations within one step, as torch runs them."""
    import numpy as np

    from hardware.brian2.build import run_discrete
    from hardware.brian2.reference import run_torch
    from hardware.graph import network_graph

    net = _residual().eval()
    graph = network_graph(net)
    assert [source for source, _ in graph.populations[-1].projections] == ["if2", "if1"]
    x = encoders.direct(torch.rand(4, 1, 6, 6, dtype=torch.float64) * 2, 10)
    reference = run_torch(net, x)
    brian = run_discrete(graph, x.numpy(), batch=2)
    for name, spikes in reference.spikes.items():
        assert spikes.sum() > 0
        np.testing.assert_array_equal(brian.spikes[name], spikes, err_msg=f"layer {name}")
    np.testing.assert_allclose(brian.membrane["out"], reference.membrane["out"], rtol=0, atol=1e-9)
