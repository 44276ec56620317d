"""The ONNX front end: a quantized ONNX graph (convolutions, then dense layers) ->
QuantizedModel.

The compiler never sees ONNX objects: :func:`load_onnx` walks the graph from its input to
its output, one node at a time, and turns each layer into a
:class:`~systolic.host.nn.qmodel.QuantLayer`. Accepted forms, on a chain from one input to one
output:

* QDQ (``onnxruntime.quantization.quantize_static`` in QDQ format, ``torch.onnx.export`` of
  a quantized model): ``QuantizeLinear -> DequantizeLinear -> Conv | MatMul | Gemm`` with
  the weight (and bias) as ``DequantizeLinear`` of initializers, an optional bias ``Add``
  and ``Relu`` (or ``Clip`` from 0 with no upper bound), then ``QuantizeLinear``; a ``Relu``
  the quantizer folded into the output's range is the same clamp;
* QOperator: ``QLinearConv``, ``QLinearMatMul`` (no bias) and ``com.microsoft.QGemm``, int8
  or uint8 in and out;
* ``MatMulInteger -> Cast(float) -> Mul(scale) [-> Add(bias)] [-> Relu] -> QuantizeLinear``;
* ``MaxPool`` (kernel 2 or 3, stride 2, no padding) of a convolution's output, on its
  integers or between ``DequantizeLinear`` and ``QuantizeLinear`` of the same scale;
* ``Flatten`` (axis 1) and ``Reshape`` to ``[batch, features]`` (NCHW order, as PyTorch
  flattens), a ``Reshape`` of the graph input to ``[batch, C, H, W]``, ``Identity``
  anywhere.

A convolution is 2-D, square, with stride 1 or 2, padding 0 or 1 on every side, kernel
1 to 5, no dilation and one group; the graph input (or its first ``Reshape``) gives the
network's ``input_shape`` ``(C, H, W)``.

uint8 activations with zero point ``z`` become int8 with zero point ``z - 128``. Weights
must be int8 (or uint8 with zero point 128) symmetric, per tensor or per output channel.
Each layer's requantization scale ``input_scale * weight_scale / output_scale`` becomes
``mult / 2**shift`` (:func:`~systolic.host.nn.qmodel.multiplier_shift`), rounding half to even as
ONNX does. Anything else is refused with :class:`OnnxError`, naming the node.

:func:`run_onnxruntime` runs the same file in ONNX Runtime on the CPU and returns its int8
output, the reference the golden model is compared with.
"""

import dataclasses
import math
import os

import numpy as np
import onnx
from onnx import numpy_helper

from .qmodel import (
    CONV_KERNELS,
    CONV_PADDINGS,
    CONV_STRIDES,
    POOL_KERNELS,
    POOL_STRIDES,
    QuantError,
    QuantizedModel,
    QuantLayer,
    conv_output_size,
    file_sha256,
    multiplier_shift,
)

__all__ = [
    "OnnxError",
    "OnnxReference",
    "load_onnx",
    "run_onnxruntime",
    "SUPPORTED_OPS",
    "SUPPORTED_MS_OPS",
]

#: Op types of the default domain that a graph may contain.
SUPPORTED_OPS = (
    "QuantizeLinear",
    "DequantizeLinear",
    "MatMul",
    "Gemm",
    "Add",
    "Relu",
    "Flatten",
    "Reshape",
    "Identity",
    "Constant",
    "QLinearMatMul",
    "MatMulInteger",
    "Cast",
    "Mul",
    "Conv",
    "QLinearConv",
    "MaxPool",
    "Clip",
)
#: Op types of the ``com.microsoft`` domain (ONNX Runtime's QOperator format).
SUPPORTED_MS_OPS = ("QGemm",)
_RUNS = (
    "the core runs Conv/MatMul/Gemm, Relu, MaxPool, Flatten/Reshape with QuantizeLinear/"
    "DequantizeLinear, or QLinearConv/QLinearMatMul/QGemm/MatMulInteger"
)
_INT8 = {onnx.TensorProto.INT8: "int8", onnx.TensorProto.UINT8: "uint8"}
_SHIFT = {"int8": 0, "uint8": 128}  # int8 value = stored value - shift


class OnnxError(QuantError):
    """An ONNX file that cannot be read, or a graph the core cannot run."""


@dataclasses.dataclass(frozen=True)
class _QConst:
    """A constant ``DequantizeLinear(q, scale, zero_point)``: the integers kept apart."""

    name: str  # the initializer of q
    q: np.ndarray
    scale: np.ndarray
    zero_point: np.ndarray
    axis: int | None  # axis of q that scale runs along; None per tensor


@dataclasses.dataclass(frozen=True)
class _Act:
    """The activation tensor on the chain: float, quantized or dequantized."""

    kind: str  # "float", "quant" (integers) or "dequant" (their floats)
    shape: tuple  # first entry the batch: an int or a name
    scale: float | None = None  # quant/dequant: float32 scale (None: not yet known)
    zero_point: int | None = None  # in the int8 domain
    dtype: str | None = None  # "int8" or "uint8"
    poolable: bool = False  # a convolution layer's output, not yet pooled


