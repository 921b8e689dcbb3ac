"""The event-driven Linear (snn.kernels.event_linear) against torch's dense linear, and its use in Sequential."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from snn.kernels import event_linear as el
from snn.network import Sequential
from snn.neurons import LIF

pytestmark = pytest.mark.skipif(not el.numba_scan.numba_available(), reason="numba not installed")


def _graph_names(t: torch.Tensor) -> set[str]:
    names, stack, seen = set(), [t.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        names.add(type(node).__name__)
        stack.extend(n for n, _ in node.next_functions)
    return names


def _sparse(rows: int, cols: int, density: float, dtype: torch.dtype, binary: bool, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(rows, cols, generator=g) < density
    values = torch.full((rows, cols), 2.0) if binary else torch.randn(rows, cols, generator=g)
    return (mask * values).to(dtype)


@pytest.mark.parametrize("rows", [7, 3000])  # serial and parallel kernels
@pytest.mark.parametrize("binary", [True, False])
@pytest.mark.parametrize("with_bias", [True, False])
def test_forward_and_gradients_match_dense_linear(rows: int, binary: bool, with_bias: bool) -> None:
    x = _sparse(rows, 101, 0.15, torch.float64, binary)
    g = torch.Generator().manual_seed(1)
    weight = torch.randn(130, 101, generator=g, dtype=torch.float64)
    bias = torch.randn(130, generator=g, dtype=torch.float64) if with_bias else None
    upstream = torch.randn(rows, 130, generator=g, dtype=torch.float64)

    def run(fn):
        xs = x.clone().requires_grad_(True)
        w = weight.clone().requires_grad_(True)
        b = None if bias is None else bias.clone().requires_grad_(True)
        y = fn(xs, w, b)
        (y * upstream).sum().backward()
        return y, xs.grad, w.grad, None if b is None else b.grad, y

    y, gx, gw, gb, out = run(el.event_linear)
    assert "EventLinearBackward" in _graph_names(out)
    y_ref, gx_ref, gw_ref, gb_ref, _ = run(torch.nn.functional.linear)
    torch.testing.assert_close(y, y_ref, rtol=0, atol=1e-12)
    torch.testing.assert_close(gx, gx_ref, rtol=0, atol=1e-12)
    torch.testing.assert_close(gw, gw_ref, rtol=0, atol=1e-10)
    if with_bias:
        torch.testing.assert_close(gb, gb_ref, rtol=0, atol=1e-10)


def test_float32_spikes_match_within_rounding() -> None:
    x = _sparse(512, 784, 0.2, torch.float32, binary=True)
    layer = nn.Linear(784, 512)
    with torch.no_grad():
        y = el.event_linear(x, layer.weight, layer.bias)
        torch.testing.assert_close(y, layer(x), rtol=1e-5, atol=1e-5)


def test_rows_without_any_input_give_the_bias() -> None:
    x = torch.zeros(5, 100)
    x[2, 7] = 1.0
    layer = nn.Linear(100, 80)
    y = el.event_linear(x, layer.weight, layer.bias)
    assert "EventLinearBackward" in _graph_names(y)
    expected = layer.bias.detach().expand(5, 80).clone()
    expected[2] += layer.weight.detach()[:, 7]
    torch.testing.assert_close(y.detach(), expected)


@pytest.mark.parametrize("case", ["dense input", "narrow output", "denser input to a mid-width output", "3-d input",
                                  "dtype mismatch"])
def test_falls_back_to_the_dense_linear_where_events_do_not_pay(case: str) -> None:
    x = _sparse(64, 100, 0.1, torch.float32, binary=True)
    weight = torch.randn(80, 100, requires_grad=True)
    if case == "dense input":
        x = torch.randn(64, 100)
    elif case == "narrow output":
        weight = torch.randn(el.MIN_OUT_FEATURES - 1, 100, requires_grad=True)
    elif case == "denser input to a mid-width output":
        x = _sparse(64, 100, (el.MAX_DENSITY_NARROW + el.MAX_DENSITY) / 2 + 0.02, torch.float32, binary=True)
    elif case == "3-d input":
        x = x.reshape(4, 16, 100)
    else:
        x = x.double()
    if case == "dtype mismatch":
        with pytest.raises(RuntimeError):  # torch's own dtype error, not a silent cast
            el.event_linear(x, weight)
        return
    y = el.event_linear(x, weight)
    assert "EventLinearBackward" not in _graph_names(y)
    torch.testing.assert_close(y, torch.nn.functional.linear(x, weight))


def test_sequential_runs_plain_linear_layers_event_driven_and_agrees_with_dense() -> None:
    torch.manual_seed(0)
    x = (torch.rand(20, 8, 300) < 0.1).double()
    net = Sequential(nn.Linear(300, 128), LIF(beta=0.9), nn.Linear(128, 64), LIF(beta=0.9)).double()
    out = net(x)
    assert "EventLinearBackward" in _graph_names(out)
    out.sum().backward()
    grads = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    net.event_driven_linear = False
    reference = net(x)
    assert "EventLinearBackward" not in _graph_names(reference)
    reference.sum().backward()
    assert torch.equal(out, reference)
    for got, want in zip(grads, [p.grad for p in net.parameters()]):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-10)


def test_a_linear_with_hooks_runs_its_own_forward_so_hooks_fire() -> None:
    x = (torch.rand(5, 2, 300) < 0.1).float()
    net = Sequential(nn.Linear(300, 128), LIF(beta=0.9))
    seen = []
    handle = net[0].register_forward_hook(lambda module, args, output: seen.append(output.shape))
    out = net(x)
    handle.remove()
    assert seen == [torch.Size([10, 128])]
    assert "EventLinearBackward" not in _graph_names(out)
