"""Event-driven Linear forward (snn.kernels.event_linear) against torch's dense linear, by input density and width.

Prints, per (outputs, density), the median ms of ``torch.nn.functional.linear`` and of
``EventLinear.apply`` on ``[3200, 784]`` float32 spike input (the MLP row's layer 1:
T=25 x B=128 samples), and the ratio. The limits in ``snn/kernels/event_linear.py``
(``MAX_DENSITY``, ``MAX_DENSITY_NARROW``, ``MIN_OUT_FEATURES``) come from this table.

Run: ``python benchmarks/event_linear_speed.py [--repeats 21]``
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from snn.kernels.event_linear import EventLinear


def median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats + 3):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times[3:]) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=21)
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; [3200, 784] float32 input; median ms")
    print(f"{'outputs':>7} {'density':>7} {'dense':>7} {'event':>7} {'dense/event':>11}")
    for outputs in (32, 64, 128, 256, 512):
        weight, bias = torch.randn(outputs, 784) * 0.05, torch.randn(outputs)
        for density in (0.05, 0.1, 0.2, 0.3, 0.4):
            x = (torch.rand(3200, 784) < density).float()
            with torch.no_grad():
                dense = median_ms(lambda x=x, w=weight, b=bias: torch.nn.functional.linear(x, w, b), args.repeats)
                event = median_ms(lambda x=x, w=weight, b=bias: EventLinear.apply(x, w, b), args.repeats)
            print(f"{outputs:>7} {density:>7.2f} {dense:>7.2f} {event:>7.2f} {dense / event:>11.2f}", flush=True)


if __name__ == "__main__":
    main()
