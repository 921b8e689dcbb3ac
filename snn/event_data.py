"""Event datasets (N-MNIST, DVS Gesture, SHD) from the user's local copy, binned to frames with tonic.

The files are read where tonic keeps them (its own on-disk layout under ``save_to``), and
``data_dir`` may be that ``save_to`` folder or the dataset's folder inside it:

- ``nmnist``: ``NMNIST/Train/<digit>/*.bin``, ``NMNIST/Test/<digit>/*.bin`` (the extracted
  ``train.zip``, ``test.zip``): 40-bit events, read by ``tonic.io.read_mnist_file``.
- ``dvs-gesture``: ``DVSGesture/ibmGestureTrain/user<NN>_<lighting>/<label>.npy`` and
  ``DVSGesture/ibmGestureTest/...`` (tonic's preprocessed archives): ``[N, 4]`` arrays of
  x, y, polarity and time in milliseconds.
- ``shd``: ``SHD/shd_train.h5``, ``SHD/shd_test.h5`` (the unzipped downloads): HDF5 with
  ``spikes/times`` (seconds) and ``spikes/units`` per recording, and ``labels``.

Nothing here can download: no tonic dataset class is constructed (each downloads when its
own check of the folder fails, and that check wants the archives and thousands of files);
the files are listed and checked here, then read with tonic's readers (or numpy / h5py as
tonic's classes do) and binned with tonic's transforms: ``Downsample(spatial_factor=1 / k)``
for ``downsample=k``, then ``ToFrame(sensor_size, n_time_bins=T)``.

A sample is float32 event counts ``[T, C, H, W]`` (polarity channels; N-MNIST
``[T, 2, 34, 34]``, DVS Gesture ``[T, 2, 128, 128]``) or ``[T, channels]`` (SHD:
``[T, 700]``), already a sequence: train on it with the ``frames`` encoder.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import torch

from snn.errors import SpikeforgeError
from snn.splits import MAX_IN_MEMORY_GIB, DatasetSplit, check_memory

EVENT_DATASETS = ("nmnist", "dvs-gesture", "shd")
DEFAULT_TIME_BINS = 16
NMNIST_RECORD_BYTES = 5
NMNIST_OVERFLOW_Y = 240  # an N-MNIST record with y == 240 advances the clock by 2**13 us


@dataclass(frozen=True)
class EventLayout:
    """tonic 1.7's on-disk layout of one event dataset (``save_to/<folder>/<train | test>``)."""

    title: str
    folder: str  # tonic's class name, the folder under save_to
    train: str
    test: str
    sensor_size: tuple[int, int, int]  # tonic's (W, H, polarities)
    num_classes: int
    layout: str

    def expected(self) -> str:
        return f"expected tonic's {self.title} layout: {self.layout}"


LAYOUTS = {
    "nmnist": EventLayout("N-MNIST", "NMNIST", "Train", "Test", (34, 34, 2), 10,
                          "<data-dir>/NMNIST/Train/<digit>/*.bin and <data-dir>/NMNIST/Test/<digit>/*.bin "
                          "(the extracted train.zip and test.zip)"),
    "dvs-gesture": EventLayout("DVS Gesture", "DVSGesture", "ibmGestureTrain", "ibmGestureTest", (128, 128, 2), 11,
                               "<data-dir>/DVSGesture/ibmGestureTrain/user<NN>_<lighting>/<label>.npy and "
                               "<data-dir>/DVSGesture/ibmGestureTest/... (the extracted ibmGestureTrain.tar.gz "
                               "and ibmGestureTest.tar.gz)"),
    "shd": EventLayout("SHD", "SHD", "shd_train.h5", "shd_test.h5", (700, 1, 1), 20,
                       "<data-dir>/SHD/shd_train.h5 and <data-dir>/SHD/shd_test.h5 (the unzipped shd_train.h5.zip "
                       "and shd_test.h5.zip)"),
}

# tonic's structured event dtypes (tonic.datasets.NMNIST.dtype, DVSGesture.dtype, SHD.dtype).
NMNIST_DTYPE = np.dtype([("x", int), ("y", int), ("t", int), ("p", int)])
DVS_GESTURE_DTYPE = np.dtype([("x", np.int16), ("y", np.int16), ("p", bool), ("t", np.int64)])
SHD_DTYPE = np.dtype([("t", int), ("x", int), ("p", int)])


