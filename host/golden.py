"""The integer golden model: pure numpy integer arithmetic, the bit-exact target.

It computes exactly the arithmetic contract of docs/ARCHITECTURE.md, with the input
zero point applied directly (``(x - zx) * W``), so it shares no step with the compiler
(which folds ``zx`` into the bias) nor with the hardware description. It imports
nothing from ``hw`` or the backends.

A convolution layer is the same arithmetic on every output pixel's window (the input
padded with its zero point, i.e. real zero), followed by an optional max-pool over the
requantized int8 values (as PyTorch's quantized max-pool). Activations between layers
are int8 ``[N, C*H*W]`` flattened in NCHW order, as PyTorch's ``flatten`` gives them.
"""

import numpy as np

__all__ = [
    "wrap_int32",
    "matmul_i8",
    "conv2d_i8",
    "maxpool2d_i8",
    "requantize",
    "linear",
    "conv",
    "run_layers",
    "run",
]

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


def _windows(x: np.ndarray, kernel: int, stride: int) -> np.ndarray:
    """``[N, C, H, W]`` -> ``[N, C, Ho, Wo, kernel, kernel]`` views, floor output size."""
    view = np.lib.stride_tricks.sliding_window_view(x, (kernel, kernel), axis=(2, 3))
    return view[:, :, ::stride, ::stride]


def conv2d_i8(
    x: np.ndarray, w: np.ndarray, x_zero_point: int = 0, stride: int = 1, padding: int = 0
) -> np.ndarray:
    """``sum_{c,i,j} (x[n, c, s*h+i-p, s*w+j-p] - zx) * w[o, c, i, j]`` as wrapping int32
    (returned as int64 ``[N, O, Ho, Wo]``); out-of-image taps are the zero point.

    Parameters
    ----------
    x : int8 [N, C, H, W]
    w : int8 [O, C, k, k]
    """
    x = np.asarray(x, np.int64) - int(x_zero_point)
    w = np.asarray(w, np.int64)
    if padding:
        x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    win = _windows(x, w.shape[2], stride)  # [N, C, Ho, Wo, k, k]
    return wrap_int32(np.einsum("nchwij,ocij->nohw", win, w, optimize=True))


def maxpool2d_i8(x: np.ndarray, kernel: int, stride: int) -> np.ndarray:
    """Max-pool ``[N, C, H, W]`` (no padding, floor output size as PyTorch)."""
    return _windows(np.asarray(x), kernel, stride).max(axis=(-2, -1))


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
    (last axis). The product is exact: in int64 for int32 accumulators (it is below
    2**63), with Python integers beyond.
    A remainder of exactly one half rounds up, or with ``round_even`` to the even
    quotient (as ``numpy.rint`` and PyTorch's int8 kernels do).
    """
    acc = np.asarray(acc, np.int64)
    mult = np.asarray(mult, np.int64)
    shift = np.asarray(shift, np.int64)
    if np.any((mult < 0) | (mult >= 1 << 32)) or np.any((shift < 0) | (shift > 63)):
        raise ValueError("requantize: mult must be in [0, 2**32) and shift in [0, 63]")
    if np.all(np.abs(acc) <= 1 << 31):
        # |acc * mult| <= 2**31 * (2**32 - 1) < 2**63: the product is exact in int64, and
        # so are the floor shift, the remainder (a mask) and its comparison with one half
        p = acc * mult
        quotient = np.right_shift(p, shift)  # floor
        remainder = p & (np.left_shift(np.int64(1), shift, dtype=np.int64) - 1)
        half = np.left_shift(np.int64(1), np.maximum(shift - 1, 0))
        tie = (remainder == half) & (shift > 0)
        up = ((remainder > half) & (shift > 0)) | (tie & ((quotient % 2 == 1) | (not round_even)))
        r = quotient + up.astype(np.int64)
    else:
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
    """One quantized Linear layer (a ``systolic.host.nn.qmodel.QuantLayer``) on int8 ``x``."""
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


def conv(x: np.ndarray, layer) -> np.ndarray:
    """One quantized convolution layer (``kind == "conv"``) on int8 ``x`` ``[N, C, H, W]``:
    conv, bias, requantize (ReLU), then the layer's max-pool; int8 ``[N, O, Ho, Wo]``."""
    acc = conv2d_i8(x, layer.weight, layer.input_zero_point, layer.stride, layer.padding)
    acc = wrap_int32(acc + np.asarray(layer.bias, np.int64)[None, :, None, None])
    y = requantize(
        acc.transpose(0, 2, 3, 1),  # channels last: requantize is per last axis
        layer.mult,
        layer.shift,
        layer.output_zero_point,
        layer.relu,
        round_even=bool(getattr(layer, "round_even", False)),
    ).transpose(0, 3, 1, 2)
    if layer.pool:
        y = maxpool2d_i8(y, layer.pool, layer.pool_stride)
    return np.ascontiguousarray(y)


def run_layers(qmodel, x: np.ndarray) -> list[np.ndarray]:
    """Every layer's int8 output, first to last, each ``[N, features]`` (a conv layer's
    ``[N, C*H*W]`` flattened in NCHW order). ``x`` is int8 ``[N, in_features]``, the
    input flattened likewise for a CNN."""
    x = np.asarray(x)
    shape = tuple(getattr(qmodel, "input_shape", ()) or (x.shape[-1],))
    outs = []
    for layer in qmodel.layers:
        if getattr(layer, "kind", "linear") == "conv":
            y = conv(x.reshape(x.shape[0], *shape), layer)
            shape = y.shape[1:]
            x = y.reshape(y.shape[0], -1)
        else:
            x = linear(x.reshape(x.shape[0], -1), layer)
        outs.append(x)
    return outs


def run(qmodel, x: np.ndarray) -> np.ndarray:
    """The network's int8 logits ``[B, out_features]``."""
    return run_layers(qmodel, x)[-1]
