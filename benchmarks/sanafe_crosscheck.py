"""Our calibrated Loihi energy and latency against SANA-FE's own simulation, printed as ratios.

The two networks of ``tests/test_sanafe_crosscheck.py`` (a 64-32-10 LIF MLP on two-neuron cores,
14 tiles; a conv-conv-dense LIF network on 32-neuron cores), the same input spikes and the same
core mapping in both tools (``tests/sanafe_bridge.py`` builds the SANA-FE side from ours).
Needs ``sanafe`` (GPL-3.0; ``pip install -c constraints.txt -e ".[bench]"``).

    python benchmarks/sanafe_crosscheck.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from sanafe_bridge import run_sanafe  # noqa: E402
from test_sanafe_bridge import _cnn, _mlp, _spikes  # noqa: E402

from hardware.energy.profiles import get_profile, price  # noqa: E402
from hardware.lava.activity import loihi_activity  # noqa: E402
from hardware.lava.compile import compile_network  # noqa: E402
from hardware.lava.placement import LOIHI1, custom_limits, place  # noqa: E402


def main() -> None:
    profile = get_profile("loihi-calibrated")
    cases = {
        "MLP 64-32-10, 2 neurons per core": (_mlp(), dict(neurons_per_core=2, input_neurons_per_core=2), (20, 3, 0.3)),
        "CNN conv-conv-dense, 32 per core": (_cnn(), dict(neurons_per_core=32), (16, 2, 0.4)),
    }
    for name, (model, limits, (steps, batch, rate)) in cases.items():
        net = compile_network(model)
        placement = place(net, custom_limits(LOIHI1, **limits))
        q = _spikes(net, steps, batch, rate=rate)
        ours = loihi_activity(net, q, placement, delay=True)
        estimate = price(ours.counts, profile)
        latency = profile.timing.latency(ours.cores)["latency_per_inference_s"]
        theirs = run_sanafe(net, placement, q)
        print(f"{name}: {len(placement.cores)} cores, {ours.cores.tiles} tiles, T = {steps}, {batch} samples")
        for part in ("synapse", "soma", "network", "total"):
            mine = estimate.total_j if part == "total" else estimate.by_component[part]
            print(f"  {part:<8} ours {mine:.6e} J   SANA-FE {theirs['energy'][part]:.6e} J   "
                  f"ratio {mine / theirs['energy'][part]:.12f}")
        print(f"  latency  ours {latency:.6e} s   SANA-FE {theirs['sim_time']:.6e} s   "
              f"ratio {latency / theirs['sim_time']:.12f}")


if __name__ == "__main__":
    main()
