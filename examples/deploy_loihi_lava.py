"""Compile a small trained spiking network for Loihi 2, run it in Lava, and check it against
spikeforge's bit-exact emulation of the chip's integer arithmetic.

What it shows: the Loihi path step by step, with the lower-level API that ``snn deploy``
(``hardware.lava.deploy.deploy``) is built from:

1. ``compile_network``: quantise weights (8 bit), thresholds, biases and decays to Loihi 2's
   fixed point (the report lists every quantisation error);
2. ``LoihiNetwork.quantise_input``: the analog input becomes graded 8-bit spikes;
3. ``emulate``: the same integer arithmetic in torch (fast, batched);
4. ``run_in_lava``: real Lava processes (lava-nc 0.10.0, ``Loihi2SimCfg``, bit-accurate models),
   run in the ``.venv-lava`` environment through a subprocess, samples streamed back to back.

The two must agree spike for spike in every layer and on the readout membrane.

Needs ``.venv-lava`` (Python 3.10, lava-nc 0.10.0): build it with ``make lava-env``. Without it
the script says so and exits with status 2.

Run it::

    .venv/bin/python examples/deploy_loihi_lava.py             # 20 test digits
    .venv/bin/python examples/deploy_loihi_lava.py --quick     # 5 digits, brief training (CI)

It prints the accuracies (float, emulation, Lava) and how many samples agree spike for spike,
and writes ``lava_vs_emulation.png`` (spikes per layer, Lava next to the emulation, and one
digit's readout membrane in Lava, the emulation and the float network) into ``--out``
(default ``examples-output/deploy_loihi_lava``). The whole job on the command line:
``snn deploy --model model.pt --backend lava --samples 20``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

import snn
from hardware.lava.compile import compile_network
from hardware.lava.driver import lava_python, run_in_lava
from hardware.lava.emulate import emulate
from snn import data


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("examples-output/deploy_loihi_lava"))
    parser.add_argument("--quick", action="store_true", help="tiny settings for a smoke test (CI)")
    args = parser.parse_args()

    try:  # check the Lava environment first: no point training a network we cannot run
        lava_python()
    except snn.SpikeforgeError as error:
        print(f"deploy_loihi_lava: {error}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    epochs, timesteps, samples = (3, 8, 5) if args.quick else (20, 8, 20)

    # --- a small spiking MLP, trained with surrogate gradients ---
    split = data.load_digits_split()
    train_loader, test_loader = data.make_loaders(split, batch_size=64)
    torch.manual_seed(0)
    # reset="zero" is Loihi's own LIF reset, so the deployed network is the trained one (a subtract
    # reset would be changed to zero, or kept with compile_network(reset="subtract"), simulation only).
    model = snn.Sequential(nn.Flatten(), nn.Linear(64, 64), snn.LIF(beta=0.9, reset="zero"),
                           nn.Linear(64, 32), snn.LIF(beta=0.9, reset="zero"),
                           nn.Linear(32, 10), snn.Integrator(), input_shape=(1, 8, 8))
    task = snn.Task(timesteps)
    snn.fit(model, task, train_loader, test_loader, snn.FitConfig(epochs=epochs, device="cpu", progress=False))
    model.eval()

    # --- compile to Loihi 2 fixed point ---
    net = compile_network(model)
    for name, r in net.report()["layers"].items():  # the full quantisation report is a dict per layer
        print(f"layer {name}: {r['kind']}, {r['neurons']} neurons, vth {r['vth']}, weight error "
              f"{100 * r['weight_rel_rms_error']:.2f}% (relative RMS), beta {r['beta_loihi']:.5f}")

    x, y = split.x_test[:samples], split.y_test[:samples]
    encoded = task.encode(x)                 # [T, B, 1, 8, 8] floats in [0, 1]
    q = net.quantise_input(encoded)          # the same as integers: graded spikes round(L x)

    # --- the torch emulation (delay=False: every layer sees its source's spikes of the same step,
    # as in torch; the streamed Lava run below cuts each layer's window to match) ---
    em = emulate(net, q, delay=False)
    # --- Lava: samples [S, T, ...] played back to back, each layer reset when its sample arrives ---
    lava = run_in_lava(net, q.transpose(0, 1).numpy(), mode="stream", steps_per_sample=timesteps)

    # Emulation tensors are [T, B, N]; the Lava run's are [S, T, N].
    em_spikes = {k: v.transpose(0, 1).numpy() for k, v in em.spikes.items()}
    em_membrane = {k: v.transpose(0, 1).numpy() for k, v in em.membrane.items()}
    identical = np.ones(samples, dtype=bool)
    for name, s in em_spikes.items():
        identical &= (lava.spikes[name] == s).all(axis=(1, 2))
    for name, v in em_membrane.items():
        identical &= (lava.membrane[name] == v).all(axis=(1, 2))

    readout = net.readout.name  # the Integrator became a LIF that never fires; its v is read every step

    def accuracy(membrane: np.ndarray) -> float:  # [S, T, 10] -> task's readout (mean membrane)
        return float((task.predict(torch.from_numpy(membrane).double().transpose(0, 1)) == y).double().mean())

    with torch.no_grad():
        float_out = model(encoded)
    float_accuracy = float((task.predict(float_out) == y).double().mean())

    plot = _plot(args.out / "lava_vs_emulation.png", lava, em_spikes, readout, em_membrane[readout],
                 lava.membrane[readout], float_out[:, 0, int(y[0])].numpy(), int(y[0]),
                 64 * net.readout.scale)  # v is stored in units of 64 * scale per float unit
    print(f"Lava run: {lava.seconds:.1f} s for {samples} samples x {timesteps} steps; plot: {plot}")
    print(f"accuracy on {samples} test digits: float {100 * float_accuracy:.1f}%, "
          f"emulation {100 * accuracy(em_membrane[readout]):.1f}%, "
          f"Lava {100 * accuracy(lava.membrane[readout]):.1f}%")
    print(f"Lava vs emulation: {int(identical.sum())}/{samples} samples identical spike for spike")
    return 0 if identical.all() else 1


def _plot(path: Path, lava, em_spikes: dict, readout: str, em_readout: np.ndarray, lava_readout: np.ndarray,
          float_trace: np.ndarray, label: int, unit: float) -> Path:
    fig = Figure(figsize=(10, 4), layout="constrained")
    counts_ax, trace_ax = fig.subplots(1, 2)
    names = [n for n in em_spikes if n != readout]  # the readout LIF never fires
    where = np.arange(len(names))
    samples = len(lava_readout)
    counts_ax.bar(where - 0.2, [lava.spikes[n].sum() / samples for n in names], 0.4, label="Lava")
    counts_ax.bar(where + 0.2, [em_spikes[n].sum() / samples for n in names], 0.4, label="emulation")
    counts_ax.set_xticks(where, [f"layer {n}" for n in names])
    counts_ax.set_ylabel("spikes per sample")
    counts_ax.set_title("spikes per layer")
    counts_ax.legend()
    steps = np.arange(len(float_trace))
    trace_ax.plot(steps, float_trace, color="gray", linewidth=4, alpha=0.5, label="float network")
    trace_ax.plot(steps, lava_readout[0, :, label] / unit, marker="o", label="Lava")
    trace_ax.plot(steps, em_readout[0, :, label] / unit, linestyle="--", marker="x", label="emulation")
    trace_ax.set_xlabel("time step")
    trace_ax.set_ylabel("readout membrane (float units)")
    trace_ax.set_title(f"sample 0: membrane of class {label}")
    trace_ax.legend()
    fig.savefig(path, format="png", dpi=120)
    return path


if __name__ == "__main__":
    sys.exit(main())
