"""Multi-process data-parallel training on PyTorch's own engine (DDP; gloo on CPU, NCCL on GPU).

``snn train --nproc N`` starts N worker processes (or joins the group ``torchrun`` made,
when launched as ``torchrun --nproc-per-node N -m snn.cli train ...``). Every worker
builds the same model from the same seed and draws the same shuffled global batches; worker
r trains on the r-th contiguous slice of each global batch, and DDP averages the gradients.
With equal slices this is the single-process step on the global batch (``--batch-size``
is the global batch), up to the order of float summation; BatchNorm statistics are per
worker (DDP's default). Rank 0 evaluates, writes the checkpoint, curves and ``train.json``.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from snn.errors import SpikeforgeError


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in the group."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap(self, model: torch.nn.Module) -> DistributedDataParallel:
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model.to(self.device), device_ids=ids)

    def shard(self, loader) -> "ShardedLoader":
        return ShardedLoader(loader, self.rank, self.world_size)


class ShardedLoader:
    """Each global batch of ``loader`` cut into ``world_size`` contiguous slices; yields slice ``rank``."""

    def __init__(self, loader, rank: int, world_size: int) -> None:
        self.loader, self.rank, self.world_size = loader, rank, world_size

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator:
        for batch in self.loader:
            parts = [b.tensor_split(self.world_size) for b in batch]
            yield tuple(p[self.rank] for p in parts)


def backend_for(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launched_by_torchrun() -> bool:
    return "TORCHELASTIC_RUN_ID" in os.environ or ("LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ)


def _device_for(requested: str | None, local_rank: int) -> torch.device:
    wants_cuda = requested is None and torch.cuda.is_available() or (requested or "").startswith("cuda")
    if wants_cuda:
        if not torch.cuda.is_available():
            raise SpikeforgeError(f"device {requested!r} requested but CUDA is not available; use --device cpu")
        if local_rank >= torch.cuda.device_count():
            raise SpikeforgeError(f"--nproc asks for {local_rank + 1} GPUs but {torch.cuda.device_count()} exist; "
                                  "lower --nproc or use --device cpu")
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def _worker(local_rank: int, settings, out_dir: str, world_size: int, init_method: str) -> None:
    from snn.pipeline import train_classifier
    device = _device_for(settings.device, local_rank)
    if device.type == "cpu":
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world_size))
    dist.init_process_group(backend_for(device), init_method=init_method, rank=local_rank, world_size=world_size)
    try:
        context = DistContext(local_rank, world_size, device)
        train_classifier(replace(settings, device=str(device)), out_dir, distributed=context)
    finally:
        dist.destroy_process_group()


def launch_training(settings, out_dir: str | Path) -> dict[str, Any]:
    """Train with ``settings.nproc`` processes; returns rank 0's results (also in ``train.json``)."""
    import json

    from snn.pipeline import train_classifier
    if settings.batch_size < settings.nproc:
        raise SpikeforgeError(f"global batch size {settings.batch_size} is smaller than --nproc {settings.nproc}; "
                              "raise --batch-size")
    if launched_by_torchrun():
        world = int(os.environ["WORLD_SIZE"])
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        device = _device_for(settings.device, local_rank)
        dist.init_process_group(backend_for(device))
        try:
            context = DistContext(dist.get_rank(), world, device)
            return train_classifier(replace(settings, device=str(device)), out_dir, distributed=context)
        finally:
            dist.destroy_process_group()
    init_method = f"tcp://127.0.0.1:{_free_port()}"
    torch.multiprocessing.start_processes(_worker, args=(settings, str(out_dir), settings.nproc, init_method),
                                          nprocs=settings.nproc, join=True, start_method="spawn")
    with open(Path(out_dir) / "train.json") as f:
        return json.load(f)
