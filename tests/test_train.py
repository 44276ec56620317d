"""Training determinism and checkpoint handling."""

import dataclasses
import os

import numpy as np
import pytest
import torch

from systolic.host.nn.checkpoint import (
    CheckpointError,
    Mlp,
    load_checkpoint,
    save_checkpoint,
    weights_sha256,
)
from systolic.host.nn.data import load_mnist
from systolic.host.nn.train import train


@pytest.fixture(scope="module")
def small_data():
    d = load_mnist()
    return dataclasses.replace(
        d,
        train_images=d.train_images[:600],
        train_labels=d.train_labels[:600],
        test_images=d.test_images[:200],
        test_labels=d.test_labels[:200],
    )


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
    assert meta2 == {**meta, "weights_sha256": weights_sha256(model.state_dict())}
    assert "weights_sha256" not in meta  # the caller's dict is left alone
    x = torch.rand(3, 784)
    assert torch.equal(model(x), again(x))
    with pytest.raises(
        CheckpointError,
        match=r"architecture \[784, 16, 10\] does not match "
        r"the expected \[784, 128, 10\]",
    ):
        load_checkpoint(str(path), sizes=(784, 128, 10))
    bad = tmp_path / "bad.pt"
    bad.write_bytes(path.read_bytes()[:300])
    with pytest.raises(CheckpointError, match="bad.pt: not a readable checkpoint"):
        load_checkpoint(str(bad))
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(str(tmp_path / "none.pt"))
    state = {"net.0.weight": torch.zeros(2, 2)}
    torch.save(
        {
            "format": "systolic-mnist-mlp",
            "state_dict": state,
            "meta": {"sizes": [784, 16, 10], "weights_sha256": weights_sha256(state)},
        },
        tmp_path / "mis.pt",
    )
    with pytest.raises(CheckpointError, match="weights do not match architecture"):
        load_checkpoint(str(tmp_path / "mis.pt"))


def test_committed_checkpoint_loads():
    model, meta = load_checkpoint("models/mlp.pt")
    assert meta["sizes"] == [784, 128, 10] and 0.9 < meta["test_accuracy"] <= 1
    assert np.isfinite(model.net[0].weight.detach().numpy()).all()


def test_weights_hash_covers_names_values_and_order():
    a = Mlp((6, 4, 3)).state_dict()
    h = weights_sha256(a)
    assert h == weights_sha256(dict(reversed(list(a.items()))))  # sorted by name
    b = {k: v.clone() for k, v in a.items()}
    b["net.2.bias"][1] = torch.nextafter(b["net.2.bias"][1], torch.tensor(1e9))
    assert weights_sha256(b) != h
    renamed = {k.replace("net.2", "net.3"): v for k, v in a.items()}
    assert weights_sha256(renamed) != h


def test_flipped_byte_in_the_committed_checkpoint_is_refused(tmp_path):
    raw = bytearray(open("models/mlp.pt", "rb").read())
    raw[len(raw) // 2] ^= 0x10  # inside the first layer's weights
    (tmp_path / "flipped.pt").write_bytes(bytes(raw))
    with pytest.raises(
        CheckpointError,
        match=r"flipped.pt: weights do not match their "
        r"recorded hash",
    ):
        load_checkpoint(str(tmp_path / "flipped.pt"))


def test_checkpoint_without_a_hash_is_refused(tmp_path):
    model = Mlp((784, 16, 10))
    torch.save(
        {
            "format": "systolic-mnist-mlp",
            "state_dict": model.state_dict(),
            "meta": {"sizes": [784, 16, 10]},
        },
        tmp_path / "old.pt",
    )
    with pytest.raises(CheckpointError, match=r"old.pt: no recorded weights hash"):
        load_checkpoint(str(tmp_path / "old.pt"))


@pytest.mark.parametrize("sizes", [[], [784], [784, 0, 10], "784-10", [784, 16.5, 10]])
def test_checkpoint_with_bad_sizes_is_refused(tmp_path, sizes):
    torch.save(
        {"format": "systolic-mnist-mlp", "state_dict": {}, "meta": {"sizes": sizes}},
        tmp_path / "s.pt",
    )
    with pytest.raises(
        CheckpointError,
        match=r"s.pt: metadata 'sizes' must list at least two "
        r"positive layer widths",
    ):
        load_checkpoint(str(tmp_path / "s.pt"))


@pytest.mark.parametrize(
    "args, message",
    [
        (["--epochs", "0"], "--epochs must be positive, not 0"),
        (["--batch-size", "-1"], "--batch-size must be positive, not -1"),
        (["--lr", "nan"], "--lr must be a positive finite number, not nan"),
        (["--hidden", "0"], "--hidden sizes must be positive, not [0]"),
    ],
)
def test_cli_refuses_bad_options(tmp_path, capsys, args, message):
    from systolic.host.cli.train import main

    assert main([*args, "--out", str(tmp_path / "m.pt")]) == 2
    assert capsys.readouterr().err == f"error: {message}\n"
    assert not list(tmp_path.iterdir())


def test_cli_checks_the_output_before_training(tmp_path, capsys):
    from systolic.host.cli.train import main

    (tmp_path / "file").write_text("")
    assert main(["--out", str(tmp_path / "file" / "m.pt")]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith(f"error: --out {tmp_path}/file/m.pt: cannot create a directory")
        and err.count("\n") == 1
    )


def test_cli_leaves_the_checked_in_checkpoint_alone(tmp_path, monkeypatch, capsys):
    """Without --out, training writes build/models/<model>.pt under the working directory,
    never the committed models/<model>.pt."""
    import hashlib

    from systolic.host.cli.train import main
    from systolic.host.nn.checkpoint import DEFAULT_CHECKPOINTS

    committed = os.path.abspath(DEFAULT_CHECKPOINTS["mlp"])
    before = hashlib.sha256(open(committed, "rb").read()).hexdigest()
    monkeypatch.chdir(tmp_path)
    assert main(["--epochs", "1", "--hidden", "16"]) == 0
    assert (tmp_path / "build" / "models" / "mlp.pt").is_file()
    assert hashlib.sha256(open(committed, "rb").read()).hexdigest() == before
    assert "models/mlp.pt is unchanged" in capsys.readouterr().out
