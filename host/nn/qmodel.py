"""The quantized model: integer layers and their file (``.qnpz``, format version 2).

A :class:`QuantizedModel` is what the compiler and the golden model take: per layer
int8 weights, int32 bias, a per-channel integer multiplier and right shift
(``scale ~= mult / 2**shift``), zero points, ReLU and the rounding mode. A CNN starts
with convolution layers (``kind == "conv"``: weights ``[out, in, k, k]``, stride,
padding, optional max-pool after the ReLU) and ends with Linear layers that take the
last convolution's output flattened in NCHW order; the network's input is
``input_shape`` (``(C, H, W)``, or ``(features,)`` for an MLP), flattened likewise.

The file is an ``.npz`` archive: per layer the arrays ``l<i>_weight`` (int8),
``l<i>_bias`` (int32), ``l<i>_mult``, ``l<i>_shift`` (int64), ``l<i>_weight_scale``
(float64), and a JSON ``header`` with the layers' scalar parameters, the metadata (the
float checkpoint's path relative to the file and its sha256, the calibration, the
report, ``input_shape`` when it is not ``(in_features,)``; a convolution layer's
``kind``, ``stride``, ``padding``, ``pool`` and ``pool_stride``, only where they differ
from a Linear layer's defaults) and ``content_sha256``, a hash of all of it that
:meth:`QuantizedModel.load` checks. Version 1 files (no rounding mode, no content
hash) are refused with a request to run ``make quantize`` again.
"""

import dataclasses
import hashlib
import itertools
import json
import math
import os
import zipfile

import numpy as np

from ..files import atomic_write
from .bundled import DEFAULT_QUANTIZED_MODELS

__all__ = [
    "QuantLayer",
    "QuantizedModel",
    "QuantError",
    "multiplier_shift",
    "random_quantized_model",
    "random_quantized_cnn",
    "conv_output_size",
    "is_quantized_model_file",
    "file_sha256",
    "DEFAULT_QUANTIZED",
    "DEFAULT_QUANTIZED_MODELS",
    "FORMAT",
    "VERSION",
]

DEFAULT_QUANTIZED = DEFAULT_QUANTIZED_MODELS["mlp"]
FORMAT = "systolic-mnist-qmodel"
VERSION = 2
_ARRAYS = {
    "weight": np.int8,
    "bias": np.int32,
    "mult": np.int64,
    "shift": np.int64,
    "weight_scale": np.float64,
}
_SCALARS = {
    "input_zero_point": int,
    "output_zero_point": int,
    "relu": bool,
    "input_scale": float,
    "output_scale": float,
    "round_even": bool,
}
#: Layer scalars written only when they differ from these defaults (a Linear layer's).
_LAYOUT_SCALARS = {"kind": "linear", "stride": 1, "padding": 0, "pool": 0, "pool_stride": 0}
#: What a convolution layer may use (the core's CNN support).
CONV_KERNELS = (1, 2, 3, 4, 5)
CONV_STRIDES = (1, 2)
CONV_PADDINGS = (0, 1)
POOL_KERNELS = (2, 3)
POOL_STRIDES = (2,)


class QuantError(ValueError):
    """A model that cannot be quantized, or a quantized-model file that cannot be read or
    is inconsistent."""


