"""The train/test split every dataset reader returns, and the in-memory bound they share.

Readers load a whole dataset into memory as tensors (:class:`DatasetSplit`). Before
decoding anything, a reader that could be asked for more than fits calls
:func:`check_memory` with the sample count and shape it is about to build: above
:data:`MAX_IN_MEMORY_GIB` it refuses with the figure and the option that lowers it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

from snn.errors import SpikeforgeError

MAX_IN_MEMORY_GIB = 8.0  # float32 samples held by one split (train + test); the loaders hold no second copy
FLOAT32_BYTES = 4


@dataclass(frozen=True, eq=False)
class DatasetSplit:
    """A fixed train/test split: float32 samples ``[N, *sample_shape]`` and int64 labels ``[N]``.

    Images are ``[N, C, H, W]`` in [0, 1]; binned event recordings ``[N, T, C, H, W]`` (or
    ``[N, T, channels]``) of event counts. ``classes`` names the labels where the files do
    (image folders, SHD), else ``None``.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    name: str
    num_classes: int
    classes: tuple[str, ...] | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one sample, e.g. ``(1, 8, 8)``."""
        return tuple(self.x_train.shape[1:])


def gib(count: int, sample_shape: Sequence[int]) -> float:
    """GiB that ``count`` float32 samples of ``sample_shape`` take."""
    return count * math.prod(sample_shape) * FLOAT32_BYTES / 2**30


def check_memory(name: str, count: int, sample_shape: Sequence[int], lower: str,
                 max_gib: float = MAX_IN_MEMORY_GIB) -> None:
    """Refuse to build ``count`` float32 samples of ``sample_shape`` when they exceed ``max_gib``.

    ``lower`` names what the user can change, e.g. ``"--image-size (image_size=)"``.
    """
    need = gib(count, sample_shape)
    if need > max_gib:
        shape = ", ".join(str(d) for d in sample_shape)
        raise SpikeforgeError(f"{name}: {count:,} samples of [{shape}] need {need:.1f} GiB as float32 in memory, "
                              f"above the {max_gib:g} GiB this reader holds; lower {lower}, or use a subset of "
                              "the files")