def downsampled_sensor(sensor_size: tuple[int, int, int], downsample: int) -> tuple[int, int, int]:
    """The sensor after ``Downsample(spatial_factor=1 / k)``: each side ``ceil(side / k)`` (x // k fits)."""
    width, height, polarities = sensor_size
    return math.ceil(width / downsample), math.ceil(height / downsample), polarities


def frame_shape(name: str, downsample: int = 1) -> tuple[int, ...]:
    """One time bin of ``name``'s samples: ``(C, H, W)``, or ``(channels,)`` for SHD."""
    width, height, polarities = downsampled_sensor(LAYOUTS[name].sensor_size, downsample)
    return (width,) if name == "shd" else (polarities, height, width)


def bin_events(events: np.ndarray, sensor_size: tuple[int, int, int], time_bins: int,
               downsample: int = 1) -> np.ndarray:
    """Events (a tonic structured array) -> float32 counts ``[T, P, H, W]`` (or ``[T, P, W]`` without y).

    tonic's ``Downsample(spatial_factor=1 / downsample)`` then ``ToFrame(sensor_size, n_time_bins=T)``;
    the events are put in time order first (tonic's slicers search the times). As tonic bins,
    the T windows are ``(t_last - t_first) // T`` us long from the first event, so events past
    the last window (the last event at least) are not counted, and a recording whose events
    share one time, or that has none, gives zeros.
    """
    from tonic.transforms import Downsample, ToFrame

    sensor = downsampled_sensor(sensor_size, downsample)
    has_y = "y" in events.dtype.names
    if len(events) == 0:
        shape = (sensor[2], sensor[1], sensor[0]) if has_y else (sensor[2], sensor[0])
        return np.zeros((time_bins, *shape), dtype=np.float32)
    events = events[np.argsort(events["t"], kind="stable")]
    if downsample > 1:
        events = Downsample(spatial_factor=1 / downsample)(events)
    return ToFrame(sensor_size=sensor, n_time_bins=time_bins)(events).astype(np.float32)


def _root(name: str, data_dir: str | os.PathLike) -> Path:
    """The dataset's folder (``save_to/<folder>``), with its train and test parts checked."""
    layout = LAYOUTS[name]
    given = Path(data_dir).expanduser()
    if not given.is_dir():
        raise SpikeforgeError(f"{name}: data folder {given} does not exist; {layout.expected()}")
    root = given / layout.folder if (given / layout.folder).is_dir() else given
    for part in (layout.train, layout.test):
        if not (root / part).exists():
            raise SpikeforgeError(f"{name}: {root / part} is missing; {layout.expected()}")
    return root


def _check_count(name: str, where: Path, count: int) -> None:
    if count == 0:
        raise SpikeforgeError(f"{name}: {where} holds no recordings; {LAYOUTS[name].expected()}")


# --- N-MNIST --------------------------------------------------------------------------------

def _nmnist_files(name: str, folder: Path) -> list[tuple[Path, int]]:
    files = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        if not (sub.name.isdigit() and int(sub.name) < LAYOUTS[name].num_classes):
            raise SpikeforgeError(f"{name}: {sub} is not a class folder (N-MNIST's are named 0 to 9); "
                                  f"{LAYOUTS[name].expected()}")
        files += [(path, int(sub.name)) for path in sorted(sub.glob("*.bin")) if path.is_file()]
    _check_count(name, folder, len(files))
    return files


def read_nmnist(path: Path) -> np.ndarray:
    """One N-MNIST recording (tonic's ``read_mnist_file``), its size and addresses checked."""
    from tonic.io import read_mnist_file

    size = path.stat().st_size
    if size % NMNIST_RECORD_BYTES:
        raise SpikeforgeError(f"nmnist: {path} is not a valid N-MNIST recording: {size} bytes is not a whole "
                              f"number of {NMNIST_RECORD_BYTES}-byte (40-bit) events; re-extract it")
    events = read_mnist_file(str(path), dtype=NMNIST_DTYPE)
    width, height, _ = LAYOUTS["nmnist"].sensor_size
    if len(events) and (events["x"].max() >= width or events["y"].max() >= height):
        raise SpikeforgeError(f"nmnist: {path} is not a valid N-MNIST recording: addresses up to "
                              f"({events['x'].max()}, {events['y'].max()}) on a {width}x{height} sensor; "
                              "re-extract it")
    return events


