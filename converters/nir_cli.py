"""``snn nir export`` and ``snn nir import`` (registered as an entry point).

``snn nir export --model model.pt --out net.nir [--dt S] [--input-shape C,H,W] [--json]``
writes the network of a spikeforge checkpoint as a NIR file; ``snn nir import --nir net.nir
--out model.pt [--dialect snntorch] [--dt S] [--json]`` reads a NIR file (as its producer
runs it: :mod:`converters.nir_dialects`) into a checkpoint. Registration imports nothing
heavy: the jobs (:func:`converters.nir_io.checkpoint_to_nir`,
:func:`converters.nir_io.nir_to_checkpoint`) are imported when the verb runs.
"""

from __future__ import annotations

import argparse
from typing import Any

from snn.app.options import add_json_flag

VERB_HELP = "export a network to a NIR file or import one (snntorch, sinabs dialects)"
# converters.nir_dialects.DIALECTS and nir_discretisation.DEFAULT_DT as text (tests/test_nir_cli.py checks they agree)
DIALECT_NAMES = ("nir", "snntorch", "sinabs")
DEFAULT_DT = 1e-4


def _shape(text: str) -> tuple[int, ...]:
    """argparse type: ``C,H,W`` (positive integers)."""
    try:
        shape = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers") from None
    if not shape or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"every size must be at least 1, got {text!r}")
    return shape


def _export(args: argparse.Namespace) -> dict[str, Any]:
    from converters.nir_io import checkpoint_to_nir
    return checkpoint_to_nir(args.model, args.out, dt=args.dt, input_shape=args.input_shape)


def _import(args: argparse.Namespace) -> dict[str, Any]:
    from converters.nir_io import nir_to_checkpoint
    return nir_to_checkpoint(args.nir, args.out, dialect=args.dialect, dt=args.dt)


def register(verbs: argparse._SubParsersAction) -> None:
    parser = verbs.add_parser("nir", help=VERB_HELP)
    actions = parser.add_subparsers(dest="nir_action", required=True, metavar="ACTION")
    export = actions.add_parser("export", help="write a checkpoint's network as a NIR file")
    export.add_argument("--model", required=True, help="checkpoint written by 'snn train' or 'snn convert'")
    export.add_argument("--out", required=True, help="NIR file to write (HDF5, e.g. net.nir)")
    export.add_argument("--dt", type=float, default=DEFAULT_DT,
                        help="seconds per step, used to write time constants (default 1e-4, snnTorch's)")
    export.add_argument("--input-shape", type=_shape, default=None, metavar="C,H,W",
                        help="feature shape after [T, B] (default: the one the checkpoint records)")
    add_json_flag(export)
    export.set_defaults(run=_export, out_kind="file", out_file=("NIR file", "net.nir"))
    imp = actions.add_parser("import", help="read a NIR file into a checkpoint")
    imp.add_argument("--nir", required=True, help="NIR file (HDF5) to read")
    imp.add_argument("--out", required=True, help="checkpoint to write (e.g. model.pt)")
    imp.add_argument("--dialect", default="nir", choices=DIALECT_NAMES,
                     help="the producer whose conventions the file follows: nir (the specification; spikeforge, "
                          "Norse, SpikingJelly), snntorch (export_to_nir of a default Leaky: delayed subtract "
                          "reset), sinabs (to_nir: subtract reset, exact decays, time in steps)")
    imp.add_argument("--dt", type=float, default=None,
                     help="seconds per step (default: the file's, else the dialect's: 1e-4 s, sinabs 1 step)")
    add_json_flag(imp)
    imp.set_defaults(run=_import, out_kind="file", out_file=("checkpoint", "model.pt"))
