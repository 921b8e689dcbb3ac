"""Surrogate-gradient training (BPTT) of spiking classifiers.

:func:`fit` runs Adam with a per-step cosine learning-rate schedule and gradient-norm
clipping, evaluates on a validation loader after every epoch, keeps the best model (by
validation accuracy, ties broken by the lower validation loss) in memory and, when asked,
in an atomically written checkpoint, and stops early after ``patience`` epochs without
improvement. Runs are seeded and deterministic on CPU; CUDA is used when available.

The loss back-propagates through the unrolled time loop (BPTT); the spike nonlinearity
uses the layers' surrogate gradients.
"""

from __future__ import annotations

import copy
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from snn import encoders, losses
from snn.checkpoint import load_checkpoint, save_checkpoint
from snn.errors import SpikeforgeError
from snn.network import Sequential
from snn.neurons import Integrator
from snn.validation import check_timesteps

ENCODERS = ("direct", "rate", "rows", "frames")
READOUTS = ("membrane_mean", "membrane_max", "membrane_last", "count")


@dataclass(frozen=True)
class Task:
    """How a static sample becomes a spike-time input, and how outputs become classes.

    ``encoder``: ``direct`` (x repeated over T, current injection), ``rate``
    (Bernoulli spikes), ``rows`` (an image's rows one after another, a temporal task) or
    ``frames`` (the sample is already a sequence ``[T, ...]``, e.g. binned events: step t is frame t).
    ``readout``: ``membrane_*`` for an :class:`Integrator` output (cross-entropy of its mean /
    max / last membrane) or ``count`` (cross-entropy of spike counts of a spiking output layer).
    """

    timesteps: int
    encoder: str = "direct"
    readout: str = "membrane_mean"

    def __post_init__(self) -> None:
        check_timesteps(self.timesteps)
        if self.encoder not in ENCODERS:
            raise SpikeforgeError(f"unknown encoder {self.encoder!r}; choose one of {', '.join(ENCODERS)}")
        if self.readout not in READOUTS:
            raise SpikeforgeError(f"unknown readout {self.readout!r}; choose one of {', '.join(READOUTS)}")

    @classmethod
    def for_model(cls, model: Sequential, timesteps: int, encoder: str = "direct") -> "Task":
        """Pick the readout from the model's last neuron layer (integrator or spiking)."""
        neurons = [m for _, m in model.neuron_layers()]
        readout = "membrane_mean" if neurons and isinstance(neurons[-1], Integrator) else "count"
        return cls(timesteps, encoder, readout)

    def step_shape(self, sample_shape: Sequence[int]) -> tuple[int, ...]:
        """The feature shape of one step of an encoded sample: the sample's own, one row (``C * W``),
        or one frame (``sample_shape[1:]``; the sample's T must be the task's, else an error)."""
        shape = tuple(int(d) for d in sample_shape)
        if self.encoder == "rows":
            return (shape[0] * shape[-1] if len(shape) == 3 else shape[-1],)
        if self.encoder == "frames":
            if len(shape) < 2:
                raise SpikeforgeError(f"the frames encoder reads samples that are sequences [T, ...], got {shape}; "
                                      "use an event dataset (nmnist, dvs-gesture, shd) or another encoder")
            if shape[0] != self.timesteps:
                raise SpikeforgeError(f"the data holds {shape[0]} time bins per sample but the task runs "
                                      f"{self.timesteps} steps; bin the events to {self.timesteps} frames "
                                      f"(--time-bins {self.timesteps}) or run --timesteps {shape[0]}")
            return shape[1:]
        return shape

    def encode(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.encoder == "rate":
            return encoders.rate(x, self.timesteps, generator=generator)
        if self.encoder == "rows":
            return encoders.rows(x, self.timesteps)
        if self.encoder == "frames":
            return encoders.frames(x, self.timesteps)
        return encoders.direct(x, self.timesteps)

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.readout == "count":
            return losses.spike_count_cross_entropy(output, target)
        return losses.membrane_cross_entropy(output, target, reduction=self.readout.removeprefix("membrane_"))

    def predict(self, output: torch.Tensor) -> torch.Tensor:
        return losses.predict(output, kind=self.readout)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_trained(path: str | Path) -> tuple[Sequential, Task]:
    """The network (in eval mode) and task of a checkpoint written by ``snn train``."""
    checkpoint = load_checkpoint(path)
    if "timesteps" not in checkpoint.task:
        raise SpikeforgeError(f"checkpoint {path} has no task settings (timesteps); re-create it with 'snn train'")
    return checkpoint.model.eval(), Task(**checkpoint.task)


@dataclass
class FitConfig:
    """Optimisation settings; the defaults train the digits networks well."""

    epochs: int = 30
    lr: float = 2e-3
    weight_decay: float = 1e-4
    clip_grad_norm: float | None = 1.0
    seed: int = 0
    patience: int | None = None
    device: str | None = None
    progress: bool | None = None  # None: a bar only when stderr is a terminal

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise SpikeforgeError(f"epochs must be at least 1, got {self.epochs}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise SpikeforgeError(f"learning rate must be positive, got {self.lr}")
        if self.patience is not None and self.patience < 1:
            raise SpikeforgeError(f"patience must be at least 1 epoch, got {self.patience}")


@dataclass
class FitResult:
    history: list[dict[str, float]]
    best_epoch: int
    best_val_accuracy: float
    train_seconds: float
    stopped_early: bool
    checkpoint: Path | None = None
    device: str = "cpu"
    extra: dict[str, Any] = field(default_factory=dict)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) and ask cuDNN for determinism."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def resolve_device(device: str | None = None) -> torch.device:
    """``None`` picks CUDA when available, else CPU; an unavailable device is an error."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise SpikeforgeError(f"device {device!r} requested but CUDA is not available; use --device cpu")
    return resolved


@torch.no_grad()
def evaluate(model: nn.Module, task: Task, loader: DataLoader, device: torch.device | str = "cpu") -> float:
    """Classification accuracy of ``model`` over ``loader`` (in [0, 1])."""
    return evaluate_with_loss(model, task, loader, device)[0]


def evaluate_with_loss(model: nn.Module, task: Task, loader: DataLoader,
                       device: torch.device | str = "cpu") -> tuple[float, float]:
    """``(accuracy in [0, 1], mean task loss per sample)`` of ``model`` over ``loader``."""
    model.eval()
    correct = total = 0
    loss_sum = 0.0
    generator = torch.Generator(device="cpu").manual_seed(0)
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        out = model(task.encode(x, generator if x.device.type == "cpu" else None))
        correct += (task.predict(out) == y).sum().item()
        loss_sum += float(task.loss(out, y).detach()) * y.numel()
        total += y.numel()
    if total == 0:
        raise SpikeforgeError("evaluation loader is empty; give it at least one sample")
    return correct / total, loss_sum / total


def _train_epoch(model: nn.Module, task: Task, loader: DataLoader, optimizer: torch.optim.Optimizer,
                 scheduler: torch.optim.lr_scheduler.LRScheduler, config: FitConfig, device: torch.device,
                 generator: torch.Generator) -> tuple[float, float]:
    model.train()
    loss_sum = correct = total = 0.0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        out = model(task.encode(x, generator if device.type == "cpu" else None))
        loss = task.loss(out, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.clip_grad_norm is not None:
            nn.utils.clip_grad_norm_(model.parameters(), config.clip_grad_norm)
        optimizer.step()
        scheduler.step()
        loss_sum += loss.item() * y.numel()
        correct += (task.predict(out.detach()) == y).sum().item()
        total += y.numel()
    return loss_sum / total, correct / total


def fit(model: Sequential, task: Task, train_loader: DataLoader, val_loader: DataLoader,
        config: FitConfig | None = None, checkpoint: str | Path | None = None,
        meta: dict[str, Any] | None = None) -> FitResult:
    """Train ``model`` in place; on return it holds the best weights (by validation accuracy; among
    epochs of equal accuracy, the lower validation loss: a saturated validation accuracy, as when
    fine-tuning a converted network, still tells epochs apart).

    ``history`` has one entry per epoch: ``epoch``, ``train_loss``, ``train_accuracy``,
    ``val_accuracy``, ``val_loss``, ``lr``. With ``checkpoint``, the best model is written there
    atomically each time it improves (see :mod:`snn.checkpoint`).
    """
    config = config or FitConfig()
    if len(train_loader) == 0:
        raise SpikeforgeError("training loader is empty; give it at least one batch")
    seed_everything(config.seed)
    device = resolve_device(config.device)
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs * len(train_loader))
    generator = torch.Generator().manual_seed(config.seed)

    history: list[dict[str, float]] = []
    best_accuracy, best_loss, best_epoch, best_state = -1.0, math.inf, 0, None
    stopped_early = False
    start = time.perf_counter()
    disable = None if config.progress is None else not config.progress
    bar = tqdm(range(1, config.epochs + 1), desc="training", unit="epoch", disable=disable, leave=False)
    for epoch in bar:
        lr = optimizer.param_groups[0]["lr"]
        train_loss, train_accuracy = _train_epoch(model, task, train_loader, optimizer, scheduler, config,
                                                  device, generator)
        if not math.isfinite(train_loss):
            raise SpikeforgeError(f"training diverged at epoch {epoch} (loss {train_loss}); lower --lr")
        val_accuracy, val_loss = evaluate_with_loss(model, task, val_loader, device)
        history.append({"epoch": epoch, "train_loss": train_loss, "train_accuracy": train_accuracy,
                        "val_accuracy": val_accuracy, "val_loss": val_loss, "lr": lr})
        bar.set_postfix(loss=f"{train_loss:.3f}", train=f"{train_accuracy:.3f}", val=f"{val_accuracy:.3f}")
        if val_accuracy > best_accuracy or (val_accuracy == best_accuracy and val_loss < best_loss):
            best_accuracy, best_loss, best_epoch = val_accuracy, val_loss, epoch
            best_state = copy.deepcopy(model.state_dict())
            if checkpoint is not None:
                save_checkpoint(checkpoint, model, task.as_dict(),
                                {**(meta or {}), "epoch": epoch, "val_accuracy": val_accuracy})
        elif config.patience is not None and epoch - best_epoch >= config.patience:
            stopped_early = True
            break
    bar.close()
    seconds = time.perf_counter() - start
    if best_state is not None:
        model.load_state_dict(best_state)
    return FitResult(history, best_epoch, best_accuracy, seconds, stopped_early,
                     None if checkpoint is None else Path(checkpoint), device.type)
