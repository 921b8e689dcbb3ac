"""Real datasets from local files: CIFAR (binary and Python), image folders, N-MNIST, DVS Gesture, SHD.

Each format is written tiny with snn.dataset_files (or byte by byte here, to pin the format
independently of the writer) and read back through snn.data.load_dataset. The event files are
also read by tonic's own dataset classes, with their folder check patched as tonic's tests do
and every download path made to fail, and must give the same frames.
"""

from __future__ import annotations

import os
import pickle
import struct
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch

from snn import cifar, data, dataset_files, encoders, event_data, image_folder
from snn.errors import SpikeforgeError
from snn.models import build_model
from snn.names import DATASETS, ENCODERS
from snn.training import ENCODERS as TASK_ENCODERS
from snn.training import Task

RNG = np.random.default_rng(0)


def cifar_images(n: int) -> np.ndarray:
    return RNG.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)


def as_uint8(x: torch.Tensor) -> np.ndarray:
    return (x * 255).round().to(torch.uint8).numpy()


# --- names ----------------------------------------------------------------------------------

def test_names_agree_with_the_readers() -> None:
    assert DATASETS == tuple(data.LOADERS)
    assert set(data.NEEDS_DATA_DIR) == set(DATASETS) - {"digits"}
    assert ENCODERS == TASK_ENCODERS and "frames" in ENCODERS


def test_event_layouts_are_tonics() -> None:
    import tonic.datasets as td

    for name, cls in (("nmnist", td.NMNIST), ("dvs-gesture", td.DVSGesture), ("shd", td.SHD)):
        layout = event_data.LAYOUTS[name]
        assert layout.folder == cls.__name__ and layout.sensor_size == tuple(cls.sensor_size)
    assert (td.NMNIST.train_folder, td.NMNIST.test_folder) == ("Train", "Test")
    assert (td.SHD.train_zip[:-4], td.SHD.test_zip[:-4]) == ("shd_train.h5", "shd_test.h5")
    assert td.NMNIST.dtype == event_data.NMNIST_DTYPE and td.DVSGesture.dtype == event_data.DVS_GESTURE_DTYPE
    assert td.SHD.dtype == event_data.SHD_DTYPE
    assert len(td.DVSGesture.classes) == event_data.LAYOUTS["dvs-gesture"].num_classes


def test_options_a_dataset_does_not_use_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SpikeforgeError, match=r"cifar10 does not use time_bins \(--time-bins\)"):
        data.load_dataset("cifar10", tmp_path, time_bins=8)
    with pytest.raises(SpikeforgeError, match="image_size"):
        data.load_dataset("digits", image_size=32)
    with pytest.raises(SpikeforgeError, match="pass --data-dir with tonic's save_to folder"):
        data.load_dataset("shd")


# --- CIFAR binary ---------------------------------------------------------------------------

def test_cifar10_binary_record_layout_by_hand(tmp_path: Path) -> None:
    """1 label byte, then 1024 red, 1024 green, 1024 blue bytes, rows top to bottom."""
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    image = np.zeros((3, 32, 32), dtype=np.uint8)
    image[0, 0, 1], image[1, 31, 0], image[2, 5, 7] = 255, 128, 51
    record = bytes([7]) + image.tobytes()
    assert len(record) == 3073
    for i in range(1, 6):
        (folder / f"data_batch_{i}.bin").write_bytes(record * i)
    (folder / "test_batch.bin").write_bytes(bytes([3]) + bytes(3072))
    split = data.load_dataset("cifar10", tmp_path)  # the folder above the extracted one
    assert split.x_train.shape == (15, 3, 32, 32) and split.x_test.shape == (1, 3, 32, 32)
    assert split.x_train.dtype == torch.float32 and split.y_train.dtype == torch.int64
    assert split.num_classes == 10 and split.input_shape == (3, 32, 32)
    assert split.x_train[0, 0, 0, 1] == 1.0 and split.x_train[0, 1, 31, 0] == 128 / 255
    assert split.x_train[0, 2, 5, 7] == pytest.approx(0.2)
    assert split.x_train[0].sum() == pytest.approx(1 + 128 / 255 + 0.2)
    assert split.y_train.tolist() == [7] * 15 and split.y_test.tolist() == [3]


