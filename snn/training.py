"""Surrogate-gradient training (BPTT) of spiking classifiers.

:func:`fit` runs Adam with a per-step cosine learning-rate schedule and gradient-norm
clipping, evaluates on a validation loader after every epoch, keeps the best model (by
validation accuracy, ties broken by the lower validation loss) in memory and, when asked,
in an atomically written checkpoint, and stops early after ``patience`` epochs without
improvement. Runs are seeded and deterministic on CPU; CUDA is used when available.

Divergence: a non-finite loss or gradient norm stops training with :class:`TrainingDiverged`
(the best model so far stays in memory and in the checkpoint); a loss that grows by
:data:`BLOWUP` or more over the chance-level loss ``ln C`` (or over an earlier epoch's), and a
validation accuracy that ends at chance (the most frequent class's share), are returned as
``FitResult.warnings``. The default gradient clipping (norm 1.0) keeps a too-large learning
rate's loss finite, so such a run ends in those warnings rather than in NaN.

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
from snn.resources import MAX_EPOCHS, check_bound
from snn.validation import NonFiniteError, check_timesteps

ENCODERS = ("direct", "rate", "rows", "frames")
READOUTS = ("membrane_mean", "membrane_max", "membrane_last", "count")
BLOWUP = 100.0  # a loss this many times the reference (chance level, or an earlier epoch's) is a divergence warning
CHANCE_MARGIN = 0.02  # a best validation accuracy within this of the majority-class share is "at chance"


class TrainingDiverged(SpikeforgeError):
    """The loss or the gradient became NaN or infinite; the last good checkpoint is kept."""

    kind = "divergence"
    keep_partial = True


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
    """The network (in eval mode) and task of a checkpoint written by ``snn train`` or ``snn convert``."""
    model, task, _ = load_trained_with_meta(path)
    return model, task


def load_trained_with_meta(path: str | Path) -> tuple[Sequential, Task, dict[str, Any]]:
    """:func:`load_trained` plus the checkpoint's ``meta`` (its data split: :func:`snn.splits.model_split`)."""
    checkpoint = load_checkpoint(path)
    if "timesteps" not in checkpoint.task:
        raise SpikeforgeError(f"checkpoint {path} has no task settings (timesteps); re-create it with 'snn train'")
    return checkpoint.model.eval(), Task(**checkpoint.task), checkpoint.meta


@dataclass
class FitConfig:
    """Optimisation settings; the defaults train the digits networks well."""

    epochs: int = 30
    lr: float = 2e-3
    weight_decay: float = 1e-4
    clip_grad_norm: float | None = 1.0  # the gradients' total L2 norm is scaled down to this; None: no clipping
    seed: int = 0
    patience: int | None = None
    device: str | None = None
    progress: bool | None = None  # None: a bar only when stderr is a terminal

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise SpikeforgeError(f"epochs must be at least 1, got {self.epochs}")
        check_bound("epochs", self.epochs, MAX_EPOCHS, "--epochs")
        if self.clip_grad_norm is not None and not (self.clip_grad_norm > 0 and math.isfinite(self.clip_grad_norm)):
            raise SpikeforgeError(f"gradient clipping norm must be positive and finite, got {self.clip_grad_norm}; "
                                  "use e.g. --clip-grad 1, or --clip-grad 0 for none")
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
    warnings: list[str] = field(default_factory=list)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) and ask cuDNN for determinism."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def resolve_device(device: str | None = None) -> torch.device:
    """``None`` picks CUDA when available, else CPU; a device this machine lacks (no CUDA, a CUDA index beyond
    its devices, no MPS) is an error."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise SpikeforgeError(f"device {device!r} requested but CUDA is not available; use --device cpu")
        count = torch.cuda.device_count()
        if resolved.index is not None and resolved.index >= count:
            raise SpikeforgeError(f"device {device!r} requested but this machine has {count} CUDA device(s), cuda:0 "
                                  f"to cuda:{count - 1}; name one of them or use --device cpu")
    elif resolved.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise SpikeforgeError(f"device {device!r} requested but MPS (Apple's GPU) is not available; use "
                                  "--device cpu")
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


class _Diverged(Exception):
    """A non-finite loss or gradient norm inside an epoch (``fit`` turns it into :class:`TrainingDiverged`)."""

    def __init__(self, batch: int, finding: str) -> None:
        super().__init__(f"{finding} at batch {batch}")


def _train_epoch(model: nn.Module, task: Task, loader: DataLoader, optimizer: torch.optim.Optimizer,
                 scheduler: torch.optim.lr_scheduler.LRScheduler, config: FitConfig, device: torch.device,
                 generator: torch.Generator) -> tuple[float, float, int]:
    """One pass over ``loader``: ``(mean loss, accuracy, classes of the output)``; raises :class:`_Diverged`
    before the step that a non-finite loss or gradient norm would poison the weights with."""
    model.train()
    loss_sum = correct = total = 0.0
    classes = 0
    for batch, (x, y) in enumerate(loader, start=1):
        x, y = x.to(device), y.to(device)
        try:
            out = model(task.encode(x, generator if device.type == "cpu" else None))
        except NonFiniteError as error:
            if not torch.isfinite(x).all():
                raise  # the data itself is bad: the neurons' message says so
            raise _Diverged(batch, f"the {str(error).split(';')[0]}") from None
        classes = int(out.shape[-1])
        loss = task.loss(out, y)
        if not torch.isfinite(loss.detach()):
            raise _Diverged(batch, f"the loss is {float(loss)}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.clip_grad_norm is not None:
            norm = nn.utils.clip_grad_norm_(model.parameters(), config.clip_grad_norm)
            if not torch.isfinite(norm):
                raise _Diverged(batch, f"the gradient norm is {float(norm)}")
        optimizer.step()
        scheduler.step()
        loss_sum += loss.item() * y.numel()
        correct += (task.predict(out.detach()) == y).sum().item()
        total += y.numel()
    return loss_sum / total, correct / total, classes


def chance_accuracy(loader: DataLoader) -> float:
    """The accuracy of always answering the most frequent label of ``loader`` (0 for an empty one)."""
    labels = torch.cat([y.reshape(-1).cpu() for _, y in loader]) if len(loader) else torch.zeros(0, dtype=torch.long)
    return float(torch.bincount(labels).max()) / len(labels) if len(labels) else 0.0


def loss_warning(epoch: int, loss: float, history: Sequence[dict[str, float]], classes: int) -> str | None:
    """A warning when ``loss`` is :data:`BLOWUP` times or more the reference: the chance-level loss ``ln C``
    (the cross-entropy of a uniform guess over ``C`` classes) or the lowest earlier epoch's."""
    chance = math.log(classes) if classes > 1 else 1.0
    earlier = min((h["train_loss"] for h in history), default=math.inf)
    reference, what = (earlier, f"the lowest earlier loss {earlier:.3g}") if earlier < chance else \
        (chance, f"chance level ln {classes} = {chance:.3g}")
    if loss >= BLOWUP * reference:
        return (f"the training loss is {loss:.3g} at epoch {epoch}, {loss / reference:.2g} times {what}: training "
                "is diverging; lower --lr or --clip-grad")
    return None


