"""Event-driven vs dense per-step inference, batch 1, 784-512-10 LIF, on CPU.

Input: Bernoulli spike frames at rates 1%, 5%, 20%, T=100. "dense per-step" steps the
network one frame at a time with dense matmuls (``snn.event_driven.dense_step_simulation``,
a lean torch loop); "dense folded" is ``model(x)`` on the whole [T, 1, 784] sequence
(time-folded matmul, fused neurons), for reference. Median of ``--repeats`` runs in ms.

Run: ``python benchmarks/inference_speed.py [--repeats 20]``
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from snn.event_driven import EventDrivenNetwork, dense_step_simulation
from snn.network import Sequential
from snn.neurons import LIF


def _median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--steps", type=int, default=100)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    model = Sequential(nn.Linear(784, 512), LIF(beta=0.9), nn.Linear(512, 10), LIF(beta=0.9))
    with torch.no_grad():
        model[0].weight.mul_(8)  # a hidden layer that actually fires at these input rates
    net = EventDrivenNetwork.from_sequential(model)
    print(f"batch 1, 784-512-10 LIF, T={args.steps}, torch {torch.get_num_threads()} threads; median ms per sequence")
    print(f"{'input rate':>10}{'event':>9}{'dense/step':>12}{'dense folded':>14}{'x vs step':>11}{'x vs folded':>13}"
          f"{'hidden rate':>13}")
    results = {}
    for rate in (0.01, 0.05, 0.20):
        frames = (torch.rand(args.steps, 784, generator=torch.Generator().manual_seed(1)) < rate).float()

        def event(frames: torch.Tensor = frames) -> None:
            net.reset()
            net.run(frames)
        hidden = EventDrivenNetwork.from_sequential(model[:2]).run(frames).mean().item()
        assert torch.equal((net.reset(), net.run(frames))[1], dense_step_simulation(model, frames))
        with torch.no_grad():
            folded = _median_ms(lambda frames=frames: model(frames[:, None]), args.repeats)
        ev = _median_ms(event, args.repeats)
        step = _median_ms(lambda frames=frames: dense_step_simulation(model, frames), args.repeats)
        results[rate] = {"event_ms": ev, "dense_step_ms": step, "dense_folded_ms": folded}
        print(f"{rate:>10.0%}{ev:>9.2f}{step:>12.2f}{folded:>14.2f}{step / ev:>11.1f}{folded / ev:>13.1f}"
              f"{hidden:>13.3f}")
    return results


if __name__ == "__main__":
    main()
