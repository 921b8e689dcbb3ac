"""A property-based sweep (issue 21, item 9): random mutations of a valid network file and of valid
command lines end in exit 0 or in one ``snn: error`` line (with ``--json``: one JSON error object),
never in a traceback, an internal error, a crash or a hang.

Each case runs the real ``snn`` entry point (:func:`snn.app.cli.main`) in this process on real files.
Hypothesis draws the cases; ``derandomize=True`` makes the sweep the same on every run (CI finds
what a developer finds), ``database=None`` keeps it from writing example files. A hung case is
stopped by pytest-timeout (``timeout`` marks); a crash (a signal) fails the worker process.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import snn
from snn.app.cli import main
from snn.checkpoint import save_checkpoint
from snn.models import build_model
from snn.serialization import network_spec

TASK = {"timesteps": 2, "encoder": "direct", "readout": "membrane_mean"}
SWEEP = settings(derandomize=True, database=None, deadline=None, max_examples=250,
                 suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """``snn argv`` in this process: (exit status, stdout, stderr); argparse's exit is a status too."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
    return code, out.getvalue(), err.getvalue()


def assert_contract(argv: list[str], code: int, out: str, err: str) -> None:
    """Exit 0, or a non-zero exit with one error line (and the JSON object when --json was asked for)."""
    assert "Traceback" not in err and "internal error" not in err, (argv, err)
    if code == 0:
        return
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("snn: warning:")]
    assert code in (1, 2) and len(lines) == 1 and lines[0].startswith("snn") and "error" in lines[0], (argv, err)
    if "--json" in argv:
        obj = json.loads(out)
        assert set(obj) >= {"error", "kind"}, (argv, out)


def chain_payload() -> dict[str, Any]:
    torch.manual_seed(0)
    model = snn.Sequential(nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), snn.LIF(), nn.AvgPool2d(2),
                           nn.Flatten(), nn.Linear(64, 32), snn.LIF(), nn.Linear(32, 10), snn.Integrator(),
                           input_shape=(1, 8, 8)).eval()
    return _payload(model)


def graph_payload() -> dict[str, Any]:
    torch.manual_seed(0)
    return _payload(build_model("resnet", (1, 8, 8), 10, "lif").eval())


def _payload(model: nn.Module) -> dict[str, Any]:
    """What ``save_checkpoint`` writes for ``model`` (its version is filled in by the ``valid`` fixture)."""
    return {"format": "spikeforge.checkpoint", "version": None, "network": network_spec(model),
            "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()},
            "task": dict(TASK), "meta": {"split": {"dataset": "digits", "seed": 0}}}


@pytest.fixture(scope="module")
def valid(tmp_path_factory) -> dict[str, dict[str, Any]]:
    """The two valid payloads, with the version a saved checkpoint carries (read back from a real file)."""
    folder = tmp_path_factory.mktemp("valid")
    torch.manual_seed(0)
    save_checkpoint(folder / "probe.pt", build_model("mlp", (1, 8, 8), 10, "lif"), TASK)
    version = torch.load(folder / "probe.pt", weights_only=True)["version"]
    payloads = {"chain": chain_payload(), "graph": graph_payload()}
    for payload in payloads.values():
        payload["version"] = version
    return payloads


def paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path (a tuple of keys and indices) into the nested dicts and lists of ``obj``."""
    found = [prefix]
    if isinstance(obj, dict):
        for key, value in obj.items():
            found += paths(value, (*prefix, key))
    elif isinstance(obj, list):
        for index, value in enumerate(obj):
            found += paths(value, (*prefix, index))
    return found


REPLACEMENTS = st.one_of(
    st.sampled_from([None, True, False, 0, -1, 1, 2, 3, 10**12, -(10**12), 0.5, -0.5, 1e30, math.nan, math.inf,
                     -math.inf, "", "x", "cuda", "LIF", "Linear", "os:abort", [], {}, [1, 2], {"type": "LIF"},
                     [64], (1, 8, 8), "1,8,8"]),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
)
TENSORS = st.sampled_from(["nan", "inf", "shape", "int", "empty", "scalar", "huge", "transpose"])


def mutate_tensor(tensor: torch.Tensor, how: str) -> Any:
    if how == "nan":
        return torch.full_like(tensor, math.nan) if tensor.is_floating_point() else tensor
    if how == "inf":
        return torch.full_like(tensor, math.inf) if tensor.is_floating_point() else tensor
    if how == "shape":
        return torch.zeros(*(d + 1 for d in tensor.shape)) if tensor.dim() else torch.zeros(2)
    if how == "int":
        return tensor.to(torch.int64)
    if how == "empty":
        return torch.zeros(0)
    if how == "scalar":
        return torch.tensor(1.0)
    if how == "huge":
        return torch.full_like(tensor, 1e38) if tensor.is_floating_point() else tensor
    return tensor.t() if tensor.dim() == 2 else tensor.flip(0) if tensor.dim() else tensor


@st.composite
def mutated_payloads(draw, valid: dict[str, dict[str, Any]]) -> dict[str, Any]:
    payload = copy.deepcopy(valid[draw(st.sampled_from(["chain", "chain", "chain", "graph"]))])
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(paths(payload)[1:]))
        parent = payload
        for key in where[:-1]:
            parent = parent[key]
        key, value = where[-1], parent[where[-1]]
        action = draw(st.sampled_from(["replace", "replace", "delete", "tensor", "add"]))
        if action == "tensor" and isinstance(value, torch.Tensor):
            parent[key] = mutate_tensor(value, draw(TENSORS))
        elif action == "delete":
            if isinstance(parent, dict):
                del parent[key]
            else:
                parent.pop(key)
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.sampled_from(["extra", "type", "inputs", "bias", "padding", "module"]))] = \
                draw(REPLACEMENTS)
        else:
            parent[key] = draw(REPLACEMENTS)
    return payload


@pytest.mark.timeout(900)
def test_mutated_network_files_end_in_a_result_or_one_error(valid, tmp_path) -> None:
    seen = {"errors": 0, "ok": 0}

    @SWEEP
    @given(payload=st.data())
    def case(payload) -> None:
        mutated = payload.draw(mutated_payloads(valid))
        path = tmp_path / "mutated.pt"
        torch.save(mutated, path)
        argv = ["evaluate", "--model", str(path), "--json"]
        code, out, err = run_cli(argv)
        assert_contract(argv, code, out, err)
        seen["ok" if code == 0 else "errors"] += 1

    case()
    assert seen["errors"] > 100 and seen["errors"] + seen["ok"] >= 250  # most mutations must be refused


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "model.pt"
    torch.manual_seed(0)
    save_checkpoint(path, build_model("mlp", (1, 8, 8), 10, "lif"), TASK, {"split": {"dataset": "digits", "seed": 0}})
    return path


VALUES = st.one_of(st.sampled_from(["0", "-1", "1", "2", "1e9", "nan", "inf", "-inf", "", "x", "10000000000",
                                    "cuda", "cpu", "bogus", "digits", "mnist", "1,2", "0,1", ",", "/nonexistent",
                                    "/dev/null", "99999"]),
                   st.integers(-(10**12), 10**12).map(str), st.text(max_size=6))


def command_lines(model: Path, out: Path) -> dict[str, list[str]]:
    """Valid, cheap command lines of the verbs that read a model or data (each runs in about a second)."""
    return {
        "evaluate": ["evaluate", "--model", str(model), "--dataset", "digits", "--json"],
        "simulate": ["simulate", "--model", str(model), "--backend", "torch", "--samples", "4", "--timesteps", "2",
                     "--json"],
        "energy": ["energy", "--snn", str(model), "--samples", "8", "--timesteps", "2", "--profile", "cmos45",
                   "--json"],
        "convert": ["convert", "--ann", "converters.reference_models:digits_cnn", "--timesteps", "1,2",
                    "--calibration-samples", "32", "--test-samples", "16", "--out", str(out), "--json"],
        "nir": ["nir", "export", "--model", str(model), "--out", str(out / "net.nir"), "--json"],
        "train": ["train", "--dataset", "digits", "--arch", "mlp", "--timesteps", "1", "--epochs", "1",
                  "--batch-size", "256", "--out", str(out), "--json"],
    }


@st.composite
def mutated_command_lines(draw, lines: dict[str, list[str]]) -> list[str]:
    argv = list(lines[draw(st.sampled_from(sorted(lines)))])
    values = [k for k, word in enumerate(argv) if k > 0 and not word.startswith("--") and argv[k - 1].startswith("--")]
    for _ in range(draw(st.integers(1, 2))):
        action = draw(st.sampled_from(["value", "value", "value", "drop", "unknown", "repeat"]))
        if action == "value" and values:
            argv[draw(st.sampled_from(values))] = draw(VALUES)
        elif action == "drop" and len(argv) > 2:
            del argv[draw(st.integers(1, len(argv) - 1))]
            values = []
        elif action == "unknown":
            argv.insert(draw(st.integers(1, len(argv))), draw(st.sampled_from(["--bogus", "-x", "--seed", "--"])))
            values = []
        elif values:
            k = draw(st.sampled_from(values))
            argv += [argv[k - 1], draw(VALUES)]
    return argv


@pytest.mark.timeout(900)
def test_mutated_command_lines_end_in_a_result_or_one_error(model_file, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # a mutated --out may be any relative path: it lands here, not in the checkout
    counter = {"n": 0}

    @settings(SWEEP, max_examples=150)
    @given(data=st.data())
    def case(data) -> None:
        counter["n"] += 1
        out = tmp_path / f"out{counter['n']}"
        argv = data.draw(mutated_command_lines(command_lines(model_file, out)))
        code, stdout, stderr = run_cli(argv)
        assert_contract(argv, code, stdout, stderr)

    case()
    assert counter["n"] >= 150
