"""Quantizer properties, the saved quantized model, and the report against PyTorch."""

import dataclasses
import json
import logging
import re
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from systolic.host import golden
from systolic.host.backends import get_backend
from systolic.host.compile import compile_model
from systolic.host.nn.checkpoint import CheckpointError, Mlp, save_checkpoint
from systolic.host.nn.qmodel import (
    DEFAULT_QUANTIZED,
    QuantError,
    QuantizedModel,
    file_sha256,
    is_quantized_model_file,
    multiplier_shift,
    random_quantized_model,
)
from systolic.host.nn.quantize import quantize_checkpoint, quantize_model, report, torch_int8_logits
from systolic.hw.config import CoreConfig
from tests.nets import fit


@pytest.fixture(scope="module")
def quantized(mnist):
    data = mnist
    qmodel, tq, fm = quantize_checkpoint("models/mlp.pt", data)
    return data, qmodel, tq, fm


def test_multiplier_shift_precision():
    scales = np.array([1e-4, 3.3e-3, 0.25, 0.9999, 1.5, 7e-12])
    mult, shift = multiplier_shift(scales)
    assert np.all(mult < 1 << 31) and np.all((shift >= 0) & (shift <= 63))
    assert np.all(mult[:5] >= 1 << 30)
    np.testing.assert_allclose(mult[:5] / 2.0 ** shift[:5], scales[:5], rtol=1e-9)
    np.testing.assert_allclose(mult[5] / 2.0 ** shift[5], scales[5], rtol=1e-6)  # shift capped
    with pytest.raises(ValueError, match="too large"):
        multiplier_shift(np.array([2.0**32]))


def test_weights_are_per_channel_symmetric_int8(quantized):
    _, qmodel, tq, _ = quantized
    for layer in qmodel.layers:
        assert layer.weight.dtype == np.int8 and layer.bias.dtype == np.int32
        # each channel uses its full range on one side: max |w| is 127 or 128
        assert np.all(np.abs(layer.weight.astype(int)).max(1) >= 127)
        assert layer.weight_scale.shape == (layer.out_features,)
    assert qmodel.layers[0].relu and not qmodel.layers[-1].relu
    assert qmodel.layers[1].input_zero_point == qmodel.layers[0].output_zero_point


def test_input_quantization_matches_torch(quantized):
    _, qmodel, tq, _ = quantized
    pixels = np.arange(256, dtype=np.uint8).reshape(1, 256).repeat(4, 0)
    pixels = np.tile(pixels, (1, 4))[:, :784]
    ours = qmodel.quantize_input(pixels)
    theirs = tq.quantize_input(torch.from_numpy(pixels.astype(np.float32) / 255))
    np.testing.assert_array_equal(ours, theirs, strict=True)


def test_report_meets_the_aims(quantized):
    data, qmodel, tq, fm = quantized
    res = report(qmodel, tq, fm, data.test_images, data.test_labels)
    assert abs(res["golden_accuracy"] - res["float_accuracy"]) <= 0.005
    assert res["argmax_agreement"] >= 0.999
    assert res["max_lsb_diff"] <= 1
    assert res["mismatches_at_ties"] + res["mismatches_not_at_ties"] == res["logit_mismatches"]


def test_committed_quantized_model_reproduces_its_accuracy(mnist):
    data = mnist
    qmodel = QuantizedModel.load(DEFAULT_QUANTIZED)
    pred = golden.run(qmodel, qmodel.quantize_input(data.test_images)).argmax(1)
    assert np.mean(pred == data.test_labels) == qmodel.meta["report"]["golden_accuracy"]


def test_save_load_and_corrupt_files(tmp_path):
    qm = random_quantized_model((20, 9, 4), seed=1)
    path = tmp_path / "q.qnpz"
    qm.save(str(path))
    again = QuantizedModel.load(str(path))
    x = np.random.default_rng(0).integers(-128, 128, (5, 20)).astype(np.int8)
    np.testing.assert_array_equal(golden.run(qm, x), golden.run(again, x))
    (tmp_path / "c.qnpz").write_bytes(path.read_bytes()[:200])
    with pytest.raises(QuantError, match="c.qnpz: not a readable quantized model"):
        QuantizedModel.load(str(tmp_path / "c.qnpz"))
    with pytest.raises(QuantError, match="no such quantized model"):
        QuantizedModel.load(str(tmp_path / "missing.qnpz"))
    np.savez(tmp_path / "other.npz", header=np.frombuffer(b'{"format": "x"}', np.uint8))
    with pytest.raises(QuantError, match="format 'x'"):
        QuantizedModel.load(str(tmp_path / "other.npz"))
    assert not list(tmp_path.glob("*.tmp"))


