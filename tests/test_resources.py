"""Resource bounds (issue 21, item 2): epochs and timesteps are bounded, and a run whose memory
cannot fit is refused before it allocates, with the figure and the option that lowers it."""

from __future__ import annotations

import argparse

import pytest
import torch

from converters.pipeline import parse_timesteps
from snn.app.cli import main
from snn.errors import SpikeforgeError
from snn.models import build_model
from snn.resources import MEMORY_ENV, activations_per_step, bounded_int, check_fits, estimate_bytes, inference_batch
from snn.validation import check_timesteps


def one_error_line(capsys, *args: str) -> str:
    try:
        code = main(list(args))
    except SystemExit as exit_:  # argparse refuses while parsing
        code = exit_.code
    err = capsys.readouterr().err
    assert code != 0 and "Traceback" not in err
    return err


@pytest.mark.parametrize("option, value, expected", [
    ("--timesteps", "100000", "at most 10,000"),
    ("--epochs", "10000000000", "at most 100,000"),
    ("--epochs", "1e10", "not an integer"),
    ("--timesteps", "0", "at least 1"),
])
def test_train_bounds_epochs_and_timesteps_while_parsing(tmp_path, capsys, option, value, expected) -> None:
    err = one_error_line(capsys, "train", "--dataset", "digits", option, value, "--out", str(tmp_path / "o"))
    assert expected in err
    assert not (tmp_path / "o").exists()


def test_convert_bounds_its_timesteps(tmp_path, capsys) -> None:
    err = one_error_line(capsys, "convert", "--ann", "converters.reference_models:digits_cnn", "--timesteps",
                         "4,100000", "--out", str(tmp_path / "o"))
    assert "above the limit of 10,000" in err


def test_a_run_that_cannot_fit_is_refused_with_its_figure(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv(MEMORY_ENV, "0.01")
    err = one_error_line(capsys, "train", "--dataset", "digits", "--arch", "cnn", "--timesteps", "64",
                         "--batch-size", "512", "--out", str(tmp_path / "o"))
    assert "GiB for T=64, batch 512" in err and "lower --timesteps or --batch-size" in err
    assert not (tmp_path / "o" / "model.pt").exists()


def test_the_estimate_grows_with_t_and_batch_and_counts_every_layer() -> None:
    model = build_model("mlp", (1, 8, 8), 10, "lif")
    counts = activations_per_step(model, (1, 8, 8))
    assert counts.input == 64 and counts.total >= counts.largest >= 10
    small = estimate_bytes(counts, 4, 8, training=True)
    assert estimate_bytes(counts, 8, 8, training=True) == pytest.approx(2 * small, rel=1e-6)
    assert estimate_bytes(counts, 4, 16, training=True) == pytest.approx(2 * small, rel=1e-6)
    assert estimate_bytes(counts, 4, 8, training=False) < small


def test_inference_lowers_the_batch_instead_of_failing(monkeypatch) -> None:
    model = build_model("cnn", (1, 8, 8), 10, "lif")
    assert inference_batch(model, (1, 8, 8), 8, 256) == 256
    monkeypatch.setenv(MEMORY_ENV, str(2 * estimate_bytes(activations_per_step(model, (1, 8, 8)), 8, 10,
                                                          training=False) / 2**30))
    assert 1 <= inference_batch(model, (1, 8, 8), 8, 256) <= 10
    monkeypatch.setenv(MEMORY_ENV, "1e-9")
    with pytest.raises(SpikeforgeError, match="per sample at T=8"):
        inference_batch(model, (1, 8, 8), 8, 256)
    with pytest.raises(SpikeforgeError, match="lower --timesteps or --batch-size"):
        check_fits(model, (1, 8, 8), 8, 32)


def test_a_bad_memory_cap_is_named(monkeypatch) -> None:
    monkeypatch.setenv(MEMORY_ENV, "lots")
    with pytest.raises(SpikeforgeError, match=MEMORY_ENV):
        check_fits(build_model("mlp", (1, 8, 8), 10, "lif"), (1, 8, 8), 2, 2)


def test_library_bounds() -> None:
    with pytest.raises(SpikeforgeError, match="above the limit"):
        parse_timesteps("4,10001")
    assert parse_timesteps("10000,2") == [2, 10_000]
    assert check_timesteps(20_000) == 20_000  # the library's own statistical tests run long trains
    parse = bounded_int(1, 5)
    assert parse("5") == 5
    with pytest.raises(argparse.ArgumentTypeError, match="at most 5"):
        parse("6")
    assert torch.zeros(1).numel() == 1


@pytest.mark.parametrize("count", [0, 3])
def test_a_tiny_idx_training_set_is_one_error_not_a_scikit_learn_traceback(tmp_path, capsys, count) -> None:
    import numpy as np

    from snn.data import IDX_FILES
    from snn.dataset_files import write_idx

    rng = np.random.default_rng(0)
    arrays = {"train_images": rng.integers(0, 255, (count, 28, 28), dtype=np.uint8),
              "train_labels": np.arange(count, dtype=np.uint8) % 10,
              "test_images": rng.integers(0, 255, (4, 28, 28), dtype=np.uint8),
              "test_labels": np.arange(4, dtype=np.uint8)}
    for key, name in IDX_FILES.items():
        write_idx(tmp_path / name, arrays[key])
    err = one_error_line(capsys, "train", "--dataset", "mnist", "--data-dir", str(tmp_path), "--arch", "mlp",
                         "--epochs", "1", "--out", str(tmp_path / "o"))
    assert err.count("\n") == 1 and "ValueError" not in err and ("training set" in err or "no" in err)
