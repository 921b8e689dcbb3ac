"""The time-folding container, recording, serialization and checkpoints."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

from snn.checkpoint import load_checkpoint, save_checkpoint
from snn.errors import SpikeforgeError
from snn.fileio import atomic_path
from snn.models import build_model
from snn.network import Sequential
from snn.neurons import ALIF, IF, LIF, CubaLIF, Integrator
from snn.recording import Recorder
from snn.serialization import build_network, network_spec


def small_cnn() -> Sequential:
    torch.manual_seed(0)
    return Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), LIF(beta=0.8), nn.MaxPool2d(2),
                      nn.Flatten(), nn.Linear(4 * 4 * 4, 6), CubaLIF(alpha=0.5, beta=0.9), nn.Linear(6, 3),
                      Integrator(), input_shape=(1, 8, 8))


def test_folded_layers_equal_a_per_step_loop() -> None:
    model = small_cnn().eval()
    x = torch.rand(5, 2, 1, 8, 8) * 2
    out = model(x)
    conv, bn, lif, pool, flat, fc1, cuba, fc2, readout = model
    h = torch.stack([bn(conv(x[t])) for t in range(5)])
    h, _ = lif(h)
    h = torch.stack([fc1(flat(pool(h[t]))) for t in range(5)])
    h, _ = cuba(h)
    h = torch.stack([fc2(h[t]) for t in range(5)])
    expected, _ = readout(h)
    torch.testing.assert_close(out, expected)


def test_state_round_trip_continues_stream() -> None:
    model = small_cnn().eval()
    x = torch.rand(6, 2, 1, 8, 8) * 2
    whole = model(x)
    first, state = model(x[:4], return_state=True)
    second = model(x[4:], state)
    torch.testing.assert_close(whole, torch.cat([first, second]))


@pytest.mark.parametrize("x, message", [
    (torch.rand(2, 1, 8, 8), "time-major"),
    (torch.rand(0, 2, 1, 8, 8), "T = 0"),
    (torch.rand(3, 2, 1, 7, 7), "feature shape"),
    (torch.full((3, 2, 1, 8, 8), float("nan")), "NaN"),
])
def test_bad_network_input(x: torch.Tensor, message: str) -> None:
    with pytest.raises(SpikeforgeError, match=message):
        small_cnn()(x)


@pytest.mark.parametrize("fused", [None, False])  # the fused kernel's in-pass check and the step path's
@pytest.mark.parametrize("value, word",
                         [(float("nan"), "NaN"), (float("inf"), "infinity"), (-float("inf"), "infinity")])
def test_non_finite_input_is_named_by_the_first_neuron_layer_it_reaches(fused, value: float, word: str) -> None:
    model = small_cnn().eval()
    for layer in model.neuron_layers():
        layer[1].fused = fused
    x = torch.rand(3, 2, 1, 8, 8)
    x[1, 0, 0, 4, 4] = value
    with pytest.raises(SpikeforgeError, match=f"LIF input contains {word}; clean or clip the network input"):
        model(x)


@pytest.mark.parametrize("fused", [None, False])
def test_non_finite_values_made_inside_the_network_name_the_layer_they_reach(fused) -> None:
    model = small_cnn().eval()
    for layer in model.neuron_layers():
        layer[1].fused = fused
    with torch.no_grad():
        model[5].weight[2, 0] = float("inf")  # a diverged weight of the Linear before CubaLIF
    x = torch.ones(3, 2, 1, 8, 8)
    with pytest.raises(SpikeforgeError, match="CubaLIF input contains (NaN|infinity); .*lower the learning rate"):
        model(x)


def test_recorder_captures_every_neuron_layer_and_cleans_up() -> None:
    model = small_cnn().eval()
    x = torch.rand(7, 3, 1, 8, 8) * 3
    with Recorder(model) as rec:
        out = model(x)
    assert set(rec.spikes) == {"2", "6"}
    assert set(rec.membrane) == {"2", "6", "8"}
    assert rec.spikes["2"].shape == (7, 3, 4, 8, 8)
    assert rec.membrane["8"].shape == out.shape
    torch.testing.assert_close(rec.membrane["8"], out)
    assert set(rec.spikes["2"].unique().tolist()) <= {0.0, 1.0}
    assert all(not m._forward_hooks and not m.record_membrane for m in model.modules() if hasattr(m, "record_membrane"))


def test_spec_round_trip_rebuilds_identical_network(tmp_path) -> None:
    model = small_cnn().eval()
    rebuilt = build_network(network_spec(model))
    rebuilt.load_state_dict(model.state_dict())
    x = torch.rand(4, 2, 1, 8, 8)
    assert torch.equal(rebuilt.eval()(x), model(x))


@pytest.mark.parametrize("neuron", ["if", "lif", "cuba", "alif"])
@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_checkpoint_round_trip(tmp_path, arch: str, neuron: str) -> None:
    torch.manual_seed(1)
    model = build_model(arch, (1, 8, 8), 10, neuron).eval()
    path = save_checkpoint(tmp_path / "m.pt", model, {"timesteps": 4}, {"note": "x"})
    loaded = load_checkpoint(path)
    x = torch.rand(4, 3, 1, 8, 8)
    assert torch.equal(loaded.model.eval()(x), model(x))
    assert loaded.task == {"timesteps": 4} and loaded.meta == {"note": "x"}


def test_learned_per_neuron_parameters_survive_a_checkpoint(tmp_path) -> None:
    model = Sequential(nn.Linear(3, 4), LIF(beta=0.9, learn_beta=True, learn_threshold=True),
                       nn.Linear(4, 2), ALIF(), IF(recurrent_features=2))
    with torch.no_grad():
        model[1].beta = nn.Parameter(torch.tensor([0.1, 0.2, 0.3, 0.4]))
        model[1].theta.fill_(0.7)
    loaded = load_checkpoint(save_checkpoint(tmp_path / "m.pt", model)).model
    assert torch.equal(loaded[1].beta, model[1].beta)
    assert isinstance(loaded[1].beta, nn.Parameter)
    x = torch.rand(5, 2, 3)
    assert torch.equal(loaded(x), model(x))


def test_unknown_layer_cannot_be_saved(tmp_path) -> None:
    with pytest.raises(SpikeforgeError, match="GELU cannot be saved"):
        save_checkpoint(tmp_path / "m.pt", Sequential(nn.Linear(2, 2), nn.GELU()))
    assert list(tmp_path.iterdir()) == []


def test_missing_and_corrupt_checkpoints(tmp_path) -> None:
    with pytest.raises(SpikeforgeError, match="does not exist"):
        load_checkpoint(tmp_path / "absent.pt")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"this is not a torch file")
    with pytest.raises(SpikeforgeError, match="corrupt"):
        load_checkpoint(corrupt)
    truncated = tmp_path / "truncated.pt"
    good = save_checkpoint(tmp_path / "good.pt", small_cnn())
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(SpikeforgeError, match="corrupt"):
        load_checkpoint(truncated)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(SpikeforgeError, match="not a spikeforge checkpoint"):
        load_checkpoint(foreign)


def test_atomic_path_leaves_nothing_on_failure(tmp_path) -> None:
    target = tmp_path / "out.bin"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("interrupted")
    assert os.listdir(tmp_path) == []
