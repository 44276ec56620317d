"""One quantized matrix multiply on any backend, for users who bring their own matrices.

>>> import numpy as np
>>> from systolic.host.matmul import matmul
>>> a = np.array([[1, -2], [3, 4]], np.int8)
>>> b = np.array([[5, 6, 7], [8, 9, 10]], np.int8)
>>> matmul(a, b, bias=np.array([1, 2, 3]))              # int32 accumulators
array([[-10, -10, -10],
       [ 48,  56,  64]], dtype=int32)
>>> matmul(a, b, requant=(1 << 30, 31, 0, False))        # acc / 2, round half up, int8
array([[-5, -6, -6],
       [24, 27, 31]], dtype=int8)
>>> matmul(a, b, requant=(1 << 30, 31, 0, False), rounding="half_even")  # ties to even
array([[-6, -6, -6],
       [24, 27, 30]], dtype=int8)
>>> matmul(a, b, bias=np.array([2**31 - 1, 0, 0]))[1]   # 47 + 2**31 - 1 wraps
array([-2147483602,          54,          61], dtype=int32)
>>> out, cycles = matmul(a, b, with_cycles=True)         # the core's cycles too
>>> cycles > 0
True
"""

import numpy as np

from systolic.hw.config import CoreConfig

from .backends import BACKENDS, get_backend
from .compile import CompileError, compile_matmul

__all__ = ["matmul"]


def matmul(
    a: np.ndarray,
    b: np.ndarray,
    bias: np.ndarray | None = None,
    *,
    backend: str = "model",
    config: CoreConfig | None = None,
    requant: tuple | None = None,
    rounding: str = "half_up",
    with_cycles: bool = False,
) -> np.ndarray | tuple[np.ndarray, int]:
    """``a @ b + bias`` on the core (or its model), int32 or requantized to int8.

    The accumulator is int32 and wraps (two's complement) on overflow, in ``a @ b`` and
    in adding ``bias``, exactly as the hardware does; nothing saturates before the
    requantization's final clamp to int8. The rows of ``a`` are streamed in batches of
    the largest size that fits the core's buffers (at most M), so any M works.

    Arguments are checked, never converted: a float bias, a zero point of 2.7 or
    ``relu="no"`` is refused.

    Parameters
    ----------
    a : int8 ndarray [M, K]
    b : int8 ndarray [K, N]
    bias : integer ndarray [N], optional
        Any signed or unsigned integer dtype, every value within int32.
    backend : ``"model"``, ``"rtl"`` or ``"gate"``
    config : CoreConfig, optional
        The array (default 8x8).
    requant : (mult, shift, zero_point, relu), optional
        Per-column integer multiplier (0..2**32-1) and right shift (0..63), each an
        integer or an integer ndarray [N]; output zero point (an integer, -128..127);
        ReLU (a bool). The result is then int8:
        ``clamp(round(acc * mult / 2**shift) + zero_point)``, floored at the zero point
        with ReLU. The product is exact (64 bits).
    rounding : ``"half_up"`` (default) or ``"half_even"``
        How the requantization rounds a tie (exactly one half): up, or to the even
        neighbour (as PyTorch's int8 kernels do).

    with_cycles : bool
        Also return the core's cycles for the whole product (the status packet's count:
        exact on every backend, equal to the cycle model's).

    Returns
    -------
    int32 [M, N], or int8 [M, N] with ``requant``; with ``with_cycles``, ``(that, cycles)``.

    Raises
    ------
    CompileError
        On an argument of the wrong type, dtype, shape or range (the message names it),
        on matrices that do not fit the buffers even one row at a time (K or N too
        large for the configuration), or when the core reports an error.
    """
    if not isinstance(with_cycles, bool):
        raise CompileError(f"with_cycles must be a bool, not {with_cycles!r}")
    if config is None:
        config = CoreConfig()
    elif not isinstance(config, CoreConfig):
        raise CompileError(f"config must be a CoreConfig, not {type(config).__name__}")
    if not isinstance(backend, str) or backend not in BACKENDS:
        raise CompileError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    if not isinstance(a, np.ndarray) or a.ndim != 2 or a.dtype != np.int8:
        found = f"{a.dtype} {list(a.shape)}" if isinstance(a, np.ndarray) else type(a).__name__
        raise CompileError(f"a must be a 2-D int8 array, not {found}")
    program = compile_matmul(a.shape, b, bias, config, requant, rounding=rounding)
    result = get_backend(backend, config).run(program, a)
    if result.error:
        raise CompileError(f"the core reported error code {result.error}")
    return (result.outputs, result.cycles) if with_cycles else result.outputs
