"""The ``snn`` command line, run as a user runs it: a real process, real files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


def snn(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "snn", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=600)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("train")
    run = snn("train", "--dataset", "digits", "--arch", "mlp", "--neuron", "lif", "--timesteps", "4",
              "--epochs", "2", "--out", str(out), "--json")
    assert run.returncode == 0, run.stderr
    return out, json.loads(run.stdout)


def test_train_prints_one_json_object(trained) -> None:
    out, result = trained
    for key in ("test_accuracy", "timesteps", "epochs", "parameters", "train_seconds", "checkpoint"):
        assert key in result
    assert result["timesteps"] == 4 and result["epochs"] == 2
    assert result["test_accuracy"] > 0.5  # far above chance (0.1) after two epochs
    assert Path(result["checkpoint"]).is_file()
    assert (out / "training_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_evaluate_reproduces_the_training_accuracy(trained) -> None:
    _, result = trained
    run = snn("evaluate", "--model", result["checkpoint"], "--json")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["test_accuracy"] == result["test_accuracy"]


def test_human_output_without_json(trained) -> None:
    _, result = trained
    run = snn("evaluate", "--model", result["checkpoint"])
    assert run.returncode == 0 and "test_accuracy:" in run.stdout


@pytest.mark.parametrize("args, message", [
    (["train", "--neuron", "hodgkin", "--out", "OUT"], "invalid choice: 'hodgkin'"),
    (["train", "--dataset", "imagenet", "--out", "OUT"], "invalid choice: 'imagenet'"),
    (["train", "--timesteps", "0", "--out", "OUT"], "must be at least 1"),
    (["train", "--dataset", "mnist", "--out", "OUT"], "--data-dir"),
    (["train", "--dataset", "mnist", "--data-dir", "EMPTY", "--out", "OUT"], "train-images-idx3-ubyte"),
    (["train", "--lr", "-1", "--out", "OUT"], "learning rate"),
    (["evaluate", "--model", "MISSING.pt"], "does not exist"),
])
def test_bad_input_is_a_clear_error_and_writes_nothing(tmp_path, args: list[str], message: str) -> None:
    (tmp_path / "EMPTY").mkdir()
    run = snn(*args, cwd=tmp_path)
    assert run.returncode == 2
    assert message in run.stderr
    assert run.stdout == ""
    assert not (tmp_path / "OUT").exists()


def test_corrupt_checkpoint_is_refused(tmp_path) -> None:
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"\x00" * 100)
    run = snn("evaluate", "--model", str(bad), "--json")
    assert run.returncode == 2
    assert "corrupt" in run.stderr and run.stderr.count("\n") == 1


@pytest.mark.slow
def test_demo_writes_report_results_and_plots(tmp_path) -> None:
    run = snn("demo", "--out", str(tmp_path / "demo"), "--epochs", "2", "--samples", "30", "--json")
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["stages"]["train"]["test_accuracy"] == result["test_accuracy"] > 0.5
    written = {p.name for p in (tmp_path / "demo").iterdir()}
    assert {"report.md", "results.json", "model.pt", "raster.png", "membrane.png", "training_curves.png"} <= written
    assert json.loads((tmp_path / "demo" / "results.json").read_text())["test_accuracy"] == result["test_accuracy"]
    assert "test accuracy" in (tmp_path / "demo" / "report.md").read_text()
    # without --json the demo prints this table: every stage's headline and the report's path, under 40 lines
    from snn.app.demo import summary_table
    table = summary_table(result).splitlines()
    assert len(table) < 40 and table[-2].endswith("report.md")
    assert {line.split()[0] for line in table[:-2]} == set(result["stages"])


def test_a_recurrent_network_on_digit_rows_runs_through_the_verbs(tmp_path) -> None:
    """--arch rnn --encoder rows: the network reads one 8-pixel row per step; evaluate and Brian2
    take the per-step shape from the task stored in the checkpoint."""
    run = snn("train", "--dataset", "digits", "--arch", "rnn", "--encoder", "rows", "--timesteps", "8",
              "--epochs", "2", "--out", str(tmp_path / "rnn"), "--json")
    assert run.returncode == 0, run.stderr
    trained = json.loads(run.stdout)
    model = str(tmp_path / "rnn" / "model.pt")
    evaluated = json.loads(snn("evaluate", "--model", model, "--json").stdout)
    assert evaluated["test_accuracy"] == trained["test_accuracy"] > 0.1
    brian = snn("simulate", "--model", model, "--backend", "brian2", "--samples", "3", "--compare", "--json")
    assert brian.returncode == 0, brian.stderr
    assert json.loads(brian.stdout)["compare"]["match_fraction"] == 1.0
    bad = snn("train", "--dataset", "digits", "--arch", "rnn", "--encoder", "rows", "--timesteps", "5",
              "--epochs", "1", "--out", str(tmp_path / "bad"))
    assert bad.returncode == 2 and "multiple of 8" in bad.stderr
