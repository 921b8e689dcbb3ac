"""``snn nir export`` / ``snn nir import``, run as a user runs them: a real process, real files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nir
import numpy as np
import pytest
import snntorch
import torch
from snntorch.export_nir import export_to_nir
from torch import nn

import snn
from converters import nir_cli, nir_discretisation
from converters.nir_dialects import DIALECTS
from snn.checkpoint import load_checkpoint, save_checkpoint


def snn_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "snn", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300)


def _spikes(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(*shape, generator=g) < 0.3).float() * 2


def _run(net: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    with torch.no_grad(), snn.Recorder(net) as rec:
        net(x)
    return list(rec.spikes.values())


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_the_parser_constants_agree_with_their_owners() -> None:
    assert nir_cli.DIALECT_NAMES == tuple(DIALECTS)
    assert nir_cli.DEFAULT_DT == nir_discretisation.DEFAULT_DT


def test_export_then_import_gives_back_the_network_spike_for_spike(tmp_path) -> None:
    torch.manual_seed(0)
    net = snn.Sequential(nn.Linear(8, 12), snn.LIF(beta=0.9, reset="subtract-delayed"), nn.Linear(12, 6),
                         snn.CubaLIF(alpha=0.5, beta=0.8, reset="zero"), nn.Linear(6, 3), snn.Integrator(beta=0.9),
                         input_shape=(8,))
    save_checkpoint(tmp_path / "model.pt", net)
    run = snn_cli("nir", "export", "--model", "model.pt", "--out", "net.nir", "--dt", "1e-3", "--json", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    exported = json.loads(run.stdout)
    assert exported["nodes"]["1"] == "LIF" and exported["nodes"]["5"] == "LI" and exported["dt"] == 1e-3
    assert exported["neuron_layers"][0] == {"name": "1", "type": "LIF", "reset": "subtract-delayed"}
    assert nir.read(tmp_path / "net.nir").metadata["dt"] == 1e-3
    run = snn_cli("nir", "import", "--nir", "net.nir", "--out", "back.pt", "--json", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    imported = json.loads(run.stdout)
    assert imported["dialect"] == "nir" and imported["dt"] == 1e-3 and imported["network"] == "chain"
    back = load_checkpoint(tmp_path / "back.pt")
    assert back.meta["source"] == "nir" and back.meta["dialect"] == "nir"
    x = _spikes((30, 4, 8), seed=1)
    ours, theirs = _run(net, x), _run(back.model, x)
    assert ours[0].sum() > 0
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs)) and len(ours) == len(theirs)
    with torch.no_grad():
        assert torch.equal(net(x), back.model(x))  # the Integrator's membrane too
    assert _leftovers(tmp_path) == []


def test_import_with_the_snntorch_dialect_runs_snntorchs_default_network(tmp_path) -> None:
    torch.manual_seed(2)
    fc1, fc2 = nn.Linear(16, 32), nn.Linear(32, 10)
    lif1 = snntorch.Leaky(beta=torch.full((32,), 0.9), threshold=torch.ones(32), init_hidden=True)
    lif2 = snntorch.Leaky(beta=torch.full((10,), 0.8), threshold=torch.ones(10), init_hidden=True)
    net = nn.Sequential(fc1, lif1, fc2, lif2)
    nir.write(tmp_path / "snntorch.nir", export_to_nir(net, torch.zeros(1, 16), ignore_dims=[0]))
    x = _spikes((50, 8, 16), seed=3)
    lif1.reset_mem()
    lif2.reset_mem()
    with torch.no_grad():
        theirs = torch.stack([net(x[t]) for t in range(50)])
    run = snn_cli("nir", "import", "--nir", "snntorch.nir", "--out", "model.pt", "--dialect", "snntorch", "--json",
                  cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert [layer["reset"] for layer in result["neuron_layers"]] == ["subtract-delayed"] * 2
    assert result["dt"] == 1e-4
    ours = load_checkpoint(tmp_path / "model.pt").model
    assert theirs.sum() > 0
    with torch.no_grad():
        assert torch.equal(ours(x), theirs)


@pytest.mark.parametrize("args, message", [
    (["nir", "export", "--model", "MISSING.pt", "--out", "net.nir"], "checkpoint MISSING.pt does not exist"),
    (["nir", "export", "--model", "alif.pt", "--out", "net.nir"], "layer 1 (ALIF) has no NIR neuron type"),
    (["nir", "export", "--model", "lif.pt", "--out", "net.nir", "--dt", "-1"], "dt must be a positive number"),
    (["nir", "export", "--model", "lif.pt", "--out", "."], "is a folder; name the NIR file"),
    (["nir", "import", "--nir", "notes.txt", "--out", "model.pt"], "is not an HDF5 file, so not a NIR file"),
    (["nir", "import", "--nir", "cuba.nir", "--out", "model.pt", "--dialect", "sinabs"],
     "which the 'sinabs' dialect does not read"),
    (["nir", "import", "--nir", "cuba.nir", "--out", "cuba.nir"], "is the file being read"),
    (["nir", "import", "--nir", "cuba.nir", "--out", "model.pt", "--dialect", "lava"], "invalid choice: 'lava'"),
    (["nir"], "required: ACTION"),
])
def test_bad_input_is_one_clear_line_and_writes_nothing(tmp_path, args: list[str], message: str) -> None:
    save_checkpoint(tmp_path / "alif.pt", snn.Sequential(nn.Linear(3, 4), snn.ALIF(), input_shape=(3,)))
    save_checkpoint(tmp_path / "lif.pt", snn.Sequential(nn.Linear(3, 4), snn.LIF(), input_shape=(3,)))
    full = lambda value: np.full(3, value)  # noqa: E731
    cuba = nir.CubaLIF(tau_syn=full(2e-4), tau_mem=full(3e-4), r=full(3.0), v_leak=full(0.0), v_threshold=full(1.0),
                       w_in=full(2.0))
    nir.write(tmp_path / "cuba.nir", nir.NIRGraph(
        nodes={"input": nir.Input(input_type=np.array([3])), "1": cuba,
               "output": nir.Output(output_type=np.array([3]))},
        edges=[("input", "1"), ("1", "output")]))
    (tmp_path / "notes.txt").write_text("not a network\n")
    before = sorted(p.name for p in tmp_path.iterdir())
    run = snn_cli(*args, cwd=tmp_path)
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert message in lines[-1], run.stderr
    if lines[-1].startswith("snn: error:"):
        assert len(lines) == 1, run.stderr  # our errors: one line, no traceback
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written, no temporary left
