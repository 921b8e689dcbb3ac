"""The ``snn`` command line.

``snn <verb> [options] [--json]``. With ``--json`` the verb prints exactly one JSON object
on stdout; progress and logs go to stderr. Exit status 0 on success. Every failure prints one
line ``snn: error: <cause and fix>`` on stderr (with ``--json`` also the one object
``{"error": ..., "kind": ...}`` on stdout) and exits with status 2 (70 for an internal error,
130 when interrupted): :func:`main`. A verb's ``--out`` folder is checked, locked and written
as a set by :mod:`snn.app.out_folder`.

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
import os
import sys
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any, Callable, NoReturn, Sequence

from snn.app.options import add_data_options, add_json_flag, device_name, positive_int, sample_options
from snn.app.out_folder import check_out_file, run_in
from snn.errors import SpikeforgeError, first_line, one_line
from snn.names import ARCHITECTURES, ENCODERS, MAX_TIMESTEPS, NEURON_FLAGS
from snn.resources import MAX_EPOCHS, bounded_int

VERB_GROUP = "spikeforge.verbs"
HELP_CONSTANT = "VERB_HELP"
EXIT_ERROR, EXIT_INTERNAL, EXIT_INTERRUPTED = 2, 70, 130  # 70: EX_SOFTWARE; 130: 128 + SIGINT
# What a verb's --out is, declared by its parser: set_defaults(out_kind="folder") for a folder main() holds for
# the run (snn.app.out_folder), or out_kind="file" with out_file=(what it is, an example name) for a file it
# checks first.
DEBUG_VARIABLE = "SPIKEFORGE_DEBUG"
OUT_OF_MEMORY = ("the run ran out of memory; lower --batch-size, --timesteps or --samples (or use a machine with "
                 "more memory)")


def report_error(message: str, kind: str, as_json: bool, prefix: str = "snn: error: ") -> None:
    """The error contract: one line ``<prefix><message>`` on stderr and, with ``--json``, exactly one object
    ``{"error": message, "kind": kind}`` on stdout."""
    message = one_line(message)
    print(f"{prefix}{message}", file=sys.stderr, flush=True)
    if as_json:
        print(json.dumps({"error": message, "kind": kind}), flush=True)


class CommandLineParser(argparse.ArgumentParser):
    """An argparse parser whose errors follow the error contract: one line ``snn <verb>: error: ...`` on stderr
    (the usage block folded into a pointer to ``--help``), the ``{"error", "kind": "usage"}`` object on stdout
    when the command line has ``--json``, exit status 2. Sub-parsers are made of the same class
    (``add_subparsers`` uses ``type(parent)``); :func:`build_parser` makes a subclass whose ``json_errors``
    says whether the command line has ``--json``."""

    json_errors = False

    def error(self, message: str) -> NoReturn:
        report_error(f"{message}; see '{self.prog} --help'", "usage", self.json_errors, prefix=f"{self.prog}: error: ")
        self.exit(EXIT_ERROR)


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
    """The whole results object: with ``--json`` printed as it is; without, :func:`_show_demo` prints a short table
    of each stage's headline figures on stdout (and nothing else)."""
    from snn.app.demo import run_demo
    return run_demo(args.out, epochs=args.epochs, timesteps=args.timesteps, device=args.device,
                    samples=args.samples)


def _show_demo(results: dict[str, Any]) -> None:
    """The demo's human output, printed once its files are in --out (so the table names the final paths)."""
    from snn.app.demo import summary_table
    print(summary_table(results))


def _add_train(verbs: argparse._SubParsersAction) -> None:
    train = verbs.add_parser("train", help="train a spiking classifier with surrogate gradients")
    add_data_options(train, sample_options=True)
    train.add_argument("--arch", default="cnn", choices=ARCHITECTURES)
    train.add_argument("--neuron", default="lif", choices=list(NEURON_FLAGS))
    train.add_argument("--timesteps", type=bounded_int(1, MAX_TIMESTEPS), default=8,
                       help="simulation steps T per sample")
    train.add_argument("--epochs", type=bounded_int(1, MAX_EPOCHS), default=30)
    train.add_argument("--batch-size", type=positive_int, default=32)
    train.add_argument("--lr", type=float, default=None,
                       help="learning rate (default 2e-3; 1e-4 when fine-tuning with --init)")
    train.add_argument("--init", default=None, metavar="CHECKPOINT",
                       help="start from this network (snn train's model.pt or snn convert's snn.pt) and fine-tune "
                            "it with surrogate gradients at --timesteps")
    train.add_argument("--clip-grad", type=float, default=1.0, metavar="NORM",
                       help="clip the gradients' total L2 norm to this (default 1; 0: no clipping)")
    train.add_argument("--patience", type=positive_int, default=None, help="early-stopping patience in epochs")
    train.add_argument("--encoder", default="direct", choices=ENCODERS,
                       help="direct (current), rate (Bernoulli spikes), rows (an image's rows as a sequence; "
                            "with --arch rnn) or frames (an event dataset's binned frames, one per step)")
    train.add_argument("--out", required=True, help="output folder (checkpoint, curves, results)")
    train.add_argument("--nproc", type=positive_int, default=1,
                       help="data-parallel processes (DDP: gloo on CPU, NCCL on GPU); --batch-size is the global batch")
    add_json_flag(train)
    train.set_defaults(run=_cmd_train, out_kind="folder")


