"""The PyTorch front end: any ``nn.Module``, captured with ``torch.export``, as a chain of
float dense layers the core can run.

:func:`capture` exports the model in eval mode and walks its aten-op graph in order.
Supported, in a chain (every op takes the output of the one before):

* ``aten.linear`` (a Linear, with or without bias; ``F.linear`` too);
* ``aten.relu`` directly after a Linear (or after a BatchNorm folded into it), fused;
* ``aten.batch_norm`` / ``_native_batch_norm_legit_no_training`` (BatchNorm1d in eval)
  directly after a Linear: folded into its weights and bias;
* ``aten.flatten``, ``view`` and ``reshape`` to ``[batch, features]`` before the first
  Linear; ``aten.dropout`` (the identity in eval), ``clone``, ``alias``, ``contiguous``.

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

__all__ = ["FloatDense", "capture", "SUPPORTED"]

#: What the refusals say the core runs.
SUPPORTED = "Linear, ReLU, BatchNorm1d after a Linear, Flatten and Dropout"

_aten = torch.ops.aten
_LINEAR = {_aten.linear.default}
_RELU = {_aten.relu.default, _aten.relu_.default}
_BATCH_NORM = {_aten.batch_norm.default, _aten._native_batch_norm_legit_no_training.default}
_RESHAPE = {
    _aten.flatten.using_ints,
    _aten.view.default,
    _aten.reshape.default,
    _aten._unsafe_view.default,
}
_IDENTITY = {
    _aten.dropout.default,
    _aten.clone.default,
    _aten.alias.default,
    _aten.contiguous.default,
    _aten.detach.default,
}
_KNOWN = _LINEAR | _RELU | _BATCH_NORM | _RESHAPE | _IDENTITY | {operator.getitem}


@dataclasses.dataclass
class FloatDense:
    """One dense layer of the captured chain, in float64."""

    weight: np.ndarray  #: [out, in]
    bias: np.ndarray  #: [out] (zeros when the Linear has none)
    relu: bool
    name: str  #: where it comes from in the user's model


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


def capture(model: nn.Module, example_input: torch.Tensor) -> list[FloatDense]:
    """Export ``model`` (in eval mode) and return its dense layers, BatchNorm folded.

    Parameters
    ----------
    model : nn.Module
        Any module whose forward, exported, is a chain of the supported ops.
    example_input : Tensor
        One batch of input, ``[batch, ...]``; its features must flatten to the first
        Linear's input width.

    Raises
    ------
    QuantError
        An unsupported op (its name, module and graph node), a ReLU or BatchNorm not
        directly after a Linear, a reshape after the first Linear or one that does not
        keep the batch, a value used twice (a residual), no Linear, widths that do not
        chain, or non-finite weights.
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
    features = int(example_input.shape[1]) if example_input.ndim == 2 else None
    nodes = [n for n in gm.graph.nodes if n.op == "call_function"]
    for i, node in enumerate(nodes):
        path, where = _where(node, i)
        target = node.target
        data = node.args[0] if node.args else None
        if target not in _KNOWN:
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
        if target in _LINEAR:
            w = _value(gm, node.args[1])
            b = _value(gm, node.args[2] if len(node.args) > 2 else None)
            k = w.shape[1]
            if not layers and features is None:
                raise QuantError(
                    f"the input has the shape {list(example_input.shape)} and "
                    f"nothing flattens it before the first Linear ({where})"
                )
            width = layers[-1].weight.shape[0] if layers else features
            if width != k:
                what = f"the layer before it ({layers[-1].name})" if layers else "its input"
                raise QuantError(f"{where} takes {k} inputs but {what} gives {width}")
            for what, p in (("weights", w), ("bias", b)):
                if p is not None and not np.all(np.isfinite(p)):
                    raise QuantError(f"{where} has non-finite {what} (NaN or inf)")
            layers.append(
                FloatDense(
                    w, np.zeros(len(w)) if b is None else b, False, path or f"graph node {i}"
                )
            )
        elif target in _RELU:
            if (
                not layers
                or layers[-1].relu
                or nodes[i - 1].target not in (_LINEAR | _BATCH_NORM | {operator.getitem})
            ):
                raise QuantError(
                    f"{where} does not directly follow a Linear: the core "
                    f"applies ReLU only fused into the Linear before it"
                )
            layers[-1].relu = True
        elif target in _BATCH_NORM:
            if not layers or nodes[i - 1].target not in _LINEAR:
                raise QuantError(
                    f"{where} does not directly follow a Linear: the core "
                    f"folds BatchNorm1d into the Linear before it"
                )
            if target == _aten.batch_norm.default and node.args[5]:
                raise QuantError(f"{where} is in training mode")
            gamma, beta, mean, var = (_value(gm, a) for a in node.args[1:5])
            eps = float(node.args[7] if target == _aten.batch_norm.default else node.args[6])
            n = len(layers[-1].bias)
            gamma = np.ones(n) if gamma is None else gamma
            beta = np.zeros(n) if beta is None else beta
            k = gamma / np.sqrt(var + eps)
            layers[-1].weight = layers[-1].weight * k[:, None]
            layers[-1].bias = (layers[-1].bias - mean) * k + beta
        elif target in _RESHAPE:
            if layers:
                raise QuantError(
                    f"{where} comes after a Linear: reshapes are only allowed "
                    f"before the first Linear"
                )
            shape = tuple(node.meta["val"].shape)
            if len(shape) != 2 or shape[0] != example_input.shape[0]:
                raise QuantError(
                    f"{where} gives the shape {list(shape)}: only a flatten to "
                    f"[batch, features] is supported"
                )
            features = int(shape[1])
        current = node  # identities (dropout in eval, clone, ...) and getitem
    if not layers:
        raise QuantError(f"the model has no Linear layer: the core runs {SUPPORTED}")
    output = next(n for n in gm.graph.nodes if n.op == "output").args[0]
    if tuple(output) != (current,) if isinstance(output, (tuple, list)) else output is not current:
        raise QuantError(
            "the model's output is not its last layer's (several outputs, or "
            "an input passed through): the core runs a chain of layers"
        )
    return layers
