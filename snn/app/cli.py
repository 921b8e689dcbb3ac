"""The ``snn`` command line.

``snn <verb> [options] [--json]``. With ``--json`` the verb prints exactly one JSON object
on stdout; progress and logs go to stderr. Exit status 0 on success; bad input prints one
line ``snn: error: <cause and fix>`` on stderr and exits with status 2.

The core verbs live here. Packages that build on ``snn`` (``converters``, ``hardware``)
add verbs through the entry-point group ``spikeforge.verbs``: each entry point names a
function ``register(subparsers)`` in the plugin's ``cli.py`` that adds a subparser and
sets ``run`` to a function ``run(args) -> dict``. This keeps imports one-way (``snn``
never imports them by name).

Start-up stays fast: the parser is built from torch-free names (:mod:`snn.names`), a
plugin is imported only when its verb is the one on the command line, and the top-level
help takes each plugin's one-line help from the string constant ``VERB_HELP`` in its
module's source, read with :mod:`ast` without importing the module (a plugin without
one is imported to register it, as before).
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import sys
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any, Callable, Sequence

from snn.app.options import add_data_options, add_json_flag, positive_int, sample_options
from snn.errors import SpikeforgeError
from snn.names import ARCHITECTURES, ENCODERS, NEURON_FLAGS

VERB_GROUP = "spikeforge.verbs"
HELP_CONSTANT = "VERB_HELP"


def _cmd_train(args: argparse.Namespace) -> dict[str, Any]:
    from dataclasses import fields

    from snn.app.jobs import TrainSettings, train_classifier
    names = {f.name for f in fields(TrainSettings)}
    settings = TrainSettings(**{k: v for k, v in vars(args).items() if k in names})
    results = train_classifier(settings, args.out)
    results.pop("history", None)  # absent on the ranks > 0 of a torchrun group, which return {}
    return results


def _cmd_evaluate(args: argparse.Namespace) -> dict[str, Any]:
    from snn.app.jobs import evaluate_checkpoint
    return evaluate_checkpoint(args.model, args.dataset, args.data_dir, args.device, args.seed, **sample_options(args))


def _cmd_demo(args: argparse.Namespace) -> dict[str, Any]:
    """With ``--json`` the whole results object; without, a short table of each stage's headline figures on stdout
    (and nothing else: the printed result is empty)."""
    from snn.app.demo import run_demo, summary_table
    results = run_demo(args.out, epochs=args.epochs, timesteps=args.timesteps, device=args.device,
                       samples=args.samples)
    if args.json:
        return results
    print(summary_table(results))
    return {}


def _add_train(verbs: argparse._SubParsersAction) -> None:
    train = verbs.add_parser("train", help="train a spiking classifier with surrogate gradients")
    add_data_options(train, sample_options=True)
    train.add_argument("--arch", default="cnn", choices=ARCHITECTURES)
    train.add_argument("--neuron", default="lif", choices=list(NEURON_FLAGS))
    train.add_argument("--timesteps", type=positive_int, default=8, help="simulation steps T per sample")
    train.add_argument("--epochs", type=positive_int, default=30)
    train.add_argument("--batch-size", type=positive_int, default=32)
    train.add_argument("--lr", type=float, default=None,
                       help="learning rate (default 2e-3; 1e-4 when fine-tuning with --init)")
    train.add_argument("--init", default=None, metavar="CHECKPOINT",
                       help="start from this network (snn train's model.pt or snn convert's snn.pt) and fine-tune "
                            "it with surrogate gradients at --timesteps")
    train.add_argument("--patience", type=positive_int, default=None, help="early-stopping patience in epochs")
    train.add_argument("--encoder", default="direct", choices=ENCODERS,
                       help="direct (current), rate (Bernoulli spikes), rows (an image's rows as a sequence; "
                            "with --arch rnn) or frames (an event dataset's binned frames, one per step)")
    train.add_argument("--out", required=True, help="output folder (checkpoint, curves, results)")
    train.add_argument("--nproc", type=positive_int, default=1,
                       help="data-parallel processes (DDP: gloo on CPU, NCCL on GPU); --batch-size is the global batch")
    add_json_flag(train)
    train.set_defaults(run=_cmd_train)


def _add_evaluate(verbs: argparse._SubParsersAction) -> None:
    evaluate = verbs.add_parser("evaluate", help="test accuracy of a saved model")
    add_data_options(evaluate, sample_options=True)
    evaluate.add_argument("--model", required=True, help="checkpoint written by 'snn train'")
    add_json_flag(evaluate)
    evaluate.set_defaults(run=_cmd_evaluate)


def _add_demo(verbs: argparse._SubParsersAction) -> None:
    demo = verbs.add_parser("demo", help="the main job: train and report on digits")
    demo.add_argument("--out", required=True, help="output folder for report.md, results.json and plots")
    demo.add_argument("--epochs", type=positive_int, default=None, help="training epochs (default: demo's)")
    demo.add_argument("--timesteps", type=positive_int, default=None, help="T (default: demo's)")
    demo.add_argument("--device", default=None)
    demo.add_argument("--samples", type=positive_int, default=None,
                      help="test samples for the Lava, Brian2 and energy stages (default: 100, 200, all)")
    add_json_flag(demo)
    demo.set_defaults(run=_cmd_demo)


def _module_source(module: str) -> Path | None:
    """The source file of ``module``, found without importing it or any package above it.

    Only the top-level package is looked up (``find_spec("a.b")`` would import ``a``); the
    rest of the dotted name is a path below that package's folder.
    """
    top, *rest = module.split(".")
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if not rest:
        return Path(spec.origin) if spec.origin and spec.origin.endswith(".py") else None
    for folder in spec.submodule_search_locations or []:
        base = Path(folder).joinpath(*rest)
        for candidate in (base.with_name(base.name + ".py"), base / "__init__.py"):
            if candidate.is_file():
                return candidate
    return None


def plugin_help(entry: EntryPoint) -> str | None:
    """The ``VERB_HELP`` string of the plugin module ``entry`` names, or None if it has none.

    Read from the module's source with :mod:`ast`: nothing of the plugin is imported.
    """
    source = _module_source(entry.module)
    if source is None:
        return None
    try:
        tree = ast.parse(source.read_text(encoding="utf-8"), filename=str(source))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return None
    for node in tree.body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
                and node.targets[0].id == HELP_CONSTANT and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, str)):
            return node.value.value
    return None


def _verb_named(argv: Sequence[str]) -> str | None:
    """The verb on a command line: its first word that is not an option (the top level has only ``-h``)."""
    return next((word for word in argv if not word.startswith("-")), None)


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The ``snn`` parser with every verb.

    Without ``argv`` every plugin is imported and registered. With ``argv``, only the plugin
    whose verb ``argv`` names is; the others are listed by name and ``VERB_HELP`` alone.
    """
    parser = argparse.ArgumentParser(prog="snn", description="spikeforge: spiking neural networks")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    _add_train(verbs)
    _add_evaluate(verbs)
    _add_demo(verbs)
    chosen = None if argv is None else _verb_named(argv)
    for entry in sorted(entry_points(group=VERB_GROUP), key=lambda e: e.name):
        help_line = None if argv is None or entry.name == chosen else plugin_help(entry)
        if help_line is None:
            entry.load()(verbs)
        else:
            verbs.add_parser(entry.name, help=help_line)
    return parser


def _print_human(result: dict[str, Any]) -> None:
    for key, value in result.items():
        if isinstance(value, float):
            value = f"{value:.4f}"
        elif isinstance(value, (dict, list)):
            value = json.dumps(value)
        print(f"{key}: {value}")


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
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
