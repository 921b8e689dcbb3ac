"""The real-format datasets through the ``snn`` command, run as a user runs it: a real process on tiny files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from snn import dataset_files

REPO = Path(__file__).resolve().parents[1]


def snn(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "snn", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=600)


def test_train_and_evaluate_an_rnn_on_shd_frames(tmp_path: Path) -> None:
    """``snn train --dataset shd --arch rnn --encoder frames``: the events are binned to T = --timesteps frames."""
    data_dir = dataset_files.write_tiny_dataset("shd", tmp_path / "data", samples_per_class=10, classes=3)
    out = tmp_path / "out"
    run = snn("train", "--dataset", "shd", "--data-dir", str(data_dir), "--arch", "rnn", "--encoder", "frames",
              "--timesteps", "4", "--downsample", "2", "--epochs", "1", "--out", str(out), "--json")
    assert run.returncode == 0, run.stderr
    trained = json.loads(run.stdout)
    assert trained["dataset"] == "shd" and trained["timesteps"] == 4
    assert trained["train_samples"] + trained["val_samples"] == 30 and trained["test_samples"] == 15
    evaluate = snn("evaluate", "--model", str(out / "model.pt"), "--dataset", "shd", "--data-dir", str(data_dir),
                   "--downsample", "2", "--json")
    assert evaluate.returncode == 0, evaluate.stderr
    assert json.loads(evaluate.stdout)["test_accuracy"] == trained["test_accuracy"]
    other = snn("evaluate", "--model", str(out / "model.pt"), "--dataset", "shd", "--data-dir", str(data_dir),
                "--downsample", "2", "--time-bins", "6")
    assert other.returncode == 2 and other.stderr.count("\n") == 1
    assert "the data holds 6 time bins per sample but the task runs 4 steps" in other.stderr


def test_convert_a_cifar_resnet_on_the_python_cifar10_archive(tmp_path: Path) -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (10, 3, 32, 32), dtype=np.uint8)
    dataset_files.write_cifar_python(tmp_path / "data", images, np.arange(10), images[:4], np.arange(4))
    out = tmp_path / "out"
    run = snn("convert", "--dataset", "cifar10", "--data-dir", str(tmp_path / "data"), "--ann",
              "examples.ann_models:cifar_resnet", "--timesteps", "1,2", "--out", str(out), "--json")
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["dataset"] == "cifar10" and set(result["snn_accuracy"]) == {"1", "2"}
    assert (out / "snn.pt").is_file() and (out / "convert.json").is_file()


@pytest.mark.parametrize("dataset, args", [
    ("nmnist", ["--arch", "cnn", "--encoder", "frames", "--timesteps", "3", "--downsample", "2"]),
    ("dvs-gesture", ["--arch", "mlp", "--encoder", "frames", "--timesteps", "2", "--downsample", "8"]),
    ("imagefolder", ["--arch", "mlp", "--timesteps", "2", "--image-size", "16"]),
])
def test_train_one_epoch_on_each_format(tmp_path: Path, dataset: str, args: list[str]) -> None:
    data_dir = dataset_files.write_tiny_dataset(dataset, tmp_path / "data", samples_per_class=10, classes=3)
    run = snn("train", "--dataset", dataset, "--data-dir", str(data_dir), *args, "--epochs", "1",
              "--out", str(tmp_path / "out"), "--json")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["test_samples"] == 15


@pytest.mark.parametrize("args, message", [
    (["--dataset", "nmnist", "--data-dir", "EMPTY"], "nmnist: EMPTY/Train is missing; expected tonic's N-MNIST layout"),
])
def test_bad_dataset_input_is_one_line_and_writes_nothing(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "EMPTY").mkdir()
    run = snn("train", *args, "--out", "OUT", cwd=tmp_path)
    assert run.returncode == 2 and run.stdout == ""
    assert message in run.stderr and run.stderr.count("\n") == 1
    assert not (tmp_path / "OUT").exists()