# -- which models the quantizer takes ------------------------------------------------------


def _seq(middle, first=None):
    torch.manual_seed(0)
    return nn.Sequential(first or nn.Linear(784, 16), middle, nn.Linear(16, 10))


SUPPORTED = (
    "the core runs Conv2d, MaxPool2d, Linear, ReLU, BatchNorm1d/2d after a Linear or Conv2d, "
    "Flatten and Dropout"
)


class _Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(784, 784), nn.Linear(784, 10)

    def forward(self, x):
        return self.b(x + self.a(x))


class _TwoOutputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(784, 10)

    def forward(self, x):
        y = self.a(x)
        return y, y


@pytest.mark.parametrize(
    "model, message",
    [
        (_seq(nn.GELU()), "unsupported layer GELU at 1 (aten.gelu, graph node 1)"),
        (_seq(nn.Tanh()), "unsupported layer Tanh at 1 (aten.tanh, graph node 1)"),
        (
            _seq(nn.Softmax(dim=1)),
            "unsupported layer Softmax at 1 (aten.softmax.int, graph node 1)",
        ),
        (
            _seq(nn.LayerNorm(16)),
            "unsupported layer LayerNorm at 1 (aten.layer_norm, graph node 1)",
        ),
        (_seq(nn.Sigmoid()), "unsupported layer Sigmoid at 1 (aten.sigmoid, graph node 1)"),
        (
            nn.Sequential(
                nn.Linear(784, 16),
                nn.ReLU(),
                nn.Sequential(nn.Linear(16, 8), nn.Tanh()),
                nn.Linear(8, 10),
            ),
            "unsupported layer Tanh at 2.1 (aten.tanh, graph node 3)",
        ),
        (_Residual(), "unsupported aten.add.Tensor in the model's forward (graph node 1)"),
    ],
    ids=["gelu", "tanh", "softmax", "layernorm", "sigmoid", "nested", "residual"],
)
def test_unsupported_layers_are_refused(model, message):
    images = np.zeros((4, 784), np.uint8)
    with pytest.raises(QuantError, match=re.escape(f"{message}: {SUPPORTED}")):
        quantize_model(model.eval(), images)


def test_unsupported_layer_in_an_mlp_names_its_path():
    model = Mlp((784, 16, 10))
    model.net[1] = nn.GELU()
    with pytest.raises(
        QuantError,
        match=re.escape(f"unsupported layer GELU at net.1 (aten.gelu, graph node 1): {SUPPORTED}"),
    ):
        quantize_model(model, np.zeros((4, 784), np.uint8))


_NOT_AFTER_LINEAR = "does not directly follow a Linear or Conv2d: the core applies ReLU only fused"


