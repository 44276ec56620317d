"""The ONNX front end on CNNs: the checked-in CNN quantized by ONNX Runtime (QDQ and
QOperator) against ONNX Runtime itself, the golden model, the model backend and the public
API; hand-built QDQ graphs of every geometry the core takes, against ONNX Runtime bit for
bit; and the refusal of every convolution and pool the core cannot run."""

import functools

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from systolic.host import accelerate, golden
from systolic.host.backends import get_backend
from systolic.host.compile import compile_model, max_batch
from systolic.host.nn.checkpoint import DEFAULT_CHECKPOINTS, load_checkpoint
from systolic.host.nn.data import load_mnist
from systolic.host.nn.onnx_frontend import OnnxError, OnnxReference, load_onnx, run_onnxruntime
from systolic.host.nn.qmodel import conv_output_size
from systolic.hw.config import CoreConfig

from .test_onnx_frontend import _export_quantized

pytestmark = pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript")
mnist = functools.cache(load_mnist)

#: name: (quantization format, activation type, per-channel weights)
CASES = {
    "qdq": ("QDQ", "QInt8", True),
    "qdq-u8": ("QDQ", "QUInt8", True),
    "qdq-per-tensor": ("QDQ", "QInt8", False),
    "qoperator": ("QOperator", "QInt8", True),
}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """models/cnn.pt exported (input ``[batch, 784]`` and a Reshape) and quantized by
    ONNX Runtime, calibrated on 512 training images, once a case."""
    cache = {}

    def build(name):
        if name not in cache:
            fmt, activation, per_channel = CASES[name]
            model, _ = load_checkpoint(DEFAULT_CHECKPOINTS["cnn"])
            x = mnist().train_images[:512].astype(np.float32) / 255
            path = tmp_path_factory.mktemp("onnx") / f"cnn-{name}.onnx"
            cache[name] = _export_quantized(model.eval(), x, path, activation, per_channel, fmt)
        return cache[name]

    return build


def _test_images():
    return mnist().test_images.astype(np.float32) / 255


def _float32_requant(qmodel, x):
    """The golden model with ONNX Runtime's float32 requantization (see
    tests/test_onnx_frontend.py), convolutions and pools included."""
    shape = qmodel.input_shape
    for layer in qmodel.layers:
        scale = (
            np.float32(layer.input_scale)
            * layer.weight_scale.astype(np.float32)
            / np.float32(layer.output_scale)
        )
        if layer.is_conv:
            acc = golden.conv2d_i8(
                x.reshape(len(x), *shape),
                layer.weight,
                layer.input_zero_point,
                layer.stride,
                layer.padding,
            ).transpose(0, 2, 3, 1)  # channels last, as the scale runs
        else:
            acc = golden.matmul_i8(x, layer.weight, layer.input_zero_point)
        y = np.rint((acc + layer.bias).astype(np.float32) * scale) + layer.output_zero_point
        y = np.clip(y, layer.output_zero_point if layer.relu else -128, 127).astype(np.int8)
        if layer.is_conv:
            y = y.transpose(0, 3, 1, 2)
            if layer.pool:
                y = golden.maxpool2d_i8(y, layer.pool, layer.pool_stride)
            shape = y.shape[1:]
        x = y.reshape(len(y), -1)
    return x


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_matches_onnxruntime(name, built):
    """On the 1,000 MNIST test images: the same argmax on at least 99.9%, the same
    logits on at least 99%, and every difference one where ONNX Runtime's float32
    requantization rounds a value near a half otherwise than the integer multiplier."""
    path = built(name)
    q = load_onnx(path)
    assert q.input_shape == (1, 28, 28)
    assert [(layer.kind, layer.kernel, layer.padding, layer.pool) for layer in q.layers] == [
        ("conv", 3, 1, 2),
        ("conv", 3, 1, 2),
        ("linear", 0, 0, 0),
    ]
    x = _test_images()
    ort = OnnxReference(path, q).int8(x)
    xq = q.quantize_float(x)
    got = golden.run(q, xq)
    differ = (got != ort).any(1)
    agree = np.mean(got.argmax(1) == ort.argmax(1))
    print(
        f"cnn {name}: {len(x)} images, logits equal on {1 - differ.mean():.2%}, argmax "
        f"agreement {agree:.2%}, accuracy {np.mean(got.argmax(1) == mnist().test_labels):.2%}"
    )
    assert agree >= 0.999 and differ.mean() <= 0.01
    emulated = _float32_requant(q, xq)
    np.testing.assert_array_equal(emulated[differ], ort[differ])