def _add_evaluate(verbs: argparse._SubParsersAction) -> None:
    evaluate = verbs.add_parser("evaluate", help="test accuracy of a saved model")
    add_data_options(evaluate, sample_options=True)
    evaluate.add_argument("--model", required=True, help="checkpoint written by 'snn train'")
    add_json_flag(evaluate)
    evaluate.set_defaults(run=_cmd_evaluate)


def _add_demo(verbs: argparse._SubParsersAction) -> None:
    demo = verbs.add_parser("demo", help="the main job: train and report on digits")
    demo.add_argument("--out", required=True, help="output folder for report.md, results.json and plots")
    demo.add_argument("--epochs", type=bounded_int(1, MAX_EPOCHS), default=None,
                      help="training epochs (default: demo's)")
    demo.add_argument("--timesteps", type=bounded_int(1, MAX_TIMESTEPS), default=None, help="T (default: demo's)")
    demo.add_argument("--device", type=device_name, default=None, help="cpu, cuda, cuda:N or mps (default: cuda "
                      "when available)")
    demo.add_argument("--samples", type=positive_int, default=None,
                      help="test samples for the Lava, Brian2 and energy stages (default: 100, 200, all)")
    add_json_flag(demo)
    demo.set_defaults(run=_cmd_demo, show_result=_show_demo, out_kind="folder")


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
    parser_class = type("CommandLineParser", (CommandLineParser,),
                        {"json_errors": argv is not None and "--json" in argv})
    parser = parser_class(prog="snn", description="spikeforge: spiking neural networks")
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


def _run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the verb ``args`` names, its ``--out`` checked first (a folder held for the run: :func:`run_in`)."""
    command: Callable[[argparse.Namespace], dict[str, Any]] = args.run
    _check_device(getattr(args, "device", None))
    out = getattr(args, "out", None)
    out_kind = getattr(args, "out_kind", None)
    if out is None or out_kind not in ("folder", "file"):
        return command(args)
    if out_kind == "file":
        what, example = getattr(args, "out_file", ("file", "out.bin"))
        check_out_file(out, what, example)
        return command(args)

    def work(staging: Path) -> dict[str, Any]:
        args.out = str(staging)
        return command(args)

    return run_in(out, work)


def _check_device(name: str | None) -> None:
    """A ``--device`` (already a valid name: :func:`snn.app.options.device_name`) that this machine lacks is an
    error before any work (torch is imported only when a device other than the CPU is named)."""
    if name is None or name == "cpu":
        return
    from snn.training import resolve_device

    resolve_device(name)


def _debugging() -> bool:
    return os.environ.get(DEBUG_VARIABLE, "").strip() not in ("", "0")


def main(argv: Sequence[str] | None = None) -> int:
    """``snn ...``: the exit status. Every failure is one line on stderr (and, with ``--json``, one
    ``{"error", "kind"}`` object on stdout): 2 for bad input or a run that cannot go on (argparse errors
    included), 130 when interrupted, 70 for an internal error (a bug; ``SPIKEFORGE_DEBUG=1`` re-raises it
    with its traceback instead)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    as_json = "--json" in argv
    try:
        args = build_parser(argv).parse_args(argv)
        result = _run(args)
        if getattr(args, "json", False):
            text = json.dumps(result, sort_keys=True)
            print(text)
        elif getattr(args, "show_result", None) is not None:
            args.show_result(result)
        else:
            _print_human(result)
    except SpikeforgeError as error:
        report_error(str(error), error.kind, as_json)
        return EXIT_ERROR
    except KeyboardInterrupt:
        report_error("interrupted", "interrupted", as_json, prefix="snn: ")
        return EXIT_INTERRUPTED
    except Exception as error:  # noqa: BLE001 - the last resort: one line, not a traceback
        if _debugging():
            raise
        # torch.cuda's OutOfMemoryError is a RuntimeError, named here without importing torch
        if isinstance(error, MemoryError) or type(error).__name__ == "OutOfMemoryError":
            report_error(OUT_OF_MEMORY, "resource", as_json)
            return EXIT_ERROR
        report_error(f"{type(error).__name__}: {first_line(error)}; this is a bug, please report it "
                     f"({DEBUG_VARIABLE}=1 shows the traceback)", "internal", as_json, prefix="snn: internal error: ")
        return EXIT_INTERNAL
    return 0
