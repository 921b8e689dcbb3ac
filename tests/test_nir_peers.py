"""NIR interoperability with the real peer libraries: snnTorch and Norse, spike for spike.

Each test builds and runs a network in the peer library, moves it through NIR with the
peer's own exporter (or importer) and compares output spikes on the same binary input.

Peer differences documented here (the tests show what holds under the NIR spec):
- snnTorch's ``export_to_nir`` writes ``v_reset = 0`` whatever the layer's
  ``reset_mechanism`` / ``reset_delay``: the file describes reset-to-zero, applied in the
  step of the spike (the spec). snnTorch's defaults (``"subtract"``, ``reset_delay=True``:
  subtract the threshold one step later, after the decay) are a different network; importing
  with ``dialect="snntorch"`` runs that network (tests/test_nir_dialects.py).
- snnTorch's exporter with nir 1.0.8 fails type inference for scalar ``beta`` / ``threshold``
  (0-d parameter arrays): pass per-neuron tensors.
- snnTorch assumes dt = 1e-4 s in both directions (our DEFAULT_DT).
- Norse's ``to_nir`` writes ``tau = dt / tau_inv = dt * tau``, a factor dt too small; under
  the spec its file describes a network with time step dt**2 (1e-6 s for dt = 1e-3).
- Norse's ``LIFCell`` export writes a CubaLIF without ``w_in``, so the spec's synaptic input
  gain is w_in dt / tau_syn = dt * tau_syn_inv (0.2 by default), while LIFCell adds its input
  to the current with gain 1: the file describes the LIFCell network with its input scaled by
  dt * tau_syn_inv.
- Norse starts LIFBoxCell / LIFCell membranes at ``v_leak``; our contract starts every
  state at 0 (the spec gives no initial state), so the comparison starts Norse at 0.
- Norse's ``to_nir`` keeps the batch dimension of its sample in the Input shape ([1, N]).
"""

from __future__ import annotations

import norse.torch as norse
import snntorch
import torch
from snntorch import utils as snn_utils
from snntorch.export_nir import export_to_nir
from snntorch.import_nir import import_from_nir

import snn
from converters.nir_export import export_nir
from converters.nir_import import import_nir

T, B = 25, 6


def _spikes(n_in: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(T, B, n_in, generator=g) < 0.3).float()


