"""``snn deploy --backend lava`` and the demo stage "lava" (the digits network on Loihi 2 through Lava).

``snn deploy --model PATH --backend lava --dataset digits --samples N [--json]`` runs the job
:func:`hardware.lava.deploy.deploy` (its docstring lists the keys it reports and the
compile decisions). Registration imports nothing heavy; the job is imported when it runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from snn.app.options import add_data_options, add_json_flag, positive_int
from snn.errors import SpikeforgeError
from snn.fileio import write_json

VERB_HELP = "deploy a trained network to Loihi 2 through Lava and compare"
BACKENDS = ("lava",)
DEMO_SAMPLES = 100


def _cmd_deploy(args: argparse.Namespace) -> dict[str, Any]:
    from hardware.lava.deploy import deploy
    if args.backend not in BACKENDS:
        raise SpikeforgeError(f"unknown backend {args.backend!r}; choose one of {', '.join(BACKENDS)}")
    return deploy(args.model, args.dataset, args.samples, args.data_dir, args.seed, args.cfg, args.timeout)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("deploy", help=VERB_HELP)
    parser.add_argument("--model", required=True, help="checkpoint written by 'snn train'")
    parser.add_argument("--backend", default="lava", choices=BACKENDS)
    add_data_options(parser, device=False, dataset_help=None)
    parser.add_argument("--samples", type=positive_int, default=20, help="test samples to run")
    parser.add_argument("--cfg", default="sim", choices=("sim", "hw"),
                        help="sim: Loihi2SimCfg fixed_pt on CPU; hw: Loihi2HwCfg (needs lava-loihi)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds before the Lava run is stopped")
    add_json_flag(parser)
    parser.set_defaults(run=_cmd_deploy)


def deploy_stage(out: Path, context: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Demo stage: the trained digits CNN on ``DEMO_SAMPLES`` test digits (or the demo's ``--samples``) in
    Lava, against the emulation."""
    from hardware.lava.deploy import deploy

    samples = context["options"].get("samples") or DEMO_SAMPLES
    print(f"[snn demo] lava: deploying the digits network to Loihi 2 fixed point ({samples} samples in Lava)",
          file=sys.stderr)
    results = deploy(context["results"]["train"]["checkpoint"], samples=samples)
    write_json(Path(out) / "lava.json", results)
    counts = ", ".join(f"layer {k}: {v:.1f}" for k, v in results["spikes_per_sample"].items())
    notes = results["quantisation"]["notes"]
    lines = [
        "## Loihi 2 through Lava",
        "",
        f"The trained network compiled to Loihi 2 fixed point (8-bit weights, 24-bit state, zero reset) and run "
        f"as real Lava processes with {results['run_config']} on {results['samples']} test digits, against the "
        "torch integer emulation.",
        "",
        "| metric | value |",
        "|---|---|",
        f"| samples whose every spike matches the emulation | {100 * results['emulation_agreement']:.1f}% |",
        f"| Lava accuracy | {100 * results['lava_accuracy']:.1f}% |",
        f"| float SNN accuracy (same samples) | {100 * results['float_accuracy']:.1f}% |",
        f"| Lava wall time | {results['lava_seconds']:.1f} s |",
        f"| emulation wall time | {results['emulation_seconds']:.2f} s |",
        "",
        f"Spikes per sample: {counts}." + (f" Compile notes: {'; '.join(notes)}." if notes else ""),
        "",
    ]
    return results, lines


deploy_stage.order = 30  # type: ignore[attr-defined]
