"""IF layers that start charged (v[-1] = v_init * theta): the contract, both torch paths, the
file format, Brian2 spike for spike, NIR (metadata), Lava (a one-time charge; bit-exact in
tests/test_lava_run.py) and a clear refusal where a backend starts at rest."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from converters.nir_io import load_network, save_nir
from hardware.brian2.build import run_discrete
from hardware.brian2.continuous import run_continuous
from hardware.brian2.reference import run_torch
from hardware.graph import network_graph
from hardware.lava.compile import compile_network
from snn import encoders, functional
from snn.checkpoint import load_checkpoint, save_checkpoint
from snn.errors import SpikeforgeError
from snn.network import Sequential
from snn.neurons import IF, Integrator
from snn.surrogate import FastSigmoid


def _charged_cnn() -> Sequential:
    """Per-channel thresholds [C, 1, 1] (as conversion makes them) and half-threshold starts."""
    torch.manual_seed(4)
    theta = torch.tensor([0.6, 1.0, 1.4]).reshape(3, 1, 1)
    return Sequential(nn.Conv2d(1, 3, 3, padding=1), IF(theta=theta, v_init=0.5), nn.AvgPool2d(2), nn.Flatten(),
                      nn.Linear(3 * 3 * 3, 5), IF(theta=0.8, v_init=0.5), nn.Linear(5, 4), Integrator(beta=1.0),
                      input_shape=(1, 6, 6)).eval()


def test_the_docstring_example_fires_one_step_earlier_than_from_rest() -> None:
    x = torch.full((3, 1, 1), 0.5)
    assert IF(theta=1.0, v_init=0.5)(x)[0].flatten().tolist() == [0.0, 1.0, 0.0]
    assert IF(theta=1.0)(x)[0].flatten().tolist() == [0.0, 0.0, 1.0]


def test_fused_and_reference_paths_agree_on_spikes_and_gradients() -> None:
    theta = torch.tensor([0.6, 1.0, 1.4]).reshape(3, 1, 1)
    x = (torch.rand(12, 2, 3, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 0.6)
    results = []
    for fused in (True, False):
        layer = IF(theta=theta, v_init=0.5, learn_threshold=True).double()
        layer.fused = fused
        xs = x.clone().requires_grad_()
        spikes, _ = layer(xs)
        (spikes * torch.linspace(0.5, 1.5, 12, dtype=torch.float64).reshape(12, 1, 1, 1, 1)).sum().backward()
        results.append((spikes, xs.grad, layer.theta.grad))
    (s1, gx1, gt1), (s2, gx2, gt2) = results
    assert torch.equal(s1, s2) and s1.sum() > 0
    torch.testing.assert_close(gx1, gx2)
    torch.testing.assert_close(gt1, gt2)
    # and the contract by hand: v[-1] = v_init * theta
    p = functional.CubaParameters(torch.zeros(()), torch.ones(()), theta.double(), torch.zeros(()))
    start = functional.charged_state(x[0], theta.double(), 0.5)
    step = lambda xt, s: functional.cuba_step(xt, s, p, FastSigmoid(), "subtract")  # noqa: E731
    assert torch.equal(functional.scan(step, x, start)[0], s1.detach())


def test_checkpoint_keeps_v_init(tmp_path) -> None:
    net = _charged_cnn()
    save_checkpoint(tmp_path / "m.pt", net)
    loaded = load_checkpoint(tmp_path / "m.pt").model.eval()
    assert [m.v_init for m in loaded if isinstance(m, IF)] == [0.5, 0.5]
    x = encoders.direct(torch.rand(3, 1, 6, 6), 10)
    assert torch.equal(loaded(x), net(x))


def test_brian2_matches_torch_spike_for_spike() -> None:
    net = _charged_cnn()
    x = encoders.direct(torch.rand(5, 1, 6, 6) * 1.5, 30)
    graph = network_graph(net)
    assert graph.populations[0].v_start is not None
    reference = run_torch(net, x)
    brian = run_discrete(graph, x.numpy(), batch=2)  # three chunks: every sample starts charged again
    for name, spikes in reference.spikes.items():
        assert spikes.sum() > 0
        np.testing.assert_array_equal(brian.spikes[name], spikes, err_msg=f"layer {name}")
    for name, v in reference.membrane.items():
        np.testing.assert_allclose(brian.membrane[name], v, rtol=0, atol=1e-9)


def test_nir_carries_v_init_in_its_metadata(tmp_path) -> None:
    net = _charged_cnn()
    back = load_network(save_nir(net, tmp_path / "net.nir")).eval()
    assert [m.v_init for m in back if isinstance(m, IF)] == [0.5, 0.5]
    x = encoders.direct(torch.rand(3, 1, 6, 6) * 1.5, 10)
    with torch.no_grad():
        assert torch.equal(back(x), net(x))


def test_lava_gives_a_charged_layer_its_charge_once() -> None:
    net = compile_network(_charged_cnn())
    first = net.layers[0]
    assert first.v_init_mant == round(0.5 * first.vth) and not net.netx_compatible


def test_continuous_brian2_refuses_a_charged_layer() -> None:
    graph = network_graph(_charged_cnn())
    with pytest.raises(SpikeforgeError, match=r"layer 1 starts charged"):
        run_continuous(graph, np.zeros((1, 1, 6, 6)), duration_s=0.01, dt_s=1e-4)


@pytest.mark.parametrize("v_init", [-0.1, 1.0])
def test_bad_v_init_is_a_clear_error(v_init: float) -> None:
    with pytest.raises(SpikeforgeError, match=r"v_init must lie in \[0, 1\)"):
        IF(v_init=v_init)
