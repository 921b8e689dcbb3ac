"""Train a small spiking network on digits with surrogate gradients, then draw its spikes.

What it shows: the core of spikeforge in one page. A time-major ``snn.Sequential`` (torch
layers plus LIF neurons, an ``Integrator`` readout), the ``Task`` that encodes images into
``[T, B, ...]`` input and reads classes out, ``snn.fit`` (BPTT, Adam, best epoch kept),
``snn.Recorder`` to capture every layer's spikes, and ``snn.plots`` to draw them.

Data: scikit-learn's 1,797 embedded 8x8 digits (nothing is downloaded).

Run it::

    .venv/bin/python examples/train_digits_raster.py              # ~30 epochs, a few minutes of CPU
    .venv/bin/python examples/train_digits_raster.py --quick      # tiny settings (CI), seconds

It prints ``test accuracy: ...`` and writes ``raster.png`` (hidden-layer spikes of one test
digit) and ``training_curves.png`` into ``--out`` (default ``examples-output/train_digits_raster``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import nn

import snn
from snn import data, plots


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("examples-output/train_digits_raster"))
    parser.add_argument("--quick", action="store_true", help="tiny settings for a smoke test (CI)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    epochs, timesteps, hidden = (2, 4, 64) if args.quick else (30, 8, 128)

    split = data.load_digits_split()  # fixed stratified 70/30 split, images [N, 1, 8, 8] in [0, 1]
    train_loader, test_loader = data.make_loaders(split, batch_size=64)

    torch.manual_seed(0)  # the initial weights; fit() seeds its own shuffling and encoders
    # Flatten -> Linear -> LIF -> Linear -> Integrator. The Integrator never spikes: its membrane
    # is the class score, which is what the "membrane_mean" readout takes the cross-entropy of.
    net = snn.Sequential(
        nn.Flatten(), nn.Linear(64, hidden), snn.LIF(beta=0.9),
        nn.Linear(hidden, 10), snn.Integrator(),
        input_shape=(1, 8, 8),
    )
    # Direct encoding: the analog image is the input current at every one of the T steps.
    task = snn.Task(timesteps=timesteps, encoder="direct", readout="membrane_mean")

    # fit() validates on the loader it is given after every epoch and keeps the best weights. For a
    # real experiment, hold out a validation split from the training data (snn train does).
    result = snn.fit(net, task, train_loader, test_loader,
                     snn.FitConfig(epochs=epochs, lr=2e-3, device="cpu", progress=False))
    accuracy = snn.evaluate(net, task, test_loader)

    # Record every neuron layer's spikes for one test digit; spikes are [T, B, features].
    digit = split.x_test[:1]
    with torch.no_grad(), snn.Recorder(net) as rec:
        net(task.encode(digit))
    hidden_name = next(iter(rec.spikes))  # the LIF layer (the Integrator has membrane, not spikes)
    spikes = rec.spikes[hidden_name]
    raster = plots.plot_raster(spikes, args.out / "raster.png",
                               title=f"LIF layer {hidden_name}, test digit {int(split.y_test[0])}")
    curves = plots.plot_training_curves(result.history, args.out / "training_curves.png")

    print(f"firing rate of the hidden layer: {spikes.mean().item():.3f} spikes per neuron and step")
    print(f"plots: {raster}, {curves}")
    print(f"test accuracy: {100 * accuracy:.2f}% (T = {timesteps}, {epochs} epochs, "
          f"{result.train_seconds:.1f} s of training)")


if __name__ == "__main__":
    main()
