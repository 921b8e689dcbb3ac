"""Main-environment side of a Lava run: export, subprocess into ``.venv-lava``, read results back.

``run_in_lava(net, q, mode)`` writes the netx file and the input into a private temporary
folder, runs ``.venv-lava/bin/python runner.py`` with a timeout and reads the result file the
runner wrote atomically. A missing environment names ``make lava-env``; a failing or hanging
run raises :class:`SpikeforgeError` and leaves no result file behind (the folder is removed).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hardware.lava.compile import LoihiNetwork
from hardware.lava.netx_export import export_netx, export_sdn
from hardware.lava.sdn_compile import SigmaDeltaNetwork
from snn.errors import SpikeforgeError

RUNNER = Path(__file__).with_name("runner.py")
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TIMEOUT_S = 600.0


def _run_with_progress(command: list[str], timeout: float, label: str) -> tuple[int, str]:
    """Run ``command`` in its own session, showing the elapsed seconds on stderr (the runner reports no progress of
    its own); past ``timeout`` its whole process group is killed (Lava's worker processes included)."""
    import time

    from tqdm import tqdm

    with tempfile.TemporaryFile(mode="w+") as err, subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=err, text=True, start_new_session=True) as process:
        start = time.perf_counter()
        with tqdm(desc=label, unit="s", bar_format="{desc}: {elapsed}", leave=False) as bar:
            while process.poll() is None:
                if time.perf_counter() - start > timeout:
                    _kill_group(process)
                    raise SpikeforgeError(f"the Lava run did not finish within {timeout:.0f} s and was stopped; run "
                                          "fewer samples or raise the timeout")
                time.sleep(0.2)
                bar.update(0)
        err.seek(0)
        return process.returncode, err.read()


def _kill_group(process: subprocess.Popen, grace_s: float = 10.0) -> None:
    """SIGKILL the process group of ``process`` (the leader of its own session) and wait until no member is
    left: Lava's worker processes, re-parented to init once the runner dies, are gone too when this returns
    (``killpg(pgid, 0)`` fails once the group is empty; members already dead but not yet reaped by init
    still count, so this also waits out their reaping, within ``grace_s``)."""
    import signal
    import time

    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)


@dataclass
class LavaResult:
    """Spikes per layer (``[T, N]`` or ``[S, T, N]``, uint8), the readout membrane, spike counts, wall time."""

    spikes: dict[str, np.ndarray]
    membrane: dict[str, np.ndarray]
    counts: dict[str, int]
    seconds: float


def lava_python() -> Path:
    """The Lava environment's interpreter (``$SPIKEFORGE_LAVA_VENV`` or ``<repo>/.venv-lava``)."""
    venv = Path(os.environ.get("SPIKEFORGE_LAVA_VENV", REPO_ROOT / ".venv-lava"))
    python = venv / "bin" / "python"
    if not python.exists():
        raise SpikeforgeError(f"the Lava environment {venv} is missing; create it with 'make lava-env' "
                              "(Python 3.10, lava-nc 0.10.0)")
    return python


def run_in_lava(net: LoihiNetwork | SigmaDeltaNetwork, q: np.ndarray, mode: str = "single",
                steps_per_sample: int | None = None,
                cfg: str = "sim", timeout: float = DEFAULT_TIMEOUT_S) -> LavaResult:
    """Run quantised input ``q`` (``[T, ...]`` single, ``[S, T, ...]`` stream) on real Lava processes.

    A sigma-delta network runs ``single`` only (one continuous run; its messages come back as
    ``spikes``, the readout's ``act`` as ``membrane``).
    """
    import time
    sigma_delta = isinstance(net, SigmaDeltaNetwork)
    if sigma_delta and mode != "single":
        raise SpikeforgeError("a sigma-delta network runs as one continuous stream (mode='single'); its neurons "
                              "have no reset")
    if not sigma_delta and mode == "stream" and net.stream_refusal():
        raise SpikeforgeError(f"{net.stream_refusal()}; its last spikes of one sample would reach the next; run one "
                              "sample per Lava run (mode='single') or use LIF with reset='zero'")
    python = lava_python()
    with tempfile.TemporaryDirectory(prefix="spikeforge-lava-") as tmp:
        folder = Path(tmp)
        (export_sdn if sigma_delta else export_netx)(net, folder / "network.net")
        np.save(folder / "input.npy", np.ascontiguousarray(q).astype(np.int32))
        out = folder / "result.npz"
        command = [str(python), str(RUNNER), "--net", str(folder / "network.net"), "--input",
                   str(folder / "input.npy"), "--out", str(out), "--mode", mode, "--cfg", cfg]
        if steps_per_sample is not None:
            command += ["--steps-per-sample", str(steps_per_sample)]
        start = time.perf_counter()
        samples = int(q.shape[0]) if q.ndim > 2 else 1
        label = f"Lava run ({samples} sample{'s' if samples != 1 else ''})"
        returncode, stderr = _run_with_progress(command, timeout, label)
        seconds = time.perf_counter() - start
        if returncode != 0 or not out.exists():
            tail = stderr.strip().splitlines()[-3:]
            raise SpikeforgeError(f"the Lava run failed (exit status {returncode}): {' | '.join(tail)}")
        with np.load(out) as result:
            spikes = {k[len("spikes/"):]: result[k] for k in result.files if k.startswith("spikes/")}
            membrane = {k[len("membrane/"):]: result[k] for k in result.files if k.startswith("membrane/")}
            counts = json.loads(str(result["counts"]))
    return LavaResult(spikes, membrane, counts, seconds)