def _run_snntorch(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    snn_utils.reset(net)
    outs = []
    for t in range(x.shape[0]):
        out = net(x[t])
        outs.append(out[0] if isinstance(out, tuple) else out)
    return torch.stack(outs)


def _snntorch_net(reset: str = "zero", delay: bool = False, seed: int = 0) -> torch.nn.Sequential:
    torch.manual_seed(seed)
    full = lambda n, lo, hi: torch.rand(n) * (hi - lo) + lo  # noqa: E731 per-neuron values
    kw = dict(init_hidden=True, reset_mechanism=reset, reset_delay=delay)
    return torch.nn.Sequential(
        torch.nn.Linear(12, 16), snntorch.Leaky(beta=full(16, 0.6, 0.95), threshold=full(16, 0.5, 1.0), **kw),
        torch.nn.Linear(16, 10), snntorch.Synaptic(alpha=full(10, 0.3, 0.9), beta=full(10, 0.6, 0.95),
                                                   threshold=full(10, 0.5, 1.0), **kw),
        torch.nn.Linear(10, 4), snntorch.Leaky(beta=full(4, 0.6, 0.95), threshold=torch.full((4,), 0.8), **kw,
                                               output=False),
    )


def _active(s: torch.Tensor) -> None:
    assert 0 < s.sum() < s.numel(), "the comparison needs some spikes and some silence"


def test_snntorch_export_imported_by_us_gives_snntorch_spikes():
    net = _snntorch_net()
    x = _spikes(12)
    with torch.no_grad():
        theirs = _run_snntorch(net, x)
        graph = export_to_nir(net, torch.zeros(1, 12), ignore_dims=[0])
        ours = import_nir(graph)(x)  # dt defaults to snnTorch's 1e-4
    _active(theirs)
    assert torch.equal(ours, theirs)


def test_snntorch_default_reset_is_not_what_its_export_says():
    """Subtract + reset_delay exports as v_reset = 0; the file runs the zero-reset network."""
    x = _spikes(12, seed=2)
    default, spec = _snntorch_net("subtract", True, seed=3), _snntorch_net("zero", False, seed=3)
    with torch.no_grad():
        graph = export_to_nir(default, torch.zeros(1, 12), ignore_dims=[0])
        ours = import_nir(graph)(x)
        as_spec = _run_snntorch(spec, x)
        as_default = _run_snntorch(default, x)
    _active(as_spec)
    assert torch.equal(ours, as_spec)
    assert not torch.equal(as_default, as_spec)  # the difference is real on this input


def _our_net(seed: int = 0) -> snn.Sequential:
    torch.manual_seed(seed)
    return snn.Sequential(
        torch.nn.Linear(12, 16), snn.LIF(beta=torch.rand(16) * 0.3 + 0.65, theta=0.7, reset="zero"),
        torch.nn.Linear(16, 10), snn.CubaLIF(alpha=torch.rand(10) * 0.5 + 0.3, beta=torch.rand(10) * 0.3 + 0.6,
                                             theta=0.9, reset="zero"),
        torch.nn.Linear(10, 4), snn.LIF(beta=0.85, theta=0.6, reset="zero"),
        input_shape=(12,))


def test_our_export_imported_by_snntorch_gives_our_spikes():
    net = _our_net()
    x = _spikes(12, seed=4)
    with torch.no_grad():
        ours = net(x)
        theirs = _run_snntorch(import_from_nir(export_nir(net)), x)
    _active(ours)
    assert torch.equal(theirs, ours)


def _run_norse(net: torch.nn.Module, x: torch.Tensor, state: list | None = None) -> torch.Tensor:
    outs = []
    for t in range(x.shape[0]):
        out, state = net(x[t], state)
        outs.append(out.to_dense() if out.is_sparse else out)
    return torch.stack(outs)


def test_norse_lifbox_export_imported_by_us_gives_norse_spikes():
    torch.manual_seed(5)
    p = lambda th, leak: norse.LIFBoxParameters(tau_mem_inv=torch.tensor(80.0), v_th=torch.tensor(th),  # noqa: E731
                                                v_leak=torch.tensor(leak))
    net = norse.SequentialState(torch.nn.Linear(12, 16), norse.LIFBoxCell(p(0.3, 0.05)),
                                torch.nn.Linear(16, 4), norse.LIFBoxCell(p(0.2, 0.0)))
    for m in net:
        if isinstance(m, torch.nn.Linear):
            m.weight.data *= 4
    x = _spikes(12, seed=6)
    dt = 1e-3
    with torch.no_grad():
        # Norse starts a membrane at v_leak; our contract (and the comparison) starts at rest, v = 0.
        rest = [None, norse.LIFBoxFeedForwardState(v=torch.zeros(B, 16)), None,
                norse.LIFBoxFeedForwardState(v=torch.zeros(B, 4))]
        theirs = _run_norse(net, x, rest)
        graph = norse.to_nir(net, torch.zeros(1, 12), dt=dt)
        # Norse writes tau = dt * tau_true: under the spec that file runs with time step dt**2.
        ours = import_nir(graph, dt=dt * dt)(x)
    _active(theirs)
    assert torch.equal(ours, theirs)


def test_norse_lifcell_export_lacks_the_synaptic_gain():
    """LIFCell exports as CubaLIF with w_in = 1; the file is LIFCell with input scaled by dt/tau_syn."""
    torch.manual_seed(7)
    dt = 1e-3
    lin1, lin2 = torch.nn.Linear(12, 16), torch.nn.Linear(16, 4)
    net = norse.SequentialState(lin1, norse.LIFCell(), lin2, norse.LIFCell())
    gain = dt * float(norse.LIFParameters().tau_syn_inv)
    scaled = norse.SequentialState(torch.nn.Linear(12, 16), norse.LIFCell(), torch.nn.Linear(16, 4), norse.LIFCell())
    with torch.no_grad():
        for lin in (lin1, lin2):
            lin.weight.mul_(100)
        for src, dst in ((lin1, scaled[0]), (lin2, scaled[2])):
            dst.weight.copy_(src.weight * gain)
            dst.bias.copy_(src.bias * gain)
        x = _spikes(12, seed=8)
        graph = norse.to_nir(net, torch.zeros(1, 12), dt=dt)
        ours = import_nir(graph, dt=dt * dt)(x)
        as_spec = _run_norse(scaled, x)
        as_norse = _run_norse(net, x)
    _active(as_spec)
    assert torch.equal(ours, as_spec)
    assert not torch.equal(as_norse, as_spec)
