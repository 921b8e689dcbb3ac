"""``snn energy`` (called through its ``register`` function) and the demo's energy stage, on real files."""

from __future__ import annotations

import argparse
import json

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from converters.convert import convert
from converters.reference_models import digits_cnn
from converters.storage import save_converted
from hardware.energy.cli import energy_stage, register
from snn import data
from snn.checkpoint import save_checkpoint
from snn.errors import SpikeforgeError
from snn.models import build_cnn

FACTORY = "converters.reference_models:digits_cnn"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """An (untrained) digits CNN, its converted SNN, and a spiking checkpoint, as the real tools write them."""
    folder = tmp_path_factory.mktemp("energy")
    torch.manual_seed(0)
    ann = digits_cnn().eval()
    torch.save(ann.state_dict(), folder / "ann.pt")
    split = data.load_digits_split()
    calibration = DataLoader(TensorDataset(split.x_train[:128], split.y_train[:128]), batch_size=64)
    save_converted(folder / "snn.pt", convert(ann, calibration, channelwise=True), 4)
    model = build_cnn((1, 8, 8), 10, "lif", channels=(4, 8), hidden=16)
    save_checkpoint(folder / "model.pt", model, {"timesteps": 4, "encoder": "direct", "readout": "membrane_mean"})
    return folder


def _snn_energy(argv: list[str]) -> dict:
    parser = argparse.ArgumentParser(prog="snn")
    register(parser.add_subparsers(dest="verb"))
    args = parser.parse_args(["energy", *argv])
    return args.run(args)


