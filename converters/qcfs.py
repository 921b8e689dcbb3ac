"""QCFS: quantization-clip-floor-shift activation (Bu et al., ICLR 2022).

    QCFS(x) = (lambda / L) * clip(floor(x * L / lambda + phi), 0, L),   phi = 1/2

with a learnable clip ``lambda`` (the future firing threshold) and ``L`` quantization
levels. An ANN fine-tuned with QCFS converts to an IF network with threshold ``lambda``
and initial membrane ``lambda / 2`` whose expected conversion error is zero, so it keeps
its accuracy at T close to L. The floor passes gradients straight through.
"""

from __future__ import annotations

import torch
from torch import nn

from snn.errors import SpikeforgeError


class QCFS(nn.Module):
    """Quantization-clip-floor-shift activation with a learnable clip ``lam`` (lambda)."""

    def __init__(self, levels: int = 8, lam: float = 4.0, shift: float = 0.5) -> None:
        super().__init__()
        if levels < 1:
            raise SpikeforgeError(f"QCFS needs at least 1 quantization level, got {levels}")
        if lam <= 0:
            raise SpikeforgeError(f"QCFS clip lambda must be positive, got {lam}")
        self.levels = levels
        self.shift = shift
        self.lam = nn.Parameter(torch.tensor(float(lam)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lam = self.lam.abs() + 1e-6
        scaled = x * self.levels / lam + self.shift
        floored = scaled + (torch.floor(scaled) - scaled).detach()  # straight-through floor
        return torch.clamp(floored, 0, self.levels) * lam / self.levels

    def extra_repr(self) -> str:
        return f"levels={self.levels}, lam={self.lam.item():.4g}, shift={self.shift}"


SWAPPABLE = (nn.ReLU, nn.ReLU6)


def swap_relu_for_qcfs(model: nn.Module, levels: int = 8, lam: float = 4.0) -> nn.Module:
    """Replace every ``nn.ReLU`` / ``nn.ReLU6`` module of ``model`` by :class:`QCFS`, in place.

    Functional ``F.relu`` calls inside ``forward`` cannot be swapped in place; write them as
    ``nn.ReLU`` modules (an error says so when none was found). Returns ``model``.
    """
    if _swap(model, levels, lam) == 0 and not any(isinstance(m, QCFS) for m in model.modules()):
        raise SpikeforgeError("model has no nn.ReLU / nn.ReLU6 modules to swap for QCFS; write activations as "
                              "modules (self.act = nn.ReLU()) rather than F.relu calls")
    return model


def _swap(module: nn.Module, levels: int, lam: float) -> int:
    swapped = 0
    for name, child in list(module.named_children()):
        if isinstance(child, SWAPPABLE):
            setattr(module, name, QCFS(levels, min(lam, 6.0) if isinstance(child, nn.ReLU6) else lam))
            swapped += 1
        else:
            swapped += _swap(child, levels, lam)
    return swapped
