"""Move a network from snnTorch to spikeforge through a NIR file, and check the spikes agree.

What it shows: interoperability through NIR (the Neuromorphic Intermediate Representation).
A two-layer snnTorch network (``Leaky`` and ``Synaptic`` neurons) is exported with snnTorch's
own ``export_to_nir``, written to an HDF5 file (``converters.nir_io.save_nir``), read back
(``load_nir``) and imported as a spikeforge ``Sequential`` (``converters.nir_import.import_nir``:
NIR's continuous neurons become our discrete ones by forward Euler, dt = 1e-4 s, snnTorch's
convention). Both networks then run the same rate-coded digits and every layer's spikes are
compared.

The snnTorch neurons keep snnTorch's default reset (subtract the threshold, one step late).
snnTorch's exporter does not record it (its file says ``v_reset = 0``), so the import names
the producer: ``import_nir(..., dialect="snntorch")`` reads the file as snnTorch runs it.

Run it::

    .venv/bin/python examples/nir_roundtrip_snntorch.py            # 64 digits, T = 25
    .venv/bin/python examples/nir_roundtrip_snntorch.py --quick    # fewer digits (CI)

It prints how many spikes each side fired and how many differ, and writes
``nir_roundtrip.png`` (both rasters overlaid, per layer, for one digit) and ``network.nir``
into ``--out`` (default ``examples-output/nir_roundtrip_snntorch``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import snntorch
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from snntorch import utils as snntorch_utils
from snntorch.export_nir import export_to_nir

import snn
from converters.nir_import import import_nir
from converters.nir_io import load_nir, save_nir
from snn import data, encoders

# snnTorch's defaults (no reset options set), read back with the snnTorch dialect.
SNNTORCH_RESET: dict = {}
IMPORT_OPTIONS = {"dialect": "snntorch"}


def snntorch_network(hidden: int = 48, classes: int = 10) -> torch.nn.Sequential:
    """An (untrained) snnTorch network: Linear -> Leaky -> Linear -> Synaptic, per-neuron parameters.

    Per-neuron tensors, not scalars: snnTorch's exporter fails on 0-d beta / threshold with nir 1.0.8.
    """
    def uniform(n: int, low: float, high: float) -> torch.Tensor:
        return torch.rand(n) * (high - low) + low

    return torch.nn.Sequential(
        torch.nn.Linear(64, hidden),
        snntorch.Leaky(beta=uniform(hidden, 0.7, 0.95), threshold=uniform(hidden, 0.5, 1.0), init_hidden=True,
                       **SNNTORCH_RESET),
        torch.nn.Linear(hidden, classes),
        snntorch.Synaptic(alpha=uniform(classes, 0.3, 0.8), beta=uniform(classes, 0.7, 0.95),
                          threshold=torch.full((classes,), 0.5), init_hidden=True, **SNNTORCH_RESET),
    )


def run_snntorch(net: torch.nn.Sequential, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """snnTorch steps one time step per call; record each neuron layer's spikes with forward hooks."""
    recorded: dict[str, list[torch.Tensor]] = {}
    hooks = [layer.register_forward_hook(lambda _m, _i, out, name=name: recorded.setdefault(name, []).append(out))
             for name, layer in net.named_children() if isinstance(layer, snntorch.SpikingNeuron)]
    snntorch_utils.reset(net)  # hidden state lives in the layers (init_hidden=True)
    for t in range(x.shape[0]):
        net(x[t])
    for hook in hooks:
        hook.remove()
    return {name: torch.stack(steps) for name, steps in recorded.items()}  # [T, B, N] each


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("examples-output/nir_roundtrip_snntorch"))
    parser.add_argument("--quick", action="store_true", help="tiny settings for a smoke test (CI)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    samples, steps = (8, 25) if args.quick else (64, 25)

    torch.manual_seed(0)
    theirs_net = snntorch_network()
    digits = data.load_digits_split().x_test[:samples].flatten(1)       # [B, 64] in [0, 1]
    x = encoders.rate(digits, steps, generator=torch.Generator().manual_seed(0))  # [T, B, 64] spikes

    # snnTorch -> NIR graph -> HDF5 file -> NIR graph -> spikeforge network
    graph = export_to_nir(theirs_net, torch.zeros(1, 64), ignore_dims=[0])  # dim 0 of the sample is the batch
    path = save_nir(graph, args.out / "network.nir")
    ours_net = import_nir(load_nir(path), **IMPORT_OPTIONS).eval()  # dt: the file's, else snnTorch's 1e-4 s
    print(f"imported from {path}: {' -> '.join(type(m).__name__ for m in ours_net)}")

    with torch.no_grad():
        theirs = run_snntorch(theirs_net, x)
        with snn.Recorder(ours_net, membrane=False) as rec:
            ours_net(x)
    ours = rec.spikes
    # Layers keep their NIR node names, which are snnTorch's child names ("1", "3").
    names = [n for n in theirs if n in ours]
    if len(names) != len(theirs):
        print(f"layer names differ: snnTorch {list(theirs)}, spikeforge {list(ours)}", file=sys.stderr)
        return 1
    mismatches = {n: int((theirs[n] != ours[n]).sum()) for n in names}
    for n in names:
        print(f"layer {n}: snnTorch {int(theirs[n].sum())} spikes, spikeforge {int(ours[n].sum())}, "
              f"{mismatches[n]} differ")
    plot = _plot(args.out / "nir_roundtrip.png", theirs, ours, names)
    total = sum(int(theirs[n].sum()) for n in names)
    print(f"plot: {plot}")
    print(f"spike mismatches: {sum(mismatches.values())} of {total} snnTorch spikes "
          f"({samples} digits x {steps} steps)")
    return 0 if not any(mismatches.values()) else 1


def _plot(path: Path, theirs: dict, ours: dict, names: list[str]) -> Path:
    fig = Figure(figsize=(10, 4), layout="constrained")
    for ax, name in zip(fig.subplots(1, len(names)), names):
        for spikes, style in ((theirs[name], dict(marker="|", s=60, color="black", label="snnTorch")),
                              (ours[name], dict(marker="o", s=14, facecolors="none", edgecolors="tab:red",
                                                label="spikeforge (from NIR)"))):
            t, n = np.nonzero(spikes[:, 0].numpy())  # digit 0
            ax.scatter(t, n, **style)
        ax.set_ylim(-0.5, theirs[name].shape[-1] - 0.5)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("time step")
        ax.set_ylabel("neuron")
        ax.set_title(f"layer {name}: {int((theirs[name] != ours[name]).sum())} mismatching spikes (all digits)")
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=2)
    fig.suptitle("snnTorch network and its NIR import, same input (digit 0 drawn)")
    fig.savefig(path, format="png", dpi=120)
    return path


if __name__ == "__main__":
    sys.exit(main())
