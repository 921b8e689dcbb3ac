"""Energy reports: per-layer table (terminal and JSON), totals, SNN/ANN ratio, and two PNG plots.

- :func:`layer_table` prints the counts of every layer and its energy on each profile;
- :func:`estimate_json` is the JSON of one network on one profile (``energy_per_inference_j``
  plus the per-layer ``synaptic_ops``, ``macs``, ``neuron_updates``, ``spikes``,
  ``activation_sparsity`` and ``energy_j``), with what is unpriced or covered, and why;
- :func:`plot_layer_energy` draws a bar per layer and per (network, profile);
- :func:`plot_pareto` draws accuracy against energy per inference across timesteps.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from matplotlib.figure import Figure

from hardware.energy.counting import NetworkCounts
from hardware.energy.profiles import Estimate
from snn.errors import SpikeforgeError
from snn.fileio import atomic_path


def format_joules(value: float | None) -> str:
    if value is None:
        return "-"
    if value == 0:
        return "0 J"
    for scale, unit in ((1, "J"), (1e-3, "mJ"), (1e-6, "uJ"), (1e-9, "nJ"), (1e-12, "pJ")):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value:.3g} J"


def estimate_json(counts: NetworkCounts, estimate: Estimate) -> dict[str, Any]:
    """One network on one profile: total, per-layer counts and energy, unpriced and covered terms."""
    layers = [{"name": layer.name, "type": layer.module, "input": layer.input, "synaptic_ops": layer.synaptic_ops,
               "macs": layer.macs, "neuron_updates": layer.neuron_updates, "spikes": layer.spikes,
               "activations": layer.activations, "activation_sparsity": layer.activation_sparsity,
               "weight_reads": layer.weight_reads, "state_reads": layer.state_reads,
               "state_writes": layer.state_writes, "energy_j": estimate.by_layer.get(layer.name, 0.0)}
              for layer in counts.layers]
    return {**estimate.as_dict(), "layers": layers, "timesteps": counts.timesteps,
            "constants": {k: c.as_dict() for k, c in estimate.profile.constants.items()}}


def ratio(snn: Estimate, ann: Estimate) -> float | None:
    """SNN energy / ANN energy; None when either side has unpriced counts (the ratio would mislead)."""
    if not (snn.complete and ann.complete) or ann.total_j == 0:
        return None
    return snn.total_j / ann.total_j


def layer_table(title: str, counts: NetworkCounts, estimates: Sequence[Estimate], notes: bool = True) -> str:
    """A fixed-width table: one row per layer, counts per inference and energy per profile.

    Below it: every unpriced count or term, and (with ``notes``) each profile's caveats.
    """
    head = ["layer", "type", "input", "syn ops", "MACs", "updates", "spikes", "sparsity"]
    head += [e.profile.name for e in estimates]
    rows = []
    for layer in counts.layers:
        sparsity = layer.activation_sparsity
        rows.append([layer.name, layer.module, layer.input, f"{layer.synaptic_ops:,.0f}", f"{layer.macs:,.0f}",
                     f"{layer.neuron_updates + layer.activations:,.0f}", f"{layer.spikes:,.0f}",
                     "-" if sparsity is None else f"{sparsity:.3f}"]
                    + [format_joules(e.by_layer.get(layer.name, 0.0)) for e in estimates])
    totals = counts.totals()
    rows.append(["total", "", "", f"{totals['synaptic_ops']:,.0f}", f"{totals['macs']:,.0f}",
                 f"{totals['neuron_updates'] + totals['activations']:,.0f}", f"{totals['spikes']:,.0f}",
                 "-" if counts.activation_sparsity is None else f"{counts.activation_sparsity:.3f}"]
                + [format_joules(e.total_j) for e in estimates])
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    line = lambda cells: "  ".join(str(c).rjust(w) if i >= 3 else str(c).ljust(w)  # noqa: E731
                                   for i, (c, w) in enumerate(zip(cells, widths)))
    out = [f"{title} (per inference, T = {counts.timesteps})", line(head), line(["-" * w for w in widths])]
    out += [line(r) for r in rows]
    for estimate in estimates:
        for item in estimate.unpriced:
            what = item["count"] or item["term"]
            where = f" in {item['layer']} ({item['value']:,.0f})" if item.get("layer") else ""
            out.append(f"  unpriced on {estimate.profile.name}: {what}{where}: {item['reason']}")
        for note in estimate.profile.notes if notes else ():
            out.append(f"  note ({estimate.profile.name}): {note}")
    return "\n".join(out)


def events_table(title: str, counts: NetworkCounts, estimates: Sequence[Estimate], notes: bool = True) -> str:
    """A compiled network's hardware events per population / connection and their energy on each profile."""
    head = ["population", "type", "syn events", "kind", "visits", "soma work", "spikes", "packets", "hops E-W",
            "hops N-S"] + [e.profile.name for e in estimates]
    number = lambda v: f"{v:,.0f}" if v else "-"  # noqa: E731
    rows = [[layer.name, layer.module, number(layer.synaptic_ops), layer.synapse_kind or "-",
             number(layer.neuron_visits), number(layer.soma_updates), number(layer.spikes), number(layer.packets),
             number(layer.hops_east_west), number(layer.hops_north_south)]
            + [format_joules(e.by_layer.get(layer.name, 0.0)) for e in estimates] for layer in counts.layers]
    totals = counts.totals()
    rows.append(["total", "", number(totals["synaptic_ops"]), "", number(totals["neuron_visits"]),
                 number(totals["soma_updates"]), number(totals["spikes"]), number(totals["packets"]),
                 number(totals["hops_east_west"]), number(totals["hops_north_south"])]
                + [format_joules(e.total_j) for e in estimates])
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    line = lambda cells: "  ".join(str(c).ljust(w) if i in (0, 1, 3) else str(c).rjust(w)  # noqa: E731
                                   for i, (c, w) in enumerate(zip(cells, widths)))
    out = [f"{title} (per inference, T = {counts.timesteps})", line(head), line(["-" * w for w in widths])]
    out += [line(r) for r in rows]
    for estimate in estimates:
        parts = ", ".join(f"{k} {format_joules(v)}" for k, v in estimate.by_component.items())
        out.append(f"  {estimate.profile.name}: {parts}")
        for item in estimate.unpriced:
            what = item["count"] or item["term"]
            out.append(f"  unpriced on {estimate.profile.name}: {what}: {item['reason']}")
        for note in estimate.profile.notes if notes else ():
            out.append(f"  note ({estimate.profile.name}): {note}")
    return "\n".join(out)