@pytest.mark.parametrize(
    "model, message",
    [
        (
            nn.Sequential(nn.ReLU(), nn.Linear(784, 10)),
            rf"layer ReLU at 0 \(aten.relu, graph node 0\) {_NOT_AFTER_LINEAR}",
        ),
        (
            nn.Sequential(nn.Linear(784, 16), nn.ReLU(), nn.ReLU(), nn.Linear(16, 10)),
            rf"layer ReLU at 2 \(aten.relu, graph node 2\) {_NOT_AFTER_LINEAR}",
        ),
        (
            nn.Sequential(nn.Linear(784, 16), nn.Dropout(), nn.ReLU(), nn.Linear(16, 10)),
            rf"layer ReLU at 2 \(aten.relu, graph node 2\) {_NOT_AFTER_LINEAR}",
        ),
        (
            nn.Sequential(nn.BatchNorm1d(784), nn.Linear(784, 10)),
            r"layer BatchNorm1d at 0 \(aten.batch_norm, graph node 0\) does not directly follow a "
            r"Linear or Conv2d: the core folds BatchNorm1d/2d into the layer before it",
        ),
        (
            nn.Sequential(nn.Linear(784, 16), nn.Flatten(), nn.Linear(16, 10)),
            r"layer Flatten at 1 \(aten.flatten.using_ints, graph node 1\) comes after a Linear",
        ),
        (nn.Sequential(nn.Flatten(), nn.Dropout()), "the model has no Linear or Conv2d layer"),
        (nn.Sequential(), "the model has no Linear or Conv2d layer"),
        (nn.Identity(), "the model has no Linear or Conv2d layer"),
        (
            nn.Sequential(nn.Linear(784, 16), nn.ReLU(), nn.Linear(15, 10)),
            r"torch.export cannot capture the model: a and b must have same reduction dim, but got "
            r"\[2, 16\] X \[15, 10\]",
        ),
        (
            nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(2704, 10)),
            r"torch.export cannot capture the model: Expected 3D \(unbatched\) or 4D",
        ),
        (_TwoOutputs(), "the model's output is not its last layer's"),
    ],
    ids=[
        "relu-first",
        "relu-relu",
        "relu-after-dropout",
        "batchnorm-first",
        "flatten-late",
        "no-linear",
        "empty",
        "identity",
        "widths",
        "conv2d-on-flat-images",
        "two-outputs",
    ],
)
def test_malformed_models_are_refused(model, message):
    with pytest.raises(QuantError, match=message):
        quantize_model(model.eval(), np.zeros((4, 784), np.uint8))


@pytest.mark.parametrize(
    "images, message",
    [
        (np.zeros((0, 784), np.uint8), "no calibration images"),
        (np.zeros((4, 784), np.float32), r"must be uint8 \[N, pixels\], not float32 \[4, 784\]"),
        (np.zeros(784, np.uint8), r"must be uint8 \[N, pixels\], not uint8 \[784\]"),
    ],
)
def test_bad_calibration_images_are_refused(images, message):
    with pytest.raises(QuantError, match=message):
        quantize_model(Mlp((784, 16, 10)), images)


@pytest.mark.parametrize(
    "param, value, what", [("weight", float("nan"), "weights"), ("bias", float("inf"), "bias")]
)
def test_non_finite_parameters_are_refused(param, value, what):
    model = Mlp((784, 16, 10))
    with torch.no_grad():
        getattr(model.net[2], param)[3] = value
    with pytest.raises(
        QuantError,
        match=re.escape(
            f"layer Linear at net.2 (aten.linear, graph node 2) has non-finite {what} (NaN or inf)"
        ),
    ):
        quantize_model(model, np.zeros((4, 784), np.uint8))


def _sequentials():
    torch.manual_seed(0)
    return {
        "bias": nn.Sequential(nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10)),
        "no-bias": nn.Sequential(
            nn.Linear(784, 32, bias=False), nn.ReLU(), nn.Linear(32, 10, bias=False)
        ),
        "dropout-flatten": nn.Sequential(
            nn.Flatten(),
            nn.Dropout(0.2),
            nn.Linear(784, 32),
            nn.ReLU(),
            nn.Dropout(0.2),
            nn.Linear(32, 10),
        ),
        "batchnorm": nn.Sequential(
            nn.Linear(784, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 10)
        ),
        "two-hidden-nested": nn.Sequential(
            nn.Linear(784, 32),
            nn.ReLU(),
            nn.Sequential(nn.Linear(32, 24), nn.ReLU()),
            nn.Linear(24, 10),
        ),
    }


