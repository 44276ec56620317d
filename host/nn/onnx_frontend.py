"""The ONNX front end: a quantized ONNX graph (a chain of dense layers) -> QuantizedModel.

The compiler never sees ONNX objects: :func:`load_onnx` walks the graph from its input to
its output, one node at a time, and turns each layer into a
:class:`~host.nn.qmodel.QuantLayer`. Accepted forms, on a chain from one input to one output:

* QDQ (``onnxruntime.quantization.quantize_static`` in QDQ format, ``torch.onnx.export`` of
  a quantized model): ``QuantizeLinear -> DequantizeLinear -> MatMul | Gemm`` with the
  weight (and bias) as ``DequantizeLinear`` of initializers, an optional bias ``Add`` and
  ``Relu``, then ``QuantizeLinear``;
* ``QLinearMatMul`` (int8 in and out, no bias);
* ``MatMulInteger -> Cast(float) -> Mul(scale) [-> Add(bias)] [-> Relu] -> QuantizeLinear``;
* ``Flatten`` (axis 1) and ``Reshape`` to ``[batch, features]``, ``Identity`` anywhere.

uint8 activations with zero point ``z`` become int8 with zero point ``z - 128``. Weights
must be int8 (or uint8 with zero point 128) symmetric, per tensor or per output channel.
Each layer's requantization scale ``input_scale * weight_scale / output_scale`` becomes
``mult / 2**shift`` (:func:`~host.nn.qmodel.multiplier_shift`), rounding half to even as
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

from .qmodel import QuantError, QuantizedModel, QuantLayer, file_sha256, multiplier_shift

__all__ = ["OnnxError", "OnnxReference", "load_onnx", "run_onnxruntime", "SUPPORTED_OPS"]

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
)
_RUNS = (
    "the core runs MatMul/Gemm, Relu, Flatten/Reshape with QuantizeLinear/"
    "DequantizeLinear, or QLinearMatMul/MatMulInteger"
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


@dataclasses.dataclass
class _Linear:
    """A layer under construction: ``acc * acc_scale (+ bias) (relu)`` in float."""

    x: _Act
    weight: np.ndarray  # int8 [N, K]
    acc_scale: np.ndarray  # float64 [N]
    weight_scale: np.ndarray  # float64 [N]
    bias: np.ndarray | None = None  # int64 [N] in the accumulator scale
    bias_float: np.ndarray | None = None
    relu: bool = False
    is_float: bool = True  # False: MatMulInteger's int32 before its Cast
    shape: tuple = ()


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
            if node.domain not in ("", "ai.onnx") or node.op_type not in SUPPORTED_OPS:
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
            self.fail("the graph has no MatMul/Gemm/QLinearMatMul/MatMulInteger layer")
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

    def _layer_input(self, state, what):
        if isinstance(state, _Linear) or state.kind == "float":
            self.fail(f"{what} on float activations: quantize them (QuantizeLinear) first")
        if len(state.shape) != 2:
            self.fail(f"{what} on a {len(state.shape)}-D tensor: Flatten it to [batch, features]")
        return state

    def _linear(self, x, weight, weight_scale, acc_scale=None, is_float=True):
        if weight.shape[1] != x.shape[1]:
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
            shape=(x.shape[0], weight.shape[0]),
        )

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
            self.fail("Relu must come between a MatMul/Gemm and its QuantizeLinear")
        state.relu = True
        return state

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
            )
        )
        return _Act("quant", layer.shape, scale, zp, dtype)


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
    """Read a quantized ONNX model as a :class:`~host.nn.qmodel.QuantizedModel`.

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
    qmodel = QuantizedModel(tuple(walker.layers), meta)
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
    checked against (as :class:`host.nn.pt2e.TorchReference` is for PyTorch models)."""

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
