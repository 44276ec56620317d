"""Post-training int8 quantization, and PyTorch's own int8 model as the reference.

``python -m host.quantize`` (``make quantize``) quantizes the default checkpoint with
``torch.ao.quantization`` (eager mode: per-channel symmetric int8 weights, per-tensor
affine activations calibrated with min/max observers on training images), extracts
the integer parameters into a :class:`QuantizedModel` (the hardware's arithmetic:
int32 bias, per-channel integer multiplier and right shift), and reports how the
integer golden model compares with PyTorch's int8 model on the test split.
"""

import argparse
import copy
import dataclasses
import hashlib
import io
import json
import math
import os
import sys
import warnings

import numpy as np
import torch
from torch import nn

from . import golden
from .data import DataError, load_mnist
from .files import atomic_write
from .train import DEFAULT_CHECKPOINT, CheckpointError, Mlp, load_checkpoint, to_input

__all__ = ["QuantLayer", "QuantizedModel", "QuantError", "quantize_checkpoint",
           "quantize_model", "torch_int8_logits", "random_quantized_model",
           "multiplier_shift", "report", "DEFAULT_QUANTIZED"]

DEFAULT_QUANTIZED = os.path.join(os.path.dirname(DEFAULT_CHECKPOINT), "mlp.qnpz")
FORMAT = "systolic-mnist-qmodel"
VERSION = 1


class QuantError(ValueError):
    """A quantized-model file that cannot be read or is inconsistent."""


