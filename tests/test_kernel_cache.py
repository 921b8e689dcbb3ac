"""numba's on-disk cache serves the fused kernels to the next process (no compile per command).

The kernels are closures over flags and over other jitted helpers; numba keys such a closure
by its pickled cells, so each helper needs a stable identity (``numba_scan._stable``). A
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


def test_a_second_process_loads_every_kernel_from_the_cache(tmp_path) -> None:
    first = _run(tmp_path)
    assert "data saved" in first and "numba_scan" in first  # the first process compiled and stored
    second = _run(tmp_path)
    scan_lines = [line for line in second.splitlines() if "numba_scan" in line]
    assert any("data loaded" in line for line in scan_lines)
    assert not [line for line in scan_lines if "data saved" in line], "a kernel was compiled again"
