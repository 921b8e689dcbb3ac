"""The ``snn`` command line.

``snn <verb> [options] [--json]``. With ``--json`` the verb prints exactly one JSON object
on stdout; progress and logs go to stderr. Exit status 0 on success; bad input prints one
line ``snn: error: <cause and fix>`` on stderr and exits with status 2.

The core verbs live here. Packages that build on ``snn`` (``converters``, ``hardware``)
add verbs through the entry-point group ``spikeforge.verbs``: each entry point is a
function ``register(subparsers)`` that adds a subparser and sets ``run`` to a function
``run(args) -> dict``. This keeps imports one-way (``snn`` never imports them).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from importlib.metadata import entry_points
from typing import Any, Callable, Sequence

from snn.errors import SpikeforgeError


VERB_GROUP = "spikeforge.verbs"


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def add_data_options(parser: argparse.ArgumentParser) -> None:
    from snn.data import DATASETS
    parser.add_argument("--dataset", default="digits", choices=DATASETS,
                        help="digits is embedded; mnist / fashion-mnist read IDX files from --data-dir")
    parser.add_argument("--data-dir", default=None, help="folder with the dataset's standard files")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--seed", type=int, default=0)


def _cmd_train(args: argparse.Namespace) -> dict[str, Any]:
    from snn.pipeline import TrainSettings, train_classifier
    names = {f.name for f in fields(TrainSettings)}
    settings = TrainSettings(**{k: v for k, v in vars(args).items() if k in names})
    results = train_classifier(settings, args.out)
    results.pop("history")
    return results


def _cmd_evaluate(args: argparse.Namespace) -> dict[str, Any]:
    from snn.pipeline import evaluate_checkpoint
    return evaluate_checkpoint(args.model, args.dataset, args.data_dir, args.device, args.seed)


def _cmd_demo(args: argparse.Namespace) -> dict[str, Any]:
    from snn.demo import run_demo
    return run_demo(args.out, epochs=args.epochs, timesteps=args.timesteps, device=args.device)


def build_parser() -> argparse.ArgumentParser:
    from snn.models import ARCHITECTURES
    from snn.neurons import NEURONS_BY_FLAG

    parser = argparse.ArgumentParser(prog="snn", description="spikeforge: spiking neural networks")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    train = verbs.add_parser("train", help="train a spiking classifier with surrogate gradients")
    add_data_options(train)
    train.add_argument("--arch", default="cnn", choices=ARCHITECTURES)
    train.add_argument("--neuron", default="lif", choices=list(NEURONS_BY_FLAG))
    train.add_argument("--timesteps", type=positive_int, default=8, help="simulation steps T per sample")
    train.add_argument("--epochs", type=positive_int, default=30)
    train.add_argument("--batch-size", type=positive_int, default=32)
    train.add_argument("--lr", type=float, default=2e-3)
    train.add_argument("--patience", type=positive_int, default=None, help="early-stopping patience in epochs")
    train.add_argument("--encoder", default="direct", choices=["direct", "rate"])
    train.add_argument("--out", required=True, help="output folder (checkpoint, curves, results)")
    train.add_argument("--nproc", type=positive_int, default=1,
                       help="data-parallel processes (DDP: gloo on CPU, NCCL on GPU); --batch-size is the global batch")
    add_json_flag(train)
    train.set_defaults(run=_cmd_train)

    evaluate = verbs.add_parser("evaluate", help="test accuracy of a saved model")
    add_data_options(evaluate)
    evaluate.add_argument("--model", required=True, help="checkpoint written by 'snn train'")
    add_json_flag(evaluate)
    evaluate.set_defaults(run=_cmd_evaluate)

    demo = verbs.add_parser("demo", help="the main job: train and report on digits")
    demo.add_argument("--out", required=True, help="output folder for report.md, results.json and plots")
    demo.add_argument("--epochs", type=positive_int, default=None, help="training epochs (default: demo's)")
    demo.add_argument("--timesteps", type=positive_int, default=None, help="T (default: demo's)")
    demo.add_argument("--device", default=None)
    add_json_flag(demo)
    demo.set_defaults(run=_cmd_demo)

    for entry in sorted(entry_points(group=VERB_GROUP), key=lambda e: e.name):
        entry.load()(verbs)
    return parser


def _print_human(result: dict[str, Any]) -> None:
    for key, value in result.items():
        if isinstance(value, float):
            value = f"{value:.4f}"
        elif isinstance(value, (dict, list)):
            value = json.dumps(value)
        print(f"{key}: {value}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    command: Callable[[argparse.Namespace], dict[str, Any]] = args.run
    try:
        result = command(args)
    except SpikeforgeError as error:
        print(f"snn: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("snn: interrupted", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(result, sort_keys=True))
    else:
        _print_human(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
