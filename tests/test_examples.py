"""The scripts in examples/ run as a newcomer runs them: a real subprocess, ``--quick`` settings.

Each test checks the exit status, the script's result line on stdout and the PNG it wrote
(by its signature). The Lava example skips without ``.venv-lava`` (``make lava-env``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hardware.lava.driver import lava_python
from snn.errors import SpikeforgeError

REPO = Path(__file__).resolve().parents[1]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def run_example(name: str, out: Path, timeout: float = 300) -> str:
    """Run ``examples/<name>.py --quick --out <out>`` from the repository root; return its stdout."""
    done = subprocess.run([sys.executable, str(REPO / "examples" / f"{name}.py"), "--quick", "--out", str(out)],
                          capture_output=True, text=True, cwd=REPO, timeout=timeout)
    assert done.returncode == 0, f"{name} exited with {done.returncode}:\n{done.stdout}\n{done.stderr[-3000:]}"
    return done.stdout


def assert_png(path: Path) -> None:
    assert path.is_file(), f"{path} was not written"
    assert path.read_bytes()[:8] == PNG_SIGNATURE, f"{path} is not a PNG"


def test_train_digits_raster(tmp_path):
    out = run_example("train_digits_raster", tmp_path / "raster")
    assert re.search(r"^test accuracy: \d+\.\d\d%", out, re.M), out
    assert_png(tmp_path / "raster" / "raster.png")
    assert_png(tmp_path / "raster" / "training_curves.png")


def test_convert_resnet_accuracy_vs_t(tmp_path):
    out = run_example("convert_resnet_accuracy_vs_t", tmp_path / "convert")
    assert re.search(r"^ANN accuracy: \d+\.\d\d%; SNN accuracy at T=16: \d+\.\d\d%", out, re.M), out
    assert "GraphNetwork" in out  # the residual additions make a graph, not a chain
    assert_png(tmp_path / "convert" / "accuracy_vs_t.png")


def test_deploy_loihi_lava(tmp_path):
    try:
        lava_python()
    except SpikeforgeError:
        pytest.skip("the Lava environment .venv-lava is missing; build it with 'make lava-env' (make test does)")
    out = run_example("deploy_loihi_lava", tmp_path / "lava")
    match = re.search(r"^Lava vs emulation: (\d+)/(\d+) samples identical spike for spike", out, re.M)
    assert match and match[1] == match[2], out
    assert_png(tmp_path / "lava" / "lava_vs_emulation.png")


def test_deploy_loihi_lava_without_lava_env_says_how_to_build_it(tmp_path):
    env = {**os.environ, "SPIKEFORGE_LAVA_VENV": str(tmp_path / "no-such-venv")}
    done = subprocess.run([sys.executable, str(REPO / "examples" / "deploy_loihi_lava.py"), "--quick", "--out",
                           str(tmp_path / "lava")], capture_output=True, text=True, cwd=REPO, env=env, timeout=120)
    assert done.returncode == 2
    assert "make lava-env" in done.stderr
    assert not (tmp_path / "lava").exists()


def test_energy_snn_vs_ann(tmp_path):
    out = run_example("energy_snn_vs_ann", tmp_path / "energy")
    assert re.search(r"^energy per inference: ANN [\d.]+ [munp]?J \(cmos45\), SNN on Loihi [\d.]+ [munp]?J "
                     r"\(lower bound\) to [\d.]+ [munp]?J \(calibrated\)", out, re.M), out
    assert_png(tmp_path / "energy" / "energy.png")


def test_nir_roundtrip_snntorch(tmp_path):
    out = run_example("nir_roundtrip_snntorch", tmp_path / "nir")
    assert re.search(r"^spike mismatches: 0 of [1-9]\d* snnTorch spikes", out, re.M), out
    assert_png(tmp_path / "nir" / "nir_roundtrip.png")
    assert (tmp_path / "nir" / "network.nir").is_file()


def test_train_event_data(tmp_path):
    out = run_example("train_event_data", tmp_path / "events")
    assert re.search(r"^test accuracy: \d+\.\d\d%", out, re.M), out
    assert_png(tmp_path / "events" / "events_raster.png")
    assert_png(tmp_path / "events" / "training_curves.png")
