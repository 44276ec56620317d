"""Post-training int8 quantization, and PyTorch's own int8 model as the reference.

``python -m host.quantize`` (``make quantize``) quantizes the default checkpoint with
``torch.ao.quantization`` (eager mode: per-channel symmetric int8 weights, per-tensor
affine activations calibrated with min/max observers on training images), extracts
the integer parameters into a :class:`QuantizedModel` (the hardware's arithmetic:
int32 bias, per-channel integer multiplier and right shift, round half to even like
PyTorch's fbgemm kernels), and reports how the integer golden model compares with
PyTorch's int8 model on the test split.

The quantized-model file (``.qnpz``, format version 2) is an ``.npz`` archive: per layer
the arrays ``l<i>_weight`` (int8), ``l<i>_bias`` (int32), ``l<i>_mult``, ``l<i>_shift``
(int64), ``l<i>_weight_scale`` (float64), and a JSON ``header`` with the layers' scalar
parameters, the metadata (the float checkpoint's path relative to the file and its
sha256, the calibration, the report) and ``content_sha256``, a hash of all of it that
:meth:`QuantizedModel.load` checks. Version 1 files (no rounding mode, no content hash)
are refused with a request to run ``make quantize`` again.
"""

import argparse
import contextlib
import copy
import dataclasses
import hashlib
import json
import math
import os
import sys
import warnings
import zipfile

import numpy as np
import torch
from torch import nn

from . import golden
from .data import load_mnist
from .files import atomic_write
from .train import (DEFAULT_CHECKPOINT, CheckpointError, Mlp, check_output_path,
                    load_checkpoint, to_input)

__all__ = ["QuantLayer", "QuantizedModel", "QuantError", "quantize_checkpoint",
           "quantize_model", "torch_int8_logits", "random_quantized_model",
           "multiplier_shift", "report", "load_for_inference", "is_quantized_model_file",
           "file_sha256", "DEFAULT_QUANTIZED", "FORMAT", "VERSION"]

DEFAULT_QUANTIZED = os.path.join(os.path.dirname(DEFAULT_CHECKPOINT), "mlp.qnpz")
FORMAT = "systolic-mnist-qmodel"
VERSION = 2
_SUPPORTED = "Linear, ReLU, Flatten and Dropout"
_ARRAYS = {"weight": np.int8, "bias": np.int32, "mult": np.int64, "shift": np.int64,
           "weight_scale": np.float64}
_SCALARS = {"input_zero_point": int, "output_zero_point": int, "relu": bool,
            "input_scale": float, "output_scale": float, "round_even": bool}


class QuantError(ValueError):
    """A model that cannot be quantized, or a quantized-model file that cannot be read or
    is inconsistent."""


