"""Bring your own model: systolic.host.accelerate on a zoo of PyTorch networks.

Each network is trained briefly on the embedded MNIST subset, captured, quantized with
PT2E and compiled; the model backend must equal the integer golden model byte for byte,
and the golden model must agree with PyTorch's execution of the converted graph.
"""

import json
import re

import numpy as np
import pytest
import torch
from torch import nn

from systolic.host import accelerate
from systolic.host.api import Accelerator
from systolic.host.backends import BackendError
from systolic.host.compile import CompileError
from systolic.host.nn.qmodel import QuantError
from systolic.hw.config import CoreConfig
from tests.nets import fit


def _zoo():
    torch.manual_seed(0)
    return {
        # widths that are not multiples of any array size here
        "784-37-10": nn.Sequential(nn.Linear(784, 37), nn.ReLU(), nn.Linear(37, 10)),
        "flatten-784-29-13-10": nn.Sequential(
            nn.Flatten(),
            nn.Linear(784, 29),
            nn.ReLU(),
            nn.Linear(29, 13),
            nn.ReLU(),
            nn.Linear(13, 10),
        ),
        "no-bias": nn.Sequential(
            nn.Linear(784, 24, bias=False), nn.ReLU(), nn.Linear(24, 10, bias=False)
        ),
        "dropout": nn.Sequential(
            nn.Dropout(0.1), nn.Linear(784, 40), nn.ReLU(), nn.Dropout(0.3), nn.Linear(40, 10)
        ),
        "batchnorm": nn.Sequential(
            nn.Linear(784, 33), nn.BatchNorm1d(33), nn.ReLU(), nn.Linear(33, 10)
        ),
        "one-layer": nn.Sequential(nn.Linear(784, 10)),
        "deep-4": nn.Sequential(
            nn.Linear(784, 50),
            nn.ReLU(),
            nn.Linear(50, 30),
            nn.ReLU(),
            nn.Linear(30, 20),
            nn.ReLU(),
            nn.Linear(20, 10),
        ),
    }


class _Functional(nn.Module):
    """Not a Sequential: F.linear and F.relu in a forward, with an image-shaped input."""

    def __init__(self):
        super().__init__()
        self.w1 = nn.Parameter(torch.randn(21, 784) * 0.05)
        self.b1 = nn.Parameter(torch.zeros(21))
        self.out = nn.Linear(21, 10)

    def forward(self, x):
        h = nn.functional.relu(nn.functional.linear(x.flatten(1), self.w1, self.b1))
        return self.out(h)


@pytest.fixture(scope="module")
def images(mnist):
    x = torch.from_numpy(mnist.test_images[:200].astype(np.float32) / 255)
    return x, mnist.test_labels[:200]


@pytest.mark.parametrize("name", list(_zoo()) + ["functional"])
def test_zoo_bit_exact_and_agrees_with_pytorch(mnist, images, name):
    model = _Functional() if name == "functional" else _zoo()[name]
    model = fit(model, mnist, steps=100)
    calib = torch.from_numpy(mnist.train_images[:500].astype(np.float32) / 255)
    x, labels = images
    if name == "functional":
        calib, x = calib.reshape(-1, 1, 28, 28), x.reshape(-1, 1, 28, 28)
    acc = accelerate(model, calib, config=CoreConfig(rows=4, cols=4))
    pred = acc.predict(x)
    np.testing.assert_array_equal(pred.outputs, acc.golden(x), strict=True)
    assert pred.cycles == pred.predicted_cycles
    theirs = acc.reference.int8(x.reshape(len(x), -1))
    diff = np.abs(pred.outputs.astype(int) - theirs.astype(int))
    # one LSB where acc * scale lies within float32 rounding of a half; a difference in
    # a hidden layer can add one more at the output
    assert diff.max() <= (1 if len(acc.qmodel.layers) == 1 else 2)
    assert np.mean(pred.labels == theirs.argmax(1)) >= 0.99
    with torch.no_grad():
        float_pred = model.eval()(x).argmax(1).numpy()
    assert abs(np.mean(pred.labels == labels) - np.mean(float_pred == labels)) <= 0.03


