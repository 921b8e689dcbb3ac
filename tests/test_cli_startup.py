"""``snn --help`` and ``snn <verb> --help`` stay fast: they import neither torch, scikit-learn nor Brian2.

Each case runs ``main([..., "--help"])`` in a fresh interpreter and reads its ``sys.modules``:
the top level and the core verbs import no module of ``converters`` or ``hardware``; a plugin
verb imports only its own ``cli`` module (and the packages above it). The tuples the parser
offers as choices without importing their owners are checked against the owners' tables.
"""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import entry_points

import pytest

from snn.app.cli import VERB_GROUP, build_parser, plugin_help

HEAVY = ("torch", "sklearn", "brian2")
CORE_VERBS = ("train", "evaluate", "demo")
PLUGINS = {entry.name: entry.module for entry in entry_points(group=VERB_GROUP)}

PROBE = """
import contextlib, io, json, sys
from snn.app.cli import main
with contextlib.redirect_stdout(io.StringIO()) as shown:
    try:
        main({argv!r})
    except SystemExit:
        pass
print(json.dumps({{"modules": sorted(sys.modules), "help": shown.getvalue()}}))
"""


def _imported_by(argv: list[str]) -> tuple[set[str], str]:
    run = subprocess.run([sys.executable, "-c", PROBE.format(argv=argv)], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    return set(result["modules"]), result["help"]


def _of(modules: set[str], *packages: str) -> set[str]:
    return {m for m in modules if m.split(".")[0] in packages}


@pytest.mark.parametrize("verb", [None, *CORE_VERBS])
def test_top_level_and_core_verb_help_import_no_plugin_and_nothing_heavy(verb: str | None) -> None:
    modules, shown = _imported_by(["--help"] if verb is None else [verb, "--help"])
    assert "usage: snn" in shown
    assert not _of(modules, *HEAVY)
    assert not _of(modules, "converters", "hardware")


def test_top_level_help_lists_every_plugin_verb_with_its_help() -> None:
    _, shown = _imported_by(["--help"])
    for name in PLUGINS:
        assert name in shown
    full = build_parser()  # every plugin imported and registered
    choices = {action.dest: action.help for action in full._subparsers._group_actions[0]._choices_actions}
    for entry in entry_points(group=VERB_GROUP):
        assert plugin_help(entry) == choices[entry.name], f"{entry.module}: VERB_HELP differs from its subparser's"


@pytest.mark.parametrize("verb", sorted(PLUGINS))
def test_plugin_verb_help_imports_only_its_cli_module(verb: str) -> None:
    modules, shown = _imported_by([verb, "--help"])
    assert f"usage: snn {verb}" in shown
    cli_module = PLUGINS[verb]
    parts = cli_module.split(".")
    allowed = {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
    assert _of(modules, "converters", "hardware") <= allowed
    assert not _of(modules, *HEAVY)


def test_import_snn_is_lazy_and_keeps_its_public_names() -> None:
    probe = ("import json, sys, snn; before = sorted(sys.modules); names = {n: type(getattr(snn, n)).__name__ "
             "for n in snn.__all__}; print(json.dumps([before, names, dir(snn)]))")
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    before, names, listed = json.loads(run.stdout)
    assert not _of(set(before), *HEAVY)
    assert set(names) == set(__import__("snn").__all__) and set(listed) >= set(names)
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        __import__("snn").nonexistent  # noqa: B018


def test_choice_names_agree_with_the_tables_they_name() -> None:
    from converters import cli as converters_cli
    from converters.pipeline import DEFAULT_TIMESTEPS, parse_timesteps
    from hardware.brian2 import cli as brian2_cli
    from hardware.brian2.simulate import BACKENDS
    from hardware.brian2.targets import TARGETS
    from hardware.lava import cli as lava_cli
    from hardware.lava.compile import RESETS
    from hardware.lava.sdn_compile import MESSAGE_BITS
    from snn import data, models, names
    from snn.neurons import NEURONS_BY_FLAG
    from snn.training import ENCODERS

    assert tuple(NEURONS_BY_FLAG) == names.NEURON_FLAGS
    assert names.ENCODERS == ENCODERS
    assert names.DATASETS == tuple(data.LOADERS)  # the datasets load_dataset reads
    for arch in names.ARCHITECTURES:
        assert models.build_model(arch, (1, 8, 8), 10).input_shape == (1, 8, 8)
    assert brian2_cli.BACKENDS == BACKENDS and brian2_cli.TARGETS == TARGETS
    assert lava_cli.RESETS == RESETS and lava_cli.MESSAGE_BITS == MESSAGE_BITS
    assert parse_timesteps(converters_cli.DEFAULT_TIMESTEPS_TEXT) == list(DEFAULT_TIMESTEPS)


def test_python_dash_m_snn_runs_the_command() -> None:
    run = subprocess.run([sys.executable, "-m", "snn", "--help"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and "usage: snn" in run.stdout and "simulate" in run.stdout
