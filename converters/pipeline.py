"""The conversion jobs behind ``snn convert`` and the demo's conversion stage."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader

from converters.ann_training import train_ann
from converters.convert import accuracy_by_timesteps, ann_accuracy, convert
from converters.factory import build_ann
from converters.plots import plot_accuracy_vs_timesteps
from converters.qcfs import swap_relu_for_qcfs
from converters.reference_models import digits_cnn
from converters.storage import save_converted
from snn import data
from snn.errors import SpikeforgeError
from snn.fileio import atomic_path, write_json
from snn.names import MAX_TIMESTEPS
from snn.splits import split_record
from snn.training import resolve_device, seed_everything
from snn.validation import check_timesteps

DEFAULT_TIMESTEPS = (1, 2, 4, 8, 16, 32, 64)


def parse_timesteps(text: str) -> list[int]:
    """``"1,2,4"`` -> ``[1, 2, 4]``; each must be a positive integer."""
    try:
        steps = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise SpikeforgeError(f"--timesteps {text!r} must be a comma-separated list of integers, "
                              "e.g. 1,2,4,8") from None
    if not steps:
        raise SpikeforgeError("--timesteps is empty; give e.g. 1,2,4,8")
    if max(steps) > MAX_TIMESTEPS:
        raise SpikeforgeError(f"--timesteps {max(steps):,} is above the limit of {MAX_TIMESTEPS:,} steps per "
                              "sample; lower --timesteps")
    return sorted({check_timesteps(t) for t in steps})


def limit_samples(split: data.DatasetSplit, calibration: int | None, test: int | None) -> data.DatasetSplit:
    """``split`` with its first ``calibration`` training and first ``test`` test samples (``None``: all)."""
    for name, value in (("--calibration-samples", calibration), ("--test-samples", test)):
        if value is not None and value < 1:
            raise SpikeforgeError(f"{name} must be at least 1, got {value}")
    return dataclasses.replace(split, x_train=split.x_train[:calibration], y_train=split.y_train[:calibration],
                               x_test=split.x_test[:test], y_test=split.y_test[:test])


def loaders(split: data.DatasetSplit, batch_size: int = 256) -> tuple[DataLoader, DataLoader]:
    """(calibration = training images, test) loaders, unshuffled."""
    return (data.tensor_loader(split.x_train, split.y_train, batch_size),
            data.tensor_loader(split.x_test, split.y_test, batch_size))


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
                     channelwise: bool, device: torch.device) -> tuple[nn.Module, dict[int, float]]:
    calibration, test = loaders(split)
    snn_model = convert(model, calibration, percentile=percentile, channelwise=channelwise, device=device)
    return snn_model, accuracy_by_timesteps(snn_model, test, timesteps, device)


def run_conversion(ann: str, weights: str | Path | None, out_dir: str | Path, dataset: str = "digits",
                   timesteps: Sequence[int] = DEFAULT_TIMESTEPS, percentile: float = 99.9, channelwise: bool = True,
                   data_dir: str | None = None, device: str | None = None, seed: int | None = None,
                   data_options: dict[str, Any] | None = None, calibration_samples: int | None = None,
                   test_samples: int | None = None) -> dict[str, Any]:
    """Convert ``ann`` (factory name) with ``weights``; write ``snn.pt``, the plot and ``convert.json``.

    ``data_options`` are further keyword arguments of :func:`snn.data.load_dataset` (``image_size``, ...).
    ``calibration_samples`` and ``test_samples`` keep the first so many training (threshold
    calibration) and test samples (default: all). The split (dataset, seed, sizes) is stored in
    ``snn.pt`` so that every later verb tests on the same split.
    """
    target = resolve_device(device)
    seed = 0 if seed is None else seed
    split = limit_samples(data.load_dataset(dataset, data_dir, seed=seed, **(data_options or {})),
                          calibration_samples, test_samples)
    model = build_ann(ann, weights)
    check_fits(model, split, ann)
    _, test = loaders(split)
    reference = ann_accuracy(model, test, target)
    snn_model, curve = conversion_curve(model, split, timesteps, percentile, channelwise, target)
    out = Path(out_dir)
    record = split_record(dataset, seed, len(split.y_train), len(split.y_test),
                          time_bins=(data_options or {}).get("time_bins"), calibration_samples=len(split.y_train))
    meta = {"dataset": dataset, "ann": ann, "ann_accuracy": reference, "percentile": percentile,
            "channelwise": channelwise, "snn_accuracy": {str(t): a for t, a in curve.items()}, "split": record}
    snn_path = save_converted(out / "snn.pt", snn_model.cpu(), max(curve), meta)
    plot = plot_accuracy_vs_timesteps({"SNN": curve}, out / "accuracy_vs_timesteps.png", reference)
    results = {"ann_accuracy": reference, "snn_accuracy": {str(t): a for t, a in curve.items()},
               "snn_path": str(snn_path), "plot": str(plot), "dataset": dataset, "ann": ann,
               "percentile": percentile, "channelwise": channelwise, "device": target.type,
               "calibration_samples": len(split.y_train), "test_samples": len(split.y_test), "split": record}
    write_json(out / "convert.json", results)
    return results


def demo_conversion(out: Path, device: str | None = None,
                    log: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """The demo's conversion: the digits CNN trained as an ANN, converted at :data:`DEFAULT_TIMESTEPS`,
    then fine-tuned with QCFS (L = 4) and converted again.

    Writes ``ann.pt``, ``snn.pt`` (the ReLU conversion) and ``conversion.png`` into ``out``;
    returns both ANN accuracies and both accuracy curves (keyed by T as text) with the paths.
    """
    target = resolve_device(device)
    split = data.load_digits_split()
    train = data.tensor_loader(split.x_train, split.y_train, 32, shuffle=True, seed=0)
    _, test = loaders(split)
    seed_everything(0)
    ann = digits_cnn()
    log("training the digits CNN as an ANN")
    train_ann(ann, train, epochs=30, device=target)
    with atomic_path(out / "ann.pt") as tmp:
        torch.save(ann.state_dict(), tmp)
    reference = ann_accuracy(ann, test, target)
    log("converting it (ReLU, 99.9th percentile, channel-wise)")
    snn_relu, relu_curve = conversion_curve(ann, split, DEFAULT_TIMESTEPS, 99.9, True, target)
    save_converted(out / "snn.pt", snn_relu.cpu(), max(relu_curve), {"dataset": "digits",
                                                                     "ann": "converters.reference_models:digits_cnn"})
    log("fine-tuning with QCFS (L = 4) and converting again")
    qcfs_ann = swap_relu_for_qcfs(copy.deepcopy(ann), levels=4)
    train_ann(qcfs_ann, train, epochs=10, lr=5e-4, device=target)
    qcfs_reference = ann_accuracy(qcfs_ann, test, target)
    _, qcfs_curve = conversion_curve(qcfs_ann, split, DEFAULT_TIMESTEPS, 99.9, True, target)
    plot = plot_accuracy_vs_timesteps({"SNN from ReLU ANN": relu_curve, "SNN from QCFS ANN (L=4)": qcfs_curve},
                                      out / "conversion.png", reference, title="digits CNN: accuracy vs timesteps")
    return {"ann_accuracy": reference, "qcfs_ann_accuracy": qcfs_reference,
            "snn_accuracy": {str(t): a for t, a in relu_curve.items()},
            "qcfs_snn_accuracy": {str(t): a for t, a in qcfs_curve.items()},
            "snn_path": str(out / "snn.pt"), "ann_weights": str(out / "ann.pt"), "plot": str(plot)}
