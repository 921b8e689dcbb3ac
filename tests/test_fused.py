"""Fused time loop (snn.kernels) against the plain step-by-step reference (snn.functional.scan).

Forward spikes must be identical and every gradient (input, learnable decays, threshold,
bias, ALIF's rho/gamma, the initial state) within 1e-6 in float64, for every neuron model,
reset mode, detach_reset setting and surrogate; a custom surrogate takes the torch-loop
backward. Tolerance: rtol = atol = 1e-6.
"""

from __future__ import annotations

import pytest
import torch

from snn import functional
from snn import surrogate as surrogates
from snn.kernels import layout, numba_scan, scan
from snn.neurons import ALIF, IF, LIF, CubaLIF

STEPS, BATCH, FEATURES = 30, 3, 6
MODELS = ("if", "lif", "cuba", "alif")


def _setup(model: str, dtype: torch.dtype, seed: int):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(STEPS, BATCH, FEATURES, generator=g, dtype=dtype) * 1.6).requires_grad_()
    alpha = torch.full((FEATURES,), 0.5 if model in ("cuba", "alif") else 0.0, dtype=dtype, requires_grad=True)
    beta = torch.tensor(1.0 if model == "if" else 0.85, dtype=dtype, requires_grad=True)
    theta = (torch.rand(FEATURES, generator=g, dtype=dtype) + 0.8).requires_grad_()
    bias = torch.tensor(0.05, dtype=dtype, requires_grad=True)
    extra = {}
    if model == "alif":
        extra = {"rho": torch.tensor(0.9, dtype=dtype, requires_grad=True),
                 "gamma": torch.tensor(0.3, dtype=dtype, requires_grad=True)}
    return x, {"alpha": alpha, "beta": beta, "theta": theta, "bias": bias, **extra}


