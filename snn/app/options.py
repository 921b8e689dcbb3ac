"""The plugin kit: option types and option groups every verb shares.

A plugin's ``cli.py`` imports this module to register its verb (see :mod:`snn.app.cli`).
It imports nothing heavy, so building the parser for ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
from typing import Any

from snn.names import DATASETS


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


DEVICE_CHOICES = "cpu, cuda, cuda:N (e.g. cuda:0) or mps"
MAX_SECONDS = 7 * 24 * 3600.0  # a week: a longer limit is a typo (and inf, nan are no limit at all)


def device_name(text: str) -> str:
    """argparse type: a torch device name, ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` (whether the device is
    present is checked before the verb runs, by :func:`snn.training.resolve_device`)."""
    name = text.strip().lower()
    kind, _, index = name.partition(":")
    if name in ("cpu", "cuda", "mps") or (kind == "cuda" and index.isdigit()):
        return name
    raise argparse.ArgumentTypeError(f"{text!r} is not a device; choose {DEVICE_CHOICES}")


def positive_seconds(text: str) -> float:
    """argparse type: a finite number of seconds, > 0 and at most :data:`MAX_SECONDS` (a week)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value <= MAX_SECONDS:  # also false for nan
        raise argparse.ArgumentTypeError(f"must be a number of seconds above 0 and at most {MAX_SECONDS:.0f} "
                                         f"(a week), got {text!r}")
    return value


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    """``--json``: the verb prints exactly one JSON object on stdout."""
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")


DATASET_HELP = ("digits is embedded; the others are read from --data-dir: mnist / fashion-mnist IDX files, "
                "cifar10 / cifar100 the extracted archive (binary or Python), imagefolder train/<class>/ and "
                "val/<class>/ images, nmnist / dvs-gesture / shd tonic's layout of the original files "
                "(binned to --time-bins frames; train them with --encoder frames)")


def add_data_options(parser: argparse.ArgumentParser, device: bool = True, seed_help: str | None = None,
                     dataset_help: str | None = DATASET_HELP, sample_options: bool = False) -> None:
    """``--dataset``, ``--data-dir``, ``--device`` (unless ``device`` is false) and ``--seed``.

    With ``sample_options`` also ``--time-bins``, ``--downsample`` (event datasets) and
    ``--image-size`` (imagefolder), for verbs that pass them to ``snn.data.load_dataset``.
    """
    parser.add_argument("--dataset", default="digits", choices=DATASETS, help=dataset_help)
    parser.add_argument("--data-dir", default=None, help="folder with the dataset's standard files")
    if device:
        parser.add_argument("--device", type=device_name, default=None,
                            help="cpu, cuda, cuda:N or mps (default: cuda when available)")
    parser.add_argument("--seed", type=int, default=None,
                        help=seed_help or "seed of the data split and the run (default: the model's own split for "
                                          "a verb that reads a model, else 0)")
    if sample_options:
        parser.add_argument("--time-bins", type=positive_int, default=None,
                            help="event datasets: frames per recording (default: --timesteps with --encoder "
                                 "frames, else 16)")
        parser.add_argument("--downsample", type=positive_int, default=1,
                            help="event datasets: divide the sensor's sides (shd: its channels) by this factor")
        parser.add_argument("--image-size", type=positive_int, default=224,
                            help="imagefolder: side of the centre crop (the shorter side is first resized to "
                                 "size * 256 / 224)")


def sample_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of ``snn.data.load_dataset`` that :func:`add_data_options` added to ``args``."""
    return {"time_bins": args.time_bins, "downsample": args.downsample, "image_size": args.image_size}