# --- DVS Gesture ----------------------------------------------------------------------------

def _dvs_files(name: str, folder: Path) -> list[tuple[Path, int]]:
    files = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        for path in sorted(sub.glob("*.npy"), key=lambda p: (not p.stem.isdigit(), int(p.stem) if p.stem.isdigit()
                                                             else 0, p.name)):
            if not (path.stem.isdigit() and int(path.stem) < LAYOUTS[name].num_classes):
                raise SpikeforgeError(f"{name}: {path} is not named by its label (0.npy to 10.npy); "
                                      f"{LAYOUTS[name].expected()}")
            files.append((path, int(path.stem)))
    _check_count(name, folder, len(files))
    return files


def read_dvs_gesture(path: Path) -> np.ndarray:
    """One DVS Gesture recording as tonic's ``DVSGesture`` reads it (times ms -> us), checked."""
    from tonic.io import make_structured_array

    def invalid(reason: str) -> SpikeforgeError:
        return SpikeforgeError(f"dvs-gesture: {path} is not a valid DVS Gesture recording: {reason}; expected "
                               "an [N, 4] array of x, y, polarity, time (ms), as tonic's preprocessed archive "
                               "holds")
    try:
        events = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise invalid(f"not a readable .npy file ({exc})") from None
    if events.ndim != 2 or events.shape[1] != 4 or not (np.issubdtype(events.dtype, np.number)
                                                        or events.dtype == bool):
        raise invalid(f"got a {events.dtype} array of shape {events.shape}")
    x, y, p, t = events.T
    width, height, _ = LAYOUTS["dvs-gesture"].sensor_size
    if len(events) and not (np.isfinite(t).all() and t.min() >= 0 and x.min() >= 0 and y.min() >= 0
                            and x.max() < width and y.max() < height and np.isin(p, (0, 1)).all()):
        raise invalid(f"addresses must lie on the {width}x{height} sensor, polarities in {{0, 1}} and times "
                      "be finite and non-negative")
    return make_structured_array(x, y, p, t.astype(np.float64) * 1000, dtype=DVS_GESTURE_DTYPE)


# --- SHD ------------------------------------------------------------------------------------

def _read_shd_file(path: Path) -> tuple[Iterator[np.ndarray], int, np.ndarray, tuple[str, ...] | None]:
    """``(events of each recording, lazily; recordings, labels, class names or None)`` of one SHD file."""
    import h5py
    from tonic.io import make_structured_array

    def invalid(reason: str) -> SpikeforgeError:
        return SpikeforgeError(f"shd: {path} is not a valid SHD file: {reason}; expected HDF5 with spikes/times, "
                               "spikes/units (one array per recording) and labels")
    try:
        with h5py.File(path, "r") as handle:
            for key in ("spikes/times", "spikes/units", "labels"):
                if key not in handle:
                    raise invalid(f"it has no {key}")
            times, units = handle["spikes/times"][()], handle["spikes/units"][()]  # compact: float16, uint16
            labels = np.asarray(handle["labels"][()])
            keys = handle["extra/keys"][()] if "extra/keys" in handle else None
    except OSError as exc:
        raise invalid(f"not a readable HDF5 file ({exc})") from None
    if not (len(times) == len(units) == len(labels)) or labels.ndim != 1:
        raise invalid(f"{len(times)} spike-time arrays, {len(units)} unit arrays and {len(labels)} labels")
    if not np.issubdtype(labels.dtype, np.integer) or (len(labels) and (labels.min() < 0 or labels.max() >= 20)):
        raise invalid("labels must be integers in 0..19")
    channels = LAYOUTS["shd"].sensor_size[0]

    def events() -> Iterator[np.ndarray]:
        for index, (t, u) in enumerate(zip(times, units)):
            t, u = np.asarray(t, dtype=np.float64), np.asarray(u)
            if t.shape != u.shape or t.ndim != 1:
                raise invalid(f"recording {index} has {t.shape} times but {u.shape} units")
            if len(t) and not (np.isfinite(t).all() and t.min() >= 0 and u.min() >= 0 and u.max() < channels):
                raise invalid(f"recording {index} has units outside 0..{channels - 1} or times not finite and >= 0")
            # as tonic's SHD: seconds -> microseconds, one polarity
            yield make_structured_array(t * 1e6, u.astype(np.int64), 1, dtype=SHD_DTYPE)

    classes = None
    if keys is not None and len(keys) == LAYOUTS["shd"].num_classes:
        classes = tuple(k.decode() if isinstance(k, bytes) else str(k) for k in keys)
    return events(), len(labels), labels.astype(np.int64), classes