def _both(model: str, sg, reset: str, detach: bool, dtype=torch.float64, seed: int = 0):
    x, p = _setup(model, dtype, seed)
    g = torch.Generator().manual_seed(seed + 100)
    init = [(torch.rand(BATCH, FEATURES, generator=g, dtype=dtype) * 0.5).requires_grad_() for _ in range(3)]
    if model == "alif":
        params, state = functional.AlifParameters(**p), functional.AlifState(*init)
        ref_out, ref_state, _ = functional.scan(
            lambda xt, s: functional.alif_step(xt, s, params, sg, reset, detach), x, state)
        out, out_state = scan.alif_scan(x, state, params, sg, reset, detach)
    else:
        params, state = functional.CubaParameters(**p), functional.CubaState(*init[:2])
        ref_out, ref_state, _ = functional.scan(
            lambda xt, s: functional.cuba_step(xt, s, params, sg, reset, detach), x, state)
        out, out_state = scan.cuba_scan(x, state, params, sg, reset, detach)
    targets = [x, *p.values(), *state]
    w = torch.linspace(-1, 1, x.numel(), dtype=dtype).reshape(x.shape)

    def loss(spikes, final):  # spikes and every component of the final state feed the loss
        return (spikes * w).sum() + sum((k + 1) * 0.3 * s.sum() for k, s in enumerate(final))
    ours = torch.autograd.grad(loss(out, out_state), targets, allow_unused=True)
    theirs = torch.autograd.grad(loss(ref_out, ref_state), targets, allow_unused=True)
    return out, ref_out, out_state, ref_state, ours, theirs, ["x", *p, "i0", "v0", "a0"][:len(targets)]


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("reset", functional.RESET_MODES)
@pytest.mark.parametrize("detach", [True, False])
@pytest.mark.parametrize("name", sorted(surrogates.SURROGATES))
def test_fused_matches_reference_float64(model: str, reset: str, detach: bool, name: str) -> None:
    out, ref, st, ref_st, ours, theirs, names = _both(model, surrogates.get(name), reset, detach)
    assert torch.equal(out, ref), "forward spikes differ"
    assert 0 < out.mean() < 1, "the test input must make neurons fire, but not always"
    for a, b in zip(st, ref_st):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    for n, a, b in zip(names, ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6, msg=f"gradient of {n} differs")
    assert ours[0].abs().sum() > 0


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("reset", functional.RESET_MODES)
@pytest.mark.parametrize("with_state", [True, False])
def test_scalar_constant_parameters_match_reference(model: str, reset: str, with_state: bool) -> None:
    """Scalar parameters that need no gradient (the usual layer) take the kernels' hoisted
    parameters, and IF/LIF (alpha = 0) the path without a current state; the final state
    still carries gradient back into x and the initial state."""
    dtype = torch.float64
    g = torch.Generator().manual_seed(3)
    x = (torch.rand(STEPS, BATCH, FEATURES, generator=g, dtype=dtype) * 1.6).requires_grad_()
    values = {"alpha": 0.5 if model in ("cuba", "alif") else 0.0, "beta": 1.0 if model == "if" else 0.85,
              "theta": 1.0, "bias": 0.05, **({"rho": 0.9, "gamma": 0.3} if model == "alif" else {})}
    p = {k: torch.tensor(v, dtype=dtype) for k, v in values.items()}
    zeros = [torch.zeros(BATCH, FEATURES, dtype=dtype) for _ in range(3)]
    init = [(torch.rand(BATCH, FEATURES, generator=g, dtype=dtype) * 0.5).requires_grad_() for _ in range(3)]
    sg = surrogates.get("fast_sigmoid")
    if model == "alif":
        params, start = functional.AlifParameters(**p), functional.AlifState(*(init if with_state else zeros))
        ref_out, ref_state, _ = functional.scan(
            lambda xt, s: functional.alif_step(xt, s, params, sg, reset, True), x, start)
        out, out_state = scan.alif_scan(x, start if with_state else None, params, sg, reset, True)
    else:
        params, start = functional.CubaParameters(**p), functional.CubaState(*(init if with_state else zeros)[:2])
        ref_out, ref_state, _ = functional.scan(
            lambda xt, s: functional.cuba_step(xt, s, params, sg, reset, True), x, start)
        out, out_state = scan.cuba_scan(x, start if with_state else None, params, sg, reset, True)
    assert torch.equal(out, ref_out), "forward spikes differ"
    assert 0 < out.mean() < 1
    for a, b in zip(out_state, ref_state):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    w = torch.linspace(-1, 1, x.numel(), dtype=dtype).reshape(x.shape)

    def loss(spikes, final):
        return (spikes * w).sum() + sum((k + 1) * 0.3 * s.sum() for k, s in enumerate(final))
    targets = [x, *start] if with_state else [x]
    ours = torch.autograd.grad(loss(out, out_state), targets)
    theirs = torch.autograd.grad(loss(ref_out, ref_state), targets)
    for n, a, b in zip(["x", "i0", "v0", "a0"], ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6, msg=f"gradient of {n} differs")
    assert ours[0].abs().sum() > 0


@pytest.mark.parametrize("model", ["lif", "alif"])
def test_custom_surrogate_uses_torch_backward(model: str) -> None:
    sg = surrogates.custom(lambda z: torch.exp(-z.abs()))
    assert layout.FusedConfig(sg).kernel_code == -1
    out, ref, _, _, ours, theirs, names = _both(model, sg, "subtract", False)
    assert torch.equal(out, ref)
    for n, a, b in zip(names, ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6, msg=f"gradient of {n} differs")


