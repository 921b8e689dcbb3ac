"""Peak resident memory of one call, for the benchmarks that compare libraries' memory.

The kernel's high-water mark of the resident set (``VmHWM``) is reset to the current resident
set through ``/proc/self/clear_refs`` (Linux >= 4.0), the call runs, and the new high-water
mark minus the level before the call is the call's peak. Where the reset is not allowed, a
thread samples the resident set every ~0.2 ms instead (which can miss a short peak).

Each case should run in a fresh process started by :func:`run_case_in_subprocess`, with glibc
told to return large blocks to the system (``MALLOC_MMAP_THRESHOLD_``), so that one library's
cached memory does not hide or inflate another's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from typing import Any, Callable

SUBPROCESS_ENV = {"MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "131072"}


def rss() -> int:
    """The current resident set, in bytes."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss() -> int:
    """The kernel's high-water mark of the resident set (``VmHWM``), in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise OSError("no VmHWM in /proc/self/status")


def reset_peak_rss() -> bool:
    """Reset ``VmHWM`` to the current resident set (Linux >= 4.0); False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _sampled_peak(call: Callable[[], Any]) -> tuple[Any, int]:
    sys.setswitchinterval(1e-4)
    peak = [rss()]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss())
            time.sleep(0.0002)
    thread = threading.Thread(target=sample)
    thread.start()
    try:
        result = call()
    finally:
        done.set()
        thread.join()
    return result, max(peak[0], rss())


def peak_above_base(call: Callable[[], Any]) -> tuple[Any, int]:
    """``(call's result, peak resident bytes above the level before the call)``: exact where the kernel
    lets us reset its high-water mark (updated before every decrease of the resident set), sampled
    otherwise."""
    base = rss()
    if reset_peak_rss():
        result = call()
        return result, peak_rss() - base
    result, peak = _sampled_peak(call)
    return result, peak - base


def run_case_in_subprocess(module_file: str, expression: str) -> dict[str, Any]:
    """Evaluate ``expression`` (JSON-able) in a fresh Python with the module beside ``module_file`` on the
    path and :data:`SUBPROCESS_ENV` set; its last stdout line is the JSON result."""
    folder = os.path.dirname(os.path.abspath(module_file))
    module = os.path.splitext(os.path.basename(module_file))[0]
    code = (f"import json, sys; sys.path.insert(0, {folder!r}); import {module} as b; "
            f"print(json.dumps(b.{expression}))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ, **SUBPROCESS_ENV}, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])
