"""A user's ANN, named ``package.module:factory`` and imported (never unpickled).

The factory is called with no arguments and returns an ``nn.Module``; weights come from a
state-dict file read with ``torch.load(weights_only=True)``. The current directory is
importable, as with ``python -m``.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from snn.errors import SpikeforgeError, first_line
from snn.fileio import load_torch_file


def import_factory(reference: str) -> Callable[[], nn.Module]:
    """Import ``package.module:factory`` and return the callable."""
    module_name, _, attribute = reference.partition(":")
    if not module_name or not attribute:
        raise SpikeforgeError(f"--ann {reference!r} must look like package.module:factory "
                              "(e.g. examples.ann_models:cifar_resnet)")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise SpikeforgeError(f"cannot import module {module_name!r} for --ann {reference} ({error}); "
                              "run from the folder that contains it or install it") from error
    except Exception as error:  # noqa: BLE001 - the user's module can fail anywhere at import (SyntaxError too)
        raise _user_code_error(reference, error) from error
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise SpikeforgeError(f"module {module_name!r} has no callable {attribute!r}; name a function or class "
                              "that builds the ANN")
    return factory


def _user_code_error(reference: str, error: BaseException) -> SpikeforgeError:
    """The one-line error for an exception raised by the user's own factory code (kind ``user-code``)."""
    return SpikeforgeError(f"the ANN factory {reference} raised {type(error).__name__}: {first_line(error)}; fix the "
                           "factory", kind="user-code")


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict (or ``{"state_dict": ...}``) safely; clear errors for bad files."""
    path = Path(path)
    state = load_torch_file(path, "weights file {path} does not exist",
                            "weights file {path} is corrupt or not a torch state dict ({error}); save it with "
                            "torch.save(model.state_dict(), path)")
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise SpikeforgeError(f"weights file {path} holds no state dict; save it with "
                              "torch.save(model.state_dict(), path)")
    return state


def build_ann(reference: str, weights: str | Path | None = None) -> nn.Module:
    """Build the ANN from its factory and load ``weights`` into it (strictly)."""
    factory = import_factory(reference)
    try:
        model = factory()
    except (SpikeforgeError, MemoryError):
        raise
    except Exception as error:  # noqa: BLE001 - the user's factory can raise anything
        raise _user_code_error(reference, error) from error
    if not isinstance(model, nn.Module):
        raise SpikeforgeError(f"{reference} returned {type(model).__name__}, not a torch.nn.Module")
    if weights is not None:
        try:
            model.load_state_dict(load_state_dict_file(weights))
        except RuntimeError as error:
            detail = " ".join(str(error).split())[:400]
            raise SpikeforgeError(f"weights {weights} do not fit the model built by {reference}: {detail}") from error
    return model.eval()
