"""The data split a model was trained on travels with it (issue 21, item 8).

A model trained with ``--seed 1`` on digits (whose train/test split is drawn from the seed) is
tested by every verb on its own test split: no test sample was a training sample. Another seed is
refused; another dataset is a loud warning.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from snn import data
from snn.app.cli import main
from snn.checkpoint import load_checkpoint
from snn.errors import SpikeforgeError
from snn.splits import resolve_split


def run(capsys, *args: str) -> tuple[int, dict | None, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    out = captured.out.strip()
    return code, (json.loads(out) if out.startswith("{") else None), captured.err


def rows(x: torch.Tensor) -> set[bytes]:
    return {sample.numpy().tobytes() for sample in x.reshape(len(x), -1)}


@pytest.fixture(scope="module")
def seed1_model(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("seed1")
    code = main(["train", "--dataset", "digits", "--arch", "mlp", "--timesteps", "2", "--epochs", "1",
                 "--seed", "1", "--out", str(out), "--json"])
    assert code == 0
    return out / "model.pt"


def test_the_checkpoint_records_its_split(seed1_model) -> None:
    split = load_checkpoint(seed1_model).meta["split"]
    assert split["dataset"] == "digits" and split["seed"] == 1 and split["seed_draws_split"]
    assert split["n_train"] + split["n_test"] == 1797


def test_evaluate_tests_on_the_models_own_split(seed1_model, capsys) -> None:
    code, result, _ = run(capsys, "evaluate", "--model", str(seed1_model), "--json")
    assert code == 0 and result["split"]["seed"] == 1
    trained_on = rows(data.load_digits_split(seed=1).x_train)
    tested_on = rows(data.load_digits_split(seed=result["split"]["seed"]).x_test)
    assert len(tested_on) > 500 and not tested_on & trained_on
    # the check is not vacuous: the old default (seed 0) tests on hundreds of the model's training images
    assert len(rows(data.load_digits_split(seed=0).x_test) & trained_on) > 300


def test_another_seed_is_refused_with_the_models_seed(seed1_model, capsys) -> None:
    code, _, err = run(capsys, "evaluate", "--model", str(seed1_model), "--seed", "0")
    assert code != 0 and "seed 1" in err and "--seed 1" in err and "Traceback" not in err


def test_simulate_uses_the_models_split(seed1_model, capsys) -> None:
    code, result, _ = run(capsys, "simulate", "--model", str(seed1_model), "--backend", "torch", "--samples", "5",
                          "--json")
    assert code == 0 and result["split"] == {"dataset": "digits", "seed": 1}


def test_energy_refuses_another_seed(seed1_model, capsys) -> None:
    code, _, err = run(capsys, "energy", "--snn", str(seed1_model), "--seed", "2", "--samples", "4")
    assert code != 0 and "seed 1" in err


def test_another_dataset_is_a_loud_warning() -> None:
    choice = resolve_split({"split": {"dataset": "digits", "seed": 1}}, "model.pt", "mnist", None)
    assert choice.warnings and "not its test accuracy" in choice.warnings[0]
    with pytest.raises(SpikeforgeError, match="--seed 3"):
        resolve_split({"split": {"dataset": "digits", "seed": 3}}, "model.pt", "digits", 4)


def test_the_split_of_older_files_comes_from_their_settings() -> None:
    choice = resolve_split({"settings": {"dataset": "digits", "seed": 5}}, "old.pt", "digits", None)
    assert choice.seed == 5


def test_convert_records_its_split_and_sample_limits(tmp_path, capsys) -> None:
    code, result, _ = run(capsys, "convert", "--ann", "converters.reference_models:digits_cnn", "--timesteps", "2",
                          "--calibration-samples", "64", "--test-samples", "32", "--out", str(tmp_path / "c"),
                          "--json")
    assert code == 0 and result["calibration_samples"] == 64 and result["test_samples"] == 32
    split = load_checkpoint(result["snn_path"]).meta["split"]
    assert split["dataset"] == "digits" and split["seed"] == 0 and split["calibration_samples"] == 64