class _Image(nn.Module):
    """A CNN over ``[N, 784]`` inputs, reshaped to images first (as models/cnn.pt)."""

    def __init__(self, *layers):
        super().__init__()
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x.reshape(-1, 1, 28, 28))


def _cnns():
    torch.manual_seed(0)
    return {
        "conv-bn-stride2": _Image(
            nn.Conv2d(1, 6, 3, padding=1),
            nn.BatchNorm2d(6),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 10, 3, stride=2),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(10 * 6 * 6, 10),
        ),
        "conv5-pool3-two-linears": _Image(
            nn.Conv2d(1, 5, 5, bias=False),
            nn.MaxPool2d(3, 2),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(5 * 11 * 11, 24),
            nn.ReLU(),
            nn.Linear(24, 10),
        ),
    }


@pytest.mark.parametrize("name", list(_cnns()))
def test_cnn_zoo_bit_exact_and_agrees_with_pytorch(tmp_path, mnist, images, name):
    model = fit(_cnns()[name], mnist, steps=60)
    calib = torch.from_numpy(mnist.train_images[:200].astype(np.float32) / 255)
    x, labels = images
    acc = accelerate(model, calib, config=CoreConfig(rows=8, cols=4))
    assert acc.qmodel.input_shape == (1, 28, 28)
    pred = acc.predict(x[:60])
    np.testing.assert_array_equal(pred.outputs, acc.golden(x[:60]), strict=True)
    assert pred.cycles == pred.predicted_cycles
    theirs = acc.reference.int8(x[:60])
    assert np.abs(pred.outputs.astype(int) - theirs.astype(int)).max() <= 2
    assert np.mean(pred.labels == theirs.argmax(1)) >= 0.98
    acc.save(str(tmp_path / "cnn.qnpz"))  # the input shape travels with the network
    again = Accelerator.load(str(tmp_path / "cnn.qnpz"))
    np.testing.assert_array_equal(again.predict(x[:8]).outputs, pred.outputs[:8], strict=True)


@pytest.mark.rtl
def test_a_sequential_through_the_rtl(mnist, images):
    model = fit(
        nn.Sequential(nn.Flatten(), nn.Linear(784, 19), nn.ReLU(), nn.Linear(19, 10)),
        mnist,
        steps=100,
    )
    calib = torch.from_numpy(mnist.train_images[:300].astype(np.float32) / 255)
    acc = accelerate(
        model,
        calib,
        config=CoreConfig(rows=4, cols=4, act_kib=16, weight_kib=16, acc_kib=8),
        batch=8,
    )
    x = images[0][:24]
    rtl = acc.predict(x, backend="rtl")
    np.testing.assert_array_equal(rtl.outputs, acc.golden(x), strict=True)
    assert rtl.cycles == rtl.predicted_cycles == acc.predict(x).cycles


def test_save_and_load(tmp_path, mnist, images):
    model = nn.Sequential(nn.Linear(784, 12), nn.ReLU(), nn.Linear(12, 10))
    calib = torch.from_numpy(mnist.train_images[:100].astype(np.float32) / 255)
    acc = accelerate(model, calib, config=CoreConfig(rows=4, cols=8), batch=16)
    acc.save(str(tmp_path / "net.qnpz"))
    again = Accelerator.load(str(tmp_path / "net.qnpz"))
    assert again.config == acc.config and again.batch == 16
    np.testing.assert_array_equal(
        again.program.beats(acc.quantize(images[0])),
        acc.program.beats(acc.quantize(images[0])),
        strict=True,
    )
    np.testing.assert_array_equal(
        again.predict(images[0]).outputs, acc.predict(images[0]).outputs, strict=True
    )


def test_report(mnist):
    model = nn.Sequential(nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10))
    calib = torch.from_numpy(mnist.train_images[:100].astype(np.float32) / 255)
    acc = accelerate(model, calib)
    rep = acc.report(images=128, clock_mhz=50.0)
    assert rep["images"] == 128 and rep["batch"] == 64 and rep["clock_mhz"] == 50.0
    assert rep["useful_macs"] == 128 * (784 * 64 + 64 * 10)
    assert 0 < rep["utilization"] <= rep["busy_utilization"] <= 1
    assert rep["latency_us_at_clock"] == pytest.approx(rep["cycles"] / 128 / 50.0)
    assert rep["onchip_bytes"]["total"] == sum(
        v for k, v in rep["onchip_bytes"].items() if k != "total"
    )


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 7), nn.ReLU(), nn.Linear(7, 3))
    return accelerate(model, torch.rand(50, 20))


