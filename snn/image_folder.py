"""An ImageNet-style image folder: ``<data_dir>/train/<class>/*.JPEG`` and ``<data_dir>/val/<class>/...``.

The classes are the sorted folder names under ``train`` (``val`` must hold the same set);
label ``i`` is the ``i``-th of them. Files ending in ``.jpeg``, ``.jpg`` or ``.png`` (any case)
are read; other files are ignored. Every image goes through the usual evaluation transform:
converted to RGB, its shorter side resized to ``int(image_size * 256 / 224)`` (bilinear), then
the centre ``image_size x image_size`` cropped; the result is float32 ``[N, 3, S, S]`` in [0, 1].
Normalisation (ImageNet's channel mean and standard deviation) stays with the model or encoder,
as for the other datasets.

Decoding and resizing use Pillow, which matplotlib already brings, and not
``torchvision.transforms``: a torchvision wheel is built for one torch build (with another it
fails to import, as it does against this project's pinned CPU torch), so it would be one more
package to hold in step with torch. The arithmetic follows torchvision's ``Resize`` (the
longer side ``int(size * long / short)``) and ``CenterCrop`` (offsets ``round((H - S) / 2)``),
which on PIL images also calls Pillow's bilinear resize.

Everything is loaded into memory; a folder that would need more than
:data:`snn.splits.MAX_IN_MEMORY_GIB` is refused before decoding, naming ``--image-size``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from snn.errors import SpikeforgeError
from snn.splits import MAX_IN_MEMORY_GIB, DatasetSplit, check_memory

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")
SPLITS = ("train", "val")
DEFAULT_IMAGE_SIZE = 224
LAYOUT = ("expected <data-dir>/train/<class>/*.JPEG|jpg|png and <data-dir>/val/<class>/... "
          "(the same class folders in both)")


def resize_size(image_size: int) -> int:
    """The shorter side before the centre crop: ``int(image_size * 256 / 224)`` (256 for 224)."""
    return int(image_size * 256 / 224)


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def scan_image_folder(data_dir: str | os.PathLike) -> tuple[tuple[str, ...], dict[str, list[tuple[Path, int]]]]:
    """``(classes, {"train": [(path, label), ...], "val": [...]})``, checked against the layout."""
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise SpikeforgeError(f"imagefolder: data folder {root} does not exist; {LAYOUT}")
    found: dict[str, dict[str, Path]] = {}
    for split in SPLITS:
        folder = root / split
        if not folder.is_dir():
            raise SpikeforgeError(f"imagefolder: {folder} is missing; {LAYOUT}")
        found[split] = {p.name: p for p in folder.iterdir() if p.is_dir()}
        if not found[split]:
            raise SpikeforgeError(f"imagefolder: {folder} holds no class folders; {LAYOUT}")
    classes = tuple(sorted(found["train"]))
    if set(found["val"]) != set(classes):
        only_train = sorted(set(classes) - set(found["val"]))
        only_val = sorted(set(found["val"]) - set(classes))
        raise SpikeforgeError(f"imagefolder: {root / 'train'} and {root / 'val'} hold different class folders "
                              f"(only in train: {', '.join(only_train) or '-'}; only in val: "
                              f"{', '.join(only_val) or '-'}); {LAYOUT}")
    files: dict[str, list[tuple[Path, int]]] = {}
    for split in SPLITS:
        files[split] = []
        for label, name in enumerate(classes):
            images = _images(found[split][name])
            if split == "train" and not images:
                raise SpikeforgeError(f"imagefolder: {found[split][name]} holds no .JPEG, .jpg or .png image; "
                                      f"every class needs training images; {LAYOUT}")
            files[split] += [(path, label) for path in images]
        if not files[split]:
            raise SpikeforgeError(f"imagefolder: {root / split} holds no .JPEG, .jpg or .png image; {LAYOUT}")
    return classes, files


def load_image(path: Path, image_size: int) -> np.ndarray:
    """One image as uint8 ``[3, S, S]``: RGB, shorter side resized to :func:`resize_size`, centre crop."""
    from PIL import Image

    try:
        with Image.open(path) as opened:
            opened.load()
            image = opened.convert("RGB")
    except (OSError, SyntaxError, ValueError) as exc:  # UnidentifiedImageError, truncated data, broken chunks
        raise SpikeforgeError(f"imagefolder: {path} is not a readable image ({exc}); replace or remove it") from None
    except Image.DecompressionBombError as exc:
        raise SpikeforgeError(f"imagefolder: {path} is too large to decode safely ({exc}); remove it") from None
    width, height = image.size
    short = resize_size(image_size)
    if width <= height:
        size = (short, int(short * height / width))
    else:
        size = (int(short * width / height), short)
    if size != image.size:
        image = image.resize(size, Image.BILINEAR)
    width, height = image.size
    top, left = int(round((height - image_size) / 2.0)), int(round((width - image_size) / 2.0))
    image = image.crop((left, top, left + image_size, top + image_size))
    return np.asarray(image, dtype=np.uint8).transpose(2, 0, 1)


def load_image_folder(data_dir: str | os.PathLike, image_size: int = DEFAULT_IMAGE_SIZE,
                      max_gib: float = MAX_IN_MEMORY_GIB) -> DatasetSplit:
    """The ``train`` and ``val`` folders of ``data_dir`` as a split (val is the test split).

    ``image_size`` is the side of the centre crop (default 224). Refused before anything is
    decoded when the images would need more than ``max_gib`` GiB as float32.
    """
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise SpikeforgeError(f"image size must be a positive integer, got {image_size!r}; e.g. --image-size 224")
    classes, files = scan_image_folder(data_dir)
    total = sum(len(v) for v in files.values())
    check_memory("imagefolder", total, (3, image_size, image_size), "--image-size (image_size=)", max_gib)

    def part(items: list[tuple[Path, int]]) -> tuple[torch.Tensor, torch.Tensor]:
        images = np.empty((len(items), 3, image_size, image_size), dtype=np.float32)
        for i, (path, _) in enumerate(items):
            images[i] = load_image(path, image_size)
        images /= 255.0
        return torch.from_numpy(images), torch.tensor([label for _, label in items], dtype=torch.int64)

    x_train, y_train = part(files["train"])
    x_test, y_test = part(files["val"])
    return DatasetSplit(x_train, y_train, x_test, y_test, name="imagefolder", num_classes=len(classes),
                        classes=classes)
