"""Energy per inference of a spiking network and of the ANN it was converted from.

What it shows: ``hardware.energy``'s two steps, counting and pricing.

- **Counting** (``count_operations``): run a network under forward hooks and count what it did:
  synaptic operations (one accumulate per spike per outgoing synapse), MACs (analog inputs),
  neuron updates, spikes, memory reads and writes. For Loihi, ``hardware.lava.activity.
  loihi_activity`` counts the *compiled* network's hardware events instead (synaptic events by
  synapse kind, soma updates, spike packets and mesh hops on a core placement).
- **Pricing** (``price`` with a cited ``Profile``): each count times joules per operation.
  ``cmos45``: 45 nm CMOS arithmetic and SRAM (Horowitz, ISSCC 2014), for the dense ANN and for
  the SNN's simulated operations. ``loihi``: Loihi's pre-silicon figures (Davies et al. 2018,
  Table 2), a lower bound. ``loihi-calibrated``: SANA-FE's Loihi file, calibrated against
  silicon. The two Loihi estimates of the same run are shown side by side.

The ANN is a small version of ``converters.reference_models.DigitsCNN``, trained briefly on
scikit-learn's digits and converted with ``converters.convert``.

Run it::

    .venv/bin/python examples/energy_snn_vs_ann.py            # 540 test digits, T = 16
    .venv/bin/python examples/energy_snn_vs_ann.py --quick    # tiny settings (CI)

It prints the accuracies and the energy per inference on every profile, and writes
``energy.png`` (a bar per network and profile, log scale) into ``--out`` (default
``examples-output/energy_snn_vs_ann``). The whole job on the command line: ``snn energy``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from converters.ann_training import train_ann
from converters.convert import convert
from converters.reference_models import DigitsCNN
from converters.tracing import normalize
from hardware.energy.counting import count_operations
from hardware.energy.profiles import SANAFE_TIMING, get_profile, price
from hardware.energy.report import format_joules
from hardware.lava.activity import loihi_activity
from hardware.lava.compile import compile_network
from snn import data, encoders


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("examples-output/energy_snn_vs_ann"))
    parser.add_argument("--quick", action="store_true", help="tiny settings for a smoke test (CI)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    epochs, channels, hidden, steps, samples = (5, (8, 16), 32, 8, 64) if args.quick else (15, (16, 32), 64, 16, None)

    # --- an ANN, trained briefly, and the SNN converted from it ---
    split = data.load_digits_split()
    torch.manual_seed(0)
    ann = DigitsCNN(channels=channels, hidden=hidden)
    train_ann(ann, data.tensor_loader(split.x_train, split.y_train, 64, shuffle=True, seed=0), epochs=epochs,
              progress=False)
    snn_model = convert(ann, data.tensor_loader(split.x_train, split.y_train, 256), channelwise=True).eval()
    x, y = split.x_test[:samples], split.y_test[:samples]

    # --- counting ---
    # The ANN as deployed: BatchNorm folded into the convolutions, Dropout removed (as in the SNN).
    ann_counts, ann_out = count_operations(normalize(ann), x, kind="ann")
    # The SNN, direct-encoded: its first layer sees analog values (MACs), every later one spikes (ACs).
    snn_counts, snn_out = count_operations(snn_model, encoders.direct(x, steps))
    # The SNN compiled for Loihi (subtract resets kept, as it was converted; Lava's simulator runs
    # that model) and its hardware events on Loihi 1's cores, the chip both Loihi profiles describe.
    net = compile_network(snn_model, reset="subtract")
    activity = loihi_activity(net, net.quantise_input(encoders.direct(x, steps)), table="loihi1")

    # --- pricing (joules per inference) ---
    cmos = get_profile("cmos45")
    estimates = {
        "ANN\ncmos45": price(ann_counts, cmos),
        "SNN\ncmos45": price(snn_counts, cmos),
        "SNN on Loihi\nlower bound": price(activity.counts, get_profile("loihi")),
        "SNN on Loihi\ncalibrated": price(activity.counts, get_profile("loihi-calibrated")),
    }
    latency = SANAFE_TIMING.latency(activity.cores)["latency_per_inference_s"]

    ann_acc = float((ann_out.argmax(-1) == y).double().mean())
    snn_acc = float((snn_out[-1].argmax(-1) == y).double().mean())  # accumulated readout after T steps
    print(f"{len(y)} test digits: ANN accuracy {100 * ann_acc:.1f}%, SNN accuracy {100 * snn_acc:.1f}% at T = {steps}")
    print(f"SNN per inference: {snn_counts.total('synaptic_ops'):.3g} synaptic ops, {snn_counts.total('macs'):.3g} "
          f"MACs (first layer), {snn_counts.total('spikes'):.3g} spikes; ANN: {ann_counts.total('macs'):.3g} MACs")
    for label, e in estimates.items():
        unpriced = "" if e.complete else " (some counts unpriced: a lower figure)"
        print(f"{label.replace(chr(10), ' ')}: {format_joules(e.total_j)}{unpriced}")
    print(f"Loihi latency per inference (SANA-FE timing model): {1e6 * latency:.4g} us")
    plot = _plot(args.out / "energy.png", estimates, steps)
    ann_j = estimates["ANN\ncmos45"].total_j
    low, high = estimates["SNN on Loihi\nlower bound"].total_j, estimates["SNN on Loihi\ncalibrated"].total_j
    print(f"plot: {plot}")
    print(f"energy per inference: ANN {format_joules(ann_j)} (cmos45), SNN on Loihi {format_joules(low)} (lower "
          f"bound) to {format_joules(high)} (calibrated)")


def _plot(path: Path, estimates: dict, steps: int) -> Path:
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.subplots()
    labels = list(estimates)
    values = [estimates[k].total_j for k in labels]
    bars = ax.bar(np.arange(len(labels)), values, color=["gray", "tab:blue", "tab:orange", "tab:red"])
    ax.bar_label(bars, [format_joules(v) for v in values])
    ax.set_xticks(np.arange(len(labels)), labels)
    ax.set_yscale("log")
    ax.set_ylim(bottom=min(values) / 5)  # a log axis has no zero: start the bars well below the smallest
    ax.set_ylabel("energy per inference (J)")
    ax.set_title(f"digits CNN: ANN vs converted SNN (T = {steps})")
    fig.savefig(path, format="png", dpi=120)
    return path


if __name__ == "__main__":
    main()
