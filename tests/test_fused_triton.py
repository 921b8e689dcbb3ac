"""Triton kernels of the fused scan (snn.kernels.triton_scan) against the numba kernels and the torch
loops (snn.kernels.numba_scan, snn.kernels.torch_scan), which are their specification.

Without a GPU the kernels run in Triton's interpreter on CPU tensors. Triton reads
``TRITON_INTERPRET`` when ``triton.jit`` wraps a function, and snn.kernels.triton_scan wraps its
kernels at their first launch under the setting of that moment, so the ``interpret``
fixture sets the variable for each interpreter test only (it never leaks into other test
modules, whose CUDA runs must compile) and import order does not matter.

Checks: forward spikes, stored membranes and final states identical; dL/dx, dL/d(initial
state) and the parameter partials per (b, f), hence their batch sums, within 1e-6 in
float64 of the torch loop and of numba (within 1e-13 of numba, whose operations the kernels
repeat one for one, but for the sigmoid's exp; the needs combinations, each a numba kernel
of its own that takes seconds to compile, against the torch loop only), for IF / LIF / CUBA
/ ALIF parameter sets, both resets, detach_reset on and off, all five surrogates, several
needs combinations with stand-in initial states, a feature count that is not a multiple of
the block, and an expanded (stride 0) dL/dspikes. Shapes stay tiny: the interpreter runs
every operation as a numpy call. Without a GPU the compiler still runs: some kernel
variants are compiled for sm_90 (ptxas ships with triton). The GPU test (marked ``gpu``)
compares compiled CUDA runs with the CPU numba kernels.
"""

from __future__ import annotations

import functools
import math

import pytest
import torch

triton = pytest.importorskip("triton")

from snn import surrogate as surrogates  # noqa: E402
from snn.kernels import jit_cache, layout, numba_scan, scan, torch_scan  # noqa: E402
from snn.kernels import triton_scan as ft  # noqa: E402

STEPS, BATCH, FEATURES = 10, 2, 37  # 37 = 2 full blocks of 16 and a masked tail of 5
MODELS = ("if", "lif", "cuba", "alif")
CODE_NAMES = {code: name for name, code in layout.SURROGATE_CODES.items()}
ALL = (True,) * 6
CUBA_NEEDS = (True,) * 4 + (False, False)  # rho and gamma do not enter CUBA (as FusedScan passes them)


@pytest.fixture
def interpret(monkeypatch):
    """Triton's interpreter on, and blocks of 16 features, so that FEATURES spans 3 programs per row."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setattr(ft, "BLOCK_MAX", 16)
    assert ft.triton_available()


def _case(model: str, dtype=torch.float64, seed: int = 0, shape=(STEPS, BATCH, FEATURES), device="cpu"):
    """Input, initial state and per-feature parameters ``[F]`` of one neuron model."""
    steps, batch, features = shape
    g = torch.Generator().manual_seed(seed)

    def rand(*s):
        return torch.rand(*s, generator=g, dtype=torch.float64)

    x = rand(steps, batch, features) * 1.6
    state = [rand(batch, features) * 0.5 for _ in range(3)]
    alpha = 0.4 + 0.2 * rand(features) if model in ("cuba", "alif") else torch.zeros(features, dtype=torch.float64)
    beta = torch.ones(features, dtype=torch.float64) if model == "if" else 0.8 + 0.1 * rand(features)
    theta = 0.8 + rand(features)
    bias = 0.1 * rand(features) - 0.03
    if model == "alif":
        rho, gamma = 0.85 + 0.1 * rand(features), 0.2 + 0.2 * rand(features)
    else:
        rho, gamma = torch.zeros(features, dtype=torch.float64), torch.zeros(features, dtype=torch.float64)
    if model != "alif":
        state[2] = torch.zeros(batch, features, dtype=torch.float64)
    conv = [t.to(device=device, dtype=dtype) for t in (x, *state, alpha, beta, theta, bias, rho, gamma)]
    return conv[0], conv[1:4], tuple(conv[4:])


def _cfg(reset: str, detach: bool, adaptive: bool, code: int = 0, slope: float = 2.0) -> layout.FusedConfig:
    cfg = layout.FusedConfig(surrogates.get(CODE_NAMES[code], slope=slope), reset, detach, adaptive)
    assert cfg.kernel_code == code
    return cfg


def _serial(factory, subtract, adaptive, code=0, needs=(False,) * 6, detach=True):
    """The serial numba kernel of ``factory`` for these flags, called with switches that keep their
    defaults but ``detach`` (a start from the given state, final-state gradients read)."""
    kernel = factory(layout.KernelFlags(subtract=subtract, adaptive=adaptive, code=code, needs=tuple(needs)))[0]
    # the first call under the kernel's lock, as the backend does
    return functools.partial(jit_cache.call, kernel, layout.KernelSwitches(detach=detach))


def _numba_forward(x, state, params, subtract, adaptive):
    """The numba forward kernel on CPU numpy views: spikes, vstore, final (i, v, a). numba's
    forward stores no membrane (its backward replays the forward from x): vstore, the
    membrane Triton's backward reads, comes from the torch loop."""
    x = x.cpu()
    i, v, a = (s.cpu().clone() for s in state)
    spikes = torch.empty_like(x)
    _serial(numba_scan._forward_kernels, subtract, adaptive)(
        x.numpy(), i.numpy(), v.numpy(), a.numpy(), torch.stack(params).cpu().numpy(), spikes.numpy())
    cfg = layout.FusedConfig(surrogates.get("fast_sigmoid"), "subtract" if subtract else "zero", True, adaptive)
    _, _, vstore = torch_scan._torch_forward(x, [s.cpu() for s in state], [p.cpu() for p in params], cfg, True)
    return spikes, vstore, (i, v, a)