@dataclasses.dataclass(frozen=True)
class QuantLayer:
    """One quantized Linear layer (see docs/ARCHITECTURE.md for the arithmetic)."""
    weight: np.ndarray        #: int8 [out, in]
    bias: np.ndarray          #: int32 [out], not folded with the input zero point
    input_zero_point: int     #: -128..127
    mult: np.ndarray          #: int64 [out], 0 <= mult < 2**32
    shift: np.ndarray         #: int64 [out], 0..63
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
    h.update(json.dumps({k: v for k, v in header.items() if k != "content_sha256"},
                        sort_keys=True).encode())
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

    def quantize_input(self, images):
        """uint8 images -> int8 network input (``pixel / 255`` quantized like PyTorch)."""
        images = np.asarray(images)
        if images.ndim != 2 or images.shape[1] != self.in_features:
            raise ValueError(f"images must be [N, {self.in_features}], not {list(images.shape)}")
        first = self.layers[0]
        x = images.astype(np.float32) / np.float32(255.0)
        q = np.rint(x / np.float32(first.input_scale)) + (first.input_zero_point + 128)
        return (np.clip(q, 0, 255) - 128).astype(np.int8)

    def save(self, path):
        """Write the model (format version 2, see the module's docstring) atomically."""
        self.validate()
        arrays = {}
        layers_meta = []
        for i, layer in enumerate(self.layers):
            for name, dtype in _ARRAYS.items():
                arrays[f"l{i}_{name}"] = np.ascontiguousarray(getattr(layer, name), dtype)
            layers_meta.append({k: kind(getattr(layer, k)) for k, kind in _SCALARS.items()})
        header = {"format": FORMAT, "version": VERSION, "layers": layers_meta,
                  "meta": self.meta}
        header["content_sha256"] = _content_sha256(arrays, header)
        arrays["header"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
        with atomic_write(path) as f:
            np.savez_compressed(f, **arrays)

    @classmethod
    def load(cls, path):
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
            raise QuantError(f"{path}: not a readable quantized model ({type(exc).__name__})") \
                from None
        if not isinstance(header, dict):
            raise QuantError(f"{path}: not a readable quantized model (header is not a dict)")
        if header.get("format") == FORMAT and header.get("version") == 1:
            raise QuantError(f"{path}: quantized-model format version 1 is out of date (version "
                             f"{VERSION} adds the rounding mode and a content hash); run "
                             f"`make quantize` (python -m host.quantize) to write it again")
        if header.get("format") != FORMAT or header.get("version") != VERSION:
            raise QuantError(f"{path}: format {header.get('format')!r} version "
                             f"{header.get('version')!r}, expected {FORMAT!r} version {VERSION}")
        if header.get("content_sha256") != _content_sha256(arrays, header):
            raise QuantError(f"{path}: content does not match its recorded hash (the file was "
                             f"altered or damaged)")
        layers_meta = header.get("layers")
        if not isinstance(layers_meta, list) or not isinstance(header.get("meta", {}), dict):
            raise QuantError(f"{path}: header has no list of layers")
        layers = []
        for i, lm in enumerate(layers_meta):
            if not isinstance(lm, dict) or set(lm) != set(_SCALARS):
                raise QuantError(f"{path}: layer {i} parameters must be exactly "
                                 f"{', '.join(_SCALARS)}")
            for k, kind in _SCALARS.items():
                ok = (isinstance(lm[k], (int, float)) and not isinstance(lm[k], bool)) \
                    if kind is float else type(lm[k]) is kind
                if not ok:
                    raise QuantError(f"{path}: layer {i} {k} must be {kind.__name__}, "
                                     f"not {lm[k]!r}")
            fields = {}
            for name, dtype in _ARRAYS.items():
                a = arrays.pop(f"l{i}_{name}", None)
                if a is None or a.dtype != dtype:
                    raise QuantError(f"{path}: layer {i} {name} is missing or not "
                                     f"{np.dtype(dtype).name}")
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
            if any(np.shape(getattr(layer, k)) != (n,) for k in ("bias", "mult", "shift",
                                                                  "weight_scale")):
                raise QuantError(f"{what}: layer {i} parameters do not match {n} outputs")
            if i and layer.in_features != self.layers[i - 1].out_features:
                raise QuantError(f"{what}: layer {i} takes {layer.in_features} inputs but "
                                 f"layer {i - 1} gives {self.layers[i - 1].out_features}")
            if not _in_range(layer.bias, -2**31, 2**31 - 1):
                raise QuantError(f"{what}: layer {i} bias out of the int32 range")
            if not _in_range(layer.mult, 0, 2**32 - 1) or not _in_range(layer.shift, 0, 63):
                raise QuantError(f"{what}: layer {i} multiplier or shift out of range "
                                 f"(mult in [0, 2**32), shift in [0, 63])")
            for k in ("input_zero_point", "output_zero_point"):
                zp = getattr(layer, k)
                if not isinstance(zp, (int, np.integer)) or isinstance(zp, bool) or \
                        not -128 <= zp <= 127:
                    raise QuantError(f"{what}: layer {i} {k} must be an integer in "
                                     f"[-128, 127], not {zp!r}")
            for k in ("relu", "round_even"):
                if not isinstance(getattr(layer, k), (bool, np.bool_)):
                    raise QuantError(f"{what}: layer {i} {k} must be a bool, "
                                     f"not {getattr(layer, k)!r}")


def multiplier_shift(scale):
    """``scale ~= mult / 2**shift`` with ``mult`` in [2**30, 2**31) when possible."""
    scale = np.asarray(scale, np.float64)
    mult = np.zeros(scale.shape, np.int64)
    shift = np.zeros(scale.shape, np.int64)
    for i, s in np.ndenumerate(scale):
        if s <= 0:
            continue
        frac, exp = math.frexp(s)           # s = frac * 2**exp, frac in [0.5, 1)
        m, sh = round(frac * (1 << 31)), 31 - exp
        if m == 1 << 31:
            m, sh = m // 2, sh - 1
        while sh > 63:                      # tiny scale: lose precision, keep range
            m, sh = m >> 1, sh - 1
        if sh < 0:
            raise ValueError(f"requantization scale {s} is too large (>= 2**31)")
        mult[i], shift[i] = m, sh
    return mult, shift


class _Quantizable(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.quant = torch.ao.quantization.QuantStub()
        self.net = net
        self.dequant = torch.ao.quantization.DeQuantStub()

    def forward(self, x):
        return self.dequant(self.net(self.quant(x)))


@contextlib.contextmanager
def _eager_quantization():
    """Silence the deprecation warnings of torch.ao's eager quantization (a move to PT2E
    is planned) for the calls inside only; the warning filters are restored after."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"torch\.ao\.quantization is deprecated",
                                category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=r".*quantize_per_(tensor|channel).*deprecated",
                                category=UserWarning)
        yield


def _leaves(seq, prefix):
    out = []
    for name, m in seq.named_children():
        if type(m) is nn.Sequential:
            out += _leaves(m, f"{prefix}{name}.")
        else:
            out.append((f"{prefix}{name}", m))
    return out


def _layers(model):
    """The model's layers, nested Sequentials flattened, as ``(position, name, module)``;
    refuses every layer the core cannot run (see :func:`quantize_model`)."""
    if isinstance(model, Mlp):
        seq, prefix = model.net, "net."
    elif type(model) is nn.Sequential:
        seq, prefix = model, ""
    else:
        raise QuantError(f"cannot quantize a {type(model).__name__}: expected an Mlp or an "
                         f"nn.Sequential of {_SUPPORTED} layers")
    layers = [(pos, name, m) for pos, (name, m) in enumerate(_leaves(seq, prefix))]
    last = None                     # the last Linear seen
    for pos, name, m in layers:
        kind, where = type(m), f"at position {pos} ({name})"
        if kind is nn.Linear:
            if last is not None and m.in_features != last[2].out_features:
                raise QuantError(f"Linear {where} takes {m.in_features} inputs but the Linear "
                                 f"before it ({last[1]}) gives {last[2].out_features}")
            for what, p in (("weights", m.weight), ("bias", m.bias)):
                if p is not None and not bool(torch.isfinite(p).all()):
                    raise QuantError(f"Linear {where} has non-finite {what} (NaN or inf)")
            last = (pos, name, m)
        elif kind is nn.ReLU:
            if pos == 0 or type(layers[pos - 1][2]) is not nn.Linear:
                raise QuantError(f"ReLU {where} does not directly follow a Linear: the core "
                                 f"applies ReLU only fused into the Linear before it")
        elif kind is nn.Flatten:
            if last is not None:
                raise QuantError(f"Flatten {where} comes after a Linear: it is only allowed "
                                 f"before the first Linear")
            if (m.start_dim, m.end_dim) != (1, -1):
                raise QuantError(f"Flatten {where} has start_dim={m.start_dim}, "
                                 f"end_dim={m.end_dim}: only the default (1, -1) is supported")
        elif kind is not nn.Dropout:
            raise QuantError(f"unsupported layer {kind.__name__} {where}: the core runs "
                             f"{_SUPPORTED}")
    if last is None:
        raise QuantError(f"the model has no Linear layer: the core runs {_SUPPORTED}")
    return layers


def quantize_model(model, calibration_images):
    """PyTorch eager post-training quantization of an :class:`Mlp` or ``nn.Sequential``.

    Parameters
    ----------
    model : Mlp or nn.Sequential
        Made of ``nn.Linear`` (with or without bias; no bias is a zero bias), ``nn.ReLU``
        directly after a Linear (fused into it), ``nn.Flatten`` (the default dimensions)
        before the first Linear, and ``nn.Dropout`` anywhere: the identity in eval mode,
        which is how the model is quantized and how PyTorch's int8 model runs. Nested
        ``nn.Sequential`` are flattened.
    calibration_images : uint8 [N, in_features]
        Pixels, scaled by 1/255 as in training.

    Returns
    -------
    (QuantizedModel, torch int8 module)
        Both use the same scales and zero points, read back from the converted PyTorch
        model. The layers requantize with round half to even, as fbgemm does.

    Raises
    ------
    QuantError
        Before any work: an unsupported layer (its type and position), a ReLU that does
        not directly follow a Linear, a Flatten after a Linear, no Linear, Linear widths
        that do not chain, non-finite weights or biases, or images whose width is not the
        first Linear's input width.
    """
    from torch.ao import quantization as tq

    layers = _layers(model)
    first_name, first = next((name, m) for _, name, m in layers if type(m) is nn.Linear)
    images = np.asarray(calibration_images)
    if images.ndim != 2 or images.shape[1] != first.in_features:
        got = f"{images.shape[1]} values each" if images.ndim == 2 else \
            f"the shape {list(images.shape)}"
        raise QuantError(f"the first Linear ({first_name}) takes {first.in_features} inputs, "
                         f"but the calibration images have {got}")
    if len(images) == 0:
        raise QuantError("no calibration images")

    torch.backends.quantized.engine = "fbgemm"
    kept = [copy.deepcopy(m) for _, _, m in layers if type(m) in (nn.Linear, nn.ReLU)]
    qm = _Quantizable(nn.Sequential(*kept)).eval()
    fuse = [[str(i), str(i + 1)] for i, m in enumerate(kept)
            if type(m) is nn.Linear and i + 1 < len(kept) and type(kept[i + 1]) is nn.ReLU]
    with _eager_quantization():
        if fuse:
            qm.net = tq.fuse_modules(qm.net, fuse)
        qm.qconfig = tq.QConfig(
            activation=tq.MinMaxObserver.with_args(dtype=torch.quint8,
                                                   qscheme=torch.per_tensor_affine),
            weight=tq.PerChannelMinMaxObserver.with_args(dtype=torch.qint8,
                                                         qscheme=torch.per_channel_symmetric))
        tq.prepare(qm, inplace=True)
        with torch.no_grad():
            qm(to_input(images))
        tq.convert(qm, inplace=True)

    in_scale, in_zp = float(qm.quant.scale), int(qm.quant.zero_point)
    out = []
    linears = [m for m in qm.net if isinstance(m, torch.ao.nn.quantized.Linear)]
    names = [name for _, name, m in layers if type(m) is nn.Linear]
    for name, lin in zip(names, linears, strict=True):
        wq = lin.weight()
        w_scale = wq.q_per_channel_scales().double().numpy()
        out_scale, out_zp = float(lin.scale), int(lin.zero_point)
        qbias = lin.bias()
        bias = np.zeros(len(w_scale)) if qbias is None else qbias.detach().double().numpy()
        acc_scale = in_scale * w_scale
        try:
            mult, shift = multiplier_shift(acc_scale / out_scale)
        except ValueError as exc:
            raise QuantError(f"Linear {name}: {exc}") from None
        out.append(QuantLayer(
            weight=wq.int_repr().numpy().astype(np.int8),
            bias=np.clip(np.rint(bias / acc_scale), -2**31, 2**31 - 1).astype(np.int32),
            input_zero_point=in_zp - 128, mult=mult, shift=shift,
            output_zero_point=out_zp - 128, relu="ReLU" in type(lin).__name__,
            input_scale=in_scale, weight_scale=w_scale, output_scale=out_scale,
            round_even=True))
        in_scale, in_zp = out_scale, out_zp
    return QuantizedModel(tuple(out), {}), qm


def torch_int8_logits(torch_int8, images):
    """PyTorch's int8 model on uint8 images: its final int8 outputs (signed domain)."""
    x = to_input(images)
    with torch.no_grad(), _eager_quantization():
        q = torch_int8.net(torch_int8.quant(x))
    return (q.int_repr().numpy().astype(np.int16) - 128).astype(np.int8)


def file_sha256(path):
    """sha256 (hex) of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def quantize_checkpoint(checkpoint_path, data, calibration=1000, relative_to=None):
    """Quantize a float checkpoint, calibrating on the first ``calibration`` training images.

    The metadata records the checkpoint's path (relative to the directory of the file
    ``relative_to`` when given, else absolute) and its sha256.

    Raises
    ------
    CheckpointError
        The checkpoint cannot be read, or its input width is not the images' (784).
    QuantError
        The network cannot be quantized (see :func:`quantize_model`), naming the file.
    """
    if isinstance(calibration, bool) or not isinstance(calibration, int) or calibration < 1:
        raise QuantError(f"calibration must be a positive number of images, "
                         f"not {calibration!r}")
    model, meta = load_checkpoint(checkpoint_path)
    sha = file_sha256(checkpoint_path)
    width = data.train_images.shape[1]
    if meta["sizes"][0] != width:
        raise CheckpointError(f"{checkpoint_path}: the network takes {meta['sizes'][0]} inputs, "
                              f"expected {width} (28x28 MNIST images)")
    try:
        qmodel, tq_model = quantize_model(model, data.train_images[:calibration])
    except QuantError as exc:
        raise QuantError(f"{checkpoint_path}: {exc}") from None
    full = os.path.abspath(checkpoint_path)
    ref = full if relative_to is None else \
        os.path.relpath(full, os.path.dirname(os.path.abspath(relative_to)))
    qmeta = {"checkpoint": ref, "checkpoint_sha256": sha, "sizes": meta["sizes"],
             "calibration_images": int(min(calibration, len(data.train_images))),
             "data": data.source, "torch_version": str(torch.__version__)}
    return QuantizedModel(qmodel.layers, qmeta), tq_model, model


def is_quantized_model_file(path):
    """Whether ``path`` holds a quantized model (an ``.npz`` archive with a ``header``),
    judged by its content, whatever its name."""
    try:
        with zipfile.ZipFile(path) as z:
            return "header.npy" in z.namelist()
    except (OSError, zipfile.BadZipFile):
        return False


def _same_layers(a, b):
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        for f in dataclasses.fields(QuantLayer):
            u, v = getattr(x, f.name), getattr(y, f.name)
            if isinstance(u, np.ndarray) or isinstance(v, np.ndarray):
                if not np.array_equal(u, v):
                    return False
            elif u != v:
                return False
    return True


def load_for_inference(path, data):
    """``(QuantizedModel, PyTorch int8 model, float model)`` from a float checkpoint
    (quantized here) or a quantized model (used as it is).

    A quantized model needs the float checkpoint it came from for the comparison with
    PyTorch: the file records its path (relative to the quantized model) and sha256.
    The checkpoint must have that hash, and quantizing it again (same calibration, on
    ``data``) must give exactly the stored layers.

    Raises
    ------
    QuantError, CheckpointError
        Naming the file and what does not match.
    """
    if not is_quantized_model_file(path):
        if not (path.endswith(".qnpz") and not zipfile.is_zipfile(path)):
            return quantize_checkpoint(path, data)
        # named as a quantized model but missing or not an archive: say so
    qmodel = QuantizedModel.load(path)
    meta = qmodel.meta
    ref, sha, n = meta.get("checkpoint"), meta.get("checkpoint_sha256"), \
        meta.get("calibration_images")
    if not isinstance(ref, str) or not isinstance(sha, str) or len(sha) != 64 or \
            not isinstance(n, int):
        raise QuantError(f"{path}: does not record its float checkpoint (path, full sha256 "
                         f"and calibration images); run `make quantize` to write it again")
    ckpt = os.path.normpath(os.path.join(os.path.dirname(path), ref))
    if not os.path.exists(ckpt):
        raise QuantError(f"{path}: its float checkpoint {ckpt} does not exist")
    if file_sha256(ckpt) != sha:
        raise QuantError(f"{ckpt}: sha256 does not match the one recorded in {path} (the "
                         f"checkpoint changed after it was quantized)")
    again, tq_model, float_model = quantize_checkpoint(ckpt, data, n)
    if not _same_layers(qmodel.layers, again.layers):
        raise QuantError(f"{path}: the quantized model does not come from {ckpt} with this "
                         f"quantizer and calibration data (it was calibrated on "
                         f"{meta.get('data')!r}, here {data.source!r})")
    return qmodel, tq_model, float_model


def _tie(layer, x):
    """Which outputs of ``layer`` on int8 ``x`` are exact ties in requantization
    (``acc * mult / 2**shift`` ends in exactly one half)."""
    acc = golden.wrap_int32(golden.matmul_i8(x, layer.weight, layer.input_zero_point) +
                            np.asarray(layer.bias, np.int64))
    p = acc * np.asarray(layer.mult, np.int64)
    shift = np.asarray(layer.shift, np.int64)
    half = np.where(shift > 0, np.left_shift(np.int64(1), np.maximum(shift - 1, 0)), 0)
    mask = np.where(shift > 0, (half - 1) * 2 + 1, 0)       # 2**shift - 1 without overflow
    return (shift > 0) & ((p & mask) == half)


def report(qmodel, tq_model, float_model, images, labels):
    """Accuracy of float, PyTorch int8 and golden; agreement golden vs PyTorch int8.

    ``logit_mismatches`` counts the logits that differ from PyTorch's int8 model;
    ``mismatches_at_ties`` those of them whose last requantization is an exact tie (a
    rounding-mode question), ``mismatches_not_at_ties`` the rest (float vs integer
    multiplier, or a difference carried from an earlier layer).
    """
    was_training = float_model.training
    float_model.eval()
    try:
        with torch.no_grad():
            float_pred = float_model(to_input(images)).argmax(1).numpy()
    finally:
        float_model.train(was_training)
    torch_q = torch_int8_logits(tq_model, images)
    x = qmodel.quantize_input(images)
    outs = golden.run_layers(qmodel, x)
    gold = outs[-1]
    diff = np.abs(gold.astype(np.int16) - torch_q.astype(np.int16))
    tie = _tie(qmodel.layers[-1], outs[-2] if len(outs) > 1 else x)
    return {
        "images": int(len(images)),
        "float_accuracy": float(np.mean(float_pred == labels)),
        "torch_int8_accuracy": float(np.mean(torch_q.argmax(1) == labels)),
        "golden_accuracy": float(np.mean(gold.argmax(1) == labels)),
        "argmax_agreement": float(np.mean(gold.argmax(1) == torch_q.argmax(1))),
        "logit_mismatches": int(np.count_nonzero(diff)),
        "mismatches_at_ties": int(np.count_nonzero((diff != 0) & tie)),
        "mismatches_not_at_ties": int(np.count_nonzero((diff != 0) & ~tie)),
        "logit_elements": int(diff.size),
        "max_lsb_diff": int(diff.max(initial=0)),
    }


def random_quantized_model(sizes, seed=0, relu_last=False):
    """A random but valid quantized network, for tests of the compiler and backends."""
    rng = np.random.default_rng(seed)
    layers = []
    zp_in = int(rng.integers(-128, 128))
    for i, (k, n) in enumerate(zip(sizes[:-1], sizes[1:])):
        last = i == len(sizes) - 2
        relu = bool(relu_last or not last)
        zp_out = int(rng.integers(-128, -100)) if relu else int(rng.integers(-20, 20))
        # a scale that keeps outputs mostly in range: ~ 1 / (sqrt(k) * 64 * 127)
        scale = rng.uniform(0.5, 2.0, n) / (math.sqrt(k) * 64 * 16)
        mult, shift = multiplier_shift(scale)
        layers.append(QuantLayer(
            weight=rng.integers(-127, 128, (n, k)).astype(np.int8),
            bias=rng.integers(-(1 << 14), 1 << 14, n).astype(np.int32),
            input_zero_point=zp_in, mult=mult, shift=shift, output_zero_point=zp_out,
            relu=relu, input_scale=1.0, weight_scale=np.ones(n), output_scale=1.0))
        zp_in = zp_out
    return QuantizedModel(tuple(layers), {"random_seed": seed, "sizes": list(sizes)})


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m host.quantize", description=__doc__)
    p.add_argument("--model", default=DEFAULT_CHECKPOINT, help="float checkpoint")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", default=DEFAULT_QUANTIZED, help="quantized model to write")
    p.add_argument("--json", default=None, help="write the report here")
    args = p.parse_args(argv)
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    try:
        check_output_path(args.out, "--out")
        if args.json:
            check_output_path(args.json, "--json")
        if os.path.abspath(args.out) == os.path.abspath(args.model):
            raise QuantError(f"--out {args.out} would overwrite the checkpoint it quantizes")
        data = load_mnist(args.data_dir)
        qmodel, tq_model, float_model = quantize_checkpoint(args.model, data,
                                                            relative_to=args.out)
        res = report(qmodel, tq_model, float_model, data.test_images, data.test_labels)
        qmodel = QuantizedModel(qmodel.layers, {**qmodel.meta, "report": res})
        qmodel.save(args.out)
        if args.json:
            with atomic_write(args.json, "w") as f:
                json.dump(res, f, indent=2)
    except (OSError, ValueError) as exc:   # DataError, CheckpointError, QuantError
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"quantized {args.model} -> {args.out} ({data.describe()})")
    for key, value in res.items():
        print(f"{key:22s} {value:.4f}" if isinstance(value, float) else f"{key:22s} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
