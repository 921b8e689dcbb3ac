"""The continuous <-> discrete mapping between NIR neurons and our dynamics contract.

NIR states neurons in continuous time; :mod:`snn.functional` is discrete. Both directions
use this one module, so ours -> NIR -> ours is exact.

The discretisation: forward Euler with time step ``dt``, the input held constant over one
step, the synaptic current updated before the membrane (as snnTorch's ``Synaptic`` and
Norse's ``LIFBoxCell`` / ``from_nir`` do). The NIR equations

    tau_syn dI/dt = -I + w_in x                 (CubaLIF only; LIF has I = x)
    tau     dv/dt = (v_leak - v) + r I           (IF: dv/dt = r I)
    spike when v > v_threshold, then v = v_reset

become, per step,

    I[t] = alpha I[t-1] + g_syn x[t]            alpha = 1 - dt/tau_syn,  g_syn = w_in dt/tau_syn
    v[t] = beta  v[t-1] + (1 - beta) v_leak + g_mem I[t]
                                                beta  = 1 - dt/tau,      g_mem = r dt/tau  (IF: r dt)

Our contract has unit input gain (``v = beta v + i + bias``), so the state is rescaled by
the total gain ``G = g_syn * g_mem``: v_ours = v_nir / G and i_ours = i_nir / g_syn, which
gives

    theta = v_threshold / G,    bias = (1 - beta) v_leak / G

Spikes are unchanged by the rescaling (v > v_threshold  <=>  v/G > v_threshold/G), and so is
a reset to zero or by subtraction of the threshold. Export writes ``G = 1``:

    tau = dt / (1 - beta),  r = tau/dt = 1/(1 - beta),  v_leak = bias / (1 - beta),
    tau_syn = dt / (1 - alpha),  w_in = tau_syn/dt,  v_threshold = theta,  v_reset = 0

(exactly snnTorch's export mapping, which also writes ``r = tau/dt`` and ``w_in = tau_syn/dt``).
IF (beta = 1) is NIR's IF with ``r = 1/dt``; a leak-free layer cannot carry a bias.

Why forward Euler and not beta = exp(-dt/tau): it is the rule snnTorch's and Norse's own
NIR mappings use (snnTorch: ``beta = 1 - dt/tau``; Norse's LIFBoxCell integrates
``dv = dt/tau ((v_leak - v) + i)``), so their exports reproduce their simulations.

Reset: NIR has no reset mode; its neurons reset to ``v_reset``. We write ``v_reset = 0``
and the mode in the node's metadata (``reset_mode``: ``"zero"``, ``"subtract"`` or
``"subtract-delayed"``). A reader that ignores metadata (every peer) runs reset-to-zero;
without the field we assume zero, as the specification says, unless the import names a
producer whose files mean something else (:mod:`converters.nir_dialects`: snnTorch's
default is ``"subtract-delayed"``). A non-zero ``v_reset`` has no counterpart and is refused.

Exact (exponential) decays, for producers that integrate that way (sinabs): ``beta =
exp(-dt/tau)`` and the membrane's input gain ``g_mem = r (1 - beta)`` (the zero-order-hold
solution of the LIF equation over one step); ``theta`` and ``bias`` follow as above.

Exactness: computed in float64 and rounded once to the layer's dtype. Parameters in float32
(torch's default) round-trip bit for bit: the formulas' float64 error (~1e-16) is far below a
float32 ulp (checked on 200,000 random decays at dt = 1e-4, 1e-3, 3.3e-3, 1). Export also
nudges each continuous value by a few ulps until the import formula returns the discrete
value exactly, and a total gain within a few ulps of 1 is read as exactly 1; float64
parameters then come back exactly in most cases and otherwise within an ulp or two
(``1 - dt/tau`` cannot produce every float64 below 0.5).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np

from snn.errors import SpikeforgeError

DEFAULT_DT = 1e-4
"""Seconds per step when a NIR graph records none: the step snnTorch's NIR import and
export assume (``dt = 1e-4`` in ``snntorch/export_nir.py`` and ``import_nir.py``)."""

RESET_KEY = "reset_mode"
GAIN_ULPS = 16  # a total gain this close to 1 is float rounding of r*dt/tau, i.e. exactly 1


class Discrete(NamedTuple):
    """Per-neuron discrete parameters of our contract (float64 arrays, broadcast shape)."""

    alpha: np.ndarray
    beta: np.ndarray
    theta: np.ndarray
    bias: np.ndarray


def check_dt(dt: float) -> float:
    if not (isinstance(dt, (int, float)) and np.isfinite(dt) and dt > 0):
        raise SpikeforgeError(f"time step dt must be a positive number of seconds, got {dt!r}")
    return float(dt)


def _exact(value: np.ndarray, inverse: Callable[[np.ndarray], np.ndarray], target: np.ndarray,
           steps: int = 8) -> np.ndarray:
    """Among the floats within ``steps`` ulps of ``value``, pick per element one whose
    ``inverse`` equals ``target`` exactly; keep ``value`` where none does."""
    best = value.copy()
    done = inverse(best) == target
    up, down = value.copy(), value.copy()
    for _ in range(steps):
        if done.all():
            break
        up, down = np.nextafter(up, np.inf), np.nextafter(down, -np.inf)
        for candidate in (up, down):
            hit = ~done & (inverse(candidate) == target)
            best[hit] = candidate[hit]
            done |= hit
    return best


def decay_to_tau(decay: np.ndarray, dt: float, what: str) -> np.ndarray:
    """tau = dt / (1 - decay), nudged so that :func:`tau_to_decay` returns ``decay`` exactly."""
    if (decay >= 1).any() or (decay < 0).any():
        raise SpikeforgeError(f"{what} decay must lie in [0, 1) to be written as a NIR time constant, "
                              f"got {decay.tolist()}; a decay of 1 (no leak) has no finite tau")
    return _exact(dt / (1.0 - decay), lambda tau: tau_to_decay(tau, dt), decay)


def tau_to_decay(tau: np.ndarray, dt: float) -> np.ndarray:
    """decay = 1 - dt / tau (forward Euler)."""
    return 1.0 - dt / tau


def membrane_gain(r: np.ndarray, tau: np.ndarray, dt: float, exponential: bool = False) -> np.ndarray:
    """The membrane's input gain over one step: ``r dt / tau`` (Euler) or ``r (1 - exp(-dt/tau))`` (exact)."""
    r, tau = np.asarray(r, dtype=np.float64), np.asarray(tau, dtype=np.float64)
    return -r * np.expm1(-dt / tau) if exponential else r * dt / tau