def _triton_forward(x, state, params, subtract, adaptive, store=True):
    i, v, a = (s.clone() for s in state)
    spikes = torch.empty_like(x)
    vstore = torch.empty_like(x) if store else torch.empty((1, 1, 1), dtype=x.dtype, device=x.device)
    ft.triton_forward(x, i, v, a, params, subtract=subtract, adaptive=adaptive, store=store, spikes=spikes,
                      vstore=vstore)
    return spikes, vstore, (i, v, a)


def _stand_ins(state, needs, adaptive):
    """The initial state as FusedScan hands it to the kernels: ``[B, 0]`` where no gradient reads it."""
    i0, v0, a0 = state
    empty = i0.new_zeros((i0.shape[0], 0))
    return (i0 if needs[0] else empty, v0 if needs[0] or needs[1] else empty, a0 if adaptive else empty)


def _numba_backward(gs, grads, x, state, params, subtract, adaptive, detach, code, slope, needs):
    """The numba backward kernel (it replays the forward from the input x and the initial
    state): gx, (g_i, g_v, g_a) at t = 0, parameter partials (None where not needed)."""
    g_i, g_v, g_a = (g.cpu().clone() for g in grads)
    gx = torch.empty(x.shape, dtype=x.dtype)
    gparams = torch.empty((6, *g_i.shape), dtype=x.dtype)
    state = [s.cpu() for s in state]
    _serial(numba_scan._backward_kernels, subtract, adaptive, code, needs, detach)(
        float(slope), gs.cpu().contiguous().numpy(), g_i.numpy(), g_v.numpy(), g_a.numpy(),
        x.cpu().numpy(), *(s.numpy() for s in state), torch.stack(params).cpu().numpy(), gx.numpy(), gparams.numpy())
    return gx, (g_i, g_v, g_a), [q if need else None for q, need in zip(gparams, needs)]


def _triton_backward(gs, grads, vstore, state, params, subtract, adaptive, detach, code, slope, needs):
    g_i, g_v, g_a = (g.clone() for g in grads)
    gx = torch.empty_like(vstore)
    parts = [torch.full(g_i.shape if need else (1, 1), math.nan, dtype=vstore.dtype, device=vstore.device)
             for need in needs]
    ft.triton_backward(gs, g_i, g_v, g_a, vstore, *_stand_ins(state, needs, adaptive), params, subtract=subtract,
                       adaptive=adaptive, detach=detach, code=code, slope=slope, needs=needs, gx=gx, parts=parts)
    for q, need in zip(parts, needs):
        if not need:
            assert q.isnan().all(), "a part that is not needed was written"
    return gx, (g_i, g_v, g_a), [q if need else None for q, need in zip(parts, needs)]


