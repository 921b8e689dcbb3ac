"""ANN-to-SNN conversion: exactness of each piece, accuracy at few timesteps, bad input."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from converters.ann_training import train_ann
from converters.convert import accuracy_by_timesteps, ann_accuracy, convert
from converters.qcfs import QCFS, swap_relu_for_qcfs
from converters.reference_models import digits_cnn
from converters.storage import save_converted
from converters.tracing import normalize
from examples.ann_models import cifar_resnet
from snn import encoders
from snn.app.jobs import TrainSettings, train_classifier
from snn.checkpoint import load_checkpoint
from snn.data import load_digits_split
from snn.errors import SpikeforgeError
from snn.graph_network import GraphNetwork
from snn.layers import Scale, SpikeMaxPool2d
from snn.network import Sequential
from snn.neurons import IF
from snn.training import Task, seed_everything


def loader(x: torch.Tensor, y: torch.Tensor | None = None, batch_size: int = 256, **kwargs) -> DataLoader:
    y = torch.zeros(len(x), dtype=torch.long) if y is None else y
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, **kwargs)


@pytest.fixture(scope="module")
def digits():
    split = load_digits_split()
    train = loader(split.x_train, split.y_train, 32, shuffle=True, generator=torch.Generator().manual_seed(0))
    return split, train, loader(split.x_train, split.y_train), loader(split.x_test, split.y_test)


@pytest.fixture(scope="module")
def trained_cnn(digits):
    _, train, _, test = digits
    seed_everything(0)
    ann = digits_cnn()
    train_ann(ann, train, epochs=12, progress=False)  # 99.4 % on the test split already (30 epochs: the same)
    return ann, ann_accuracy(ann, test)


def test_if_neuron_rate_rounds_the_clipped_input() -> None:
    # v starts at theta/2, so after T steps the spike count is round(T * x / theta), clipped to [0, T].
    theta, steps = 2.0, 16
    x = torch.tensor([-1.0, 0.0, 0.3, 0.77, 1.0, 1.9, 2.0, 5.0])
    layer = Sequential(IF(theta=theta, v_init=0.5), Scale(theta))  # what conversion makes of an activation
    out = layer(x.repeat(steps, 1, 1))[:, 0]
    counts = out.sum(0) / theta
    expected = torch.clamp(torch.floor(steps * x / theta + 0.5), 0, steps)
    assert torch.equal(counts, expected)
    assert set((out / theta).unique().tolist()) <= {0.0, 1.0}


def test_spiking_max_pool_follows_the_highest_rate() -> None:
    steps = 200
    rates = torch.tensor([0.2, 0.7, 0.5, 0.1])
    generator = torch.Generator().manual_seed(0)
    spikes = (torch.rand(steps, 1, 1, 2, 2, generator=generator) < rates.reshape(1, 1, 1, 2, 2)).float()
    out = SpikeMaxPool2d(2)(spikes)
    assert out.shape == (steps, 1, 1, 1, 1)
    assert set(out.unique().tolist()) <= {0.0, 1.0}  # still a spike train
    assert abs(out.mean().item() - spikes[:, 0, 0, 0, 1].mean().item()) < 0.03


class _ReadTwice(nn.Module):
    """``relu(relu(h) + h)``: the first activation's input is read again after it (not to be clamped in
    place during calibration); the second's is a fresh sum nobody else reads (clamped in place)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        return self.fc(torch.relu(torch.relu(h) + h).flatten(1))


@pytest.mark.parametrize("channelwise", [False, True])
def test_calibration_thresholds_are_numpy_percentiles_of_the_activations(channelwise: bool) -> None:
    from converters.calibration import _sites_that_may_overwrite, activation_thresholds
    from converters.tracing import activation_sites

    torch.manual_seed(0)
    model, x = _ReadTwice().eval(), torch.randn(40, 1, 8, 8)
    data = loader(x, batch_size=16)
    gm = normalize(copy.deepcopy(model))
    sites = activation_sites(gm)
    assert [name for name, site in sites.items() if site in _sites_that_may_overwrite(gm, sites)] == ["act_1"]
    thresholds = activation_thresholds(gm, data, percentile=99.0, channelwise=channelwise)

    with torch.no_grad():
        first = torch.relu(model.conv(x))
        second = torch.relu(first + model.conv(x))
    for name, values in [("act_0", first), ("act_1", second)]:
        rows = values.transpose(0, 1).reshape(4, -1) if channelwise else values.reshape(1, -1)
        expected = np.percentile(rows.numpy(), 99.0, axis=1)
        assert np.allclose(thresholds[name].numpy(), expected.reshape(thresholds[name].shape), rtol=1e-5)
    assert not any(site.overwrite_input for site in sites.values())
    with torch.no_grad():  # the graph (and its input) are as before: in place only while calibrating
        assert torch.allclose(gm(x), model(x), atol=1e-6)


