"""The conversion job behind ``snn convert`` and the demo's conversion stage."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from converters.convert import ConvertedSNN, accuracy_by_timesteps, ann_accuracy, convert
from converters.factory import build_ann
from converters.plots import plot_accuracy_vs_timesteps
from converters.storage import save_converted
from snn import data
from snn.errors import SpikeforgeError
from snn.fileio import write_json
from snn.training import resolve_device
from snn.validation import check_timesteps

DEFAULT_TIMESTEPS = (1, 2, 4, 8, 16, 32, 64)


def parse_timesteps(text: str) -> list[int]:
    """``"1,2,4"`` -> ``[1, 2, 4]``; each must be a positive integer."""
    try:
        steps = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise SpikeforgeError(f"--timesteps {text!r} must be a comma-separated list of integers, e.g. 1,2,4,8") from None
    if not steps:
        raise SpikeforgeError("--timesteps is empty; give e.g. 1,2,4,8")
    return sorted({check_timesteps(t) for t in steps})


def loaders(split: data.DatasetSplit, batch_size: int = 256) -> tuple[DataLoader, DataLoader]:
    """(calibration = training images, test) loaders, unshuffled."""
    return (DataLoader(TensorDataset(split.x_train, split.y_train), batch_size=batch_size),
            DataLoader(TensorDataset(split.x_test, split.y_test), batch_size=batch_size))


def check_fits(model: nn.Module, split: data.DatasetSplit, reference: str) -> None:
    try:
        with torch.no_grad():
            out = model.eval()(split.x_test[:2])
    except Exception as error:  # noqa: BLE001 - any failure here means the ANN does not fit the data
        raise SpikeforgeError(f"the ANN {reference} cannot run on {split.name} input {tuple(split.input_shape)}: "
                              f"{type(error).__name__}: {error}") from error
    if out.dim() != 2 or out.shape[1] != split.num_classes:
        raise SpikeforgeError(f"the ANN {reference} outputs shape {tuple(out.shape)}, but {split.name} needs "
                              f"[B, {split.num_classes}] class scores")


def conversion_curve(model: nn.Module, split: data.DatasetSplit, timesteps: Sequence[int], percentile: float,
                     channelwise: bool, device: torch.device) -> tuple[ConvertedSNN, dict[int, float]]:
    calibration, test = loaders(split)
    snn_model = convert(model, calibration, percentile=percentile, channelwise=channelwise, device=device)
    return snn_model, accuracy_by_timesteps(snn_model, test, timesteps, device)


def run_conversion(ann: str, weights: str | Path | None, out_dir: str | Path, dataset: str = "digits",
                   timesteps: Sequence[int] = DEFAULT_TIMESTEPS, percentile: float = 99.9, channelwise: bool = True,
                   data_dir: str | None = None, device: str | None = None, seed: int = 0) -> dict[str, Any]:
    """Convert ``ann`` (factory name) with ``weights``; write ``snn.pt``, the plot and ``convert.json``."""
    target = resolve_device(device)
    split = data.load_dataset(dataset, data_dir, seed=seed)
    model = build_ann(ann, weights)
    check_fits(model, split, ann)
    _, test = loaders(split)
    reference = ann_accuracy(model, test, target)
    snn_model, curve = conversion_curve(model, split, timesteps, percentile, channelwise, target)
    out = Path(out_dir)
    snn_path = save_converted(out / "snn.pt", snn_model, ann, {"dataset": dataset, "ann_accuracy": reference})
    plot = plot_accuracy_vs_timesteps({"SNN": curve}, out / "accuracy_vs_timesteps.png", reference)
    results = {"ann_accuracy": reference, "snn_accuracy": {str(t): a for t, a in curve.items()},
               "snn_path": str(snn_path), "plot": str(plot), "dataset": dataset, "ann": ann,
               "percentile": percentile, "channelwise": channelwise, "device": target.type}
    write_json(out / "convert.json", results)
    return results
