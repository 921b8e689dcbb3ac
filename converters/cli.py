"""``snn convert`` and the demo's conversion stage (registered as entry points).

Registration imports nothing heavy: the jobs (:mod:`converters.pipeline`) are imported
when the verb or the stage runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from snn.app.options import add_data_options, add_json_flag, positive_int, sample_options

VERB_HELP = "convert a trained ANN into a spiking network"
# converters.pipeline.DEFAULT_TIMESTEPS as the option's text (tests/test_cli_startup.py checks they agree)
DEFAULT_TIMESTEPS_TEXT = "1,2,4,8,16,32,64"


def _run(args: argparse.Namespace) -> dict[str, Any]:
    from converters.pipeline import parse_timesteps, run_conversion
    return run_conversion(args.ann, args.weights, args.out, args.dataset, parse_timesteps(args.timesteps),
                          args.percentile, not args.layerwise, args.data_dir, args.device, args.seed,
                          data_options=sample_options(args), calibration_samples=args.calibration_samples,
                          test_samples=args.test_samples)


def register(verbs: argparse._SubParsersAction) -> None:
    parser = verbs.add_parser("convert", help=VERB_HELP)
    add_data_options(parser, sample_options=True)
    parser.add_argument("--ann", required=True, help="package.module:factory that builds the ANN")
    parser.add_argument("--weights", default=None, help="state dict of the trained ANN (torch.save)")
    parser.add_argument("--timesteps", default=DEFAULT_TIMESTEPS_TEXT,
                        help="comma-separated T values to evaluate (one simulation of the largest)")
    parser.add_argument("--percentile", type=float, default=99.9, help="activation percentile for thresholds")
    parser.add_argument("--layerwise", action="store_true", help="one threshold per layer (default: per channel)")
    parser.add_argument("--calibration-samples", type=positive_int, default=None, metavar="N",
                        help="training samples that calibrate the thresholds (default: all; e.g. 5000 on CIFAR)")
    parser.add_argument("--test-samples", type=positive_int, default=None, metavar="N",
                        help="test samples for the accuracy curve (default: all)")
    parser.add_argument("--out", required=True, help="output folder (snn.pt, plot, convert.json)")
    add_json_flag(parser)
    parser.set_defaults(run=_run, out_kind="folder")


def _log(message: str) -> None:
    print(f"[snn demo] {message}", file=sys.stderr, flush=True)


def deploy_timesteps(curve: dict[str, float], reference: float, tolerance: float = 0.01) -> int:
    """The smallest T whose accuracy is within ``tolerance`` of the ANN's (else the largest T tried)."""
    steps = sorted(int(t) for t in curve)
    return next((t for t in steps if curve[str(t)] >= reference - tolerance), steps[-1])


def conversion_stage(out: Path, context: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Train the digits CNN as an ANN, convert it (plain ReLU and QCFS fine-tuned), plot accuracy vs T."""
    from converters.pipeline import DEFAULT_TIMESTEPS, demo_conversion

    results = demo_conversion(out, context["options"].get("device"), log=_log)
    reference, qcfs_reference = results["ann_accuracy"], results["qcfs_ann_accuracy"]
    relu_curve, qcfs_curve = results["snn_accuracy"], results["qcfs_snn_accuracy"]
    steps = deploy_timesteps(relu_curve, reference)
    context.setdefault("networks", []).append({"label": f"converted SNN (T = {steps})", "path": results["snn_path"],
                                               "timesteps": steps, "converted": True})
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
        "| SNN (ReLU ANN) | " + " | ".join(f"{100 * relu_curve[str(t)]:.2f}" for t in DEFAULT_TIMESTEPS) + " |",
        "| SNN (QCFS ANN) | " + " | ".join(f"{100 * qcfs_curve[str(t)]:.2f}" for t in DEFAULT_TIMESTEPS) + " |",
        "",
        "![accuracy versus timesteps](conversion.png)",
        "",
    ]
    results["headline"] = [["ANN accuracy (ReLU / QCFS)", f"{100 * reference:.2f}% / {100 * qcfs_reference:.2f}%"],
                           [f"SNN accuracy at T = {steps} (ReLU ANN)", f"{100 * relu_curve[str(steps)]:.2f}%"],
                           [f"SNN accuracy at T = {DEFAULT_TIMESTEPS[-1]} (ReLU ANN)",
                            f"{100 * relu_curve[str(DEFAULT_TIMESTEPS[-1])]:.2f}%"]]
    return results, lines


conversion_stage.order = 10  # type: ignore[attr-defined]
