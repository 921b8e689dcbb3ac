"""Plain supervised training of the ANN that conversion starts from.

Adam with a per-step cosine schedule and cross-entropy; seeded and deterministic on CPU
(the same conventions as :func:`snn.training.fit`). Returns the per-epoch history.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from converters.convert import ann_accuracy
from snn.errors import SpikeforgeError
from snn.training import seed_everything


def train_ann(model: nn.Module, train_loader: DataLoader, val_loader: DataLoader | None = None, epochs: int = 30,
              lr: float = 2e-3, weight_decay: float = 1e-4, seed: int = 0, device: torch.device | str = "cpu",
              progress: bool | None = None) -> list[dict[str, float]]:
    """Train ``model`` in place; history entries hold ``epoch``, ``train_loss``, ``val_accuracy``."""
    if epochs < 1 or len(train_loader) == 0:
        raise SpikeforgeError("ANN training needs at least one epoch and a non-empty training loader")
    seed_everything(seed)
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * len(train_loader))
    history = []
    bar = tqdm(range(1, epochs + 1), desc="ANN training", unit="epoch", leave=False,
               disable=None if progress is None else not progress)
    for epoch in bar:
        model.train()
        total = 0.0
        for x, y in train_loader:
            loss = F.cross_entropy(model(x.to(device)), y.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(y)
        entry = {"epoch": epoch, "train_loss": total / len(train_loader.dataset)}
        if val_loader is not None:
            entry["val_accuracy"] = ann_accuracy(model, val_loader, device)
        history.append(entry)
        bar.set_postfix(loss=f"{entry['train_loss']:.3f}")
    model.eval()
    return history
