"""snnTorch's default reset as a member of our neuron family, NIR dialects, and round trips with
the real SpikingJelly and sinabs packages, spike for spike.

What each peer's NIR support does and where it deviates (the tests show what holds):

- snnTorch 1.0 (``export_to_nir``) writes ``v_reset = 0`` for every ``Leaky`` / ``Synaptic`` /
  ``RLeaky``, whatever its reset; with snnTorch's defaults the layer subtracts the undecayed
  threshold one step after the spike (``reset="subtract-delayed"``): ``dialect="snntorch"``
  reads it so. Its exporter with nir 1.0.8 fails for scalar ``beta`` / ``threshold`` (0-d
  arrays fail the shape checks), so the default values are passed per neuron. An ``RLeaky``'s
  recurrent bias has no counterpart in our recurrent layers (zeroed here).
- SpikingJelly 2.0 (``export_to_nir`` / ``import_from_nir``) follows the specification (hard
  reset to ``v_reset`` in the step of the spike, forward Euler, dt = 1e-4 s): no dialect. It
  refuses soft (subtract) reset and per-neuron parameters, fires at ``v >= v_threshold``
  where we fire at ``v > theta`` (only exact equality differs), and its LIF runs
  ``v + (x - v) / tau`` where we run ``beta v + x / G``: equal spikes up to float rounding.
- sinabs 3.1.3 (``to_nir`` / ``from_nir``) declares ``nir<=1.0.4`` but runs with nir 1.0.8 and
  nirtorch 2.6 (installed with ``--no-deps`` next to ours). Its files count time in steps,
  decay exactly (``exp(-1/tau)``) and mean reset by subtraction: ``dialect="sinabs"``. Its
  default ``MultiSpike`` emits ``floor(v / theta)`` spikes per step where ours emit one: the
  tests keep the membrane below twice the threshold. Its import adds ``min_v_mem =
  -v_threshold`` to every IF and ignores ``r`` and dt; the tests use non-negative weights, so
  the clamp never acts, and export at dt = 1.
"""

from __future__ import annotations

import warnings

import nir
import numpy as np
import pytest
import snntorch
import torch
from snntorch.export_nir import export_to_nir
from torch import nn

import snn
from converters import nir_discretisation as D
from converters.nir_dialects import DIALECTS, get_dialect
from converters.nir_export import export_nir
from converters.nir_import import import_nir
from converters.nir_io import load_network, save_nir
from snn import functional
from snn.checkpoint import load_checkpoint, save_checkpoint
from snn.errors import SpikeforgeError
from snn.event_driven import EventDrivenNetwork
from snn.kernels import cuba_scan

T, B = 50, 8


def _spikes(shape: tuple[int, ...], seed: int, p: float = 0.3, amplitude: float = 2.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(*shape, generator=g) < p).float() * amplitude


def _per_neuron(value: float, n: int) -> torch.Tensor:
    return torch.full((n,), value)


class _DefaultLeakyNet(nn.Module):
    """The issue's network: snnTorch ``Leaky`` with its defaults (only beta and threshold given,
    per neuron because snnTorch's exporter needs arrays; threshold 1.0 is the default value)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.lif1 = nn.Linear(16, 32), snntorch.Leaky(beta=_per_neuron(0.9, 32), threshold=torch.ones(32))
        self.fc2, self.lif2 = nn.Linear(32, 10), snntorch.Leaky(beta=_per_neuron(0.8, 10), threshold=torch.ones(10))

    def forward(self, x):
        spk1, _ = self.lif1(self.fc1(x))
        spk2, _ = self.lif2(self.fc2(spk1))
        return spk1, spk2


def _run_snntorch(net: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Every layer's spikes ``[T, B, N]``, from rest."""
    for m in net.modules():
        if hasattr(m, "reset_mem"):
            m.reset_mem()
    with torch.no_grad():
        steps = [net(x[t]) for t in range(x.shape[0])]
    return [torch.stack([s[k] for s in steps]) for k in range(len(steps[0]))]


def _run_ours(net: snn.Sequential, x: torch.Tensor) -> list[torch.Tensor]:
    """Every neuron layer's spikes, in order."""
    with torch.no_grad(), snn.Recorder(net) as rec:
        net(x)
    return list(rec.spikes.values())