def _close(ours, theirs, what: str, tol: float = 1e-6) -> None:
    torch.testing.assert_close(ours.cpu(), theirs.cpu(), rtol=tol, atol=tol, msg=f"{what} differs")


def _grads_case(x, seed: int = 1, expanded: bool = False):
    """dL/dspikes (optionally expanded over the batch, stride 0) and dL/d(final state)."""
    steps, batch, features = x.shape
    g = torch.Generator().manual_seed(seed)
    if expanded:
        gs = torch.randn(steps, 1, features, generator=g, dtype=torch.float64).expand(steps, batch, features)
    else:
        gs = torch.randn(steps, batch, features, generator=g, dtype=torch.float64)
    grads = [torch.randn(batch, features, generator=g, dtype=torch.float64) for _ in range(3)]
    return gs.to(device=x.device, dtype=x.dtype), [q.to(device=x.device, dtype=x.dtype) for q in grads]


def _check_backward(model, reset, detach, code, needs, *, slope=2.0, dtype=torch.float64, tol=1e-6,
                    expanded=False, shape=(STEPS, BATCH, FEATURES), device="cpu", numba_reference=True,
                    torch_reference=True):
    """The triton backward against the numba kernel and the torch loop: dL/dx, dL/d(initial
    state) and every needed parameter partial per (b, f) (hence also their batch sums)."""
    adaptive, subtract = model == "alif", reset == "subtract"
    x, state, params = _case(model, dtype, shape=shape, device=device)
    spikes, vstore, _ = _numba_forward(x, state, params, subtract, adaptive)
    assert 0 < spikes.mean() < 1, "the test input must make neurons fire, but not always"
    vstore = vstore.to(device)
    gs, grads = _grads_case(x, expanded=expanded)
    flags = (subtract, adaptive, detach, code, slope, needs)
    ours = _triton_backward(gs, grads, vstore, state, params, *flags)
    assert ours[0].abs().sum() > 0
    if numba_reference:
        ref = _numba_backward(gs, grads, x, state, params, *flags)
        # The interpreter repeats numba's float64 operations one for one: equal to the last bits,
        # but for the sigmoid's exp (numpy's and the C library's may differ by an ulp).
        same = tol if device != "cpu" or dtype != torch.float64 or code == 2 else 1e-13
        _close(ours[0], ref[0], "dL/dx (vs numba)", same)
        for name, a, b in zip(("g_i", "g_v", "g_a"), ours[1], ref[1]):
            _close(a, b, f"{name} (vs numba)", same)
        for name, a, b in zip(layout.PARAM_NAMES, ours[2], ref[2]):
            if a is not None:
                _close(a, b, f"gradient of {name} (vs numba)", same)
    if torch_reference:
        cfg = _cfg(reset, detach, adaptive, code, slope)
        gx, g_state, ref_grads = torch_scan._torch_backward(gs, *grads, vstore, state, params, cfg, needs[0])
        _close(ours[0], gx, "dL/dx (vs torch loop)", tol)
        for name, a, b in zip(("g_i", "g_v", "g_a"), ours[1], g_state):
            _close(a, b, f"{name} (vs torch loop)", tol)
        for name, a in zip(layout.PARAM_NAMES, ours[2]):
            if a is not None:
                _close(a, ref_grads[name], f"gradient of {name} (vs torch loop)", tol)


# --------------------------------------------------------------------------- interpreter (CPU)
@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("reset", ("subtract", "zero"))
@pytest.mark.parametrize("dtype", (torch.float64, torch.float32))
def test_forward_matches_numba_and_torch(interpret, model: str, reset: str, dtype: torch.dtype) -> None:
    adaptive, subtract = model == "alif", reset == "subtract"
    x, state, params = _case(model, dtype)
    spikes, vstore, final = _triton_forward(x, state, params, subtract, adaptive)
    ref_spikes, _, ref_final = _numba_forward(x, state, params, subtract, adaptive)
    assert 0 < spikes.mean() < 1, "the test input must make neurons fire, but not always"
    assert torch.equal(spikes, ref_spikes), "forward spikes differ from numba"
    for name, a, b in zip("iva", final, ref_final):
        assert torch.equal(a, b), f"final {name} differs from numba"
    t_spikes, t_final, t_vstore = torch_scan._torch_forward(x, state, params, _cfg(reset, True, adaptive), True)
    assert torch.equal(spikes, t_spikes), "forward spikes differ from the torch loop"
    assert torch.equal(vstore, t_vstore), "stored membrane differs from the torch loop"
    for name, a, b in zip("iva", final, t_final):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=f"final {name} differs from the torch loop")


