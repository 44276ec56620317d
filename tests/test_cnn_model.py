"""The flagship CNN: training, checkpoint, the committed files, the CLI's --model, and
the whole network's golden logits against PyTorch's quantized graph."""

import dataclasses
import os

import numpy as np
import pytest
import torch

from systolic.host import golden
from systolic.host.nn.checkpoint import (
    DEFAULT_CHECKPOINT,
    DEFAULT_CHECKPOINTS,
    MODEL_NAMES,
    CheckpointError,
    Cnn,
    load_checkpoint,
    save_checkpoint,
    weights_sha256,
)
from systolic.host.nn.qmodel import (
    DEFAULT_QUANTIZED,
    DEFAULT_QUANTIZED_MODELS,
    QuantizedModel,
    file_sha256,
)
from systolic.host.nn.quantize import load_for_inference, report
from systolic.host.nn.train import train


@pytest.fixture(scope="module")
def small_data(mnist):
    return dataclasses.replace(
        mnist,
        train_images=mnist.train_images[:300],
        train_labels=mnist.train_labels[:300],
        test_images=mnist.test_images[:100],
        test_labels=mnist.test_labels[:100],
    )


def test_defaults_per_model_name():
    assert MODEL_NAMES[0] == "mlp" and "cnn" in MODEL_NAMES
    assert DEFAULT_CHECKPOINTS["mlp"] == DEFAULT_CHECKPOINT
    assert DEFAULT_QUANTIZED_MODELS["mlp"] == DEFAULT_QUANTIZED
    assert DEFAULT_CHECKPOINTS["cnn"] == os.path.join("models", "cnn.pt")
    assert DEFAULT_QUANTIZED_MODELS["cnn"] == os.path.join("models", "cnn.qnpz")


def test_cnn_architecture():
    model = Cnn()
    x = torch.rand(3, 784)
    assert model(x).shape == (3, 10)
    torch.testing.assert_close(model(x), model(x.reshape(3, 1, 28, 28)))
    assert [type(m).__name__ for m in model.net] == [
        "Conv2d",
        "ReLU",
        "MaxPool2d",
        "Conv2d",
        "ReLU",
        "MaxPool2d",
        "Flatten",
        "Linear",
    ]
    assert model.net[7].in_features == 784 and model.input_shape == (1, 28, 28)


def test_cnn_training_is_deterministic_and_saved(small_data, tmp_path):
    m1, meta = train(small_data, epochs=1, seed=1, model="cnn", channels=(4, 8), progress=False)
    m2, _ = train(small_data, epochs=1, seed=1, model="cnn", channels=(4, 8), progress=False)
    for (k, a), b in zip(m1.state_dict().items(), m2.state_dict().values()):
        assert torch.equal(a, b), k
    assert meta["model"] == "cnn" and meta["channels"] == [4, 8] and "sizes" not in meta
    save_checkpoint(m1, meta, str(tmp_path / "c.pt"))
    again, meta2 = load_checkpoint(str(tmp_path / "c.pt"))
    assert isinstance(again, Cnn) and again.channels == (4, 8)
    assert meta2["weights_sha256"] == weights_sha256(m1.state_dict())
    x = torch.rand(2, 784)
    assert torch.equal(m1(x), again(x))
    with pytest.raises(CheckpointError, match=r"c.pt: a CNN checkpoint, expected an MLP"):
        load_checkpoint(str(tmp_path / "c.pt"), sizes=(784, 16, 10))
    with pytest.raises(ValueError, match="model must be one of mlp, cnn, not 'rnn'"):
        train(small_data, epochs=1, model="rnn", progress=False)


@pytest.mark.parametrize("channels", [[8], [8, 0], "8-16", None])
def test_cnn_checkpoint_with_bad_channels_is_refused(tmp_path, channels):
    torch.save(
        {"format": "systolic-mnist-cnn", "state_dict": {}, "meta": {"channels": channels}},
        tmp_path / "c.pt",
    )
    with pytest.raises(CheckpointError, match=r"c.pt: metadata 'channels' must list two"):
        load_checkpoint(str(tmp_path / "c.pt"))


def test_committed_cnn_checkpoint():
    model, meta = load_checkpoint(DEFAULT_CHECKPOINTS["cnn"])
    assert isinstance(model, Cnn) and meta["channels"] == [8, 16]
    assert meta["test_accuracy"] >= 0.95


def test_committed_cnn_quantized_model(mnist):
    q = QuantizedModel.load(DEFAULT_QUANTIZED_MODELS["cnn"])
    assert q.input_shape == (1, 28, 28) and [ly.kind for ly in q.layers] == [
        "conv",
        "conv",
        "linear",
    ]
    assert q.shapes() == [(1, 28, 28), (8, 14, 14), (16, 7, 7), (10,)]
    assert q.meta["checkpoint"] == "cnn.pt"
    assert q.meta["checkpoint_sha256"] == file_sha256(DEFAULT_CHECKPOINTS["cnn"])
    pred = golden.run(q, q.quantize_input(mnist.test_images)).argmax(1)
    assert np.mean(pred == mnist.test_labels) == q.meta["report"]["golden_accuracy"]


def test_cnn_golden_matches_torch_on_the_test_split(mnist):
    """Quantized again from its checkpoint (it must give the committed layers), the CNN's
    golden int8 logits agree with PyTorch's quantized graph."""
    qmodel, reference, float_model = load_for_inference(DEFAULT_QUANTIZED_MODELS["cnn"], mnist)
    res = report(qmodel, reference, float_model, mnist.test_images, mnist.test_labels)
    assert res["argmax_agreement"] >= 0.999 and res["max_lsb_diff"] <= 1
    assert res["logit_mismatches"] <= res["logit_elements"] // 1000
    assert abs(res["golden_accuracy"] - res["float_accuracy"]) <= 0.005
    assert res["golden_accuracy"] >= 0.95


def test_train_cli_refuses_bad_channels(tmp_path, capsys):
    from systolic.host.cli.train import main

    assert main(["--model", "cnn", "--channels", "8", "0", "--out", str(tmp_path / "c.pt")]) == 2
    assert capsys.readouterr().err == "error: --channels must be positive, not [8, 0]\n"
    assert not list(tmp_path.iterdir())


def test_quantize_cli_resolves_a_model_name(capsys):
    from systolic.host.cli.quantize import main

    # the name stands for its checked-in checkpoint: refused before any work
    assert main(["--model", "cnn", "--out", DEFAULT_CHECKPOINTS["cnn"]]) == 2
    ckpt = DEFAULT_CHECKPOINTS["cnn"]
    want = f"error: --out {ckpt} would overwrite the checkpoint it quantizes\n"
    assert capsys.readouterr().err == want
