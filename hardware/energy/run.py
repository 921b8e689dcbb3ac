"""The job behind ``snn energy`` and the demo's energy stage: simulate, count, price, plot.

:func:`run_energy` simulates the SNN (``snn convert``'s ``snn.pt`` or ``snn train``'s
``model.pt``) on the test split at every T, counts its operations, and prices the counts at
one T on every profile; the ANN (BatchNorm folded, as in the conversion) is counted once
and priced on the same profiles.

The Loihi profiles price the network compiled for Loihi instead (:class:`LoihiEvents`): its
hardware events on a core placement made on the fly (the Lava backend counts them, reached
through the ``spikeforge.activity`` entry point), with latency per inference; ``loihi`` and
``loihi-calibrated`` side by side (``loihi_band``: the lower bound, the calibrated estimate and
why they differ). A network that does not compile leaves ``loihi`` on the simulated
operations (``not_compiled`` says why) and refuses ``loihi-calibrated``.
"""

from __future__ import annotations

import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn
from tqdm import tqdm

from converters.factory import build_ann
from converters.pipeline import check_fits
from converters.tracing import normalize
from hardware.energy.counting import NetworkCounts, OperationCounter
from hardware.energy.profiles import SANAFE_TIMING, Estimate, Profile, get_profile, parse_profiles, price
from hardware.energy.report import (
    estimate_json,
    events_table,
    explain_band,
    layer_table,
    plot_layer_energy,
    plot_pareto,
    ratio,
)
from snn import data
from snn.checkpoint import Checkpoint, load_checkpoint
from snn.errors import SpikeforgeError
from snn.fileio import write_json
from snn.training import Task

BATCH = 128


def _log(message: str) -> None:
    print(f"[snn energy] {message}", file=sys.stderr, flush=True)


def snn_parts(checkpoint: Checkpoint) -> tuple[nn.Module, Callable[[torch.Tensor, int], torch.Tensor],
                                               Callable[[torch.Tensor], torch.Tensor], int]:
    """(model, encode(x, T), predict(output), default T) of a checkpoint already read (``snn train``'s model.pt
    or ``snn convert``'s snn.pt: the same format)."""
    task = checkpoint.task
    steps = int(task.get("timesteps", 8))
    encoder, readout = task.get("encoder", "direct"), task.get("readout", "membrane_mean")
    generator = torch.Generator().manual_seed(0)
    encode = lambda x, t: Task(t, encoder, readout).encode(x, generator)  # noqa: E731
    return checkpoint.model.eval(), encode, Task(steps, encoder, readout).predict, steps


@torch.no_grad()
def count_snn(model: nn.Module, encode: Callable, predict: Callable, x: torch.Tensor, y: torch.Tensor,
              steps: int) -> tuple[NetworkCounts, float]:
    """Simulate ``x`` for ``steps`` under the counter: (counts per inference, accuracy)."""
    correct = 0
    starts = range(0, len(x), BATCH)
    with OperationCounter(model, "snn") as counter:
        for start in tqdm(starts, desc=f"counting, T = {steps}", unit="batch", leave=False, file=sys.stderr,
                          disable=len(starts) < 2):
            out = model(encode(x[start:start + BATCH], steps))
            correct += int((predict(out) == y[start:start + BATCH]).sum())
    return counter.counts().per_inference(), correct / len(x)


