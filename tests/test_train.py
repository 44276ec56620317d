"""Training determinism and checkpoint handling."""

import dataclasses

import numpy as np
import pytest
import torch

from host.data import load_mnist
from host.train import CheckpointError, load_checkpoint, save_checkpoint, train


@pytest.fixture(scope="module")
def small_data():
    d = load_mnist()
    return dataclasses.replace(d, train_images=d.train_images[:600],
                               train_labels=d.train_labels[:600],
                               test_images=d.test_images[:200], test_labels=d.test_labels[:200])


def test_training_is_deterministic(small_data):
    m1, meta1 = train(small_data, (32,), epochs=2, seed=3, progress=False)
    m2, _ = train(small_data, (32,), epochs=2, seed=3, progress=False)
    m3, _ = train(small_data, (32,), epochs=2, seed=4, progress=False)
    for (k, a), b in zip(m1.state_dict().items(), m2.state_dict().values()):
        assert torch.equal(a, b), k
    assert not torch.equal(m1.net[0].weight, m3.net[0].weight)
    assert meta1["sizes"] == [784, 32, 10] and meta1["test_accuracy"] > 0.5


def test_deeper_network(small_data):
    model, meta = train(small_data, (48, 24), epochs=1, seed=0, progress=False)
    assert meta["sizes"] == [784, 48, 24, 10] and len(model.linears()) == 3


def test_checkpoint_round_trip_and_errors(small_data, tmp_path):
    model, meta = train(small_data, (16,), epochs=1, seed=0, progress=False)
    path = tmp_path / "m.pt"
    save_checkpoint(model, meta, str(path))
    again, meta2 = load_checkpoint(str(path), sizes=(784, 16, 10))
    assert meta2 == meta
    x = torch.rand(3, 784)
    assert torch.equal(model(x), again(x))
    with pytest.raises(CheckpointError, match=r"architecture \[784, 16, 10\] does not match "
                                              r"the expected \[784, 128, 10\]"):
        load_checkpoint(str(path), sizes=(784, 128, 10))
    bad = tmp_path / "bad.pt"
    bad.write_bytes(path.read_bytes()[:300])
    with pytest.raises(CheckpointError, match="bad.pt: not a readable checkpoint"):
        load_checkpoint(str(bad))
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(str(tmp_path / "none.pt"))
    torch.save({"format": "systolic-mnist-mlp", "meta": {"sizes": [784, 16, 10]},
                "state_dict": {"net.0.weight": torch.zeros(2, 2)}}, tmp_path / "mis.pt")
    with pytest.raises(CheckpointError, match="weights do not match architecture"):
        load_checkpoint(str(tmp_path / "mis.pt"))


def test_committed_checkpoint_loads():
    model, meta = load_checkpoint("models/mlp.pt")
    assert meta["sizes"] == [784, 128, 10] and 0.9 < meta["test_accuracy"] <= 1
    assert np.isfinite(model.net[0].weight.detach().numpy()).all()
