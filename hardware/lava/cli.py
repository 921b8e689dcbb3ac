"""``snn deploy --backend lava`` and the demo stage "lava" (the demo's networks on Loihi 2 through Lava).

``snn deploy --model PATH --backend lava --dataset digits --samples N [--timesteps T]
[--reset zero|subtract] [--json]`` runs the job
:func:`hardware.lava.deploy.deploy` (its docstring lists the keys it reports and the
compile decisions); with ``--neuron sigma-delta [--message-bits 16|24]`` it runs
:func:`hardware.lava.sdn_deploy.deploy_sigma_delta` (a converted network as graded-spike
sigma-delta neurons). Registration imports nothing heavy; the job is imported when it runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from snn.app.options import add_data_options, add_json_flag, positive_int, positive_seconds
from snn.errors import SpikeforgeError
from snn.fileio import write_json
from snn.names import MAX_TIMESTEPS
from snn.resources import bounded_int

VERB_HELP = "deploy a trained network to Loihi 2 through Lava and compare"
BACKENDS = ("lava",)
DEMO_SAMPLES = 100
# The parser's copy of hardware.lava.compile.RESETS, which imports torch (tests/test_cli_startup.py checks they agree).
RESETS = ("zero", "subtract")
NEURONS = ("lif", "sigma-delta")
MESSAGE_BITS = (16, 24)   # hardware.lava.sdn_compile.MESSAGE_BITS


def _cmd_deploy(args: argparse.Namespace) -> dict[str, Any]:
    if args.backend not in BACKENDS:
        raise SpikeforgeError(f"unknown backend {args.backend!r}; choose one of {', '.join(BACKENDS)}")
    if args.neuron == "sigma-delta":
        if args.reset != "zero":
            raise SpikeforgeError("--reset applies to LIF neurons; sigma-delta neurons have no reset; drop --reset")
        from hardware.lava.sdn_deploy import deploy_sigma_delta
        return deploy_sigma_delta(args.model, args.dataset, args.samples, args.data_dir, args.seed, args.cfg,
                                  args.timeout, timesteps=args.timesteps, message_bits=args.message_bits)
    from hardware.lava.deploy import deploy
    return deploy(args.model, args.dataset, args.samples, args.data_dir, args.seed, args.cfg, args.timeout,
                  timesteps=args.timesteps, reset=args.reset)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("deploy", help=VERB_HELP)
    parser.add_argument("--model", required=True, help="checkpoint written by 'snn train' or 'snn convert'")
    parser.add_argument("--backend", default="lava", choices=BACKENDS)
    parser.add_argument("--timesteps", type=bounded_int(1, MAX_TIMESTEPS), default=None,
                        help="steps per sample (default: the checkpoint's; a converted network runs at any T)")
    add_data_options(parser, device=False, dataset_help=None)
    parser.add_argument("--samples", type=positive_int, default=20, help="test samples to run")
    parser.add_argument("--reset", default="zero", choices=RESETS,
                        help="zero: every layer resets to zero (Lava's LIF, runs on any Loihi 2); subtract: layers "
                             "that reset by subtraction keep it (a subtractive LIF model; Lava's simulator only)")
    parser.add_argument("--neuron", default="lif", choices=NEURONS,
                        help="lif: spiking LIF neurons (Lava's LIF); sigma-delta: a converted network as Lava's "
                             "SigmaDelta neurons with graded spikes (its ANN, one message per change; default T 1)")
    parser.add_argument("--message-bits", type=int, default=16, choices=MESSAGE_BITS,
                        help="sigma-delta: bits of a graded spike's payload (16: lava-dl's default)")
    parser.add_argument("--cfg", default="sim", choices=("sim", "hw"),
                        help="sim: Loihi2SimCfg fixed_pt on CPU; hw: Loihi2HwCfg (needs lava-loihi)")
    parser.add_argument("--timeout", type=positive_seconds, default=600.0,
                        help="seconds before the Lava run is stopped (above 0, at most a week)")
    add_json_flag(parser)
    parser.set_defaults(run=_cmd_deploy)


def _joules(value: float) -> str:
    from hardware.energy.report import format_joules
    return format_joules(value)


def deploy_stage(out: Path, context: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Demo stage: every network the demo made (the trained SNN, the converted SNN) on Loihi 2 through Lava,
    against the emulation; ``DEMO_SAMPLES`` test digits (or the demo's ``--samples``) shared between them."""
    from hardware.lava.deploy import deploy

    networks = context["networks"]
    samples = max(1, (context["options"].get("samples") or DEMO_SAMPLES) // len(networks))
    from hardware.lava.sdn_deploy import deploy_sigma_delta

    runs, graded = {}, {}
    for network in networks:
        print(f"[snn demo] lava: deploying the {network['label']} to Loihi 2 fixed point ({samples} samples in Lava)",
              file=sys.stderr)
        runs[network["label"]] = deploy(network["path"], samples=samples, timesteps=network["timesteps"])
        if network.get("converted"):
            print(f"[snn demo] lava: the {network['label']} as a sigma-delta network (graded spikes)", file=sys.stderr)
            graded[network["label"]] = deploy_sigma_delta(network["path"], samples=samples)
    write_json(Path(out) / "lava.json", {**runs, **{f"{k}, sigma-delta": v for k, v in graded.items()}})
    rows, notes = [], []
    for label, r in runs.items():
        traffic = r["placement"]["traffic"]
        rows.append(f"| {label} | {r['timesteps']} | {r['samples']} | {100 * r['emulation_agreement']:.1f}% | "
                    f"{100 * r['lava_accuracy']:.1f}% | {100 * r['float_accuracy_deployed_reset']:.1f}% | "
                    f"{100 * r['float_accuracy']:.1f}% | {r['placement']['cores_used']} | "
                    f"{traffic['packets_per_inference']:.0f} | {_joules(r['energy_per_inference_j']['loihi'])} - "
                    f"{_joules(r['energy_per_inference_j']['loihi-calibrated'])} | "
                    f"{1e6 * r['latency_per_inference_s']:.3g} us | {r['lava_seconds']:.1f} s |")
        counts = ", ".join(f"layer {k}: {v:.1f}" for k, v in r["spikes_per_sample"].items())
        notes.append(f"{label}: spikes per sample {counts}." + (
            f" Compile notes: {'; '.join(r['quantisation']['notes'])}." if r["quantisation"]["notes"] else ""))
    lines = [
        "## Loihi 2 through Lava",
        "",
        "Each network compiled to Loihi 2 fixed point (8-bit weights, 24-bit state, Loihi's zero reset) and run as "
        f"real Lava processes with {next(iter(runs.values()))['run_config']} on test digits, against the torch "
        "integer emulation. 'Float, zero reset' is the float SNN with every reset made Loihi's (what Lava should "
        "match up to quantisation); 'float, own reset' is the network as trained or converted.",
        "",
        "| network | T | samples | spike-exact vs emulation | Lava accuracy | float, zero reset | float, own reset "
        "| cores | packets / inference | energy / inference (Loihi: pre-silicon bound - calibrated) "
        "| latency / inference | Lava wall time |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        "Energy and latency of each Lava run: its hardware events on Loihi 1's cores (the chip both energy profiles "
        "describe), priced with Davies et al. 2018, Table 2 (pre-silicon, a lower bound) and with SANA-FE's "
        "silicon-calibrated Loihi file; latency from SANA-FE's simple timing model. "
        + " ".join(f"{label}: {r['energy']['why_the_two_differ']}." for label, r in runs.items()),
        "",
        *notes,
        "",
    ]
    if graded:
        lines += [
            "The converted network also as a sigma-delta network (Lava's Delta / SigmaDelta processes, graded "
            "spikes: the ANN itself, one message per change of an activation), one sample per step, each read "
            "after the network's depth in steps:",
            "",
            "| network | steps per sample | latency (steps) | exact vs emulation | Lava accuracy | ANN (float) "
            "| graded messages / inference | Lava wall time |",
            "|---|---|---|---|---|---|---|---|",
            *(f"| {label} | {r['timesteps']} | {r['latency_steps']} | {100 * r['emulation_agreement']:.1f}% | "
              f"{100 * r['lava_accuracy']:.1f}% | {100 * r['ann_accuracy']:.1f}% | "
              f"{r['graded_messages_per_inference']:.0f} ({r['message_bits']}-bit) | {r['lava_seconds']:.1f} s |"
              for label, r in graded.items()),
            "",
        ]
    headline = [[f"{label}: Lava accuracy, spike-exact", f"{100 * r['lava_accuracy']:.1f}%, "
                 f"{100 * r['emulation_agreement']:.0f}% of samples"] for label, r in runs.items()]
    headline += [[f"{label}: energy (bound - calibrated), latency",
                  f"{_joules(r['energy_per_inference_j']['loihi'])} - "
                  f"{_joules(r['energy_per_inference_j']['loihi-calibrated'])}, "
                  f"{1e6 * r['latency_per_inference_s']:.3g} us"] for label, r in runs.items()]
    headline += [[f"{label}, sigma-delta: Lava accuracy", f"{100 * r['lava_accuracy']:.1f}%"]
                 for label, r in graded.items()]
    return {"networks": runs, "sigma_delta": graded, "headline": headline}, lines


deploy_stage.order = 30  # type: ignore[attr-defined]
