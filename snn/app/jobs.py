"""End-to-end jobs behind the CLI: train a spiking classifier, evaluate a checkpoint.

Inputs are checked before anything is written, so bad input leaves no output behind;
every file is written atomically.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from sklearn.model_selection import train_test_split

from snn import data, plots
from snn.app.distributed import DistContext, group_size, run_data_parallel
from snn.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from snn.errors import SpikeforgeError, warn
from snn.fileio import write_json
from snn.models import build_model
from snn.resources import activations_per_step, check_fits, inference_batch
from snn.splits import resolve_split, split_record
from snn.training import FitConfig, Task, evaluate, fit, load_trained_with_meta, resolve_device, seed_everything
from snn.validation import check_timesteps


@dataclass
class TrainSettings:
    """Everything ``snn train`` needs; defaults train the digits CNN to >= 98%."""

    dataset: str = "digits"
    arch: str = "cnn"
    neuron: str = "lif"
    timesteps: int = 8
    epochs: int = 30
    batch_size: int = 32
    lr: float | None = None  # None: LR, or FINE_TUNE_LR when starting from ``init``
    seed: int | None = None  # None: 0, or when fine-tuning (``init``) the seed of the starting network's split
    patience: int | None = None
    device: str | None = None
    encoder: str = "direct"
    val_fraction: float = 0.1
    data_dir: str | None = None
    progress: bool | None = None
    nproc: int = 1  # data-parallel worker processes (DDP); batch_size is the global batch
    init: str | None = None  # a checkpoint to start from (snn train's or snn convert's): fine-tuning
    time_bins: int | None = None  # event datasets: frames per recording (None: T with the frames encoder)
    downsample: int = 1  # event datasets: the sensor's sides divided by this
    image_size: int = data.DEFAULT_IMAGE_SIZE  # imagefolder: the centre crop's side
    clip_grad: float = 1.0  # gradients' total L2 norm clipped to this (0: no clipping)


LR = 2e-3
FINE_TUNE_LR = 1e-4  # a converted or trained network is near a good minimum: small steps (hybrid conversion)


def holdout(x: torch.Tensor, y: torch.Tensor, fraction: float, seed: int):
    """Stratified split of the training set into (train, validation) for model selection."""
    if not 0 < fraction < 1:
        raise SpikeforgeError(f"validation fraction must lie in (0, 1), got {fraction}")
    if len(y) == 0:
        raise SpikeforgeError("the training set is empty; give the dataset's training files with their samples")
    counts = torch.bincount(y.reshape(-1).long())
    present = counts[counts > 0]
    n_val = math.ceil(fraction * len(y))
    if int(present.min()) < 2 or n_val < len(present) or len(y) - n_val < len(present):
        raise SpikeforgeError(f"the training set has {len(y)} samples over {len(present)} classes, the rarest class "
                              f"has {int(present.min())}: too few "
                              f"for a stratified validation split of {fraction:g} (it needs at least 2 samples per "
                              f"class and {len(present)} on each side); give a training set of at least "
                              f"{max(2 * len(present), math.ceil(len(present) / min(fraction, 1 - fraction)))} "
                              "samples")
    index = torch.arange(len(y)).numpy()
    try:
        train_idx, val_idx = train_test_split(index, test_size=fraction, stratify=y.numpy(), random_state=seed)
    except ValueError as error:
        raise SpikeforgeError(f"cannot hold out a stratified validation split of {fraction:g} from {len(y)} "
                              f"training samples ({error}); give more training samples") from error
    return (x[train_idx], y[train_idx]), (x[val_idx], y[val_idx])


def train_classifier(settings: TrainSettings, out_dir: str | Path,
                     distributed: DistContext | None = None) -> dict[str, Any]:
    """Train, select on a validation split, test once; write checkpoint, curves and results.

    Writes ``model.pt``, ``training_curves.png`` and ``train.json`` into ``out_dir`` and
    returns the results dictionary (``test_accuracy``, ``timesteps``, ``epochs``, ...).
    With ``settings.nproc > 1``, or under ``torchrun`` with more than one process, the work
    runs data-parallel: :func:`snn.app.distributed.run_data_parallel` calls this function in
    every process with ``distributed``, that process's place in the group; rank 0 writes the
    files and returns the results, the other ranks return ``{}``.
    """
    check_timesteps(settings.timesteps)
    if settings.batch_size < 1:
        raise SpikeforgeError(f"batch size must be at least 1, got {settings.batch_size}")
    if settings.nproc < 1:
        raise SpikeforgeError(f"nproc must be at least 1, got {settings.nproc}")
    processes = group_size(settings.nproc)
    if processes > 1 and distributed is None:
        if settings.batch_size < processes:
            raise SpikeforgeError(f"global batch size {settings.batch_size} is smaller than --nproc "
                                  f"{processes}; raise --batch-size")
        return run_data_parallel(train_classifier, (settings, str(out_dir)), processes, settings.device)
    if distributed is not None:
        settings = replace(settings, device=str(distributed.device))
    start = load_checkpoint(settings.init) if settings.init else None  # read (and checked) once
    if settings.seed is None:
        settings = replace(settings, seed=_default_seed(settings, start))
    lr = settings.lr if settings.lr is not None else (FINE_TUNE_LR if settings.init else LR)
    config = FitConfig(epochs=settings.epochs, lr=lr, seed=settings.seed, patience=settings.patience,
                       device=settings.device, progress=settings.progress,
                       clip_grad_norm=settings.clip_grad if settings.clip_grad else None)
    target = resolve_device(settings.device)
    time_bins = data.time_bins_for(settings.dataset, settings.time_bins, settings.encoder, settings.timesteps)
    split = data.load_dataset(settings.dataset, settings.data_dir, seed=settings.seed, time_bins=time_bins,
                              downsample=settings.downsample, image_size=settings.image_size)
    seed_everything(settings.seed)
    model, task = _starting_point(settings, split, start)
    step = task.step_shape(split.input_shape)
    counts = activations_per_step(model, step)  # one run of the network serves both estimates
    check_fits(model, step, settings.timesteps, settings.batch_size, target, activations=counts)
    (x_train, y_train), (x_val, y_val) = holdout(split.x_train, split.y_train, settings.val_fraction, settings.seed)
    test_batch = inference_batch(model, step, settings.timesteps, 256, target, activations=counts)
    test_loader = data.tensor_loader(split.x_test, split.y_test, test_batch, seed=settings.seed)
    before = evaluate(model, task, test_loader, target) if settings.init else None

    out = Path(out_dir)
    checkpoint = out / "model.pt"
    meta = {"settings": asdict(settings), "dataset": settings.dataset,
            "split": split_record(settings.dataset, settings.seed, len(split.y_train), len(split.y_test),
                                  settings.val_fraction, time_bins)}
    train_loader = data.tensor_loader(x_train, y_train, settings.batch_size, shuffle=True, seed=settings.seed)
    val_loader = data.tensor_loader(x_val, y_val, test_batch, seed=settings.seed)
    if distributed is None:
        result = fit(model, task, train_loader, val_loader, config, checkpoint, meta)
    else:  # every rank sees the same validation accuracy, so all stop at the same epoch
        result = fit(distributed.wrap(model), task, distributed.shard(train_loader), val_loader, config, None, meta)
        if not distributed.is_main:
            return {}
        save_checkpoint(checkpoint, model, task.as_dict(),
                        {**meta, "epoch": result.best_epoch, "val_accuracy": result.best_val_accuracy,
                         "nproc": distributed.world_size})
    test_accuracy = evaluate(model, task, test_loader, result.device)
    curves = plots.plot_training_curves(result.history, out / "training_curves.png",
                                        title=(f"{settings.init} fine-tuned" if settings.init else
                                               f"{settings.arch} / {settings.neuron}") + f", T={settings.timesteps}")
    results = {
        "test_accuracy": test_accuracy, "val_accuracy": result.best_val_accuracy, "best_epoch": result.best_epoch,
        "timesteps": settings.timesteps, "epochs": len(result.history), "stopped_early": result.stopped_early,
        "parameters": sum(p.numel() for p in model.parameters()), "train_seconds": result.train_seconds,
        "checkpoint": str(checkpoint), "training_curves": str(curves), "device": result.device,
        "dataset": settings.dataset, "arch": settings.arch, "neuron": settings.neuron,
        "train_samples": len(y_train), "val_samples": len(y_val), "test_samples": len(split.y_test),
        "lr": lr, "history": result.history, "split": meta["split"], "warnings": list(result.warnings),
    }
    for message in result.warnings:
        warn(message)
    if settings.init:
        results.update({"init": settings.init, "test_accuracy_before": before, "arch": "init", "neuron": "init",
                        "readout": task.readout, "encoder": task.encoder})
    write_json(out / "train.json", results)
    return results


def _default_seed(settings: TrainSettings, start: Checkpoint | None) -> int:
    """0, or the seed of the split the network of ``settings.init`` (read as ``start``) was trained on (its test
    set stays unseen)."""
    if start is None:
        return 0
    return resolve_split(start.meta, f"checkpoint {settings.init}", settings.dataset, None).seed


def _starting_point(settings: TrainSettings, split: data.DatasetSplit, start: Checkpoint | None):
    """``(model, task)``: a fresh ``settings.arch`` network, or the network of ``settings.init`` (any
    spikeforge checkpoint, a converted network included) read with its own encoder and readout at
    ``settings.timesteps``."""
    if start is None:
        step = Task(settings.timesteps, settings.encoder).step_shape(split.input_shape)
        model = build_model(settings.arch, step, split.num_classes, settings.neuron)
        return model, Task.for_model(model, settings.timesteps, settings.encoder)
    task = Task(settings.timesteps, start.task.get("encoder", settings.encoder),
                start.task.get("readout") or Task.for_model(start.model, settings.timesteps).readout)
    data.check_input_shape(start.model.input_shape, split, task.step_shape(split.input_shape))
    return start.model, task


def evaluate_checkpoint(path: str | Path, dataset: str = "digits", data_dir: str | None = None,
                        device: str | None = None, seed: int | None = None, time_bins: int | None = None,
                        downsample: int = 1, image_size: int = data.DEFAULT_IMAGE_SIZE) -> dict[str, Any]:
    """Test accuracy of a saved model on the test split it was trained with (:func:`snn.data.load_model_split`:
    ``seed=None`` is the model's seed; an event dataset is binned as the model was trained, or to
    ``time_bins``)."""
    model, task, meta = load_trained_with_meta(path)
    split, choice = data.load_model_split(meta, f"checkpoint {path}", dataset, data_dir, seed, task.encoder,
                                          task.timesteps, time_bins=time_bins, downsample=downsample,
                                          image_size=image_size)
    step = task.step_shape(split.input_shape)
    data.check_input_shape(model.input_shape, split, step)
    target = resolve_device(device)
    model.to(target)
    batch = inference_batch(model, step, task.timesteps, 256, target)
    accuracy = evaluate(model, task, data.tensor_loader(split.x_test, split.y_test, batch, seed=choice.seed), target)
    return {"test_accuracy": accuracy, "timesteps": task.timesteps, "dataset": dataset,
            "samples": len(split.y_test), "checkpoint": str(path),
            "split": {"dataset": dataset, "seed": choice.seed, "model_split": choice.record},
            "warnings": list(choice.warnings)}
