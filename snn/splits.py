"""The train/test split every dataset reader returns, and the in-memory bound they share.

Readers load a whole dataset into memory as tensors (:class:`DatasetSplit`). Before
decoding anything, a reader that could be asked for more than fits calls
:func:`check_memory` with the sample count and shape it is about to build: above
:data:`MAX_IN_MEMORY_GIB` it refuses with the figure and the option that lowers it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

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


# --- the split a model was trained and tested on, stored with it (checkpoint meta "split") ---

SEEDED_SPLITS = ("digits",)  # datasets whose train/test split is drawn from the seed (the others ship a fixed one)


def split_record(dataset: str, seed: int, n_train: int, n_test: int, val_fraction: float | None = None,
                 time_bins: int | None = None, **extra: Any) -> dict[str, Any]:
    """The ``meta["split"]`` of a checkpoint: what reproduces its train/test split (``extra``: e.g. the
    calibration samples of a conversion)."""
    record = {"dataset": dataset, "seed": int(seed), "val_fraction": val_fraction, "n_train": int(n_train),
              "n_test": int(n_test), "seed_draws_split": dataset in SEEDED_SPLITS}
    if time_bins is not None:
        record["time_bins"] = int(time_bins)
    return {**record, **extra}


def model_split(meta: Mapping[str, Any]) -> dict[str, Any] | None:
    """The split a checkpoint records: its ``split``, else what older ``snn train`` files kept in ``settings``
    (dataset and seed), else ``None`` (nothing known)."""
    if isinstance(meta.get("split"), Mapping) and "dataset" in meta["split"]:
        return dict(meta["split"])
    settings = meta.get("settings")
    if isinstance(settings, Mapping) and "dataset" in settings and isinstance(settings.get("seed"), int):
        return {"dataset": settings["dataset"], "seed": settings["seed"],
                "seed_draws_split": settings["dataset"] in SEEDED_SPLITS}
    return None


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= 10**6


@dataclass(frozen=True)
class SplitChoice:
    """The split a verb tests on: ``dataset``, ``seed``, the model's ``time_bins`` (event data) and ``warnings``."""

    dataset: str
    seed: int
    time_bins: int | None = None
    warnings: tuple[str, ...] = ()
    record: Mapping[str, Any] | None = None


def resolve_split(meta: Mapping[str, Any], source: str, dataset: str, seed: int | None) -> SplitChoice:
    """The split to test the model of ``source`` (its checkpoint ``meta``) on.

    ``seed=None`` means the model's seed (0 where the file records none). A different seed on a
    dataset whose split it draws (:data:`SEEDED_SPLITS`) is refused: that split's test set holds
    the model's training samples. A different dataset is a warning, not an error: the figure is
    then a transfer test on other data, not the model's test accuracy (and the digits default of
    ``--dataset`` cannot be told from an explicit choice).
    """
    record = model_split(meta)
    if record is None:
        return SplitChoice(dataset, 0 if seed is None else seed)
    own, own_seed = record["dataset"], record.get("seed", 0)
    if not isinstance(own, str) or isinstance(own_seed, bool) or not isinstance(own_seed, int) \
            or not 0 <= own_seed < 2**32 or ("time_bins" in record and not _positive_int(record["time_bins"])):
        raise SpikeforgeError(f"{source} records a malformed data split (dataset {own!r}, seed {own_seed!r}); "
                              "re-create it with 'snn train' or 'snn convert'")
    if dataset != own:
        warning = (f"{source} was trained on {own}, not {dataset}: the figure is not its test accuracy; "
                   f"pass --dataset {own} for that")
        return SplitChoice(dataset, 0 if seed is None else seed, None, (warning,), record)
    if seed is not None and seed != own_seed and dataset in SEEDED_SPLITS:
        raise SpikeforgeError(f"{source} was trained on the {dataset} split of seed {own_seed}; --seed {seed} draws "
                              f"another split whose test set holds its training samples; drop --seed (the model's "
                              f"split is the default) or pass --seed {own_seed}")
    return SplitChoice(dataset, own_seed if seed is None else seed, record.get("time_bins"), (), record)
