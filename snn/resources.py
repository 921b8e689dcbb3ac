"""Resource bounds: the largest epochs and timesteps a verb accepts, and the memory a simulation needs.

A spiking network simulated for ``T`` steps on a batch of ``B`` samples holds every layer's
output for every step: ``[T, B, *shape]``. Before a job allocates that, it asks
:func:`check_fits` (training: back-propagation through time keeps the activations for the
backward pass) or :func:`inference_batch` (evaluation: the largest batch that fits) for an
estimate, and a run that cannot fit is refused with the figure and the option that lowers it.

The estimate (:func:`estimate_bytes`), in bytes, for float32 activations::

    training  = BPTT_FACTOR * (input + sum over layers of output) * T * B * 4
    inference = INFERENCE_FACTOR * (input + largest layer output) * T * B * 4

where ``input`` and ``output`` are element counts of one sample at one step, read by running
the network once on one zero sample at ``T = 1``. It is compared with the memory of the
device: physical RAM (``os.sysconf``) on CPU, free memory on CUDA, or the environment variable
:data:`MEMORY_ENV` (GiB) where it is set lower.

Importing this module imports neither torch nor anything heavy (the CLI's parser uses
:func:`bounded_int`).
"""

from __future__ import annotations

import argparse
import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence

from snn.errors import SpikeforgeError

if TYPE_CHECKING:
    import torch
    from torch import nn

MAX_EPOCHS = 100_000  # far above any useful run; a larger count is a typo, and would run for ever
BPTT_FACTOR = 1.5  # measured: digits CNN 1.1x, MLP 1.45x the outputs (neuron state, surrogate inputs kept too)
INFERENCE_FACTOR = 2.0  # a layer's input and output are alive together
FLOAT32_BYTES = 4
MEMORY_ENV = "SPIKEFORGE_MAX_MEMORY_GIB"  # caps the memory the estimate is compared with (shared machines, tests)


def bounded_int(lo: int, hi: int) -> Callable[[str], int]:
    """argparse type: an integer in ``[lo, hi]`` (the error names the bound)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < lo:
            raise argparse.ArgumentTypeError(f"must be at least {lo}, got {value}")
        if value > hi:
            raise argparse.ArgumentTypeError(f"must be at most {hi:,}, got {value:,}")
        return value
    parse.__name__ = f"integer in [{lo}, {hi}]"
    return parse


def check_bound(name: str, value: int, hi: int, option: str) -> int:
    """Return ``value`` unless it exceeds ``hi`` (library callers; the CLI refuses it while parsing)."""
    if value > hi:
        raise SpikeforgeError(f"{name} {value:,} is above the limit of {hi:,}; lower {option}")
    return value


def gib(count: float) -> float:
    """Bytes to GiB."""
    return count / 2**30


@dataclass(frozen=True)
class Activations:
    """Element counts of one sample at one step: the input, all layer outputs together, the largest one."""

    input: int
    total: int
    largest: int


def activations_per_step(model: "nn.Module", step_shape: Sequence[int]) -> Activations:
    """Run ``model`` once on one zero sample at T = 1 and count the outputs of its leaf modules."""
    import torch

    counts: list[int] = []

    def record(_module: Any, _inputs: Any, output: Any) -> None:
        first = output[0] if isinstance(output, (tuple, list)) and output else output
        if isinstance(first, torch.Tensor):
            counts.append(first.numel())

    leaves = [m for m in model.modules() if not any(True for _ in m.children())]
    handles = [m.register_forward_hook(record) for m in leaves]
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 1, *step_shape, device=device))
    except SpikeforgeError:
        raise
    except Exception:  # noqa: BLE001 - a network that does not run on the shape is refused later, by its own check
        counts = counts or [math.prod(step_shape)]
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    inputs = math.prod(int(d) for d in step_shape)
    return Activations(inputs, sum(counts), max(counts, default=inputs))


def estimate_bytes(activations: Activations, timesteps: int, batch: int, training: bool) -> int:
    """The bytes a ``[T, B, ...]`` simulation holds (see the module docstring for the equation)."""
    if training:
        per_step = BPTT_FACTOR * (activations.input + activations.total)
    else:
        per_step = INFERENCE_FACTOR * (activations.input + activations.largest)
    return int(per_step * timesteps * batch * FLOAT32_BYTES)


def device_memory(device: "torch.device | str | None" = None) -> tuple[int | None, str]:
    """``(bytes, what they are)`` the device offers: CUDA free memory, else physical RAM; the environment
    variable :data:`MEMORY_ENV` (GiB) lowers it. ``None`` bytes: unknown (nothing is refused)."""
    memory: int | None = None
    where = "this machine has"
    kind = getattr(device, "type", str(device or "cpu")).split(":")[0]
    if kind == "cuda":
        import torch
        free, _ = torch.cuda.mem_get_info(torch.device(device))
        memory, where = int(free), "the GPU has free"
    else:
        try:
            memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            memory = None
    cap = os.environ.get(MEMORY_ENV)
    if cap:
        try:
            limit = int(float(cap) * 2**30)
        except ValueError:
            raise SpikeforgeError(f"{MEMORY_ENV}={cap!r} is not a number of GiB; set it to e.g. 8, "
                                  "or unset it") from None
        if memory is None or limit < memory:
            memory, where = limit, f"{MEMORY_ENV} allows"
    return memory, where


def check_fits(model: "nn.Module", step_shape: Sequence[int], timesteps: int, batch: int,
               device: "torch.device | str | None" = None, what: str = "training",
               lower: str = "--timesteps or --batch-size", activations: Activations | None = None) -> int:
    """Raise unless training ``model`` at ``timesteps`` on batches of ``batch`` fits the device's memory;
    return the estimate in bytes (``activations``: the counts of :func:`activations_per_step`, if known)."""
    activations = activations or activations_per_step(model, step_shape)
    need = estimate_bytes(activations, timesteps, batch, training=True)
    memory, where = device_memory(device)
    if memory is not None and need > memory:
        raise SpikeforgeError(f"{what} needs about {gib(need):.3g} GiB for T={timesteps}, batch {batch} "
                              f"({where} {gib(memory):.3g} GiB); lower {lower}")
    return need


def inference_batch(model: "nn.Module", step_shape: Sequence[int], timesteps: int, batch: int,
                    device: "torch.device | str | None" = None, what: str = "evaluation",
                    lower: str = "--timesteps", activations: Activations | None = None) -> int:
    """The largest batch ``<= batch`` whose inference at ``timesteps`` fits the device's memory (half of it:
    the data and the network live there too); raise when not even one sample fits."""
    activations = activations or activations_per_step(model, step_shape)
    per_sample = estimate_bytes(activations, timesteps, 1, training=False)
    memory, where = device_memory(device)
    if memory is None:
        return batch
    if per_sample > memory:
        raise SpikeforgeError(f"{what} needs about {gib(per_sample):.3g} GiB per sample at T={timesteps} "
                              f"({where} {gib(memory):.3g} GiB); lower {lower}")
    return max(1, min(batch, int(memory // 2 // max(per_sample, 1))))
