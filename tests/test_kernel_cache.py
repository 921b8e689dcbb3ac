"""numba's on-disk cache serves the fused kernels to the next process (no compile per command).

The kernels are closures over flags and over other jitted helpers; numba keys such a closure
by its pickled cells, so each helper needs a stable identity (``snn.kernels.jit_cache``). A
second process with the same cache folder must load every kernel and compile none.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from snn.kernels import numba_available

pytestmark = pytest.mark.skipif(not numba_available(), reason="numba not installed")

RUN = """
import torch
from snn import functional, surrogate
from snn.kernels import alif_scan
x = torch.rand(5, 2, 3, requires_grad=True)
p = functional.AlifParameters(*(torch.tensor(v, requires_grad=True) for v in (0.5, 0.9, 1.0, 0.0, 0.9, 0.2)))
spikes, _ = alif_scan(x, None, p, surrogate.get("arctan"), "zero", False)
spikes.sum().backward()
"""


def _run(cache_dir) -> str:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache_dir), "NUMBA_DEBUG_CACHE": "1"}
    done = subprocess.run([sys.executable, "-c", RUN], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


@pytest.mark.slow
def test_a_second_process_loads_every_kernel_from_the_cache(tmp_path) -> None:
    first = _run(tmp_path)
    assert "data saved" in first and "numba_scan" in first  # the first process compiled and stored
    second = _run(tmp_path)
    scan_lines = [line for line in second.splitlines() if "numba_scan" in line]
    assert any("data loaded" in line for line in scan_lines)
    assert not [line for line in scan_lines if "data saved" in line], "a kernel was compiled again"


# Each process compiles the forward kernels of one reset mode in both precisions; the index
# numba keeps per function is where two processes used to overwrite each other's entries
# (the backward kernels share the mechanism; the forward keeps this test cheap).
RACE = """
import sys, torch
from snn import functional, surrogate
from snn.kernels import cuba_scan
reset = sys.argv[1]
with torch.no_grad():
    for dtype in (torch.float32, torch.float64):
        x = torch.rand(6, 2, 5, dtype=dtype)
        p = functional.CubaParameters(*(torch.tensor(v, dtype=dtype) for v in (0.5, 0.9, 0.3, 0.0)))
        cuba_scan(x, None, p, surrogate.get("fast_sigmoid"), reset)
"""

CHECK = """
import torch
from snn import functional, surrogate
from snn.kernels import cuba_scan
with torch.no_grad():
    for reset in ("subtract", "zero"):
        for dtype in (torch.float32, torch.float64):
            x = torch.rand(6, 2, 5, dtype=dtype, generator=torch.Generator().manual_seed(1))
            p = functional.CubaParameters(*(torch.tensor(v, dtype=dtype) for v in (0.5, 0.9, 0.3, 0.0)))
            step = lambda xt, s: functional.cuba_step(xt, s, p, surrogate.get("fast_sigmoid"), reset)
            rest = functional.CubaState(torch.zeros_like(x[0]), torch.zeros_like(x[0]))
            ref, _, _ = functional.scan(step, x, rest)
            spikes, _ = cuba_scan(x, None, p, surrogate.get("fast_sigmoid"), reset)
            assert torch.equal(spikes, ref) and 0 < ref.mean() < 1, (reset, dtype)
"""


@pytest.mark.slow
def test_processes_compiling_at_once_leave_a_cache_that_serves_the_right_kernels(tmp_path) -> None:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    racers = [subprocess.Popen([sys.executable, "-c", RACE, reset], env=env, stderr=subprocess.PIPE, text=True)
              for reset in ("subtract", "zero")]
    for racer in racers:
        _, err = racer.communicate(timeout=600)
        assert racer.returncode == 0, err
    indexes = {path.name.split("-")[0] for path in tmp_path.rglob("*_forward_kernels*serial*.nbi")}
    assert len(indexes) == 2, f"one cache index per flag setting expected, found {sorted(indexes)}"
    done = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True,
                          env={**env, "NUMBA_DEBUG_CACHE": "1"}, timeout=600)
    assert done.returncode == 0, done.stderr
    assert not [line for line in done.stdout.splitlines() if "numba_scan" in line and "data saved" in line]
