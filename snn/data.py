"""Datasets as tensors: scikit-learn's embedded digits, and MNIST / Fashion-MNIST from IDX files.

Every loader returns a :class:`DatasetSplit` of float32 images ``[N, 1, H, W]`` in
``[0, 1]`` and int64 labels. Nothing is downloaded: digits ships with scikit-learn, and
the IDX datasets are read from a folder the user provides (``--data-dir``).
"""

from __future__ import annotations

import gzip
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from snn.errors import SpikeforgeError
from snn.names import DATASETS

IDX_DATASETS = ("mnist", "fashion-mnist")
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
IDX_NUM_CLASSES = 10

# IDX type codes (third magic byte) -> big-endian numpy dtype.
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


@dataclass(frozen=True, eq=False)
class DatasetSplit:
    """A fixed train/test split: float32 images ``[N, 1, H, W]`` in [0, 1], int64 labels ``[N]``."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    name: str
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one sample, e.g. ``(1, 8, 8)``."""
        return tuple(self.x_train.shape[1:])


def load_digits_split(seed: int = 0, test_fraction: float = 0.3) -> DatasetSplit:
    """scikit-learn's 1,797 8x8 digits, scaled to [0, 1], split stratified by class.

    The split is a function of ``seed`` and ``test_fraction`` only (deterministic).
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if not 0 < test_fraction < 1:
        raise SpikeforgeError(f"test fraction must lie in (0, 1), got {test_fraction}; use e.g. 0.3")
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None]  # [N, 1, 8, 8]
    labels = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=test_fraction, stratify=labels, random_state=seed)
    return DatasetSplit(torch.from_numpy(x_train), torch.from_numpy(y_train), torch.from_numpy(x_test),
                        torch.from_numpy(y_test), name="digits", num_classes=int(labels.max()) + 1)


def _invalid_idx(path: Path, reason: str) -> SpikeforgeError:
    return SpikeforgeError(f"{path} is not a valid IDX file: {reason}; re-download the original file "
                           "(gzipped or not) from the dataset's home page")


def _read_bytes(path: Path) -> bytes:
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as handle:
                return handle.read()
        return path.read_bytes()
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise _invalid_idx(path, f"damaged gzip data ({exc})") from exc
    except OSError as exc:
        raise SpikeforgeError(f"cannot read {path}: {exc.strerror or exc}; check the path and its permissions") from exc


def _parse_idx_header(path: Path, raw: bytes) -> tuple[np.dtype, tuple[int, ...], int]:
    """Return (dtype, dims, header length) of an IDX file's bytes."""
    if len(raw) < 4:
        raise _invalid_idx(path, f"truncated: {len(raw)} bytes, shorter than the 4-byte magic number")
    zero0, zero1, code, ndim = raw[:4]
    if zero0 != 0 or zero1 != 0 or code not in _IDX_DTYPES or ndim == 0:
        raise _invalid_idx(path, f"bad magic number 0x{raw[:4].hex()} (expected 0x0000 + type code + ndim)")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise _invalid_idx(path, f"truncated header: {len(raw)} bytes, need {header} for {ndim} dimensions")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    return _IDX_DTYPES[code], dims, header


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (plain, or gzipped if the name ends in ``.gz``) into a native-endian array.

    Raises :class:`SpikeforgeError` naming the file if the magic number is bad, the file is
    truncated, or the data size does not match the dimensions in the header.
    """
    path = Path(path)
    raw = _read_bytes(path)
    dtype, dims, header = _parse_idx_header(path, raw)
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    actual = len(raw) - header
    if actual < expected:
        raise _invalid_idx(path, f"truncated: {actual} data bytes, header {dims} needs {expected}")
    if actual > expected:
        raise _invalid_idx(path, f"size mismatch: {actual} data bytes, header {dims} needs {expected}")
    data = np.frombuffer(raw, dtype=dtype, count=expected // dtype.itemsize, offset=header)
    # astype copies into native byte order, giving a writable array torch can wrap.
    return data.reshape(dims).astype(dtype.newbyteorder("="))


def _find_idx_files(folder: Path) -> dict[str, Path]:
    """Map each key of IDX_FILES to its file in ``folder`` (plain name preferred over ``.gz``)."""
    expected = ", ".join(f"{name}[.gz]" for name in IDX_FILES.values())
    if not folder.is_dir():
        raise SpikeforgeError(f"data folder {folder} does not exist; pass --data-dir with the folder that "
                              f"holds {expected}")
    found: dict[str, Path] = {}
    missing: list[str] = []
    for key, name in IDX_FILES.items():
        candidates = [folder / name, folder / f"{name}.gz"]
        hit = next((c for c in candidates if c.is_file()), None)
        if hit is None:
            missing.append(name)
        else:
            found[key] = hit
    if missing:
        raise SpikeforgeError(f"missing {', '.join(missing)} (or .gz) in {folder}; the folder must hold {expected}")
    return found


def _idx_images(path: Path) -> torch.Tensor:
    images = read_idx(path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise _invalid_idx(path, f"expected unsigned-byte images [N, H, W], got {images.dtype} of shape "
                                 f"{images.shape}")
    return torch.from_numpy(images).float().div_(255.0).unsqueeze(1)


def _idx_labels(path: Path, count: int, images_path: Path) -> torch.Tensor:
    labels = read_idx(path)
    if labels.ndim != 1:
        raise _invalid_idx(path, f"expected labels [N], got shape {labels.shape}")
    if len(labels) != count:
        raise SpikeforgeError(f"{path} holds {len(labels)} labels but {images_path} holds {count} images; "
                              "use the image and label files of the same dataset release")
    if len(labels) and (labels.min() < 0 or labels.max() >= IDX_NUM_CLASSES):
        raise _invalid_idx(path, f"labels must lie in 0..{IDX_NUM_CLASSES - 1}, "
                                 f"got {labels.min()}..{labels.max()}")
    return torch.from_numpy(labels.astype(np.int64))


def load_idx_split(folder: str | os.PathLike, name: str) -> DatasetSplit:
    """Read MNIST or Fashion-MNIST from the four standard IDX files (each optionally ``.gz``) in ``folder``.

    Images become float32 ``[N, 1, H, W]`` in [0, 1] (H, W taken from the files).
    """
    if name not in IDX_DATASETS:
        raise SpikeforgeError(f"{name!r} is not an IDX dataset; use one of {', '.join(IDX_DATASETS)}")
    files = _find_idx_files(Path(folder).expanduser())
    x_train = _idx_images(files["train_images"])
    x_test = _idx_images(files["test_images"])
    if x_train.shape[1:] != x_test.shape[1:]:
        raise SpikeforgeError(f"train images are {tuple(x_train.shape[2:])} but test images are "
                              f"{tuple(x_test.shape[2:])}; use files of the same dataset")
    y_train = _idx_labels(files["train_labels"], len(x_train), files["train_images"])
    y_test = _idx_labels(files["test_labels"], len(x_test), files["test_images"])
    return DatasetSplit(x_train, y_train, x_test, y_test, name=name, num_classes=IDX_NUM_CLASSES)


def load_dataset(name: str, data_dir: str | os.PathLike | None = None, seed: int = 0) -> DatasetSplit:
    """Load one of :data:`DATASETS`; ``data_dir`` is required for the IDX datasets.

    ``seed`` only affects the digits split (the IDX datasets come with a fixed split).
    """
    if name == "digits":
        return load_digits_split(seed=seed)
    if name in IDX_DATASETS:
        if data_dir is None:
            raise SpikeforgeError(f"dataset {name} is read from IDX files; pass --data-dir with the folder that "
                                  f"holds {', '.join(IDX_FILES.values())} (optionally .gz)")
        return load_idx_split(data_dir, name)
    raise SpikeforgeError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")


def check_input_shape(expected: Sequence[int] | None, split: DatasetSplit,
                      step_shape: Sequence[int] | None = None) -> None:
    """Raise unless a model that reads steps of shape ``expected`` can read ``split``'s samples.

    ``step_shape`` is one encoded step of a sample (the task's ``Task.step_shape``; default: the
    sample's own shape). ``expected`` is ``None`` for a model that does not declare its input
    shape (nothing to check).
    """
    have = tuple(split.input_shape if step_shape is None else step_shape)
    if expected is not None and tuple(expected) != have:
        raise SpikeforgeError(f"model expects input {tuple(expected)} but dataset {split.name} gives {have} per step; "
                              "pick the dataset (and encoder) it was trained on")


def tensor_loader(x: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool = False,
                  seed: int | None = None) -> DataLoader:
    """Batches of ``(x, y)``; with ``seed`` the loader owns a generator seeded with it.

    The generator fixes the shuffled order, and it is also what the loader's iterator draws
    its base seed from; without one the iterator draws from torch's global generator. So
    ``seed`` is part of the result even for an unshuffled loader.
    """
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=shuffle, generator=generator)


def make_loaders(split: DatasetSplit, batch_size: int, seed: int = 0) -> tuple[DataLoader, DataLoader]:
    """Train loader (shuffled by a generator seeded with ``seed``) and test loader (in order).

    Two calls with the same ``seed`` yield batches in the same order.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise SpikeforgeError(f"batch size must be a positive integer, got {batch_size!r}")
    train = tensor_loader(split.x_train, split.y_train, batch_size, shuffle=True, seed=seed)
    test = tensor_loader(split.x_test, split.y_test, batch_size)
    return train, test
