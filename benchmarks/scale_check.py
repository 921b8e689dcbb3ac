"""Scale check: CIFAR-shaped VGG-16 and ResNet-18 converted to SNNs, spikeforge against SpikingJelly, one process.

The ANNs are the usual CIFAR forms, ``examples.ann_models.cifar_vgg16`` and ``cifar_resnet18``
(3x32x32 input, every convolution followed by BatchNorm and ReLU): VGG-16 (13 conv-BN-ReLU in
five blocks, a 2x2 max pool after each, Linear 512 -> 10) and ResNet-18 (3x3 stem conv-BN-ReLU,
four stages of two basic blocks, 64-512 channels, 1x1 conv-BN projection shortcuts, global
average pool, Linear 512 -> 10). Weights are random, trained ``--train-steps`` SGD steps on
random data (random labels), then BatchNorm's running statistics are re-estimated on the
calibration data, so that the eval-mode ANN normalises its activations as a trained one does.
Inputs are uniform random images normalised with CIFAR's channel statistics.

Both libraries convert the same ANN with their defaults, calibrating on the same
``--calibration-batches`` batches of ``--batch`` images:

- spikeforge: ``converters.convert.convert(ann, loader)`` (BatchNorm folded, 99.9th-percentile
  thresholds per layer, IF neurons with subtractive reset starting at half threshold, max
  pooling as a spike gate, an accumulating readout). Simulation: ``snn(x)`` on ``x [T, B, 3, 32,
  32]`` (the analog image at every step), under ``torch.no_grad()``.
- SpikingJelly: ``ann2snn.Converter(ann2snn.RateCodingRecipe(dataloader=loader)).convert(ann)``
  (its default ``mode="Max"``: the largest activation per layer; IFNode with soft reset between two
  VoltageScalers). Simulation: ``functional.set_step_mode(snn, "m")`` once, then per batch
  ``functional.reset_net(snn); snn(x)`` on the same ``x``, under ``torch.no_grad()``; its output
  summed over T.

``ann`` (the floor) is the ANN itself on the folded batch ``[T * B, 3, 32, 32]``: the same
convolutions without neurons.

Time: median of ``--repeats`` simulated batches after ``--warmup`` (the warm-up counts spikes,
so the table can show the same work was done), libraries interleaved round-robin within each
repeat, in seconds per batch of B samples at T steps. Conversion: the median of ``--conversion-repeats``
conversion calls after a first, untimed one, all before the simulated batches (a call right after a
multi-gigabyte simulation pays for the memory that simulation gave back), the libraries interleaved in
alternating order; each call converts a fresh copy of the ANN, calibration passes included.

Memory (``--memory``): each case runs again in a fresh subprocess, with glibc told to return large
blocks to the system (``MALLOC_MMAP_THRESHOLD_``); the kernel's peak resident set size
(``VmHWM``, reset through ``/proc/self/clear_refs``) above the level before the call, for one
conversion (after a first one, which loads the imports and compiled kernels) and for one simulated
batch (after a first one): the method of ``benchmarks/train_speed.py``.

Run: ``python benchmarks/scale_check.py [--nets vgg16 resnet18] [--timesteps 32] [--batch 64]
[--repeats 3] [--memory] [--json out.json]``; ``--conversion-only`` times only the conversions;
``--profile`` adds a per-layer-type breakdown of
one simulated batch for each library.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import time
from collections import defaultdict
from typing import Any, Callable

import torch
from peak_memory import peak_above_base, run_case_in_subprocess
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository root: examples/
from examples.ann_models import BasicBlock, ResNet18, cifar_resnet18, cifar_vgg16  # noqa: E402

NETS = ("vgg16", "resnet18")
LIBRARIES = ("spikeforge", "spikingjelly", "ann")
CONVERTERS = ("spikeforge", "spikingjelly")
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


# ----------------------------------------------------------------------------------------------- the inputs

def images(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, 32, 32, generator=g)
    return (x - torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1)) / torch.tensor(CIFAR_STD).view(1, 3, 1, 1)


def calibration_loader(batch: int, batches: int) -> DataLoader:
    x = images(batch * batches, seed=2)
    return DataLoader(TensorDataset(x, torch.zeros(len(x), dtype=torch.long)), batch_size=batch)


def make_ann(net: str, batch: int, calibration_batches: int, train_steps: int) -> nn.Module:
    """The ANN: seeded init, ``train_steps`` SGD steps on random data, BatchNorm statistics re-estimated."""
    torch.manual_seed(0)
    ann = cifar_vgg16() if net == "vgg16" else cifar_resnet18()
    optimizer = torch.optim.SGD(ann.parameters(), lr=0.01, momentum=0.9)
    g = torch.Generator().manual_seed(1)
    ann.train()
    for step in range(train_steps):
        x, y = images(32, seed=100 + step), torch.randint(0, 10, (32,), generator=g)
        loss = nn.functional.cross_entropy(ann(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    norms = [m for m in ann.modules() if isinstance(m, nn.BatchNorm2d)]
    for m in norms:  # cumulative average over the calibration data
        m.reset_running_stats()
        m.momentum = None
    with torch.no_grad():
        for x, _ in calibration_loader(batch, calibration_batches):
            ann(x)
    for m in norms:
        m.momentum = 0.1
    return ann.eval()


# ---------------------------------------------------------------------------------------- conversion, running

def convert_with(library: str, ann: nn.Module, loader: DataLoader) -> nn.Module:
    """Convert a fresh copy of ``ann`` with ``library``'s defaults."""
    if library == "spikeforge":
        from converters.convert import convert
        return convert(ann, loader)  # copies the ANN itself
    if library == "spikingjelly":
        from spikingjelly.activation_based import ann2snn, functional
        snn = ann2snn.Converter(ann2snn.RateCodingRecipe(dataloader=loader)).convert(copy.deepcopy(ann))
        functional.set_step_mode(snn, "m")
        return snn.eval()
    if library == "ann":
        return ann
    raise ValueError(library)


