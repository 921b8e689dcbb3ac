"""No network file can make the toolkit import a module or call a function (issue 21, acceptance 2).

The files name code the way an attacker would: the first converted format's ``ann`` entry, a
layer ``type``, a neuron's surrogate. A ``helpers.py`` beside them in the working directory writes a
marker file when it is imported; ``os:abort`` would kill the process (exit 134) and ``sys:exit``
would end it silently (exit 0). Every verb that reads a network must refuse each file with one
error line, and the marker must never appear.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from snn.app.cli import main
from snn.checkpoint import save_checkpoint
from snn.models import build_model

NAMES = ("helpers:build", "os:abort", "sys:exit")
TASK = {"timesteps": 2, "encoder": "direct", "readout": "membrane_mean"}


def old_converted(path: Path, factory: str) -> Path:
    torch.save({"format": "spikeforge.converted", "version": 1, "ann": factory, "timesteps": 2,
                "state_dict": {}}, path)
    return path


def layer_named(path: Path, factory: str, field: str) -> Path:
    save_checkpoint(path, build_model("mlp", (1, 8, 8), 10, "lif"), TASK)
    payload = torch.load(path, weights_only=True)
    layer = next(spec for spec in payload["network"]["layers"] if spec["type"] == "LIF")
    layer[field] = factory
    torch.save(payload, path)
    return path


@pytest.fixture()
def folder(tmp_path, monkeypatch) -> Path:
    (tmp_path / "helpers.py").write_text("import pathlib\npathlib.Path('IMPORTED').write_text('ran')\n"
                                         "def build():\n    pathlib.Path('CALLED').write_text('ran')\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def files(folder: Path) -> list[Path]:
    made = []
    for k, name in enumerate(NAMES):
        made.append(old_converted(folder / f"old{k}.pt", name))
        made.append(layer_named(folder / f"type{k}.pt", name, "type"))
        made.append(layer_named(folder / f"surrogate{k}.pt", name, "surrogate"))
    return made


VERBS = {
    "evaluate": lambda p: ["evaluate", "--model", str(p)],
    "energy": lambda p: ["energy", "--snn", str(p), "--samples", "4"],
    "simulate": lambda p: ["simulate", "--model", str(p), "--backend", "torch", "--samples", "2"],
    "deploy": lambda p: ["deploy", "--model", str(p), "--samples", "2"],
    "nir export": lambda p: ["nir", "export", "--model", str(p), "--out", str(p.with_suffix(".nir"))],
    "train --init": lambda p: ["train", "--init", str(p), "--epochs", "1", "--out", str(p.with_suffix(".out"))],
}


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_no_verb_runs_code_a_network_file_names(folder, capsys, verb) -> None:
    for path in files(folder):
        code = main([*VERBS[verb](path), "--json"])
        captured = capsys.readouterr()
        assert code == 2, (path.name, captured.err)
        assert captured.err.count("\n") == 1 and captured.err.startswith("snn: error:"), captured.err
        assert json.loads(captured.out)["kind"] == "input"
        assert not (folder / "IMPORTED").exists() and not (folder / "CALLED").exists(), path.name


def test_os_abort_in_a_file_is_an_error_not_an_abort(folder) -> None:
    path = old_converted(folder / "abort.pt", "os:abort")
    run = subprocess.run([sys.executable, "-m", "snn", "energy", "--snn", str(path)], capture_output=True, text=True,
                         cwd=folder, timeout=300)
    assert run.returncode == 2 and "spikeforge's first format" in run.stderr and "--ann" in run.stderr
    assert not (folder / "IMPORTED").exists()
