"""Output folders of the command line (issue 21, item 5): :mod:`snn.app.out_folder`.

``--out`` is checked before any work, locked for the run (a second run into it fails at once,
kind ``busy``), and written as a set from a staging folder: nothing of a failed run appears in
it, paths in the result name the final folder, stale leftovers of killed runs are removed, and
artifacts get the permissions of a plain write (0666 less the umask).
"""

from __future__ import annotations

import fcntl
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from snn.app import cli
from snn.app.cli import main
from snn.app.out_folder import LOCK_NAME, OutFolder
from snn.checkpoint import load_checkpoint
from snn.errors import SpikeforgeError
from snn.fileio import write_json, write_text
from snn.training import TrainingDiverged


def failed(capsys, argv: list[str]) -> dict:
    code = main([*argv, "--json"])
    captured = capsys.readouterr()
    assert code == 2, captured
    assert captured.err.count("\n") == 1 and captured.err.startswith("snn: error: ")
    return json.loads(captured.out)


def no_work(monkeypatch) -> None:
    def must_not_run(args):
        raise AssertionError("the verb ran although --out is unusable")
    monkeypatch.setattr(cli, "_cmd_train", must_not_run)


def fake_train(monkeypatch, work) -> list:
    """Replace the train verb by ``work(args)``; returns the list of the ``args.out`` it was given."""
    seen = []

    def verb(args):
        seen.append(args.out)
        return work(args)
    monkeypatch.setattr(cli, "_cmd_train", verb)
    return seen


def test_out_that_is_a_file_is_an_error_before_any_work(tmp_path, monkeypatch, capsys) -> None:
    no_work(monkeypatch)
    target = tmp_path / "results.json"
    target.write_text("{}")
    start = time.perf_counter()
    error = failed(capsys, ["train", "--out", str(target)])
    assert error == {"error": f"--out {target} is a file; give a folder", "kind": "input"}
    assert time.perf_counter() - start < 2 and target.read_text() == "{}"


def test_out_below_a_file_is_an_error_before_any_work(tmp_path, monkeypatch, capsys) -> None:
    no_work(monkeypatch)
    (tmp_path / "file").write_text("x")
    error = failed(capsys, ["train", "--out", str(tmp_path / "file" / "sub")])
    assert "is below the file" in error["error"] and error["kind"] == "input"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes in a read-only folder")
def test_an_unwritable_out_is_an_error_before_any_work(tmp_path, monkeypatch, capsys) -> None:
    no_work(monkeypatch)
    locked = tmp_path / "readonly"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        error = failed(capsys, ["train", "--out", str(locked)])
    finally:
        locked.chmod(0o700)
    assert "is not writable" in error["error"]


def test_a_second_run_into_a_held_folder_fails_at_once(tmp_path, monkeypatch, capsys) -> None:
    no_work(monkeypatch)
    out = tmp_path / "out"
    holder = OutFolder(out)
    holder.open()
    try:
        error = failed(capsys, ["train", "--out", str(out)])
    finally:
        holder.discard()
        holder.close()
    assert error["kind"] == "busy"
    assert error["error"] == (f"--out {out} is in use by run pid {os.getpid()}; wait for it or choose another "
                              "folder")
    assert not out.exists()  # the holder created it and left nothing in it


def test_a_second_snn_process_into_a_locked_folder_fails_at_once(tmp_path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    fd = os.open(out / LOCK_NAME, os.O_RDWR | os.O_CREAT)
    try:
        os.write(fd, b"1234\n")
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a run in another process holds it
        run = subprocess.run([sys.executable, "-m", "snn", "train", "--dataset", "digits", "--arch", "mlp",
                              "--epochs", "1", "--timesteps", "2", "--out", str(out), "--json"],
                             capture_output=True, text=True, timeout=120)
    finally:
        os.close(fd)
    assert run.returncode == 2
    assert json.loads(run.stdout) == {"error": f"--out {out} is in use by run pid 1234; wait for it or choose "
                                               "another folder", "kind": "busy"}
    assert run.stderr.count("\n") == 1
    assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]  # the holder's lock is left alone


