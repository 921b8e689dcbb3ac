"""Plots: each writes one valid PNG atomically; bad input is refused before anything is written."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image
import pytest
import torch

from snn.errors import SpikeforgeError
from snn.plots import plot_membrane, plot_raster, plot_training_curves

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path: Path) -> None:
    """``path`` is the only file in its folder (no temp files left) and a readable PNG."""
    assert path.is_file() and path.stat().st_size > 0
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 50 and image.shape[1] > 50
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def spike_train(shape: tuple[int, ...], rate: float = 0.2) -> torch.Tensor:
    return (torch.rand(shape, generator=torch.Generator().manual_seed(0)) < rate).float()


HISTORY = [
    {"epoch": 1, "train_loss": 2.1, "train_accuracy": 0.40, "test_accuracy": 0.38},
    {"epoch": 2, "train_loss": 1.2, "train_accuracy": 0.71, "test_accuracy": 0.69},
    {"epoch": 3, "train_loss": 0.7, "train_accuracy": 0.88, "test_accuracy": 0.85},
]


@pytest.mark.parametrize("shape", [(20, 30), (12, 2, 4, 3, 3)], ids=["T,N", "T,B,C,H,W"])
def test_raster(tmp_path: Path, shape: tuple[int, ...]) -> None:
    path = plot_raster(spike_train(shape), tmp_path / "nested" / "raster.png", title="layer 0", max_neurons=25)
    assert path == tmp_path / "nested" / "raster.png"
    assert_png(path)


def test_raster_without_spikes(tmp_path: Path) -> None:
    assert_png(plot_raster(torch.zeros(5, 3, dtype=torch.bool), tmp_path / "silent.png"))


def test_raster_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "raster.png"
    path.write_bytes(b"old")
    assert_png(plot_raster(spike_train((10, 8)), path))


def test_membrane(tmp_path: Path) -> None:
    membrane = torch.randn(16, 2, 7, generator=torch.Generator().manual_seed(1))
    spikes = spike_train((16, 2, 7))
    path = plot_membrane(membrane, tmp_path / "membrane.png", threshold=1.0, neurons=3, spikes=spikes,
                         title="hidden layer")
    assert_png(path)


def test_membrane_plain(tmp_path: Path) -> None:
    assert_png(plot_membrane(torch.linspace(0, 1, 40).reshape(10, 4), tmp_path / "m.png"))


def test_training_curves(tmp_path: Path) -> None:
    assert_png(plot_training_curves(HISTORY, tmp_path / "curves.png", title="mlp / lif"))


def test_training_curves_single_epoch(tmp_path: Path) -> None:
    assert_png(plot_training_curves(HISTORY[:1], tmp_path / "curves.png"))


@pytest.mark.parametrize("call,match", [
    (lambda p: plot_raster(torch.ones(5), p), "too few dimensions"),
    (lambda p: plot_raster(torch.ones(0, 4), p), "empty"),
    (lambda p: plot_raster([[1, 0]], p), "torch.Tensor"),
    (lambda p: plot_raster(torch.ones(4, 4), p, max_neurons=0), "max_neurons"),
    (lambda p: plot_membrane(torch.ones(3), p), "too few dimensions"),
    (lambda p: plot_membrane(torch.full((4, 3), float("nan")), p), "NaN"),
    (lambda p: plot_membrane(torch.ones(4, 3), p, spikes=torch.ones(4, 2)), "must match membrane"),
    (lambda p: plot_training_curves([], p), "history is empty"),
    (lambda p: plot_training_curves([{"epoch": 1, "train_loss": 1.0}], p), "lacks train_accuracy"),
], ids=["raster-1d", "raster-empty", "raster-list", "raster-max-neurons", "membrane-1d", "membrane-nan",
        "membrane-spikes-shape", "history-empty", "history-keys"])
def test_bad_input_raises_and_writes_nothing(tmp_path: Path, call, match: str) -> None:
    path = tmp_path / "out" / "plot.png"
    with pytest.raises(SpikeforgeError, match=match):
        call(path)
    assert not path.parent.exists()
