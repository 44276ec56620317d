"""The buffer plan: how a network's layers tile the array and fit the buffers.

A layer's reduction axis K is tiled by ``rows`` and its output channels N by ``cols``.
Inputs take two regions of the input buffer (the next batch loads into the other),
hidden activations and accumulators scale with the batch; :func:`max_batch` is the
largest batch that fits.
"""

import dataclasses

import numpy as np

from systolic.hw.config import MAX_ROWS_PER_OP, CoreConfig

__all__ = [
    "CompileError",
    "Layer",
    "layers_from_model",
    "plan",
    "max_batch",
    "max_batch_for",
    "is_int",
]


class CompileError(ValueError):
    """The network or matmul cannot be compiled for this configuration."""


@dataclasses.dataclass(frozen=True)
class Layer:
    weight: np.ndarray  # int8 [N, K]
    bias: np.ndarray  # int64 [N], zero point already folded
    mult: np.ndarray
    shift: np.ndarray
    zero_point: int
    relu: bool
    raw: bool = False
    round_even: bool = False


def layers_from_model(qmodel):
    layers = []
    for i, q in enumerate(qmodel.layers):
        w = np.asarray(q.weight, np.int64)
        bias = np.asarray(q.bias, np.int64) - int(q.input_zero_point) * w.reshape(len(w), -1).sum(
            axis=1
        )
        if np.any((bias < -(2**31)) | (bias >= 2**31)):
            raise CompileError(
                f"layer {i}: bias with the input zero point folded in overflows int32"
            )
        layers.append(
            Layer(
                np.asarray(q.weight, np.int8),
                bias,
                np.asarray(q.mult),
                np.asarray(q.shift),
                int(q.output_zero_point),
                bool(q.relu),
                round_even=bool(q.round_even),
            )
        )
    return layers


def is_int(value):
    """A Python or numpy integer, not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _tiles(layers, cfg):
    """K tiles of every layer (the first's from its inputs) and N tiles of every layer."""
    kt = [-(-layers[0].weight.shape[1] // cfg.rows)]
    nt = []
    for i, layer in enumerate(layers):
        nt.append(-(-layer.weight.shape[0] // cfg.cols))
        if i + 1 < len(layers):
            kt.append(nt[i] * cfg.groups)
    return kt, nt


def _per_row(kt, nt, cfg):
    """``(buffer, words each row of a batch takes, words it has)`` of the buffers that
    scale with the batch. Inputs take two regions: the next batch loads into the other."""
    return (
        ("input", 2 * kt[0], cfg.act_depth),
        ("hidden-activation", sum(n * cfg.groups for n in nt[:-1]), cfg.hidden_depth),
        ("accumulator", max(nt), cfg.acc_depth),
    )


def plan(layers, cfg, batch, hint=True):
    """Tile counts and buffer bases; raises CompileError when something does not fit."""
    if not is_int(batch) or not 1 <= batch <= MAX_ROWS_PER_OP:
        raise CompileError(f"batch must be between 1 and {MAX_ROWS_PER_OP}, not {batch!r}")
    batch = int(batch)
    kt, nt = _tiles(layers, cfg)
    if sum(nt) > cfg.param_depth:
        raise CompileError(f"{sum(nt)} parameter words needed, the buffer has {cfg.param_depth}")
    for what, per_row, depth in _per_row(kt, nt, cfg):
        if per_row * batch > depth:
            msg = f"batch {batch} needs {per_row * batch} {what} words, the buffer has {depth}"
            if hint:
                best = max_batch_for(layers, cfg)
                msg += (
                    f"; use a batch of at most {best}"
                    if best
                    else "; even a batch of 1 does not fit"
                )
            raise CompileError(msg)
    in_words = kt[0] * batch
    bases = [cfg.act_depth]
    for n in nt[:-2]:
        bases.append(bases[-1] + n * cfg.groups * batch)
    return kt, nt, [0, in_words], bases


def max_batch_for(layers: list, cfg: CoreConfig) -> int:
    """The largest batch :func:`plan` accepts (0 if none)."""
    kt, nt = _tiles(layers, cfg)
    if sum(nt) > cfg.param_depth:
        return 0
    return min(
        [MAX_ROWS_PER_OP]
        + [depth // per_row for _, per_row, depth in _per_row(kt, nt, cfg) if per_row]
    )


def max_batch(qmodel, cfg: CoreConfig) -> int:
    """The largest batch whose activations and accumulators fit the buffers."""
    if any(layer.kind == "conv" for layer in qmodel.layers):
        from .conv import max_batch_cnn  # the conv lowering plans its own buffers

        return max_batch_cnn(qmodel, cfg)
    return max_batch_for(layers_from_model(qmodel), cfg)