def _mismatches(ours: list[torch.Tensor], theirs: list[torch.Tensor]) -> list[int]:
    assert len(ours) == len(theirs)
    return [int((a != b).sum()) for a, b in zip(ours, theirs)]


# ---------------------------------------------------------------- the delayed subtract reset


def test_delayed_subtract_is_snntorchs_equation_step_by_step():
    """v[t] = beta v[t-1] + x[t] - H(v[t-1] - theta) theta; s[t] = H(v[t] - theta), spike for spike and
    membrane for membrane with snnTorch's Leaky (its defaults)."""
    torch.manual_seed(0)
    x = torch.randn(T, B, 20) * 0.8 + 0.3
    leaky = snntorch.Leaky(beta=0.85)
    mem, spikes, membranes = torch.zeros(B, 20), [], []
    with torch.no_grad():
        for t in range(T):
            spk, mem = leaky(x[t], mem)
            spikes.append(spk)
            membranes.append(mem)
    ours = snn.LIF(beta=0.85, reset="subtract-delayed")
    ours.record_membrane = True
    with torch.no_grad():
        out, state = ours(x)
    assert 0 < out.sum() < out.numel()
    assert torch.equal(out, torch.stack(spikes))
    assert torch.equal(ours.membrane_trace, torch.stack(membranes))  # v before its (next-step) reset
    assert torch.equal(state.v, membranes[-1])


def test_delayed_subtract_trains_with_snntorchs_gradients():
    """Surrogate-gradient BPTT through the delayed reset equals snnTorch's autograd (arctan, slope 2 =
    snnTorch's default ATan), for the input, the weights, a learnable beta and threshold."""
    torch.manual_seed(1)
    x = _spikes((20, 4, 6), seed=2)
    fc = nn.Linear(6, 12)
    fc_theirs = nn.Linear(6, 12)
    fc_theirs.load_state_dict(fc.state_dict())
    ours = snn.Sequential(fc, snn.LIF(beta=0.8, theta=0.7, reset="subtract-delayed", surrogate="arctan", slope=2.0,
                                      learn_beta=True, learn_threshold=True), input_shape=(6,))
    leaky = snntorch.Leaky(beta=torch.tensor(0.8), threshold=torch.tensor(0.7), learn_beta=True, learn_threshold=True)
    target = torch.rand(20, 4, 12)
    x_ours, x_theirs = x.clone().requires_grad_(), x.clone().requires_grad_()
    loss_ours = ((ours(x_ours) - target) ** 2).sum()
    mem, spikes = torch.zeros(4, 12), []
    for t in range(20):
        spk, mem = leaky(fc_theirs(x_theirs[t]), mem)
        spikes.append(spk)
    loss_theirs = ((torch.stack(spikes) - target) ** 2).sum()
    loss_ours.backward()
    loss_theirs.backward()
    assert loss_ours.item() == loss_theirs.item()
    lif = ours[1]
    pairs = [(x_ours.grad, x_theirs.grad), (fc.weight.grad, fc_theirs.weight.grad), (fc.bias.grad, fc_theirs.bias.grad),
             (lif.beta.grad, leaky.beta.grad), (lif.theta.grad, leaky.threshold.grad)]
    assert x_ours.grad.abs().sum() > 0
    for a, b in pairs:
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6), (a, b)


def test_undetached_delayed_reset_matches_a_hand_written_autograd_loop():
    torch.manual_seed(3)
    x = (torch.randn(15, 3, 5) + 0.5).requires_grad_()
    layer = snn.CubaLIF(alpha=0.5, beta=0.9, theta=0.8, reset="subtract-delayed", detach_reset=False,
                        surrogate="fast_sigmoid")
    layer(x)[0].sum().backward()
    ours = x.grad.clone()
    x.grad = None
    spike = layer.surrogate
    i = v = torch.zeros(3, 5)
    out = []
    for t in range(15):
        i = 0.5 * i + x[t]
        v = 0.9 * v + i + 0.0 - spike(v - 0.8) * 0.8
        out.append(spike(v - 0.8))
    torch.stack(out).sum().backward()
    assert torch.allclose(ours, x.grad, rtol=1e-6, atol=1e-7)