def test_forward_without_store_and_single_block(interpret, monkeypatch) -> None:
    """store=False leaves vstore alone; the default block width (one masked program per row) agrees."""
    monkeypatch.setattr(ft, "BLOCK_MAX", 512)
    x, state, params = _case("alif", shape=(5, 2, 37))
    spikes, vstore, final = _triton_forward(x, state, params, True, True, store=False)
    ref_spikes, _, ref_final = _numba_forward(x, state, params, True, True)
    assert torch.equal(spikes, ref_spikes)
    assert all(torch.equal(a, b) for a, b in zip(final, ref_final))


# The numba kernel of a case depends on (reset, detach, ALIF, surrogate), not on which CUBA
# member runs: IF, LIF and CUBA share one code per (reset, detach), so 16 cases build 8 numba
# kernels (compiling one takes seconds), and the 8 codes cover all five surrogates.
CODES = {(False, "subtract", True): 0, (False, "subtract", False): 1, (False, "zero", True): 2,
         (False, "zero", False): 3, (True, "subtract", True): 4, (True, "subtract", False): 2,
         (True, "zero", True): 1, (True, "zero", False): 0}
BACKWARD_CASES = [(m, r, d, CODES[m == "alif", r, d])
                  for m in MODELS for r in ("subtract", "zero") for d in (True, False)]


@pytest.mark.parametrize(("model", "reset", "detach", "code"), BACKWARD_CASES)
def test_backward_matches_numba_and_torch(interpret, model: str, reset: str, detach: bool, code: int) -> None:
    # slope 2.7: float32 cannot hold it, so a slope passed in single precision would show
    _check_backward(model, reset, detach, code, ALL if model == "alif" else CUBA_NEEDS, slope=2.7)


@pytest.mark.parametrize(("model", "needs"), [
    ("cuba", (True, False, False, False, False, False)),    # alpha alone: i0 and v0 read
    ("lif", (False, True, False, True, False, False)),      # beta and bias: v0 read, i0 a stand-in
    ("alif", (False, False, True, False, True, False)),     # theta and rho: i0 and v0 stand-ins
    ("alif", (False,) * 6),                                 # dL/dx and the state only
])
def test_backward_needs_and_stand_ins(interpret, model: str, needs: tuple[bool, ...]) -> None:
    # against the torch loop only: each needs setting is a numba kernel of its own (seconds to compile)
    _check_backward(model, "subtract", False, 1, needs, numba_reference=False)


def test_backward_reads_expanded_gs_in_place(interpret) -> None:
    _check_backward("alif", "subtract", True, CODES[True, "subtract", True], ALL, expanded=True)


def test_cuba_leaves_the_trace_alone(interpret) -> None:
    """Without ALIF the trace state, its gradient, rho and gamma may be empty stand-ins: never touched."""
    x, state, params = _case("lif")
    ref = _numba_forward(x, state, params, True, False)
    stand_in = x.new_zeros((BATCH, 0))
    cuba_params = (*params[:4], x.new_zeros(0), x.new_zeros(0))
    spikes, _, final = _triton_forward(x, (*state[:2], stand_in), cuba_params, True, False)
    assert torch.equal(spikes, ref[0]) and torch.equal(final[0], ref[2][0]) and torch.equal(final[1], ref[2][1])
    gs, grads = _grads_case(x)
    code = CODES[False, "subtract", True]
    theirs = _numba_backward(gs, grads, x, state, params, True, False, True, code, 2.0, CUBA_NEEDS)
    ours = _triton_backward(gs, [*grads[:2], stand_in], ref[1], (*state[:2], stand_in), cuba_params, True, False,
                            True, code, 2.0, CUBA_NEEDS)
    _close(ours[0], theirs[0], "dL/dx")
    for a, b in zip(ours[1][:2] + tuple(ours[2][:4]), theirs[1][:2] + tuple(theirs[2][:4])):
        _close(a, b, "gradient", 1e-13)


