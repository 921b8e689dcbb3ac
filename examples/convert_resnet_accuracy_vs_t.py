"""Convert a trained residual CNN (an ordinary PyTorch ANN) into a spiking network, and plot
its accuracy against the number of timesteps T.

What it shows: ``converters.convert`` on a network with residual additions. It traces the
ANN with torch.fx, folds BatchNorm into the convolutions, sets one firing threshold per
channel from a percentile of the ANN's activations on training data, and returns a
``GraphNetwork`` of IF neurons (reset by subtraction, starting at half threshold) read by an
accumulating ``Integrator``. A rate code needs time: accuracy rises with T towards the ANN's.
Two threshold choices are compared: one per channel and one per layer.

The ANN is ``converters.reference_models.digits_resnet`` (stem conv, two residual blocks
around an average pool, linear head), trained briefly here on scikit-learn's digits.

Run it::

    .venv/bin/python examples/convert_resnet_accuracy_vs_t.py            # 15 ANN epochs, T up to 64
    .venv/bin/python examples/convert_resnet_accuracy_vs_t.py --quick    # tiny settings (CI)

It prints the ANN's accuracy and the SNN's at every T, and writes ``accuracy_vs_t.png`` into
``--out`` (default ``examples-output/convert_resnet_accuracy_vs_t``). The same job on the
command line: ``snn convert --ann converters.reference_models:digits_resnet --weights ann.pt ...``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from converters.ann_training import train_ann
from converters.convert import accuracy_by_timesteps, ann_accuracy, convert
from converters.plots import plot_accuracy_vs_timesteps
from converters.reference_models import DigitsResNet
from snn import data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("examples-output/convert_resnet_accuracy_vs_t"))
    parser.add_argument("--quick", action="store_true", help="tiny settings for a smoke test (CI)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    if args.quick:
        epochs, width, timesteps, test_samples = 2, 8, (1, 2, 4, 8, 16), 200
    else:
        epochs, width, timesteps, test_samples = 15, 16, (1, 2, 4, 8, 16, 32, 64), None

    split = data.load_digits_split()
    train = data.tensor_loader(split.x_train, split.y_train, 64, shuffle=True, seed=0)
    # Calibration reads training images (never test images) to choose the thresholds.
    calibration = data.tensor_loader(split.x_train, split.y_train, 256)
    test = data.tensor_loader(split.x_test[:test_samples], split.y_test[:test_samples], 256)

    torch.manual_seed(0)
    ann = DigitsResNet(width=width)
    train_ann(ann, train, epochs=epochs, progress=False)  # plain cross-entropy training of the ReLU network
    reference = ann_accuracy(ann, test)

    curves = {}
    for label, channelwise in (("SNN, thresholds per channel", True), ("SNN, thresholds per layer", False)):
        # 99.9th percentile: rare large activations would otherwise set thresholds so high that
        # most neurons fire too rarely to carry information at small T.
        snn_model = convert(ann, calibration, percentile=99.9, channelwise=channelwise)
        # One simulation of max(T) steps gives the accuracy at every T (the readout accumulates).
        curves[label] = accuracy_by_timesteps(snn_model, test, timesteps)

    plot = plot_accuracy_vs_timesteps(curves, args.out / "accuracy_vs_t.png", ann_accuracy=reference,
                                      title="digits ResNet converted to IF neurons")
    print(f"converted network: {type(snn_model).__name__} with "
          f"{len(snn_model.neuron_layers())} neuron layers; plot: {plot}")
    for label, curve in curves.items():
        print(f"{label}: " + ", ".join(f"T={t} {100 * a:.1f}%" for t, a in curve.items()))
    best = curves["SNN, thresholds per channel"]
    print(f"ANN accuracy: {100 * reference:.2f}%; SNN accuracy at T={max(best)}: {100 * best[max(best)]:.2f}%")


if __name__ == "__main__":
    main()