@pytest.mark.parametrize("name", list(_sequentials()))
def test_plain_sequentials_are_bit_exact(mnist, name):
    data = mnist
    model = fit(_sequentials()[name], data)
    qmodel, tq = quantize_model(model, data.train_images[:500])
    n_linear = sum(isinstance(m, nn.Linear) for m in model.modules())
    assert len(qmodel.layers) == n_linear and all(ly.round_even for ly in qmodel.layers)
    assert [ly.relu for ly in qmodel.layers] == [True] * (n_linear - 1) + [False]
    if name == "no-bias":
        assert all(not ly.bias.any() for ly in qmodel.layers)
    images, labels = data.test_images[:300], data.test_labels[:300]
    res = report(qmodel, tq, model, images, labels)
    assert res["argmax_agreement"] >= 0.99 and res["max_lsb_diff"] <= 1
    assert res["mismatches_at_ties"] + res["mismatches_not_at_ties"] == res["logit_mismatches"]
    cfg = CoreConfig(rows=4, cols=4)
    x = qmodel.quantize_input(images[:40])
    out = get_backend("model", cfg).run(compile_model(qmodel, cfg, 8), x).outputs
    np.testing.assert_array_equal(out, golden.run(qmodel, x), strict=True)
    assert np.mean(out.argmax(1) == torch_int8_logits(tq, images[:40]).argmax(1)) >= 0.95


def test_quantizing_leaves_the_warning_filters_and_log_levels_alone():
    names = ("torchao", "torch.utils._pytree", "torch._subclasses.fake_tensor")
    before = list(warnings.filters), [logging.getLogger(n).level for n in names]
    quantize_model(Mlp((20, 6, 3)), np.zeros((4, 20), np.uint8))
    with pytest.raises(QuantError):
        quantize_model(
            nn.Sequential(nn.Linear(20, 5), nn.Linear(6, 2)), np.zeros((4, 20), np.uint8)
        )
    assert (list(warnings.filters), [logging.getLogger(n).level for n in names]) == before


# -- the checkpoint --------------------------------------------------------------------


def test_checkpoint_with_wrong_input_width(mnist, tmp_path):
    torch.manual_seed(0)
    model = Mlp((100, 16, 10))
    save_checkpoint(model, {"sizes": [100, 16, 10]}, str(tmp_path / "m100.pt"))
    with pytest.raises(
        CheckpointError,
        match=r"m100.pt: the network takes 100 inputs, "
        r"expected 784 \(28x28 MNIST images\)",
    ):
        quantize_checkpoint(str(tmp_path / "m100.pt"), mnist)


def test_checkpoint_with_nan_weights(mnist, tmp_path):
    model = Mlp((784, 16, 10))
    with torch.no_grad():
        model.net[0].weight[0, 0] = float("nan")
    save_checkpoint(model, {"sizes": [784, 16, 10]}, str(tmp_path / "nan.pt"))
    with pytest.raises(
        QuantError,
        match=re.escape(
            "nan.pt: layer Linear at net.0 (aten.linear, graph node 0) has non-finite weights "
            "(NaN or inf)"
        ),
    ):
        quantize_checkpoint(str(tmp_path / "nan.pt"), mnist)


# -- the .qnpz file ----------------------------------------------------------------------


def _rewrite(path, out, edit):
    """Copy a .qnpz with ``edit(arrays, header)`` applied, keeping its recorded hash."""
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    header = json.loads(arrays.pop("header").tobytes())
    edit(arrays, header)
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    with open(out, "wb") as f:
        np.savez(f, **arrays)


def test_round_even_is_saved_and_checked(tmp_path):
    qm = random_quantized_model((20, 9, 4), seed=1)
    qm = QuantizedModel(
        tuple(dataclasses.replace(ly, round_even=bool(i)) for i, ly in enumerate(qm.layers)),
        qm.meta,
    )
    qm.save(str(tmp_path / "q.qnpz"))
    again = QuantizedModel.load(str(tmp_path / "q.qnpz"))
    assert [ly.round_even for ly in again.layers] == [False, True]
    bad = dataclasses.replace(qm.layers[0], round_even=1)
    with pytest.raises(QuantError, match="layer 0 round_even must be a bool, not 1"):
        QuantizedModel((bad, qm.layers[1]), {}).validate()


def test_mult_may_use_all_32_bits():
    qm = random_quantized_model((20, 9, 4), seed=1)
    ly = qm.layers[0]
    ok = dataclasses.replace(ly, mult=np.full(ly.out_features, 2**32 - 1, np.int64))
    QuantizedModel((ok, qm.layers[1]), {}).validate()
    over = dataclasses.replace(ly, mult=np.full(ly.out_features, 2**32, np.int64))
    with pytest.raises(QuantError, match=r"layer 0 multiplier or shift out of range"):
        QuantizedModel((over, qm.layers[1]), {}).validate()


