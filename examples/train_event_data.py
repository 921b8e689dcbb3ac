"""Train a spiking network on event-camera / event-audio data (N-MNIST, SHD, DVS Gesture).

What it shows: event data is already spikes in time, so no encoder is needed. The readers
(``snn.data.load_dataset``, through tonic) bin each recording's events into ``time_bins``
frames (and can ``downsample`` the sensor); each frame is one timestep of the network. The
network is a plain ``snn.Sequential`` trained with ``snn.fit``.

Data: ``--data-dir`` is a folder with the dataset's original files, as tonic reads them
(nothing is downloaded). Without one, the script writes a few tiny synthetic recordings in
the real file format (``snn.dataset_files``) into ``<out>/data`` and trains on those: the
pipeline runs end to end, but the accuracy then means nothing.

Run it::

    .venv/bin/python examples/train_event_data.py --dataset nmnist --data-dir ~/data/nmnist
    .venv/bin/python examples/train_event_data.py --quick            # tiny synthetic files (CI)

It prints ``test accuracy: ...`` and writes ``events_raster.png`` (the input events of one
test recording, time bin against input channel) and ``training_curves.png`` into ``--out``
(default ``examples-output/train_event_data``).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch
from torch import nn

import snn
from snn import data, plots

DATASETS = ("nmnist", "shd", "dvs-gesture")


def load(name: str, data_dir: Path | None, out: Path, time_bins: int, downsample: int, quick: bool):
    """The dataset's split; without ``data_dir``, tiny synthetic files in the real format are written first."""
    if data_dir is None:
        from snn import dataset_files
        data_dir = out / "data" / name
        dataset_files.write_tiny_dataset(name, data_dir, samples_per_class=2 if quick else 10, seed=0)
        print(f"no --data-dir: wrote tiny synthetic {name} files into {data_dir}")
    return data.load_dataset(name, data_dir, time_bins=time_bins, downsample=downsample)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=DATASETS, default="nmnist")
    parser.add_argument("--data-dir", type=Path, default=None, help="the dataset's original files (tonic's layout)")
    parser.add_argument("--out", type=Path, default=Path("examples-output/train_event_data"))
    parser.add_argument("--quick", action="store_true", help="tiny settings for a smoke test (CI)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    epochs, time_bins, hidden = (2, 8, 64) if args.quick else (20, 16, 256)
    downsample = 2  # N-MNIST's 34x34 sensor becomes 17x17 (fewer weights, same digits)

    split = load(args.dataset, args.data_dir, args.out, time_bins, downsample, args.quick)
    frame_shape = tuple(split.x_train.shape[2:])       # x: [N, T, C, H, W] (or [N, T, channels] for SHD)
    print(f"{args.dataset}: {len(split.x_train)} train / {len(split.x_test)} test recordings, "
          f"{split.x_train.shape[1]} time bins of shape {frame_shape}, {split.num_classes} classes")

    torch.manual_seed(0)
    net = snn.Sequential(
        nn.Flatten(), nn.Linear(math.prod(frame_shape), hidden), snn.LIF(beta=0.9),
        nn.Linear(hidden, split.num_classes), snn.Integrator(),
        input_shape=frame_shape,
    )
    # the frames encoder only moves time first: the readers give [N, T, ...], the network runs [T, B, ...]
    task = snn.Task(timesteps=int(split.x_train.shape[1]), encoder="frames", readout="membrane_mean")
    train_loader, test_loader = data.make_loaders(split, batch_size=32)
    result = snn.fit(net, task, train_loader, test_loader,
                     snn.FitConfig(epochs=epochs, device="cpu", progress=False))
    accuracy = snn.evaluate(net, task, test_loader)

    sample = task.encode(split.x_test[:1])           # [T, 1, ...] the events of one test recording
    with torch.no_grad(), snn.Recorder(net) as rec:
        net(sample)
    events = plots.plot_raster(sample, args.out / "events_raster.png", max_neurons=400,
                               title=f"{args.dataset} input events (label {int(split.y_test[0])})")
    curves = plots.plot_training_curves(result.history, args.out / "training_curves.png")
    hidden_spikes = next(iter(rec.spikes.values()))
    print(f"hidden firing rate {hidden_spikes.mean().item():.3f}; plots: {events}, {curves}")
    print(f"test accuracy: {100 * accuracy:.2f}% ({args.dataset}, {epochs} epochs, {time_bins} time bins)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