def test_a_failed_run_leaves_nothing_in_out(tmp_path, capsys) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "earlier.txt").write_text("an earlier run's file")
    error = failed(capsys, ["train", "--dataset", "mnist", "--data-dir", str(tmp_path / "nowhere"), "--out",
                            str(out)])
    assert "nowhere" in error["error"]
    assert sorted(p.name for p in out.iterdir()) == ["earlier.txt"]
    fresh = tmp_path / "new" / "deeper"
    failed(capsys, ["train", "--dataset", "mnist", "--data-dir", str(tmp_path / "nowhere"), "--out", str(fresh)])
    assert not (tmp_path / "new").exists()  # the folders the run created are gone again


def test_what_a_failing_verb_wrote_is_discarded(tmp_path, monkeypatch, capsys) -> None:
    def work(args):
        write_text(Path(args.out) / "model.pt", "half")
        raise SpikeforgeError(f"the run failed after writing {args.out}/model.pt")
    seen = fake_train(monkeypatch, work)
    out = tmp_path / "out"
    error = failed(capsys, ["train", "--out", str(out)])
    assert error["error"] == f"the run failed after writing {out}/model.pt"  # the final folder, not the staging one
    assert Path(seen[0]).parent == out and Path(seen[0]).name == f".staging-{os.getpid()}"
    assert not out.exists()


def test_an_interrupted_run_is_discarded(tmp_path, monkeypatch, capsys) -> None:
    def work(args):
        write_text(Path(args.out) / "model.pt", "half")
        raise KeyboardInterrupt
    fake_train(monkeypatch, work)
    out = tmp_path / "out"
    out.mkdir()
    assert main(["train", "--out", str(out)]) == 130
    assert list(out.iterdir()) == []


def test_a_diverged_run_keeps_its_last_good_checkpoint(tmp_path, monkeypatch, capsys) -> None:
    def work(args):
        write_text(Path(args.out) / "model.pt", "epoch 2")
        raise TrainingDiverged(f"training diverged at epoch 3; the last good checkpoint is kept in "
                               f"{Path(args.out) / 'model.pt'}; lower --lr")
    fake_train(monkeypatch, work)
    out = tmp_path / "out"
    error = failed(capsys, ["train", "--out", str(out)])
    assert error["kind"] == "divergence" and f"kept in {out / 'model.pt'};" in error["error"]
    assert sorted(p.name for p in out.iterdir()) == ["model.pt"] and (out / "model.pt").read_text() == "epoch 2"


