"""Surrogate gradients for the spike nonlinearity.

The forward pass is the Heaviside step of the dynamics contract, strictly greater than
zero (``s = 1 if v - theta > 0``). Its true derivative is zero almost everywhere, so the
backward pass uses a smooth stand-in ``sigma'(x)`` with a slope parameter ``k``:

==================  =====================================  ==========================================
name                surrogate derivative sigma'(x)          antiderivative sigma(x) (for references)
==================  =====================================  ==========================================
``fast_sigmoid``    1 / (1 + k|x|)^2  (SuperSpike)          x / (1 + k|x|)
``arctan``          (k/2) / (1 + (pi/2 k x)^2)              arctan(pi/2 k x) / pi + 1/2
``sigmoid``         k sig(kx) (1 - sig(kx))                 sig(kx)
``triangle``        k max(0, 1 - k|x|)                      piecewise quadratic, see ``primitive``
``boxcar``          k if |x| < 1/(2k) else 0  (straight-through within a window)
==================  =====================================  ==========================================

Plug in your own by subclassing :class:`Surrogate` and implementing ``grad`` (and, if
you want the reference tests to cover it, ``primitive``), or with :func:`custom`.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from snn.errors import SpikeforgeError


class _HeavisideWithSurrogate(torch.autograd.Function):
    """H(x) forward (strictly greater than zero), ``surrogate.grad(x)`` backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, surrogate: "Surrogate") -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.surrogate = surrogate
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad_output * ctx.surrogate.grad(x), None


class Surrogate:
    """A spike function: Heaviside forward, ``grad(x)`` backward.

    Subclasses set ``name`` and implement ``grad``; ``primitive`` (an antiderivative of
    ``grad``) is optional and only used by reference implementations and tests.
    """

    name = "custom"

    def __init__(self, slope: float = 1.0) -> None:
        if not math.isfinite(slope) or slope <= 0:
            raise SpikeforgeError(f"surrogate slope must be a positive number, got {slope}")
        self.slope = float(slope)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return _HeavisideWithSurrogate.apply(x, self)

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        """Surrogate derivative dS/dx evaluated at ``x``."""
        raise NotImplementedError

    def primitive(self, x: torch.Tensor) -> torch.Tensor:
        """An antiderivative of :meth:`grad` (differentiable with plain autograd)."""
        raise NotImplementedError(f"surrogate {self.name!r} defines no primitive")

    def spec(self) -> dict:
        """JSON description, enough to rebuild the surrogate with :func:`get`."""
        return {"name": self.name, "slope": self.slope}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(slope={self.slope})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.slope == other.slope  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self), self.slope))


class FastSigmoid(Surrogate):
    """SuperSpike (Zenke & Ganguli 2018): sigma'(x) = 1 / (1 + k|x|)^2."""

    name = "fast_sigmoid"

    def __init__(self, slope: float = 10.0) -> None:
        super().__init__(slope)

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        return 1.0 / (1.0 + self.slope * x.abs()) ** 2

    def primitive(self, x: torch.Tensor) -> torch.Tensor:
        return x / (1.0 + self.slope * x.abs())


class ArcTan(Surrogate):
    """Arctan (Fang et al. 2021): sigma'(x) = (k/2) / (1 + (pi/2 k x)^2)."""

    name = "arctan"

    def __init__(self, slope: float = 2.0) -> None:
        super().__init__(slope)

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        return (self.slope / 2) / (1 + (math.pi / 2 * self.slope * x) ** 2)

    def primitive(self, x: torch.Tensor) -> torch.Tensor:
        return torch.atan(math.pi / 2 * self.slope * x) / math.pi + 0.5


class Sigmoid(Surrogate):
    """Logistic: sigma'(x) = k sig(kx) (1 - sig(kx))."""

    name = "sigmoid"

    def __init__(self, slope: float = 5.0) -> None:
        super().__init__(slope)

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        s = torch.sigmoid(self.slope * x)
        return self.slope * s * (1 - s)

    def primitive(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.slope * x)


class Triangle(Surrogate):
    """Triangle (Esser et al. 2016): sigma'(x) = k max(0, 1 - k|x|)."""

    name = "triangle"

    def __init__(self, slope: float = 1.0) -> None:
        super().__init__(slope)

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        return self.slope * torch.clamp(1 - self.slope * x.abs(), min=0)

    def primitive(self, x: torch.Tensor) -> torch.Tensor:
        kx = self.slope * x
        inside = kx - kx * kx.abs() / 2
        return torch.where(kx.abs() < 1, inside, torch.sign(kx) / 2)


class Boxcar(Surrogate):
    """Straight-through within a window: sigma'(x) = k if |x| < 1/(2k) else 0."""

    name = "boxcar"

    def __init__(self, slope: float = 1.0) -> None:
        super().__init__(slope)

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        return self.slope * ((self.slope * x).abs() < 0.5).to(x.dtype)

    def primitive(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(self.slope * x, -0.5, 0.5)


class _CustomSurrogate(Surrogate):
    name = "custom"

    def __init__(self, grad_fn: Callable[[torch.Tensor], torch.Tensor], primitive_fn=None) -> None:
        super().__init__(1.0)
        self._grad_fn = grad_fn
        self._primitive_fn = primitive_fn

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        return self._grad_fn(x)

    def primitive(self, x: torch.Tensor) -> torch.Tensor:
        if self._primitive_fn is None:
            return super().primitive(x)
        return self._primitive_fn(x)

    def spec(self) -> dict:
        raise SpikeforgeError("a custom surrogate made with surrogate.custom() cannot be saved by name; "
                              "subclass snn.surrogate.Surrogate and register() it to make it saveable")

    def __eq__(self, other: object) -> bool:
        return self is other

    def __hash__(self) -> int:
        return id(self)


def custom(grad_fn: Callable[[torch.Tensor], torch.Tensor],
           primitive_fn: Callable[[torch.Tensor], torch.Tensor] | None = None) -> Surrogate:
    """Make a surrogate from a derivative function ``grad_fn(x) -> dS/dx``."""
    return _CustomSurrogate(grad_fn, primitive_fn)


SURROGATES: dict[str, type[Surrogate]] = {
    cls.name: cls for cls in (FastSigmoid, ArcTan, Sigmoid, Triangle, Boxcar)
}


def register(cls: type[Surrogate]) -> type[Surrogate]:
    """Make a :class:`Surrogate` subclass available by its ``name`` (usable as a decorator)."""
    SURROGATES[cls.name] = cls
    return cls


def get(surrogate: str | dict | Surrogate | None, slope: float | None = None) -> Surrogate:
    """Resolve a surrogate given as an instance, a name, or a ``spec()`` dictionary."""
    if surrogate is None:
        surrogate = "fast_sigmoid"
    if isinstance(surrogate, Surrogate):
        return surrogate
    if isinstance(surrogate, dict):
        surrogate, slope = surrogate.get("name"), surrogate.get("slope", slope)
    if surrogate not in SURROGATES:
        raise SpikeforgeError(f"unknown surrogate {surrogate!r}; choose one of {', '.join(SURROGATES)}")
    cls = SURROGATES[surrogate]
    return cls() if slope is None else cls(slope)