def _diverged(error: _Diverged, epoch: int, lr: float, best_epoch: int, best_accuracy: float,
              checkpoint: str | Path | None) -> TrainingDiverged:
    if best_epoch and checkpoint is not None:
        kept = f"the last good checkpoint (epoch {best_epoch}, validation accuracy {best_accuracy:.3f}) is kept in " \
               f"{checkpoint}"
    elif best_epoch:
        kept = f"the model holds the last good weights (epoch {best_epoch})"
    else:
        kept = "no epoch finished, so no checkpoint was written"
    return TrainingDiverged(f"training diverged at epoch {epoch}: {error}; {kept}; lower --lr (now {lr:g}) or "
                            "--clip-grad")


def fit(model: Sequential, task: Task, train_loader: DataLoader, val_loader: DataLoader,
        config: FitConfig | None = None, checkpoint: str | Path | None = None,
        meta: dict[str, Any] | None = None) -> FitResult:
    """Train ``model`` in place; on return it holds the best weights (by validation accuracy; among
    epochs of equal accuracy, the lower validation loss: a saturated validation accuracy, as when
    fine-tuning a converted network, still tells epochs apart).

    ``history`` has one entry per epoch: ``epoch``, ``train_loss``, ``train_accuracy``,
    ``val_accuracy``, ``val_loss``, ``lr``. With ``checkpoint``, the best model is written there
    atomically each time it improves (see :mod:`snn.checkpoint`). A non-finite loss or gradient
    raises :class:`TrainingDiverged` (the model and the checkpoint keep the best epoch so far);
    a diverging loss or a validation accuracy at chance ends in ``warnings``.
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
    warnings: list[str] = []
    best_accuracy, best_loss, best_epoch, best_state = -1.0, math.inf, 0, None
    stopped_early = False
    start = time.perf_counter()
    disable = None if config.progress is None else not config.progress
    bar = tqdm(range(1, config.epochs + 1), desc="training", unit="epoch", disable=disable, leave=False)
    for epoch in bar:
        lr = optimizer.param_groups[0]["lr"]
        try:
            train_loss, train_accuracy, classes = _train_epoch(model, task, train_loader, optimizer, scheduler,
                                                               config, device, generator)
        except _Diverged as error:
            bar.close()
            if best_state is not None:
                model.load_state_dict(best_state)
            raise _diverged(error, epoch, lr, best_epoch, best_accuracy, checkpoint) from None
        warning = loss_warning(epoch, train_loss, history, classes)
        if warning and not warnings:
            warnings.append(warning)
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
    chance = chance_accuracy(val_loader)
    if best_accuracy <= chance + CHANCE_MARGIN:
        warnings.append(f"the best validation accuracy {best_accuracy:.3f} is at chance (the most frequent class "
                        f"is {chance:.3f} of the validation set): the network learned nothing; check --lr, "
                        "--epochs and the data")
    return FitResult(history, best_epoch, best_accuracy, seconds, stopped_early,
                     None if checkpoint is None else Path(checkpoint), device.type, warnings=warnings)
