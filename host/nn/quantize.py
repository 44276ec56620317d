"""MNIST networks to int8: quantize a checkpoint, load a model for inference, and compare
the integer golden model with PyTorch's execution of the quantized model.

:func:`quantize_model` captures a float network with ``torch.export``
(:mod:`.torch_frontend`) and quantizes it with PT2E to the core's arithmetic
(:mod:`.pt2e`); :func:`report` compares the golden model with the converted graph.
"""

import dataclasses
import math
import os
import zipfile

import numpy as np
import torch
from torch import nn

from .. import golden
from .checkpoint import CheckpointError, load_checkpoint, to_input
from .pt2e import TorchReference, quantize_dense
from .qmodel import QuantError, QuantizedModel, QuantLayer, file_sha256, is_quantized_model_file
from .torch_frontend import capture

__all__ = [
    "quantize_model",
    "quantize_checkpoint",
    "torch_int8_logits",
    "report",
    "load_for_inference",
]


def quantize_model(
    model: nn.Module, calibration_images: np.ndarray
) -> tuple[QuantizedModel, TorchReference]:
    """PT2E post-training quantization of a float MNIST network (see :mod:`.pt2e`).

    Parameters
    ----------
    model : nn.Module
        Any module that ``torch.export`` captures as a chain of the supported layers
        (:data:`systolic.host.nn.torch_frontend.SUPPORTED`); Dropout is the identity (eval mode)
        and a BatchNorm1d/2d is folded into the Linear or Conv2d before it. It takes the
        flat images ``[N, pixels]`` (a CNN unflattens them itself, as
        :class:`systolic.host.nn.checkpoint.Cnn` does).
    calibration_images : uint8 [N, pixels]
        Pixels, scaled by 1/255 as in training.

    Returns
    -------
    (QuantizedModel, TorchReference)
        The integer layers (round half to even) and PyTorch's execution of the converted
        model, with the same scales and zero points.

    Raises
    ------
    QuantError
        Before any quantization: an unsupported layer or op (its name and place), a
        convolution or pool geometry the core does not run, a ReLU, BatchNorm or
        max-pool not directly after its layer, no layer, widths that do not chain,
        non-finite weights, or images whose width is not the network's input.
    """
    images = np.asarray(calibration_images)
    if images.ndim != 2 or images.dtype != np.uint8:
        raise QuantError(
            f"the calibration images must be uint8 [N, pixels], not "
            f"{images.dtype} {list(images.shape)}"
        )
    if len(images) == 0:
        raise QuantError("no calibration images")
    x = to_input(images)
    layers = capture(model, x[:2])
    return quantize_dense(layers, x)


def torch_int8_logits(reference: TorchReference, images: np.ndarray) -> np.ndarray:
    """PyTorch's int8 output (the converted QDQ graph) on uint8 images."""
    return reference.int8(to_input(images))


def quantize_checkpoint(
    checkpoint_path: str, data, calibration: int = 1000, relative_to: str | None = None
) -> tuple[QuantizedModel, TorchReference, nn.Module]:
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
        raise QuantError(f"calibration must be a positive number of images, not {calibration!r}")
    model, meta = load_checkpoint(checkpoint_path)
    sha = file_sha256(checkpoint_path)
    width = data.train_images.shape[1]
    takes = math.prod(model.input_shape)
    if takes != width:
        raise CheckpointError(
            f"{checkpoint_path}: the network takes {takes} inputs, "
            f"expected {width} (28x28 MNIST images)"
        )
    try:
        qmodel, tq_model = quantize_model(model, data.train_images[:calibration])
    except QuantError as exc:
        raise QuantError(f"{checkpoint_path}: {exc}") from None
    full = os.path.abspath(checkpoint_path)
    ref = (
        full
        if relative_to is None
        else os.path.relpath(full, os.path.dirname(os.path.abspath(relative_to)))
    )
    qmeta = {
        "checkpoint": ref,
        "checkpoint_sha256": sha,
        **(
            {"model": "cnn", "channels": meta["channels"]}
            if meta.get("model") == "cnn"
            else {"sizes": meta["sizes"]}
        ),
        "calibration_images": int(min(calibration, len(data.train_images))),
        "data": data.source,
        "torch_version": str(torch.__version__),
    }
    return QuantizedModel(qmodel.layers, qmeta, qmodel.input_shape), tq_model, model


#: How far a scale (and the requantization multiplier ``mult / 2**shift`` made from
#: it) of a model quantized again may be from the stored one's, relatively. Calibration
#: runs the float model, whose fp32 matrix products differ in their last bits from one
#: CPU's kernels to another's (AVX2 or AVX-512): an observed range, and every scale and
#: multiplier made from it, then differs by about an ulp (6e-8). A different checkpoint
#: changes the int8 weights; different calibration data, a range by far more.
SCALE_RTOL = 1e-6


def _close(u, v, rtol=SCALE_RTOL):
    u, v = np.asarray(u, np.float64), np.asarray(v, np.float64)
    return u.shape == v.shape and bool(np.all(np.abs(u - v) <= rtol * np.abs(v)))