def test_rows_percentile_is_numpys_linear_percentile() -> None:
    from converters.calibration import rows_percentile

    generator = torch.Generator().manual_seed(0)
    for n in (1, 2, 7, 1000, 4099):
        values = torch.rand(3, n, generator=generator)
        values[:, : n // 3] = 0  # ties, as ReLU outputs have
        for q in (0.5, 50, 99.9, 100):
            assert np.allclose(rows_percentile(values, q).numpy(), np.percentile(values.numpy(), q, axis=1),
                               rtol=1e-6, atol=1e-7), (n, q)


def test_normal_form_equals_the_ann() -> None:
    torch.manual_seed(0)
    ann = cifar_resnet().eval()
    with torch.no_grad():
        ann.train()(torch.rand(16, 3, 32, 32))  # non-trivial BatchNorm statistics to fold
    ann.eval()
    x = torch.rand(4, 3, 32, 32)
    before = {k: v.clone() for k, v in ann.state_dict().items()}
    gm = normalize(ann)  # folds into copies: the caller's ANN is left as it was
    assert not [m for m in gm.modules() if isinstance(m, nn.BatchNorm2d)]  # all folded
    torch.testing.assert_close(gm(x), ann(x), rtol=1e-4, atol=1e-5)
    assert all(torch.equal(before[k], v) for k, v in ann.state_dict().items())
    in_place = normalize(copy.deepcopy(ann), in_place=True)  # convert's way: its own copy, weights once
    torch.testing.assert_close(in_place(x), ann(x), rtol=1e-4, atol=1e-5)


def test_convert_leaves_the_ann_unchanged() -> None:
    torch.manual_seed(0)
    ann = cifar_resnet().eval()
    before = {k: v.clone() for k, v in ann.state_dict().items()}
    snn_model = convert(ann, loader(torch.rand(16, 3, 32, 32), batch_size=8))
    assert all(torch.equal(before[k], v) for k, v in ann.state_dict().items())
    ann_tensors = {p.data_ptr() for p in ann.parameters()}
    assert not ann_tensors & {p.data_ptr() for p in snn_model.parameters()}  # no weight shared with the ANN


def test_resnet_with_residuals_and_max_pooling_approximates_the_ann_at_t256() -> None:
    torch.manual_seed(0)
    ann = cifar_resnet().eval()
    with torch.no_grad():
        ann.train()(torch.rand(32, 3, 32, 32))
    ann.eval()
    snn_model = convert(ann, loader(torch.rand(64, 3, 32, 32), batch_size=32), percentile=100.0)
    assert isinstance(snn_model, GraphNetwork) and not snn_model.is_chain()
    assert any(isinstance(m, SpikeMaxPool2d) for m in snn_model.modules())
    x = torch.rand(8, 3, 32, 32)
    with torch.no_grad():
        rates = snn_model(encoders.direct(x, 256))[-1] / 256  # accumulated membrane / T
        reference = ann(x)
    relative_error = ((rates - reference).norm() / reference.norm()).item()
    assert relative_error < 0.05


def test_concatenation_and_functional_ops_convert() -> None:
    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(6, 5)
            self.b = nn.Linear(6, 3)
            self.out = nn.Linear(8, 2)

        def forward(self, x):
            joined = torch.cat([F.relu(self.a(x)), torch.clamp(self.b(x), min=0, max=2.0)], dim=1)
            return self.out(F.dropout(joined, 0.5, self.training))

    torch.manual_seed(0)
    ann = Branchy().eval()
    x = torch.rand(64, 6)
    snn_model = convert(ann, loader(x), percentile=100.0)
    assert isinstance(snn_model, GraphNetwork)
    with torch.no_grad():
        rates = snn_model(encoders.direct(x, 512))[-1] / 512
    torch.testing.assert_close(rates, ann(x), rtol=0.02, atol=0.02)


def test_one_pass_evaluation_matches_separate_runs(digits, trained_cnn) -> None:
    split, _, calibration, test = digits
    snn_model = convert(trained_cnn[0], calibration)
    curve = accuracy_by_timesteps(snn_model, test, [2, 5])
    for steps in (2, 5):
        with torch.no_grad():
            predictions = snn_model(encoders.direct(split.x_test, steps))[-1].argmax(1)
        assert curve[steps] == (predictions == split.y_test).sum().item() / len(split.y_test)


def test_digits_cnn_keeps_its_accuracy(digits, trained_cnn) -> None:
    split, _, calibration, test = digits
    ann, reference = trained_cnn
    assert reference > 0.98
    curve = accuracy_by_timesteps(convert(ann, calibration), test, [16, 32])
    assert curve[16] >= reference - 0.010
    assert curve[32] >= reference - 0.005

    qcfs = swap_relu_for_qcfs(copy.deepcopy(ann), levels=4)
    # A loader of its own: the shared one's shuffle order depends on how many epochs other tests drew from it.
    tuning = loader(split.x_train, split.y_train, 32, shuffle=True, generator=torch.Generator().manual_seed(1))
    train_ann(qcfs, tuning, epochs=10, lr=5e-4, progress=False)
    qcfs_curve = accuracy_by_timesteps(convert(qcfs, calibration), test, [4, 8])
    assert qcfs_curve[4] >= reference - 0.010
    assert qcfs_curve[8] >= reference - 0.005


def test_qcfs_quantizes_and_learns_its_clip() -> None:
    act = QCFS(levels=4, lam=2.0)
    x = torch.tensor([-1.0, 0.1, 0.3, 0.74, 1.0, 3.0], requires_grad=True)
    y = act(x)
    assert torch.allclose(y, torch.tensor([0.0, 0.0, 0.5, 0.5, 1.0, 2.0]))
    y.sum().backward()
    assert act.lam.grad is not None and x.grad is not None and x.grad.abs().sum() > 0
    with pytest.raises(SpikeforgeError, match="no nn.ReLU"):
        swap_relu_for_qcfs(nn.Linear(2, 2))


def test_saved_snn_reloads_identically(tmp_path, digits, trained_cnn) -> None:
    _, _, calibration, _ = digits
    snn_model = convert(trained_cnn[0], calibration)
    assert isinstance(snn_model, Sequential)  # a chain: the same container snn train makes
    path = save_converted(tmp_path / "snn.pt", snn_model, 8)
    checkpoint = load_checkpoint(path)
    assert Task(**checkpoint.task) == Task(8, "direct", "membrane_last")
    x = encoders.direct(torch.rand(3, 1, 8, 8), 6)
    with torch.no_grad():
        assert torch.equal(checkpoint.model.eval()(x), snn_model(x))


def test_saved_residual_snn_reloads_identically(tmp_path) -> None:
    torch.manual_seed(0)
    ann = cifar_resnet().eval()
    snn_model = convert(ann, loader(torch.rand(16, 3, 32, 32), batch_size=16))
    path = save_converted(tmp_path / "snn.pt", snn_model, 4)
    loaded = load_checkpoint(path).model.eval()
    assert isinstance(loaded, GraphNetwork) and loaded.order == snn_model.order
    x = encoders.direct(torch.rand(2, 3, 32, 32), 4)
    with torch.no_grad():
        assert torch.equal(loaded(x), snn_model(x))


def test_a_converted_file_of_the_first_format_is_refused_with_the_command(tmp_path) -> None:
    path = tmp_path / "old.pt"
    torch.save({"format": "spikeforge.converted", "version": 1, "ann": "converters.reference_models:digits_cnn",
                "options": {}, "state_dict": {}, "meta": {}}, path)
    with pytest.raises(SpikeforgeError, match=r"first format .* snn convert --ann converters.reference_models:"
                                              r"digits_cnn"):
        load_checkpoint(path)


@pytest.mark.parametrize("layer, advice", [
    (nn.Sigmoid(), "use ReLU"), (nn.GELU(), "use ReLU"), (nn.LayerNorm(4), "use BatchNorm"),
])
def test_unsupported_layers_are_refused_by_name(layer: nn.Module, advice: str) -> None:
    ann = nn.Sequential(nn.Linear(4, 4), layer, nn.Linear(4, 2))
    with pytest.raises(SpikeforgeError, match=rf"node '1' \({type(layer).__name__}\) has no spiking "
                                              rf"equivalent; {advice}"):
        convert(ann, loader(torch.rand(8, 4)))


def test_untraceable_model_and_empty_loader() -> None:
    class DataDependent(nn.Module):
        def forward(self, x):
            return x if x.sum() > 0 else -x

    with pytest.raises(SpikeforgeError, match="cannot trace DataDependent"):
        convert(DataDependent(), loader(torch.rand(4, 3)))
    with pytest.raises(SpikeforgeError, match="calibration loader is empty"):
        convert(nn.Sequential(nn.Linear(3, 3), nn.ReLU()), loader(torch.rand(0, 3)))


@pytest.mark.gpu
def test_conversion_on_gpu_matches_cpu(digits, trained_cnn) -> None:
    _, _, calibration, test = digits
    cpu = accuracy_by_timesteps(convert(trained_cnn[0], calibration), test, [4, 16])
    gpu = accuracy_by_timesteps(convert(trained_cnn[0], calibration, device="cuda"), test, [4, 16], "cuda")
    assert all(abs(cpu[t] - gpu[t]) <= 2 / 540 for t in cpu)


def snn(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "snn", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=600)


def test_convert_cli(tmp_path, trained_cnn) -> None:
    weights = tmp_path / "ann.pt"
    torch.save(trained_cnn[0].state_dict(), weights)
    run = snn("convert", "--ann", "converters.reference_models:digits_cnn", "--weights", str(weights),
              "--dataset", "digits", "--timesteps", "1,4,16", "--out", str(tmp_path / "out"), "--json")
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["ann_accuracy"] == trained_cnn[1]
    assert set(result["snn_accuracy"]) == {"1", "4", "16"}
    assert (tmp_path / "out" / "snn.pt").is_file() and (tmp_path / "out" / "accuracy_vs_timesteps.png").is_file()


@pytest.mark.parametrize("ann, weights, message", [
    ("no_such_package.models:net", None, "cannot import module 'no_such_package.models'"),
    ("converters.reference_models:nothing", None, "has no callable 'nothing'"),
    ("converters.reference_models", None, "package.module:factory"),
    ("converters.reference_models:digits_mlp", "cnn", "do not fit the model"),
    ("converters.reference_models:digits_cnn", "garbage", "corrupt"),
])
def test_convert_cli_bad_input(tmp_path, trained_cnn, ann: str, weights: str | None, message: str) -> None:
    args = ["convert", "--ann", ann, "--timesteps", "2", "--out", str(tmp_path / "out")]
    if weights == "cnn":
        torch.save(trained_cnn[0].state_dict(), tmp_path / "w.pt")
        args += ["--weights", str(tmp_path / "w.pt")]
    elif weights == "garbage":
        (tmp_path / "w.pt").write_bytes(b"not torch")
        args += ["--weights", str(tmp_path / "w.pt")]
    run = snn(*args)
    assert run.returncode == 2 and message in run.stderr
    assert not (tmp_path / "out").exists()


def test_fine_tuning_a_converted_cnn_raises_its_accuracy_at_one_step(tmp_path, digits, trained_cnn) -> None:
    """Hybrid conversion (Rathi et al. 2020): convert, then a few epochs of surrogate-gradient BPTT at
    T = 1, where the rate code has the most to gain (digits: ~76% before; at T = 4 it is already at
    the ANN's accuracy)."""
    _, _, calibration, _ = digits
    path = save_converted(tmp_path / "snn.pt", convert(trained_cnn[0], calibration, channelwise=True), 32)
    settings = TrainSettings(timesteps=1, epochs=3, init=str(path), progress=False)
    results = train_classifier(settings, tmp_path / "tuned")
    assert results["readout"] == "membrane_last" and results["lr"] == 1e-4
    assert results["test_accuracy"] > results["test_accuracy_before"]
    tuned = load_checkpoint(tmp_path / "tuned" / "model.pt")
    assert isinstance(tuned.model, Sequential) and tuned.task["readout"] == "membrane_last"
    assert [m.v_init for m in tuned.model if isinstance(m, IF)] == [0.5, 0.5, 0.5]


def test_converted_networks_reach_every_backend(trained_cnn, digits, tmp_path) -> None:
    """One network through every stage: the converted digits CNN (a chain) and a converted residual
    digits network (a graph, calibrated only) deploy to Lava bit-exactly, match Brian2 spike for
    spike and survive a NIR round trip."""
    from converters.nir_io import load_network, save_nir
    from converters.reference_models import digits_resnet
    from hardware.brian2.simulate import simulate
    from hardware.lava.deploy import deploy
    from hardware.lava.driver import lava_python
    from snn.recording import Recorder

    _, _, calibration, _ = digits
    ann, _ = trained_cnn
    seed_everything(1)
    residual_ann = digits_resnet().eval()
    for name, model in [("cnn", ann), ("resnet", residual_ann)]:
        snn_model = convert(model, calibration)
        assert isinstance(snn_model, Sequential if name == "cnn" else GraphNetwork)
        path = save_converted(tmp_path / f"{name}.pt", snn_model, 4)

        brian = simulate(str(path), backend="brian2", samples=3, compare=True)
        assert brian["compare"]["match_fraction"] == 1.0 and sum(brian["spike_counts"].values()) > 0

        back = load_network(save_nir(snn_model, tmp_path / f"{name}.nir")).eval()
        x = encoders.direct(load_digits_split().x_test[:4], 4)
        with torch.no_grad(), Recorder(snn_model, membrane=False) as ours, Recorder(back, membrane=False) as theirs:
            assert torch.equal(back(x), snn_model(x))
        assert all(torch.equal(a, b) for a, b in zip(ours.spikes.values(), theirs.spikes.values()))

        try:
            lava_python()
        except SpikeforgeError:
            continue   # the Lava environment is optional outside make test
        lava = deploy(path, samples=3)
        assert lava["emulation_agreement"] == 1.0 and lava["lava_accuracy"] == lava["emulation_accuracy"]
        assert "float_accuracy_deployed_reset" in lava and not lava["netx_compatible"]  # it starts charged
        if name == "cnn":   # the converted network's own reset, kept on Lava
            kept = deploy(path, samples=3, reset="subtract")
            assert kept["emulation_agreement"] == 1.0 and kept["reset"] == "subtract"
            assert "simulation only" in kept["neuron_model"]
            assert kept["float_accuracy_deployed_reset"] == kept["float_accuracy"]


def test_converted_cifar_resnet_runs_on_lava_brian2_and_nir() -> None:
    """The CIFAR-shaped ResNet (average-pooling stem; max pooling of spikes has no synaptic form) after
    conversion: its stride-2 conv shortcuts wait for the longer branch in relay populations, Lava
    matches the emulation spike for spike, Brian2 matches torch, NIR takes the graph."""
    from converters.nir_export import export_nir
    from examples.ann_models import cifar_resnet_avgpool
    from hardware.brian2.build import run_discrete
    from hardware.brian2.reference import run_torch
    from hardware.graph import network_graph
    from hardware.lava.compile import compile_network
    from hardware.lava.driver import lava_python, run_in_lava
    from hardware.lava.emulate import emulate

    torch.manual_seed(0)
    ann = cifar_resnet_avgpool(width=4)
    with torch.no_grad():
        ann.train()(torch.rand(32, 3, 32, 32))
    snn_model = convert(ann.eval(), loader(torch.rand(16, 3, 32, 32), batch_size=16))
    net = compile_network(snn_model)
    relays = [layer for layer in net.layers if layer.relay]
    assert len(relays) == 2 and all(c.kind == "conv" for layer in relays for c in layer.connections)
    assert export_nir(snn_model).nodes["output"] is not None
    x = encoders.direct(torch.rand(1, 3, 32, 32), 3)
    reference = run_torch(snn_model, x.double())
    brian = run_discrete(network_graph(snn_model), x.double().numpy())
    assert all(np.array_equal(brian.spikes[k], s) for k, s in reference.spikes.items())
    try:
        lava_python()
    except SpikeforgeError:
        return   # the Lava environment is optional outside make test
    q = net.quantise_input(x)
    em = emulate(net, q, delay=True)
    lava = run_in_lava(net, q[:, 0].numpy(), mode="single")
    assert sum(int(s.sum()) for s in em.spikes.values()) > 0
    for name, spikes in em.spikes.items():
        np.testing.assert_array_equal(lava.spikes[name], spikes[:, 0].numpy(), err_msg=f"layer {name}")
