"""The quantized model: integer layers and their file (``.qnpz``, format version 2).

A :class:`QuantizedModel` is what the compiler and the golden model take: per layer
int8 weights, int32 bias, a per-channel integer multiplier and right shift
(``scale ~= mult / 2**shift``), zero points, ReLU and the rounding mode.

The file is an ``.npz`` archive: per layer the arrays ``l<i>_weight`` (int8),
``l<i>_bias`` (int32), ``l<i>_mult``, ``l<i>_shift`` (int64), ``l<i>_weight_scale``
(float64), and a JSON ``header`` with the layers' scalar parameters, the metadata (the
float checkpoint's path relative to the file and its sha256, the calibration, the
report) and ``content_sha256``, a hash of all of it that :meth:`QuantizedModel.load`
checks. Version 1 files (no rounding mode, no content hash) are refused with a request
to run ``make quantize`` again.
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
from .checkpoint import MODELS_DIR

__all__ = [
    "QuantLayer",
    "QuantizedModel",
    "QuantError",
    "multiplier_shift",
    "random_quantized_model",
    "is_quantized_model_file",
    "file_sha256",
    "DEFAULT_QUANTIZED",
    "FORMAT",
    "VERSION",
]

DEFAULT_QUANTIZED = os.path.join(MODELS_DIR, "mlp.qnpz")
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


class QuantError(ValueError):
    """A model that cannot be quantized, or a quantized-model file that cannot be read or
    is inconsistent."""


@dataclasses.dataclass(frozen=True)
class QuantLayer:
    """One quantized Linear layer (see docs/ARCHITECTURE.md for the arithmetic)."""

    weight: np.ndarray  #: int8 [out, in]
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

    @property
    def in_features(self):
        return self.weight.shape[1]

    @property
    def out_features(self):
        return self.weight.shape[0]


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
    """A stack of quantized Linear layers, int8 in and int8 logits out."""

    layers: tuple
    meta: dict

    @property
    def in_features(self):
        return self.layers[0].in_features

    @property
    def out_features(self):
        return self.layers[-1].out_features

    @property
    def sizes(self):
        return [self.in_features] + [layer.out_features for layer in self.layers]

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
            layers_meta.append({k: kind(getattr(layer, k)) for k, kind in _SCALARS.items()})
        header = {"format": FORMAT, "version": VERSION, "layers": layers_meta, "meta": self.meta}
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
                f"`make quantize` (python -m host quantize) to write it again"
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
            if not isinstance(lm, dict) or set(lm) != set(_SCALARS):
                raise QuantError(
                    f"{path}: layer {i} parameters must be exactly {', '.join(_SCALARS)}"
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
            layers.append(QuantLayer(**fields, **{k: _SCALARS[k](v) for k, v in lm.items()}))
        if arrays:
            raise QuantError(f"{path}: arrays {', '.join(sorted(arrays))} belong to no layer")
        model = cls(tuple(layers), header.get("meta", {}))
        model.validate(path)
        return model

    def validate(self, what="quantized model"):
        """Check shapes and ranges against the arithmetic contract.

        Raises
        ------
        QuantError
            Naming ``what`` and the layer.
        """
        if not self.layers:
            raise QuantError(f"{what}: no layers")
        for i, layer in enumerate(self.layers):
            if np.ndim(layer.weight) != 2 or not _in_range(layer.weight, -128, 127):
                raise QuantError(f"{what}: layer {i} weights must be a 2-D int8 matrix")
            n = layer.out_features
            if any(
                np.shape(getattr(layer, k)) != (n,)
                for k in ("bias", "mult", "shift", "weight_scale")
            ):
                raise QuantError(f"{what}: layer {i} parameters do not match {n} outputs")
            if i and layer.in_features != self.layers[i - 1].out_features:
                raise QuantError(
                    f"{what}: layer {i} takes {layer.in_features} inputs but "
                    f"layer {i - 1} gives {self.layers[i - 1].out_features}"
                )
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


def random_quantized_model(sizes, seed: int = 0, relu_last: bool = False) -> "QuantizedModel":
    """A random but valid quantized network, for tests of the compiler and backends."""
    rng = np.random.default_rng(seed)
    layers = []
    zp_in = int(rng.integers(-128, 128))
    for i, (k, n) in enumerate(itertools.pairwise(sizes)):
        last = i == len(sizes) - 2
        relu = bool(relu_last or not last)
        zp_out = int(rng.integers(-128, -100)) if relu else int(rng.integers(-20, 20))
        # a scale that keeps outputs mostly in range: ~ 1 / (sqrt(k) * 64 * 127)
        scale = rng.uniform(0.5, 2.0, n) / (math.sqrt(k) * 64 * 16)
        mult, shift = multiplier_shift(scale)
        layers.append(
            QuantLayer(
                weight=rng.integers(-127, 128, (n, k)).astype(np.int8),
                bias=rng.integers(-(1 << 14), 1 << 14, n).astype(np.int32),
                input_zero_point=zp_in,
                mult=mult,
                shift=shift,
                output_zero_point=zp_out,
                relu=relu,
                input_scale=1.0,
                weight_scale=np.ones(n),
                output_scale=1.0,
            )
        )
        zp_in = zp_out
    return QuantizedModel(tuple(layers), {"random_seed": seed, "sizes": list(sizes)})
