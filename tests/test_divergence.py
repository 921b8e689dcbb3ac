"""Divergence (issue 21, item 3): a non-finite loss stops training with an error and keeps the last
good checkpoint; a loss that grows by orders of magnitude or a validation accuracy at chance is a
warning; ``--lr 1e9`` with the default gradient clipping keeps the loss finite."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from snn import data
from snn.app.cli import main
from snn.checkpoint import load_checkpoint
from snn.models import build_model
from snn.training import FitConfig, Task, TrainingDiverged, fit, loss_warning


def digits_loaders(samples: int = 256):
    split = data.load_digits_split()
    train = data.tensor_loader(split.x_train[:samples], split.y_train[:samples], 32, shuffle=True, seed=0)
    val = data.tensor_loader(split.x_test[:128], split.y_test[:128], 128)
    return train, val


def test_a_huge_learning_rate_with_clipping_stays_finite_and_warns(tmp_path, capsys) -> None:
    code = main(["train", "--dataset", "digits", "--arch", "mlp", "--timesteps", "2", "--epochs", "2", "--lr", "1e9",
                 "--out", str(tmp_path), "--json"])
    captured = capsys.readouterr()
    assert code == 0
    result = json.loads(captured.out)
    assert all(math.isfinite(h["train_loss"]) for h in json.loads((tmp_path / "train.json").read_text())["history"])
    assert any("diverging" in w for w in result["warnings"]) and any("at chance" in w for w in result["warnings"])
    assert captured.err.count("snn: warning:") == len(result["warnings"])


def test_a_non_finite_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path) -> None:
    torch.manual_seed(0)
    model = build_model("mlp", (1, 8, 8), 10, "lif")
    task = Task.for_model(model, 2)
    train, val = digits_loaders()
    calls = {"n": 0}
    first = next(m for m in model.modules() if isinstance(m, nn.Linear))

    def poison_in_epoch_three(_module, _inputs, output):  # the third epoch's first batch overflows
        calls["n"] += first.training
        return output * math.inf if first.training and calls["n"] > 2 * len(train) else output

    first.register_forward_hook(poison_in_epoch_three)
    checkpoint = tmp_path / "model.pt"
    diverged = "training diverged at epoch 3: the (loss is nan|LIF input contains)"
    with pytest.raises(TrainingDiverged, match=diverged) as error:
        fit(model, task, train, val, FitConfig(epochs=5, progress=False), checkpoint)
    assert error.value.kind == "divergence" and error.value.keep_partial
    assert "last good checkpoint" in str(error.value) and "lower --lr" in str(error.value)
    kept = load_checkpoint(checkpoint)
    assert kept.meta["epoch"] in (1, 2)
    for name, tensor in model.state_dict().items():  # the model in memory holds the same, finite weights
        assert torch.equal(tensor, kept.model.state_dict()[name]) and torch.isfinite(tensor).all()


def test_loss_warning_thresholds() -> None:
    assert loss_warning(1, 2.0, [], 10) is None
    assert "chance level" in loss_warning(1, 500.0, [], 10)
    history = [{"train_loss": 0.01}]
    assert "lowest earlier loss" in loss_warning(2, 5.0, history, 10)
    assert loss_warning(2, 0.5, history, 10) is None


def test_clipping_must_be_positive_and_finite() -> None:
    with pytest.raises(ValueError, match="--clip-grad"):
        FitConfig(clip_grad_norm=math.nan)
