"""NIR dialects: how a producer's files differ from the specification, so that import can undo it.

A NIR file describes neurons that reset to ``v_reset`` in the step they spike, with time
constants in seconds. Some producers write that while their own simulator runs something
else, and the file cannot say so. ``import_nir(graph, dialect=...)`` names the producer
and reads the file as that producer's simulator runs it:

``"nir"`` (default)
    The specification, read by forward Euler (:mod:`converters.nir_discretisation`); the
    reset is the node's ``reset_mode`` metadata (spikeforge's files), else zero. Norse's
    and SpikingJelly's files are read this way.
``"snntorch"``
    ``snntorch.export_to_nir`` (snnTorch 0.9 to 1.0). It writes ``v_reset = 0`` whatever
    the layer's ``reset_mechanism`` / ``reset_delay``; a ``Leaky`` / ``Synaptic`` (and
    their recurrent forms) with snnTorch's defaults (``"subtract"``, ``reset_delay=True``)
    subtracts the undecayed threshold one step after the spike: our reset
    ``"subtract-delayed"`` (:mod:`snn.functional`). Decays by forward Euler, dt = 1e-4 s
    (snnTorch's fixed step). A layer built with ``reset_mechanism="zero",
    reset_delay=False`` is what the specification says: import it without a dialect.
``"sinabs"``
    ``sinabs.to_nir`` (sinabs 3.1). Its time constants count steps (dt = 1), its decays are
    exact, ``exp(-dt / tau)``, and its neurons reset by subtraction (sinabs'
    ``MembraneSubtract``). A ``LIF`` node is sinabs' ``LIF`` with its default
    ``norm_input=True``, ``v = exp(-1/tau) v + (1 - exp(-1/tau)) x``: input gain
    ``r (1 - beta)``; an ``IF`` node is ``IAF``, gain ``r dt``. sinabs writes no CubaLIF, and
    its ``LI`` (``ExpLeak``, ``norm_input=False`` by default) contradicts that gain rule,
    so both are refused in this dialect.

Where a node's metadata records our own ``reset_mode`` (a spikeforge file), that record
wins over the dialect's reset: it is what the layer did.
"""

from __future__ import annotations

from typing import NamedTuple

from converters import nir_discretisation as D
from snn.errors import SpikeforgeError


class Dialect(NamedTuple):
    """How one producer's NIR files are read."""

    name: str
    reset: str  # the reset of a spiking node whose metadata records none
    dt: float  # seconds per step when neither the call nor the graph's metadata gives one
    exponential: bool  # decays exp(-dt/tau) and LIF gain r (1 - beta) (sinabs), else forward Euler
    refused: tuple[str, ...] = ()  # NIR node types this producer writes with no consistent meaning


DIALECTS: dict[str, Dialect] = {
    "nir": Dialect("nir", "zero", D.DEFAULT_DT, exponential=False),
    "snntorch": Dialect("snntorch", "subtract-delayed", D.DEFAULT_DT, exponential=False),
    "sinabs": Dialect("sinabs", "subtract", 1.0, exponential=True, refused=("CubaLIF", "LI")),
}


def get_dialect(name: str | None) -> Dialect:
    """The dialect called ``name`` (None: the specification, ``"nir"``)."""
    if name is None:
        return DIALECTS["nir"]
    if name not in DIALECTS:
        raise SpikeforgeError(f"unknown NIR dialect {name!r}; choose one of {', '.join(DIALECTS)} (the producer "
                              "that wrote the file; 'nir' reads it as the specification says)")
    return DIALECTS[name]