@dataclasses.dataclass
class _Linear:
    """A layer under construction (Linear or conv): ``acc * acc_scale (+ bias) (relu)``
    in float."""

    x: _Act
    weight: np.ndarray  # int8 [N, K], or [N, C, k, k] for a convolution
    acc_scale: np.ndarray  # float64 [N]
    weight_scale: np.ndarray  # float64 [N]
    bias: np.ndarray | None = None  # int64 [N] in the accumulator scale
    bias_float: np.ndarray | None = None
    relu: bool = False
    is_float: bool = True  # False: MatMulInteger's int32 before its Cast
    shape: tuple = ()
    conv: dict | None = None  # a convolution's kind, stride and padding (QuantLayer fields)
    pool: int = 0  # a MaxPool before the QuantizeLinear (max commutes with quantization)


def _ordinal(n):
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


class _Walker:
    """One graph's walk; ``fail`` builds the one-line refusals."""

    def __init__(self, path, model):
        self.path = path
        self.graph = model.graph
        self.consts = {t.name: numpy_helper.to_array(t) for t in self.graph.initializer}
        self.layers = []
        self.input_shape = ()  # the first layer's input, batch excluded
        self.node = None
        self.index = 0

    def fail(self, why, node=None, index=None):
        node = node if node is not None else self.node
        if node is None:
            raise OnnxError(f"{self.path}: {why}")
        index = index if index is not None else self.index
        name = f"node {node.name!r}" if node.name else "unnamed node"
        raise OnnxError(f"{self.path}: {node.op_type} ({name}, {_ordinal(index + 1)} node): {why}")

    # -- constants ------------------------------------------------------------------
    def const(self, name, what):
        if name not in self.consts:
            self.fail(f"{what} {name!r} must be a constant (an initializer)")
        return self.consts[name]

    def plain(self, name, what):
        value = self.const(name, what)
        if isinstance(value, _QConst):
            return (value.q.astype(np.float64) - _expand(value, value.zero_point)) * _expand(
                value, value.scale
            )
        return value

    def fold(self, node):
        """Evaluate a node whose inputs are all constants (Constant, Identity, DQ)."""
        if node.op_type == "Constant":
            attr = {a.name: a for a in node.attribute}
            if "value" not in attr:
                self.fail("only a tensor 'value' is supported")
            self.consts[node.output[0]] = numpy_helper.to_array(attr["value"].t)
        elif node.op_type == "Identity":
            self.consts[node.output[0]] = self.consts[node.input[0]]
        elif node.op_type == "DequantizeLinear":
            q = self.consts[node.input[0]]
            scale = np.asarray(self.plain(node.input[1], "scale"), np.float32)
            zp = (
                self.plain(node.input[2], "zero point")
                if len(node.input) > 2 and node.input[2]
                else np.zeros((), q.dtype)
            )
            attrs = _attrs(node)
            if attrs.get("block_size", 0):
                self.fail("blocked quantization (block_size) is not supported")
            axis = None
            if scale.size > 1:
                axis = attrs.get("axis", 1) % q.ndim
                if scale.shape != (q.shape[axis],):
                    self.fail(
                        f"scale of shape {list(scale.shape)} does not match axis {axis} "
                        f"of {list(q.shape)}"
                    )
            self.consts[node.output[0]] = _QConst(
                node.input[0], q, scale.astype(np.float64), np.asarray(zp), axis
            )
        else:
            self.fail("an op on constants only is not supported (fold it before export)")

    # -- the walk -------------------------------------------------------------------
    def run(self):
        g = self.graph
        inputs = [v for v in g.input if v.name not in self.consts]
        if len(inputs) != 1 or len(g.output) != 1:
            self.fail(
                f"the graph must have one input and one output, not {len(inputs)} and "
                f"{len(g.output)}"
            )
        users = {}
        for i, node in enumerate(g.node):
            self.node, self.index = node, i
            if not _supported(node):
                op = (
                    node.op_type
                    if node.domain in ("", "ai.onnx")
                    else f"{node.domain}.{node.op_type}"
                )
                name = f"node {node.name!r}" if node.name else "unnamed node"
                raise OnnxError(
                    f"{self.path}: unsupported ONNX op {op} ({name}, "
                    f"{_ordinal(i + 1)} node): {_RUNS}"
                )
            acts = [n for n in node.input if n and n not in self.consts]
            if not acts:
                self.fold(node)
            elif len(acts) > 1:
                self.fail(
                    f"takes {len(acts)} activation inputs ({', '.join(map(repr, acts))}), "
                    f"a residual connection or a merge: the core runs a chain of layers"
                )
            else:
                users.setdefault(acts[0], []).append(i)
        source, sink = inputs[0], g.output[0].name
        tensor, state = source.name, self._input_state(source)
        self.node = None
        visited = set()
        while tensor != sink or users.get(tensor):
            after = users.get(tensor, [])
            if len(after) != 1:
                names = ", ".join(repr(g.node[i].name) for i in after)
                self.fail(
                    f"the graph is not a chain: tensor {tensor!r} feeds "
                    f"{len(after)} nodes ({names})"
                    if after
                    else f"the graph is not a chain: tensor {tensor!r} leads nowhere"
                )
            self.index = after[0]
            self.node = node = g.node[self.index]
            visited.add(self.index)
            state = getattr(self, f"_{node.op_type.lower()}")(node, state)
            tensor = node.output[0]
        self.node = None
        stray = [
            i
            for i in range(len(g.node))
            if i not in visited and any(n and n not in self.consts for n in g.node[i].input)
        ]
        if stray:
            self.fail(
                "is not on the chain from the input to the output", g.node[stray[0]], stray[0]
            )
        if not self.layers:
            self.fail("the graph has no Conv/MatMul/Gemm/QLinearConv/QLinearMatMul layer")
        if isinstance(state, _Linear) or state.kind == "float":
            self.fail(
                f"the graph output {sink!r} is not quantized: the core gives int8 "
                f"outputs, so the last layer must end in QuantizeLinear"
            )
        return source, state

    def _input_state(self, value):
        t = value.type.tensor_type
        dims = [
            d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in t.shape.dim
        ]
        if len(dims) < 2 or any(not isinstance(d, int) for d in dims[1:]):
            self.fail(
                f"input {value.name!r} has shape {dims}: only the batch (first) "
                f"dimension may be dynamic, and it needs at least 2 dimensions"
            )
        if t.elem_type == onnx.TensorProto.FLOAT:
            return _Act("float", tuple(dims))
        if t.elem_type in _INT8:
            return _Act("quant", tuple(dims), dtype=_INT8[t.elem_type])
        self.fail(
            f"input {value.name!r} has element type "
            f"{onnx.TensorProto.DataType.Name(t.elem_type)}, expected FLOAT, INT8 or UINT8"
        )

    # -- one method per op: (node, state) -> state -----------------------------------
    def _identity(self, node, state):
        return state

    def _flatten(self, node, state):
        shape = state.shape
        if _attrs(node).get("axis", 1) % len(shape) != 1:
            self.fail("only axis 1 (to [batch, features]) is supported")
        return _with_shape(state, (shape[0], math.prod(shape[1:])))

    def _reshape(self, node, state):
        shape = state.shape
        target = [int(v) for v in self.plain(node.input[1], "shape")]
        if _attrs(node).get("allowzero", 0) and 0 in target:
            self.fail("allowzero with a zero in the shape is not supported")
        target = [shape[j] if v == 0 and j < len(shape) else v for j, v in enumerate(target)]
        features = math.prod(shape[1:])
        if not self.layers and isinstance(state, _Act) and len(target) == 4:
            # the graph input to [batch, C, H, W]: the flattened input, read as an image
            image = [features // math.prod(target[1:]) if v == -1 else v for v in target[1:]]
            if (
                target[0] in (-1, shape[0])
                and target[1:].count(-1) <= (target[0] != -1)
                and all(v >= 1 for v in image)
                and math.prod(image) == features
            ):
                return _with_shape(state, (shape[0], *image))
            self.fail(
                f"reshape of {list(shape)} to {target} cannot be resolved to [batch, C, H, W]"
            )
        ok = (
            len(target) == 2
            and target[1] in (-1, features)
            and (target[0] == shape[0] or (target[0] == -1 and target[1] == features))
        )
        if not ok:
            self.fail(
                f"reshape of {list(shape)} to {target} cannot be resolved to "
                f"[batch, {features}] rows"
            )
        return _with_shape(state, (shape[0], features))

    def _quantizelinear(self, node, state):
        scale, zp, dtype = self._qparams(node, node.input[1:3])
        if isinstance(state, _Linear):
            if not state.is_float:
                self.fail("quantizes an int32 accumulator: Cast it to float and scale it first")
            return self._emit(state, scale, zp, dtype)
        if state.kind == "float":
            if self.layers:
                self.fail("quantizes float activations between layers")
            return _Act("quant", state.shape, scale, zp, dtype)
        if state.kind == "dequant" and (state.scale, state.zero_point, state.dtype) == (
            scale,
            zp,
            dtype,
        ):
            return dataclasses.replace(state, kind="quant")
        self.fail("requantizes without a MatMul/Gemm: only a layer may change the scale")

    def _dequantizelinear(self, node, state):
        if isinstance(state, _Linear) or state.kind != "quant":
            self.fail("dequantizes a tensor that is not int8/uint8 activations")
        scale, zp, dtype = self._qparams(node, node.input[1:3], state.dtype)
        return self._same(state, scale, zp, dtype, "dequant")

    def _same(self, state, scale, zp, dtype, kind):
        """``state`` with its (so far unknown) scale, or refused when they differ."""
        if state.scale is None:
            return dataclasses.replace(state, kind=kind, scale=scale, zero_point=zp)
        if (state.scale, state.zero_point, state.dtype) != (scale, zp, dtype):
            self.fail(
                f"scale {scale} and zero point {zp} differ from those of its input "
                f"({state.scale}, {state.zero_point})"
            )
        return dataclasses.replace(state, kind=kind)

    def _qparams(self, node, names, dtype=None):
        """float32 scale, zero point in the int8 domain, and the stored integer type."""
        scale = np.asarray(self.plain(names[0], "scale"), np.float32)
        if scale.size != 1 or not np.isfinite(scale).all() or float(scale.flat[0]) <= 0:
            self.fail(f"activation scale must be one positive number, not {scale.tolist()}")
        if len(names) > 1 and names[1]:
            zp = np.asarray(self.plain(names[1], "zero point"))
            kind = {np.dtype(np.int8): "int8", np.dtype(np.uint8): "uint8"}.get(zp.dtype)
            if kind is None:
                self.fail(f"activations are {zp.dtype}: the core takes int8 or uint8")
            if zp.size != 1:
                self.fail("activation zero point must be one number (per tensor)")
            zp = int(zp.flat[0])
        else:
            to = _attrs(node).get("output_dtype", 0)
            kind = dtype or _INT8.get(to or onnx.TensorProto.UINT8)
            if kind is None:
                self.fail("activations must be int8 or uint8")
            zp = _SHIFT[kind]
        return float(scale.flat[0]), zp - _SHIFT[kind], kind

    def _weight(self, name, out_axis, what="weight"):
        """int8 [N, K] and per-channel float64 scale [N] from a DequantizeLinear constant."""
        w = self.const(name, what)
        if not isinstance(w, _QConst) or w.q.ndim != 2:
            self.fail(f"{what} {name!r} must be a 2-D DequantizeLinear of an int8 initializer")
        return self._int8_weight(w.q, w.scale, w.zero_point, out_axis, w.axis, w.name)

    def _int8_weight(self, q, scale, zp, out_axis, scale_axis, name):
        kind = {np.dtype(np.int8): "int8", np.dtype(np.uint8): "uint8"}.get(q.dtype)
        if kind is None:
            self.fail(f"weight {name!r} is {q.dtype}: the core takes int8 weights")
        zp = np.asarray(zp, np.int64) - _SHIFT[kind]
        if np.any(zp != 0):
            self.fail(
                f"weight {name!r} zero point must be 0 (int8 symmetric weights), not "
                f"{np.unique(zp + _SHIFT[kind]).tolist()}"
            )
        n = q.shape[out_axis]
        scale = np.asarray(scale, np.float64)
        if scale.size > 1 and (scale_axis != out_axis or scale.size != n) or zp.size not in (1, n):
            self.fail(f"weight {name!r} scale must be per tensor or per output channel")
        weight = (q.astype(np.int64) - _SHIFT[kind]).astype(np.int8)
        return (weight if out_axis == 0 else weight.T), np.broadcast_to(scale, (n,)).copy()

    def _layer_input(self, state, what, ndim=2):
        if isinstance(state, _Linear) or state.kind == "float":
            self.fail(f"{what} on float activations: quantize them (QuantizeLinear) first")
        if len(state.shape) != ndim:
            self.fail(
                f"{what} on a {len(state.shape)}-D tensor: "
                + (
                    "Flatten it to [batch, features]"
                    if ndim == 2
                    else "the core convolves [batch, C, H, W] images, before the first Linear layer"
                )
            )
        return state

    def _linear(self, x, weight, weight_scale, acc_scale=None, is_float=True, shape=None):
        if shape is None and weight.shape[1] != x.shape[1]:
            self.fail(
                f"weight takes {weight.shape[1]} inputs but the activations have "
                f"{x.shape[1]} features"
            )
        if acc_scale is None:
            # the product in float32, as ONNX Runtime computes the bias scale
            acc_scale = (np.float32(x.scale) * weight_scale.astype(np.float32)).astype(np.float64)
        return _Linear(
            x,
            weight,
            np.asarray(acc_scale, np.float64),
            weight_scale,
            is_float=is_float,
            shape=shape or (x.shape[0], weight.shape[0]),
        )

    def _conv_layer(self, node, x, weight, weight_scale):
        """A convolution ``_Linear`` from the node's attributes, refused unless the core
        can run it: 2-D, square, stride 1 or 2, padding all 0 or all 1, one group."""
        attrs = _attrs(node)
        if weight.ndim != 4:
            self.fail(
                f"weight of shape {list(weight.shape)}: only 2-D convolutions "
                f"([out, in, k, k] weights) are supported"
            )
        k = weight.shape[2:]
        checks = (
            ("group", attrs.get("group", 1), 1),
            ("auto_pad", _text(attrs.get("auto_pad", "NOTSET")), "NOTSET"),
            ("dilations", list(attrs.get("dilations", [1, 1])), [1, 1]),
        )
        for name, value, want in checks:
            if value != want:
                self.fail(f"{name} {value!r} is not supported: the core takes {want!r}")
        kernel = list(attrs.get("kernel_shape", k))
        strides = list(attrs.get("strides", [1, 1]))
        pads = list(attrs.get("pads", [0, 0, 0, 0]))
        if kernel != list(k) or k[0] != k[1] or k[0] not in CONV_KERNELS:
            self.fail(
                f"kernel {kernel} (weight {list(weight.shape)}) is not supported: the core "
                f"takes square kernels of {CONV_KERNELS[0]} to {CONV_KERNELS[-1]}"
            )
        if len(strides) != 2 or strides[0] != strides[1] or strides[0] not in CONV_STRIDES:
            self.fail(f"strides {strides} are not supported: the core takes [1, 1] or [2, 2]")
        if len(pads) != 4 or len(set(pads)) != 1 or pads[0] not in CONV_PADDINGS:
            self.fail(f"pads {pads} are not supported: the core takes [0, 0, 0, 0] or [1, 1, 1, 1]")
        if weight.shape[1] != x.shape[1]:
            self.fail(
                f"weight takes {weight.shape[1]} channels but the activations have {x.shape[1]}"
            )
        stride, padding = strides[0], pads[0]
        h, w = (conv_output_size(d, k[0], stride, padding) for d in x.shape[2:])
        if min(h, w) < 1:
            self.fail(f"a {k[0]}x{k[0]} kernel does not fit the {x.shape[2]}x{x.shape[3]} input")
        layer = self._linear(x, weight, weight_scale, shape=(x.shape[0], weight.shape[0], h, w))
        layer.conv = {"kind": "conv", "stride": stride, "padding": padding}
        return layer

    def _conv(self, node, state):
        x = self._layer_input(state, "Conv", ndim=4)
        if node.input[0] in self.consts:
            self.fail("the activations must be the first input")
        w = self.const(node.input[1], "weight")
        if not isinstance(w, _QConst):
            self.fail(f"weight {node.input[1]!r} must be a DequantizeLinear of an int8 initializer")
        weight, w_scale = self._int8_weight(w.q, w.scale, w.zero_point, 0, w.axis, w.name)
        layer = self._conv_layer(node, x, weight, w_scale)
        if len(node.input) > 2 and node.input[2]:
            self._bias(layer, node.input[2])
        return layer

    def _qlinearconv(self, node, state):
        x = self._layer_input(state, "QLinearConv", ndim=4)
        if state.kind != "quant":
            self.fail("takes int8 activations, not dequantized ones")
        x = self._same(x, *self._qparams(node, node.input[1:3], x.dtype), "quant")
        weight, w_scale = self._int8_weight(
            np.asarray(self.const(node.input[3], "weight")),
            self.plain(node.input[4], "weight scale"),
            self.plain(node.input[5], "weight zero point"),
            0,
            0,
            node.input[3],
        )
        layer = self._conv_layer(node, x, weight, w_scale)
        if len(node.input) > 8 and node.input[8]:
            self._int32_bias(layer, node.input[8])
        return self._emit(layer, *self._qparams(node, node.input[6:8]))

    def _qgemm(self, node, state):
        x = self._layer_input(state, "QGemm")
        if state.kind != "quant":
            self.fail("takes int8 activations, not dequantized ones")
        attrs = _attrs(node)
        if attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0:
            self.fail("only transA=0 and alpha=1 are supported")
        if len(node.input) < 8 or not node.input[7]:
            self.fail("gives float outputs (no y_scale): the core gives int8 outputs")
        x = self._same(x, *self._qparams(node, node.input[1:3], x.dtype), "quant")
        out_axis = 0 if attrs.get("transB", 0) else 1
        weight, w_scale = self._int8_weight(
            np.asarray(self.const(node.input[3], "weight")),
            self.plain(node.input[4], "weight scale"),
            self.plain(node.input[5], "weight zero point"),
            out_axis,
            out_axis,
            node.input[3],
        )
        layer = self._linear(x, weight, w_scale)
        if node.input[6]:
            self._int32_bias(layer, node.input[6])
        return self._emit(layer, *self._qparams(node, node.input[7:9]))

    def _int32_bias(self, layer, name):
        """A QOperator layer's bias: int32 already in the accumulator scale."""
        n = layer.weight.shape[0]
        b = np.asarray(self.const(name, "bias"))
        if b.dtype != np.int32 or b.size not in (1, n):
            self.fail(f"bias {name!r} must be int32 with 1 or {n} values, not {b.dtype}")
        layer.bias = np.broadcast_to(b.astype(np.int64).ravel(), (n,)).copy()

    def _maxpool(self, node, state):
        attrs = _attrs(node)
        if len([n for n in node.output if n]) > 1:
            self.fail("the Indices output is not supported")
        kernel = list(attrs.get("kernel_shape", []))
        strides = list(attrs.get("strides", [1] * len(kernel)))
        k = kernel[0] if kernel else 0
        checks = (
            ("kernel_shape", kernel, len(kernel) == 2 and kernel == [k, k] and k in POOL_KERNELS),
            ("strides", strides, len(set(strides)) == 1 and strides[0] in POOL_STRIDES),
            ("pads", list(attrs.get("pads", [0] * 4)), not any(attrs.get("pads", []))),
            (
                "dilations",
                list(attrs.get("dilations", [1, 1])),
                set(attrs.get("dilations", [1])) == {1},
            ),
            ("ceil_mode", attrs.get("ceil_mode", 0), not attrs.get("ceil_mode", 0)),
            (
                "auto_pad",
                _text(attrs.get("auto_pad", "NOTSET")),
                _text(attrs.get("auto_pad", "NOTSET")) == "NOTSET",
            ),
            ("storage_order", attrs.get("storage_order", 0), not attrs.get("storage_order", 0)),
        )
        for name, value, ok in checks:
            if not ok:
                self.fail(
                    f"{name} {value!r} is not supported: the core pools {POOL_KERNELS[0]}x"
                    f"{POOL_KERNELS[0]} or {POOL_KERNELS[1]}x{POOL_KERNELS[1]} windows with "
                    f"stride {POOL_STRIDES[0]}, no padding, no dilation, ceil_mode 0"
                )
        if isinstance(state, _Linear) and state.conv and state.is_float and not state.pool:
            state.pool = k  # before the QuantizeLinear: max and quantization commute
            shape = state.shape
        elif isinstance(state, _Act) and state.poolable and state.kind != "float":
            layer = self.layers[-1]
            self.layers[-1] = dataclasses.replace(layer, pool=k, pool_stride=strides[0])
            shape = state.shape
        else:
            self.fail("only the output of a convolution (after its Relu) can be max-pooled")
        h, w = (conv_output_size(d, k, strides[0], 0) for d in shape[2:])
        if min(h, w) < 1:
            self.fail(f"a {k}x{k} window does not fit the {shape[2]}x{shape[3]} input")
        if isinstance(state, _Linear):
            state.shape = (*shape[:2], h, w)
            return state
        return dataclasses.replace(state, shape=(*shape[:2], h, w), poolable=False)

    def _matmul(self, node, state):
        x = self._layer_input(state, "MatMul")
        if node.input[0] not in self.consts and node.input[1] in self.consts:
            return self._linear(x, *self._weight(node.input[1], 1))
        self.fail("the weight must be the second input, a constant")

    def _gemm(self, node, state):
        x = self._layer_input(state, "Gemm")
        attrs = _attrs(node)
        if (
            attrs.get("transA", 0)
            or attrs.get("alpha", 1.0) != 1.0
            or attrs.get("beta", 1.0) != 1.0
            or node.input[0] in self.consts
        ):
            self.fail("only transA=0, alpha=1, beta=1 and the activations first are supported")
        layer = self._linear(x, *self._weight(node.input[1], 0 if attrs.get("transB") else 1))
        if len(node.input) > 2 and node.input[2]:
            self._bias(layer, node.input[2])
        return layer

    def _add(self, node, state):
        if isinstance(state, _Act) and state.kind == "dequant":
            self.fail(
                "adds to requantized activations: the MatMul before it was quantized "
                "apart from its bias; export the layer as Gemm (or MatMul with the bias "
                "in the same QuantizeLinear)"
            )
        if (
            not isinstance(state, _Linear)
            or not state.is_float
            or state.relu
            or state.bias is not None
            or state.bias_float is not None
        ):
            self.fail("only a bias added to a MatMul's output (before Relu) is supported")
        self._bias(state, next(n for n in node.input if n in self.consts))
        return state

    def _bias(self, layer, name):
        n = layer.weight.shape[0]
        value = self.const(name, "bias")
        if np.size(value.q if isinstance(value, _QConst) else value) not in (1, n):
            self.fail(f"bias {name!r} must have 1 or {n} values")
        if (
            isinstance(value, _QConst)
            and value.q.dtype == np.int32
            and np.all(value.zero_point == 0)
            and np.allclose(value.scale, layer.acc_scale, rtol=1e-6, atol=0)
        ):
            layer.bias = np.broadcast_to(value.q.astype(np.int64).ravel(), (n,)).copy()
        else:  # a float bias: quantized in the accumulator scale
            b = np.broadcast_to(np.asarray(self.plain(name, "bias"), np.float64).ravel(), (n,))
            layer.bias_float = b.copy()
            layer.bias = np.rint(b / layer.acc_scale).astype(np.int64)

    def _relu(self, node, state):
        if not isinstance(state, _Linear) or not state.is_float:
            self.fail("Relu must come between a Conv/MatMul/Gemm and its QuantizeLinear")
        state.relu = True
        return state

    def _clip(self, node, state):
        """``Clip(0, none)``, ReLU as some exporters write it."""
        attrs = _attrs(node)
        lo = attrs.get("min") if len(node.input) < 2 or not node.input[1] else None
        hi = attrs.get("max") if len(node.input) < 3 or not node.input[2] else None
        if len(node.input) > 1 and node.input[1]:
            lo = float(np.asarray(self.plain(node.input[1], "min")))
        if len(node.input) > 2 and node.input[2]:
            hi = float(np.asarray(self.plain(node.input[2], "max")))
        if lo != 0 or (hi is not None and hi != math.inf):
            self.fail(f"only Clip(min=0) with no max (a Relu) is supported, not min={lo}, max={hi}")
        return self._relu(node, state)

    def _qlinearmatmul(self, node, state):
        x = self._layer_input(state, "QLinearMatMul")
        if state.kind != "quant":
            self.fail("takes int8 activations, not dequantized ones")
        x = self._same(x, *self._qparams(node, node.input[1:3], x.dtype), "quant")
        b = np.asarray(self.const(node.input[3], "weight"))
        weight, w_scale = self._int8_weight(
            b,
            self.plain(node.input[4], "weight scale"),
            self.plain(node.input[5], "weight zero point"),
            1,
            1,
            node.input[3],
        )
        layer = self._linear(x, weight, w_scale)
        return self._emit(layer, *self._qparams(node, node.input[6:8]))

    def _matmulinteger(self, node, state):
        x = self._layer_input(state, "MatMulInteger")
        if state.kind != "quant":
            self.fail("takes int8 activations, not dequantized ones")
        zp = (
            np.asarray(self.plain(node.input[2], "zero point"))
            if len(node.input) > 2 and node.input[2]
            else np.zeros((), {"int8": np.int8, "uint8": np.uint8}[x.dtype])
        )
        if zp.size != 1 or int(zp.flat[0]) - _SHIFT[x.dtype] != x.zero_point:
            self.fail(
                f"activation zero point {zp.tolist()} differs from its input's "
                f"({x.zero_point + _SHIFT[x.dtype]})"
            )
        b = np.asarray(self.const(node.input[1], "weight"))
        bzp = (
            self.plain(node.input[3], "weight zero point")
            if len(node.input) > 3 and node.input[3]
            else np.zeros((), b.dtype)
        )
        weight, _ = self._int8_weight(b, 1.0, bzp, 1, 1, node.input[1])
        if x.scale is None:  # an integer graph input: no input scale is given
            x = dataclasses.replace(x, scale=1.0)
        return self._linear(
            x, weight, np.ones(weight.shape[0]), np.ones(weight.shape[0]), is_float=False
        )

    def _cast(self, node, state):
        if (
            not isinstance(state, _Linear)
            or state.is_float
            or _attrs(node).get("to") != onnx.TensorProto.FLOAT
        ):
            self.fail("only a Cast of MatMulInteger's int32 output to float is supported")
        state.is_float = True
        return state

    def _mul(self, node, state):
        if (
            not isinstance(state, _Linear)
            or not state.is_float
            or state.relu
            or state.bias is not None
        ):
            self.fail("only a scale multiplied into a MatMulInteger's output is supported")
        c = np.asarray(
            self.plain(next(n for n in node.input if n in self.consts), "scale"), np.float64
        ).ravel()
        n = state.weight.shape[0]
        if c.size not in (1, n) or not np.all(c > 0):
            self.fail(f"scale must be 1 or {n} positive values")
        state.acc_scale = state.acc_scale * c
        state.weight_scale = state.acc_scale / state.x.scale
        return state

    def _emit(self, layer, scale, zp, dtype):
        if layer.bias is not None and layer.bias_float is not None:  # acc_scale is final now
            layer.bias = np.rint(layer.bias_float / layer.acc_scale).astype(np.int64)
        bias = np.zeros(layer.weight.shape[0], np.int64) if layer.bias is None else layer.bias
        if np.any((bias < -(2**31)) | (bias >= 2**31)):
            self.fail("bias overflows int32 in the accumulator scale")
        try:
            mult, shift = multiplier_shift(layer.acc_scale / scale)
        except ValueError as exc:
            self.fail(str(exc))
        if not self.layers:
            self.input_shape = tuple(layer.x.shape[1:])
        conv = layer.conv or {}
        if layer.pool:
            conv = {**conv, "pool": layer.pool, "pool_stride": POOL_STRIDES[0]}
        self.layers.append(
            QuantLayer(
                weight=layer.weight,
                bias=bias.astype(np.int32),
                input_zero_point=int(layer.x.zero_point),
                mult=mult,
                shift=shift,
                output_zero_point=int(zp),
                relu=bool(layer.relu),
                input_scale=float(layer.x.scale),
                weight_scale=np.asarray(layer.weight_scale, np.float64),
                output_scale=float(scale),
                round_even=True,
                **conv,
            )
        )
        poolable = bool(layer.conv) and not layer.pool
        return _Act("quant", layer.shape, scale, zp, dtype, poolable)


def _supported(node):
    if node.domain in ("", "ai.onnx"):
        return node.op_type in SUPPORTED_OPS
    return node.domain == "com.microsoft" and node.op_type in SUPPORTED_MS_OPS


def _text(value):
    return value.decode() if isinstance(value, bytes) else value


def _attrs(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _expand(c, v):
    """A per-axis array of a _QConst shaped to broadcast against ``c.q``."""
    v = np.asarray(v, np.float64)
    if c.axis is None or v.size == 1:
        return v
    shape = [1] * c.q.ndim
    shape[c.axis] = v.size
    return v.reshape(shape)


def _with_shape(state, shape):
    if isinstance(state, _Act):
        return dataclasses.replace(state, shape=shape, poolable=False)
    return dataclasses.replace(state, shape=shape)


def _read(path):
    if not os.path.isfile(path):
        raise OnnxError(f"{path}: no such ONNX file")
    try:
        model = onnx.load(path)
        onnx.checker.check_model(model)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise OnnxError(
            f"{path}: not a readable ONNX model ({type(exc).__name__}"
            f"{': ' + first[:120] if first else ''})"
        ) from None
    if not model.graph.node:
        raise OnnxError(f"{path}: not a readable ONNX model (the graph has no nodes)")
    return model


def load_onnx(path: str) -> QuantizedModel:
    """Read a quantized ONNX model as a :class:`~systolic.host.nn.qmodel.QuantizedModel`.

    The first layer's ``input_scale`` and ``input_zero_point`` (int8 domain) are those of
    the graph's first QuantizeLinear, so :meth:`QuantizedModel.quantize_float` quantizes
    float inputs as ONNX Runtime does. ``meta["onnx"]`` names the file, its sha256, the
    graph's input and output and their element types.

    Parameters
    ----------
    path : str
        An ``.onnx`` file (see the module's docstring for the graphs it accepts).

    Raises
    ------
    OnnxError
        A missing or unreadable file, or a graph the core cannot run: the message names
        the op type, the node and its position.
    """
    model = _read(path)
    walker = _Walker(path, model)
    source, last = walker.run()
    out_type = model.graph.output[0].type.tensor_type.elem_type
    meta = {
        "onnx": {
            "file": os.path.basename(path),
            "sha256": file_sha256(path),
            "input": source.name,
            "input_type": onnx.TensorProto.DataType.Name(source.type.tensor_type.elem_type),
            "output": model.graph.output[0].name,
            "output_type": onnx.TensorProto.DataType.Name(out_type),
            "output_dtype": last.dtype,
        }
    }
    qmodel = QuantizedModel(tuple(walker.layers), meta, walker.input_shape)
    qmodel.validate(path)
    return qmodel


def run_onnxruntime(path: str, x: np.ndarray, qmodel: QuantizedModel | None = None) -> np.ndarray:
    """ONNX Runtime's (CPU) int8 output of the model in ``path`` for inputs ``x``.

    A float graph output (after the last DequantizeLinear) is quantized again with the
    last layer's output scale and zero point, which gives back its integers exactly;
    uint8 outputs are shifted to int8.

    Parameters
    ----------
    x : ndarray
        The graph input's shape and type (float32, or int8/uint8 for integer inputs).
    qmodel : QuantizedModel, optional
        :func:`load_onnx` of the same file, if already loaded.
    """
    import onnxruntime as ort

    qmodel = qmodel or load_onnx(path)
    info = qmodel.meta["onnx"]
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    dtype = {"FLOAT": np.float32, "INT8": np.int8, "UINT8": np.uint8}[info["input_type"]]
    (y,) = session.run([info["output"]], {info["input"]: np.asarray(x, dtype)})
    y = y.reshape(len(y), -1)
    last = qmodel.layers[-1]
    if y.dtype.kind == "f":
        y = np.rint(y / np.float32(last.output_scale)) + last.output_zero_point
        return np.clip(y, -128, 127).astype(np.int8)
    return (y.astype(np.int64) - _SHIFT[info["output_dtype"]]).astype(np.int8)


@dataclasses.dataclass
class OnnxReference:
    """ONNX Runtime's execution of a quantized ONNX file, the reference its results are
    checked against (as :class:`systolic.host.nn.pt2e.TorchReference` is for PyTorch models)."""

    path: str
    qmodel: QuantizedModel
    #: how reports name it: ``onnxruntime_int8_accuracy``
    name: str = "onnxruntime"

    def int8(self, x) -> np.ndarray:
        """ORT's int8 output for float inputs ``[N, ...]``, reshaped to the graph's input
        shape when that is static but for the batch."""
        x = np.asarray(x, np.float32)
        graph_input = onnx.load(self.path, load_external_data=False).graph.input
        name = self.qmodel.meta["onnx"]["input"]
        dims = next(i for i in graph_input if i.name == name).type.tensor_type.shape.dim
        shape = [d.dim_value if d.HasField("dim_value") else None for d in dims[1:]]
        if shape and all(shape):
            x = x.reshape(len(x), *shape)
        return run_onnxruntime(self.path, x, self.qmodel)