def test_version_1_files_are_refused(tmp_path):
    qm = random_quantized_model((20, 9, 4), seed=1)
    qm.save(str(tmp_path / "q.qnpz"))
    _rewrite(
        tmp_path / "q.qnpz", tmp_path / "v1.qnpz", lambda arrays, header: header.update(version=1)
    )
    with pytest.raises(
        QuantError,
        match=r"v1.qnpz: quantized-model format version 1 is out "
        r"of date .* run `make quantize`",
    ):
        QuantizedModel.load(str(tmp_path / "v1.qnpz"))


def _flip_weight(arrays, header):
    arrays["l0_weight"][2, 3] ^= 1


def _edit_zero_point(arrays, header):
    header["layers"][1]["output_zero_point"] += 1


def _edit_checkpoint_hash(arrays, header):
    header["meta"]["checkpoint_sha256"] = "0" * 64


@pytest.mark.parametrize("edit", [_flip_weight, _edit_zero_point, _edit_checkpoint_hash])
def test_altered_quantized_model_is_refused(tmp_path, edit):
    qm = random_quantized_model((20, 9, 4), seed=1)
    qm.save(str(tmp_path / "q.qnpz"))
    _rewrite(tmp_path / "q.qnpz", tmp_path / "bad.qnpz", edit)
    with pytest.raises(QuantError, match=r"bad.qnpz: content does not match its recorded hash"):
        QuantizedModel.load(str(tmp_path / "bad.qnpz"))


def test_quantized_model_is_recognized_by_content(tmp_path):
    qm = random_quantized_model((20, 9, 4), seed=1)
    qm.save(str(tmp_path / "q.bin"))
    assert is_quantized_model_file(str(tmp_path / "q.bin"))
    assert not is_quantized_model_file("models/mlp.pt")
    assert not is_quantized_model_file(str(tmp_path / "none"))


def test_committed_quantized_model_records_its_checkpoint():
    qmodel = QuantizedModel.load(DEFAULT_QUANTIZED)
    assert qmodel.meta["checkpoint"] == "mlp.pt"
    assert qmodel.meta["checkpoint_sha256"] == file_sha256("models/mlp.pt")
    assert all(ly.round_even for ly in qmodel.layers)


def _ulp_apart(layer, k):
    """``layer`` as quantized again on a CPU whose float kernels round the last bit of
    the observed ranges the other way (scaled by ``1 + k * 2**-24``): every scale and
    multiplier a few ulps off, a bias by one."""
    f = 1 + k * 2.0**-24
    bias = layer.bias.copy()
    bias[0] += 1
    return dataclasses.replace(
        layer,
        input_scale=layer.input_scale * f,
        output_scale=layer.output_scale * f,
        weight_scale=layer.weight_scale * f,
        mult=np.round(layer.mult * f).astype(layer.mult.dtype),
        bias=bias,
    )


@pytest.mark.parametrize(
    "change, same",
    [
        ("none", True),
        ("an ulp off (CPU kernels)", True),
        ("a scale 1e-5 off", False),
        ("a bias two off", False),
        ("a bias one off, the scales equal", False),
        ("a weight", False),
        ("a zero point", False),
    ],
)
def test_quantized_again_matches_up_to_the_float_kernels(change, same):
    """``load_for_inference``'s check that a quantized model comes from its checkpoint
    allows the last bits that the CPU's float kernels decide, and nothing more."""
    from systolic.host.nn.quantize import _same_layers

    layers = QuantizedModel.load("models/mlp.qnpz").layers
    a = layers[0]
    b = {
        "none": a,
        "an ulp off (CPU kernels)": _ulp_apart(a, 3),
        "a scale 1e-5 off": dataclasses.replace(a, output_scale=a.output_scale * (1 + 1e-5)),
        "a bias two off": dataclasses.replace(a, bias=a.bias + 2),
        "a bias one off, the scales equal": dataclasses.replace(a, bias=a.bias + 1),
        "a weight": dataclasses.replace(a, weight=a.weight ^ np.int8(1)),
        "a zero point": dataclasses.replace(a, output_zero_point=a.output_zero_point + 1),
    }[change]
    assert _same_layers(layers, (b, *layers[1:])) is same
