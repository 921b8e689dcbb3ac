"""Sequential donates a neuron layer's input (a fresh Linear / conv / batch-norm output) to the
fused CPU backward, which writes dL/dx over it. Same numbers as without donation; one backward only."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from snn.errors import SpikeforgeError
from snn.kernels import numba_available
from snn.network import Sequential
from snn.neurons import ALIF, LIF, CubaLIF

pytestmark = pytest.mark.skipif(not numba_available(), reason="the donated input is a numba-backward feature")


def _networks() -> dict[str, tuple[Sequential, torch.Tensor]]:
    torch.manual_seed(0)
    mlp = Sequential(nn.Linear(60, 40), CubaLIF(alpha=0.5, beta=0.9, learn_alpha=True), nn.Linear(40, 30),
                     ALIF(beta=0.8, rho=0.9, gamma=0.3), nn.Linear(30, 5), LIF(beta=0.9, learn_beta=True))
    with torch.no_grad():
        for layer in (mlp[2], mlp[4]):  # enough drive for every layer to spike
            layer.weight.mul_(4.0)
    conv = Sequential(nn.Conv2d(1, 4, 3, padding=1), LIF(beta=0.9), nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4),
                      LIF(beta=0.9), nn.Flatten(), nn.Linear(4 * 6 * 6, 8), nn.BatchNorm1d(8), LIF(beta=0.9))
    conv1d = Sequential(nn.Conv1d(2, 6, 3, padding=1), LIF(beta=0.9), nn.Flatten(), nn.Linear(6 * 10, 7),
                        LIF(beta=0.9))
    # ReLU's backward reads its output: the neuron after it must keep its input
    relu = Sequential(nn.Linear(20, 30), nn.ReLU(), LIF(beta=0.9), nn.Linear(30, 5), LIF(beta=0.9))
    return {"linear + relu": (relu.double(), (torch.rand(8, 2, 20) < 0.4).double() * 3.0),
            "mlp": (mlp.double(), (torch.rand(12, 3, 60) < 0.3).double() * 4.0),
            "conv + batch norm": (conv.double(), (torch.rand(6, 2, 1, 6, 6) < 0.4).double() * 1.5),
            "conv1d": (conv1d.double(), (torch.rand(6, 2, 2, 10) < 0.4).double() * 3.0)}


def _gradients(net: Sequential, x: torch.Tensor, donate: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
    net.donate_neuron_inputs = donate
    net.zero_grad()
    xs = x.clone().requires_grad_(True)
    out = net(xs)
    (out * torch.linspace(0.5, 1.5, out.shape[-1], dtype=out.dtype)).sum().backward()
    return out.detach(), [xs.grad.clone()] + [p.grad.clone() for p in net.parameters()]


@pytest.mark.parametrize("name", ["mlp", "conv + batch norm", "conv1d", "linear + relu"])
def test_donated_inputs_give_identical_spikes_and_gradients(name: str) -> None:
    net, x = _networks()[name]
    out, grads = _gradients(net, x, donate=True)
    out_ref, grads_ref = _gradients(net, x, donate=False)
    assert out.abs().sum() > 0  # the networks spike
    assert torch.equal(out, out_ref)
    for got, want in zip(grads, grads_ref):
        assert torch.equal(got, want)


def test_a_second_backward_through_a_donated_graph_raises_and_names_the_fix() -> None:
    net, x = _networks()["mlp"]
    out = net(x)
    out.sum().backward(retain_graph=True)
    with pytest.raises(SpikeforgeError, match="donate_neuron_inputs=False"):
        out.sum().backward()


def test_without_donation_the_graph_can_be_run_backward_twice() -> None:
    net, x = _networks()["mlp"]
    net.donate_neuron_inputs = False
    out = net(x)
    out.sum().backward(retain_graph=True)
    once = [p.grad.clone() for p in net.parameters()]
    out.sum().backward()
    for twice, g in zip((p.grad for p in net.parameters()), once):
        torch.testing.assert_close(twice, 2 * g)


def test_a_hooked_neuron_layer_sees_its_input_unchanged_after_backward() -> None:
    net, x = _networks()["mlp"]
    seen = []
    net[1].register_forward_hook(lambda module, args, output: seen.append(args[0]))
    out = net(x)
    kept = seen[0].detach().clone()
    out.sum().backward()
    assert torch.equal(seen[0].detach(), kept)


def test_a_neuron_subclass_with_its_own_forward_runs_without_donation() -> None:
    class CountingLIF(LIF):
        calls = 0

        def forward(self, x, state=None):  # the pre-donation signature
            CountingLIF.calls += 1
            return super().forward(x, state)
    net = Sequential(nn.Linear(20, 10), CountingLIF(beta=0.9))
    x = (torch.rand(5, 2, 20) < 0.3).float() * 3.0
    out = net(x)
    out.sum().backward(retain_graph=True)
    out.sum().backward()  # kept input: a second backward works
    assert CountingLIF.calls == 1