@dataclasses.dataclass(frozen=True)
class QuantLayer:
    """One quantized Linear layer (see docs/ARCHITECTURE.md for the arithmetic)."""
    weight: np.ndarray        #: int8 [out, in]
    bias: np.ndarray          #: int32 [out], not folded with the input zero point
    input_zero_point: int     #: -128..127
    mult: np.ndarray          #: int64 [out], 0 <= mult < 2**31
    shift: np.ndarray         #: int64 [out], 0..63
    output_zero_point: int
    relu: bool
    input_scale: float
    weight_scale: np.ndarray  #: float64 [out]
    output_scale: float

    @property
    def in_features(self):
        return self.weight.shape[1]

    @property
    def out_features(self):
        return self.weight.shape[0]


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
        arrays = {}
        layers_meta = []
        for i, layer in enumerate(self.layers):
            for name in ("weight", "bias", "mult", "shift", "weight_scale"):
                arrays[f"l{i}_{name}"] = getattr(layer, name)
            layers_meta.append({k: getattr(layer, k) for k in (
                "input_zero_point", "output_zero_point", "relu", "input_scale", "output_scale")})
        header = {"format": FORMAT, "version": VERSION, "layers": layers_meta, "meta": self.meta}
        arrays["header"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
        with atomic_write(path) as f:
            np.savez_compressed(f, **arrays)

    @classmethod
    def load(cls, path):
        """Read a file written by :meth:`save`.

        Raises
        ------
        QuantError
            Missing, corrupt, another format/version, or inconsistent shapes.
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
        if header.get("format") != FORMAT or header.get("version") != VERSION:
            raise QuantError(f"{path}: format {header.get('format')!r} version "
                             f"{header.get('version')!r}, expected {FORMAT!r} version {VERSION}")
        layers = []
        try:
            for i, lm in enumerate(header["layers"]):
                layer = QuantLayer(
                    weight=arrays[f"l{i}_weight"].astype(np.int8),
                    bias=arrays[f"l{i}_bias"].astype(np.int32),
                    mult=arrays[f"l{i}_mult"].astype(np.int64),
                    shift=arrays[f"l{i}_shift"].astype(np.int64),
                    weight_scale=arrays[f"l{i}_weight_scale"].astype(np.float64), **lm)
                layers.append(layer)
        except (KeyError, TypeError) as exc:
            raise QuantError(f"{path}: layer data missing or malformed ({exc})") from None
        model = cls(tuple(layers), header.get("meta", {}))
        model.validate(path)
        return model

    def validate(self, what="quantized model"):
        for i, layer in enumerate(self.layers):
            n = layer.out_features
            if any(np.shape(getattr(layer, k)) != (n,) for k in ("bias", "mult", "shift")):
                raise QuantError(f"{what}: layer {i} parameters do not match {n} outputs")
            if i and layer.in_features != self.layers[i - 1].out_features:
                raise QuantError(f"{what}: layer {i} takes {layer.in_features} inputs but "
                                 f"layer {i - 1} gives {self.layers[i - 1].out_features}")
            if np.any((layer.mult < 0) | (layer.mult >= 1 << 31)) or \
                    np.any((layer.shift < 0) | (layer.shift > 63)):
                raise QuantError(f"{what}: layer {i} multiplier or shift out of range")


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
    def __init__(self, model):
        super().__init__()
        self.quant = torch.ao.quantization.QuantStub()
        self.net = copy.deepcopy(model.net)
        self.dequant = torch.ao.quantization.DeQuantStub()

    def forward(self, x):
        return self.dequant(self.net(self.quant(x)))


def quantize_model(model, calibration_images):
    """PyTorch eager post-training quantization of an :class:`Mlp`.

    Returns ``(QuantizedModel, torch int8 module)``; both use the same scales and zero
    points, read back from the converted PyTorch model.
    """
    from torch.ao import quantization as tq

    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=".*quantize_per_(tensor|channel).*deprecated")
    torch.backends.quantized.engine = "fbgemm"
    qm = _Quantizable(model).eval()
    mods = list(qm.net)
    fuse = [[str(i), str(i + 1)] for i, m in enumerate(mods)
            if isinstance(m, nn.Linear) and i + 1 < len(mods) and isinstance(mods[i + 1], nn.ReLU)]
    if fuse:
        qm.net = tq.fuse_modules(qm.net, fuse)
    qm.qconfig = tq.QConfig(
        activation=tq.MinMaxObserver.with_args(dtype=torch.quint8,
                                               qscheme=torch.per_tensor_affine),
        weight=tq.PerChannelMinMaxObserver.with_args(dtype=torch.qint8,
                                                     qscheme=torch.per_channel_symmetric))
    tq.prepare(qm, inplace=True)
    with torch.no_grad():
        qm(to_input(calibration_images))
    tq.convert(qm, inplace=True)

    in_scale, in_zp = float(qm.quant.scale), int(qm.quant.zero_point)
    layers = []
    linears = [m for m in qm.net if hasattr(m, "weight") and callable(m.weight)]
    for lin in linears:
        wq = lin.weight()
        w_scale = wq.q_per_channel_scales().double().numpy()
        out_scale, out_zp = float(lin.scale), int(lin.zero_point)
        bias = lin.bias().detach().double().numpy()
        acc_scale = in_scale * w_scale
        mult, shift = multiplier_shift(acc_scale / out_scale)
        layers.append(QuantLayer(
            weight=wq.int_repr().numpy().astype(np.int8),
            bias=np.clip(np.rint(bias / acc_scale), -2**31, 2**31 - 1).astype(np.int32),
            input_zero_point=in_zp - 128, mult=mult, shift=shift,
            output_zero_point=out_zp - 128, relu="ReLU" in type(lin).__name__,
            input_scale=in_scale, weight_scale=w_scale, output_scale=out_scale))
        in_scale, in_zp = out_scale, out_zp
    return QuantizedModel(tuple(layers), {}), qm


def torch_int8_logits(torch_int8, images):
    """PyTorch's int8 model on uint8 images: its final int8 outputs (signed domain)."""
    x = to_input(images)
    with torch.no_grad():
        q = torch_int8.net(torch_int8.quant(x))
    return (q.int_repr().numpy().astype(np.int16) - 128).astype(np.int8)


def _file_hash(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:16]


def quantize_checkpoint(checkpoint_path, data, calibration=1000):
    """Quantize a float checkpoint, calibrating on the first training images."""
    model, meta = load_checkpoint(checkpoint_path)
    qmodel, tq_model = quantize_model(model, data.train_images[:calibration])
    qmeta = {"checkpoint": os.path.basename(checkpoint_path),
             "checkpoint_sha256": _file_hash(checkpoint_path), "sizes": meta["sizes"],
             "calibration_images": int(min(calibration, len(data.train_images))),
             "data": data.source, "torch_version": str(torch.__version__)}
    return QuantizedModel(qmodel.layers, qmeta), tq_model, model


def report(qmodel, tq_model, float_model, images, labels):
    """Accuracy of float, PyTorch int8 and golden; agreement golden vs PyTorch int8."""
    with torch.no_grad():
        float_pred = float_model(to_input(images)).argmax(1).numpy()
    torch_q = torch_int8_logits(tq_model, images)
    gold = golden.run(qmodel, qmodel.quantize_input(images))
    diff = np.abs(gold.astype(np.int16) - torch_q.astype(np.int16))
    return {
        "images": int(len(images)),
        "float_accuracy": float(np.mean(float_pred == labels)),
        "torch_int8_accuracy": float(np.mean(torch_q.argmax(1) == labels)),
        "golden_accuracy": float(np.mean(gold.argmax(1) == labels)),
        "argmax_agreement": float(np.mean(gold.argmax(1) == torch_q.argmax(1))),
        "logit_mismatches": int(np.count_nonzero(diff)),
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
        data = load_mnist(args.data_dir)
        qmodel, tq_model, float_model = quantize_checkpoint(args.model, data)
    except (DataError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    res = report(qmodel, tq_model, float_model, data.test_images, data.test_labels)
    qmodel = QuantizedModel(qmodel.layers, {**qmodel.meta, "report": res})
    qmodel.save(args.out)
    if args.json:
        with atomic_write(args.json, "w") as f:
            json.dump(res, f, indent=2)
    print(f"quantized {args.model} -> {args.out} ({data.describe()})")
    for key, value in res.items():
        print(f"{key:22s} {value:.4f}" if isinstance(value, float) else f"{key:22s} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
