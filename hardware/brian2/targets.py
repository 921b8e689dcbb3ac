"""Brian2 code-generation targets and the checks done before anything is built.

Targets:

- ``"numpy"`` (default): Brian2's runtime mode, code generated as vectorised NumPy; no
  compiler, no compile time. The fastest choice for small networks and short runs.
- ``"cython"``: runtime mode with Cython-compiled code objects (needs Cython and a C++
  compiler; the first run of a network compiles, later runs hit Brian2's cache).
- ``"cpp_standalone"``: Brian2 writes, compiles (``make`` + ``$CXX``, default ``g++``) and
  runs a C++ program in a project folder; the fastest for long runs of large networks.

Size limits: Brian2 keeps per-synapse arrays (pre and post index, weight, bookkeeping) in
memory; :data:`BYTES_PER_SYNAPSE` is our estimate of their total per synapse, used to say
how much memory a network would need when it exceeds a target's synapse limit.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sysconfig

from snn.errors import SpikeforgeError

TARGETS = ("numpy", "cython", "cpp_standalone")

# Synapses (all batch copies together) a target may build before we refuse. Runtime targets
# hold Python-managed arrays and loop in NumPy / Cython; standalone runs plain C++.
MAX_SYNAPSES = {"numpy": 20_000_000, "cython": 50_000_000, "cpp_standalone": 200_000_000}
BYTES_PER_SYNAPSE = 40  # int32 i, j + float64 w + Brian2's synapse bookkeeping, rounded up


def check_target(target: str) -> str:
    """Validate ``target`` and its tool chain; raise naming what is missing and the fix."""
    if target not in TARGETS:
        raise SpikeforgeError(f"unknown Brian2 target {target!r}; choose one of {', '.join(TARGETS)}")
    if target == "cython" and importlib.util.find_spec("Cython") is None:
        raise SpikeforgeError("the cython target needs Cython; install it (pip install cython) or use --target numpy")
    if target in ("cython", "cpp_standalone"):
        compiler = cxx_compiler()
        if shutil.which(compiler) is None:
            raise SpikeforgeError(f"the {target} target needs a C++ compiler, but {compiler!r} was not found; "
                                  "install g++ (e.g. apt-get install g++), set CXX to your compiler, "
                                  "or use --target numpy")
    if target == "cpp_standalone" and shutil.which("make") is None:
        raise SpikeforgeError("the cpp_standalone target needs 'make', which was not found; install make "
                              "(e.g. apt-get install make) or use --target numpy")
    return target


def cxx_compiler() -> str:
    """The C++ compiler Brian2 will call: ``$CXX``, else Python's configured one, else ``g++``."""
    configured = os.environ.get("CXX") or (sysconfig.get_config_var("CXX") or "g++")
    return configured.split()[0]


def check_size(synapses: int, neurons: int, copies: int, target: str, limit: int | None = None) -> None:
    """Refuse a network too large for ``target``, with the estimate in the message."""
    limit = MAX_SYNAPSES[target] if limit is None else limit
    total = synapses * copies
    if total > limit:
        gib = total * BYTES_PER_SYNAPSE / 2 ** 30
        raise SpikeforgeError(
            f"the network is too large for the Brian2 {target} target: about {synapses:,} synapses and "
            f"{neurons:,} neurons per sample, x {copies} parallel sample(s) = {total:,} synapses "
            f"(~{gib:.1f} GiB at {BYTES_PER_SYNAPSE} bytes each) exceeds the limit of {limit:,}; "
            "simulate fewer samples in parallel (--batch 1), use a smaller network, or the cpp_standalone target")
