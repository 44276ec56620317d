"""The ONNX front end: PyTorch MLPs quantized by ONNX Runtime (QDQ), against ONNX Runtime
itself, the golden model and the backends; refusals; hand-worked QLinearMatMul and
MatMulInteger graphs."""

import dataclasses
import functools
import logging
import warnings

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from systolic.host import golden
from systolic.host.backends import get_backend
from systolic.host.compile import compile_model
from systolic.host.nn.data import load_mnist
from systolic.host.nn.onnx_frontend import OnnxError, load_onnx, run_onnxruntime
from systolic.host.nn.qmodel import QuantError, random_quantized_model
from systolic.hw.config import CoreConfig

from .conftest import SIM_CONFIGS

#: name: (layer sizes, bias, activation type, per-channel weights, data)
CASES = {
    "784-37-10": ((784, 37, 10), True, "QInt8", True, "mnist"),
    "784-37-10-u8": ((784, 37, 10), True, "QUInt8", True, "mnist"),
    "20-13-7-5": ((20, 13, 7, 5), True, "QInt8", True, "random"),
    "20-13-7-5-u8-nobias": ((20, 13, 7, 5), False, "QUInt8", True, "random"),
    "33-17-9-11-6-nobias": ((33, 17, 9, 11, 6), False, "QInt8", True, "random"),
    "50-3-per-tensor": ((50, 3), True, "QUInt8", False, "random"),
}
#: test inputs: MNIST test images, or random vectors (more: they are cheap)
INPUTS = {"mnist": 1000, "random": 10000}

pytestmark = pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript")
mnist = functools.cache(load_mnist)


def _mlp(sizes, bias, seed=0, middle=None):
    """Flatten, then Linear/ReLU layers (``middle``: a module after the first ReLU)."""
    torch.manual_seed(seed)
    mods = [nn.Flatten()]
    for i, (k, n) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        mods.append(nn.Linear(k, n, bias=bias))
        if i < len(sizes) - 2:
            mods.append(nn.ReLU())
            if middle is not None and i == 0:
                mods.append(middle)
    return nn.Sequential(*mods).eval()


def _data(kind, n, in_features, seed):
    """Float inputs ``[n, in_features]``: MNIST images in [0, 1], or normal noise."""
    if kind == "mnist":
        d = mnist()
        images = d.train_images if seed == 0 else d.test_images
        return (images[:n].astype(np.float32) / 255).reshape(n, 1, 28, 28)
    return np.random.default_rng(seed).standard_normal((n, in_features)).astype(np.float32)


def _train(model, x, steps=40):
    """A few steps towards the first inputs' labels (MNIST) or random labels, so that the
    float model is not just its random initialisation."""
    labels = (
        torch.as_tensor(mnist().train_labels[: len(x)])
        if x.ndim == 4
        else torch.randint(0, model[-1].out_features, (len(x),), generator=torch.Generator())
    )
    xt = torch.as_tensor(x)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for step in range(steps):
        i = slice(step * 64 % len(x), step * 64 % len(x) + 64)
        opt.zero_grad()
        nn.functional.cross_entropy(model(xt[i]), labels[i]).backward()
        opt.step()
    return model.eval()


def _export_quantized(
    model, x_calib, path, activation="QInt8", per_channel=True, quant_format="QDQ"
):
    """torch.onnx.export (the TorchScript exporter: offline and quick), then
    onnxruntime.quantization.quantize_static in QDQ (or QOperator) format; returns the
    quantized path."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(np.array_split(x_calib, 8))

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {"x": batch}

    float_path = str(path) + ".float.onnx"
    with warnings.catch_warnings():  # the legacy exporter: offline and 30x quicker here
        warnings.filterwarnings(
            "ignore", "You are using the legacy TorchScript", DeprecationWarning
        )
        torch.onnx.export(
            model,
            (torch.as_tensor(x_calib[:2]),),
            float_path,
            dynamo=False,
            input_names=["x"],
            output_names=["logits"],
            dynamic_axes={"x": {0: "batch"}},
        )
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer's advice to pre-process, for this call
    try:
        quantize_static(
            float_path,
            str(path),
            Reader(),
            quant_format=getattr(QuantFormat, quant_format),
            per_channel=per_channel,
            activation_type=getattr(QuantType, activation),
            weight_type=QuantType.QInt8,
        )
    finally:
        root.setLevel(level)
    return str(path)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Each case, trained briefly, exported and quantized once: (path, test inputs)."""
    cache = {}

    def build(name):
        if name not in cache:
            sizes, bias, activation, per_channel, kind = CASES[name]
            x = _data(kind, 512, sizes[0], 0)
            model = _train(_mlp(sizes, bias), x)
            path = tmp_path_factory.mktemp("onnx") / f"{name}.onnx"
            _export_quantized(model, x, path, activation, per_channel)
            cache[name] = path, _data(kind, INPUTS[kind], sizes[0], 1)
        return cache[name]

    return build