def test_model_backend_equals_golden(built):
    path = built("qdq")
    q = load_onnx(path)
    xq = q.quantize_float(_test_images()[:20])
    cfg = CoreConfig()
    program = compile_model(q, cfg, min(8, max_batch(q, cfg)))
    result = get_backend("model", cfg).run(program, xq)
    np.testing.assert_array_equal(result.outputs, golden.run(q, xq), strict=True)


def test_a_cnn_onnx_file_through_the_api(built):
    acc = accelerate(built("qoperator"), config=CoreConfig(rows=4, cols=4))
    x = _test_images()[:16].reshape(-1, 1, 28, 28)
    pred = acc.predict(x)
    np.testing.assert_array_equal(pred.outputs, acc.golden(x), strict=True)
    np.testing.assert_array_equal(pred.outputs, acc.reference.int8(x), strict=True)


# -- hand-built QDQ graphs ---------------------------------------------------------------
#: power-of-two scales: every requantization scale is a power of two, which float32 and
#: the integer multiplier both hold exactly, so ties are frequent and ONNX Runtime must
#: agree bit for bit
SX, ZX, S1, S2, Z2 = 2.0**-5, -3, 2.0**-3, 2.0**-2, 5


def _cnn(
    tmp_path,
    name="cnn",
    *,
    shape=(2, 9, 9),
    out=3,
    kernel=(3, 3),
    group=1,
    conv=None,
    pool=None,
    pool_op="MaxPool",
    relu="Relu",
    requant_pool=False,
):
    """``Q -> DQ -> Conv(conv) -> relu -> Q -> DQ [-> pool_op(pool) -> Q -> DQ] -> Flatten
    -> Q -> DQ -> Gemm -> Q -> DQ`` with random int8 weights and int32 biases; the
    Gemm takes the flattened size that PyTorch's geometry gives (or 1 where it is
    invalid: the graph is refused before)."""
    rng = np.random.default_rng(len(name))
    conv = {"kernel_shape": list(kernel), "pads": [1, 1, 1, 1], **(conv or {})}
    conv = {k: v for k, v in conv.items() if v is not None}  # None: no such attribute
    c, h, w = shape
    weight = rng.integers(-127, 128, (out, c // group, *kernel)).astype(np.int8)
    w_scale = 2.0 ** -rng.integers(6, 9, out)
    stride = conv.get("strides", [1, 1])[0]
    pad = conv.get("pads", [0])[0]
    hw = [conv_output_size(d, k, stride, pad) for d, k in zip((h, w), kernel, strict=True)]
    if pool:
        k, s = pool["kernel_shape"][0], pool.get("strides", [1])[0]
        hw = [conv_output_size(d, k, s, 0) for d in hw]
    features = max(1, out * hw[0] * hw[1])
    consts = {
        "sx": np.float32(SX),
        "zx": np.int8(ZX),
        "w": weight,
        "ws": w_scale.astype(np.float32),
        "wz": np.zeros(out, np.int8),
        "b": rng.integers(-2000, 2000, out).astype(np.int32),
        "bs": (SX * w_scale).astype(np.float32),
        "bz": np.zeros(out, np.int32),
        "s1": np.float32(S1),
        "z1": np.int8(-128 if relu else -10),
        "sp": np.float32(2 * S1 if requant_pool else S1),
        "w2": rng.integers(-127, 128, (4, features)).astype(np.int8),
        "w2s": np.float32(2.0**-9),
        "w2z": np.int8(0),
        "s2": np.float32(S2),
        "z2": np.int8(Z2),
    }
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "sx", "zx"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "sx", "zx"], ["xd"]),
        helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wd"], axis=0),
        helper.make_node("DequantizeLinear", ["b", "bs", "bz"], ["bd"], axis=0),
        helper.make_node("Conv", ["xd", "wd", "bd"], ["c"], name="conv", group=group, **conv),
    ]
    if relu == "Relu":
        nodes.append(helper.make_node("Relu", ["c"], ["r"], name="relu"))
    elif relu:  # Clip(min, max) of opset 13: bounds as inputs
        consts.update({k: np.float32(v) for k, v in zip(("lo", "hi"), relu, strict=False)})
        bounds = ["lo", "hi"][: len(relu)]
        nodes.append(helper.make_node("Clip", ["c", *bounds], ["r"], name="clip"))
    else:
        nodes.append(helper.make_node("Identity", ["c"], ["r"]))
    nodes += [
        helper.make_node("QuantizeLinear", ["r", "s1", "z1"], ["rq"]),
        helper.make_node("DequantizeLinear", ["rq", "s1", "z1"], ["t"]),
    ]
    if pool is not None:
        nodes += [
            helper.make_node(pool_op, ["t"], ["p"], name="pool", **pool),
            helper.make_node("QuantizeLinear", ["p", "sp", "z1"], ["pq"]),
            helper.make_node("DequantizeLinear", ["pq", "sp", "z1"], ["pd"]),
        ]
    last = "pd" if pool is not None else "t"
    nodes += [
        helper.make_node("Flatten", [last], ["f"], axis=1),
        helper.make_node("QuantizeLinear", ["f", "sp" if pool else "s1", "z1"], ["fq"]),
        helper.make_node("DequantizeLinear", ["fq", "sp" if pool else "s1", "z1"], ["fd"]),
        helper.make_node("DequantizeLinear", ["w2", "w2s", "w2z"], ["w2d"]),
        helper.make_node("Gemm", ["fd", "w2d"], ["g"], name="gemm", transB=1),
        helper.make_node("QuantizeLinear", ["g", "s2", "z2"], ["gq"]),
        helper.make_node("DequantizeLinear", ["gq", "s2", "z2"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", *shape])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in consts.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    path = str(tmp_path / f"{name}.onnx")
    onnx.save(model, path)
    return path


#: name: (input shape, kernel, strides, pads, pool kernel or 0, relu)
GEOMETRIES = {
    "k3-s1-p1-pool2": ((2, 9, 9), 3, 1, 1, 2, "Relu"),
    "k5-s2-p0": ((3, 13, 11), 5, 2, 0, 0, "Relu"),
    "k1-s1-p0-pool3": ((4, 8, 8), 1, 1, 0, 3, "Relu"),
    "k4-s2-p1-pool3-clip": ((1, 16, 15), 4, 2, 1, 3, (0.0,)),
    "k2-s1-p0-pool2-linear": ((2, 7, 9), 2, 1, 0, 2, None),
}


@pytest.mark.parametrize("name", sorted(GEOMETRIES))
def test_geometry_against_onnxruntime(name, tmp_path):
    shape, k, s, p, pool, relu = GEOMETRIES[name]
    path = _cnn(
        tmp_path,
        name,
        shape=shape,
        kernel=(k, k),
        conv={"strides": [s, s], "pads": [p] * 4},
        pool={"kernel_shape": [pool, pool], "strides": [2, 2]} if pool else None,
        relu=relu,
    )
    q = load_onnx(path)
    conv = q.layers[0]
    assert (conv.kind, conv.kernel, conv.stride, conv.padding, conv.pool) == (
        "conv",
        k,
        s,
        p,
        pool,
    )
    assert conv.relu == bool(relu) and q.input_shape == shape
    x = np.random.default_rng(1).normal(0, 1.5, (64, *shape)).astype(np.float32)
    want = run_onnxruntime(path, x, q)
    got = golden.run(q, q.quantize_float(x.reshape(len(x), -1)))
    np.testing.assert_array_equal(got, want, strict=True)


# -- refusals ----------------------------------------------------------------------------
def _refused(path, pattern):
    with pytest.raises(OnnxError, match=pattern):
        load_onnx(path)


@pytest.mark.parametrize(
    "case, kwargs, message",
    [
        ("group", {"shape": (4, 9, 9), "out": 4, "group": 2}, r"group 2 is not supported"),
        ("dilations", {"conv": {"dilations": [2, 2]}}, r"dilations \[2, 2\] is not supported"),
        ("stride-3", {"conv": {"strides": [3, 3]}}, r"strides \[3, 3\] are not supported"),
        ("stride-1-2", {"conv": {"strides": [1, 2]}}, r"strides \[1, 2\] are not supported"),
        ("pads-2", {"conv": {"pads": [2, 2, 2, 2]}}, r"pads \[2, 2, 2, 2\] are not supported"),
        ("pads-asym", {"conv": {"pads": [0, 0, 1, 1]}}, r"pads \[0, 0, 1, 1\] are not"),
        ("kernel-3x5", {"kernel": (3, 5)}, r"kernel \[3, 5\] \(weight \[3, 2, 3, 5\]\)"),
        ("kernel-7", {"kernel": (7, 7)}, r"kernel \[7, 7\] .*square kernels of 1 to 5$"),
        (
            "auto-pad",
            {"conv": {"auto_pad": "SAME_UPPER", "pads": None}},
            r"auto_pad 'SAME_UPPER' is not supported: the core takes 'NOTSET'",
        ),
    ],
)
def test_refuses_a_convolution(case, kwargs, message, tmp_path):
    path = _cnn(tmp_path, case, **kwargs)
    _refused(path, rf"{case}\.onnx: Conv \(node 'conv', 5th node\): {message}")


@pytest.mark.parametrize(
    "case, pool, message",
    [
        ("kernel-4", {"kernel_shape": [4, 4], "strides": [2, 2]}, r"kernel_shape \[4, 4\]"),
        ("kernel-2x3", {"kernel_shape": [2, 3], "strides": [2, 2]}, r"kernel_shape \[2, 3\]"),
        ("stride-1", {"kernel_shape": [2, 2]}, r"strides \[1, 1\]"),
        ("pads", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1] * 4}, r"pads \[1, "),
        (
            "dilations",
            {"kernel_shape": [2, 2], "strides": [2, 2], "dilations": [2, 2]},
            r"dilations \[2, 2\]",
        ),
        ("ceil", {"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1}, r"ceil_mode 1"),
    ],
)
def test_refuses_a_max_pool(case, pool, message, tmp_path):
    path = _cnn(tmp_path, case, pool=pool)
    _refused(
        path,
        rf"{case}\.onnx: MaxPool \(node 'pool', 9th node\): {message}.* is not supported: the "
        r"core pools 2x2 or 3x3 windows with stride 2, no padding, no dilation, ceil_mode 0$",
    )


@pytest.mark.parametrize("op", ["AveragePool", "GlobalAveragePool"])
def test_refuses_an_average_pool(op, tmp_path):
    pool = {} if op.startswith("Global") else {"kernel_shape": [2, 2], "strides": [2, 2]}
    path = _cnn(tmp_path, op, pool=pool, pool_op=op)
    _refused(
        path,
        rf"{op}\.onnx: unsupported ONNX op {op} \(node 'pool', 9th node\): the core runs "
        r"Conv/MatMul/Gemm, Relu, MaxPool",
    )


def test_refuses_a_requantizing_max_pool(tmp_path):
    """A pool whose QuantizeLinear changes the scale: the IR keeps the conv's."""
    path = _cnn(
        tmp_path, "requant", pool={"kernel_shape": [2, 2], "strides": [2, 2]}, requant_pool=True
    )
    _refused(
        path,
        r"QuantizeLinear \(unnamed node, 10th node\): requantizes without a MatMul/Gemm",
    )


def test_refuses_a_clip_with_an_upper_bound(tmp_path):
    path = _cnn(tmp_path, "relu6", relu=(0.0, 6.0))
    _refused(
        path,
        r"Clip \(node 'clip', 6th node\): only Clip\(min=0\) with no max \(a Relu\) is "
        r"supported, not min=0\.0, max=6\.0$",
    )


def test_refuses_a_conv_weight_zero_point(tmp_path):
    path = _cnn(tmp_path, "zp")
    model = onnx.load(path)
    for t in model.graph.initializer:
        if t.name == "wz":
            t.CopyFrom(numpy_helper.from_array(np.array([0, 2, 0], np.int8), "wz"))
    onnx.save(model, path)
    _refused(
        path,
        r"Conv \(node 'conv', 5th node\): weight 'w' zero point must be 0 \(int8 symmetric "
        r"weights\), not \[0, 2\]$",
    )


def test_refuses_a_max_pool_of_the_input(tmp_path):
    path = _cnn(tmp_path, "pool-first")
    model = onnx.load(path)
    nodes = list(model.graph.node)
    nodes[1].output[0] = "xd0"
    nodes.insert(
        2,
        helper.make_node(
            "MaxPool", ["xd0"], ["xd"], name="early", kernel_shape=[2, 2], strides=[2, 2]
        ),
    )
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    onnx.save(model, path)
    _refused(
        path,
        r"MaxPool \(node 'early', 3rd node\): only the output of a convolution \(after its "
        r"Relu\) can be max-pooled$",
    )


def test_refuses_a_grouped_qlinearconv(built, tmp_path):
    model = onnx.load(built("qoperator"))
    conv = next(n for n in model.graph.node if n.op_type == "QLinearConv")
    next(a for a in conv.attribute if a.name == "group").i = 2
    onnx.save(model, tmp_path / "grouped.onnx")
    _refused(
        str(tmp_path / "grouped.onnx"),
        rf"grouped\.onnx: QLinearConv \(node '{conv.name}', \d+th node\): group 2 is not "
        r"supported: the core takes 1$",
    )
