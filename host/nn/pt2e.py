"""Post-training int8 quantization with PT2E (``torch.export`` + torchao), to the core's
arithmetic, and PyTorch's execution of the result as the reference.

The captured float chain (:mod:`.torch_frontend`) is rebuilt as a plain sequence
(``Unflatten`` of the flat input for a CNN, ``Conv2d``/``ReLU``/``MaxPool2d`` blocks,
``Flatten``, ``Linear``/``ReLU``), exported with a dynamic batch, annotated by
:class:`CoreQuantizer` (the core's specification: int8 per-tensor affine activations,
int8 per-channel symmetric weights in -127..127, int32 bias with the scale
``input_scale * weight_scale``; a max-pool and a flatten share their input's
quantization), calibrated with min/max observers, and converted by ``convert_pt2e`` into
a QDQ graph (``quantize_per_tensor`` / ``dequantize_per_*`` around float ``aten.linear``
and ``aten.conv2d``).

The integer layers are read back from that graph: the int8 weights, the int32 biases,
the activations' scales and zero points, and per channel the requantization multiplier
and shift of ``input_scale * weight_scale / output_scale``. Rounding is half to even,
as ``quantize_per_tensor`` rounds.

The reference is the converted QDQ graph run by PyTorch in float32 (not an int8 kernel
through ``torch.compile``): it dequantizes, multiplies in float32, and quantizes again.
It and the core can differ by one LSB where ``acc * scale`` lies within float32 rounding
of a half (the core multiplies by an exact integer ``mult / 2**shift``), or where a tie
goes another way.
"""

import contextlib
import dataclasses
import logging

import numpy as np
import torch
from torch import nn

from .qmodel import QuantError, QuantizedModel, QuantLayer, multiplier_shift
from .torch_frontend import FloatConv, FloatDense


