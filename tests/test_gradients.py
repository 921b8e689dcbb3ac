"""Gradients of every neuron model, for every surrogate, against a plain autograd reference.

The reference is written from the contract's equations, step by step, without
:mod:`snn.functional` or the custom autograd function: its spike is
``H(z) + sigma(z) - sigma(z).detach()`` with sigma the surrogate's antiderivative, so
plain autograd differentiates sigma while the forward value stays exactly H(z).

Each layer is checked on both of its execution paths: the step-by-step one
(``layer.fused = False``, :func:`snn.functional.scan`) for every surrogate, and the fused
kernel (the default) for the default surrogate. tests/test_fused.py proves the kernels equal
the step-by-step path for every surrogate, reset and model, so every surrogate reaches the
reference through the kernels too, without compiling a kernel per surrogate twice.
"""

from __future__ import annotations

import pytest
import torch

from snn import surrogate as surrogates
from snn.neurons import ALIF, IF, LIF, CubaLIF, Integrator


@pytest.fixture(autouse=True)
def float64_parameters():
    """Build layers with float64 parameters so 0.9 means 0.9, as in the reference."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


SURROGATES = sorted(surrogates.SURROGATES)
RESETS = ("subtract", "zero")
STEPS, BATCH, FEATURES = 24, 3, 5


def reference_spike(z: torch.Tensor, sg: surrogates.Surrogate) -> torch.Tensor:
    heaviside = (z > 0).to(z.dtype)
    smooth = sg.primitive(z)
    return heaviside + (smooth - smooth.detach())  # exactly H(z) forward


def reference_run(x, alpha, beta, theta, bias, sg, reset, detach_reset, w_rec=None, rho=None, gamma=None):
    i = torch.zeros_like(x[0])
    v = torch.zeros_like(x[0])
    a = torch.zeros_like(x[0])
    s = torch.zeros_like(x[0])
    out = []
    for t in range(x.shape[0]):
        xt = x[t] if w_rec is None or t == 0 else x[t] + s @ w_rec.t()
        i = alpha * i + xt
        v = beta * v + i + bias
        th = theta if gamma is None else theta + gamma * a
        s = reference_spike(v - th, sg)
        r = s.detach() if detach_reset else s
        v = v - r * th if reset == "subtract" else v * (1 - r)
        if gamma is not None:
            a = rho * a + s
        out.append(s)
    return torch.stack(out)


def inputs(seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(STEPS, BATCH, FEATURES, generator=generator, dtype=torch.float64) * 1.6).requires_grad_()


def readout_weights() -> torch.Tensor:
    return torch.linspace(-1, 1, STEPS * BATCH * FEATURES, dtype=torch.float64).reshape(STEPS, BATCH, FEATURES)


DEFAULT_SURROGATE = type(LIF().surrogate)
BUILT_IN = {type(surrogates.get(name)) for name in SURROGATES}


def paths(layer: torch.nn.Module) -> list[bool | None]:
    """The execution paths to check: step by step always; fused too for the default surrogate and
    for a custom one (fused forward, torch-loop backward: no kernel to compile)."""
    kind = type(layer.surrogate)
    return [False, None] if kind is DEFAULT_SURROGATE or kind not in BUILT_IN else [False]


def compare(layer: torch.nn.Module, reference, x: torch.Tensor, params: dict[str, torch.Tensor]) -> None:
    """Same forward spikes and the same gradient of a fixed linear readout w.r.t. x and params,
    on each execution path of :func:`paths`."""
    for fused in paths(layer):
        layer.fused = fused
        _compare_once(layer, reference, x, params)
    layer.fused = None


def _compare_once(layer: torch.nn.Module, reference, x: torch.Tensor, params: dict[str, torch.Tensor]) -> None:
    spikes, _ = layer(x)
    ref = reference(x, **params)
    assert torch.equal(spikes, ref), "forward spikes differ"
    assert spikes.sum() > 0, "test input must make the neurons fire"
    targets = [x, *params.values()]
    ours = torch.autograd.grad((spikes * readout_weights()).sum(), targets)
    theirs = torch.autograd.grad((ref * readout_weights()).sum(), targets)
    for name, g1, g2 in zip(["x", *params], ours, theirs):
        torch.testing.assert_close(g1, g2, rtol=1e-6, atol=1e-6, msg=f"gradient of {name} differs")
    assert ours[0].abs().sum() > 0, "surrogate gradient must reach the input"


@pytest.mark.parametrize("name", SURROGATES)
def test_surrogate_grad_is_derivative_of_primitive(name: str) -> None:
    sg = surrogates.get(name)
    z = torch.linspace(-2, 2, 401, dtype=torch.float64).requires_grad_()
    (autograd,) = torch.autograd.grad(sg.primitive(z).sum(), z)
    torch.testing.assert_close(sg.grad(z.detach()), autograd, rtol=1e-6, atol=1e-6)
    assert torch.equal(sg(z.detach()), (z.detach() > 0).double())


@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("name", SURROGATES)
@pytest.mark.parametrize("detach_reset", [True, False])
def test_if_gradients(name: str, reset: str, detach_reset: bool) -> None:
    layer = IF(theta=1.0, reset=reset, surrogate=name, learn_threshold=True, detach_reset=detach_reset).double()
    sg = layer.surrogate
    compare(layer, lambda x, theta: reference_run(x, 0.0, 1.0, theta, 0.0, sg, reset, detach_reset),
            inputs(1), {"theta": layer.theta})


@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("name", SURROGATES)
def test_lif_gradients(name: str, reset: str) -> None:
    layer = LIF(beta=0.85, theta=1.0, bias=0.05, reset=reset, surrogate=name, learn_beta=True,
                learn_threshold=True).double()
    sg = layer.surrogate
    compare(layer, lambda x, beta, theta: reference_run(x, 0.0, beta, theta, 0.05, sg, reset, True),
            inputs(2), {"beta": layer.beta, "theta": layer.theta})


@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("name", SURROGATES)
def test_cuba_gradients(name: str, reset: str) -> None:
    layer = CubaLIF(alpha=torch.full((FEATURES,), 0.5), beta=0.9, theta=1.5, reset=reset, surrogate=name,
                    learn_alpha=True, learn_beta=True, learn_threshold=True).double()
    sg = layer.surrogate
    compare(layer, lambda x, alpha, beta, theta: reference_run(x, alpha, beta, theta, 0.0, sg, reset, True),
            inputs(3), {"alpha": layer.alpha, "beta": layer.beta, "theta": layer.theta})


@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("name", SURROGATES)
def test_alif_gradients(name: str, reset: str) -> None:
    layer = ALIF(beta=0.9, rho=0.9, gamma=0.3, theta=1.0, reset=reset, surrogate=name, learn_beta=True,
                 learn_threshold=True).double()
    sg = layer.surrogate
    compare(layer, lambda x, beta, theta: reference_run(x, 0.0, beta, theta, 0.0, sg, reset, True,
                                                        rho=0.9, gamma=0.3),
            inputs(4), {"beta": layer.beta, "theta": layer.theta})


@pytest.mark.parametrize("name", SURROGATES)
@pytest.mark.parametrize("cls", [LIF, ALIF])
def test_recurrent_gradients(name: str, cls) -> None:
    torch.manual_seed(5)
    layer = cls(beta=0.9, surrogate=name, recurrent_features=FEATURES).double()
    sg = layer.surrogate
    extra = {"rho": 0.95, "gamma": 0.2} if cls is ALIF else {}
    compare(layer, lambda x, w: reference_run(x, 0.0, 0.9, 1.0, 0.0, sg, "subtract", True, w_rec=w, **extra),
            inputs(6), {"w": layer.recurrent.weight})


def test_custom_surrogate_plugs_in() -> None:
    sg = surrogates.custom(lambda z: torch.exp(-z.abs()), lambda z: torch.sign(z) * (1 - torch.exp(-z.abs())))
    layer = LIF(beta=0.9, surrogate=sg, learn_beta=True).double()
    compare(layer, lambda x, beta: reference_run(x, 0.0, beta, 1.0, 0.0, sg, "subtract", True),
            inputs(7), {"beta": layer.beta})


def test_integrator_gradient_is_exact() -> None:
    layer = Integrator(beta=0.9, learn_beta=True).double()
    x = inputs(8)
    out, _ = layer(x)
    v, expected = torch.zeros_like(x[0]), []
    for t in range(STEPS):
        v = layer.beta * v + x[t]
        expected.append(v)
    ref = torch.stack(expected)
    g1 = torch.autograd.grad((out * readout_weights()).sum(), [x, layer.beta])
    g2 = torch.autograd.grad((ref * readout_weights()).sum(), [x, layer.beta])
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
