"""The PyTorch front end: any ``nn.Module``, captured with ``torch.export``, as a chain of
float layers the core can run: convolutions (each with its ReLU and max-pool), then
dense layers.

:func:`capture` exports the model in eval mode and walks its aten-op graph in order.
Supported, in a chain (every op takes the output of the one before):

* ``aten.conv2d`` (a Conv2d or ``F.conv2d``, with or without bias): groups 1, dilation
  1, zero padding 0 or 1 (``"valid"``, or ``"same"`` for a 3x3 kernel), stride 1 or 2,
  a square kernel 1..5; only before the first Linear;
* ``aten.max_pool2d`` (MaxPool2d: kernel 2 or 3, stride 2, no padding, dilation 1,
  ``ceil_mode`` off) after a convolution (its BatchNorm or its ReLU), one per
  convolution; a ReLU may come before or after it (they commute);
* ``aten.linear`` (a Linear, with or without bias; ``F.linear`` too) on ``[batch,
  features]``;
* ``aten.relu`` directly after a Linear or a convolution (or after a BatchNorm folded
  into it, or a convolution's max-pool), fused;
* ``aten.batch_norm`` / ``_native_batch_norm_legit_no_training`` (BatchNorm1d or
  BatchNorm2d in eval) directly after a Linear or a convolution: folded into its weights
  and bias;
* ``aten.flatten``, ``view``, ``reshape`` and ``unflatten``: before the first layer to
  ``[batch, features]`` or ``[batch, C, H, W]``, and after the convolutions to ``[batch,
  C*H*W]`` (NCHW order, as ``Flatten``); ``aten.dropout`` (the identity in eval),
  ``clone``, ``alias``, ``contiguous``.

Anything else is refused before any work, naming the op, the module it comes from and
its place in the graph. The result is plain numpy (float64), so the quantizer and the
compiler never see the user's module.
"""

import dataclasses
import functools
import logging
import operator

import numpy as np
import torch
from torch import nn

from .qmodel import QuantError

__all__ = ["FloatDense", "FloatConv", "capture", "SUPPORTED"]

#: What the refusals say the core runs.
SUPPORTED = (
    "Conv2d, MaxPool2d, Linear, ReLU, BatchNorm1d/2d after a Linear or Conv2d, Flatten and Dropout"
)

_aten = torch.ops.aten
_LINEAR = {_aten.linear.default}
_CONV = {_aten.conv2d.default, _aten.conv2d.padding}
_POOL = {_aten.max_pool2d.default, _aten.max_pool2d_with_indices.default}
_RELU = {_aten.relu.default, _aten.relu_.default}
_BATCH_NORM = {_aten.batch_norm.default, _aten._native_batch_norm_legit_no_training.default}
_RESHAPE = {
    _aten.flatten.using_ints,
    _aten.view.default,
    _aten.reshape.default,
    _aten._unsafe_view.default,
    _aten.unflatten.int,
}
_IDENTITY = {
    _aten.dropout.default,
    _aten.clone.default,
    _aten.alias.default,
    _aten.contiguous.default,
    _aten.detach.default,
}
_LAYER = _LINEAR | _CONV
_KNOWN = _LAYER | _POOL | _RELU | _BATCH_NORM | _RESHAPE | _IDENTITY | {operator.getitem}
#: The geometry a convolution and its pool may have (as systolic.host.nn.qmodel checks).
_CONV_KERNELS, _CONV_STRIDES, _CONV_PADDINGS = (1, 2, 3, 4, 5), (1, 2), (0, 1)
_POOL_KERNELS, _POOL_STRIDES = (2, 3), (2,)


@dataclasses.dataclass
class FloatDense:
    """One dense layer of the captured chain, in float64."""

    weight: np.ndarray  #: [out, in]
    bias: np.ndarray  #: [out] (zeros when the Linear has none)
    relu: bool
    name: str  #: where it comes from in the user's model
    kind = "linear"


