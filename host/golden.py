"""The integer golden model: pure numpy integer arithmetic, the bit-exact target.

It computes exactly the arithmetic contract of docs/ARCHITECTURE.md, with the input
zero point applied directly (``(x - zx) * W``), so it shares no step with the compiler
(which folds ``zx`` into the bias) nor with the hardware description. It imports
nothing from ``hw`` or the backends.
"""

import numpy as np

__all__ = ["wrap_int32", "matmul_i8", "requantize", "linear", "run_layers", "run"]

INT8_MIN, INT8_MAX = -128, 127


def wrap_int32(x):
    """Two's-complement wrap of int64 values to int32."""
    x = np.asarray(x, np.int64)
    return ((x + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def matmul_i8(x, w, x_zero_point=0):
    """``sum_k (x[m, k] - zx) * w[n, k]`` as wrapping int32 (returned as int64).

    Parameters
    ----------
    x : int8 [M, K]
    w : int8 [N, K]
    """
    x = np.asarray(x, np.int64) - int(x_zero_point)
    return wrap_int32(x @ np.asarray(w, np.int64).T)


def requantize(acc, mult, shift, zero_point, relu, lo=INT8_MIN, hi=INT8_MAX):
    """int32 accumulators -> int8: multiply, round half up, shift, zero point, clamp.

    ``mult`` (< 2**31) and ``shift`` (0..63) are per output channel (last axis).
    """
    acc = np.asarray(acc, np.int64)
    mult = np.asarray(mult, np.int64)
    shift = np.asarray(shift, np.int64)
    if np.any((mult < 0) | (mult >= 1 << 31)) or np.any((shift < 0) | (shift > 63)):
        raise ValueError("requantize: mult must be in [0, 2**31) and shift in [0, 63]")
    p = acc * mult  # |acc| <= 2**31 and mult < 2**31: exact in int64
    half = np.where(shift > 0, np.left_shift(np.int64(1), np.maximum(shift - 1, 0)), 0)
    r = np.right_shift(p + half, shift)
    y = r + int(zero_point)
    floor = max(int(zero_point), lo) if relu else lo
    return np.clip(y, floor, hi).astype(np.int8)


def linear(x, layer):
    """One quantized Linear layer (a ``host.quantize.QuantLayer``) on int8 ``x``."""
    acc = wrap_int32(matmul_i8(x, layer.weight, layer.input_zero_point) +
                     np.asarray(layer.bias, np.int64))
    return requantize(acc, layer.mult, layer.shift, layer.output_zero_point, layer.relu)


def run_layers(qmodel, x):
    """Every layer's int8 output, first to last."""
    outs = []
    for layer in qmodel.layers:
        x = linear(x, layer)
        outs.append(x)
    return outs


def run(qmodel, x):
    """The network's int8 logits ``[B, out_features]``."""
    return run_layers(qmodel, x)[-1]