def test_float32_agrees_with_numba(interpret) -> None:
    # numba evaluates the surrogate in float64 (its slope is a float64 scalar): float32 rounding apart
    _check_backward("alif", "subtract", False, CODES[True, "subtract", False], ALL, dtype=torch.float32, tol=1e-4,
                    torch_reference=False)


def test_one_step_one_row_one_feature(interpret) -> None:
    """T = B = F = 1 (sizes Triton specialises as constants when compiling)."""
    x, state, params = _case("alif", shape=(1, 1, 1))
    params = tuple(p.clone() for p in params)
    params[2].fill_(0.1)  # theta low enough to fire
    spikes, vstore, final = _triton_forward(x, state, params, False, True)
    ref = _numba_forward(x, state, params, False, True)
    assert torch.equal(spikes, ref[0]) and torch.equal(vstore, ref[1])
    assert all(torch.equal(a, b) for a, b in zip(final, ref[2]))
    gs, grads = _grads_case(x)
    flags = (False, True, False, CODES[True, "zero", False], 2.0, ALL)
    ours = _triton_backward(gs, grads, vstore, state, params, *flags)
    theirs = _numba_backward(gs, grads, x, state, params, *flags)
    _close(ours[0], theirs[0], "dL/dx")
    for a, b in zip(ours[1] + tuple(ours[2]), theirs[1] + tuple(theirs[2])):
        _close(a, b, "gradient")


def test_zero_steps(interpret) -> None:
    x, state, params = _case("alif", shape=(0, 2, 5))
    spikes, _, final = _triton_forward(x, state, params, True, True)
    assert spikes.shape == (0, 2, 5) and all(torch.equal(a, b) for a, b in zip(final, state))
    g = [torch.ones(2, 5, dtype=torch.float64) for _ in range(3)]
    parts = [torch.full((2, 5), math.nan, dtype=torch.float64) for _ in range(6)]
    ft.triton_backward(torch.zeros_like(x), *g, x, *state, params, subtract=True, adaptive=True, detach=True,
                       code=0, slope=1.0, needs=ALL, gx=torch.empty_like(x), parts=parts)
    assert all((p == 0).all() for p in parts) and all((q == 1).all() for q in g)


def test_rejects_cpu_tensors_without_interpreter(monkeypatch) -> None:
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    x, state, params = _case("lif", shape=(2, 1, 3))
    with pytest.raises(ValueError, match="CUDA"):
        _triton_forward(x, state, params, True, False)