@pytest.mark.parametrize("model", MODELS)
def test_float32_spikes_identical(model: str) -> None:
    out, ref, _, _, ours, theirs, _ = _both(model, surrogates.get("arctan"), "subtract", True, torch.float32, 3)
    assert torch.equal(out, ref)
    torch.testing.assert_close(ours[0], theirs[0], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("parallel", [True, False])
def test_parallel_and_serial_kernels_agree(parallel: bool, monkeypatch) -> None:
    """Big enough to split across threads when PARALLEL_MIN_ELEMENTS allows it."""
    monkeypatch.setattr(numba_scan, "PARALLEL_MIN_ELEMENTS", 1 if parallel else None)
    out, ref, _, _, ours, theirs, names = _both("alif", surrogates.get("sigmoid"), "zero", False)
    assert torch.equal(out, ref)
    for n, a, b in zip(names, ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6, msg=f"gradient of {n} differs")


@pytest.mark.parametrize("cls", [IF, LIF, CubaLIF, ALIF])
def test_layers_route_through_fused_path_and_match(cls) -> None:
    torch.manual_seed(0)
    layer = cls(learn_threshold=True).double()
    x = (torch.rand(STEPS, BATCH, FEATURES, dtype=torch.float64) * 1.5).requires_grad_()
    assert layer._runs_fused()
    out, state = layer(x)
    assert "FusedScan" in type(out.grad_fn).__name__  # [T, B, F] input: no reshape around it
    layer.fused = False
    ref, ref_state = layer(x)
    assert torch.equal(out, ref)
    g1 = torch.autograd.grad(out.sum() + state.v.sum(), [x, layer.theta])
    g2 = torch.autograd.grad(ref.sum() + ref_state.v.sum(), [x, layer.theta])
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


def test_recording_and_recurrence_use_the_reference_path() -> None:
    layer = LIF()
    layer.record_membrane = True
    assert not layer._runs_fused()
    recurrent = LIF(recurrent_features=4)
    assert not recurrent._runs_fused()
    recurrent.fused = True
    with pytest.raises(Exception, match="cannot run fused"):
        recurrent(torch.rand(3, 2, 4))


def test_no_grad_forward_stores_nothing_and_streams() -> None:
    """State carried across two chunks equals one run over the whole sequence."""
    layer = CubaLIF()
    x = torch.rand(20, 2, 5) * 1.5
    with torch.no_grad():
        whole, _ = layer(x)
        first, state = layer(x[:8])
        second, _ = layer(x[8:], state)
    assert torch.equal(torch.cat([first, second]), whole)


@pytest.mark.gpu
def test_cuda_torch_loop_matches_reference() -> None:
    layer = ALIF(learn_threshold=True).cuda()
    x = (torch.rand(STEPS, BATCH, FEATURES, device="cuda") * 1.5).requires_grad_()
    out, _ = layer(x)
    layer.fused = False
    ref, _ = layer(x)
    assert torch.equal(out, ref)


@pytest.mark.parametrize("cls", [IF, LIF, CubaLIF, ALIF])
@pytest.mark.parametrize("learn", [False, True])
def test_start_at_rest_without_state_matches_reference(cls, learn: bool) -> None:
    """No state given: the kernels zero the state themselves (and read zeros for the
    parameter gradients that need the initial state); results equal the reference path."""
    torch.manual_seed(1)
    kwargs = {"learn_threshold": True}
    if learn and cls in (LIF, CubaLIF, ALIF):
        kwargs["learn_beta"] = True
    if learn and cls is CubaLIF:
        kwargs["learn_alpha"] = True
    layer = cls(**kwargs).double()
    x = (torch.rand(STEPS, BATCH, FEATURES, dtype=torch.float64) * 1.5).requires_grad_()
    params = [p for p in layer.parameters()]
    assert layer._runs_fused()
    out, state = layer(x)
    layer.fused = False
    ref, ref_state = layer(x)
    assert torch.equal(out, ref)
    for a, b in zip(state, ref_state):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    w = torch.linspace(-1, 1, x.numel(), dtype=torch.float64).reshape(x.shape)
    g1 = torch.autograd.grad((out * w).sum(), [x, *params])
    g2 = torch.autograd.grad((ref * w).sum(), [x, *params])
    assert g1[0].abs().sum() > 0
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("reduce", ["sum", "mean", "expanded_row"])
def test_expanded_output_gradients(reduce: str) -> None:
    """out.sum() / out.mean() hand the backward one value expanded over [T, B, F] (read once);
    a partly expanded gradient is made contiguous. Both equal the reference path."""
    torch.manual_seed(4)
    layer = ALIF(learn_threshold=True).double()
    x = (torch.rand(STEPS, BATCH, FEATURES, dtype=torch.float64) * 1.5).requires_grad_()
    weights = torch.rand(1, 1, FEATURES, dtype=torch.float64).expand(STEPS, BATCH, FEATURES)

    def loss(out):
        return out.sum() if reduce == "sum" else out.mean() if reduce == "mean" else (out * weights).sum()
    out, _ = layer(x)
    g1 = torch.autograd.grad(loss(out), [x, layer.theta])
    layer.fused = False
    ref, _ = layer(x)
    g2 = torch.autograd.grad(loss(ref), [x, layer.theta])
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