@dataclasses.dataclass(frozen=True)
class QuantLayer:
    """One quantized Linear or convolution layer (see docs/ARCHITECTURE.md for the
    arithmetic; a convolution applies it to every output pixel's window, the padding
    being the input zero point, then max-pools the int8 result)."""

    weight: np.ndarray  #: int8 [out, in] (Linear) or [out, in, k, k] (conv)
    bias: np.ndarray  #: int32 [out], not folded with the input zero point
    input_zero_point: int  #: -128..127
    mult: np.ndarray  #: int64 [out], 0 <= mult < 2**32
    shift: np.ndarray  #: int64 [out], 0..63
    output_zero_point: int
    relu: bool
    input_scale: float
    weight_scale: np.ndarray  #: float64 [out]
    output_scale: float
    round_even: bool = False  #: requantize with round half to even (else half up)
    kind: str = "linear"  #: "linear" or "conv"
    stride: int = 1  #: conv: 1 or 2
    padding: int = 0  #: conv: 0 or 1 (zero padding in real terms: the input zero point)
    pool: int = 0  #: conv: max-pool kernel after the ReLU, 0 (none), 2 or 3
    pool_stride: int = 0  #: conv: the max-pool's stride (2), 0 without a pool

    @property
    def in_features(self):
        """Inputs of a Linear layer; input channels of a conv layer."""
        return self.weight.shape[1]

    @property
    def out_features(self):
        """Outputs of a Linear layer; output channels of a conv layer."""
        return self.weight.shape[0]

    @property
    def is_conv(self):
        return self.kind == "conv"

    @property
    def kernel(self):
        """A conv layer's kernel size (square), 0 for a Linear layer."""
        return self.weight.shape[2] if self.is_conv else 0

    def output_hw(self, height: int, width: int) -> tuple[int, int]:
        """A conv layer's output height and width (after the pool) for an input of
        ``height x width``, rounded down as PyTorch does (may be < 1: see validate)."""
        h = conv_output_size(height, self.kernel, self.stride, self.padding)
        w = conv_output_size(width, self.kernel, self.stride, self.padding)
        if self.pool:
            h = conv_output_size(h, self.pool, self.pool_stride, 0)
            w = conv_output_size(w, self.pool, self.pool_stride, 0)
        return h, w


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output length of a convolution or pool along one axis (floor, as PyTorch)."""
    return (size + 2 * padding - kernel) // stride + 1


def _content_sha256(arrays, header):
    """sha256 of the header (without its hash) and every array's name, dtype, shape, bytes."""
    h = hashlib.sha256()
    h.update(
        json.dumps(
            {k: v for k, v in header.items() if k != "content_sha256"}, sort_keys=True
        ).encode()
    )
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"\0{name}\0{a.dtype.str}\0{list(a.shape)}\0".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _in_range(a, lo, hi):
    a = np.asarray(a)
    return a.dtype.kind in "iu" and bool(np.all((a >= lo) & (a <= hi)))


