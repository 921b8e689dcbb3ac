"""The error contract of the ``snn`` command line (issue 21, item 4).

Every verb, on every failure, exits non-zero with one line ``snn...: error: <cause and fix>`` on
stderr; with ``--json`` it also prints exactly one object ``{"error": ..., "kind": ...}`` on
stdout and nothing else. Each case runs :func:`snn.app.cli.main` in-process on a cheap failing
input (no training).
"""

from __future__ import annotations

import json
import pickle

import pytest

from snn.app import cli
from snn.app.cli import main
from snn.app.options import device_name, positive_seconds
from snn.errors import SpikeforgeError
from snn.training import TrainingDiverged


def run_failing(capsys, argv: list[str]) -> tuple[int, dict, str]:
    """``main(argv)`` (argparse's exit caught): its status, the one JSON object on stdout, the one stderr line."""
    try:
        code = main(argv)
    except SystemExit as stop:
        code = stop.code
    captured = capsys.readouterr()
    assert code not in (0, None), captured
    error = json.loads(captured.out)  # exactly one JSON document: anything else on stdout fails here
    assert isinstance(error, dict) and set(error) == {"error", "kind"}, error
    assert captured.out.count("\n") == 1
    assert captured.err.count("\n") == 1 and captured.err.endswith("\n"), captured.err
    assert captured.err.startswith("snn") and "error" in captured.err
    assert "\n" not in error["error"] and error["error"] in captured.err
    return code, error, captured.err


def verb_cases(tmp_path) -> dict[str, list[str]]:
    missing = str(tmp_path / "missing.pt")
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    return {
        "train": ["train", "--dataset", "mnist", "--data-dir", str(tmp_path / "nowhere"), "--out",
                  str(tmp_path / "out")],
        "evaluate": ["evaluate", "--model", missing],
        "demo": ["demo", "--out", str(a_file)],
        "convert": ["convert", "--ann", "no_such_module_for_spikeforge:build", "--out", str(tmp_path / "out")],
        "nir export": ["nir", "export", "--model", missing, "--out", str(tmp_path / "net.nir")],
        "nir import": ["nir", "import", "--nir", str(tmp_path / "missing.nir"), "--out", str(tmp_path / "m.pt")],
        "simulate": ["simulate", "--model", missing, "--backend", "torch"],
        "deploy": ["deploy", "--model", missing],
        "energy": ["energy", "--snn", missing],
    }


@pytest.mark.parametrize("verb", ["train", "evaluate", "demo", "convert", "nir export", "nir import", "simulate",
                                  "deploy", "energy"])
def test_every_verb_fails_with_one_line_and_one_json_object(tmp_path, capsys, verb: str) -> None:
    code, error, line = run_failing(capsys, [*verb_cases(tmp_path)[verb], "--json"])
    assert code == 2 and error["kind"] == "input"
    assert line.startswith("snn: error: ")
    assert not (tmp_path / "out").exists()  # a failed run leaves no output folder behind


def test_without_json_stdout_stays_empty(tmp_path, capsys) -> None:
    assert main(["evaluate", "--model", str(tmp_path / "missing.pt")]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1 and "does not exist" in captured.err


@pytest.mark.parametrize("argv, needle", [
    (["train", "--out", "x", "--no-such-option"], "unrecognized arguments: --no-such-option"),
    (["train", "--out", "x", "--epochs", "many"], "argument --epochs"),
    (["train"], "the following arguments are required: --out"),
    (["nir"], "required: ACTION"),
    (["no-such-verb"], "invalid choice"),
    ([], "required: VERB"),
])
def test_argparse_errors_follow_the_contract(capsys, argv: list[str], needle: str) -> None:
    code, error, line = run_failing(capsys, [*argv, "--json"])
    assert code == 2 and error["kind"] == "usage" and needle in error["error"]
    assert "--help" in line and "usage:" not in line  # the usage block folded into a pointer to --help


def test_argparse_error_without_json_prints_only_the_line(capsys) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["train", "--out", "x", "--epochs", "many"])
    captured = capsys.readouterr()
    assert stop.value.code == 2 and captured.out == ""
    assert captured.err.startswith("snn train: error: argument --epochs") and captured.err.count("\n") == 1


def test_subparsers_inherit_the_parser_class() -> None:
    parser = cli.build_parser(["nir", "export", "--json"])
    assert isinstance(parser, cli.CommandLineParser) and parser.json_errors
    verbs = parser._subparsers._group_actions[0].choices
    nir_actions = verbs["nir"]._subparsers._group_actions[0].choices
    for sub in [verbs["train"], verbs["nir"], nir_actions["export"]]:
        assert type(sub) is type(parser)


def test_help_is_unchanged_and_exits_0(capsys) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["train", "--help"])
    captured = capsys.readouterr()
    assert stop.value.code == 0 and captured.out.startswith("usage: snn train") and captured.err == ""


@pytest.mark.parametrize("value", ["bogus", "tpu", "cuda:x", "cuda:", ""])  # not "gpu": a keyword conftest skips
def test_a_bogus_device_is_an_argparse_error_naming_the_choices(capsys, value: str) -> None:
    code, error, _ = run_failing(capsys, ["train", "--out", "x", "--device", value, "--json"])
    assert error["kind"] == "usage" and "cpu, cuda, cuda:N" in error["error"]
    code, error, _ = run_failing(capsys, ["demo", "--out", "x", "--device", value, "--json"])
    assert error["kind"] == "usage" and "mps" in error["error"]


def test_device_names() -> None:
    assert [device_name(n) for n in ("cpu", "cuda", "cuda:1", "mps", "CUDA:0")] == ["cpu", "cuda", "cuda:1", "mps",
                                                                                    "cuda:0"]


