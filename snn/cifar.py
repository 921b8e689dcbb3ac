"""CIFAR-10 and CIFAR-100 from the official archives, extracted (never downloaded).

Both versions of each archive are read:

- binary (``cifar-10-batches-bin``: ``data_batch_1.bin`` .. ``data_batch_5.bin``, ``test_batch.bin``;
  ``cifar-100-binary``: ``train.bin``, ``test.bin``): records of the label byte(s) and 3,072
  pixel bytes (1,024 red, then green, then blue, rows top to bottom). CIFAR-100 records hold two
  label bytes, coarse then fine; the fine label (0..99) is the class.
- Python (``cifar-10-batches-py``: ``data_batch_1`` .. ``data_batch_5``, ``test_batch``;
  ``cifar-100-python``: ``train``, ``test``): Python 2 pickles of a dict with ``b"data"`` (uint8
  ``[N, 3072]``, same byte order) and ``b"labels"`` (CIFAR-100: ``b"fine_labels"``).

``data_dir`` is the extracted folder or the folder above it (binary preferred when both are
there). The pickles are read by :class:`CifarUnpickler`, which admits only numpy's array
reconstruction (the only code those files name) and refuses anything else before it runs.

Images come back float32 ``[N, 3, 32, 32]`` in [0, 1]; normalisation (per-channel mean and
standard deviation) stays with the model or encoder, as for the other datasets.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from snn.errors import SpikeforgeError
from snn.splits import DatasetSplit

CIFAR_DATASETS = ("cifar10", "cifar100")
IMAGE_SHAPE = (3, 32, 32)
PIXELS = 3 * 32 * 32
CIFAR100_COARSE_CLASSES = 20


@dataclass(frozen=True)
class CifarLayout:
    """Where one CIFAR archive keeps its files (both versions) and how its labels are stored."""

    title: str
    num_classes: int
    binary_folder: str
    binary_train: tuple[str, ...]
    binary_test: str
    label_bytes: int  # leading label bytes per binary record; the last one is the class
    python_folder: str
    python_train: tuple[str, ...]
    python_test: str
    label_key: bytes

    def expected(self) -> str:
        """The layout, for error messages."""
        return (f"expected the extracted {self.title} binary archive ({self.binary_folder}: "
                f"{_listing(self.binary_train, self.binary_test)}) or the Python version ({self.python_folder}: "
                f"{_listing(self.python_train, self.python_test)}), or the folder above them")


def _listing(train: tuple[str, ...], test: str) -> str:
    """``data_batch_1..5.bin, test_batch.bin`` / ``train.bin, test.bin``."""
    if len(train) == 1:
        return f"{train[0]}, {test}"
    stem, _, suffix = train[0].partition(".")
    return f"{stem}..{len(train)}{'.' + suffix if suffix else ''}, {test}"


LAYOUTS = {
    "cifar10": CifarLayout(
        "CIFAR-10", 10,
        "cifar-10-batches-bin", tuple(f"data_batch_{i}.bin" for i in range(1, 6)), "test_batch.bin", 1,
        "cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)), "test_batch", b"labels"),
    "cifar100": CifarLayout(
        "CIFAR-100", 100,
        "cifar-100-binary", ("train.bin",), "test.bin", 2,
        "cifar-100-python", ("train",), "test", b"fine_labels"),
}

# The only globals a CIFAR pickle names: numpy's array reconstruction (numpy 1 wrote numpy.core,
# numpy 2 writes numpy._core). Each maps to the running numpy's own object.
_RECONSTRUCT = np.ndarray.__reduce__(np.zeros(0, dtype=np.uint8))[0]
ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class RefusedPickle(pickle.UnpicklingError):
    """A pickle named something a CIFAR batch never holds; nothing of it was run."""


class CifarUnpickler(pickle.Unpickler):
    """A :class:`pickle.Unpickler` that resolves only :data:`ALLOWED_GLOBALS`.

    Every callable a pickle can run comes through :meth:`find_class` (``GLOBAL``,
    ``STACK_GLOBAL``, ``INST``, ``OBJ``, extension codes), so a payload naming ``os.system``,
    ``builtins.eval`` or any other global stops here, before any ``REDUCE`` could call it.
    Persistent ids are refused too.
    """

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise RefusedPickle(f"it names {module}.{name}") from None

    def persistent_load(self, pid: Any) -> Any:
        raise RefusedPickle("it holds a persistent id")


def restricted_load(path: Path) -> Any:
    """Unpickle ``path`` (a Python 2 pickle: ``encoding="bytes"``) with :class:`CifarUnpickler`."""
    with path.open("rb") as handle:
        return CifarUnpickler(handle, encoding="bytes").load()


def _error(name: str, path: Path, reason: str) -> SpikeforgeError:
    return SpikeforgeError(f"{name}: {path} is not a valid {LAYOUTS[name].title} batch: {reason}; re-extract it "
                           "from the official archive")


def _read(name: str, path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise SpikeforgeError(f"{name}: cannot read {path}: {exc.strerror or exc}; check its permissions") from exc


def _check_labels(name: str, path: Path, labels: np.ndarray, count: int, what: str = "labels") -> None:
    if len(labels) and (labels.min() < 0 or labels.max() >= count):
        raise _error(name, path, f"{what} must lie in 0..{count - 1}, got {labels.min()}..{labels.max()}")


def read_binary_batch(name: str, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(uint8 images [N, 3, 32, 32], int64 labels [N])`` of one binary batch file."""
    layout = LAYOUTS[name]
    raw = _read(name, path)
    record = layout.label_bytes + PIXELS
    if not raw or len(raw) % record:
        label = "1 label byte" if layout.label_bytes == 1 else f"{layout.label_bytes} label bytes"
        raise _error(name, path, f"{len(raw)} bytes is not a whole number of {record}-byte records ({label} + "
                                 f"{PIXELS} pixel bytes)")
    records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, record)
    if layout.label_bytes == 2:
        _check_labels(name, path, records[:, 0].astype(np.int64), CIFAR100_COARSE_CLASSES, "coarse labels")
    labels = records[:, layout.label_bytes - 1].astype(np.int64)
    _check_labels(name, path, labels, layout.num_classes)
    return records[:, layout.label_bytes:].reshape(-1, *IMAGE_SHAPE), labels