@torch.no_grad()
def count_ann(ann: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[NetworkCounts, float]:
    correct = 0
    with OperationCounter(ann, "ann") as counter:
        for start in range(0, len(x), BATCH):
            correct += int((ann(x[start:start + BATCH]).argmax(-1) == y[start:start + BATCH]).sum())
    return counter.counts().per_inference(), correct / len(x)


def _profile_block(snn: tuple[NetworkCounts, Estimate], ann: tuple[NetworkCounts, Estimate] | None) -> dict[str, Any]:
    block = {"snn": estimate_json(*snn)}
    block["energy_per_inference_j"] = snn[1].total_j
    if ann is not None:
        block["ann"] = estimate_json(*ann)
        block["ann_energy_per_inference_j"] = ann[1].total_j
        block["snn_to_ann_ratio"] = ratio(snn[1], ann[1])
    return block


def run_energy(snn_path: str | Path, ann: str | None = None, weights: str | Path | None = None,
               dataset: str = "digits", timesteps: Sequence[int] | None = None, profiles: str = "loihi,cmos45",
               samples: int | None = None, out_dir: str | Path | None = None, data_dir: str | None = None,
               seed: int | None = None, strict: bool = False, fallback: str | None = None,
               ann_profile: str = "cmos45", price_at: int | str | None = None) -> dict[str, Any]:
    """The job behind ``snn energy``; returns the JSON (and writes it and the plots under ``out_dir``).

    The tables are priced at ``price_at``: one of ``timesteps`` (default the largest), or
    ``"ann"``: the smallest T whose accuracy is within 1 point of the ANN's (the largest if
    none is). The accuracy-energy curve covers every T.
    """
    chosen = parse_profiles(profiles)
    reference = get_profile(ann_profile)
    spare = get_profile(fallback) if fallback else None
    if ann is None and weights is not None:
        raise SpikeforgeError("--weights needs --ann package.module:factory (the ANN they belong to)")
    checkpoint = load_checkpoint(snn_path)
    model, encode, predict, default_steps = snn_parts(checkpoint)
    split, _ = data.load_model_split(checkpoint.meta, f"checkpoint {snn_path}", dataset, data_dir, seed,
                                     checkpoint.task.get("encoder", "direct"), default_steps)
    count = len(split.x_test) if samples is None else min(samples, len(split.x_test))
    x, y = split.x_test[:count], split.y_test[:count]
    steps_list = sorted(set(timesteps)) if timesteps else [default_steps]
    curves: dict[int, tuple[NetworkCounts, float]] = {}
    for steps in steps_list:
        _log(f"simulating {count} samples at T = {steps}")
        curves[steps] = count_snn(model, encode, predict, x, y, steps)
    ann_counts = ann_estimates = ann_accuracy = None
    if ann is not None:
        built = build_ann(ann, weights)
        check_fits(built, split, ann)
        ann_model = normalize(built)  # BatchNorm folded, Dropout removed, as in the SNN
        ann_counts, ann_accuracy = count_ann(ann_model, x, y)
    if price_at == "ann":
        if ann_accuracy is None:
            raise SpikeforgeError("price_at='ann' needs the ANN (--ann) to compare accuracies with")
        close = [t for t, (_, a) in curves.items() if a >= ann_accuracy - 0.01]
        price_at = min(close) if close else steps_list[-1]
    if price_at is not None and price_at not in curves:
        raise SpikeforgeError(f"price_at T = {price_at} is not among the simulated timesteps {steps_list}")
    main_steps = steps_list[-1] if price_at is None else price_at
    counts, accuracy = curves[main_steps]

    def estimate(c: NetworkCounts, profile: Profile) -> Estimate:
        return price(c, profile, strict, None if profile.all_in else spare)

    events = LoihiEvents(chosen, steps_list, model, encode, predict, x, y)

    def on_events(p: Profile, steps: int) -> bool:
        return p.prices_events and events.has(p, steps)

    def counts_for(p: Profile, steps: int) -> tuple[NetworkCounts, float]:
        if on_events(p, steps):
            job = events.job(p, steps)
            return job["activity"].counts, job["accuracy"]
        if not p.rules:
            raise SpikeforgeError(f"profile {p.name!r} prices the network compiled for Loihi, which failed: "
                                  f"{events.error}")
        return curves[steps]

    snn_estimates = {p.name: estimate(counts_for(p, main_steps)[0], p) for p in chosen}
    result: dict[str, Any] = {"dataset": dataset, "samples": count, "timesteps": main_steps,
                              "snn": {"path": str(snn_path), "accuracy": accuracy, "counts": counts.as_dict()},
                              "fallback": fallback, "profiles": {},
                              # an all-in figure takes nothing on top: its unpriced counts stay listed
                              "fallback_not_applied": [p.name for p in chosen if spare and p.all_in]}
    if ann_counts is not None:
        ann_estimates = {p.name: price(ann_counts, p, strict) for p in [*chosen, reference] if p.rules}
        result["ann"] = {"factory": ann, "weights": None if weights is None else str(weights),
                         "accuracy": ann_accuracy, "counts": ann_counts.as_dict(), "reference_profile": reference.name,
                         "energy_per_inference_j": ann_estimates[reference.name].total_j}
    for p in chosen:
        snn_counts, snn_accuracy = counts_for(p, main_steps)
        ann_pair = None if ann_counts is None or p.name not in ann_estimates else (ann_counts, ann_estimates[p.name])
        block = _profile_block((snn_counts, snn_estimates[p.name]), ann_pair)
        if ann_counts is not None:
            block[f"snn_to_ann_{reference.name}_ratio"] = ratio(snn_estimates[p.name], ann_estimates[reference.name])
        block["latency_per_inference_s"] = None
        if on_events(p, main_steps):
            job = events.job(p, main_steps)
            block.update(events.block(p, job))
        elif p.prices_events and events.error:
            block["not_compiled"] = f"priced on the simulated operations: the network does not compile for Loihi " \
                                    f"({events.error})"
        block["pareto"] = [{"timesteps": t, "accuracy": counts_for(p, t)[1],
                            "energy_per_inference_j": estimate(counts_for(p, t)[0], p).total_j} for t in curves]
        result["profiles"][p.name] = block
    band = loihi_band(chosen, snn_estimates, main_steps, events)
    if band is not None:
        result["loihi_band"] = band
    simulated = [snn_estimates[p.name] for p in chosen if not on_events(p, main_steps)]
    tables = []
    if simulated:
        tables.append(layer_table("SNN", counts, simulated))
    for table in sorted({p.placement for p in chosen if on_events(p, main_steps)}):
        on_table = [p for p in chosen if on_events(p, main_steps) and p.placement == table]
        tables.append(events_table(f"SNN compiled for Loihi, hardware events on the {table} placement",
                                   events.job(on_table[0], main_steps)["activity"].counts,
                                   [snn_estimates[p.name] for p in on_table]))
    if band is not None:
        tables.append(f"Loihi band: {band['why']}")
    result["table"] = "\n\n".join(tables)
    if ann_counts is not None:
        result["ann_table"] = layer_table("ANN", ann_counts, [ann_estimates[p.name] for p in chosen
                                                              if p.name in ann_estimates], notes=False)
    if out_dir is not None:
        result["plots"] = write_plots(Path(out_dir), result, counts,
                                      {p.name: snn_estimates[p.name] for p in chosen if not on_events(p, main_steps)},
                                      ann_counts, ann_estimates, reference)
        result["json"] = str(write_json(Path(out_dir) / "energy.json", result))
    return result


class LoihiEvents:
    """The hardware events of the network compiled for Loihi, per placement table and T, for the profiles that
    price them (counted by the Lava backend through the ``spikeforge.activity`` entry point ``loihi``)."""

    def __init__(self, profiles: Sequence[Profile], steps_list: Sequence[int], model: nn.Module, encode: Callable,
                 predict: Callable, x: torch.Tensor, y: torch.Tensor) -> None:
        self.jobs: dict[tuple[str, int], dict[str, Any]] = {}
        self.error: str | None = None
        tables = sorted({p.placement for p in profiles if p.prices_events})
        if not tables:
            return
        provider = activity_provider()
        for table in tables:
            for steps in steps_list:
                _log(f"counting Loihi hardware events on {len(x)} samples at T = {steps} ({table} placement)")
                try:
                    self.jobs[(table, steps)] = provider(model, encode, predict, x, y, steps, table, progress=True)
                except SpikeforgeError as error:
                    self.error = str(error)
                    _log(f"the network does not compile for Loihi ({error}); the Loihi profiles that can price "
                         "simulated operations do so")
                    return

    def has(self, profile: Profile, steps: int) -> bool:
        return (profile.placement, steps) in self.jobs

    def job(self, profile: Profile, steps: int) -> dict[str, Any]:
        return self.jobs[(profile.placement, steps)]

    def block(self, profile: Profile, job: dict[str, Any]) -> dict[str, Any]:
        activity = job["activity"]
        timing = profile.timing or SANAFE_TIMING
        latency = timing.latency(activity.cores)
        if profile.timing is None:
            latency["note"] = f"{profile.name} has no latencies of its own: SANA-FE's calibrated Loihi latencies"
        return {"counts": "hardware events of the network compiled for Loihi", "loihi_accuracy": job["accuracy"],
                "reset": job["reset"], "events": activity.summary(),
                "placement": {k: job["placement"][k] for k in ("cores_used", "chips", "input_on_chip", "notes")},
                "latency_per_inference_s": latency["latency_per_inference_s"], "latency": latency}


def activity_provider() -> Callable[..., dict[str, Any]]:
    """The Lava backend's hardware-event counter (entry point ``spikeforge.activity``: ``loihi``)."""
    for entry in entry_points(group="spikeforge.activity"):
        if entry.name == "loihi":
            return entry.load()
    raise SpikeforgeError("the Loihi profiles count the compiled network's hardware events with the Lava backend "
                          "(entry point spikeforge.activity: loihi), which is not installed; reinstall spikeforge "
                          "(pip install -e .)")


def loihi_band(chosen: Sequence[Profile], estimates: dict[str, Estimate], steps: int,
               events: LoihiEvents) -> dict[str, Any] | None:
    """The pre-silicon lower bound and the calibrated estimate of the same run, side by side, and why they differ."""
    names = {p.name for p in chosen if p.prices_events and events.has(p, steps)}
    if not {"loihi", "loihi-calibrated"} <= names:
        return None
    low, high = estimates["loihi"], estimates["loihi-calibrated"]
    return {"lower_bound_j": low.total_j, "calibrated_j": high.total_j, "ratio": high.total_j / low.total_j
            if low.total_j else None, "lower_by_component_j": low.by_component,
            "calibrated_by_component_j": high.by_component, "why": explain_band(low, high)}


def write_plots(out: Path, result: dict[str, Any], counts: NetworkCounts, snn_estimates: dict[str, Estimate],
                ann_counts: NetworkCounts | None, ann_estimates: dict[str, Estimate] | None,
                reference: Profile) -> dict[str, str]:
    """The per-layer bars (profiles that price the simulated operations, and the ANN) and the accuracy-energy plot
    (the two Loihi estimates of the compiled network's events as a band)."""
    bars = {f"SNN on {name}": (counts, e) for name, e in snn_estimates.items()}
    references: dict[str, tuple[float, float]] = {}
    if ann_counts is not None and ann_estimates is not None:
        bars[f"ANN on {reference.name}"] = (ann_counts, ann_estimates[reference.name])
        references[f"ANN on {reference.name}"] = (ann_estimates[reference.name].total_j, result["ann"]["accuracy"])
    plots = {}
    if bars:
        plots["layers"] = str(plot_layer_energy(bars, out / "energy_layers.png",
                                                title=f"energy per inference by layer (T = {result['timesteps']})"))
    points = {name: [(p["timesteps"], p["energy_per_inference_j"], p["accuracy"]) for p in block["pareto"]]
              for name, block in result["profiles"].items()}
    bands = {}
    if "loihi_band" in result:
        bands["SNN on Loihi: pre-silicon bound to calibrated"] = (points.pop("loihi"), points.pop("loihi-calibrated"))
    curves = {f"SNN on {name}" + ("" if result["profiles"][name]["snn"]["complete"] else " (incomplete)"): curve
              for name, curve in points.items()}
    plots["pareto"] = str(plot_pareto(curves, out / "energy_pareto.png", references, bands=bands))
    return plots
