"""``snn simulate`` and the demo stage "brian2" (the demo's networks re-run in Brian2).

``snn simulate --model PATH --backend {torch,brian2} --dataset digits --samples N
[--timesteps T] [--compare] [--target numpy|cython|cpp_standalone] [--batch B] [--json]`` prints accuracy,
spike counts per layer and wall time; ``--compare`` adds the fraction of samples whose
spike trains equal the torch (float64) reference exactly.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from snn.app.options import add_data_options, add_json_flag, positive_int
from snn.fileio import write_json
from snn.names import MAX_TIMESTEPS
from snn.resources import bounded_int

VERB_HELP = "run a trained network on torch or Brian2 (and compare)"
# The parser's copies of hardware.brian2.simulate.BACKENDS and hardware.brian2.targets.TARGETS, which
# import Brian2 and torch (tests/test_cli_startup.py checks they agree).
BACKENDS = ("torch", "brian2")
TARGETS = ("numpy", "cython", "cpp_standalone")
DEMO_SAMPLES = 200


def _cmd_simulate(args: argparse.Namespace) -> dict[str, Any]:
    from hardware.brian2.simulate import simulate
    return simulate(args.model, backend=args.backend, dataset=args.dataset, samples=args.samples,
                    compare=args.compare, target=args.target, batch=args.batch, seed=args.seed,
                    data_dir=args.data_dir, timesteps=args.timesteps)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("simulate", help=VERB_HELP)
    parser.add_argument("--model", required=True, help="checkpoint written by 'snn train' or 'snn convert'")
    parser.add_argument("--backend", default="brian2", choices=BACKENDS)
    parser.add_argument("--timesteps", type=bounded_int(1, MAX_TIMESTEPS), default=None,
                        help="steps per sample (default: the checkpoint's; a converted network runs at any T)")
    add_data_options(parser, device=False, seed_help="data split and rate-encoder seed", dataset_help=None)
    parser.add_argument("--samples", type=positive_int, default=20, help="test samples to simulate")
    parser.add_argument("--compare", action="store_true", help="also run torch and report exact spike agreement")
    parser.add_argument("--target", default="numpy", choices=TARGETS, help="Brian2 code-generation target")
    parser.add_argument("--batch", type=positive_int, default=None,
                        help="samples simulated side by side in Brian2 (default: automatic)")
    add_json_flag(parser)
    parser.set_defaults(run=_cmd_simulate)


def brian2_stage(out: Path, context: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Demo stage: every network the demo made (the trained SNN, the converted SNN) on ``DEMO_SAMPLES`` test
    digits (or the demo's ``--samples``) in Brian2, compared with torch."""
    from hardware.brian2.simulate import simulate

    networks = context["networks"]
    samples = context["options"].get("samples") or DEMO_SAMPLES
    runs = {}
    for network in networks:
        print(f"[snn demo] brian2: re-running the {network['label']} on {samples} test samples", file=sys.stderr)
        runs[network["label"]] = simulate(network["path"], backend="brian2", samples=samples, compare=True,
                                          timesteps=network["timesteps"])
    write_json(Path(out) / "brian2.json", runs)
    rows, notes = [], []
    for label, r in runs.items():
        cmp = r["compare"]
        rows.append(f"| {label} | {r['timesteps']} | {r['synapses'] // r['batch']:,} | {cmp['matching_samples']} / "
                    f"{cmp['samples']} ({100 * cmp['match_fraction']:.1f}%) | {100 * cmp['prediction_agreement']:.1f}% "
                    f"| {max(cmp['readout_max_abs_diff'].values(), default=0.0):.2e} | {100 * r['accuracy']:.1f}% | "
                    f"{r['wall_seconds']:.1f} s |")
        counts = ", ".join(f"layer {k}: {v:.1f}" for k, v in r["spikes_per_sample"].items())
        notes.append(f"{label}: spikes per sample {counts}.")
    lines = [
        "## Cross-simulator check: Brian2",
        "",
        f"Each network re-run in Brian2 {_brian2_version()} (discrete-time contract, conv layers expanded to "
        f"synapses, BatchNorm folded, {next(iter(runs.values()))['target']} target) against the torch reference in "
        "float64.",
        "",
        "| network | T | synapses per sample | samples with identical spike trains (all layers) | prediction agreement "
        "| readout max abs difference | Brian2 accuracy | wall time |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        *notes,
        "",
    ]
    headline = [[f"{label}: identical spike trains", f"{r['compare']['matching_samples']} / {r['compare']['samples']}"]
                for label, r in runs.items()]
    return {"networks": runs, "headline": headline}, lines


brian2_stage.order = 40  # type: ignore[attr-defined]


def _brian2_version() -> str:
    import brian2
    return brian2.__version__
