"""``snn demo``: the main job, one folder with a report a reader can cite.

Stage "train": a spiking CNN (LIF neurons, direct input, T = 8) trained with surrogate
gradients on the embedded digits dataset; its spike raster, membrane traces and training
curves.

Later stages (conversion, energy, Loihi, Brian2) live in the packages that build on
``snn`` and register through the entry-point group ``spikeforge.demo_stages``: each entry
point is a stage function ``stage(out, context) -> (results, report_lines)`` with an
integer attribute ``order`` (train is 0). ``context`` holds ``options`` (the demo's CLI
options), ``results`` (the results of the stages before, by name) and ``networks``: the
networks a stage made for the backend stages to run, each ``{"label", "path", "timesteps"}``
(``timesteps`` None: the checkpoint's own; ``"converted": True`` for a converted network, which
the Lava stage also deploys as a sigma-delta network). The train stage adds the trained CNN, the
conversion stage the converted one, so the hardware stages run one network through every
stage.

Writes ``report.md``, ``results.json`` and PNG plots into the output folder.
"""

from __future__ import annotations

import sys
import time
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Callable

import torch

from snn import data, plots
from snn.app.jobs import TrainSettings, train_classifier
from snn.checkpoint import load_checkpoint
from snn.fileio import write_json, write_text
from snn.recording import Recorder
from snn.training import Task

DEMO_SETTINGS = TrainSettings(dataset="digits", arch="cnn", neuron="lif", timesteps=8, epochs=30)

Stage = Callable[[Path, dict[str, Any]], tuple[dict[str, Any], list[str]]]


def _log(message: str) -> None:
    print(f"[snn demo] {message}", file=sys.stderr, flush=True)


def _activity_plots(out: Path, model: torch.nn.Module, timesteps: int) -> dict[str, Any]:
    """Raster of the first hidden layer and membrane traces of the hidden LIF layer for one test digit."""
    split = data.load_digits_split()
    task = Task.for_model(model, timesteps)
    model.eval()
    with torch.no_grad(), Recorder(model) as rec:
        model(task.encode(split.x_test[:1]))
    names = list(rec.spikes)
    first, last = names[0], names[-1]
    raster = plots.plot_raster(rec.spikes[first], out / "raster.png",
                               title=f"spikes of layer {first} (test digit {int(split.y_test[0])})")
    membrane = plots.plot_membrane(rec.membrane[last], out / "membrane.png", threshold=1.0,
                                   spikes=rec.spikes[last], title=f"membrane of layer {last}")
    rates = {name: float(s.mean()) for name, s in rec.spikes.items()}
    return {"raster": str(raster), "membrane": str(membrane), "firing_rates": rates}


def train_stage(out: Path, context: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    chosen = {k: v for k, v in context["options"].items() if k in TrainSettings.__dataclass_fields__}
    settings = TrainSettings(**{**DEMO_SETTINGS.__dict__, **chosen})
    _log(f"training a spiking CNN on digits (T={settings.timesteps}, {settings.epochs} epochs)")
    results = train_classifier(settings, out)
    model = load_checkpoint(results["checkpoint"]).model
    results.update(_activity_plots(out, model, settings.timesteps))
    rates = ", ".join(f"layer {k}: {v:.3f}" for k, v in results["firing_rates"].items())
    lines = [
        "## Surrogate-gradient training",
        "",
        f"Spiking CNN ({settings.neuron.upper()} neurons, direct input, T = {settings.timesteps}) trained with "
        f"BPTT on scikit-learn's digits ({results['train_samples']} train / {results['val_samples']} validation / "
        f"{results['test_samples']} test samples; the best epoch chosen on validation).",
        "",
        "| metric | value |",
        "|---|---|",
        f"| test accuracy | {100 * results['test_accuracy']:.2f}% |",
        f"| validation accuracy (best epoch {results['best_epoch']}) | {100 * results['val_accuracy']:.2f}% |",
        f"| timesteps T | {results['timesteps']} |",
        f"| epochs run | {results['epochs']} |",
        f"| parameters | {results['parameters']:,} |",
        f"| training time | {results['train_seconds']:.1f} s on {results['device']} |",
        "",
        f"Mean firing rate per spiking layer (one test digit): {rates}.",
        "",
        "![training curves](training_curves.png)",
        "",
        "![spike raster](raster.png)",
        "",
        "![membrane traces](membrane.png)",
        "",
    ]
    results.pop("history")
    results["headline"] = [["test accuracy", f"{100 * results['test_accuracy']:.2f}%"],
                           ["T, epochs, training time", f"{results['timesteps']}, {results['epochs']}, "
                                                        f"{results['train_seconds']:.0f} s"]]
    context.setdefault("networks", []).append({"label": "trained SNN", "path": results["checkpoint"],
                                               "timesteps": None})
    return results, lines


train_stage.order = 0  # type: ignore[attr-defined]
STAGE_GROUP = "spikeforge.demo_stages"


def demo_stages() -> list[tuple[str, Stage]]:
    """The training stage plus every registered stage, in ``order``."""
    stages: list[tuple[str, Stage]] = [("train", train_stage)]
    stages += [(entry.name, entry.load()) for entry in entry_points(group=STAGE_GROUP)]
    return sorted(stages, key=lambda item: getattr(item[1], "order", 100))


def summary_table(results: dict[str, Any]) -> str:
    """A few lines for the terminal: each stage's headline figures (its ``headline`` rows) and the report's path."""
    rows = [(name, label, value) for name, stage in results["stages"].items()
            for label, value in stage.get("headline", [])]
    widths = [max((len(r[i]) for r in rows), default=0) for i in range(2)]
    lines = [f"{name:<{widths[0]}}  {label:<{widths[1]}}  {value}" for name, label, value in rows]
    lines += [f"total {results['total_seconds']:.0f} s; report: {results['report']}",
              "(snn demo --json prints every figure)"]
    return "\n".join(lines)


def run_demo(out_dir: str | Path, epochs: int | None = None, timesteps: int | None = None,
             device: str | None = None, samples: int | None = None) -> dict[str, Any]:
    """Run every stage into ``out_dir``; return the contents of ``results.json``. ``samples`` caps
    the test samples of the stages that simulate on other backends (``options["samples"]``;
    None: each stage's own number)."""
    out = Path(out_dir)
    options: dict[str, Any] = {"device": device, "samples": samples}
    if epochs is not None:
        options["epochs"] = epochs
    if timesteps is not None:
        options["timesteps"] = timesteps
    start = time.perf_counter()
    stages: dict[str, Any] = {}
    report = ["# spikeforge demo", ""]
    context: dict[str, Any] = {"options": options, "results": stages, "networks": []}
    for name, stage in demo_stages():
        _log(f"stage {name}")
        stage_start = time.perf_counter()
        stages[name], lines = stage(out, context)
        stages[name]["stage_seconds"] = time.perf_counter() - stage_start
        report += lines
    total = time.perf_counter() - start
    report += [f"Total demo time: {total:.1f} s.", ""]
    results = {"stages": stages, "total_seconds": total, "report": str(out / "report.md"),
               "test_accuracy": stages["train"]["test_accuracy"], "timesteps": stages["train"]["timesteps"]}
    write_text(out / "report.md", "\n".join(report))
    write_json(out / "results.json", results)
    _log(f"done in {total:.1f} s; report: {out / 'report.md'}")
    return results
