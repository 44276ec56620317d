"""Post-training int8 quantization in PyTorch, and PyTorch's own int8 model as the reference.

:func:`quantize_model` quantizes a float network with ``torch.ao.quantization`` (eager
mode: per-channel symmetric int8 weights, per-tensor affine activations calibrated with
min/max observers on training images) and extracts the integer parameters into a
:class:`~host.nn.qmodel.QuantizedModel` (the hardware's arithmetic: int32 bias,
per-channel integer multiplier and right shift, round half to even like PyTorch's
fbgemm kernels); :func:`report` compares the integer golden model with PyTorch's int8
model.
"""

import contextlib
import copy
import dataclasses
import os
import warnings
import zipfile

import numpy as np
import torch
from torch import nn

from .. import golden
from .checkpoint import CheckpointError, Mlp, load_checkpoint, to_input
from .qmodel import (
    QuantError,
    QuantizedModel,
    QuantLayer,
    file_sha256,
    is_quantized_model_file,
    multiplier_shift,
)

__all__ = ["quantize_model", "quantize_checkpoint", "torch_int8_logits", "report",
           "load_for_inference"]

_SUPPORTED = "Linear, ReLU, Flatten and Dropout"


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


def quantize_model(model: nn.Module,
                   calibration_images: np.ndarray) -> tuple[QuantizedModel, nn.Module]:
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


def torch_int8_logits(torch_int8: nn.Module, images: np.ndarray) -> np.ndarray:
    """PyTorch's int8 model on uint8 images: its final int8 outputs (signed domain)."""
    x = to_input(images)
    with torch.no_grad(), _eager_quantization():
        q = torch_int8.net(torch_int8.quant(x))
    return (q.int_repr().numpy().astype(np.int16) - 128).astype(np.int8)


def quantize_checkpoint(checkpoint_path: str, data, calibration: int = 1000,
                        relative_to: str | None = None) -> tuple[QuantizedModel, nn.Module, nn.Module]:
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


def _same_layers(a, b):
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        for f in dataclasses.fields(QuantLayer):
            u, v = getattr(x, f.name), getattr(y, f.name)
            if isinstance(u, np.ndarray) or isinstance(v, np.ndarray):
                if not np.array_equal(u, v):
                    return False
            elif u != v:
                return False
    return True


def load_for_inference(path: str, data) -> tuple[QuantizedModel, nn.Module, nn.Module]:
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


def report(qmodel: QuantizedModel, tq_model: nn.Module, float_model: nn.Module,
           images: np.ndarray, labels: np.ndarray) -> dict:
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
