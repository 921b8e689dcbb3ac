"""Counting overhead: the same simulation with and without the energy counter's hooks.

Two networks on the digits test split: the converted digits CNN (``converters``; IF neurons
with per-channel thresholds, average pooling) and the spiking digits CNN of ``snn train``
(LIF neurons, BatchNorm). Each is run ``--repeats`` times without and with an
:class:`~hardware.energy.counting.OperationCounter` (runs interleaved, so load on a shared
machine hits both alike); the script prints the medians and the overhead
``median(with) / median(without) - 1``, whose goal is at most 10%.

    python benchmarks/energy_overhead.py [--timesteps 32] [--samples 540] [--repeats 9] [--threads 1] [--snn snn.pt]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.data import DataLoader, TensorDataset

from converters.convert import convert
from converters.reference_models import digits_cnn
from hardware.energy.counting import OperationCounter
from snn import data, encoders
from snn.checkpoint import load_checkpoint
from snn.models import build_cnn


@torch.no_grad()
def timed(model: torch.nn.Module, x: torch.Tensor, count: bool) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one simulation."""
    wall, cpu = time.perf_counter(), time.process_time()
    if count:
        with OperationCounter(model, "snn"):
            model(x)
    else:
        model(x)
    return time.perf_counter() - wall, time.process_time() - cpu


def measure(name: str, model: torch.nn.Module, x: torch.Tensor, repeats: int) -> float:
    """Overhead by CPU time (robust on a shared machine); wall-clock overhead printed beside it."""
    timed(model, x, False), timed(model, x, True)  # warm-up
    plain, counted = [], []
    for _ in range(repeats):
        plain.append(timed(model, x, False))
        counted.append(timed(model, x, True))
    overheads = []
    for index in (1, 0):
        base = statistics.median(t[index] for t in plain)
        hooked = statistics.median(t[index] for t in counted)
        overheads.append((base, hooked, hooked / base - 1))
    (cpu_base, cpu_hooked, overhead), (_, _, wall_overhead) = overheads
    print(f"{name:<36} CPU time without {1e3 * cpu_base:8.1f} ms, with counting {1e3 * cpu_hooked:8.1f} ms: "
          f"overhead {100 * overhead:+6.1f}% ({'OK' if overhead <= 0.1 else 'OVER'} <= 10%); "
          f"wall-clock overhead {100 * wall_overhead:+6.1f}%")
    return overhead


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timesteps", type=int, default=32)
    parser.add_argument("--samples", type=int, default=540)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: least scheduling noise on a shared machine; 0: torch's default)")
    parser.add_argument("--snn", default=None, help="a converted SNN (snn convert's snn.pt); default: convert one")
    args = parser.parse_args()
    torch.manual_seed(0)
    if args.threads:
        torch.set_num_threads(args.threads)
    split = data.load_digits_split()
    images = split.x_test[:args.samples]
    if args.snn:
        converted = load_checkpoint(args.snn).model
    else:
        calibration = DataLoader(TensorDataset(split.x_train[:256], split.y_train[:256]), batch_size=128)
        converted = convert(digits_cnn().eval(), calibration, channelwise=True)
    trained_shape = build_cnn((1, 8, 8), 10, "lif").eval()
    x = encoders.direct(images, args.timesteps)
    print(f"digits test split: {len(images)} samples, T = {args.timesteps}, {args.repeats} repeats, "
          f"{torch.get_num_threads()} threads")
    results = [measure("converted digits CNN (IF, avgpool)", converted.eval(), x, args.repeats),
               measure("spiking digits CNN (LIF, BatchNorm)", trained_shape, x, args.repeats)]
    print(f"largest overhead: {100 * max(results):+.1f}%")


if __name__ == "__main__":
    main()