@dataclasses.dataclass(frozen=True)
class QuantizedModel:
    """A stack of quantized layers (convolutions, then Linear layers), int8 in and
    int8 logits out.

    Members
    -------
    layers : tuple of QuantLayer
    meta : dict
    input_shape : tuple of int
        ``(C, H, W)`` for a CNN, ``(features,)`` for an MLP (the default when omitted).
        Inputs are int8 ``[N, C*H*W]`` flattened in NCHW order.
    """

    layers: tuple
    meta: dict
    input_shape: tuple = ()

    def __post_init__(self):
        shape = self.input_shape
        if not shape and self.layers:
            shape = (self.layers[0].in_features,)
        object.__setattr__(self, "input_shape", tuple(int(d) for d in shape))

    @property
    def in_features(self):
        """Flattened input size, ``prod(input_shape)``."""
        return math.prod(self.input_shape)

    @property
    def out_features(self):
        return self.layers[-1].out_features

    @property
    def is_cnn(self):
        return any(layer.is_conv for layer in self.layers)

    def shapes(self) -> list[tuple]:
        """The activation shape at every layer boundary (``len(layers) + 1`` entries):
        ``input_shape``, then ``(C, H, W)`` after each conv layer (its pool included) and
        ``(n,)`` after each Linear layer. Assumes a valid model (see :meth:`validate`)."""
        shapes = [self.input_shape]
        for layer in self.layers:
            if layer.is_conv:
                shapes.append((layer.out_features, *layer.output_hw(*shapes[-1][1:])))
            else:
                shapes.append((layer.out_features,))
        return shapes

    @property
    def sizes(self):
        """Flattened size at every layer boundary (``[in, hidden..., out]`` for an MLP)."""
        return [math.prod(shape) for shape in self.shapes()]

    def quantize_input(self, images: np.ndarray) -> np.ndarray:
        """uint8 images -> int8 network input (``pixel / 255`` quantized like PyTorch)."""
        images = np.asarray(images)
        if images.ndim != 2 or images.shape[1] != self.in_features:
            raise ValueError(f"images must be [N, {self.in_features}], not {list(images.shape)}")
        first = self.layers[0]
        x = images.astype(np.float32) / np.float32(255.0)
        q = np.rint(x / np.float32(first.input_scale)) + (first.input_zero_point + 128)
        return (np.clip(q, 0, 255) - 128).astype(np.int8)

    def quantize_float(self, x: np.ndarray) -> np.ndarray:
        """float inputs ``[N, in_features]`` -> int8 network input, as ONNX QuantizeLinear
        does: ``x / input_scale`` in float32, rounded half to even, plus the zero point,
        saturated (a uint8 quantization shifted by 128 gives the same int8 values)."""
        x = np.asarray(x, np.float32)
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"inputs must be [N, {self.in_features}], not {list(x.shape)}")
        first = self.layers[0]
        q = np.rint(x / np.float32(first.input_scale)) + first.input_zero_point
        return np.clip(q, -128, 127).astype(np.int8)

    def save(self, path: str) -> None:
        """Write the model (format version 2, see the module's docstring) atomically."""
        self.validate()
        arrays = {}
        layers_meta = []
        for i, layer in enumerate(self.layers):
            for name, dtype in _ARRAYS.items():
                arrays[f"l{i}_{name}"] = np.ascontiguousarray(getattr(layer, name), dtype)
            lm = {k: kind(getattr(layer, k)) for k, kind in _SCALARS.items()}
            for k, default in _LAYOUT_SCALARS.items():
                if getattr(layer, k) != default:
                    lm[k] = type(default)(getattr(layer, k))
            layers_meta.append(lm)
        header = {"format": FORMAT, "version": VERSION, "layers": layers_meta, "meta": self.meta}
        if self.input_shape != (self.layers[0].in_features,):
            header["input_shape"] = list(self.input_shape)
        header["content_sha256"] = _content_sha256(arrays, header)
        arrays["header"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
        with atomic_write(path) as f:
            np.savez_compressed(f, **arrays)

    @classmethod
    def load(cls, path: str) -> "QuantizedModel":
        """Read a file written by :meth:`save`.

        Raises
        ------
        QuantError
            Missing, corrupt, another format or version (version 1: written by an
            older quantizer, to be regenerated), content that does not match its
            recorded hash, or inconsistent layers.
        """
        if not os.path.exists(path):
            raise QuantError(f"{path}: no such quantized model")
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            header = json.loads(arrays.pop("header").tobytes())
        except Exception as exc:
            raise QuantError(
                f"{path}: not a readable quantized model ({type(exc).__name__})"
            ) from None
        if not isinstance(header, dict):
            raise QuantError(f"{path}: not a readable quantized model (header is not a dict)")
        if header.get("format") == FORMAT and header.get("version") == 1:
            raise QuantError(
                f"{path}: quantized-model format version 1 is out of date (version "
                f"{VERSION} adds the rounding mode and a content hash); run "
                f"`make quantize` (python -m systolic.host quantize) to write it again"
            )
        if header.get("format") != FORMAT or header.get("version") != VERSION:
            raise QuantError(
                f"{path}: format {header.get('format')!r} version "
                f"{header.get('version')!r}, expected {FORMAT!r} version {VERSION}"
            )
        if header.get("content_sha256") != _content_sha256(arrays, header):
            raise QuantError(
                f"{path}: content does not match its recorded hash (the file was "
                f"altered or damaged)"
            )
        layers_meta = header.get("layers")
        if not isinstance(layers_meta, list) or not isinstance(header.get("meta", {}), dict):
            raise QuantError(f"{path}: header has no list of layers")
        layers = []
        for i, lm in enumerate(layers_meta):
            if (
                not isinstance(lm, dict)
                or not set(_SCALARS) <= set(lm)
                or not set(lm) <= set(_SCALARS) | set(_LAYOUT_SCALARS)
            ):
                raise QuantError(
                    f"{path}: layer {i} parameters must be exactly {', '.join(_SCALARS)}"
                    f" (and optionally {', '.join(_LAYOUT_SCALARS)})"
                )
            for k, default in _LAYOUT_SCALARS.items():
                if k in lm and type(lm[k]) is not type(default):
                    raise QuantError(
                        f"{path}: layer {i} {k} must be {type(default).__name__}, not {lm[k]!r}"
                    )
            for k, kind in _SCALARS.items():
                ok = (
                    (isinstance(lm[k], (int, float)) and not isinstance(lm[k], bool))
                    if kind is float
                    else type(lm[k]) is kind
                )
                if not ok:
                    raise QuantError(
                        f"{path}: layer {i} {k} must be {kind.__name__}, not {lm[k]!r}"
                    )
            fields = {}
            for name, dtype in _ARRAYS.items():
                a = arrays.pop(f"l{i}_{name}", None)
                if a is None or a.dtype != dtype:
                    raise QuantError(
                        f"{path}: layer {i} {name} is missing or not {np.dtype(dtype).name}"
                    )
                fields[name] = a
            scalars = {k: _SCALARS[k](v) for k, v in lm.items() if k in _SCALARS}
            scalars.update({k: v for k, v in lm.items() if k in _LAYOUT_SCALARS})
            layers.append(QuantLayer(**fields, **scalars))
        if arrays:
            raise QuantError(f"{path}: arrays {', '.join(sorted(arrays))} belong to no layer")
        input_shape = header.get("input_shape", [])
        if not isinstance(input_shape, list) or not all(
            type(d) is int and d >= 1 for d in input_shape
        ):
            raise QuantError(f"{path}: input_shape must be a list of positive integers")
        model = cls(tuple(layers), header.get("meta", {}), tuple(input_shape))
        model.validate(path)
        return model

    def _validate_layout(self, i, layer, shape, what):
        """Check layer ``i``'s kind, geometry and weight shape against its input ``shape``."""
        if layer.kind not in ("linear", "conv"):
            raise QuantError(
                f"{what}: layer {i} kind must be 'linear' or 'conv', not {layer.kind!r}"
            )
        if not _in_range(layer.weight, -128, 127):
            raise QuantError(f"{what}: layer {i} weights must be int8")
        if not layer.is_conv:
            if np.ndim(layer.weight) != 2:
                raise QuantError(f"{what}: layer {i} weights must be a 2-D int8 matrix")
            for k, default in _LAYOUT_SCALARS.items():
                if k != "kind" and getattr(layer, k) != default:
                    raise QuantError(
                        f"{what}: layer {i} is Linear, its {k} must be {default}, "
                        f"not {getattr(layer, k)!r}"
                    )
            given = math.prod(shape)
            if layer.in_features != given:
                src = f"layer {i - 1}" if i else "the input"
                raise QuantError(
                    f"{what}: layer {i} takes {layer.in_features} inputs but {src} gives {given}"
                    + (f" ({'x'.join(map(str, shape))} flattened)" if len(shape) > 1 else "")
                )
            return
        if np.ndim(layer.weight) != 4 or layer.weight.shape[2] != layer.weight.shape[3]:
            raise QuantError(
                f"{what}: layer {i} (conv) weights must be int8 [out, in, k, k], "
                f"not {list(np.shape(layer.weight))}"
            )
        checks = (
            ("kernel", layer.kernel, CONV_KERNELS),
            ("stride", layer.stride, CONV_STRIDES),
            ("padding", layer.padding, CONV_PADDINGS),
            ("pool", layer.pool, (0, *POOL_KERNELS)),
            ("pool_stride", layer.pool_stride, POOL_STRIDES if layer.pool else (0,)),
        )
        for name, value, allowed in checks:
            if (
                not isinstance(value, (int, np.integer))
                or isinstance(value, bool)
                or value not in allowed
            ):
                raise QuantError(
                    f"{what}: layer {i} (conv) {name} must be one of "
                    f"{', '.join(map(str, allowed))}, not {value!r}"
                )
        if len(shape) != 3:
            raise QuantError(
                f"{what}: layer {i} is a conv layer but its input is "
                f"{'the network input' if i == 0 else 'a Linear layer output'} of shape "
                f"{tuple(shape)}, not (C, H, W)"
            )
        if layer.in_features != shape[0]:
            src = f"layer {i - 1}" if i else "the input"
            raise QuantError(
                f"{what}: layer {i} takes {layer.in_features} channels but {src} gives {shape[0]}"
            )

    def validate(self, what="quantized model"):
        """Check shapes and ranges against the arithmetic contract.

        Raises
        ------
        QuantError
            Naming ``what`` and the layer.
        """
        if not self.layers:
            raise QuantError(f"{what}: no layers")
        if not self.input_shape or not all(isinstance(d, int) and d >= 1 for d in self.input_shape):
            raise QuantError(f"{what}: input_shape must be positive sizes, not {self.input_shape}")
        shape = self.input_shape
        for i, layer in enumerate(self.layers):
            self._validate_layout(i, layer, shape, what)
            if layer.is_conv:
                shape = (layer.out_features, *layer.output_hw(*shape[1:]))
                if min(shape[1:]) < 1:
                    raise QuantError(
                        f"{what}: layer {i} (conv) output would be {shape[1]}x{shape[2]}; "
                        f"its input is too small for its kernel, stride and pool"
                    )
            else:
                shape = (layer.out_features,)
            n = layer.out_features
            if any(
                np.shape(getattr(layer, k)) != (n,)
                for k in ("bias", "mult", "shift", "weight_scale")
            ):
                raise QuantError(f"{what}: layer {i} parameters do not match {n} outputs")
            if not _in_range(layer.bias, -(2**31), 2**31 - 1):
                raise QuantError(f"{what}: layer {i} bias out of the int32 range")
            if not _in_range(layer.mult, 0, 2**32 - 1) or not _in_range(layer.shift, 0, 63):
                raise QuantError(
                    f"{what}: layer {i} multiplier or shift out of range "
                    f"(mult in [0, 2**32), shift in [0, 63])"
                )
            for k in ("input_zero_point", "output_zero_point"):
                zp = getattr(layer, k)
                if (
                    not isinstance(zp, (int, np.integer))
                    or isinstance(zp, bool)
                    or not -128 <= zp <= 127
                ):
                    raise QuantError(
                        f"{what}: layer {i} {k} must be an integer in [-128, 127], not {zp!r}"
                    )
            for k in ("relu", "round_even"):
                if not isinstance(getattr(layer, k), (bool, np.bool_)):
                    raise QuantError(
                        f"{what}: layer {i} {k} must be a bool, not {getattr(layer, k)!r}"
                    )


def multiplier_shift(scale) -> tuple[np.ndarray, np.ndarray]:
    """``scale ~= mult / 2**shift`` with ``mult`` in [2**30, 2**31) when possible."""
    scale = np.asarray(scale, np.float64)
    mult = np.zeros(scale.shape, np.int64)
    shift = np.zeros(scale.shape, np.int64)
    for i, s in np.ndenumerate(scale):
        if s <= 0:
            continue
        frac, exp = math.frexp(s)  # s = frac * 2**exp, frac in [0.5, 1)
        m, sh = round(frac * (1 << 31)), 31 - exp
        if m == 1 << 31:
            m, sh = m // 2, sh - 1
        while sh > 63:  # tiny scale: lose precision, keep range
            m, sh = m >> 1, sh - 1
        if sh < 0:
            raise ValueError(f"requantization scale {s} is too large (>= 2**31)")
        mult[i], shift[i] = m, sh
    return mult, shift


def file_sha256(path: str) -> str:
    """sha256 (hex) of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def is_quantized_model_file(path: str) -> bool:
    """Whether ``path`` holds a quantized model (an ``.npz`` archive with a ``header``),
    judged by its content, whatever its name."""
    try:
        with zipfile.ZipFile(path) as z:
            return "header.npy" in z.namelist()
    except (OSError, zipfile.BadZipFile):
        return False


def _random_layer(rng, weight_shape, zp_in, relu, spread=None, **layout):
    """One random layer; the requantization scale keeps outputs mostly in range: by
    default ~ 1 / (sqrt(reduction) * 64 * 16) for weights in [-127, 127]; given the RMS
    ``spread`` of ``x - zx``, outputs get a spread of about 16 (before the ReLU)."""
    n, k = weight_shape[0], math.prod(weight_shape[1:])
    zp_out = int(rng.integers(-128, -100)) if relu else int(rng.integers(-20, 20))
    gain = 1 / (64 * 16) if spread is None else 16 / (73 * spread)
    # the bias: up to about a quarter of the accumulators' spread
    bias = 1 << 14 if spread is None else int(73 * spread * math.sqrt(k) / 4) + 1
    scale = rng.uniform(0.5, 2.0, n) * gain / math.sqrt(k)
    mult, shift = multiplier_shift(scale)
    layer = QuantLayer(
        weight=rng.integers(-127, 128, weight_shape).astype(np.int8),
        bias=rng.integers(-bias, bias, n).astype(np.int32),
        input_zero_point=zp_in,
        mult=mult,
        shift=shift,
        output_zero_point=zp_out,
        relu=relu,
        input_scale=1.0,
        weight_scale=np.ones(n),
        output_scale=1.0,
        **layout,
    )
    return layer, zp_out


def random_quantized_model(sizes, seed: int = 0, relu_last: bool = False) -> "QuantizedModel":
    """A random but valid quantized network, for tests of the compiler and backends."""
    rng = np.random.default_rng(seed)
    layers = []
    zp_in = int(rng.integers(-128, 128))
    for i, (k, n) in enumerate(itertools.pairwise(sizes)):
        relu = bool(relu_last or i < len(sizes) - 2)
        layer, zp_in = _random_layer(rng, (n, k), zp_in, relu)
        layers.append(layer)
    return QuantizedModel(tuple(layers), {"random_seed": seed, "sizes": list(sizes)})


_CONV_KEYS = ("out", "kernel", "stride", "padding", "pool")


def random_quantized_cnn(
    input_shape, convs, linears=(), seed: int = 0, relu_last: bool = False
) -> "QuantizedModel":
    """A random but valid quantized CNN, for tests of the compiler and backends.

    Parameters
    ----------
    input_shape : (C, H, W)
    convs : list of dict or tuple
        One per conv layer: ``out`` channels, ``kernel`` (1..5), then optionally
        ``stride`` (1), ``padding`` (0) and ``pool`` (0, 2 or 3; its stride is 2), as a
        dict with those keys or a tuple in that order.
    linears : list of int
        Output sizes of the Linear layers after the flattened conv output.
    seed : int
    relu_last : bool
        ReLU on the last layer too (every other layer has one).

    Raises
    ------
    QuantError
        When the geometry is invalid (see :meth:`QuantizedModel.validate`).
    """
    rng = np.random.default_rng(seed)
    shape = tuple(int(d) for d in input_shape)
    if len(shape) != 3:
        raise QuantError(f"input_shape must be (C, H, W), not {tuple(input_shape)}")
    specs = []
    for conv in convs:
        spec = dict(zip(_CONV_KEYS, conv)) if not isinstance(conv, dict) else dict(conv)
        if set(spec) - set(_CONV_KEYS) or not {"out", "kernel"} <= set(spec):
            raise QuantError(f"conv spec {conv!r}: needs out and kernel (then {_CONV_KEYS[2:]})")
        specs.append(spec)
    total = len(specs) + len(linears)
    layers = []
    zp_in = int(rng.integers(-128, 128))
    channels, features = shape[0], None
    # RMS of x - zx: uniform int8 inputs, then ReLU (and max-pool) outputs, measured
    spread = 74.0
    for i, spec in enumerate(specs):
        relu = bool(relu_last or i < total - 1)
        pool = int(spec.get("pool", 0))
        k = int(spec["kernel"])
        layer, zp_in = _random_layer(
            rng,
            (int(spec["out"]), channels, k, k),
            zp_in,
            relu,
            spread,
            kind="conv",
            stride=int(spec.get("stride", 1)),
            padding=int(spec.get("padding", 0)),
            pool=pool,
            pool_stride=2 if pool else 0,
        )
        layers.append(layer)
        channels, spread = layer.out_features, 12.0
    model = QuantizedModel(tuple(layers), {}, shape)
    if layers:
        model.validate("random CNN")
        features = model.sizes[-1]
    else:
        features = math.prod(shape)
    for j, n in enumerate(linears):
        relu = bool(relu_last or len(specs) + j < total - 1)
        layer, zp_in = _random_layer(rng, (int(n), features), zp_in, relu, spread)
        layers.append(layer)
        features, spread = int(n), 12.0
    meta = {
        "random_seed": seed,
        "input_shape": list(shape),
        "convs": [{k: int(v) for k, v in spec.items()} for spec in specs],
        "linears": [int(n) for n in linears],
    }
    model = QuantizedModel(tuple(layers), meta, shape)
    model.validate("random CNN")
    return model