@pytest.mark.parametrize(
    "x, error, message",
    [
        (np.zeros((4, 20), np.uint8), ValueError, "inputs must be floating point"),
        (torch.zeros(4, 21), ValueError, r"inputs must be \[N, \.\.\.\] with 20 values each"),
        (torch.zeros(20), ValueError, r"inputs must be \[N, \.\.\.\] with 20 values each"),
    ],
)
def test_bad_inputs_are_refused(small, x, error, message):
    with pytest.raises(error, match=message):
        small.predict(x)


def test_bad_arguments_are_refused(small):
    with pytest.raises(BackendError, match="unknown backend 'fpga'"):
        small.predict(torch.zeros(2, 20), backend="fpga")
    with pytest.raises(BackendError, match="the model backend takes no options; not gap"):
        small.predict(torch.zeros(2, 20), gap=0.5)
    model = nn.Sequential(nn.Linear(20, 3))
    with pytest.raises(QuantError, match="calibration inputs are needed"):
        accelerate(model)
    with pytest.raises(
        QuantError,
        match=re.escape("calibration must be floating-point inputs [N >= 1, ...], not torch.int64"),
    ):
        accelerate(model, torch.zeros(4, 20, dtype=torch.int64))
    with pytest.raises(QuantError, match="pass no calibration data"):
        accelerate("net.onnx", torch.zeros(4, 20))
    with pytest.raises(CompileError, match="config must be a CoreConfig, not dict"):
        accelerate(model, torch.zeros(4, 20), config={"rows": 4})
    with pytest.raises(QuantError, match=r"unsupported layer GELU at 1 \(aten.gelu"):
        accelerate(nn.Sequential(nn.Linear(20, 5), nn.GELU()), torch.rand(4, 20))


# -- ONNX ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def onnx_mlp(tmp_path_factory):
    """A 784-37-10 MLP on image-shaped input, trained briefly, exported and quantized by
    ONNX Runtime (QDQ, per-channel weights)."""
    from tests.test_onnx_frontend import _data, _export_quantized, _mlp, _train

    x = _data("mnist", 512, 784, 0)
    model = _train(_mlp((784, 37, 10), True), x)
    return _export_quantized(model, x, tmp_path_factory.mktemp("onnx") / "mlp.onnx")


def test_an_onnx_file_through_the_api(onnx_mlp, images, tmp_path):
    acc = accelerate(onnx_mlp, config=CoreConfig(rows=4, cols=4))
    x = images[0].reshape(-1, 1, 28, 28)
    pred = acc.predict(x)
    np.testing.assert_array_equal(pred.outputs, acc.golden(x), strict=True)
    theirs = acc.reference.int8(x)
    assert np.abs(pred.outputs.astype(int) - theirs.astype(int)).max() <= 1
    assert np.mean(pred.labels == theirs.argmax(1)) == 1.0
    # saved and loaded, it still quantizes its inputs as ONNX Runtime does
    acc.save(str(tmp_path / "onnx.qnpz"))
    again = Accelerator.load(str(tmp_path / "onnx.qnpz"))
    edge = np.full((4, 1, 28, 28), 0.5 * acc.qmodel.layers[0].input_scale, np.float32)
    np.testing.assert_array_equal(again.quantize(edge), acc.quantize(edge), strict=True)
    np.testing.assert_array_equal(again.predict(x).outputs, pred.outputs, strict=True)


@pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript")
def test_infer_cli_takes_an_onnx_file(onnx_mlp, tmp_path):
    from systolic.host.cli.infer import main

    out = tmp_path / "r.json"
    assert (
        main(["--backend", "model", "--model", onnx_mlp, "--limit", "100", "--json", str(out)]) == 0
    )
    r = json.loads(out.read_text())
    assert r["mismatches"] == 0 and r["float_accuracy"] is None
    assert (
        r["argmax_agreement"] == 1.0 and r["onnxruntime_int8_accuracy"] > 0.7
    )  # 40 steps of training