@contextlib.contextmanager
def _quiet(*names):
    """Raise these loggers to ERROR for the block only, then restore their levels."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


# Importing torchao on a machine without CUDA logs that two CUDA extensions could not be
# loaded, and torch logs a deprecation inside torchao's registrations: both harmless here.
with _quiet("torchao", "torch.utils._pytree"):
    from torchao.quantization.pt2e import MinMaxObserver, PerChannelMinMaxObserver
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.quantization.pt2e.quantizer import (
        DerivedQuantizationSpec,
        QuantizationAnnotation,
        QuantizationSpec,
        Quantizer,
        SharedQuantizationSpec,
    )


__all__ = ["CoreQuantizer", "TorchReference", "quantize_dense"]

_aten = torch.ops.aten
_qd = torch.ops.quantized_decomposed
#: int8 activations, per tensor, affine (ReLU outputs get the zero point -128)
ACTIVATION = QuantizationSpec(
    dtype=torch.int8,
    quant_min=-128,
    quant_max=127,
    qscheme=torch.per_tensor_affine,
    is_dynamic=False,
    observer_or_fake_quant_ctr=MinMaxObserver,
)
#: int8 weights, per output channel, symmetric (zero point 0, -127..127)
WEIGHT = QuantizationSpec(
    dtype=torch.int8,
    quant_min=-127,
    quant_max=127,
    qscheme=torch.per_channel_symmetric,
    ch_axis=0,
    is_dynamic=False,
    observer_or_fake_quant_ctr=PerChannelMinMaxObserver,
)
_INT32 = (-(1 << 31), (1 << 31) - 1)
_LAYERS = {_aten.linear.default, _aten.conv2d.default}
#: ops whose int8 output is their int8 input rearranged: they share its quantization
_SHARING = {_aten.max_pool2d.default, _aten.flatten.using_ints}


def _bias_spec(x, w, linear):
    def derive(observers):
        s_x, _ = observers[0].calculate_qparams()
        s_w, _ = observers[1].calculate_qparams()
        return s_x * s_w, torch.zeros_like(s_w, dtype=torch.int32)

    return DerivedQuantizationSpec(
        derived_from=[(x, linear), (w, linear)],
        derive_qparams_fn=derive,
        dtype=torch.int32,
        quant_min=_INT32[0],
        quant_max=_INT32[1],
        qscheme=torch.per_channel_symmetric,
        ch_axis=0,
    )


class CoreQuantizer(Quantizer):
    """Annotates every ``aten.linear`` and ``aten.conv2d`` (and a ReLU right after it)
    with the core's quantization: int8 input and output, per-channel int8 weight, int32
    bias; a max-pool or flatten after them keeps its input's scale and zero point."""

    def annotate(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
        for node in model.graph.nodes:
            if node.op == "call_function" and node.target in _SHARING:
                x = node.args[0]
                node.meta["quantization_annotation"] = QuantizationAnnotation(
                    input_qspec_map={x: ACTIVATION},
                    output_qspec=SharedQuantizationSpec((x, node)),
                    _annotated=True,
                )
            if node.op != "call_function" or node.target not in _LAYERS:
                continue
            x, w = node.args[0], node.args[1]
            specs = {x: ACTIVATION, w: WEIGHT}
            if len(node.args) > 2 and node.args[2] is not None:
                specs[node.args[2]] = _bias_spec(x, w, node)
            users = list(node.users)
            relu = users[0] if len(users) == 1 and users[0].target == _aten.relu.default else None
            node.meta["quantization_annotation"] = QuantizationAnnotation(
                input_qspec_map=specs, output_qspec=None if relu else ACTIVATION, _annotated=True
            )
            if relu is not None:
                relu.meta["quantization_annotation"] = QuantizationAnnotation(
                    output_qspec=ACTIVATION, _annotated=True
                )
        return model

    def validate(self, model: torch.fx.GraphModule) -> None:
        pass


@dataclasses.dataclass
class TorchReference:
    """PyTorch's execution of the converted model: the QDQ graph, in float32.

    Members
    -------
    module : torch.fx.GraphModule
        Takes float ``[N, in_features]`` (a CNN's input flattened in NCHW order) and
        returns the dequantized output ``[N, out_features]``.
    input_scale, input_zero_point, output_scale, output_zero_point
        The quantization of its input and of its output (int8).
    """

    module: torch.fx.GraphModule
    input_scale: float
    input_zero_point: int
    output_scale: float
    output_zero_point: int
    #: how reports name it: ``torch_int8_accuracy``
    name: str = "torch"

    def quantize_input(self, x: torch.Tensor) -> np.ndarray:
        """Float input ``[N, in_features]`` -> int8, with the graph's own quantize op."""
        q = _qd.quantize_per_tensor.default(
            torch.as_tensor(x, dtype=torch.float32),
            self.input_scale,
            self.input_zero_point,
            -128,
            127,
            torch.int8,
        )
        return q.numpy()

    def int8(self, x: torch.Tensor) -> np.ndarray:
        """The int8 output of the graph for float input ``[N, ...]`` (flattened here)."""
        x = torch.as_tensor(x, dtype=torch.float32)
        with torch.no_grad():
            y = self.module(x.reshape(len(x), -1))
        q = torch.round(y / self.output_scale) + self.output_zero_point
        return q.clamp(-128, 127).to(torch.int8).numpy()


def _sequential(layers):
    """The float chain as a module on flat input ``[N, in_features]``."""
    mods = [nn.Unflatten(1, layers[0].input_shape)] if layers[0].kind == "conv" else []
    for i, layer in enumerate(layers):
        out, k = layer.weight.shape[:2]
        if layer.kind == "conv":
            mod = nn.Conv2d(k, out, layer.weight.shape[2], layer.stride, layer.padding)
        else:
            mod = nn.Linear(k, out)
        with torch.no_grad():
            mod.weight.copy_(torch.from_numpy(layer.weight))
            mod.bias.copy_(torch.from_numpy(layer.bias))
        mods += [mod, nn.ReLU()] if layer.relu else [mod]
        if layer.kind == "conv" and layer.pool:
            mods.append(nn.MaxPool2d(layer.pool, layer.pool_stride))
        if layer.kind == "conv" and (i + 1 == len(layers) or layers[i + 1].kind != "conv"):
            mods.append(nn.Flatten())
    return nn.Sequential(*mods).eval()


def _const(gm, node):
    return getattr(gm, node.target).detach()


def _extract(gm, layers):
    """The integer layers of a converted graph, in order (geometry from ``layers``, the
    float chain it was built from)."""
    out = []
    for node in gm.graph.nodes:
        if node.op != "call_function" or node.target not in _LAYERS:
            continue
        layout = {}
        src = layers[len(out)]
        if isinstance(src, FloatConv):
            layout = dict(
                kind="conv",
                stride=src.stride,
                padding=src.padding,
                pool=src.pool,
                pool_stride=src.pool_stride,
            )
        x_dq, w_dq = node.args[0], node.args[1]
        b_dq = node.args[2] if len(node.args) > 2 else None
        in_scale, in_zp = float(x_dq.args[1]), int(x_dq.args[2])
        w_int = _const(gm, w_dq.args[0]).numpy().astype(np.int8)
        w_scale = _const(gm, w_dq.args[1]).double().numpy()
        bias = (
            np.zeros(len(w_int), np.int32)
            if b_dq is None
            else _const(gm, b_dq.args[0]).numpy().astype(np.int32)
        )
        after = next(iter(node.users))
        relu = after.target == _aten.relu.default
        q_out = next(iter(after.users)) if relu else after
        if q_out.target != _qd.quantize_per_tensor.default:
            raise QuantError(f"internal: {node.name} is not followed by a quantize op")
        out_scale, out_zp = float(q_out.args[1]), int(q_out.args[2])
        if out and (out[-1].output_scale, out[-1].output_zero_point) != (in_scale, in_zp):
            raise QuantError(
                f"internal: {node.name} is not quantized at its input as the layer before "
                f"it at its output"
            )
        mult, shift = multiplier_shift(in_scale * w_scale / out_scale)
        out.append(
            QuantLayer(
                weight=w_int,
                bias=bias,
                input_zero_point=in_zp,
                mult=mult,
                shift=shift,
                output_zero_point=out_zp,
                relu=relu,
                input_scale=in_scale,
                weight_scale=w_scale,
                output_scale=out_scale,
                round_even=True,
                **layout,
            )
        )
    return out


def quantize_dense(
    layers: list[FloatDense], calibration: torch.Tensor
) -> tuple[QuantizedModel, TorchReference]:
    """PT2E post-training quantization of a captured chain.

    Parameters
    ----------
    layers : list of FloatConv and FloatDense
        From :func:`systolic.host.nn.torch_frontend.capture`.
    calibration : float Tensor [N, in_features]
        Inputs (already flattened; a CNN's in NCHW order) for the min/max observers.

    Raises
    ------
    QuantError
        No calibration data, the wrong width, or a scale the core's multiplier and shift
        cannot represent (naming the layer).
    """
    input_shape = (
        tuple(layers[0].input_shape) if layers[0].kind == "conv" else (layers[0].weight.shape[1],)
    )
    k = int(np.prod(input_shape))
    if (
        not isinstance(calibration, torch.Tensor)
        or calibration.ndim != 2
        or calibration.shape[1] != k
        or len(calibration) == 0
    ):
        shape = (
            list(calibration.shape)
            if isinstance(calibration, torch.Tensor)
            else type(calibration).__name__
        )
        raise QuantError(f"the calibration data must be a float tensor [N >= 1, {k}], not {shape}")
    if not bool(torch.isfinite(calibration).all()):
        raise QuantError("the calibration data holds NaN or inf")
    calibration = calibration.to(torch.float32)
    model = _sequential(layers)
    example = calibration[:2] if len(calibration) >= 2 else calibration.repeat(2, 1)
    batch = torch.export.Dim("batch")
    exported = torch.export.export(model, (example,), dynamic_shapes=({0: batch},)).module()
    prepared = prepare_pt2e(exported, CoreQuantizer())
    with torch.no_grad():
        for i in range(0, len(calibration), 1024):
            prepared(calibration[i : i + 1024])
    converted = convert_pt2e(prepared)
    try:
        qlayers = _extract(converted, layers)
    except ValueError as exc:
        raise QuantError(str(exc)) from None
    first, last = qlayers[0], qlayers[-1]
    ref = TorchReference(
        converted,
        first.input_scale,
        first.input_zero_point,
        last.output_scale,
        last.output_zero_point,
    )
    qmodel = QuantizedModel(tuple(qlayers), {}, input_shape)
    qmodel.validate("the quantized network")
    return qmodel, ref
