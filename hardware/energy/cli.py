"""``snn energy`` and the demo's energy stage (registered as entry points).

``snn energy --snn PATH [--ann package.module:factory --weights ann.pt] --dataset digits
--timesteps 4,8,16 --profile loihi,cmos45 [--samples N] [--out DIR] [--json]`` runs the job
:func:`hardware.energy.run.run_energy`: it simulates the SNN (``snn convert``'s ``snn.pt`` or
``snn train``'s ``model.pt``) on the test split at every T, counts its operations, and prices
the counts at the largest T on every profile; the ANN (BatchNorm folded, as in the conversion)
is counted once and priced on the same profiles. The Loihi profiles price the network compiled
for Loihi (hardware events on a core placement, with latency per inference), the pre-silicon
bound and the calibrated estimate side by side. Registration imports nothing heavy.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from snn.app.options import add_data_options, add_json_flag, positive_int
from snn.errors import SpikeforgeError

VERB_HELP = "energy per inference of an SNN (and its ANN) on hardware profiles"
DEMO_TIMESTEPS = (2, 4, 8, 16, 32, 64)


def _log(message: str) -> None:
    print(f"[snn energy] {message}", file=sys.stderr, flush=True)


def _price_at(text: str | None) -> int | str | None:
    if text is None or text == "ann":
        return text
    try:
        return int(text)
    except ValueError:
        raise SpikeforgeError(f"--price-at {text!r} must be one of the --timesteps or 'ann'") from None


def _run(args: argparse.Namespace) -> dict[str, Any]:
    from converters.pipeline import parse_timesteps
    from hardware.energy.report import format_joules
    from hardware.energy.run import run_energy

    steps = parse_timesteps(args.timesteps) if args.timesteps else None
    result = run_energy(args.snn, args.ann, args.weights, args.dataset, steps, args.profile, args.samples, args.out,
                        args.data_dir, args.seed, args.strict, args.fallback, args.ann_profile,
                        _price_at(args.price_at))
    stream = sys.stderr if args.json else sys.stdout
    print(result.pop("table"), file=stream)
    if "ann_table" in result:
        print(result.pop("ann_table"), file=stream)
    if not args.json:  # the human summary: totals only
        summary = {}
        for name, block in result["profiles"].items():
            for net, key in (("snn", "SNN"), ("ann", "ANN")):
                if net in block:
                    complete = "" if block[net]["complete"] else " + unpriced counts (see above)"
                    summary[f"{key} on {name}"] = format_joules(block[net]["energy_per_inference_j"]) + complete
            if block.get("latency_per_inference_s") is not None:
                summary[f"SNN on {name}, latency"] = f"{1e6 * block['latency_per_inference_s']:.3g} us per inference"
        if "loihi_band" in result:
            summary["Loihi band"] = result["loihi_band"]["why"]
        return summary
    return result


def register(verbs: argparse._SubParsersAction) -> None:
    parser = verbs.add_parser("energy", help=VERB_HELP)
    parser.add_argument("--snn", required=True, help="snn convert's snn.pt or snn train's model.pt")
    parser.add_argument("--ann", default=None, help="package.module:factory of the dense ANN to compare with")
    parser.add_argument("--weights", default=None, help="state dict of the ANN (torch.save)")
    add_data_options(parser, device=False, dataset_help=None)
    parser.add_argument("--timesteps", default=None,
                        help="T, or a comma-separated list for the accuracy-energy plot (priced at the largest); "
                             "default: the checkpoint's T, 32 for a converted SNN")
    parser.add_argument("--profile", default="loihi,loihi-calibrated,cmos45",
                        help="comma-separated hardware profiles (loihi: the pre-silicon lower bound, "
                             "loihi-calibrated: SANA-FE's silicon-calibrated Loihi; both price the network compiled "
                             "for Loihi, placed on its cores)")
    parser.add_argument("--ann-profile", default="cmos45", help="profile of the reference ANN in the SNN/ANN ratio")
    parser.add_argument("--fallback", default=None,
                        help="price counts a profile cannot (e.g. MACs of a direct-encoded layer on loihi) on this "
                             "profile, as if run off-chip; default: list them as unpriced")
    parser.add_argument("--strict", action="store_true", help="an unpriced count is an error")
    parser.add_argument("--price-at", default=None,
                        help="T at which the tables are priced (default: the largest), or 'ann': the smallest T "
                             "within 1 accuracy point of the ANN")
    parser.add_argument("--samples", type=positive_int, default=None, help="first N test samples (default: all)")
    parser.add_argument("--out", default=None, help="folder for energy.json and the two plots")
    add_json_flag(parser)
    parser.set_defaults(run=_run, out_kind="folder")


def energy_stage(out: Path, context: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """ANN on 45 nm CMOS against the converted SNN on Loihi and 45 nm CMOS, on digits, with plots."""
    from hardware.energy.report import format_joules
    from hardware.energy.run import run_energy

    conversion = context["results"].get("conversion")
    if not conversion:
        raise SpikeforgeError("the energy stage needs the conversion stage's results (snn.pt and ann.pt)")
    _log("counting operations of the converted SNN and the ANN on digits")
    job = dict(snn_path=conversion["snn_path"], ann="converters.reference_models:digits_cnn",
               weights=conversion["ann_weights"], dataset="digits", timesteps=DEMO_TIMESTEPS,
               profiles="loihi,loihi-calibrated,cmos45", fallback="cmos45",
               samples=context["options"].get("samples"))
    result = run_energy(**job, out_dir=out / "energy", price_at="ann")
    table, ann_table = result.pop("table"), result.pop("ann_table")
    steps = result["timesteps"]
    profiles = result["profiles"]
    loihi, calibrated, cmos = profiles["loihi"], profiles["loihi-calibrated"], profiles["cmos45"]
    ann_j = result["ann"]["energy_per_inference_j"]
    show = lambda value: "n/a (unpriced terms)" if value is None else f"{value:.3g}"  # noqa: E731
    latency = lambda block: "-" if block.get("latency_per_inference_s") is None else \
        f"{1e6 * block['latency_per_inference_s']:.3g} us"  # noqa: E731
    accuracy = lambda block, key="loihi_accuracy": f"{100 * block.get(key, result['snn']['accuracy']):.2f}%"  # noqa: E731
    rows = [f"| ANN | 45 nm CMOS (fp32) | {format_joules(ann_j)} | 1 | - | {100 * result['ann']['accuracy']:.2f}% |",
            f"| SNN, T = {steps} | Loihi, pre-silicon lower bound (Davies 2018, Table 2) | "
            f"{format_joules(loihi['energy_per_inference_j'])} | {show(loihi['snn_to_ann_cmos45_ratio'])} | "
            f"{latency(loihi)} | {accuracy(loihi)} |",
            f"| SNN, T = {steps} | Loihi, calibrated to silicon (SANA-FE) | "
            f"{format_joules(calibrated['energy_per_inference_j'])} | {show(calibrated['snn_to_ann_cmos45_ratio'])} | "
            f"{latency(calibrated)} | {accuracy(calibrated)} |",
            f"| SNN, T = {steps} | 45 nm CMOS (fp32) | {format_joules(cmos['energy_per_inference_j'])} | "
            f"{show(cmos['snn_to_ann_cmos45_ratio'])} | - | {100 * result['snn']['accuracy']:.2f}% |"]
    band = result.get("loihi_band", {}).get("why", "")
    lines = [
        "## Energy and latency per inference",
        "",
        "The SNN on Loihi: the converted network compiled for Loihi (subtract resets kept), placed on Loihi 1's cores "
        "and emulated bit-exactly; its hardware events (synaptic events, soma visits and updates, spikes, packets "
        "per destination core, tile hops) are priced twice: with Davies et al., IEEE Micro 2018, Table 2 "
        "(pre-silicon simulation; 23.6 pJ per synaptic op is the table's *minimum*: a lower bound) and with "
        "SANA-FE's Loihi file (calibrated by its authors against Loihi silicon). Latency: SANA-FE's simple timing "
        "model. The SNN on 45 nm CMOS and the ANN: operation counts of the simulated activity (BatchNorm folded), "
        f"Horowitz, ISSCC 2014 (modelled; memory by SRAM size), on {result['samples']} digits test samples. "
        f"The table is priced at T = {steps}, the smallest T whose accuracy is within 1 point of the ANN's; the "
        "accuracy-energy plot shows every T, the two Loihi estimates as a band.",
        "",
        f"Why the two Loihi estimates differ: {band}",
        "",
        "| network | hardware | energy / inference | ratio to ANN | latency / inference | accuracy |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        "```",
        table,
        "",
        ann_table,
        "```",
        "",
        "![energy by layer (45 nm CMOS)](energy/energy_layers.png)",
        "",
        "![accuracy versus energy](energy/energy_pareto.png)",
        "",
    ]
    result["headline"] = [
        ["ANN on 45 nm CMOS", format_joules(ann_j)],
        [f"SNN (T = {steps}) on Loihi: bound - calibrated", f"{format_joules(loihi['energy_per_inference_j'])} - "
         f"{format_joules(calibrated['energy_per_inference_j'])}, {latency(calibrated)}"],
        [f"SNN (T = {steps}) on 45 nm CMOS", format_joules(cmos["energy_per_inference_j"])]]
    return result, lines


energy_stage.order = 20  # type: ignore[attr-defined]