def explain_band(lower: Estimate, upper: Estimate) -> str:
    """One line: how far apart two estimates of the same run are and which terms make the difference."""
    if lower.total_j <= 0:
        return f"{upper.profile.name}: {format_joules(upper.total_j)}; {lower.profile.name} prices nothing"
    share = lambda e: sorted(((v / e.total_j, k) for k, v in e.by_component.items() if e.total_j), reverse=True)  # noqa: E731
    top = lambda e: ", ".join(f"{k} {100 * f:.0f}%" for f, k in share(e)[:3])  # noqa: E731
    gap = {k: upper.by_component.get(k, 0.0) - lower.by_component.get(k, 0.0)
           for k in set(upper.by_component) | set(lower.by_component)}
    driver = max(gap, key=lambda k: gap[k])
    return (f"{upper.profile.name} is {upper.total_j / lower.total_j:.2f}x {lower.profile.name}: most of the "
            f"difference is {driver} energy (+{format_joules(gap[driver])}); {upper.profile.name}: {top(upper)}; "
            f"{lower.profile.name}: {top(lower)}")


def plot_layer_energy(bars: Mapping[str, tuple[NetworkCounts, Estimate]], path: str | os.PathLike,
                      title: str = "energy per inference by layer") -> Path:
    """Grouped bars: one group per layer name, one bar per label (e.g. 'SNN on loihi')."""
    if not bars:
        raise SpikeforgeError("nothing to plot: give at least one priced network")
    names: list[str] = []
    for counts, _ in bars.values():
        names += [layer.name for layer in counts.layers if layer.name not in names]
    fig = Figure(figsize=(max(6.4, 0.8 * len(names) + 2), 4.2), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / len(bars)
    for index, (label, (_, estimate)) in enumerate(bars.items()):
        values = [max(estimate.by_layer.get(name, 0.0), 1e-18) for name in names]
        positions = [i + (index - (len(bars) - 1) / 2) * width for i in range(len(names))]
        suffix = "" if estimate.complete else " (incomplete: unpriced terms)"
        ax.bar(positions, values, width, label=f"{label}: {format_joules(estimate.total_j)}{suffix}")
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set_yscale("log")
    ax.set_ylabel("energy per inference (J)")
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    return Path(path)


def plot_pareto(curves: Mapping[str, Sequence[tuple[int, float, float]]], path: str | os.PathLike,
                references: Mapping[str, tuple[float, float]] | None = None,
                title: str = "accuracy versus energy per inference",
                bands: Mapping[str, tuple[Sequence[tuple[int, float, float]], Sequence[tuple[int, float, float]]]]
                | None = None) -> Path:
    """``curves``: label -> [(T, energy J, accuracy in [0, 1])]; ``references``: label -> (J, accuracy);
    ``bands``: label -> (lower curve, upper curve) of the same runs (two estimates of one activity), drawn as a
    shaded band between their energies with both edges."""
    if (not curves and not bands) or any(not points for points in curves.values()):
        raise SpikeforgeError("nothing to plot: give at least one non-empty accuracy-energy curve")
    fig = Figure(figsize=(6.4, 4.4), layout="constrained")
    ax = fig.subplots()
    for label, (low, high) in (bands or {}).items():
        low, high = sorted(low, key=lambda p: p[0]), sorted(high, key=lambda p: p[0])
        acc = [100 * p[2] for p in low]
        line = ax.plot([p[1] for p in low], acc, marker="o", markersize=3, linewidth=1)[0]
        ax.plot([p[1] for p in high], [100 * p[2] for p in high], marker="o", markersize=3, linewidth=1,
                color=line.get_color())
        ax.fill_betweenx(acc, [p[1] for p in low], [p[1] for p in high], alpha=0.25, color=line.get_color(),
                         label=label)
        for steps, energy, accuracy in high:
            ax.annotate(f"T={steps}", (energy, 100 * accuracy), textcoords="offset points", xytext=(3, -10),
                        fontsize=7)
    for label, points in curves.items():
        points = sorted(points, key=lambda p: p[0])
        ax.plot([p[1] for p in points], [100 * p[2] for p in points], marker="o", label=label)
        for steps, energy, accuracy in points:
            ax.annotate(f"T={steps}", (energy, 100 * accuracy), textcoords="offset points", xytext=(3, -10),
                        fontsize=7)
    for label, (energy, accuracy) in (references or {}).items():
        if math.isfinite(energy) and energy > 0:
            ax.plot([energy], [100 * accuracy], marker="*", markersize=12, linestyle="none", label=label)
    ax.set_xscale("log")
    ax.set_xlabel("energy per inference (J)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    return Path(path)
