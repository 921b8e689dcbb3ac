"""Writers of small files in each dataset's real on-disk format (for tests, examples and smoke runs).

Each writer produces what the official archive (or tonic's layout of it) holds, byte for
byte where the format is fixed, so the readers of :mod:`snn.data` read them exactly as they
read the real thing:

- :func:`write_idx`: an IDX file (MNIST, Fashion-MNIST).
- :func:`write_cifar_binary`, :func:`write_cifar_python`: the extracted CIFAR-10 / CIFAR-100
  archives; the Python version as the Python 2 protocol-2 pickles the archive ships (byte
  strings, numpy's ``numpy.core.multiarray._reconstruct``).
- :func:`write_image_folder`: ``train/<class>/`` and ``val/<class>/`` of real JPEG (or PNG) files.
- :func:`write_nmnist`: N-MNIST's 40-bit event records, in tonic's ``NMNIST/Train/<digit>/`` layout.
- :func:`write_dvs_gesture`: tonic's preprocessed DVS Gesture ``.npy`` recordings.
- :func:`write_shd`: SHD's HDF5 files (``spikes/times``, ``spikes/units``, ``labels``, ``extra``).
- :func:`write_tiny_dataset`: a few synthetic, learnable samples per class of any dataset above.

Events are tonic's structured arrays (fields ``x``, ``y``, ``t``, ``p``; ``t`` in microseconds).
Every file is written atomically.
"""

from __future__ import annotations

import math
import os
import struct
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from snn import cifar, event_data
from snn.errors import SpikeforgeError
from snn.fileio import atomic_path

IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_IDX_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(np.int16): 0x0B,
              np.dtype(np.int32): 0x0C, np.dtype(np.float32): 0x0D, np.dtype(np.float64): 0x0E}
Recording = tuple[np.ndarray, int]  # (events, label)
# SHD's class names (extra/keys): the spoken digits in English, then in German
SHD_KEYS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
            "null", "eins", "zwei", "drei", "vier", "fuenf", "sechs", "sieben", "acht", "neun")


def _write_bytes(path: Path, raw: bytes) -> Path:
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(raw)
    return path


def _uint8_images(images: Any, shape: tuple[int, ...], what: str) -> np.ndarray:
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.shape[1:] != shape:
        raise SpikeforgeError(f"{what} must be uint8 [N, {', '.join(map(str, shape))}], got {images.dtype} "
                              f"{images.shape}")
    return images


# --- IDX ------------------------------------------------------------------------------------