def _shd_count(path: Path) -> int:
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            return len(handle["labels"]) if "labels" in handle else 0
    except OSError as exc:
        raise SpikeforgeError(f"shd: {path} is not a valid SHD file: not a readable HDF5 file ({exc}); "
                              f"{LAYOUTS['shd'].expected()}") from None


# --- the split ------------------------------------------------------------------------------

def _check_options(name: str, time_bins: int, downsample: int) -> None:
    for value, option in ((time_bins, "time bins (--time-bins)"), (downsample, "downsample factor (--downsample)")):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise SpikeforgeError(f"{name}: the {option} must be a positive integer, got {value!r}")
    width = LAYOUTS[name].sensor_size[0]
    if downsample > width:
        raise SpikeforgeError(f"{name}: downsample factor {downsample} is larger than the sensor ({width}); "
                              f"use --downsample 1..{width}")


def _stack(recordings: Iterable[np.ndarray], count: int, labels: list[int], sensor: tuple[int, int, int],
           shape: tuple[int, ...], time_bins: int, downsample: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Bin ``count`` recordings into one preallocated float32 array ``[count, *shape]`` (no second copy)."""
    x = np.empty((count, *shape), dtype=np.float32)
    for i, events in enumerate(recordings):
        x[i] = bin_events(events, sensor, time_bins, downsample).reshape(shape)  # SHD: [T, 1, C] -> [T, C]
    return torch.from_numpy(x), torch.tensor(labels, dtype=torch.int64)


def load_event_dataset(name: str, data_dir: str | os.PathLike, time_bins: int = DEFAULT_TIME_BINS,
                       downsample: int = 1, max_gib: float = MAX_IN_MEMORY_GIB) -> DatasetSplit:
    """``name`` (one of :data:`EVENT_DATASETS`) from tonic's layout in ``data_dir``, binned to ``time_bins`` frames.

    ``downsample`` k divides the sensor's sides (SHD: its channels) by k, rounding up. The
    split is refused before any recording is read when its frames would need more than
    ``max_gib`` GiB as float32.
    """
    if name not in LAYOUTS:
        raise SpikeforgeError(f"{name!r} is not an event dataset; use one of {', '.join(EVENT_DATASETS)}")
    _check_options(name, time_bins, downsample)
    layout = LAYOUTS[name]
    root = _root(name, data_dir)
    shape = (time_bins, *frame_shape(name, downsample))
    lower = "--time-bins or raise --downsample (time_bins=, downsample=)"
    if name == "shd":
        paths = [root / layout.train, root / layout.test]
        for path in paths:
            if not path.is_file():
                raise SpikeforgeError(f"shd: {path} is not a file; {layout.expected()}")
        check_memory(name, sum(_shd_count(p) for p in paths), shape, lower, max_gib)
        parts = []
        classes = None
        for path in paths:
            events, count, labels, classes = _read_shd_file(path)
            _check_count(name, path, count)
            parts.append(_stack(events, count, labels.tolist(), layout.sensor_size, shape, time_bins, downsample))
        (x_train, y_train), (x_test, y_test) = parts
        return DatasetSplit(x_train, y_train, x_test, y_test, name=name, num_classes=layout.num_classes,
                            classes=classes)
    lister: Callable[[str, Path], list[tuple[Path, int]]] = _nmnist_files if name == "nmnist" else _dvs_files
    reader: Callable[[Path], np.ndarray] = read_nmnist if name == "nmnist" else read_dvs_gesture
    folders = [root / layout.train, root / layout.test]
    for folder in folders:
        if not folder.is_dir():
            raise SpikeforgeError(f"{name}: {folder} is not a folder; {layout.expected()}")
    listed = [lister(name, folder) for folder in folders]
    check_memory(name, sum(len(files) for files in listed), shape, lower, max_gib)
    (x_train, y_train), (x_test, y_test) = (
        _stack((reader(path) for path, _ in files), len(files), [label for _, label in files], layout.sensor_size,
               shape, time_bins, downsample) for files in listed)
    return DatasetSplit(x_train, y_train, x_test, y_test, name=name, num_classes=layout.num_classes)
