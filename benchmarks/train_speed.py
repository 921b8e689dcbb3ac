"""Training speed and memory: spikeforge against snnTorch, SpikingJelly and Norse, one process.

Three workloads (forward + backward of ``out.sum()``; no optimizer step, the same for all):

- ``long``: Linear 700->256 + LIF, T=500, B=16 (input: Bernoulli spikes, p=0.1)
- ``mlp``:  Linear 784->512 + LIF -> Linear 512->10 + LIF, T=25, B=128 (Bernoulli, p=0.2)
- ``conv``: Conv 1->32 (3x3) + LIF + maxpool2 -> Conv 32->64 (3x3) + LIF + maxpool2
  -> Linear 3136->10 + LIF, T=8, B=32, 28x28 input (Bernoulli, p=0.2)

Every library runs its recommended fast path on CPU: stateless layers on the time-folded
``[T*B, ...]`` tensor, then its neuron over time (snnTorch ``Leaky`` stepped in a Python
loop, SpikingJelly ``LIFNode(step_mode='m')`` (2.0 picks its CPU implementation by device), Norse ``LIF`` over the
sequence). "dense" is the matmul floor: the same layers with ReLU in place of the neuron,
on ``[T*B, ...]``, with torch's dense matmuls (spikeforge's event-driven Linear, which adds
only the weight rows of spiking inputs, can run below it). "spikeforge (step)" is our plain step-by-step reference path.

Time: median of ``--repeats`` iterations after ``--warmup``, in ms, cases interleaved
round-robin so that a load spike on the shared machine hits every library alike.
Memory (``--memory``): each case runs again in a fresh subprocess; after two warm-up
iterations we reset the kernel's peak resident set size (``/proc/self/clear_refs``), run
one iteration and report the peak (``VmHWM``) above the pre-iteration level, with glibc
told to return large blocks to the system (``MALLOC_MMAP_THRESHOLD_``). The figure is
exact and independent of load; where ``clear_refs`` is not writable a thread samples the
resident set every ~0.2 ms instead. We also
report the bytes autograd saves for backward (``saved_tensors_hooks``, one count per
storage), an exact and load-independent figure.

Run: ``python benchmarks/train_speed.py [--rows long mlp conv] [--repeats 10] [--memory]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from typing import Callable

import torch
from peak_memory import peak_above_base, run_case_in_subprocess
from torch import nn

ROWS = {
    "long": {"T": 500, "B": 16},
    "mlp": {"T": 25, "B": 128},
    "conv": {"T": 8, "B": 32},
}
LIBRARIES = ("spikeforge", "spikeforge (step)", "snntorch", "spikingjelly", "norse", "dense")
BETA = 0.9


def _stateless(row: str) -> list[nn.Module]:
    torch.manual_seed(0)
    if row == "long":
        return [nn.Linear(700, 256)]
    if row == "mlp":
        return [nn.Linear(784, 512), nn.Linear(512, 10)]
    return [nn.Conv2d(1, 32, 3, padding=1), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3, padding=1), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * 7 * 7, 10)]


def _with_neurons(row: str, make_neuron: Callable[[], nn.Module]) -> list[nn.Module]:
    """Insert a neuron after every weighted layer (before pooling, as usual)."""
    out: list[nn.Module] = []
    for m in _stateless(row):
        out.append(m)
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            out.append(make_neuron())
    return out


def make_input(row: str) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    T, B = ROWS[row]["T"], ROWS[row]["B"]
    shape = {"long": (700,), "mlp": (784,), "conv": (1, 28, 28)}[row]
    p = 0.1 if row == "long" else 0.2
    return (torch.rand(T, B, *shape, generator=g) < p).float() * 2.0


class FoldedLoop(nn.Module):
    """Stateless layers on [T*B, ...]; ``neuron_seq(h [T, B, ...]) -> spikes`` over time."""

    def __init__(self, layers: list[nn.Module], neuron_seq: Callable[[nn.Module, torch.Tensor], torch.Tensor],
                 neuron_types: tuple[type, ...]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.neuron_seq = neuron_seq
        self.neuron_types = neuron_types

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B = x.shape[:2]
        h = x.reshape(T * B, *x.shape[2:])
        for m in self.layers:
            if isinstance(m, self.neuron_types):
                h = self.neuron_seq(m, h.reshape(T, B, *h.shape[1:])).reshape(T * B, *h.shape[1:])
            else:
                h = m(h)
        return h


def build(library: str, row: str) -> nn.Module:
    if library.startswith("spikeforge"):
        from snn.network import Sequential
        from snn.neurons import LIF

        def neuron() -> LIF:
            layer = LIF(beta=BETA, theta=1.0)
            layer.fused = library == "spikeforge" and None
            return layer
        return Sequential(*_with_neurons(row, neuron))
    if library == "dense":
        return FoldedLoop(_with_neurons(row, nn.ReLU), lambda m, h: m(h), ())
    if library == "snntorch":
        import snntorch

        def run(m: nn.Module, h: torch.Tensor) -> torch.Tensor:
            mem = m.init_leaky()
            out = []
            for t in range(h.shape[0]):
                spk, mem = m(h[t], mem)
                out.append(spk)
            return torch.stack(out)
        return FoldedLoop(_with_neurons(row, lambda: snntorch.Leaky(beta=BETA, threshold=1.0)), run,
                          (snntorch.Leaky,))
    if library == "spikingjelly":
        from spikingjelly.activation_based import functional, neuron

        class SJ(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                # tau = 10: v <- v + (x - v)/10 = 0.9 v + 0.1 x; v_reset=None is reset by subtraction
                self.net = FoldedLoop(_with_neurons(row, lambda: neuron.LIFNode(
                    tau=1 / (1 - BETA), v_reset=None, detach_reset=True, step_mode="m")),
                    lambda m, h: m(h), (neuron.LIFNode,))

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                functional.reset_net(self.net)
                return self.net(x)
        return SJ()
    if library == "norse":
        import norse.torch as norse
        return FoldedLoop(_with_neurons(row, lambda: norse.LIF()), lambda m, h: m(h)[0], (norse.LIF,))
    raise ValueError(library)


def step(model: nn.Module, x: torch.Tensor) -> None:
    out = model(x)
    out.sum().backward()
    for p in model.parameters():
        p.grad = None


def saved_bytes(model: nn.Module, x: torch.Tensor) -> int:
    """Bytes autograd keeps for backward during one forward (each storage counted once)."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        if t.device.type == "cpu":
            storage = t.untyped_storage()
            seen[storage.data_ptr()] = storage.nbytes()
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(x)
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    total = sum(n for ptr, n in seen.items() if ptr not in params and ptr != x.untyped_storage().data_ptr())
    out.sum().backward()
    return total