def _entry(batch: dict, key: bytes) -> Any:
    return batch.get(key, batch.get(key.decode()))  # a batch re-pickled under Python 3 may have str keys


def read_python_batch(name: str, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(uint8 images [N, 3, 32, 32], int64 labels [N])`` of one pickled batch, read with :class:`CifarUnpickler`."""
    layout = LAYOUTS[name]
    try:
        batch = restricted_load(path)
    except RefusedPickle as exc:
        raise SpikeforgeError(f"{name}: refused {path}: {exc}, which a {layout.title} batch never does (it holds "
                              "only numpy arrays, lists and strings); nothing of it was run. Use the official "
                              "archive's file") from None
    except OSError as exc:
        raise SpikeforgeError(f"{name}: cannot read {path}: {exc.strerror or exc}; check its permissions") from exc
    except Exception as exc:  # noqa: BLE001 - truncated or garbled pickles raise many types
        raise _error(name, path, f"not a readable pickle ({type(exc).__name__}: {exc})") from None
    if not isinstance(batch, dict):
        raise _error(name, path, f"the pickle holds a {type(batch).__name__}, not a dict")
    data, labels = _entry(batch, b"data"), _entry(batch, layout.label_key)
    if data is None or labels is None:
        raise _error(name, path, f"the dict lacks b'data' or {layout.label_key!r}")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != PIXELS:
        shape = getattr(data, "shape", None)
        raise _error(name, path, f"b'data' must be a uint8 array [N, {PIXELS}], got {type(data).__name__} "
                                 f"{getattr(data, 'dtype', '')} {shape}")
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError, OverflowError) as exc:
        raise _error(name, path, f"{layout.label_key!r} must be a list of integers ({exc})") from None
    if labels.shape != (len(data),):
        raise _error(name, path, f"{len(data)} images but {layout.label_key!r} has shape {labels.shape}")
    _check_labels(name, path, labels, layout.num_classes)
    return np.ascontiguousarray(data).reshape(-1, *IMAGE_SHAPE), labels


def find_cifar(name: str, data_dir: str | os.PathLike) -> tuple[str, Path]:
    """``("binary" | "python", folder)``: which version ``data_dir`` holds and where its files are.

    Every file of that version must be there; a missing one is named in the error.
    """
    if name not in LAYOUTS:
        raise SpikeforgeError(f"{name!r} is not a CIFAR dataset; use one of {', '.join(CIFAR_DATASETS)}")
    layout = LAYOUTS[name]
    folder = Path(data_dir).expanduser()
    if not folder.is_dir():
        raise SpikeforgeError(f"{name}: data folder {folder} does not exist; {layout.expected()}")
    binary = (*layout.binary_train, layout.binary_test)
    python = (*layout.python_train, layout.python_test)
    for version, files, sub in (("binary", binary, layout.binary_folder), ("python", python, layout.python_folder)):
        if folder.name == sub or any((folder / f).is_file() for f in files):
            found = version, folder
            break
    else:
        for version, sub in (("binary", layout.binary_folder), ("python", layout.python_folder)):
            if (folder / sub).is_dir():
                found = version, folder / sub
                break
        else:
            raise SpikeforgeError(f"{name}: no {layout.title} files in {folder}; {layout.expected()}")
    version, where = found
    for file in binary if version == "binary" else python:
        if not (where / file).is_file():
            raise SpikeforgeError(f"{name}: {where / file} is missing; {layout.expected()}")
    return found


def load_cifar(name: str, data_dir: str | os.PathLike) -> DatasetSplit:
    """CIFAR-10 or CIFAR-100 (``name``) from ``data_dir``: float32 ``[N, 3, 32, 32]`` in [0, 1], int64 labels.

    The train split is the archive's training batches in order (CIFAR-10: 1..5), the test
    split its test batch.
    """
    version, folder = find_cifar(name, data_dir)
    layout = LAYOUTS[name]
    read = read_binary_batch if version == "binary" else read_python_batch
    train_files = layout.binary_train if version == "binary" else layout.python_train
    test_file = layout.binary_test if version == "binary" else layout.python_test

    def part(files: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        batches = [read(name, folder / f) for f in files]
        images = np.concatenate([b[0] for b in batches])
        labels = np.concatenate([b[1] for b in batches])
        return torch.from_numpy(images).float().div_(255.0), torch.from_numpy(labels)

    x_train, y_train = part(train_files)
    x_test, y_test = part((test_file,))
    return DatasetSplit(x_train, y_train, x_test, y_test, name=name, num_classes=layout.num_classes)