def test_delayed_reset_runs_step_by_step_and_refuses_the_fused_kernels():
    layer = snn.LIF(reset="subtract-delayed")
    assert not layer._runs_fused()
    layer.fused = True
    with pytest.raises(SpikeforgeError, match="subtract-delayed.*no fused kernel.*fused = None or False"):
        layer(torch.rand(3, 2, 4))
    p = snn.LIF().parameters_now()
    with pytest.raises(SpikeforgeError, match="fused kernels reset by 'subtract' or 'zero'"):
        cuba_scan(torch.rand(3, 2, 4), None, functional.CubaParameters(*p), layer.surrogate, "subtract-delayed")
    with pytest.raises(SpikeforgeError, match="ALIF has no reset 'subtract-delayed'"):
        snn.ALIF(reset="subtract-delayed")
    with pytest.raises(SpikeforgeError, match="unknown reset mode 'later'"):
        snn.LIF(reset="later")


def test_delayed_reset_layers_survive_a_checkpoint_and_run_event_driven(tmp_path):
    torch.manual_seed(4)
    net = snn.Sequential(nn.Linear(10, 16), snn.IF(theta=0.9, reset="subtract-delayed"),
                         nn.Linear(16, 6), snn.CubaLIF(alpha=0.4, beta=0.85, reset="subtract-delayed"),
                         input_shape=(10,))
    x = _spikes((T, 3, 10), seed=5)
    back = load_checkpoint(save_checkpoint(tmp_path / "model.pt", net)).model
    assert [m.spec() for m in back if hasattr(m, "spec")] == [m.spec() for m in net if hasattr(m, "spec")]
    reference = _run_ours(net, x)
    assert reference[-1].sum() > 0
    assert _mismatches(_run_ours(back, x), reference) == [0, 0]
    streamed = EventDrivenNetwork.from_sequential(net)
    frames = x[:, 0]
    first, rest = streamed.run(frames[:20]), streamed.run(frames[20:])  # state carried across calls
    assert torch.equal(torch.cat([first, rest]), reference[-1][:, 0])


def test_brian2_and_lava_refuse_the_delayed_reset_by_name():
    from hardware.graph import network_graph
    from hardware.lava.compile import compile_network
    net = snn.Sequential(nn.Linear(4, 5), snn.LIF(reset="subtract-delayed"), input_shape=(4,)).eval()
    for run in (network_graph, compile_network):
        with pytest.raises(SpikeforgeError, match=r"layer 1 \(LIF\) resets with 'subtract-delayed'.*"
                                                  r"reset='subtract' or 'zero'"):
            run(net)


# ---------------------------------------------------------------- snnTorch, dialect "snntorch"


def test_default_snntorch_network_imports_spike_for_spike_with_the_snntorch_dialect(tmp_path):
    """The issue: a default Leaky network through snnTorch's own exporter and a real file."""
    torch.manual_seed(0)
    net = _DefaultLeakyNet()
    x = _spikes((T, B, 16), seed=100)
    theirs = _run_snntorch(net, x)
    assert theirs[-1].sum() > 0 and theirs[0].sum() > 0
    path = tmp_path / "snntorch.nir"
    nir.write(path, export_to_nir(net, torch.zeros(1, 16), ignore_dims=[0]))
    as_spec = load_network(path)
    assert sum(_mismatches(_run_ours(as_spec, x), theirs)) > 0  # the old reading: a different network
    ours = load_network(path, dialect="snntorch")
    assert [m.reset for m in ours if isinstance(m, snn.LIF)] == ["subtract-delayed"] * 2
    assert _mismatches(_run_ours(ours, x), theirs) == [0, 0]


def test_snntorch_synaptic_and_rleaky_defaults_import_spike_for_spike():
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1 = nn.Linear(16, 24)
            self.syn = snntorch.Synaptic(alpha=_per_neuron(0.7, 24), beta=_per_neuron(0.9, 24),
                                         threshold=torch.ones(24))
            self.fc2 = nn.Linear(24, 10)
            self.rec = snntorch.RLeaky(beta=_per_neuron(0.8, 10), threshold=torch.ones(10), linear_features=10)
            with torch.no_grad():
                self.rec.recurrent.bias.zero_()  # our recurrent layers have no bias

        def forward(self, x):
            spk1, _, _ = self.syn(self.fc1(x))
            spk2, _ = self.rec(self.fc2(spk1))
            return spk1, spk2

    torch.manual_seed(1)
    net = Net()
    x = _spikes((T, B, 16), seed=101)
    theirs = _run_snntorch(net, x)
    graph = export_to_nir(net, torch.zeros(1, 16), ignore_dims=[0])
    ours = import_nir(graph, dialect="snntorch")
    assert ours[3].recurrent is not None and theirs[1].sum() > 0
    assert _mismatches(_run_ours(ours, x), theirs) == [0, 0]