def _float32_requant(qmodel, x):
    """The golden model with ONNX Runtime's float requantization: ``acc`` times the
    float32 scale ``input_scale * weight_scale / output_scale``, rounded half to even.
    Where it and the golden model disagree is where the 31-bit integer multiplier and
    the float32 product round a value near a half differently."""
    for layer in qmodel.layers:
        acc = golden.matmul_i8(x, layer.weight, layer.input_zero_point) + layer.bias
        scale = (
            np.float32(layer.input_scale)
            * layer.weight_scale.astype(np.float32)
            / np.float32(layer.output_scale)
        )
        y = np.rint(acc.astype(np.float32) * scale) + layer.output_zero_point
        x = np.clip(y, layer.output_zero_point if layer.relu else -128, 127).astype(np.int8)
    return x


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_matches_onnxruntime(name, built):
    """At most 1 LSB apart, the same argmax, and every difference one where ONNX Runtime's
    float32 requantization rounds a value near a half otherwise than the exact integer
    multiplier (a difference anywhere else would be a bug of the front end)."""
    path, x = built(name)
    q = load_onnx(path)
    assert q.sizes == list(CASES[name][0]) and all(layer.round_even for layer in q.layers)
    ort = run_onnxruntime(path, x, q)
    xq = q.quantize_float(x.reshape(len(x), -1))
    got = golden.run(q, xq)
    emulated = _float32_requant(q, xq)
    diff = np.abs(got.astype(np.int64) - ort)
    print(
        f"{name}: {len(x)} inputs, argmax agreement "
        f"{np.mean(got.argmax(1) == ort.argmax(1)):.2%}, {int((diff > 0).sum())} of "
        f"{diff.size} outputs 1 LSB apart, {int((emulated != ort).sum())} where ONNX "
        f"Runtime differs from its float32 emulation"
    )
    assert diff.max() <= 1
    np.testing.assert_array_equal(got.argmax(1), ort.argmax(1))
    np.testing.assert_array_equal(emulated[diff > 0], ort[diff > 0])


@pytest.mark.parametrize("name", ["784-37-10-u8", "20-13-7-5", "33-17-9-11-6-nobias"])
def test_model_backend_equals_golden(name, built):
    path, x = built(name)
    q = load_onnx(path)
    xq = q.quantize_float(x[:50].reshape(50, -1))
    cfg = CoreConfig()
    result = get_backend("model", cfg).run(compile_model(q, cfg, 16), xq)
    np.testing.assert_array_equal(result.outputs, golden.run(q, xq), strict=True)


@pytest.mark.rtl
def test_rtl_equals_golden(built):
    path, x = built("20-13-7-5")
    q = load_onnx(path)
    xq = q.quantize_float(x[:12])
    cfg = SIM_CONFIGS["4x4"]  # CoreConfig(rows=4, cols=4) with small buffers: quick to build
    result = get_backend("rtl", cfg).run(compile_model(q, cfg, 4), xq)
    np.testing.assert_array_equal(result.outputs, golden.run(q, xq), strict=True)


# -- refusals ----------------------------------------------------------------------------
class _Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.l1, self.l2, self.l3 = nn.Linear(20, 13), nn.Linear(13, 13), nn.Linear(13, 5)

    def forward(self, x):
        h = torch.relu(self.l1(x))
        return self.l3(torch.relu(self.l2(h)) + h)


class _MatMulAdd(nn.Module):
    """``x @ w + b``: exported as MatMul and Add, which the quantizer requantizes apart."""

    def __init__(self):
        super().__init__()
        self.w, self.b = nn.Parameter(torch.randn(20, 9)), nn.Parameter(torch.randn(9))

    def forward(self, x):
        return x @ self.w + self.b


def _quantized(tmp_path, model, name="m"):
    x = _data("random", 64, 20, 0)
    return _export_quantized(model.eval(), x, tmp_path / f"{name}.onnx")