@dataclasses.dataclass
class FloatConv:
    """One convolution of the captured chain, in float64, with its ReLU and max-pool."""

    weight: np.ndarray  #: [out, in, k, k]
    bias: np.ndarray  #: [out] (zeros when the Conv2d has none)
    relu: bool
    name: str  #: where it comes from in the user's model
    input_shape: tuple  #: (C, H, W) of its input
    stride: int = 1
    padding: int = 0
    pool: int = 0  #: max-pool kernel, 0 for none
    pool_stride: int = 0
    kind = "conv"


def _label(node, index):
    """A node as a refusal names it: ``"Conv2d at features.0"``, or the op and its graph
    node when it is not inside a submodule."""
    path, where = _where(node, index)
    return where.split(" (", 1)[0].removeprefix("layer ") if path else where


def _pair(value, what, label):
    """A square ``int`` from an aten int or int list argument."""
    values = [int(v) for v in value] if isinstance(value, (list, tuple)) else [int(value)]
    if len(set(values)) != 1:
        raise QuantError(f"{label}: {what} {tuple(values)} is not supported (square only)")
    return values[0]


def _check(label, what, value, allowed):
    if value not in allowed:
        raise QuantError(
            f"{label}: {what} {value} is not supported ({' or '.join(map(str, allowed))})"
        )


def _module(model, path):
    try:
        return model.get_submodule(path) if path else None
    except AttributeError:
        return None


def _where(node, index):
    """``(module path, description)`` of a node, e.g. ``("net.1", "layer GELU at net.1
    (aten.gelu, graph node 5)")``; the path is empty for an op in the top forward."""
    op = str(node.target).replace(".default", "").replace("aten::", "aten.")
    stack = node.meta.get("nn_module_stack") or {}
    if stack:
        path, kind = list(stack.values())[-1]
        kind = kind.__name__ if isinstance(kind, type) else str(kind).rsplit(".", 1)[-1]
        if path:
            return path, f"layer {kind} at {path} ({op}, graph node {index})"
    return "", f"{op} in the model's forward (graph node {index})"


def _attr(gm, target):
    return functools.reduce(getattr, target.split("."), gm)


def _value(gm, arg):
    """A parameter or buffer argument as a float64 array (None for None)."""
    if arg is None:
        return None
    if not isinstance(arg, torch.fx.Node) or arg.op != "get_attr":
        raise QuantError(f"{arg} is not a parameter: the core needs constant weights")
    return _attr(gm, arg.target).detach().to(torch.float64).numpy()


def _shape_of(node):
    """A node's output shape without the batch (the first output of a tuple)."""
    val = node.meta["val"]
    val = val[0] if isinstance(val, (tuple, list)) else val
    return tuple(int(d) for d in val.shape[1:])


def _conv(gm, node, index, path, layers, shape):
    """A FloatConv from an ``aten.conv2d`` node, its geometry checked."""
    label = _label(node, index)
    _, where = _where(node, index)
    if layers and layers[-1].kind == "linear":
        raise QuantError(
            f"{where} comes after a Linear: the core runs the convolutions before the first Linear"
        )
    if len(shape) != 3:
        raise QuantError(f"{label}: its input is {['batch', *shape]}, not [batch, C, H, W]")
    args = list(node.args) + [None, [1], [0], [1], 1][len(node.args) - 2 :]
    _, w_arg, b_arg, stride, padding, dilation, groups = args[:7]
    w = _value(gm, w_arg)
    b = _value(gm, b_arg)
    kh, kw = w.shape[2:]
    if kh != kw or kh not in _CONV_KERNELS:
        raise QuantError(f"{label}: kernel {kh}x{kw} is not supported (square, 1x1 to 5x5)")
    _check(label, "groups", int(groups), (1,))
    _check(label, "dilation", _pair(dilation, "dilation", label), (1,))
    stride = _pair(stride, "stride", label)
    _check(label, "stride", stride, _CONV_STRIDES)
    if isinstance(padding, str):
        if padding == "same" and kh % 2 == 0:
            raise QuantError(f"{label}: padding 'same' with an even kernel is not supported")
        padding = 0 if padding == "valid" else (kh - 1) // 2
    padding = _pair(padding, "padding", label)
    _check(label, "padding", padding, _CONV_PADDINGS)
    for what, p in (("weights", w), ("bias", b)):
        if p is not None and not np.all(np.isfinite(p)):
            raise QuantError(f"{where} has non-finite {what} (NaN or inf)")
    return FloatConv(
        w,
        np.zeros(len(w)) if b is None else b,
        False,
        path or f"graph node {index}",
        shape,
        stride,
        padding,
    )


