"""Datasets as tensors, read from the user's own files (nothing is downloaded).

- ``digits``: scikit-learn's embedded 8x8 digits (the default).
- ``mnist``, ``fashion-mnist``: the four standard IDX files (optionally gzipped) in ``--data-dir``.
- ``cifar10``, ``cifar100``: the extracted official archive, binary or Python version (:mod:`snn.cifar`).
- ``imagefolder``: an ImageNet-style ``train/<class>/``, ``val/<class>/`` folder (:mod:`snn.image_folder`).
- ``nmnist``, ``dvs-gesture``, ``shd``: event recordings in tonic's layout, binned to ``time_bins``
  frames (:mod:`snn.event_data`): samples are sequences ``[T, ...]``, for the ``frames`` encoder.

Every loader returns a :class:`DatasetSplit`: float32 samples and int64 labels. Images are
``[N, C, H, W]`` in ``[0, 1]`` (normalisation stays with the model or encoder). Writers of
tiny files in each format are in :mod:`snn.dataset_files`.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from snn.cifar import CIFAR_DATASETS, load_cifar
from snn.errors import SpikeforgeError, warn
from snn.event_data import DEFAULT_TIME_BINS, EVENT_DATASETS, load_event_dataset
from snn.image_folder import DEFAULT_IMAGE_SIZE, load_image_folder
from snn.names import DATASETS
from snn.splits import MAX_IN_MEMORY_GIB, DatasetSplit, SplitChoice, resolve_split

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


# dataset name -> what reads it (the keys are snn.names.DATASETS, in its order)
LOADERS = {
    "digits": "scikit-learn's embedded digits",
    "mnist": "IDX files", "fashion-mnist": "IDX files",
    "cifar10": "snn.cifar", "cifar100": "snn.cifar",
    "imagefolder": "snn.image_folder",
    "nmnist": "snn.event_data", "dvs-gesture": "snn.event_data", "shd": "snn.event_data",
}
NEEDS_DATA_DIR = {
    "mnist": f"the folder that holds {', '.join(IDX_FILES.values())} (optionally .gz)",
    "fashion-mnist": f"the folder that holds {', '.join(IDX_FILES.values())} (optionally .gz)",
    "cifar10": "the extracted CIFAR-10 archive (cifar-10-batches-bin or cifar-10-batches-py) or the folder above it",
    "cifar100": "the extracted CIFAR-100 archive (cifar-100-binary or cifar-100-python) or the folder above it",
    "imagefolder": "the folder that holds train/<class>/ and val/<class>/ images",
    "nmnist": "tonic's save_to folder (it holds NMNIST/Train and NMNIST/Test)",
    "dvs-gesture": "tonic's save_to folder (it holds DVSGesture/ibmGestureTrain and DVSGesture/ibmGestureTest)",
    "shd": "tonic's save_to folder (it holds SHD/shd_train.h5 and SHD/shd_test.h5)",
}


def load_dataset(name: str, data_dir: str | os.PathLike | None = None, seed: int = 0, *,
                 time_bins: int | None = None, downsample: int = 1, image_size: int = DEFAULT_IMAGE_SIZE,
                 max_gib: float = MAX_IN_MEMORY_GIB) -> DatasetSplit:
    """Load one of :data:`DATASETS`; ``data_dir`` is required for all but digits.

    ``seed`` only affects the digits split (the others come with a fixed split). The event
    datasets take ``time_bins`` (frames per recording, default :data:`DEFAULT_TIME_BINS`) and
    ``downsample`` (an integer factor k dividing the sensor's sides, e.g. 2: N-MNIST's 34x34
    becomes 17x17); ``imagefolder`` takes ``image_size`` (the centre crop's side, default 224).
    A split that would need more than ``max_gib`` GiB in memory is refused, naming the option
    that lowers it. Options a dataset does not use must keep their defaults.
    """
    if name not in LOADERS:
        raise SpikeforgeError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    unused = [option for option, value, default, users in (
        ("time_bins (--time-bins)", time_bins, None, EVENT_DATASETS),
        ("downsample (--downsample)", downsample, 1, EVENT_DATASETS),
        ("image_size (--image-size)", image_size, DEFAULT_IMAGE_SIZE, ("imagefolder",)),
    ) if value != default and name not in users]
    if unused:
        raise SpikeforgeError(f"dataset {name} does not use {', '.join(unused)}; drop it (time bins and "
                              "downsampling are for nmnist, dvs-gesture and shd, the image size for imagefolder)")
    if name == "digits":
        return load_digits_split(seed=seed)
    if data_dir is None:
        raise SpikeforgeError(f"dataset {name} is read from files; pass --data-dir with {NEEDS_DATA_DIR[name]}")
    if name in IDX_DATASETS:
        return load_idx_split(data_dir, name)
    if name in CIFAR_DATASETS:
        return load_cifar(name, data_dir)
    if name == "imagefolder":
        return load_image_folder(data_dir, image_size, max_gib=max_gib)
    return load_event_dataset(name, data_dir, DEFAULT_TIME_BINS if time_bins is None else time_bins, downsample,
                              max_gib=max_gib)


def time_bins_for(name: str, time_bins: int | None, encoder: str, timesteps: int) -> int | None:
    """The ``time_bins`` to load ``name`` with: the one given, else T when an event dataset feeds the
    ``frames`` encoder (one frame per step), else ``None`` (the dataset's default)."""
    if time_bins is None and encoder == "frames" and name in EVENT_DATASETS:
        return timesteps
    return time_bins


def load_model_split(meta: dict, source: str, dataset: str, data_dir: str | os.PathLike | None, seed: int | None,
                     encoder: str, timesteps: int, *, time_bins: int | None = None, downsample: int = 1,
                     image_size: int = DEFAULT_IMAGE_SIZE) -> tuple[DatasetSplit, SplitChoice]:
    """The split on which a verb reports a model's test figure: the one its checkpoint ``meta`` records.

    :func:`snn.splits.resolve_split` picks the seed (``seed=None``: the model's; another seed of a
    split the seed draws is refused) and warns (on stderr) when ``dataset`` is not the model's. An
    event dataset is binned to ``time_bins`` if given, else to the bins the model was trained on,
    else one frame per step for the ``frames`` encoder (:func:`time_bins_for`).
    """
    choice = resolve_split(meta, source, dataset, seed)
    for message in choice.warnings:
        warn(message)
    bins = time_bins if time_bins is not None else (choice.time_bins if dataset in EVENT_DATASETS else None)
    split = load_dataset(dataset, data_dir, seed=choice.seed,
                         time_bins=time_bins_for(dataset, bins, encoder, timesteps), downsample=downsample,
                         image_size=image_size)
    return split, choice


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