def test_our_metadata_wins_over_the_dialect_and_delayed_resets_round_trip(tmp_path):
    torch.manual_seed(2)
    net = snn.Sequential(nn.Linear(6, 8), snn.LIF(beta=0.9, reset="zero"), nn.Linear(8, 4),
                         snn.LIF(beta=0.7, reset="subtract-delayed"), input_shape=(6,))
    x = _spikes((T, 2, 6), seed=6)
    graph = export_nir(net)
    assert graph.nodes["3"].metadata[D.RESET_KEY] == "subtract-delayed"
    assert np.array_equal(graph.nodes["3"].v_reset, np.zeros(4))  # what a metadata-blind peer runs
    for dialect in (None, "snntorch"):
        back = load_network(save_nir(graph, tmp_path / "net.nir"), dialect=dialect)
        assert [m.reset for m in back if isinstance(m, snn.LIF)] == ["zero", "subtract-delayed"]
        assert _mismatches(_run_ours(back, x), _run_ours(net, x)) == [0, 0]


def test_dialects_are_named_and_checked():
    assert get_dialect(None) is DIALECTS["nir"]
    with pytest.raises(SpikeforgeError, match="unknown NIR dialect 'snntorch2'.*nir, snntorch, sinabs"):
        import_nir(export_nir(snn.Sequential(nn.Linear(2, 2), snn.LIF(), input_shape=(2,))), dialect="snntorch2")
    graph = export_nir(snn.Sequential(nn.Linear(2, 3), snn.CubaLIF(), input_shape=(2,)))
    with pytest.raises(SpikeforgeError, match="'1' is a CubaLIF, which the 'sinabs' dialect does not read.*'nir'"):
        import_nir(graph, dialect="sinabs")


# ---------------------------------------------------------------- SpikingJelly


def _sj_modules():
    pytest.importorskip("spikingjelly.activation_based.nir_exchange", reason="spikingjelly with NIR support is "
                        "not installed (pip install -c constraints.txt spikingjelly)")
    from spikingjelly.activation_based import functional as sj_functional
    from spikingjelly.activation_based import layer, neuron
    from spikingjelly.activation_based.nir_exchange import export_to_nir as sj_export
    from spikingjelly.activation_based.nir_exchange.from_nir import import_from_nir as sj_import
    return sj_functional, layer, neuron, sj_export, sj_import


def test_spikingjelly_export_imported_by_us_gives_its_spikes():
    sj_functional, layer, neuron, sj_export, _ = _sj_modules()
    torch.manual_seed(0)
    net = nn.Sequential(layer.Linear(12, 16), neuron.LIFNode(tau=4.0), layer.Linear(16, 10),
                        neuron.IFNode(v_threshold=0.8), layer.Linear(10, 4),
                        neuron.LIFNode(tau=2.5, decay_input=False, v_threshold=0.7))
    sj_functional.set_step_mode(net, "m")
    with torch.no_grad():
        for m in net:
            if isinstance(m, layer.Linear):
                m.weight.mul_(2.5)
    x = _spikes((40, 6, 12), seed=10, p=0.4, amplitude=1.0)
    hidden: list[torch.Tensor] = []
    hooks = [net[k].register_forward_hook(lambda m, i, o: hidden.append(o)) for k in (1, 3)]
    with torch.no_grad():
        sj_functional.reset_net(net)
        out = net(x)
        for hook in hooks:
            hook.remove()
        sj_functional.reset_net(net)
        graph = sj_export(net, x[0:1], dt=1e-4)
    theirs = [*hidden, out]
    assert all(s.sum() > 0 for s in theirs)
    assert _mismatches(_run_ours(import_nir(graph), x), theirs) == [0, 0, 0]