def _pool(node, index, nodes, layers):
    """Attach an ``aten.max_pool2d`` to the convolution before it, its geometry checked."""
    label = _label(node, index)
    _, where = _where(node, index)
    after = _CONV | _BATCH_NORM | _RELU | {operator.getitem}
    if (
        not layers
        or layers[-1].kind != "conv"
        or layers[-1].pool
        or nodes[index - 1].target not in after
    ):
        raise QuantError(
            f"{where} does not directly follow a Conv2d (or its BatchNorm2d or ReLU): the "
            f"core max-pools only the output of the convolution before it, once"
        )
    args = list(node.args) + [[], 0, 1, False][len(node.args) - 2 :]
    _, kernel, stride, padding, dilation, ceil_mode = args[:6]
    kernel = _pair(kernel, "kernel", label)
    stride = _pair(stride, "stride", label) if stride else kernel
    _check(label, "kernel", kernel, _POOL_KERNELS)
    _check(label, "stride", stride, _POOL_STRIDES)
    _check(label, "padding", _pair(padding, "padding", label), (0,))
    _check(label, "dilation", _pair(dilation, "dilation", label), (1,))
    _check(label, "ceil_mode", bool(ceil_mode), (False,))
    layers[-1].pool, layers[-1].pool_stride = kernel, stride


