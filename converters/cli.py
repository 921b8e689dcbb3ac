"""``snn convert`` and the demo's conversion stage (registered as entry points)."""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, TensorDataset

from converters.ann_training import train_ann
from converters.convert import ann_accuracy
from converters.pipeline import DEFAULT_TIMESTEPS, conversion_curve, loaders, parse_timesteps, run_conversion
from converters.plots import plot_accuracy_vs_timesteps
from converters.qcfs import swap_relu_for_qcfs
from converters.reference_models import digits_cnn
from converters.storage import save_converted
from snn import data
from snn.cli import add_data_options, add_json_flag
from snn.fileio import atomic_path
from snn.training import resolve_device, seed_everything


def _run(args: argparse.Namespace) -> dict[str, Any]:
    return run_conversion(args.ann, args.weights, args.out, args.dataset, parse_timesteps(args.timesteps),
                          args.percentile, not args.layerwise, args.data_dir, args.device, args.seed)


def register(verbs: argparse._SubParsersAction) -> None:
    parser = verbs.add_parser("convert", help="convert a trained ANN into a spiking network")
    add_data_options(parser)
    parser.add_argument("--ann", required=True, help="package.module:factory that builds the ANN")
    parser.add_argument("--weights", default=None, help="state dict of the trained ANN (torch.save)")
    parser.add_argument("--timesteps", default=",".join(map(str, DEFAULT_TIMESTEPS)),
                        help="comma-separated T values to evaluate (one simulation of the largest)")
    parser.add_argument("--percentile", type=float, default=99.9, help="activation percentile for thresholds")
    parser.add_argument("--layerwise", action="store_true", help="one threshold per layer (default: per channel)")
    parser.add_argument("--out", required=True, help="output folder (snn.pt, plot, convert.json)")
    add_json_flag(parser)
    parser.set_defaults(run=_run)


def _log(message: str) -> None:
    print(f"[snn demo] {message}", file=sys.stderr, flush=True)


def conversion_stage(out: Path, context: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Train the digits CNN as an ANN, convert it (plain ReLU and QCFS fine-tuned), plot accuracy vs T."""
    device = resolve_device(context["options"].get("device"))
    split = data.load_digits_split()
    generator = torch.Generator().manual_seed(0)
    train = DataLoader(TensorDataset(split.x_train, split.y_train), batch_size=32, shuffle=True, generator=generator)
    _, test = loaders(split)
    seed_everything(0)
    ann = digits_cnn()
    _log("training the digits CNN as an ANN")
    train_ann(ann, train, epochs=30, device=device)
    with atomic_path(out / "ann.pt") as tmp:
        torch.save(ann.state_dict(), tmp)
    reference = ann_accuracy(ann, test, device)
    _log("converting it (ReLU, 99.9th percentile, channel-wise)")
    snn_relu, relu_curve = conversion_curve(ann, split, DEFAULT_TIMESTEPS, 99.9, True, device)
    save_converted(out / "snn.pt", snn_relu, "converters.reference_models:digits_cnn", {"dataset": "digits"})
    _log("fine-tuning with QCFS (L = 4) and converting again")
    qcfs_ann = swap_relu_for_qcfs(copy.deepcopy(ann), levels=4)
    train_ann(qcfs_ann, train, epochs=10, lr=5e-4, device=device)
    qcfs_reference = ann_accuracy(qcfs_ann, test, device)
    _, qcfs_curve = conversion_curve(qcfs_ann, split, DEFAULT_TIMESTEPS, 99.9, True, device)
    plot = plot_accuracy_vs_timesteps({"SNN from ReLU ANN": relu_curve, "SNN from QCFS ANN (L=4)": qcfs_curve},
                                      out / "conversion.png", reference, title="digits CNN: accuracy vs timesteps")
    results = {"ann_accuracy": reference, "qcfs_ann_accuracy": qcfs_reference,
               "snn_accuracy": {str(t): a for t, a in relu_curve.items()},
               "qcfs_snn_accuracy": {str(t): a for t, a in qcfs_curve.items()},
               "snn_path": str(out / "snn.pt"), "ann_weights": str(out / "ann.pt"), "plot": str(plot)}
    header = "| T | " + " | ".join(str(t) for t in DEFAULT_TIMESTEPS) + " |"
    lines = [
        "## ANN-to-SNN conversion",
        "",
        f"The same CNN trained as an ANN (ReLU) reaches {100 * reference:.2f}% on the test split. Converted by "
        "tracing, BatchNorm folding, 99.9th-percentile channel-wise thresholds, reset by subtraction and a "
        "half-threshold initial membrane; the output is read as accumulated membrane. The QCFS row fine-tunes "
        f"the ANN with QCFS activations (L = 4; ANN accuracy {100 * qcfs_reference:.2f}%) before converting.",
        "",
        header,
        "|---" * (len(DEFAULT_TIMESTEPS) + 1) + "|",
        "| SNN (ReLU ANN) | " + " | ".join(f"{100 * relu_curve[t]:.2f}" for t in DEFAULT_TIMESTEPS) + " |",
        "| SNN (QCFS ANN) | " + " | ".join(f"{100 * qcfs_curve[t]:.2f}" for t in DEFAULT_TIMESTEPS) + " |",
        "",
        "![accuracy versus timesteps](conversion.png)",
        "",
    ]
    return results, lines


conversion_stage.order = 10  # type: ignore[attr-defined]
