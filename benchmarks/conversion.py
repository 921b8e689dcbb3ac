"""Conversion accuracy: spikeforge against SpikingJelly's RateCodingRecipe(mode="99.9%").

Trains the digits CNN (two conv-BN-ReLU-avgpool blocks, linear-ReLU-linear; seeded) as an
ANN once, converts the same trained network with both libraries, and prints both accuracy
curves over T on the digits test split, in one process:

    python benchmarks/conversion.py [--epochs 30] [--timesteps 1,2,4,8,16,32,64]

SpikingJelly is evaluated as in its own example (ann2snn/examples/cnn_mnist.py): reset the
network, feed the analog image every step and accumulate the output.
"""

from __future__ import annotations

import argparse
import copy

import torch
from spikingjelly.activation_based import ann2snn, functional
from torch.utils.data import DataLoader, TensorDataset

from converters.ann_training import train_ann
from converters.convert import accuracy_by_timesteps, ann_accuracy, convert
from converters.pipeline import parse_timesteps
from converters.reference_models import digits_cnn
from snn.data import load_digits_split
from snn.training import seed_everything


@torch.no_grad()
def spikingjelly_curve(ann: torch.nn.Module, calibration: DataLoader, test: DataLoader,
                       steps: list[int]) -> dict[int, float]:
    recipe = ann2snn.RateCodingRecipe(dataloader=calibration, mode="99.9%")
    snn_model = ann2snn.FXConverter(recipe=recipe, device="cpu").convert(copy.deepcopy(ann)).eval()
    correct = {t: 0 for t in steps}
    total = 0
    for x, y in test:
        functional.reset_net(snn_model)
        accumulated = 0
        for t in range(1, steps[-1] + 1):
            accumulated = accumulated + snn_model(x)
            if t in correct:
                correct[t] += (accumulated.argmax(1) == y).sum().item()
        total += len(y)
    return {t: correct[t] / total for t in steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--timesteps", default="1,2,4,8,16,32,64")
    args = parser.parse_args()
    steps = parse_timesteps(args.timesteps)

    split = load_digits_split()
    train = DataLoader(TensorDataset(split.x_train, split.y_train), batch_size=32, shuffle=True,
                       generator=torch.Generator().manual_seed(0))
    calibration = DataLoader(TensorDataset(split.x_train, split.y_train), batch_size=256)
    test = DataLoader(TensorDataset(split.x_test, split.y_test), batch_size=256)
    seed_everything(0)
    ann = digits_cnn()
    train_ann(ann, train, epochs=args.epochs, progress=False)
    reference = ann_accuracy(ann, test)

    ours = accuracy_by_timesteps(convert(ann, calibration, percentile=99.9, channelwise=True), test, steps)
    theirs = spikingjelly_curve(ann, calibration, test, steps)

    print(f"digits CNN, ANN test accuracy {100 * reference:.2f}%  ({len(split.y_test)} test samples)")
    print(f"{'T':>4} | {'spikeforge':>10} | {'SpikingJelly 99.9%':>18} | difference (points)")
    for t in steps:
        print(f"{t:>4} | {100 * ours[t]:>9.2f}% | {100 * theirs[t]:>17.2f}% | {100 * (ours[t] - theirs[t]):+.2f}")
    wanted = [t for t in (2, 4, 8, 16) if t in steps]
    higher = all(ours[t] > theirs[t] for t in wanted)
    print(f"spikeforge higher at every T in {wanted}: {'yes' if higher else 'NO'}")


if __name__ == "__main__":
    main()