def capture(model: nn.Module, example_input: torch.Tensor) -> list:
    """Export ``model`` (in eval mode) and return its layers (:class:`FloatConv`, then
    :class:`FloatDense`), BatchNorm folded, ReLU and max-pool attached.

    Parameters
    ----------
    model : nn.Module
        Any module whose forward, exported, is a chain of the supported ops.
    example_input : Tensor
        One batch of input, ``[batch, ...]``: ``[batch, features]`` or ``[batch, C, H,
        W]`` once the reshapes before the first layer are applied.

    Raises
    ------
    QuantError
        An unsupported op (its name, module and graph node), a convolution or pool
        geometry the core does not run (naming the layer and the setting), a ReLU,
        BatchNorm or max-pool not directly after its layer, a reshape after the first
        Linear or one that does not keep the batch, a value used twice (a residual), no
        layer, widths that do not chain, or non-finite weights.
    """
    if not isinstance(model, nn.Module):
        raise QuantError(f"expected a torch.nn.Module, not {type(model).__name__}")
    if not isinstance(example_input, torch.Tensor) or example_input.ndim < 2:
        raise QuantError("example_input must be a tensor [batch, ...] with at least 2 dimensions")
    was_training = model.training
    model.eval()
    fake_log = logging.getLogger("torch._subclasses.fake_tensor")
    level = fake_log.level
    fake_log.setLevel(logging.CRITICAL)  # it logs a traceback before raising
    try:
        exported = torch.export.export(model, (example_input,))
    except Exception as exc:  # torch raises many types for untraceable models
        raise QuantError(
            f"torch.export cannot capture the model: {str(exc).splitlines()[0]}"
        ) from None
    finally:
        fake_log.setLevel(level)
        model.train(was_training)
    gm = exported.module()
    layers, current = [], None
    shape = tuple(int(d) for d in example_input.shape[1:])  # without the batch
    nodes = [n for n in gm.graph.nodes if n.op == "call_function"]
    for i, node in enumerate(nodes):
        path, where = _where(node, i)
        target = node.target
        data = node.args[0] if node.args else None
        if target not in _KNOWN:
            conv = _module(model, path)
            if isinstance(conv, nn.Conv2d) and conv.padding_mode != "zeros":
                raise QuantError(
                    f"{_label(node, i)}: padding_mode {conv.padding_mode!r} is not "
                    f"supported (zeros)"
                )
            raise QuantError(f"unsupported {where}: the core runs {SUPPORTED}")
        if current is not None and data is not current:
            raise QuantError(
                f"{where} does not take the output of the op before it: the "
                f"core runs a chain of layers (no residuals or branches)"
            )
        if current is not None and len(current.users) > 1:
            raise QuantError(
                f"{where}: the value before it is used more than once (a "
                f"residual or a branch); the core runs a chain of layers"
            )
        if target in _CONV:
            layers.append(_conv(gm, node, i, path, layers, shape))
            shape = _shape_of(node)
        elif target in _POOL:
            _pool(node, i, nodes, layers)
            shape = _shape_of(node)
        elif target in _LINEAR:
            w = _value(gm, node.args[1])
            b = _value(gm, node.args[2] if len(node.args) > 2 else None)
            k = w.shape[1]
            if len(shape) != 1:
                if not layers:
                    raise QuantError(
                        f"the input has the shape {list(example_input.shape)} and "
                        f"nothing flattens it before the first Linear ({where})"
                    )
                raise QuantError(
                    f"{where} takes the {len(shape) + 1}-D output {['batch', *shape]} of "
                    f"{layers[-1].name}: flatten it first (Flatten)"
                )
            if shape[0] != k:
                what = f"the layer before it ({layers[-1].name})" if layers else "its input"
                raise QuantError(f"{where} takes {k} inputs but {what} gives {shape[0]}")
            for what, p in (("weights", w), ("bias", b)):
                if p is not None and not np.all(np.isfinite(p)):
                    raise QuantError(f"{where} has non-finite {what} (NaN or inf)")
            layers.append(
                FloatDense(
                    w, np.zeros(len(w)) if b is None else b, False, path or f"graph node {i}"
                )
            )
            shape = (len(w),)
        elif target in _RELU:
            if (
                not layers
                or layers[-1].relu
                or nodes[i - 1].target not in (_LAYER | _BATCH_NORM | _POOL | {operator.getitem})
            ):
                raise QuantError(
                    f"{where} does not directly follow a Linear or Conv2d: the core "
                    f"applies ReLU only fused into the layer before it"
                )
            layers[-1].relu = True
        elif target in _BATCH_NORM:
            if not layers or nodes[i - 1].target not in _LAYER:
                raise QuantError(
                    f"{where} does not directly follow a Linear or Conv2d: the core "
                    f"folds BatchNorm1d/2d into the layer before it"
                )
            if target == _aten.batch_norm.default and node.args[5]:
                raise QuantError(f"{where} is in training mode")
            gamma, beta, mean, var = (_value(gm, a) for a in node.args[1:5])
            eps = float(node.args[7] if target == _aten.batch_norm.default else node.args[6])
            n = len(layers[-1].bias)
            gamma = np.ones(n) if gamma is None else gamma
            beta = np.zeros(n) if beta is None else beta
            k = gamma / np.sqrt(var + eps)
            w = layers[-1].weight
            layers[-1].weight = w * k.reshape(-1, *[1] * (w.ndim - 1))
            layers[-1].bias = (layers[-1].bias - mean) * k + beta
        elif target in _RESHAPE:
            if layers and layers[-1].kind == "linear":
                raise QuantError(
                    f"{where} comes after a Linear: reshapes are only allowed "
                    f"before the first Linear"
                )
            full = tuple(int(d) for d in node.meta["val"].shape)
            allowed = (1,) if layers else (1, 3)
            if len(full) - 1 not in allowed or full[0] != example_input.shape[0]:
                to = "[batch, C*H*W] after a Conv2d" if layers else "[batch, features]"
                raise QuantError(
                    f"{where} gives the shape {list(full)}: only a flatten to {to}"
                    + ("" if layers else " or an unflatten to [batch, C, H, W]")
                    + " is supported"
                )
            shape = full[1:]
        current = node  # identities (dropout in eval, clone, ...) and getitem
    if not layers:
        raise QuantError(f"the model has no Linear or Conv2d layer: the core runs {SUPPORTED}")
    output = next(n for n in gm.graph.nodes if n.op == "output").args[0]
    if tuple(output) != (current,) if isinstance(output, (tuple, list)) else output is not current:
        raise QuantError(
            "the model's output is not its last layer's (several outputs, or "
            "an input passed through): the core runs a chain of layers"
        )
    return layers