def leak_to_bias(v_leak: np.ndarray, beta: np.ndarray, gain: np.ndarray) -> np.ndarray:
    return (1.0 - beta) * v_leak / gain


def bias_to_leak(bias: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """v_leak = bias / (1 - beta), nudged so :func:`leak_to_bias` (gain 1) returns ``bias``."""
    one = np.ones_like(bias)
    return _exact(bias / (1.0 - beta), lambda leak: leak_to_bias(leak, beta, one), bias)


def snap_gain(gain: np.ndarray) -> np.ndarray:
    """A gain within GAIN_ULPS of 1 is rounding of ``r * dt / tau``: read it as exactly 1."""
    gain = np.asarray(gain, dtype=np.float64)
    close = np.abs(gain - 1.0) <= GAIN_ULPS * np.finfo(np.float64).eps
    return np.where(close, 1.0, gain)


def check_gain(gain: np.ndarray, node: str) -> np.ndarray:
    if not np.isfinite(gain).all() or (gain <= 0).any():
        raise SpikeforgeError(f"NIR node {node!r} has a non-positive or infinite input gain (r*dt/tau or "
                              f"w_in*dt/tau_syn = {np.unique(gain).tolist()[:4]}); check its r / w_in / tau "
                              "values or the dt passed to the import")
    return gain


def tau_to_decay_checked(tau: np.ndarray, dt: float, node: str, field: str, exponential: bool = False) -> np.ndarray:
    """:func:`tau_to_decay` for an imported node; refuses taus that give a decay outside [0, 1].
    ``exponential``: the exact decay ``exp(-dt/tau)`` instead (any positive tau)."""
    tau = np.asarray(tau, dtype=np.float64)
    if exponential:
        if not np.isfinite(tau).all() or (tau <= 0).any():
            raise SpikeforgeError(f"NIR node {node!r}: {field} must be positive and finite, got "
                                  f"{float(np.min(tau))}; check the file")
        return np.exp(-dt / tau)
    if not np.isfinite(tau).all() or (tau < dt).any():
        raise SpikeforgeError(f"NIR node {node!r}: {field} = {float(np.min(tau))} s is shorter than the time step "
                              f"dt = {dt} s, so forward Euler would give a negative decay; import with "
                              f"dt <= {float(np.min(tau))}")
    return tau_to_decay(tau, dt)