def runner(library: str, model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """``run(x [T, B, ...]) -> accumulated class scores [B, classes]`` for one simulated batch."""
    if library == "spikeforge":
        def run(x: torch.Tensor) -> torch.Tensor:
            return model(x)[-1]  # the Integrator's membrane after T steps: the sum of the outputs
    elif library == "spikingjelly":
        from spikingjelly.activation_based import functional

        def run(x: torch.Tensor) -> torch.Tensor:
            functional.reset_net(model)
            return model(x).sum(0)
    else:
        def run(x: torch.Tensor) -> torch.Tensor:
            steps, batch = x.shape[:2]
            return model(x.reshape(steps * batch, *x.shape[2:])).reshape(steps, batch, -1).sum(0)
    return lambda x: _no_grad(run, x)


def _no_grad(run: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return run(x)


def neuron_modules(library: str, model: nn.Module) -> list[nn.Module]:
    if library == "spikeforge":
        from snn.neurons import IF
        return [m for m in model.modules() if isinstance(m, IF)]
    if library == "spikingjelly":
        from spikingjelly.activation_based import neuron
        return [m for m in model.modules() if isinstance(m, neuron.BaseNode)]
    return []


def count_spikes(library: str, model: nn.Module, run: Callable, x: torch.Tensor) -> tuple[torch.Tensor, float]:
    """One batch with hooks on every spiking layer: (scores, spikes per neuron and step)."""
    totals = [0.0, 0]

    def hook(module: nn.Module, inputs: Any, output: Any) -> None:
        spikes = output[0] if isinstance(output, tuple) else output
        totals[0] += float(spikes.sum())
        totals[1] += spikes.numel()
    handles = [m.register_forward_hook(hook) for m in neuron_modules(library, model)]
    try:
        scores = run(x)
    finally:
        for h in handles:
            h.remove()
    return scores, (totals[0] / totals[1] if totals[1] else float("nan"))


def make_input(timesteps: int, batch: int) -> torch.Tensor:
    return images(batch, seed=3).unsqueeze(0).expand(timesteps, -1, -1, -1, -1).contiguous()


# ------------------------------------------------------------------------------------------------- timing

def time_conversions(ann: nn.Module, loader: DataLoader, converters: list[str], repeats: int) -> dict[str, list[float]]:
    """Seconds of ``repeats`` conversion calls per library, interleaved in alternating order."""
    conversion: dict[str, list[float]] = {lib: [] for lib in converters}
    for repeat in range(repeats):
        for lib in converters if repeat % 2 == 0 else converters[::-1]:
            start = time.perf_counter()
            convert_with(lib, ann, loader)
            conversion[lib].append(time.perf_counter() - start)
    return conversion


def conversion_only(net: str, libraries: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """The conversion calls alone, in a process that simulates nothing (``--conversion-only``)."""
    ann = make_ann(net, args.batch, args.calibration_batches, args.train_steps)
    loader = calibration_loader(args.batch, args.calibration_batches)
    converters = [lib for lib in libraries if lib in CONVERTERS]
    for lib in converters:  # warm-up
        convert_with(lib, ann, loader)
    conversion = time_conversions(ann, loader, converters, args.conversion_repeats)
    return {"conversion_s": conversion, "conversion_median_s": {k: statistics.median(v) for k, v in conversion.items()}}


def time_net(net: str, libraries: list[str], args: argparse.Namespace) -> dict[str, Any]:
    ann = make_ann(net, args.batch, args.calibration_batches, args.train_steps)
    loader = calibration_loader(args.batch, args.calibration_batches)
    x = make_input(args.timesteps, args.batch)
    models = {lib: convert_with(lib, ann, loader) for lib in libraries}  # also warms the converters up
    # before the simulations, whose gigabytes slow the next call
    conversion = time_conversions(ann, loader, [lib for lib in libraries if lib in CONVERTERS], args.conversion_repeats)
    runs = {lib: runner(lib, models[lib]) for lib in libraries}
    scores, rates = {}, {}
    for lib in libraries:  # warm-up: the first batch also counts the spikes
        scores[lib], rates[lib] = count_spikes(lib, models[lib], runs[lib], x)
        for _ in range(args.warmup - 1):
            runs[lib](x)
    seconds: dict[str, list[float]] = {lib: [] for lib in libraries}
    for _ in range(args.repeats):
        for lib in libraries:
            start = time.perf_counter()
            runs[lib](x)
            seconds[lib].append(time.perf_counter() - start)
    ann_prediction = scores["ann"].argmax(-1) if "ann" in scores else None
    agreement = {lib: float((scores[lib].argmax(-1) == ann_prediction).float().mean())
                 for lib in libraries if ann_prediction is not None}
    return {"seconds": seconds, "median_s": {k: statistics.median(v) for k, v in seconds.items()},
            "conversion_s": conversion, "conversion_median_s": {k: statistics.median(v) for k, v in conversion.items()},
            "spike_rate": rates, "agrees_with_ann": agreement,
            "neuron_layers": {lib: len(neuron_modules(lib, models[lib])) for lib in libraries}}


# ------------------------------------------------------------------------------------------------- memory

def memory_case(net: str, library: str, timesteps: int, batch: int, calibration_batches: int,
                train_steps: int) -> dict[str, float]:
    ann = make_ann(net, batch, calibration_batches, train_steps)
    loader = calibration_loader(batch, calibration_batches)
    x = make_input(timesteps, batch)
    convert_with(library, ann, loader)  # warm-up: imports and compiled kernels are loaded once per process
    model, conversion = peak_above_base(lambda: convert_with(library, ann, loader))
    run = runner(library, model)
    run(x)
    _, simulation = peak_above_base(lambda: run(x))
    return {"conversion_peak_mib": conversion / 2**20, "simulation_peak_mib": simulation / 2**20}


def memory_in_subprocess(net: str, library: str, args: argparse.Namespace) -> dict[str, float]:
    return run_case_in_subprocess(__file__, f"memory_case({net!r}, {library!r}, {args.timesteps}, {args.batch}, "
                                            f"{args.calibration_batches}, {args.train_steps})")


# ------------------------------------------------------------------------------------------------ profile

def profile_case(net: str, library: str, args: argparse.Namespace) -> dict[str, float]:
    """Seconds per layer type in one simulated batch (forward pre/post hooks on the leaf modules; the
    rest is the containers' own work: reshapes, state handling)."""
    ann = make_ann(net, args.batch, args.calibration_batches, args.train_steps)
    model = convert_with(library, ann, calibration_loader(args.batch, args.calibration_batches))
    run, x = runner(library, model), make_input(args.timesteps, args.batch)
    run(x)
    spent: dict[str, float] = defaultdict(float)
    starts: dict[int, float] = {}

    def pre(module: nn.Module, inputs: Any) -> None:
        starts[id(module)] = time.perf_counter()

    def post(module: nn.Module, inputs: Any, output: Any) -> None:
        spent[type(module).__name__] += time.perf_counter() - starts.pop(id(module))
    handles = [h for m in _called_layers(model) for h in (m.register_forward_pre_hook(pre),
                                                            m.register_forward_hook(post))]
    try:
        start = time.perf_counter()
        run(x)
        total = time.perf_counter() - start
    finally:
        for h in handles:
            h.remove()
    spent["(total)"] = total
    spent["(outside layers)"] = total - sum(v for k, v in spent.items() if not k.startswith("("))
    return dict(spent)


def _called_layers(model: nn.Module) -> list[nn.Module]:
    """The layers a network calls: its modules below the containers (not their own submodules, such as
    an IFNode's surrogate function or a SpikeMaxPool2d's pooling arguments)."""
    from torch import fx

    from snn.graph_network import GraphNetwork
    containers = (nn.Sequential, nn.ModuleList, nn.ModuleDict, fx.GraphModule, GraphNetwork, BasicBlock, ResNet18)
    layers = []
    for child in model.children():
        if isinstance(child, containers) or type(child) is nn.Module:  # fx's copies of the ANN's hierarchy
            layers += _called_layers(child)
        else:
            layers.append(child)
    return layers


# ---------------------------------------------------------------------------------------------------- main

def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a is not None and b else "-"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", nargs="+", default=list(NETS), choices=list(NETS))
    parser.add_argument("--libraries", nargs="+", default=list(LIBRARIES), choices=list(LIBRARIES))
    parser.add_argument("--timesteps", type=int, default=32)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--conversion-repeats", type=int, default=8)
    parser.add_argument("--calibration-batches", type=int, default=2)
    parser.add_argument("--train-steps", type=int, default=2)
    parser.add_argument("--memory", action="store_true", help="also measure peak memory (one subprocess per case)")
    parser.add_argument("--profile", action="store_true", help="also time each layer type of one batch")
    parser.add_argument("--conversion-only", action="store_true",
                        help="time only the conversion calls (no simulation, no memory)")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    if args.warmup < 1:
        parser.error("--warmup must be at least 1 (the warm-up batch counts the spikes)")

    import spikingjelly
    try:
        from importlib.metadata import version
        sj_version = version("spikingjelly")
    except Exception:  # noqa: BLE001 - a version string is only for the header
        sj_version = getattr(spikingjelly, "__version__", "?")
    print(f"torch {torch.__version__}, spikingjelly {sj_version}, Python {platform.python_version()}, "
          f"{torch.get_num_threads()} threads, {os.cpu_count()} CPUs; T={args.timesteps}, B={args.batch}; "
          f"median of {args.repeats} (s per batch)")
    results: dict = {"settings": vars(args), "versions": {"torch": torch.__version__, "spikingjelly": sj_version}}
    for net in args.nets:
        if args.conversion_only:
            results[net] = row = conversion_only(net, args.libraries, args)
            conv = row["conversion_median_s"]
            print(f"[{net}] conversion, median of {args.conversion_repeats}: " + ", ".join(
                f"{lib} {conv[lib]:.3f} s (ours/lib {_ratio(conv.get('spikeforge'), conv[lib])})" for lib in conv))
            continue
        row = time_net(net, args.libraries, args)
        if args.memory:
            row["memory"] = {lib: memory_in_subprocess(net, lib, args) for lib in args.libraries if lib in CONVERTERS}
        if args.profile:
            row["profile"] = {lib: profile_case(net, lib, args) for lib in args.libraries if lib in CONVERTERS}
        results[net] = row
        med, conv, mem = row["median_s"], row["conversion_median_s"], row.get("memory", {})
        print(f"\n[{net}] T={args.timesteps} B={args.batch}")
        header = f"{'library':<14}{'sim s/batch':>12}{'ours/lib':>9}{'convert s':>10}{'ours/lib':>9}"
        if mem:
            header += f"{'sim peak MiB':>13}{'ours/lib':>9}{'conv peak MiB':>14}{'ours/lib':>9}"
        print(header + f"{'spike rate':>11}{'= ANN':>7}")
        ours_mem = mem.get("spikeforge", {})
        for lib in args.libraries:
            line = (f"{lib:<14}{med[lib]:>12.2f}{_ratio(med.get('spikeforge'), med[lib]):>9}"
                    f"{conv.get(lib, float('nan')):>10.2f}{_ratio(conv.get('spikeforge'), conv.get(lib)):>9}")
            if mem and lib not in mem:
                line += f"{'-':>13}{'-':>9}{'-':>14}{'-':>9}"
            elif mem:
                m = mem[lib]
                line += (f"{m['simulation_peak_mib']:>13.0f}"
                         f"{_ratio(ours_mem.get('simulation_peak_mib'), m['simulation_peak_mib']):>9}"
                         f"{m['conversion_peak_mib']:>14.0f}"
                         f"{_ratio(ours_mem.get('conversion_peak_mib'), m['conversion_peak_mib']):>9}")
            rate = row["spike_rate"][lib]
            agree = row["agrees_with_ann"].get(lib)
            line += f"{rate:>11.4f}" if rate == rate else f"{'-':>11}"
            print(line + (f"{agree:>7.2f}" if agree is not None else f"{'-':>7}"))
        for lib, spent in row.get("profile", {}).items():
            print(f"  profile {lib}: " + ", ".join(f"{k} {v:.2f}s" for k, v in
                                                   sorted(spent.items(), key=lambda kv: -kv[1])))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return results


if __name__ == "__main__":
    main()