def test_our_export_imported_by_spikingjelly_gives_our_spikes():
    *_, sj_import = _sj_modules()
    torch.manual_seed(0)
    net = snn.Sequential(nn.Linear(12, 16), snn.LIF(beta=0.75, theta=0.9, reset="zero"), nn.Linear(16, 10),
                         snn.IF(theta=0.8, reset="zero"), nn.Linear(10, 4), snn.LIF(beta=0.6, theta=0.7, reset="zero"),
                         input_shape=(12,))
    with torch.no_grad():
        for m in net:
            if isinstance(m, nn.Linear):
                m.weight.mul_(2.5)
    x = _spikes((40, 6, 12), seed=11, p=0.4, amplitude=1.0)
    ours = _run_ours(net, x)[-1]
    theirs_net = sj_import(export_nir(net), dt=1e-4)
    state, outs = None, []
    with torch.no_grad():
        for t in range(x.shape[0]):
            o, state = theirs_net(x[t], state)
            outs.append(o)
    assert ours.sum() > 0
    assert torch.equal(torch.stack(outs), ours)


# ---------------------------------------------------------------- sinabs, dialect "sinabs"


def _sinabs():
    try:
        import sinabs
        import sinabs.layers as sl
    except ImportError as exc:  # pragma: no cover - depends on the environment
        pytest.skip(f"sinabs does not import here ({exc})")
    return sinabs, sl


def test_sinabs_export_imported_with_the_sinabs_dialect_gives_its_spikes():
    sinabs, sl = _sinabs()
    torch.manual_seed(0)
    lin1, lin2 = nn.Linear(12, 16), nn.Linear(16, 4)
    with torch.no_grad():
        lin1.weight.mul_(3.0)
        lin2.weight.mul_(3.0)
    lif = sl.LIF(tau_mem=torch.full((16,), 5.0), spike_threshold=torch.full((16,), 0.6))  # norm_input=True default
    net = nn.Sequential(lin1, lif, lin2, sl.IAF(spike_threshold=torch.tensor(0.8)))  # MultiSpike, MembraneSubtract
    x = _spikes((40, 6, 12), seed=12, p=0.3, amplitude=1.0)
    hidden: list[torch.Tensor] = []
    hook = lif.register_forward_hook(lambda m, i, o: hidden.append(o))
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = net(x.transpose(0, 1)).transpose(0, 1)  # sinabs is batch-major [B, T, ...]
        hook.remove()
        for m in net:
            if hasattr(m, "reset_states"):
                m.reset_states()
        graph = sinabs.to_nir(net, x.transpose(0, 1)[:, :1])
    theirs = [hidden[0].transpose(0, 1), out]
    assert max(float(s.max()) for s in theirs) == 1.0  # one spike per step: MultiSpike and ours agree
    assert all(s.sum() > 0 for s in theirs)
    assert _mismatches(_run_ours(import_nir(graph, dialect="sinabs"), x), theirs) == [0, 0]
    assert sum(_mismatches(_run_ours(import_nir(graph, dt=1.0), x), theirs)) > 0  # as the spec reads it


def test_our_if_export_imported_by_sinabs_gives_our_spikes():
    sinabs, _ = _sinabs()
    torch.manual_seed(0)
    net = snn.Sequential(nn.Linear(12, 16), snn.IF(theta=1.0), nn.Linear(16, 4), snn.IF(theta=0.8), input_shape=(12,))
    with torch.no_grad():
        for m in (net[0], net[2]):  # non-negative and below theta per step: no clamp, one spike per step
            m.weight.uniform_(0, 0.95 * 0.8 / m.in_features)
            m.bias.zero_()
    x = _spikes((40, 6, 12), seed=13, p=0.3, amplitude=1.0)
    ours = _run_ours(net, x)[-1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs_net = sinabs.from_nir(export_nir(net, dt=1.0), batch_size=6)
        with torch.no_grad():
            out = theirs_net(x.transpose(0, 1).reshape(6 * 40, 12))  # "Squeeze" layers: [B*T, ...]
    out = (out[0] if isinstance(out, tuple) else out).reshape(6, 40, 4).transpose(0, 1)
    assert ours.sum() > 0
    assert torch.equal(out, ours)
