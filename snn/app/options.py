"""The plugin kit: option types and option groups every verb shares.

A plugin's ``cli.py`` imports this module to register its verb (see :mod:`snn.app.cli`).
It imports nothing heavy, so building the parser for ``--help`` stays fast.
"""

from __future__ import annotations

import argparse

from snn.names import DATASETS


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    """``--json``: the verb prints exactly one JSON object on stdout."""
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def add_data_options(parser: argparse.ArgumentParser, device: bool = True, seed_help: str | None = None,
                     dataset_help: str | None = "digits is embedded; mnist / fashion-mnist read IDX files from "
                                               "--data-dir") -> None:
    """``--dataset``, ``--data-dir``, ``--device`` (unless ``device`` is false) and ``--seed``."""
    parser.add_argument("--dataset", default="digits", choices=DATASETS, help=dataset_help)
    parser.add_argument("--data-dir", default=None, help="folder with the dataset's standard files")
    if device:
        parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--seed", type=int, default=0, help=seed_help)
