"""Datasets: the embedded digits split, IDX files written here byte by byte, and loaders."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from snn.data import (
    DATASETS,
    IDX_FILES,
    DatasetSplit,
    load_dataset,
    load_digits_split,
    load_idx_split,
    make_loaders,
    read_idx,
)
from snn.errors import SpikeforgeError

DIGITS_TOTAL = 1797


def idx_bytes(array: np.ndarray, code: int = 0x08) -> bytes:
    """An IDX file's bytes: magic (0, 0, type code, ndim), big-endian uint32 dims, big-endian data."""
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, array: np.ndarray, gz: bool = False) -> Path:
    raw = idx_bytes(array)
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(raw))
    else:
        path.write_bytes(raw)
    return path


def write_idx_dataset(folder: Path, gz: bool, n_train: int = 12, n_test: int = 5, h: int = 6,
                      w: int = 4) -> dict[str, np.ndarray]:
    """A tiny MNIST-like dataset (non-square images, so H and W cannot be swapped unnoticed)."""
    rng = np.random.default_rng(0)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, h, w), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, n_train, dtype=np.uint8),
        "test_images": rng.integers(0, 256, (n_test, h, w), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    arrays["train_images"][0, 0, 0] = 255  # pin the maximum so the scaling check is exact
    folder.mkdir(parents=True, exist_ok=True)
    for key, name in IDX_FILES.items():
        write_idx(folder / name, arrays[key], gz=gz)
    return arrays


@pytest.fixture(scope="module")
def digits() -> DatasetSplit:
    return load_digits_split()


# --- digits ---------------------------------------------------------------------------------

def test_digits_sizes_shapes_and_range(digits: DatasetSplit) -> None:
    n_train, n_test = len(digits.y_train), len(digits.y_test)
    assert n_train + n_test == DIGITS_TOTAL
    assert n_test == int(np.ceil(0.3 * DIGITS_TOTAL))  # scikit-learn rounds the test share up
    assert digits.x_train.shape == (n_train, 1, 8, 8) and digits.x_test.shape == (n_test, 1, 8, 8)
    assert digits.input_shape == (1, 8, 8)
    assert digits.name == "digits" and digits.num_classes == 10
    assert digits.x_train.dtype == torch.float32 and digits.y_train.dtype == torch.int64
    for x in (digits.x_train, digits.x_test):
        assert x.min() == 0.0 and x.max() == 1.0


def test_digits_split_is_stratified(digits: DatasetSplit) -> None:
    train_counts = torch.bincount(digits.y_train, minlength=10).double()
    test_counts = torch.bincount(digits.y_test, minlength=10).double()
    totals = train_counts + test_counts
    share = len(digits.y_test) / DIGITS_TOTAL
    assert (test_counts - totals * share).abs().max() <= 1.0


def test_digits_split_is_deterministic(digits: DatasetSplit) -> None:
    again = load_digits_split(seed=0)
    assert torch.equal(again.x_train, digits.x_train) and torch.equal(again.y_test, digits.y_test)
    other = load_digits_split(seed=1)
    assert not torch.equal(other.y_train, digits.y_train)


def test_digits_bad_test_fraction() -> None:
    with pytest.raises(SpikeforgeError, match=r"test fraction must lie in \(0, 1\)"):
        load_digits_split(test_fraction=1.5)


# --- IDX ------------------------------------------------------------------------------------

@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_idx_split_round_trip(tmp_path: Path, gz: bool) -> None:
    arrays = write_idx_dataset(tmp_path, gz=gz)
    split = load_idx_split(tmp_path, "fashion-mnist")
    assert split.name == "fashion-mnist" and split.num_classes == 10
    assert split.input_shape == (1, 6, 4)
    assert split.x_train.shape == (12, 1, 6, 4) and split.x_test.shape == (5, 1, 6, 4)
    assert split.x_train.dtype == torch.float32 and split.y_train.dtype == torch.int64
    assert split.x_train.max() == 1.0 and split.x_train.min() >= 0.0
    np.testing.assert_allclose(split.x_test[:, 0].numpy(), arrays["test_images"] / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(split.y_train.numpy(), arrays["train_labels"])


def test_load_dataset_reads_idx_from_data_dir(tmp_path: Path) -> None:
    arrays = write_idx_dataset(tmp_path, gz=True)
    split = load_dataset("mnist", tmp_path)
    np.testing.assert_array_equal(split.y_test.numpy(), arrays["test_labels"])


@pytest.mark.parametrize("dtype,code", [(np.int16, 0x0B), (np.int32, 0x0C), (np.float32, 0x0D), (np.float64, 0x0E)])
def test_read_idx_wider_types_are_big_endian(tmp_path: Path, dtype, code: int) -> None:
    array = np.arange(-3, 9, dtype=dtype).reshape(3, 2, 2)
    path = tmp_path / "x.idx"
    path.write_bytes(idx_bytes(array, code=code))
    read = read_idx(path)
    assert read.dtype == np.dtype(dtype) and read.flags.writeable
    np.testing.assert_array_equal(read, array)


def test_missing_folder_names_folder_and_files(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(SpikeforgeError) as info:
        load_idx_split(missing, "mnist")
    message = str(info.value)
    assert str(missing) in message and "--data-dir" in message
    assert all(name in message for name in IDX_FILES.values())


def test_missing_file_is_listed(tmp_path: Path) -> None:
    write_idx_dataset(tmp_path, gz=False)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(SpikeforgeError) as info:
        load_idx_split(tmp_path, "mnist")
    message = str(info.value)
    assert "missing t10k-labels-idx1-ubyte" in message and str(tmp_path) in message
    assert "train-images-idx3-ubyte" in message  # the full list of expected names


def test_truncated_file(tmp_path: Path) -> None:
    write_idx_dataset(tmp_path, gz=False)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(SpikeforgeError) as info:
        load_idx_split(tmp_path, "mnist")
    message = str(info.value)
    assert str(path) in message and "not a valid IDX file" in message and "truncated" in message
    assert "re-download" in message


def test_truncated_gzip(tmp_path: Path) -> None:
    write_idx_dataset(tmp_path, gz=True)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(SpikeforgeError, match="not a valid IDX file.*re-download"):
        load_idx_split(tmp_path, "mnist")


def test_bad_magic(tmp_path: Path) -> None:
    path = tmp_path / "bad"
    path.write_bytes(b"\x1f\x8b\x08\x03" + bytes(16))  # a gzip header read as plain IDX
    with pytest.raises(SpikeforgeError) as info:
        read_idx(path)
    message = str(info.value)
    assert str(path) in message and "bad magic number" in message and "re-download" in message


def test_size_mismatch_extra_bytes(tmp_path: Path) -> None:
    path = tmp_path / "extra"
    path.write_bytes(idx_bytes(np.zeros((2, 3), dtype=np.uint8)) + b"\x00")
    with pytest.raises(SpikeforgeError, match="size mismatch"):
        read_idx(path)


def test_image_label_count_mismatch(tmp_path: Path) -> None:
    write_idx_dataset(tmp_path, gz=False)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(11, dtype=np.uint8))
    with pytest.raises(SpikeforgeError, match="11 labels but .* 12 images"):
        load_idx_split(tmp_path, "mnist")


def test_unknown_dataset_lists_known_names() -> None:
    with pytest.raises(SpikeforgeError) as info:
        load_dataset("imagenet21k")
    assert "imagenet21k" in str(info.value) and all(name in str(info.value) for name in DATASETS)


def test_idx_dataset_needs_data_dir() -> None:
    with pytest.raises(SpikeforgeError, match="--data-dir"):
        load_dataset("mnist")


# --- loaders --------------------------------------------------------------------------------

def batches(loader) -> list[torch.Tensor]:
    return [y for _, y in loader]


def test_loaders_deterministic(digits: DatasetSplit) -> None:
    train_a, test_a = make_loaders(digits, batch_size=64, seed=3)
    train_b, test_b = make_loaders(digits, batch_size=64, seed=3)
    order_a = torch.cat(batches(train_a))
    assert torch.equal(order_a, torch.cat(batches(train_b)))
    assert not torch.equal(order_a, digits.y_train)  # shuffled
    assert torch.equal(torch.sort(order_a).values, torch.sort(digits.y_train).values)
    assert torch.equal(torch.cat(batches(test_a)), digits.y_test)  # test in order
    assert torch.equal(torch.cat(batches(test_b)), digits.y_test)
    other, _ = make_loaders(digits, batch_size=64, seed=4)
    assert not torch.equal(order_a, torch.cat(batches(other)))


def test_loaders_bad_batch_size(digits: DatasetSplit) -> None:
    with pytest.raises(SpikeforgeError, match="batch size"):
        make_loaders(digits, batch_size=0)
