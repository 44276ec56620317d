"""The MNIST loaders: IDX files (raw, gzip, broken) and the embedded subset."""

import gzip
import subprocess
import sys

import numpy as np
import pytest

from systolic.host.nn.data import DataError, load_mnist, read_idx


def _idx(path, magic, dims, payload, gz=False):
    raw = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims) + payload
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(raw))
    else:
        path.write_bytes(raw)
    return path


def _write_set(d, n_train=6, n_test=4, gz=False, seed=0):
    rng = np.random.default_rng(seed)
    sets = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        img = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        lab = rng.integers(0, 10, n).astype(np.uint8)
        _idx(d / f"{split}-images-idx3-ubyte", 2051, [n, 28, 28], img.tobytes(), gz)
        _idx(d / f"{split}-labels-idx1-ubyte", 2049, [n], lab.tobytes(), gz)
        sets[split] = (img.reshape(n, 28 * 28), lab)
    return sets


@pytest.mark.parametrize("gz", [False, True])
def test_idx_round_trip(tmp_path, gz):
    sets = _write_set(tmp_path, gz=gz)
    data = load_mnist(str(tmp_path))
    np.testing.assert_array_equal(data.train_images, sets["train"][0])
    np.testing.assert_array_equal(data.test_labels, sets["t10k"][1])
    assert data.train_images.dtype == np.uint8 and data.test_labels.dtype == np.int64


def test_bad_magic(tmp_path):
    _write_set(tmp_path)
    p = tmp_path / "train-labels-idx1-ubyte"
    p.write_bytes((1234).to_bytes(4, "big") + p.read_bytes()[4:])
    with pytest.raises(
        DataError,
        match=r"train-labels-idx1-ubyte: bad magic number 1234, "
        r"expected 2049",
    ):
        load_mnist(str(tmp_path))


def test_truncated(tmp_path):
    _write_set(tmp_path)
    p = tmp_path / "t10k-images-idx3-ubyte"
    p.write_bytes(p.read_bytes()[:-10])
    with pytest.raises(
        DataError,
        match=r"t10k-images-idx3-ubyte: truncated: 3126 data bytes, "
        r"expected 3136",
    ):
        load_mnist(str(tmp_path))


def test_truncated_header(tmp_path):
    p = tmp_path / "x"
    p.write_bytes(b"\0\0\x08")
    with pytest.raises(DataError, match="truncated header"):
        read_idx(str(p), 2051)


def test_count_mismatch(tmp_path):
    _write_set(tmp_path)
    _idx(tmp_path / "train-labels-idx1-ubyte", 2049, [5], bytes(5))
    with pytest.raises(DataError, match="train split has 6 images but 5 labels"):
        load_mnist(str(tmp_path))


def test_missing_file_and_dir(tmp_path):
    _write_set(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte: no such file"):
        load_mnist(str(tmp_path))
    with pytest.raises(DataError, match="no such directory"):
        load_mnist(str(tmp_path / "nope"))


def test_bad_image_size(tmp_path):
    p = _idx(tmp_path / "img", 2051, [1, 27, 28], bytes(27 * 28))
    with pytest.raises(DataError, match="images are 27x28, expected 28x28"):
        read_idx(str(p), 2051)


def test_embedded_split_is_balanced_and_deterministic():
    a, b = load_mnist(), load_mnist()
    assert len(a.train_images) == 4000 and len(a.test_images) == 1000
    np.testing.assert_array_equal(np.bincount(a.test_labels), np.full(10, 100))
    np.testing.assert_array_equal(a.test_images, b.test_images)
    # no image is in both splits
    train = {bytes(r) for r in a.train_images}
    assert not any(bytes(r) in train for r in a.test_images[:200])


def test_cli_reports_bad_data_dir(tmp_path):
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "host",
            "train",
            "--data-dir",
            str(tmp_path),
            "--out",
            str(tmp_path / "m.pt"),
        ],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2
    assert "train-images-idx3-ubyte: no such file" in res.stderr
    assert not (tmp_path / "m.pt").exists()


@pytest.mark.parametrize(
    "split, name", [("train", "train-images-idx3-ubyte"), ("t10k", "t10k-images-idx3-ubyte")]
)
def test_file_without_images(tmp_path, split, name):
    _write_set(tmp_path, **{"n_train" if split == "train" else "n_test": 0})
    with pytest.raises(DataError, match=f"{name}: holds no images \\(its count is 0\\)"):
        load_mnist(str(tmp_path))


def test_file_without_labels(tmp_path):
    p = _idx(tmp_path / "lab", 2049, [0], b"")
    with pytest.raises(DataError, match=r"lab: holds no labels"):
        read_idx(str(p), 2049)


@pytest.mark.parametrize("command", ["train", "quantize", "infer"])
def test_clis_report_an_empty_split(tmp_path, command):
    _write_set(tmp_path, n_test=0)
    out = tmp_path / "out"
    args = {
        "train": ["--out", str(out)],
        "quantize": ["--out", str(out)],
        "infer": ["--backend", "model", "--json", str(out)],
    }[command]
    res = subprocess.run(
        [sys.executable, "-m", "systolic.host", command, "--data-dir", str(tmp_path), *args],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2
    assert res.stderr.splitlines() == [
        f"error: {tmp_path}/t10k-images-idx3-ubyte: holds no images (its count is 0)"
    ]
    assert not out.exists()
