"""The field's architecture shapes: VGG- and ResNet-style spiking CNNs on CIFAR's 3x32x32, a recurrent
LIF network on SHD-like sequences; each builds, learns (gradients reach every weight), trains a step
with snn.training, survives a checkpoint, and a shape it cannot take is a clear error."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from snn import names
from snn.checkpoint import load_checkpoint, save_checkpoint
from snn.errors import SpikeforgeError
from snn.graph_network import GraphNetwork
from snn.layers import Add
from snn.models import BUILDERS, build_model
from snn.network import Sequential
from snn.training import FitConfig, Task, fit, load_trained

CIFAR = (3, 32, 32)
# small widths: the same graphs as the defaults, a fraction of the work
SMALL = {"vgg": {"channels": (4, 8, 8)}, "resnet": {"width": 4}}


def test_architectures_are_the_builders() -> None:
    assert tuple(BUILDERS) == names.ARCHITECTURES
    assert {"vgg", "resnet", "rnn"} <= set(names.ARCHITECTURES)


def _check_gradients(model: torch.nn.Module, x: torch.Tensor, classes: int) -> None:
    x = x.clone().requires_grad_(True)
    out = model(x)
    assert out.shape == (*x.shape[:2], classes)
    out.mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"no gradient reaches {name}"


@pytest.mark.parametrize("arch, kind", [("vgg", Sequential), ("resnet", GraphNetwork)])
def test_cifar_architectures_build_learn_and_round_trip(tmp_path, arch: str, kind: type) -> None:
    torch.manual_seed(0)
    model = build_model(arch, CIFAR, 10, "lif")  # the defaults
    assert isinstance(model, kind) and model.input_shape == CIFAR
    x = torch.rand(2, 2, *CIFAR) * 2  # [T, B, 3, 32, 32]
    model.train()
    _check_gradients(model, x, 10)

    model.eval()
    path = save_checkpoint(tmp_path / "m.pt", model, {"timesteps": 2})
    loaded = load_checkpoint(path).model.eval()
    assert type(loaded) is kind and loaded.input_shape == CIFAR
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_resnet_is_a_residual_graph() -> None:
    model = build_model("resnet", CIFAR, 10, blocks=(2, 1, 1))
    adds = [n for n in model.nodes() if isinstance(n.layer, Add)]
    assert len(adds) == 4 and not model.is_chain()
    identity = model.inputs["s1b2_add"]  # same shape in and out: the block's input itself
    assert identity == ("s1b2_2_bn", "s1b1_neuron2")
    projected = model.inputs["s2b1_add"]  # stride 2, more channels: a 1x1 convolution
    assert projected == ("s2b1_2_bn", "s2b1_shortcut_bn")
    assert model.layers["s2b1_shortcut_conv"].stride == (2, 2)


def test_options_give_the_papers_networks() -> None:
    """VGG-16's and ResNet-18's CIFAR forms (3x3 stem, no max pool; linear 512 -> 10): their parameter
    counts, with the convolutions unbiased (BatchNorm follows each)."""
    vgg16 = build_model("vgg", CIFAR, 10, channels=(64, 128, 256, 512, 512), convs=(2, 2, 3, 3, 3), pool="max")
    resnet18 = build_model("resnet", CIFAR, 10, width=64, blocks=(2, 2, 2, 2))
    assert sum(p.numel() for p in vgg16.parameters()) == 14_724_042
    assert sum(p.numel() for p in resnet18.parameters()) == 11_173_962


@pytest.mark.parametrize("features", [700, 20])
@pytest.mark.parametrize("neuron", ["lif", "alif"])
def test_rnn_reads_shd_like_sequences(tmp_path, features: int, neuron: str) -> None:
    """SHD binned as frames: one step is (700,) channel counts (or (C,) for a coarser binning)."""
    torch.manual_seed(0)
    model = build_model("rnn", (features,), 20, neuron, hidden=32)
    assert model.input_shape == (features,)
    assert Task(5, "frames").step_shape((5, features)) == (features,)  # what snn train builds it for
    x = (torch.rand(5, 3, features) < 0.2).float()
    _check_gradients(model, x, 20)
    recurrent = [m for _, m in model.neuron_layers() if m.recurrent is not None]
    assert len(recurrent) == 1 and recurrent[0].recurrent.weight.grad.abs().sum() > 0
    loaded = load_checkpoint(save_checkpoint(tmp_path / "rnn.pt", model.eval())).model.eval()
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


@pytest.mark.parametrize("arch", ["vgg", "resnet"])
def test_a_short_training_run_on_cifar_shaped_data(tmp_path, arch: str) -> None:
    """What ``snn train --arch vgg/resnet`` runs, on random 3x32x32 tensors: fit, best checkpoint, reload."""
    torch.manual_seed(0)
    x, y = torch.rand(16, *CIFAR), torch.arange(16) % 10
    train = DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True, generator=torch.Generator().manual_seed(0))
    val = DataLoader(TensorDataset(x[:8], y[:8]), batch_size=8)
    model = build_model(arch, CIFAR, 10, "lif", **SMALL[arch])
    task = Task.for_model(model, 2)
    assert task.readout == "membrane_mean"
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = fit(model, task, train, val, FitConfig(epochs=1, progress=False), tmp_path / "model.pt")
    assert len(result.history) == 1 and torch.isfinite(torch.tensor(result.history[0]["train_loss"]))
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    loaded, loaded_task = load_trained(tmp_path / "model.pt")
    assert loaded_task == task and type(loaded) is type(model)
    with torch.no_grad():
        assert torch.equal(loaded(task.encode(x[:4])), model.eval()(task.encode(x[:4])))


@pytest.mark.parametrize("arch, shape, message", [
    ("vgg", (700,), r"vgg architecture needs image input \[C, H, W\].*got \(700,\).*--arch mlp or rnn"),
    ("resnet", (2, 700), r"resnet architecture needs image input \[C, H, W\].*got \(2, 700\)"),
    ("cnn", (700,), r"cnn architecture needs image input"),
    ("vgg", (3, 4, 4), r"halves the image 3 times and needs at least 8x8 pixels, got \(3, 4, 4\)"),
    ("rnn", (), r"input shape must be one or more positive sizes"),
    ("mlp", (0, 700), r"input shape must be one or more positive sizes.*got \(0, 700\)"),
])
def test_shapes_an_architecture_cannot_take_are_refused(arch: str, shape: tuple, message: str) -> None:
    with pytest.raises(SpikeforgeError, match=message):
        build_model(arch, shape, 10)


def test_bad_options_are_refused() -> None:
    with pytest.raises(SpikeforgeError, match="unknown architecture 'vgg16'; choose one of .*vgg, resnet"):
        build_model("vgg16", CIFAR, 10)
    with pytest.raises(SpikeforgeError, match="unknown vgg pooling 'min'"):
        build_model("vgg", CIFAR, 10, pool="min")
    with pytest.raises(SpikeforgeError, match="one per block"):
        build_model("vgg", CIFAR, 10, channels=(8, 16), convs=(1, 2, 3))
    with pytest.raises(SpikeforgeError, match="at least one block per stage"):
        build_model("resnet", CIFAR, 10, blocks=(1, 0))
    with pytest.raises(SpikeforgeError, match="num_classes must be a positive integer"):
        build_model("resnet", CIFAR, 0)