def test_an_absent_device_is_a_one_line_error(tmp_path, capsys) -> None:
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    code, error, _ = run_failing(capsys, ["train", "--device", "cuda", "--out", str(tmp_path / "out"), "--json"])
    assert code == 2 and "CUDA is not available" in error["error"] and "--device cpu" in error["error"]
    assert not (tmp_path / "out").exists()  # found before any work


def test_an_absent_cuda_index_or_mps_is_a_one_line_error(tmp_path, capsys) -> None:
    import torch
    if torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    code, error, _ = run_failing(capsys, ["convert", "--ann", "x:y", "--device", "mps", "--out", str(tmp_path),
                                          "--json"])
    assert code == 2 and "MPS" in error["error"] and "--device cpu" in error["error"]
    code, error, _ = run_failing(capsys, ["evaluate", "--model", "m.pt", "--device", "cuda:99", "--json"])
    assert code == 2 and ("CUDA is not available" in error["error"] or "CUDA device(s)" in error["error"])


@pytest.mark.parametrize("value", ["inf", "nan", "0", "-1", "1e9", "soon"])
def test_deploy_timeout_must_be_finite_and_positive(capsys, value: str) -> None:
    code, error, _ = run_failing(capsys, ["deploy", "--model", "m.pt", "--timeout", value, "--json"])
    assert code == 2 and error["kind"] == "usage" and "--timeout" in error["error"]


def test_positive_seconds_accepts_a_sane_limit() -> None:
    assert positive_seconds("0.5") == 0.5 and positive_seconds("600") == 600.0


@pytest.mark.parametrize("source, raised", [
    ("def build():\n    raise RuntimeError('the factory broke\\nsecond line')\n", "RuntimeError: the factory broke"),
    ("x = 1 / 0\ndef build():\n    pass\n", "ZeroDivisionError: division by zero"),
    ("def build(:\n", "SyntaxError"),
])
def test_an_exception_of_the_users_factory_is_a_user_code_error(tmp_path, monkeypatch, capsys, source: str,
                                                                  raised: str) -> None:
    name = f"user_factory_{abs(hash(source))}"
    (tmp_path / f"{name}.py").write_text(source)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    code, error, _ = run_failing(capsys, ["convert", "--ann", f"{name}:build", "--out", "out", "--json"])
    assert code == 2 and error["kind"] == "user-code"
    assert error["error"].startswith(f"the ANN factory {name}:build raised {raised}")
    assert error["error"].endswith("; fix the factory") and "second line" not in error["error"]
    assert not (tmp_path / "out").exists()


def _patch_evaluate(monkeypatch, error: BaseException) -> None:
    def boom(args):
        raise error
    monkeypatch.setattr(cli, "_cmd_evaluate", boom)


def test_an_unexpected_exception_is_one_line_internal_error(monkeypatch, capsys) -> None:
    monkeypatch.delenv("SPIKEFORGE_DEBUG", raising=False)
    _patch_evaluate(monkeypatch, ZeroDivisionError("division by zero\nmore detail"))
    code, error, line = run_failing(capsys, ["evaluate", "--model", "m.pt", "--json"])
    assert code == 70 and error["kind"] == "internal"
    assert line.startswith("snn: internal error: ZeroDivisionError: division by zero; this is a bug")
    assert "SPIKEFORGE_DEBUG=1" in line and "more detail" not in line


def test_spikeforge_debug_re_raises_the_internal_error(monkeypatch) -> None:
    monkeypatch.setenv("SPIKEFORGE_DEBUG", "1")
    _patch_evaluate(monkeypatch, ZeroDivisionError("division by zero"))
    with pytest.raises(ZeroDivisionError):
        main(["evaluate", "--model", "m.pt", "--json"])


def test_running_out_of_memory_is_a_resource_error(monkeypatch, capsys) -> None:
    monkeypatch.delenv("SPIKEFORGE_DEBUG", raising=False)
    _patch_evaluate(monkeypatch, MemoryError())
    code, error, _ = run_failing(capsys, ["evaluate", "--model", "m.pt", "--json"])
    assert code == 2 and error["kind"] == "resource" and "--batch-size" in error["error"]


def test_interrupted(monkeypatch, capsys) -> None:
    _patch_evaluate(monkeypatch, KeyboardInterrupt())
    assert main(["evaluate", "--model", "m.pt", "--json"]) == 130
    captured = capsys.readouterr()
    assert json.loads(captured.out)["kind"] == "interrupted" and captured.err == "snn: interrupted\n"


def test_a_multi_line_message_is_collapsed_and_kind_travels(monkeypatch, capsys) -> None:
    _patch_evaluate(monkeypatch, SpikeforgeError("first\n  second", kind="busy"))
    code, error, _ = run_failing(capsys, ["evaluate", "--model", "m.pt", "--json"])
    assert error == {"error": "first second", "kind": "busy"}


def test_spikeforge_error_kinds() -> None:
    plain = SpikeforgeError("msg")
    assert isinstance(plain, ValueError) and str(plain) == "msg"
    assert plain.kind == "input" and plain.keep_partial is False
    assert SpikeforgeError("msg", kind="busy").kind == "busy" and SpikeforgeError.kind == "input"
    diverged = TrainingDiverged("nan")
    assert diverged.kind == "divergence" and diverged.keep_partial
    copied = pickle.loads(pickle.dumps(SpikeforgeError("msg", kind="user-code")))  # crosses DDP processes
    assert copied.kind == "user-code" and str(copied) == "msg"