@pytest.mark.parametrize("version", [10, 100])
@pytest.mark.parametrize("kind", ["binary", "python"])
def test_cifar_round_trip(tmp_path: Path, version: int, kind: str) -> None:
    x, tx = cifar_images(7), cifar_images(3)
    y, ty = RNG.integers(0, version, 7), RNG.integers(0, version, 3)
    write = dataset_files.write_cifar_binary if kind == "binary" else dataset_files.write_cifar_python
    extracted = write(tmp_path, x, y, tx, ty, version=version, coarse_labels=np.arange(7) % 20)
    name = f"cifar{version}"
    for data_dir in (tmp_path, extracted):  # the parent or the extracted folder itself
        split = data.load_dataset(name, data_dir)
        assert split.name == name and split.num_classes == version
        np.testing.assert_array_equal(as_uint8(split.x_train), x)
        np.testing.assert_array_equal(as_uint8(split.x_test), tx)
        assert split.y_train.tolist() == y.tolist() and split.y_test.tolist() == ty.tolist()  # the fine labels
        assert 0.0 <= split.x_train.min() and split.x_train.max() <= 1.0


def test_cifar100_binary_uses_the_fine_label(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-100-binary"
    folder.mkdir()
    (folder / "train.bin").write_bytes(bytes([4, 93]) + bytes(3072) + bytes([19, 0]) + bytes(3072))
    (folder / "test.bin").write_bytes(bytes([0, 99]) + bytes(3072))
    split = data.load_dataset("cifar100", folder)
    assert split.y_train.tolist() == [93, 0] and split.y_test.tolist() == [99]


def test_cifar_python_files_are_python2_pickles(tmp_path: Path) -> None:
    extracted = dataset_files.write_cifar_python(tmp_path, cifar_images(5), [1, 2, 3, 4, 5], cifar_images(1), [3])
    raw = (extracted / "data_batch_1").read_bytes()
    assert raw[:3] == b"\x80\x02}" and b"cnumpy.core.multiarray\n_reconstruct\n" in raw
    plain = pickle.loads(raw, encoding="bytes")  # what the archive's own instructions do
    assert set(plain) == {b"batch_label", b"labels", b"data", b"filenames"} and plain[b"labels"] == [1]
    assert set(pickle.loads((extracted / "batches.meta").read_bytes(), encoding="bytes")) >= {b"label_names"}


def test_cifar_python_batch_pickled_by_numpy2_is_read(tmp_path: Path) -> None:
    """A batch re-pickled under Python 3 names numpy._core.multiarray._reconstruct."""
    extracted = dataset_files.write_cifar_python(tmp_path, cifar_images(5), [0, 1, 2, 3, 4], cifar_images(1), [5])
    x = cifar_images(1)
    raw = pickle.dumps({b"data": x.reshape(1, -1), b"labels": [9]}, protocol=4)
    assert b"numpy._core.multiarray" in raw or b"numpy.core.multiarray" in raw
    (extracted / "data_batch_3").write_bytes(raw)
    split = data.load_dataset("cifar10", extracted)
    assert split.y_train.tolist() == [0, 1, 9, 3, 4]
    np.testing.assert_array_equal(as_uint8(split.x_train[2:3]), x)


class _Payload:
    """Unpickling this would run os.system / write a file: the attacks the restricted unpickler stops."""

    def __init__(self, marker: Path, how: str) -> None:
        self.marker, self.how = marker, how

    def __reduce__(self):
        if self.how == "os.system":
            return os.system, (f"touch {self.marker}",)
        if self.how == "eval":
            return eval, (f"open({str(self.marker)!r}, 'w').write('x')",)
        return Path.write_text, (self.marker, "x")


@pytest.mark.parametrize("how, protocol", [("os.system", 2), ("os.system", 4), ("eval", 2), ("pathlib", 5)])
def test_a_pickle_that_would_run_code_is_refused_without_running_it(tmp_path: Path, how: str, protocol: int) -> None:
    extracted = dataset_files.write_cifar_python(tmp_path, cifar_images(5), [0] * 5, cifar_images(1), [0])
    marker = tmp_path / "marker"
    payload = {b"data": _Payload(marker, how), b"labels": [0]}
    (extracted / "data_batch_2").write_bytes(pickle.dumps(payload, protocol=protocol))
    with pytest.raises(SpikeforgeError) as info:
        data.load_dataset("cifar10", tmp_path)
    message = str(info.value)
    assert "refused" in message and str(extracted / "data_batch_2") in message and "nothing of it was run" in message
    assert "\n" not in message
    assert not marker.exists()


def test_the_unpickler_admits_only_numpy_array_reconstruction() -> None:
    assert set(cifar.ALLOWED_GLOBALS) == {("numpy.core.multiarray", "_reconstruct"),
                                          ("numpy._core.multiarray", "_reconstruct"),
                                          ("numpy", "ndarray"), ("numpy", "dtype")}
    for module, name in (("builtins", "getattr"), ("numpy", "load"), ("numpy.core.multiarray", "scalar")):
        with pytest.raises(cifar.RefusedPickle):
            cifar.CifarUnpickler.find_class(None, module, name)  # type: ignore[arg-type]


def test_missing_cifar_batch_is_named_with_the_layout(tmp_path: Path) -> None:
    extracted = dataset_files.write_cifar_binary(tmp_path, cifar_images(5), [0] * 5, cifar_images(1), [0])
    (extracted / "data_batch_3.bin").unlink()
    with pytest.raises(SpikeforgeError) as info:
        data.load_dataset("cifar10", tmp_path)
    assert str(info.value) == (
        f"cifar10: {extracted / 'data_batch_3.bin'} is missing; expected the extracted CIFAR-10 binary archive "
        "(cifar-10-batches-bin: data_batch_1..5.bin, test_batch.bin) or the Python version (cifar-10-batches-py: "
        "data_batch_1..5, test_batch), or the folder above them")


def test_no_cifar_files(tmp_path: Path) -> None:
    with pytest.raises(SpikeforgeError, match="cifar100: no CIFAR-100 files in .*cifar-100-binary: train.bin"):
        data.load_dataset("cifar100", tmp_path)
    with pytest.raises(SpikeforgeError, match="does not exist"):
        data.load_dataset("cifar10", tmp_path / "nowhere")


@pytest.mark.parametrize("damage, message", [
    (lambda raw: raw[:-5], "not a whole number of 3073-byte records"),
    (lambda raw: b"", "0 bytes"),
    (lambda raw: bytes([10]) + raw[1:], r"labels must lie in 0..9, got 0..10|labels must lie in 0..9, got 10"),
])
def test_damaged_binary_batch_is_refused(tmp_path: Path, damage, message: str) -> None:
    extracted = dataset_files.write_cifar_binary(tmp_path, cifar_images(10), [0] * 10, cifar_images(1), [0])
    path = extracted / "data_batch_1.bin"
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(SpikeforgeError, match=message) as info:
        data.load_dataset("cifar10", extracted)
    assert str(path) in str(info.value) and "re-extract" in str(info.value)


def test_cifar100_coarse_label_out_of_range_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-100-binary"
    folder.mkdir()
    (folder / "train.bin").write_bytes(bytes([20, 3]) + bytes(3072))
    (folder / "test.bin").write_bytes(bytes([0, 3]) + bytes(3072))
    with pytest.raises(SpikeforgeError, match="coarse labels must lie in 0..19"):
        data.load_dataset("cifar100", tmp_path)


@pytest.mark.parametrize("damage, message", [
    (lambda raw: raw[: len(raw) // 2], "not a readable pickle"),
    (lambda raw: pickle.dumps([1, 2], protocol=2), "holds a list, not a dict"),
    (lambda raw: pickle.dumps({b"data": np.zeros((1, 3072), np.float32), b"labels": [0]}, protocol=4),
     "must be a uint8 array"),
    (lambda raw: pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, protocol=4),
     "2 images but b'labels' has shape"),
    (lambda raw: pickle.dumps({b"data": np.zeros((1, 3072), np.uint8), b"labels": [12]}, protocol=4),
     r"labels must lie in 0..9"),
    (lambda raw: pickle.dumps({b"labels": [0]}, protocol=4), "lacks b'data'"),
])
def test_damaged_python_batch_is_refused(tmp_path: Path, damage, message: str) -> None:
    extracted = dataset_files.write_cifar_python(tmp_path, cifar_images(5), [0] * 5, cifar_images(1), [0])
    path = extracted / "test_batch"
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(SpikeforgeError, match=message) as info:
        data.load_dataset("cifar10", tmp_path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_binary_is_preferred_when_both_versions_are_there(tmp_path: Path) -> None:
    dataset_files.write_cifar_binary(tmp_path, cifar_images(5), [1] * 5, cifar_images(1), [1])
    dataset_files.write_cifar_python(tmp_path, cifar_images(5), [2] * 5, cifar_images(1), [2])
    assert cifar.find_cifar("cifar10", tmp_path)[0] == "binary"
    assert data.load_dataset("cifar10", tmp_path).y_test.tolist() == [1]


# --- image folder ---------------------------------------------------------------------------

def test_image_folder_of_real_jpegs(tmp_path: Path) -> None:
    colours = {"zebra": (250, 10, 10), "apple": (10, 250, 10), "mango": (10, 10, 250)}
    train = {name: [np.full((30 + 10 * i, 40, 3), c, np.uint8) for i in range(2)] for name, c in colours.items()}
    val = {name: [np.full((50, 36, 3), c, np.uint8)] for name, c in colours.items()}
    dataset_files.write_image_folder(tmp_path, train, val)
    files = sorted(p.name for p in (tmp_path / "train" / "apple").iterdir())
    assert files == ["apple_0.JPEG", "apple_1.JPEG"]
    assert (tmp_path / "train" / "apple" / "apple_0.JPEG").read_bytes()[:3] == b"\xff\xd8\xff"  # JPEG
    split = data.load_dataset("imagefolder", tmp_path, image_size=20)
    assert split.classes == ("apple", "mango", "zebra") and split.num_classes == 3
    assert split.x_train.shape == (6, 3, 20, 20) and split.x_test.shape == (3, 3, 20, 20)
    assert split.y_train.tolist() == [0, 0, 1, 1, 2, 2] and split.y_test.tolist() == [0, 1, 2]
    for x, label in zip(split.x_test, split.y_test):
        colour = colours[split.classes[label]]
        np.testing.assert_allclose(x.mean(dim=(1, 2)).numpy(), np.array(colour) / 255, atol=0.03)  # JPEG is lossy


def test_image_folder_resize_then_centre_crop(tmp_path: Path) -> None:
    """Shorter side to int(S * 256 / 224), then the centre S x S (exact on PNG, no resize needed)."""
    size = 28  # resized shorter side: 32
    image = RNG.integers(0, 256, (40, 32, 3), dtype=np.uint8)  # H 40, W 32: already 32 on the short side
    dataset_files.write_image_folder(tmp_path, {"a": [image]}, {"a": [image]}, suffix=".png")
    split = data.load_dataset("imagefolder", tmp_path, image_size=size)
    expected = image[6:34, 2:30].transpose(2, 0, 1)  # top round((40 - 28) / 2), left round((32 - 28) / 2)
    np.testing.assert_array_equal(as_uint8(split.x_train[0]), expected)
    assert image_folder.resize_size(224) == 256
    wide = np.zeros((10, 50, 3), np.uint8)
    wide[:, 25:] = 255
    (tmp_path / "train" / "a" / "a_0.png").unlink()
    dataset_files.write_image_folder(tmp_path, {"a": [wide]}, {}, suffix=".png")
    x = data.load_dataset("imagefolder", tmp_path, image_size=size).x_train[0]
    assert x.shape == (3, 28, 28) and x[:, :, :10].max() < 0.05 and x[:, :, -10:].min() > 0.95


def test_image_folder_errors(tmp_path: Path) -> None:
    image = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(SpikeforgeError, match=r"imagefolder: .*train is missing; expected <data-dir>/train/<class>"):
        data.load_dataset("imagefolder", tmp_path)
    dataset_files.write_image_folder(tmp_path, {"a": [image], "b": [image]}, {"a": [image], "c": [image]})
    with pytest.raises(SpikeforgeError, match=r"different class folders \(only in train: b; only in val: c\)"):
        data.load_dataset("imagefolder", tmp_path)
    (tmp_path / "val" / "c").rename(tmp_path / "val" / "b")
    broken = tmp_path / "train" / "b" / "broken.JPEG"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(SpikeforgeError, match=f"imagefolder: {broken} is not a readable image"):
        data.load_dataset("imagefolder", tmp_path, image_size=8)
    broken.unlink()
    assert data.load_dataset("imagefolder", tmp_path, image_size=8).x_test.shape == (2, 3, 8, 8)
    with pytest.raises(SpikeforgeError) as info:
        image_folder.load_image_folder(tmp_path, image_size=4096, max_gib=0.1)
    assert "4 samples of [3, 4096, 4096] need 0.8 GiB" in str(info.value) and "lower --image-size" in str(info.value)


# --- N-MNIST --------------------------------------------------------------------------------

def nmnist_events(x, y, t, p) -> np.ndarray:
    return dataset_files.events_array(x, y, t, p)


def test_nmnist_record_format_by_hand(tmp_path: Path) -> None:
    """x, y, then polarity in bit 7 with time bits 22..16, then time bits 15..8 and 7..0."""
    folder = tmp_path / "NMNIST"
    t = 0x5A1B2C
    record = bytes([33, 2, 0x80 | (t >> 16), (t >> 8) & 0xFF, t & 0xFF]) + bytes([0, 0, 0x5A, 0x1B, 0x36])  # t + 10
    for part in ("Train", "Test"):
        (folder / part / "4").mkdir(parents=True)
        (folder / part / "4" / "00001.bin").write_bytes(record)
    events = event_data.read_nmnist(folder / "Train" / "4" / "00001.bin")
    assert events.tolist() == [(33, 2, t, 1), (0, 0, t + 10, 0)]
    assert dataset_files.nmnist_bytes(events) == record
    split = data.load_dataset("nmnist", tmp_path, time_bins=1)  # one bin [t, t + 10): the last event falls after
    assert split.x_train.shape == (1, 1, 2, 34, 34) and split.x_train.sum() == 1
    assert split.x_train[0, 0, 1, 2, 33] == 1 and split.y_train.tolist() == [4]  # [T, polarity, y, x]


def test_nmnist_round_trip_and_binning(tmp_path: Path) -> None:
    # times 0..900 us: with T = 3 tonic's bins are [0, 300), [300, 600), [600, 900) (the last event falls after)
    first = nmnist_events([1, 2, 3, 4], [5, 6, 7, 8], [0, 299, 300, 900], [0, 1, 1, 0])
    second = nmnist_events([0, 33], [0, 33], [10, 20], [1, 1])
    dataset_files.write_nmnist(tmp_path, train=[(first, 3), (second, 9)], test=[(second, 0)])
    assert (tmp_path / "NMNIST" / "Train" / "3" / "00001.bin").stat().st_size == 20
    split = data.load_dataset("nmnist", tmp_path / "NMNIST", time_bins=3)  # the dataset's folder itself
    assert split.x_train.shape == (2, 3, 2, 34, 34) and split.y_train.tolist() == [3, 9]
    frames = split.x_train[0]
    assert frames[0, 0, 5, 1] == 1 and frames[0, 1, 6, 2] == 1 and frames[1, 1, 7, 3] == 1
    assert frames.sum() == 3  # the event at t = 900 is past the last bin (tonic's binning)
    half = data.load_dataset("nmnist", tmp_path, time_bins=3, downsample=2)
    assert half.x_train.shape == (2, 3, 2, 17, 17) and half.x_train[0].sum() == 3
    assert half.x_train[0, 0, 0, 2, 0] == 1 and half.x_train[0, 0, 1, 3, 1] == 1 and half.x_train[0, 1, 1, 3, 1] == 1


def test_tonic_reads_our_event_files_the_same_way(tmp_path: Path) -> None:
    """tonic's NMNIST, DVSGesture and SHD classes on our files (folder checks patched, downloads failing)."""
    import tonic.datasets as td
    from tonic.transforms import ToFrame

    for name in ("nmnist", "dvs-gesture", "shd"):
        dataset_files.write_tiny_dataset(name, tmp_path, samples_per_class=2, classes=3, seed=1)
    boom = mock.Mock(side_effect=AssertionError("tonic tried to download"))
    with mock.patch("tonic.dataset.Dataset.download", boom), \
            mock.patch.object(td.NMNIST, "_check_exists", return_value=True), \
            mock.patch.object(td.DVSGesture, "_check_exists", return_value=True), \
            mock.patch.object(td.SHD, "_check_exists", return_value=True):
        for name, cls in (("nmnist", td.NMNIST), ("dvs-gesture", td.DVSGesture), ("shd", td.SHD)):
            split = data.load_dataset(name, tmp_path, time_bins=5)
            theirs = cls(str(tmp_path), train=False, transform=ToFrame(sensor_size=cls.sensor_size, n_time_bins=5))
            frames = np.stack([theirs[i][0] for i in range(len(theirs))]).astype(np.float32)
            labels = [int(theirs[i][1]) for i in range(len(theirs))]
            order = np.lexsort((np.arange(len(labels)), labels))  # tonic lists files in directory order
            ours = split.x_test.numpy().reshape(frames.shape)
            assert sorted(labels) == sorted(split.y_test.tolist()), name
            for i in order:  # every recording of tonic's is one of ours, frame for frame
                assert any(np.array_equal(frames[i], o) for o in ours), name
    boom.assert_not_called()


def test_nmnist_errors(tmp_path: Path) -> None:
    with pytest.raises(SpikeforgeError) as info:
        data.load_dataset("nmnist", tmp_path)
    assert str(info.value) == (f"nmnist: {tmp_path / 'Train'} is missing; expected tonic's N-MNIST layout: "
                               "<data-dir>/NMNIST/Train/<digit>/*.bin and <data-dir>/NMNIST/Test/<digit>/*.bin "
                               "(the extracted train.zip and test.zip)")
    events = nmnist_events([1], [1], [5], [1])
    dataset_files.write_nmnist(tmp_path, [(events, 1)], [(events, 2)])
    bad = tmp_path / "NMNIST" / "Test" / "2" / "00001.bin"
    bad.write_bytes(bad.read_bytes() + b"\x00\x01")
    with pytest.raises(SpikeforgeError, match=f"nmnist: {bad} is not a valid N-MNIST recording: 7 bytes"):
        data.load_dataset("nmnist", tmp_path)
    bad.write_bytes(bytes([40, 1, 0, 0, 1]))
    with pytest.raises(SpikeforgeError, match=r"addresses up to \(40, 1\) on a 34x34 sensor"):
        data.load_dataset("nmnist", tmp_path)
    (tmp_path / "NMNIST" / "Test" / "x").mkdir()
    with pytest.raises(SpikeforgeError, match="is not a class folder"):
        data.load_dataset("nmnist", tmp_path)
    with pytest.raises(SpikeforgeError, match="positive integer"):
        data.load_dataset("nmnist", tmp_path, time_bins=0)
    with pytest.raises(SpikeforgeError, match="larger than the sensor"):
        data.load_dataset("nmnist", tmp_path, downsample=35)


def test_event_memory_bound_names_the_options(tmp_path: Path) -> None:
    dataset_files.write_tiny_dataset("dvs-gesture", tmp_path, samples_per_class=1, classes=2)
    with pytest.raises(SpikeforgeError) as info:
        event_data.load_event_dataset("dvs-gesture", tmp_path, time_bins=1000, max_gib=0.1)
    message = str(info.value)
    assert "4 samples of [1000, 2, 128, 128] need 0.5 GiB as float32 in memory, above the 0.1 GiB" in message
    assert "lower --time-bins or raise --downsample" in message


# --- DVS Gesture ----------------------------------------------------------------------------

def test_dvs_gesture_round_trip(tmp_path: Path) -> None:
    a = nmnist_events([0, 127, 64], [0, 5, 127], [0, 5000, 10000], [1, 0, 1])  # t in us, stored in ms
    b = nmnist_events([3], [4], [2000], [0])
    dataset_files.write_dvs_gesture(tmp_path, train=[(a, 10), (b, 10), (b, 2)], test=[(a, 0)])
    stored = np.load(tmp_path / "DVSGesture" / "ibmGestureTrain" / "user01_fluorescent" / "10.npy")
    assert stored.tolist() == [[0, 0, 1, 0], [127, 5, 0, 5], [64, 127, 1, 10]]  # x, y, p, t (ms)
    assert (tmp_path / "DVSGesture" / "ibmGestureTrain" / "user02_fluorescent" / "10.npy").is_file()
    assert (tmp_path / "DVSGesture" / "ibmGestureTest" / "user24_fluorescent" / "0.npy").is_file()
    split = data.load_dataset("dvs-gesture", tmp_path, time_bins=2)
    assert split.x_train.shape == (3, 2, 2, 128, 128) and split.num_classes == 11
    assert sorted(split.y_train.tolist()) == [2, 10, 10] and split.y_test.tolist() == [0]
    test = split.x_test[0]  # bins [0, 5000), [5000, 10000) us
    assert test[0, 1, 0, 0] == 1 and test[1, 0, 5, 127] == 1 and test.sum() == 2
    small = data.load_dataset("dvs-gesture", tmp_path, time_bins=2, downsample=4)
    assert small.x_test.shape == (1, 2, 2, 32, 32) and small.x_test[0, 1, 0, 1, 31] == 1


def test_dvs_gesture_errors(tmp_path: Path) -> None:
    events = nmnist_events([1], [1], [1000], [1])
    dataset_files.write_dvs_gesture(tmp_path, [(events, 1)], [(events, 1)])
    user = tmp_path / "DVSGesture" / "ibmGestureTest" / "user24_fluorescent"
    np.save(user / "1.npy", np.zeros((3, 3)))
    with pytest.raises(SpikeforgeError, match=r"dvs-gesture: .*1.npy is not a valid DVS Gesture recording: got a "
                                              r"float64 array of shape \(3, 3\)"):
        data.load_dataset("dvs-gesture", tmp_path)
    np.save(user / "1.npy", np.array([[200, 1, 1, 3]]))
    with pytest.raises(SpikeforgeError, match="128x128 sensor"):
        data.load_dataset("dvs-gesture", tmp_path)
    np.save(user / "1.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(SpikeforgeError, match="not a readable .npy file"):  # object arrays would need pickle
        data.load_dataset("dvs-gesture", tmp_path)
    (user / "1.npy").rename(user / "gesture.npy")
    with pytest.raises(SpikeforgeError, match=r"is not named by its label \(0.npy to 10.npy\)"):
        data.load_dataset("dvs-gesture", tmp_path)


# --- SHD ------------------------------------------------------------------------------------

def test_shd_round_trip(tmp_path: Path) -> None:
    import h5py

    train = [([0.0, 0.25, 0.5, 1.0], [3, 5, 699, 5], 7), ([0.1, 0.2], [0, 1], 19)]
    test = [([0.0, 0.5, 0.75, 1.0], [10, 11, 11, 12], 0)]
    dataset_files.write_shd(tmp_path, train, test)
    with h5py.File(tmp_path / "SHD" / "shd_train.h5", "r") as handle:
        assert handle["spikes/times"].dtype.metadata["vlen"] == np.float16
        assert handle["spikes/units"][0].tolist() == [3, 5, 699, 5] and handle["labels"][()].tolist() == [7, 19]
        assert len(handle["extra/keys"]) == 20
    split = data.load_dataset("shd", tmp_path, time_bins=2)
    assert split.x_train.shape == (2, 2, 700) and split.num_classes == 20
    assert split.y_train.tolist() == [7, 19] and split.classes[0] == "zero"
    first = split.x_train[0]  # bins [0, 0.5 s), [0.5, 1 s): the spike at 1 s falls after them
    assert first[0, 3] == 1 and first[0, 5] == 1 and first[1, 699] == 1 and first.sum() == 3
    assert split.x_test[0, 1, 11] == 2
    narrow = data.load_dataset("shd", tmp_path, time_bins=2, downsample=2)
    assert narrow.x_train.shape == (2, 2, 350) and narrow.x_train[0, 1, 349] == 1
    assert narrow.x_train[0, 0, 1] == 1 and narrow.x_train[0, 0, 2] == 1
    assert narrow.x_train[1].sum() == split.x_train[1].sum()


def test_shd_errors(tmp_path: Path) -> None:
    import h5py

    with pytest.raises(SpikeforgeError, match=r"shd: .*shd_train.h5 is missing; expected tonic's SHD layout"):
        data.load_dataset("shd", tmp_path)
    dataset_files.write_shd(tmp_path, [([0.1], [1], 1)], [([0.1], [1], 1)])
    path = tmp_path / "SHD" / "shd_test.h5"
    with h5py.File(path, "r+") as handle:
        del handle["labels"]
        handle["labels"] = np.array([25], np.uint16)
    with pytest.raises(SpikeforgeError, match=f"shd: {path} is not a valid SHD file: labels must be integers in 0..19"):
        data.load_dataset("shd", tmp_path)
    path.write_bytes(b"not hdf5")
    with pytest.raises(SpikeforgeError, match="not a readable HDF5 file"):
        data.load_dataset("shd", tmp_path)


# --- the frames encoder ---------------------------------------------------------------------

def test_frames_encoder_puts_time_first() -> None:
    x = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(2, 3, 4)  # [B, T, channels]
    out = encoders.frames(x, 3)
    assert out.shape == (3, 2, 4) and torch.equal(out[1, 0], x[0, 1])
    assert encoders.frames(x.to(torch.int16), 3).dtype == torch.get_default_dtype()
    with pytest.raises(SpikeforgeError, match=r"the data holds 3 time bins per sample but the task runs 5 steps"):
        encoders.frames(x, 5)
    with pytest.raises(SpikeforgeError, match="reads sequences"):
        encoders.frames(x[:, 0], 3)


def test_frames_task_step_shape_and_an_rnn_on_shd_frames() -> None:
    task = Task(6, "frames")
    assert task.step_shape((6, 700)) == (700,) and task.step_shape((6, 2, 17, 17)) == (2, 17, 17)
    with pytest.raises(SpikeforgeError, match=r"--time-bins 6\) or run --timesteps 4"):
        task.step_shape((4, 700))
    with pytest.raises(SpikeforgeError, match="sequences"):
        task.step_shape((700,))
    model = build_model("rnn", task.step_shape((6, 350)), 20)
    task = Task.for_model(model, 6, "frames")
    out = model(task.encode(torch.rand(3, 6, 350)))
    assert out.shape[:2] == (6, 3) and task.predict(out).shape == (3,)


def test_time_bins_default_to_the_task_steps_for_the_frames_encoder() -> None:
    assert data.time_bins_for("shd", None, "frames", 12) == 12
    assert data.time_bins_for("shd", 7, "frames", 12) == 7
    assert data.time_bins_for("cifar10", None, "frames", 12) is None
    assert data.time_bins_for("shd", None, "direct", 12) is None


def test_tiny_datasets_of_every_format_load(tmp_path: Path) -> None:
    for name in dataset_files.TINY_DATASETS:
        folder = dataset_files.write_tiny_dataset(name, tmp_path / name, samples_per_class=2, classes=3)
        options = {"time_bins": 3} if name in data.EVENT_DATASETS else {}
        split = data.load_dataset(name, folder, **options, **({"image_size": 16} if name == "imagefolder" else {}))
        assert len(split.y_train) == 6 and len(split.y_test) == 3, name
        assert sorted(set(split.y_train.tolist())) == [0, 1, 2], name
    with pytest.raises(SpikeforgeError, match="no tiny-file writer for 'digits'"):
        dataset_files.write_tiny_dataset("digits", tmp_path)


def test_write_idx_matches_the_reader(tmp_path: Path) -> None:
    array = np.arange(24, dtype=np.int32).reshape(2, 3, 4)
    path = dataset_files.write_idx(tmp_path / "x.idx", array)
    assert path.read_bytes()[:4] == bytes([0, 0, 0x0C, 3]) and path.read_bytes()[4:8] == struct.pack(">I", 2)
    np.testing.assert_array_equal(data.read_idx(path), array)


def test_no_reader_touches_the_network(tmp_path: Path) -> None:
    """Present or missing files, nothing opens a socket or calls tonic's downloaders."""
    import socket

    for name in ("nmnist", "dvs-gesture", "shd", "cifar10", "imagefolder"):
        dataset_files.write_tiny_dataset(name, tmp_path / "full" / name, samples_per_class=3, classes=2)
    refuse = mock.Mock(side_effect=AssertionError("network access"))
    with mock.patch.object(socket, "socket", refuse), \
            mock.patch("tonic.download_utils.download_url", refuse), \
            mock.patch("tonic.download_utils.download_and_extract_archive", refuse), \
            mock.patch("tonic.dataset.Dataset.download", refuse):
        for name in ("nmnist", "dvs-gesture", "shd", "cifar10", "imagefolder"):
            options = {"time_bins": 2} if name in data.EVENT_DATASETS else {}
            assert len(data.load_dataset(name, tmp_path / "full" / name, **options).y_test) == 4  # ceil(3 / 2) x 2
            (tmp_path / "empty" / name).mkdir(parents=True)
            with pytest.raises(SpikeforgeError, match="expected"):
                data.load_dataset(name, tmp_path / "empty" / name)
    refuse.assert_not_called()