def test_a_run_is_committed_as_a_set_with_its_paths_rewritten(tmp_path, monkeypatch, capsys) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("kept")
    (out / "model.pt").write_text("replaced")
    (out / "plots").mkdir()
    (out / "plots" / "old.png").write_text("kept too")
    (out / ".staging-99999999").mkdir()  # a killed run's leftovers
    (out / ".staging-99999999" / "model.pt").write_text("stale")
    (out / ".model.pt.abc.tmp").write_text("stale")

    def work(args):
        staging = Path(args.out)
        assert not (out / ".staging-99999999").exists() and not (out / ".model.pt.abc.tmp").exists()
        assert (out / LOCK_NAME).read_text().strip() == str(os.getpid())
        write_text(staging / "model.pt", "new")
        write_text(staging / "plots" / "curve.png", "png")
        write_json(staging / "train.json", {"checkpoint": str(staging / "model.pt")})
        assert not (out / "plots" / "curve.png").exists()  # nothing reaches --out before the run succeeds
        return {"checkpoint": str(staging / "model.pt"), "plots": [str(staging / "plots" / "curve.png")],
                "nested": {"folder": str(staging)}, "epochs": 1}
    fake_train(monkeypatch, work)
    assert main(["train", "--out", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result == {"checkpoint": str(out / "model.pt"), "plots": [str(out / "plots" / "curve.png")],
                      "nested": {"folder": str(out)}, "epochs": 1}
    assert sorted(p.name for p in out.iterdir()) == ["model.pt", "old.txt", "plots", "train.json"]
    assert (out / "model.pt").read_text() == "new" and (out / "old.txt").read_text() == "kept"
    assert sorted(p.name for p in (out / "plots").iterdir()) == ["curve.png", "old.png"]
    assert json.loads((out / "train.json").read_text()) == {"checkpoint": str(out / "model.pt")}


def test_a_relative_out_is_rewritten_too(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    fake_train(monkeypatch, lambda args: {"checkpoint": str(Path(args.out) / "model.pt"),
                                          "absolute": str((Path(args.out) / "model.pt").resolve())})
    assert main(["train", "--out", "rel", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result == {"checkpoint": str(Path("rel") / "model.pt"),
                      "absolute": str((tmp_path / "rel" / "model.pt").resolve())}
    assert list((tmp_path / "rel").iterdir()) == []  # the lock file is gone with the run


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_artifacts_get_the_mode_of_a_plain_write(tmp_path, umask: int, mode: int) -> None:
    old = os.umask(umask)
    try:
        written = write_json(tmp_path / "result.json", {"a": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE(written.stat().st_mode) == mode


def test_nir_out_file_is_checked_before_any_work(tmp_path, capsys) -> None:
    (tmp_path / "file").write_text("x")
    error = failed(capsys, ["nir", "export", "--model", "missing.pt", "--out", str(tmp_path / "file" / "net.nir")])
    assert "is below the file" in error["error"]
    error = failed(capsys, ["nir", "import", "--nir", "missing.nir", "--out", str(tmp_path)])
    assert "is a folder; name the checkpoint to write" in error["error"]


def test_a_real_training_run_lands_in_the_final_folder(tmp_path, capsys) -> None:
    out = tmp_path / "out"
    old = os.umask(0o022)
    try:
        code = main(["train", "--dataset", "digits", "--arch", "mlp", "--epochs", "1", "--timesteps", "2",
                     "--out", str(out), "--json"])
    finally:
        os.umask(old)
    result = json.loads(capsys.readouterr().out)
    assert code == 0
    assert result["checkpoint"] == str(out / "model.pt") and result["training_curves"] == str(
        out / "training_curves.png")
    assert sorted(p.name for p in out.iterdir()) == ["model.pt", "train.json", "training_curves.png"]
    assert json.loads((out / "train.json").read_text())["checkpoint"] == str(out / "model.pt")
    assert stat.S_IMODE((out / "model.pt").stat().st_mode) == 0o644
    assert main(["evaluate", "--model", result["checkpoint"], "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["test_accuracy"] == result["test_accuracy"]


def test_two_concurrent_trainings_into_one_folder_the_second_fails_at_once(tmp_path) -> None:
    """Two real ``snn train`` processes: the second fails while the first still runs; the folder ends
    with the first run's model, curves and train.json, which agree with each other."""
    out = tmp_path / "out"
    command = [sys.executable, "-m", "snn", "train", "--dataset", "digits", "--arch", "mlp", "--timesteps", "2",
               "--out", str(out), "--json"]
    first = subprocess.Popen([*command, "--epochs", "4"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(600):  # until the first run holds the folder (its start-up imports torch)
            if (out / LOCK_NAME).exists() or first.poll() is not None:
                break
            time.sleep(0.1)
        second = subprocess.run([*command, "--epochs", "1", "--seed", "3"], capture_output=True, text=True,
                                timeout=120)
        assert first.poll() is None, "the first run ended before the second was refused; the test proves nothing"
        assert second.returncode == 2 and json.loads(second.stdout)["kind"] == "busy"
        assert f"pid {first.pid}" in second.stderr
        stdout, stderr = first.communicate(timeout=600)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, stderr
    result = json.loads(stdout)
    assert sorted(p.name for p in out.iterdir()) == ["model.pt", "train.json", "training_curves.png"]
    written = json.loads((out / "train.json").read_text())
    meta = load_checkpoint(out / "model.pt").meta
    assert written["checkpoint"] == result["checkpoint"] == str(out / "model.pt")
    assert written["epochs"] == meta["settings"]["epochs"] == 4
    assert meta["split"]["seed"] == written["split"]["seed"] == 0


@pytest.mark.skipif(not Path("/proc/sys").is_dir(), reason="needs Linux's /proc (read-only even for root)")
def test_a_read_only_out_fails_before_any_work_even_for_root(capsys) -> None:
    code = main(["train", "--dataset", "digits", "--out", "/proc/sys/spikeforge-out", "--json"])
    captured = capsys.readouterr()
    assert code == 2 and captured.err.count("\n") == 1 and "cannot be created" in captured.err
    assert json.loads(captured.out)["kind"] == "input"