def _bias_scale(layer):
    """The scale of a layer's int32 bias, a channel each."""
    return layer.input_scale * np.asarray(layer.weight_scale, np.float64)


def _same_layers(a, b):
    """Whether ``a`` and ``b`` are one quantization of a network: every field equal,
    except that the scales and the multipliers may differ by :data:`SCALE_RTOL`, and an
    int32 bias (the float bias over ``input_scale * weight_scale``) by one where that
    product differs."""
    if len(a) != len(b):
        return False
    scales = {"input_scale", "weight_scale", "output_scale"}
    for x, y in zip(a, b, strict=True):
        for f in dataclasses.fields(QuantLayer):
            u, v = getattr(x, f.name), getattr(y, f.name)
            if f.name in scales:
                same = _close(u, v)
            elif f.name in ("mult", "shift"):
                same = _close(x.mult * 2.0**-x.shift, y.mult * 2.0**-y.shift)
            elif f.name == "bias":
                # a step only in the channels whose bias scale differs
                step = (_bias_scale(x) != _bias_scale(y)).astype(np.int64)
                same = u.shape == v.shape and bool(np.all(np.abs(u.astype(np.int64) - v) <= step))
            elif isinstance(u, np.ndarray) or isinstance(v, np.ndarray):
                same = np.array_equal(u, v)
            else:
                same = u == v
            if not same:
                return False
    return True


def load_for_inference(path: str, data) -> tuple[QuantizedModel, object, nn.Module | None]:
    """``(QuantizedModel, reference, float model)`` from a float checkpoint (quantized
    here), a quantized model (used as it is) or a quantized ONNX file (``.onnx``: the
    reference is ONNX Runtime and there is no float model).

    A quantized model needs the float checkpoint it came from for the comparison with
    PyTorch: the file records its path (relative to the quantized model) and sha256.
    The checkpoint must have that hash, and quantizing it again (same calibration, on
    ``data``) must give the stored layers: exactly, but for the last bits of the
    scales that the CPU's float kernels decide (:data:`SCALE_RTOL`). The golden model
    and the core run the stored layers.

    Raises
    ------
    QuantError, CheckpointError
        Naming the file and what does not match.
    """
    if path.endswith(".onnx"):
        from .onnx_frontend import OnnxReference, load_onnx

        qmodel = load_onnx(path)
        return qmodel, OnnxReference(path, qmodel), None
    if not is_quantized_model_file(path):
        if not (path.endswith(".qnpz") and not zipfile.is_zipfile(path)):
            return quantize_checkpoint(path, data)
        # named as a quantized model but missing or not an archive: say so
    qmodel = QuantizedModel.load(path)
    meta = qmodel.meta
    ref, sha, n = (
        meta.get("checkpoint"),
        meta.get("checkpoint_sha256"),
        meta.get("calibration_images"),
    )
    if (
        not isinstance(ref, str)
        or not isinstance(sha, str)
        or len(sha) != 64
        or not isinstance(n, int)
    ):
        raise QuantError(
            f"{path}: does not record its float checkpoint (path, full sha256 "
            f"and calibration images); run `make quantize` to write it again"
        )
    ckpt = os.path.normpath(os.path.join(os.path.dirname(path), ref))
    if not os.path.exists(ckpt):
        raise QuantError(f"{path}: its float checkpoint {ckpt} does not exist")
    if file_sha256(ckpt) != sha:
        raise QuantError(
            f"{ckpt}: sha256 does not match the one recorded in {path} (the "
            f"checkpoint changed after it was quantized)"
        )
    again, tq_model, float_model = quantize_checkpoint(ckpt, data, n)
    if not _same_layers(qmodel.layers, again.layers):
        raise QuantError(
            f"{path}: the quantized model does not come from {ckpt} with this "
            f"quantizer and calibration data (it was calibrated on "
            f"{meta.get('data')!r}, here {data.source!r})"
        )
    return qmodel, tq_model, float_model


def _tie(layer, x):
    """Which outputs of a Linear ``layer`` on int8 ``x`` are exact ties in requantization
    (``acc * mult / 2**shift`` ends in exactly one half); none for a conv layer (its
    outputs are pooled)."""
    if layer.kind != "linear":
        return np.zeros((len(x), layer.out_features), bool)
    acc = golden.wrap_int32(
        golden.matmul_i8(x, layer.weight, layer.input_zero_point) + np.asarray(layer.bias, np.int64)
    )
    p = acc * np.asarray(layer.mult, np.int64)
    shift = np.asarray(layer.shift, np.int64)
    half = np.where(shift > 0, np.left_shift(np.int64(1), np.maximum(shift - 1, 0)), 0)
    mask = np.where(shift > 0, (half - 1) * 2 + 1, 0)  # 2**shift - 1 without overflow
    return (shift > 0) & ((p & mask) == half)


def report(
    qmodel: QuantizedModel,
    tq_model: TorchReference,
    float_model: nn.Module,
    images: np.ndarray,
    labels: np.ndarray,
) -> dict:
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
