"""Torch integer emulation vs Lava's CPU simulation of the same Loihi 2 network, per sample-step.

    .venv/bin/python benchmarks/loihi_emulation.py [--model CKPT] [--samples 40] [--batch 512]

Both run the digits CNN (the trained checkpoint with --model, else a seeded random one of the
same architecture) compiled to Loihi 2 fixed point, on the same quantised digits. Lava runs
``--samples`` samples streamed through real processes with Loihi2SimCfg(select_tag="fixed_pt")
(wall time of the whole run, as a user waits for it); the emulation runs ``--batch`` samples
in one batch on CPU (and CUDA when present). Both are checked spike for spike on the Lava
samples first. Prints seconds per sample-step and the ratio (target: emulation >= 100x faster).
Needs .venv-lava ('make lava-env').
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from hardware.lava.compile import compile_network
from hardware.lava.driver import run_in_lava
from hardware.lava.emulate import emulate
from snn import data
from snn.checkpoint import load_checkpoint
from snn.models import build_cnn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--timesteps", type=int, default=8)
    args = parser.parse_args()
    if args.model:
        model = load_checkpoint(args.model).model.eval()
    else:
        torch.manual_seed(0)
        model = build_cnn((1, 8, 8), 10, reset="zero").eval()
    net = compile_network(model)
    split = data.load_digits_split()
    x = split.x_test.repeat(1 + args.batch // len(split.x_test), 1, 1, 1)[:args.batch]
    q = net.quantise_input(x.unsqueeze(0).expand(args.timesteps, *x.shape))

    lava = run_in_lava(net, q[:, :args.samples].transpose(0, 1).numpy(), mode="stream", steps_per_sample=args.timesteps)
    em = emulate(net, q[:, :args.samples], delay=False)
    same = all(np.array_equal(lava.spikes[k], s.transpose(0, 1).numpy()) for k, s in em.spikes.items())
    lava_per = lava.seconds / (args.samples * args.timesteps)
    print(f"network: {' -> '.join(f'{layer.kind}[{layer.size}]' for layer in net.layers)}, T = {args.timesteps}")
    print(f"spike-for-spike identical on {args.samples} samples: {same}")
    print(f"Lava Loihi2SimCfg fixed_pt: {lava.seconds:.2f} s for {args.samples} samples "
          f"-> {1e3 * lava_per:.3f} ms per sample-step")
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        emulate(net, q[:, :8], delay=False, device=device)  # warm-up
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        emulate(net, q, delay=False, device=device)
        if device == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        per = seconds / (args.batch * args.timesteps)
        print(f"torch emulation ({device}, batch {args.batch}): {seconds:.3f} s -> {1e3 * per:.4f} ms per sample-step; "
              f"ratio Lava / emulation = {lava_per / per:.0f}x")


if __name__ == "__main__":
    main()
