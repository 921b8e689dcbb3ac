"""Multi-process data-parallel training on PyTorch's own engine (DDP; gloo on CPU, NCCL on GPU).

:func:`run_data_parallel` runs a job (a picklable top-level function) in N worker processes,
or in the group ``torchrun`` made (``torchrun --nproc-per-node N -m snn train ...``), and
returns rank 0's result: through a queue from a spawned worker, directly under torchrun.
It knows no job; ``snn train --nproc N`` passes :func:`snn.app.jobs.train_classifier`.

How training divides the work: every worker builds the same model from the same seed and
draws the same shuffled global batches; worker r trains on the r-th contiguous slice of
each global batch (:class:`ShardedLoader`), and DDP averages the gradients. With equal
slices this is the single-process step on the global batch (``--batch-size`` is the global
batch), up to the order of float summation; BatchNorm statistics are per worker (DDP's
default). Rank 0 evaluates, writes the checkpoint, curves and ``train.json``.
"""

from __future__ import annotations

import multiprocessing
import os
import socket
from dataclasses import dataclass
from typing import Any, Callable, Iterator

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


def group_size(nproc: int) -> int:
    """The number of processes :func:`run_data_parallel` would use: torchrun's group size, else ``nproc``.

    Under torchrun the size is torchrun's (``--nproc-per-node``): its parser takes ``--nproc``
    on the job's command line for an abbreviation of its own option, so the job cannot be told.
    """
    return int(os.environ["WORLD_SIZE"]) if launched_by_torchrun() else nproc


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


def _run_in_group(job: Callable[..., Any], args: tuple, context: DistContext, **group: Any) -> Any:
    """``job(*args, distributed=context)`` inside a process group made with ``group``."""
    dist.init_process_group(backend_for(context.device), **group)
    try:
        return job(*args, distributed=context)
    finally:
        dist.destroy_process_group()


def _worker(local_rank: int, job: Callable[..., Any], args: tuple, device: str | None, world_size: int,
            init_method: str, results) -> None:
    """One spawned process; rank 0 puts its result on ``results``."""
    target = _device_for(device, local_rank)
    if target.type == "cpu":
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world_size))
    context = DistContext(local_rank, world_size, target)
    result = _run_in_group(job, args, context, init_method=init_method, rank=local_rank, world_size=world_size)
    if context.is_main:
        results.put(result)


def run_data_parallel(job: Callable[..., Any], args: tuple, nproc: int, device: str | None = None) -> Any:
    """Run ``job(*args, distributed=context)`` on ``nproc`` processes; return rank 0's result.

    ``job`` must be a top-level function (it is pickled into spawned workers) and return a
    picklable value on rank 0. ``device`` is the requested device (``None``: CUDA when
    available); each worker gets its own GPU. Under ``torchrun`` the group is torchrun's
    (its size, not ``nproc``) and every rank returns its own result.
    """
    if launched_by_torchrun():  # torchrun's environment says where this process sits (env:// rendezvous)
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        rank = int(os.environ.get("RANK", local_rank))
        context = DistContext(rank, int(os.environ["WORLD_SIZE"]), _device_for(device, local_rank))
        return _run_in_group(job, args, context)
    results = multiprocessing.get_context("spawn").SimpleQueue()
    init_method = f"tcp://127.0.0.1:{_free_port()}"
    workers = torch.multiprocessing.start_processes(_worker, args=(job, args, device, nproc, init_method, results),
                                                    nprocs=nproc, join=False, start_method="spawn")
    # Read while joining: rank 0 blocks in put() until a result larger than the pipe's buffer is read.
    # join() raises (and stops the others) as soon as a worker fails.
    result, received = None, False
    while not workers.join(timeout=0.1):
        if not received and not results.empty():
            result, received = results.get(), True
    if not received:
        result = results.get()
    return result