@pytest.mark.parametrize("op", ["Softmax", "Tanh", "Sigmoid"])
def test_refuses_an_unsupported_op(op, tmp_path):
    middle = nn.Softmax(dim=1) if op == "Softmax" else getattr(nn, op)()
    path = _quantized(tmp_path, _mlp((20, 13, 7, 5), True, middle=middle))
    with pytest.raises(
        OnnxError,
        match=rf"m\.onnx: unsupported ONNX op {op} \(node "
        rf"'/3/{op}', \d+th node\): the core runs Conv/MatMul/Gemm, "
        rf"Relu, MaxPool, Flatten/Reshape with QuantizeLinear/"
        rf"DequantizeLinear, or QLinearConv/QLinearMatMul/QGemm/MatMulInteger$",
    ):
        load_onnx(path)


def test_refuses_a_residual_add(tmp_path):
    path = _quantized(tmp_path, _Residual())
    with pytest.raises(
        OnnxError,
        match=r"Add \(node '/Add', \d+th node\): takes 2 activation "
        r"inputs \(.*\), a residual connection or a merge: "
        r"the core runs a chain of layers",
    ):
        load_onnx(path)


def test_refuses_a_separately_quantized_bias_add(tmp_path):
    path = _quantized(tmp_path, _MatMulAdd())
    with pytest.raises(
        OnnxError,
        match=r"Add \(node '/Add', \d+th node\): adds to requantized "
        r"activations: the MatMul before it was quantized "
        r"apart from its bias",
    ):
        load_onnx(path)


def test_refuses_a_missing_or_foreign_file(tmp_path):
    with pytest.raises(OnnxError, match=r"nothing\.onnx: no such ONNX file"):
        load_onnx(str(tmp_path / "nothing.onnx"))
    text = tmp_path / "notes.onnx"
    text.write_text("layer sizes: 784 37 10\nthis is not a protobuf\n")
    with pytest.raises(OnnxError, match=r"notes\.onnx: not a readable ONNX model"):
        load_onnx(str(text))
    assert issubclass(OnnxError, QuantError) and issubclass(OnnxError, ValueError)


def test_refuses_a_weight_zero_point(built, tmp_path):
    path, _ = built("20-13-7-5")
    model = onnx.load(path)
    for i, t in enumerate(model.graph.initializer):
        if t.name == "1.weight_zero_point":
            zp = numpy_helper.to_array(t).copy()
            zp[4] = 3
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(zp, t.name))
    onnx.save(model, tmp_path / "zp.onnx")
    with pytest.raises(
        OnnxError,
        match=r"zp\.onnx: Gemm \(node '/1/Gemm', \d+th node\): "
        r"weight '1\.weight_quantized' zero point must be 0 "
        r"\(int8 symmetric weights\), not \[0, 3\]$",
    ):
        load_onnx(str(tmp_path / "zp.onnx"))


def test_refuses_a_dynamic_feature_dimension(built, tmp_path):
    path, _ = built("20-13-7-5")
    model = onnx.load(path)
    model.graph.input[0].type.tensor_type.shape.dim[1].dim_param = "features"
    onnx.save(model, tmp_path / "dyn.onnx")
    with pytest.raises(
        OnnxError,
        match=r"input 'x' has shape \['batch', 'features'\]: only "
        r"the batch \(first\) dimension may be dynamic",
    ):
        load_onnx(str(tmp_path / "dyn.onnx"))


# -- hand-worked graphs ------------------------------------------------------------------
#: float inputs: quantized with scale 0.25 and zero point 3 they are
#: [7, -5, 6], [-1, 11, 3], [127, -121, -121]; minus the zero point [4, -8, 3], [-4, 8, 0],
#: [124, -124, -124]. With W below, the accumulators are [-35, -22], [20, 40], [372, -1488].
X = np.array([[1, -2, 0.75], [-1, 2, 0], [31, -31, -31]], np.float32)
W = np.array([[1, -2], [3, 4], [-5, 6]], np.int8)  # [K, N], as MatMul takes it


def _model(nodes, consts, tmp_path, name):
    inits = [numpy_helper.from_array(np.asarray(v), k) for k, v in consts.items()]
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    path = str(tmp_path / f"{name}.onnx")
    onnx.save(model, path)
    return path