def test_energy_verb_json_has_the_promised_keys_and_files(files, capsys):
    out = files / "out"
    result = _snn_energy(["--snn", str(files / "snn.pt"), "--ann", FACTORY, "--weights", str(files / "ann.pt"),
                          "--dataset", "digits", "--timesteps", "2,4", "--profile", "loihi,loihi-calibrated,cmos45",
                          "--samples", "20", "--out", str(out), "--json"])
    json.dumps(result)  # serialisable
    assert result["timesteps"] == 4 and result["samples"] == 20
    for name in ("loihi", "loihi-calibrated", "cmos45"):
        block = result["profiles"][name]
        assert block["energy_per_inference_j"] == block["snn"]["energy_per_inference_j"]
        for layer in block["snn"]["layers"]:
            assert {"synaptic_ops", "macs", "neuron_updates", "spikes", "activation_sparsity", "energy_j"} <= set(layer)
        assert [p["timesteps"] for p in block["pareto"]] == [2, 4]
        assert block["snn_to_ann_cmos45_ratio"] > 0
    for name in ("loihi", "cmos45"):
        block = result["profiles"][name]
        assert block["ann_energy_per_inference_j"] == block["ann"]["energy_per_inference_j"]
    cmos = result["profiles"]["cmos45"]
    expected = cmos["energy_per_inference_j"] / cmos["ann_energy_per_inference_j"]
    assert cmos["snn_to_ann_ratio"] == pytest.approx(expected)
    assert cmos["latency_per_inference_s"] is None
    assert result["profiles"]["loihi"]["snn_to_ann_ratio"] is None  # the ANN's MACs have no Loihi price
    # Both Loihi profiles price the compiled network's hardware events: the graded input is on chip, nothing unpriced
    low, high = result["profiles"]["loihi"], result["profiles"]["loihi-calibrated"]
    for block in (low, high):
        assert block["snn"]["complete"] and block["snn"]["counts"] == "hardware events"
        assert block["counts"] == "hardware events of the network compiled for Loihi"
        assert 0 <= block["loihi_accuracy"] <= 1 and block["latency_per_inference_s"] > 0
        assert block["events"]["totals_per_inference"]["packets"] > 0
        assert block["events"]["totals_per_inference"]["hops_east_west"] > 0
    assert {"packets", "hops_east_west"} <= set(low["snn"]["by_term_j"])  # 4 tiles: one row of the mesh
    assert set(high["snn"]["by_component_j"]) == {"synapse", "soma", "network"}
    band = result["loihi_band"]
    assert band["calibrated_j"] > band["lower_bound_j"] > 0 and "loihi-calibrated is" in band["why"]
    assert json.loads((out / "energy.json").read_text())["ann"]["counts"]["totals"]["macs"] > 0
    for plot in ("energy_layers.png", "energy_pareto.png"):
        assert (out / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    err = capsys.readouterr().err  # the tables go to stderr with --json
    assert "hardware events on the loihi1 placement" in err and "Loihi band:" in err
    assert "unpriced on loihi: macs in block1.0" in err   # the ANN's MACs on Loihi


def test_energy_verb_reads_a_trained_checkpoint(files):
    result = _snn_energy(["--snn", str(files / "model.pt"), "--profile", "truenorth,gpu", "--samples", "8", "--json"])
    assert result["timesteps"] == 4  # the checkpoint's T
    layers = result["profiles"]["gpu"]["snn"]["layers"]
    assert layers[0]["macs"] > 0 and result["profiles"]["gpu"]["energy_per_inference_j"] > 0
    assert "BatchNorm2d" not in {layer["type"] for layer in layers}


@pytest.mark.parametrize("argv, message", [
    (["--profile", "loihi,quantum"], "unknown energy profile 'quantum'; known profiles: loihi"),
    (["--weights", "ann.pt"], "--weights needs --ann"),
    (["--profile", "truenorth", "--strict", "--samples", "2"], "no constant for 'macs'"),
])
def test_bad_input_is_a_clear_error(files, argv, message):
    with pytest.raises(SpikeforgeError, match=message):
        _snn_energy(["--snn", str(files / "snn.pt"), *argv, "--json"])


def test_fallback_never_adds_to_an_all_in_profile(files):
    result = _snn_energy(["--snn", str(files / "snn.pt"), "--profile", "loihi,truenorth", "--fallback", "cmos45",
                          "--samples", "2", "--timesteps", "2", "--json"])
    assert result["profiles"]["loihi"]["snn"]["complete"]
    truenorth = result["profiles"]["truenorth"]["snn"]
    assert not truenorth["complete"] and "macs" in {u["count"] for u in truenorth["unpriced"]}
    assert result["fallback_not_applied"] == ["truenorth"]


def test_missing_or_foreign_snn_file_is_refused(files, tmp_path):
    with pytest.raises(SpikeforgeError, match="does not exist"):
        _snn_energy(["--snn", str(tmp_path / "none.pt")])
    torch.save({"format": "something else"}, tmp_path / "other.pt")
    with pytest.raises(SpikeforgeError, match="not a spikeforge checkpoint .* 'snn convert'"):
        _snn_energy(["--snn", str(tmp_path / "other.pt")])


def test_demo_stage_compares_ann_on_cmos_with_snn_on_loihi_and_cmos(files, tmp_path):
    context = {"options": {}, "results": {"conversion": {"snn_path": str(files / "snn.pt"),
                                                         "ann_weights": str(files / "ann.pt")}}}
    results, lines = energy_stage(tmp_path, context)
    for name in ("loihi", "loihi-calibrated"):
        block = results["profiles"][name]
        assert block["snn"]["complete"] and block["snn_to_ann_cmos45_ratio"] > 0 and block["latency_per_inference_s"]
    assert results["loihi_band"]["calibrated_j"] > results["loihi_band"]["lower_bound_j"]
    assert (tmp_path / "energy" / "energy_pareto.png").is_file()
    assert (tmp_path / "energy" / "energy.json").is_file()
    text = "\n".join(lines)
    assert "## Energy and latency per inference" in text and "*minimum*" in text and "energy/energy_layers.png" in text
    assert "Why the two Loihi estimates differ: loihi-calibrated is" in text and "calibrated to silicon" in text


def test_a_network_loihi_cannot_run_keeps_the_lower_bound_on_simulated_operations(tmp_path):
    """ALIF does not compile for Loihi: ``loihi`` prices the simulated operations (hops unpriced) and says why;
    ``loihi-calibrated`` prices hardware events only, so it refuses with the compiler's reason."""
    from torch import nn

    from snn.network import Sequential
    from snn.neurons import ALIF, Integrator

    model = Sequential(nn.Flatten(), nn.Linear(64, 16), ALIF(), nn.Linear(16, 10), Integrator(), input_shape=(1, 8, 8))
    path = save_checkpoint(tmp_path / "alif.pt", model.eval(),
                           {"timesteps": 4, "encoder": "direct", "readout": "membrane_mean"})
    result = _snn_energy(["--snn", str(path), "--profile", "loihi,cmos45", "--samples", "4", "--json"])
    loihi = result["profiles"]["loihi"]
    assert "ALIF" in loihi["not_compiled"] and loihi["latency_per_inference_s"] is None
    assert "tile_hops" in {u.get("term") for u in loihi["snn"]["unpriced"]} and "loihi_band" not in result
    with pytest.raises(SpikeforgeError, match=r"'loihi-calibrated' prices the network compiled for Loihi, which "
                                              r"failed: layer 2 \(ALIF\) cannot run on Loihi 2"):
        _snn_energy(["--snn", str(path), "--profile", "loihi-calibrated", "--samples", "4", "--json"])
