"""The integer golden model: pure numpy integer arithmetic, the bit-exact target.

It computes exactly the arithmetic contract of docs/ARCHITECTURE.md, with the input
zero point applied directly (``(x - zx) * W``), so it shares no step with the compiler
(which folds ``zx`` into the bias) nor with the hardware description. It imports
nothing from ``hw`` or the backends.
"""

import numpy as np

__all__ = ["wrap_int32", "matmul_i8", "requantize", "linear", "run_layers", "run"]

INT8_MIN, INT8_MAX = -128, 127


def wrap_int32(x: np.ndarray) -> np.ndarray:
    """Two's-complement wrap of int64 values to int32."""
    x = np.asarray(x, np.int64)
    return ((x + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def matmul_i8(x: np.ndarray, w: np.ndarray, x_zero_point: int = 0) -> np.ndarray:
    """``sum_k (x[m, k] - zx) * w[n, k]`` as wrapping int32 (returned as int64).

    Parameters
    ----------
    x : int8 [M, K]
    w : int8 [N, K]
    """
    x = np.asarray(x, np.int64) - int(x_zero_point)
    return wrap_int32(x @ np.asarray(w, np.int64).T)


def requantize(
    acc: np.ndarray,
    mult: np.ndarray,
    shift: np.ndarray,
    zero_point: int,
    relu: bool,
    lo: int = INT8_MIN,
    hi: int = INT8_MAX,
    round_even: bool = False,
) -> np.ndarray:
    """int32 accumulators -> int8: ``acc * mult / 2**shift`` rounded, zero point, clamp.

    ``mult`` (unsigned 32-bit, 0..2**32-1) and ``shift`` (0..63) are per output channel
    (last axis). The product is computed with Python integers, so nothing can overflow.
    A remainder of exactly one half rounds up, or with ``round_even`` to the even
    quotient (as ``numpy.rint`` and PyTorch's int8 kernels do).
    """
    acc = np.asarray(acc, np.int64)
    mult = np.asarray(mult, np.int64)
    shift = np.asarray(shift, np.int64)
    if np.any((mult < 0) | (mult >= 1 << 32)) or np.any((shift < 0) | (shift > 63)):
        raise ValueError("requantize: mult must be in [0, 2**32) and shift in [0, 63]")
    p = acc.astype(object) * mult.astype(object)  # Python integers: exact
    d = np.left_shift(np.ones_like(shift, dtype=object), shift.astype(object))
    quotient, remainder = p // d, p % d  # floor division, 0 <= rem < d
    twice = 2 * remainder
    up = (twice > d) | ((twice == d) & (shift > 0) & ((quotient % 2 == 1) | (not round_even)))
    r = (quotient + up.astype(np.int64)).astype(np.int64)
    y = r + int(zero_point)
    floor = max(int(zero_point), lo) if relu else lo
    return np.clip(y, floor, hi).astype(np.int8)


def linear(x: np.ndarray, layer) -> np.ndarray:
    """One quantized Linear layer (a ``host.nn.qmodel.QuantLayer``) on int8 ``x``."""
    acc = wrap_int32(
        matmul_i8(x, layer.weight, layer.input_zero_point) + np.asarray(layer.bias, np.int64)
    )
    return requantize(
        acc,
        layer.mult,
        layer.shift,
        layer.output_zero_point,
        layer.relu,
        round_even=bool(getattr(layer, "round_even", False)),
    )


def run_layers(qmodel, x: np.ndarray) -> list[np.ndarray]:
    """Every layer's int8 output, first to last."""
    outs = []
    for layer in qmodel.layers:
        x = linear(x, layer)
        outs.append(x)
    return outs


def run(qmodel, x: np.ndarray) -> np.ndarray:
    """The network's int8 logits ``[B, out_features]``."""
    return run_layers(qmodel, x)[-1]