def write_idx(path: str | os.PathLike, array: np.ndarray) -> Path:
    """One IDX file: magic (0, 0, type code, ndim), big-endian uint32 dims, big-endian data."""
    array = np.asarray(array)
    if array.dtype not in _IDX_CODES:
        raise SpikeforgeError(f"IDX holds uint8, int8, int16, int32, float32 or float64, got {array.dtype}")
    header = bytes([0, 0, _IDX_CODES[array.dtype], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return _write_bytes(Path(path), header + array.astype(array.dtype.newbyteorder(">")).tobytes())


# --- CIFAR ----------------------------------------------------------------------------------

def _cifar_parts(version: int, images: Any, labels: Any, test_images: Any, test_labels: Any,
                 coarse: Any, test_coarse: Any) -> tuple[cifar.CifarLayout, list[tuple[np.ndarray, ...]]]:
    name = {10: "cifar10", 100: "cifar100"}.get(version)
    if name is None:
        raise SpikeforgeError(f"CIFAR version must be 10 or 100, got {version!r}")
    layout = cifar.LAYOUTS[name]
    parts = []
    for x, y, c, what in ((images, labels, coarse, "images"), (test_images, test_labels, test_coarse, "test images")):
        x = _uint8_images(x, cifar.IMAGE_SHAPE, what)
        y = np.asarray(y, dtype=np.int64)
        if y.shape != (len(x),) or (len(y) and (y.min() < 0 or y.max() >= layout.num_classes)):
            raise SpikeforgeError(f"{layout.title} needs one label in 0..{layout.num_classes - 1} per image")
        c = y // 5 if c is None else np.asarray(c, dtype=np.int64)  # any coarse labels in 0..19 will do
        parts.append((x, y, c))
    if len(parts[0][0]) < len(layout.binary_train):
        raise SpikeforgeError(f"{layout.title} has {len(layout.binary_train)} training batches: give at least "
                              f"{len(layout.binary_train)} training images (one per batch), got {len(parts[0][0])}")
    return layout, parts


def write_cifar_binary(folder: str | os.PathLike, images: Any, labels: Any, test_images: Any, test_labels: Any,
                       version: int = 10, coarse_labels: Any = None, test_coarse_labels: Any = None) -> Path:
    """The extracted binary archive in ``folder`` (``cifar-10-batches-bin`` or ``cifar-100-binary``); its path.

    ``images`` are uint8 ``[N, 3, 32, 32]``; CIFAR-10's are dealt in order over the five
    training batches (so at least five). CIFAR-100 records carry the coarse label too
    (default: ``fine // 5``).
    """
    layout, ((x, y, c), (tx, ty, tc)) = _cifar_parts(version, images, labels, test_images, test_labels,
                                                     coarse_labels, test_coarse_labels)
    out = Path(folder) / layout.binary_folder

    def records(x: np.ndarray, y: np.ndarray, c: np.ndarray) -> bytes:
        heads = [c[:, None], y[:, None]] if layout.label_bytes == 2 else [y[:, None]]
        return np.concatenate([*(h.astype(np.uint8) for h in heads), x.reshape(len(x), cifar.PIXELS)], axis=1).tobytes()

    for file, index in zip(layout.binary_train, np.array_split(np.arange(len(x)), len(layout.binary_train))):
        _write_bytes(out / file, records(x[index], y[index], c[index]))
    _write_bytes(out / layout.binary_test, records(tx, ty, tc))
    names = [f"class_{i}" for i in range(layout.num_classes)]
    if version == 10:
        _write_bytes(out / "batches.meta.txt", ("\n".join(names) + "\n\n").encode())
    else:
        _write_bytes(out / "fine_label_names.txt", ("\n".join(names) + "\n").encode())
        _write_bytes(out / "coarse_label_names.txt", ("\n".join(f"superclass_{i}" for i in range(20)) + "\n").encode())
    return out


def _py2(obj: Any, out: bytearray) -> None:
    """Append ``obj`` as Python 2's cPickle (protocol 2) wrote it: text and bytes as byte strings."""
    if obj is None:
        out += b"N"
    elif isinstance(obj, bool):
        out += b"\x88" if obj else b"\x89"  # NEWTRUE / NEWFALSE
    elif isinstance(obj, (int, np.integer)):
        obj = int(obj)
        if 0 <= obj < 256:
            out += b"K" + bytes([obj])  # BININT1
        elif 0 <= obj < 65536:
            out += b"M" + struct.pack("<H", obj)  # BININT2
        else:
            out += b"J" + struct.pack("<i", obj)  # BININT
    elif isinstance(obj, (bytes, str)):
        raw = obj.encode("latin-1") if isinstance(obj, str) else obj
        out += (b"U" + bytes([len(raw)]) if len(raw) < 256 else b"T" + struct.pack("<i", len(raw))) + raw
    elif isinstance(obj, tuple):
        if 1 <= len(obj) <= 3:
            for item in obj:
                _py2(item, out)
            out += {1: b"\x85", 2: b"\x86", 3: b"\x87"}[len(obj)]  # TUPLE1..3
        else:
            out += b"("
            for item in obj:
                _py2(item, out)
            out += b"t"  # MARK ... TUPLE
    elif isinstance(obj, list):
        out += b"]"
        if obj:
            out += b"("
            for item in obj:
                _py2(item, out)
            out += b"e"  # APPENDS
    elif isinstance(obj, dict):
        out += b"}"
        if obj:
            out += b"("
            for key, value in obj.items():
                _py2(key, out)
                _py2(value, out)
            out += b"u"  # SETITEMS
    elif isinstance(obj, np.ndarray) and obj.dtype == np.uint8:
        # numpy's ndarray.__reduce__: _reconstruct(ndarray, (0,), 'b'), then BUILD with
        # (version, shape, dtype, fortran, raw bytes); the dtype is dtype('u1', 0, 1) plus its state.
        out += b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n"  # GLOBAL x2
        _py2((0,), out)
        _py2(b"b", out)
        out += b"\x87R("  # TUPLE3 (ndarray, (0,), 'b'), REDUCE, MARK
        _py2(1, out)
        _py2(tuple(obj.shape), out)
        out += b"cnumpy\ndtype\n"
        _py2((b"u1", 0, 1), out)
        out += b"R("
        for item in (3, b"|", None, None, None, -1, -1, 0):
            _py2(item, out)
        out += b"tb"  # TUPLE, BUILD (the dtype's state)
        out += b"\x89"  # not Fortran order
        _py2(np.ascontiguousarray(obj).tobytes(), out)
        out += b"tb"  # TUPLE, BUILD (the array's state)
    else:
        raise TypeError(f"no Python 2 pickle form for {type(obj).__name__}")


def py2_pickle(obj: Any) -> bytes:
    """``obj`` (dicts, lists, tuples, ints, byte strings, uint8 arrays) as a Python 2 protocol-2 pickle."""
    out = bytearray(b"\x80\x02")  # PROTO 2
    _py2(obj, out)
    return bytes(out + b".")  # STOP


def write_cifar_python(folder: str | os.PathLike, images: Any, labels: Any, test_images: Any, test_labels: Any,
                       version: int = 10, coarse_labels: Any = None, test_coarse_labels: Any = None) -> Path:
    """The extracted Python archive in ``folder`` (``cifar-10-batches-py`` or ``cifar-100-python``); its path.

    Batches are dicts of ``b"batch_label"``, ``b"labels"`` (CIFAR-100: ``b"fine_labels"`` and
    ``b"coarse_labels"``), ``b"data"`` (uint8 ``[N, 3072]``) and ``b"filenames"``, pickled as
    the archive's Python 2 files are.
    """
    layout, ((x, y, c), (tx, ty, tc)) = _cifar_parts(version, images, labels, test_images, test_labels,
                                                     coarse_labels, test_coarse_labels)
    out = Path(folder) / layout.python_folder

    def batch(label: str, x: np.ndarray, y: np.ndarray, c: np.ndarray) -> bytes:
        entry: dict[bytes, Any] = {b"batch_label": label.encode()}
        if version == 10:
            entry[b"labels"] = y.tolist()
        else:
            entry[b"fine_labels"], entry[b"coarse_labels"] = y.tolist(), c.tolist()
        entry[b"data"] = x.reshape(len(x), cifar.PIXELS)
        entry[b"filenames"] = [f"image_{i:05d}.png".encode() for i in range(len(x))]
        return py2_pickle(entry)

    for i, (file, index) in enumerate(zip(layout.python_train,
                                          np.array_split(np.arange(len(x)), len(layout.python_train))), start=1):
        label = f"training batch {i} of {len(layout.python_train)}" if version == 10 else "train"
        _write_bytes(out / file, batch(label, x[index], y[index], c[index]))
    _write_bytes(out / layout.python_test, batch("testing batch 1 of 1" if version == 10 else "test", tx, ty, tc))
    names = [f"class_{i}".encode() for i in range(layout.num_classes)]
    if version == 10:
        meta = {b"label_names": names, b"num_cases_per_batch": 10000, b"num_vis": 3072}
        _write_bytes(out / "batches.meta", py2_pickle(meta))
    else:
        meta = {b"fine_label_names": names, b"coarse_label_names": [f"superclass_{i}".encode() for i in range(20)]}
        _write_bytes(out / "meta", py2_pickle(meta))
    return out


# --- image folder ---------------------------------------------------------------------------

def write_image_folder(folder: str | os.PathLike, train: Mapping[str, Sequence[np.ndarray]],
                       val: Mapping[str, Sequence[np.ndarray]], suffix: str = ".JPEG", quality: int = 95) -> Path:
    """``folder/train/<class>/`` and ``folder/val/<class>/`` of image files (Pillow); returns ``folder``.

    Each image is uint8 ``[H, W, 3]`` (Pillow's order). ``suffix`` ``.JPEG`` / ``.jpg`` write
    JPEG at ``quality``, ``.png`` lossless PNG.
    """
    from PIL import Image

    formats = {".jpeg": "JPEG", ".jpg": "JPEG", ".png": "PNG"}
    if suffix.lower() not in formats:
        raise SpikeforgeError(f"image suffix must be one of .JPEG, .jpg, .png, got {suffix!r}")
    root = Path(folder)
    for split, classes in (("train", train), ("val", val)):
        for name, images in classes.items():
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i, image in enumerate(images):
                image = np.ascontiguousarray(image)
                if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
                    raise SpikeforgeError(f"images must be uint8 [H, W, 3], got {image.dtype} {image.shape}")
                stem = f"{name}_{i}" if split == "train" else f"val_{name}_{i:08d}"
                options = {"quality": quality} if formats[suffix.lower()] == "JPEG" else {}
                with atomic_path(root / split / name / f"{stem}{suffix}") as tmp:
                    Image.fromarray(image, "RGB").save(tmp, format=formats[suffix.lower()], **options)
    return root


# --- event datasets -------------------------------------------------------------------------

def events_array(x: Any, y: Any, t: Any, p: Any) -> np.ndarray:
    """A tonic-style structured event array (x, y, t in microseconds, p)."""
    x = np.asarray(x)
    events = np.empty(len(x), dtype=event_data.NMNIST_DTYPE)
    events["x"], events["y"], events["t"], events["p"] = x, y, t, p
    return events


def _check_events(events: np.ndarray, fields: str, sensor: tuple[int, int, int], what: str) -> None:
    names = events.dtype.names or ()
    if not set(fields) <= set(names):
        raise SpikeforgeError(f"{what} events need the fields {', '.join(fields)}, got {names}")
    if not len(events):
        return
    width, height, polarities = sensor
    checks = {"x": width, "y": height, "p": polarities}
    for field in fields:
        if field in checks and (events[field].min() < 0 or events[field].max() >= checks[field]):
            raise SpikeforgeError(f"{what} events: {field} must lie in 0..{checks[field] - 1}")
    if events["t"].min() < 0:
        raise SpikeforgeError(f"{what} events: times must be non-negative")


def nmnist_bytes(events: np.ndarray) -> bytes:
    """N-MNIST's 40-bit records: x, y, polarity (bit 7) with time bits 22..16, time bits 15..8, 7..0.

    Times (microseconds) must be below 2**23 (8.4 s; the recordings last about 0.3 s).
    """
    _check_events(events, "xytp", event_data.LAYOUTS["nmnist"].sensor_size, "N-MNIST")
    t = np.asarray(events["t"], dtype=np.int64)
    if len(t) and t.max() >= 2**23:
        raise SpikeforgeError("N-MNIST event times must be below 2**23 us")
    order = np.argsort(t, kind="stable")
    t = t[order]
    records = np.empty((len(t), event_data.NMNIST_RECORD_BYTES), dtype=np.uint8)
    records[:, 0] = events["x"][order]
    records[:, 1] = events["y"][order]
    records[:, 2] = (np.asarray(events["p"][order], dtype=np.int64) << 7) | (t >> 16)
    records[:, 3] = (t >> 8) & 0xFF
    records[:, 4] = t & 0xFF
    return records.tobytes()


def write_nmnist(folder: str | os.PathLike, train: Sequence[Recording], test: Sequence[Recording]) -> Path:
    """``folder/NMNIST/Train/<digit>/<n>.bin`` and ``Test/...`` (tonic's layout); returns ``folder``."""
    layout = event_data.LAYOUTS["nmnist"]
    root = Path(folder) / layout.folder
    for part, recordings in ((layout.train, train), (layout.test, test)):
        for n, (events, label) in enumerate(recordings, start=1):
            if not 0 <= int(label) < layout.num_classes:
                raise SpikeforgeError(f"N-MNIST labels lie in 0..9, got {label}")
            _write_bytes(root / part / str(int(label)) / f"{n:05d}.bin", nmnist_bytes(events))
    return Path(folder)


def write_dvs_gesture(folder: str | os.PathLike, train: Sequence[Recording], test: Sequence[Recording],
                      lighting: str = "fluorescent") -> Path:
    """tonic's DVS Gesture layout in ``folder``; returns ``folder``.

    Each recording becomes ``DVSGesture/ibmGesture{Train,Test}/user<NN>_<lighting>/<label>.npy``,
    an int64 ``[N, 4]`` array of x, y, polarity and time in milliseconds (microsecond times are
    rounded down, as tonic's preprocessed archive keeps milliseconds). A user folder holds each
    gesture once, so recordings are dealt to users 01, 02, ... (test: 24, 25, ...).
    """
    layout = event_data.LAYOUTS["dvs-gesture"]
    root = Path(folder) / layout.folder
    for part, recordings, first_user in ((layout.train, train, 1), (layout.test, test, 24)):
        taken: list[set[int]] = []
        for events, label in recordings:
            label = int(label)
            if not 0 <= label < layout.num_classes:
                raise SpikeforgeError(f"DVS Gesture labels lie in 0..{layout.num_classes - 1}, got {label}")
            _check_events(events, "xytp", layout.sensor_size, "DVS Gesture")
            user = next((i for i, labels in enumerate(taken) if label not in labels), len(taken))
            if user == len(taken):
                taken.append(set())
            taken[user].add(label)
            columns = np.stack([np.asarray(events[f], dtype=np.int64) for f in ("x", "y", "p")]
                               + [np.asarray(events["t"], dtype=np.int64) // 1000], axis=1).reshape(-1, 4)
            path = root / part / f"user{first_user + user:02d}_{lighting}" / f"{label}.npy"
            with atomic_path(path) as tmp:
                with open(tmp, "wb") as handle:
                    np.save(handle, columns, allow_pickle=False)
    return Path(folder)


def write_shd_file(path: str | os.PathLike, recordings: Sequence[tuple[Any, Any, int]],
                   speakers: Sequence[int] | None = None) -> Path:
    """One SHD HDF5 file: ``spikes/times`` (float16 seconds) and ``spikes/units`` (uint16), one
    variable-length array per recording, ``labels`` (uint16) and ``extra/keys`` / ``extra/speaker``.

    ``recordings`` are ``(times in seconds, units 0..699, label 0..19)``.
    """
    import h5py

    channels, classes = event_data.LAYOUTS["shd"].sensor_size[0], event_data.LAYOUTS["shd"].num_classes
    times, units, labels = [], [], []
    for t, u, label in recordings:
        t, u = np.asarray(t, dtype=np.float16), np.asarray(u, dtype=np.int64)
        if t.shape != u.shape or t.ndim != 1 or (len(u) and (u.min() < 0 or u.max() >= channels)):
            raise SpikeforgeError(f"SHD recordings need as many times as units, units in 0..{channels - 1}")
        if not 0 <= int(label) < classes:
            raise SpikeforgeError(f"SHD labels lie in 0..{classes - 1}, got {label}")
        times.append(t)
        units.append(u.astype(np.uint16))
        labels.append(int(label))
    path = Path(path)
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as handle:
            vlen_times = handle.create_dataset("spikes/times", (len(times),), dtype=h5py.vlen_dtype(np.float16))
            vlen_units = handle.create_dataset("spikes/units", (len(units),), dtype=h5py.vlen_dtype(np.uint16))
            for i, (t, u) in enumerate(zip(times, units)):
                vlen_times[i], vlen_units[i] = t, u
            handle.create_dataset("labels", data=np.asarray(labels, dtype=np.uint16))
            handle.create_dataset("extra/keys", data=np.array([k.encode() for k in SHD_KEYS]))
            handle.create_dataset("extra/speaker", data=np.asarray(speakers if speakers is not None
                                                                   else [0] * len(labels), dtype=np.uint16))
    return path


def write_shd(folder: str | os.PathLike, train: Sequence[tuple[Any, Any, int]],
              test: Sequence[tuple[Any, Any, int]]) -> Path:
    """``folder/SHD/shd_train.h5`` and ``shd_test.h5`` (tonic's layout); returns ``folder``."""
    layout = event_data.LAYOUTS["shd"]
    write_shd_file(Path(folder) / layout.folder / layout.train, train)
    write_shd_file(Path(folder) / layout.folder / layout.test, test)
    return Path(folder)


# --- tiny synthetic datasets ----------------------------------------------------------------

TINY_DATASETS = ("mnist", "fashion-mnist", "cifar10", "cifar100", "imagefolder", "nmnist", "dvs-gesture", "shd")
TINY_IMAGE_CLASSES = ("class_a", "class_b", "class_c")


def _class_images(rng: np.random.Generator, label: int, num_classes: int, count: int,
                  shape: tuple[int, ...]) -> np.ndarray:
    """Dim noise with a bright band of rows whose place encodes the class (something to learn)."""
    images = rng.integers(0, 96, (count, *shape), dtype=np.uint8)
    rows = shape[-2]
    start = label * rows // num_classes
    stop = max(start + 1, (label + 1) * rows // num_classes)
    images[..., start:stop, :] = 255
    return images


def _class_events(rng: np.random.Generator, label: int, num_classes: int, width: int, height: int,
                  polarities: int, events: int = 400, duration_us: int = 100_000) -> np.ndarray:
    """Events concentrated in a band of rows (SHD: channels) set by the class, spread over the duration."""
    start = label * height // num_classes if height > 1 else label * width // num_classes
    span = max(1, (height if height > 1 else width) // num_classes)
    band = rng.integers(start, start + span, events)
    other = rng.integers(0, width if height > 1 else 1, events)
    x, y = (other, band) if height > 1 else (band, np.zeros(events, dtype=np.int64))
    t = np.sort(rng.integers(0, duration_us, events))
    return events_array(x, y, t, rng.integers(0, polarities, events))


def write_tiny_dataset(name: str, folder: str | os.PathLike, samples_per_class: int = 2, seed: int = 0,
                       classes: int | None = None) -> Path:
    """A few synthetic samples per class of ``name`` in its real file format; returns the ``--data-dir``.

    ``samples_per_class`` training samples and ``ceil(samples_per_class / 2)`` test samples of
    each of the first ``classes`` classes (default: all; the image folder has three). The
    class shows as a bright band (images) or an active band of rows or channels (events),
    so a network can learn it; the figures mean nothing beyond that the pipeline runs.
    """
    if name not in TINY_DATASETS:
        raise SpikeforgeError(f"no tiny-file writer for {name!r}; choose one of {', '.join(TINY_DATASETS)}")
    if samples_per_class < 1:
        raise SpikeforgeError(f"samples per class must be at least 1, got {samples_per_class}")
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    n_train, n_test = samples_per_class, math.ceil(samples_per_class / 2)
    total = {"mnist": 10, "fashion-mnist": 10, "cifar10": 10, "cifar100": 100, "imagefolder": len(TINY_IMAGE_CLASSES),
             "nmnist": 10, "dvs-gesture": 11, "shd": 20}[name]
    count = total if classes is None else min(int(classes), total)
    labels_train = np.repeat(np.arange(count), n_train)
    labels_test = np.repeat(np.arange(count), n_test)

    def images(n: int, shape: tuple[int, ...]) -> np.ndarray:
        return np.concatenate([_class_images(rng, c, count, n, shape) for c in range(count)])

    if name in ("mnist", "fashion-mnist"):
        arrays = {"train_images": images(n_train, (28, 28)), "train_labels": labels_train.astype(np.uint8),
                  "test_images": images(n_test, (28, 28)), "test_labels": labels_test.astype(np.uint8)}
        for key, file in IDX_FILES.items():
            write_idx(folder / file, arrays[key])
        return folder
    if name in ("cifar10", "cifar100"):
        write_cifar_binary(folder, images(n_train, cifar.IMAGE_SHAPE), labels_train, images(n_test, cifar.IMAGE_SHAPE),
                           labels_test, version=10 if name == "cifar10" else 100)
        return folder
    if name == "imagefolder":
        def pictures(c: int, n: int) -> list[np.ndarray]:
            return list(_class_images(rng, c, count, n, (3, 48, 64)).transpose(0, 2, 3, 1))
        names = TINY_IMAGE_CLASSES[:count]
        write_image_folder(folder, {k: pictures(c, n_train) for c, k in enumerate(names)},
                           {k: pictures(c, n_test) for c, k in enumerate(names)})
        return folder
    sensor = event_data.LAYOUTS[name].sensor_size

    def recordings(labels: np.ndarray) -> list[Recording]:
        return [(_class_events(rng, int(c), count, *sensor), int(c)) for c in labels]
    if name == "nmnist":
        return write_nmnist(folder, recordings(labels_train), recordings(labels_test))
    if name == "dvs-gesture":
        return write_dvs_gesture(folder, recordings(labels_train), recordings(labels_test))
    # shd: events on the channel axis, times in seconds
    def shd(labels: np.ndarray) -> list[tuple[Any, Any, int]]:
        out = []
        for c in labels:
            events = _class_events(rng, int(c), count, *sensor)
            out.append((events["t"] / 1e6, events["x"], int(c)))
        return out
    return write_shd(folder, shd(labels_train), shd(labels_test))
