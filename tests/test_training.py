"""The fit loop: learning, determinism, best-model checkpoint, early stopping."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from snn.checkpoint import load_checkpoint
from snn.data import load_digits_split
from snn.errors import SpikeforgeError
from snn.models import build_model
from snn.network import Sequential
from snn.neurons import LIF
from snn.training import FitConfig, Task, evaluate, fit


def loaders(samples: int = 400):
    split = load_digits_split()
    generator = torch.Generator().manual_seed(0)
    train = DataLoader(TensorDataset(split.x_train[:samples], split.y_train[:samples]), batch_size=32,
                       shuffle=True, generator=generator)
    test = DataLoader(TensorDataset(split.x_test, split.y_test), batch_size=256)
    return train, test


def train_once(epochs: int = 8, **config):
    torch.manual_seed(0)
    model = build_model("mlp", (1, 8, 8), 10, "lif", hidden=(64,))
    train, test = loaders()
    result = fit(model, Task.for_model(model, 4), train, test, FitConfig(epochs=epochs, progress=False, **config))
    return model, result


def test_fit_learns_and_is_deterministic() -> None:
    model_a, result_a = train_once()
    model_b, result_b = train_once()
    assert result_a.best_val_accuracy > 0.6
    assert result_a.history == result_b.history
    for (name, a), b in zip(model_a.state_dict().items(), model_b.state_dict().values()):
        assert torch.equal(a, b), name


def test_best_model_is_kept_and_checkpointed(tmp_path) -> None:
    torch.manual_seed(0)
    model = build_model("mlp", (1, 8, 8), 10, "cuba", hidden=(64,))
    train, test = loaders()
    task = Task.for_model(model, 4)
    result = fit(model, task, train, test, FitConfig(epochs=3, progress=False), tmp_path / "best.pt")
    best = max(h["val_accuracy"] for h in result.history)
    assert result.best_val_accuracy == best
    assert evaluate(model, task, test) == best  # the model holds the best epoch's weights
    saved = load_checkpoint(tmp_path / "best.pt")
    assert saved.meta["epoch"] == result.best_epoch and saved.task == task.as_dict()
    assert evaluate(saved.model, task, test) == best


def test_early_stopping_stops() -> None:
    # A learning rate this small cannot improve validation accuracy for long.
    _, result = train_once(epochs=30, lr=1e-9, patience=2)
    assert result.stopped_early and len(result.history) < 30


def test_spike_count_readout_trains() -> None:
    torch.manual_seed(0)
    model = Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 64), LIF(), torch.nn.Linear(64, 10), LIF())
    task = Task.for_model(model, 8, encoder="rate")
    assert task.readout == "count"
    train, test = loaders()
    result = fit(model, task, train, test, FitConfig(epochs=8, lr=5e-3, progress=False))
    assert result.best_val_accuracy > 0.5


@pytest.mark.parametrize("bad", [
    lambda: FitConfig(epochs=0), lambda: FitConfig(lr=0.0), lambda: FitConfig(patience=0),
    lambda: Task(0), lambda: Task(4, encoder="morse"), lambda: Task(4, readout="vote"),
])
def test_bad_settings(bad) -> None:
    with pytest.raises(SpikeforgeError):
        bad()


def test_empty_loader_is_refused() -> None:
    model = build_model("mlp", (1, 8, 8), 10, "lif")
    empty = DataLoader(TensorDataset(torch.zeros(0, 1, 8, 8), torch.zeros(0, dtype=torch.long)), batch_size=4)
    with pytest.raises(SpikeforgeError, match="empty"):
        fit(model, Task(2), empty, empty, FitConfig(epochs=1, progress=False))