def test_qlinearmatmul_by_hand(tmp_path):
    """scale 0.25 * [0.5, 0.25] / 0.25 = [0.5, 0.25]: -35 * 0.5 = -17.5 and -22 * 0.25 = -5.5
    are ties and go to the even -18 and -6; plus the output zero point -2."""
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "sx", "zx"], ["xq"]),
        helper.make_node(
            "QLinearMatMul", ["xq", "sx", "zx", "w", "sw", "zw", "sy", "zy"], ["yq"], name="qmm"
        ),
        helper.make_node("DequantizeLinear", ["yq", "sy", "zy"], ["y"]),
    ]
    consts = {
        "sx": np.float32(0.25),
        "zx": np.int8(3),
        "w": W,
        "sw": np.array([0.5, 0.25], np.float32),
        "zw": np.zeros(2, np.int8),
        "sy": np.float32(0.25),
        "zy": np.int8(-2),
    }
    path = _model(nodes, consts, tmp_path, "qlinear")
    q = load_onnx(path)
    (layer,) = q.layers
    np.testing.assert_array_equal(layer.weight, W.T, strict=True)
    assert (layer.input_zero_point, layer.output_zero_point, layer.relu) == (3, -2, False)
    assert layer.mult.tolist() == [2**30, 2**30] and layer.shift.tolist() == [31, 32]
    want = np.array([[-20, -8], [8, 8], [127, -128]], np.int8)
    np.testing.assert_array_equal(golden.run(q, q.quantize_float(X)), want, strict=True)
    np.testing.assert_array_equal(run_onnxruntime(path, X, q), want, strict=True)


def test_matmulinteger_by_hand(tmp_path):
    """uint8 input zero point 131 (int8 3); acc * [0.125, 0.0625] + [1, -0.5], ReLU, then
    scale 0.25 and zero point -2: [-3.375, -1.875] -> [-2, -2]; [3.5, 2] -> [12, 6];
    [47.5, ...] -> 190, saturated to 127."""
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "sx", "zx"], ["xq"]),
        helper.make_node("MatMulInteger", ["xq", "w", "zx"], ["acc"], name="mmi"),
        helper.make_node("Cast", ["acc"], ["accf"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["accf", "scale"], ["scaled"]),
        helper.make_node("Add", ["scaled", "bias"], ["biased"]),
        helper.make_node("Relu", ["biased"], ["relu"]),
        helper.make_node("QuantizeLinear", ["relu", "sy", "zy"], ["yq"]),
        helper.make_node("DequantizeLinear", ["yq", "sy", "zy"], ["y"]),
    ]
    consts = {
        "sx": np.float32(0.25),
        "zx": np.uint8(131),
        "w": W,
        "scale": np.array([0.125, 0.0625], np.float32),
        "bias": np.array([1, -0.5], np.float32),
        "sy": np.float32(0.25),
        "zy": np.int8(-2),
    }
    path = _model(nodes, consts, tmp_path, "integer")
    q = load_onnx(path)
    (layer,) = q.layers
    assert (layer.input_zero_point, layer.relu, layer.bias.tolist()) == (3, True, [8, -8])
    assert layer.mult.tolist() == [2**30, 2**30] and layer.shift.tolist() == [31, 32]
    want = np.array([[-2, -2], [12, 6], [127, -2]], np.int8)
    np.testing.assert_array_equal(golden.run(q, q.quantize_float(X)), want, strict=True)
    np.testing.assert_array_equal(run_onnxruntime(path, X, q), want, strict=True)


def test_quantize_float_matches_quantizelinear(tmp_path):
    """Ties (k + 0.5) * scale, saturation, and random values, uint8 and int8 zero points."""
    import onnxruntime as ort

    rng = np.random.default_rng(5)
    scale = np.float32(0.0371)
    x = np.concatenate(
        [(np.arange(-300, 300) + 0.5) * scale, rng.normal(0, 3, 4000).astype(np.float32)]
    ).astype(np.float32)
    for zp in (np.uint8(140), np.int8(-7)):
        nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"])]
        graph = helper.make_graph(
            nodes,
            "q",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, len(x)])],
            [
                helper.make_tensor_value_info(
                    "y", helper.np_dtype_to_tensor_dtype(zp.dtype), [1, len(x)]
                )
            ],
            [
                numpy_helper.from_array(np.asarray(scale), "s"),
                numpy_helper.from_array(np.asarray(zp), "z"),
            ],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
        (want,) = ort.InferenceSession(
            model.SerializeToString(), providers=["CPUExecutionProvider"]
        ).run(None, {"x": x[None]})
        want = (want.astype(np.int64) - (128 if zp.dtype == np.uint8 else 0)).astype(np.int8)
        zp8 = int(zp) - (128 if zp.dtype == np.uint8 else 0)
        layer = dataclasses.replace(
            random_quantized_model((len(x), 2)).layers[0],
            input_scale=float(scale),
            input_zero_point=zp8,
        )
        q = dataclasses.replace(random_quantized_model((len(x), 2)), layers=(layer,))
        np.testing.assert_array_equal(q.quantize_float(x[None]), want, strict=True)