def peak_rss_delta(model: nn.Module, x: torch.Tensor) -> int:
    """Peak resident memory above the pre-iteration level during one training iteration (after two
    warm-up iterations), by :func:`peak_memory.peak_above_base`."""
    for _ in range(2):
        step(model, x)
    return peak_above_base(lambda: step(model, x))[1]


def memory_case(library: str, row: str) -> dict[str, float]:
    model, x = build(library, row), make_input(row)
    delta = peak_rss_delta(model, x)
    return {"peak_rss_mib": delta / 2**20, "saved_mib": saved_bytes(model, x) / 2**20}


def memory_in_subprocess(library: str, row: str) -> dict[str, float]:
    return run_case_in_subprocess(__file__, f"memory_case({library!r}, {row!r})")


def time_row(row: str, libraries: list[str], repeats: int, warmup: int) -> dict[str, list[float]]:
    x = make_input(row)
    models = {lib: build(lib, row) for lib in libraries}
    for model in models.values():
        for _ in range(warmup):
            step(model, x)
    times: dict[str, list[float]] = {lib: [] for lib in libraries}
    for _ in range(repeats):
        for lib, model in models.items():
            start = time.perf_counter()
            step(model, x)
            times[lib].append((time.perf_counter() - start) * 1e3)
    return times


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--libraries", nargs="+", default=list(LIBRARIES), choices=list(LIBRARIES))
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--memory", action="store_true", help="also measure peak memory (one subprocess per case)")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = parser.parse_args(argv)

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs; "
          f"median of {args.repeats} (ms per forward+backward)")
    results: dict = {}
    for row in args.rows:
        times = time_row(row, args.libraries, args.repeats, args.warmup)
        med = {lib: statistics.median(v) for lib, v in times.items()}
        mem = {lib: memory_in_subprocess(lib, row) for lib in args.libraries} if args.memory else {}
        results[row] = {"median_ms": med, "all_ms": times, "memory": mem}
        ours = med.get("spikeforge")
        print(f"\n[{row}] T={ROWS[row]['T']} B={ROWS[row]['B']}")
        header = f"{'library':<20}{'ms':>9}{'ours x faster':>15}"
        if mem:
            header += f"{'peak RSS MiB':>14}{'saved MiB':>11}"
        print(header)
        for lib in args.libraries:
            ratio = f"{med[lib] / ours:.2f}" if ours else "-"
            line = f"{lib:<20}{med[lib]:>9.1f}{ratio:>15}"
            if mem:
                line += f"{mem[lib]['peak_rss_mib']:>14.1f}{mem[lib]['saved_mib']:>11.1f}"
            print(line)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return results


if __name__ == "__main__":
    main()
