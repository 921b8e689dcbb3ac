"""Package attributes imported on first use (PEP 562), for a fast ``snn --help``.

A package face that re-exports names from heavy modules (torch, Brian2) would make every
import of the package, and so every ``snn`` command, pay for them. Instead it declares
where each name lives and lets this module load the home on first access::

    __getattr__, __dir__ = lazy_attributes(__name__, {"Sequential": "snn.network", "losses": "snn.losses"})

A home that is the module ``<package>.<name>`` itself yields the module.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_attributes(package: str, homes: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``: ``homes`` maps each public name to its module."""
    namespace = importlib.import_module(package).__dict__

    def __getattr__(name: str) -> Any:
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = importlib.import_module(home)
        value = module if home == f"{package}.{name}" else getattr(module, name)
        namespace[name] = value  # later look-ups skip __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(homes))

    return __getattr__, __dir__