# --------------------------------------------------------------------------- compiled code (CPU)
def _compile(fn, dtype: str, constants: dict, ints: str = "i32"):
    """Compile ``fn`` for an sm_90 GPU without one (ptxas ships with triton); returns the kernel."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from triton.runtime import JITFunction

    jit = JITFunction(ft._bound(fn, interpret=False))  # with the device functions it calls, compiled too
    signature = {n: f"*{dtype}" if n.endswith("_ptr") else ints for n in jit.arg_names}
    if "slope" in signature:
        signature["slope"] = "fp64"
    signature.update({n: "constexpr" for n in constants})
    source = ASTSource(jit, signature, {(jit.arg_names.index(n),): v for n, v in constants.items()})
    return triton.compile(source, target=GPUTarget("cuda", 90, 32), options={"num_warps": 4, "enable_fp_fusion": False})


def test_kernels_compile_for_cuda_without_fused_multiply_add() -> None:
    """The interpreter does not type-check like the compiler: compile some variants for real.

    The forward PTX holds no fma (contraction off), so spikes on the GPU match the CPU bit for bit.
    """
    kernel = _compile(ft._forward_kernel, "fp32", dict(SUBTRACT=True, ADAPTIVE=True, STORE=True, BLOCK=256))
    assert "fma" not in kernel.asm["ptx"]
    kernel = _compile(ft._forward_kernel, "fp64", dict(SUBTRACT=False, ADAPTIVE=False, STORE=False, BLOCK=16,
                                                      steps=1, features=1, stride=1))
    assert "fma" not in kernel.asm["ptx"]
    flags = dict(NEED_ALPHA=True, NEED_BETA=True, NEED_THETA=True, NEED_BIAS=True, NEED_RHO=True, NEED_GAMMA=True)
    kernel = _compile(ft._backward_kernel, "fp64", dict(SUBTRACT=False, ADAPTIVE=True, DETACH=False, CODE=1,
                                                       BLOCK=512, **flags), ints="i64")
    assert "fma" not in kernel.asm["ptx"]  # (libdevice's exp, in CODE=2, has its own)
    flags.update(NEED_ALPHA=False, NEED_RHO=False)
    _compile(ft._backward_kernel, "fp32", dict(SUBTRACT=True, ADAPTIVE=False, DETACH=True, CODE=4, BLOCK=64,
                                              steps=1, gs_sb=1, **flags))


# --------------------------------------------------------------------------- GPU
@pytest.mark.gpu
# every third case: each model, both resets, detach on and off, all five surrogates
@pytest.mark.parametrize(("model", "reset", "detach", "code"), BACKWARD_CASES[::3])
@pytest.mark.parametrize("shape", [(STEPS, BATCH, FEATURES), (20, 4, 1000)])
def test_cuda_matches_cpu_numba(monkeypatch, model: str, reset: str, detach: bool, code: int, shape) -> None:
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)  # compiled kernels
    adaptive, subtract = model == "alif", reset == "subtract"
    needs = ALL if adaptive else CUBA_NEEDS
    for dtype, tol in ((torch.float64, 1e-6), (torch.float32, 1e-4)):
        x, state, params = _case(model, dtype, shape=shape, device="cuda")
        spikes, vstore, final = _triton_forward(x, state, params, subtract, adaptive)
        ref_spikes, ref_vstore, ref_final = _numba_forward(x, state, params, subtract, adaptive)
        assert torch.equal(spikes.cpu(), ref_spikes), f"{dtype} forward spikes differ"
        assert torch.equal(vstore.cpu(), ref_vstore), f"{dtype} stored membrane differs"
        assert all(torch.equal(a.cpu(), b) for a, b in zip(final, ref_final)), f"{dtype} final state differs"
        _check_backward(model, reset, detach, code, needs, dtype=dtype, tol=tol, shape=shape, device="cuda",
                        torch_reference=dtype == torch.float64)
        _check_backward(model, reset, detach, code, needs, dtype=dtype, tol=tol, shape=shape, device="cuda",
                        expanded=True, torch_reference=False)


@pytest.mark.parametrize("cls_name", ["LIF", "CubaLIF", "ALIF"])
@pytest.mark.parametrize("with_state", [False, True])
def test_fused_scan_routes_through_triton(interpret, monkeypatch, cls_name: str, with_state: bool) -> None:
    """FusedScan wired to the Triton backend (forced onto CPU tensors, interpreter on) equals
    the step-by-step reference: spikes and final state identical, gradients within 1e-6."""
    from snn import neurons
    monkeypatch.setattr(scan, "FORCED_BACKEND", "triton")
    launched = []
    forward = ft.triton_forward
    monkeypatch.setattr(ft, "triton_forward", lambda *a, **k: (launched.append(1), forward(*a, **k))[1])
    torch.manual_seed(2)
    layer = getattr(neurons, cls_name)(learn_threshold=True, learn_beta=True).double()
    x = (torch.rand(8, 2, 19, dtype=torch.float64) * 1.5).requires_grad_()
    state = None
    if with_state:
        layer.fused = False
        _, state = layer(x[:3].detach())
        state = type(state)(*(s.detach().clone().requires_grad_() for s in state))
    layer.fused = None
    out, final = layer(x, state)
    assert launched, "the Triton kernel did not run"
    layer.fused = False
    ref, ref_final = layer(x, state)
    assert torch.equal(out, ref)
    for a, b in zip(final, ref_final):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    w = torch.linspace(-1, 1, x.numel(), dtype=torch.float64).reshape(x.shape)
    targets = [x, *layer.parameters(), *(state or ())]
    g1 = torch.autograd.grad((out * w).sum() + final.v.sum(), targets)
    g2 = torch.autograd.grad((ref * w).sum() + ref_final.v.sum(), targets)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


def test_forced_backend_must_be_known(monkeypatch) -> None:
    monkeypatch.setattr(scan, "FORCED_BACKEND", "cuda-magic")
    from snn.errors import SpikeforgeError
    from snn.neurons import LIF
    with pytest.raises(SpikeforgeError, match="not a fused backend"):
        LIF()(torch.rand(3, 2, 4))
