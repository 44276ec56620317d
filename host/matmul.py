"""One quantized matrix multiply on any backend, for users who bring their own matrices.

>>> import numpy as np
>>> from host.matmul import matmul
>>> a = np.array([[1, -2], [3, 4]], np.int8)
>>> b = np.array([[5, 6, 7], [8, 9, 10]], np.int8)
>>> matmul(a, b, bias=np.array([1, 2, 3]))              # int32 accumulators
array([[-10, -10, -10],
       [ 48,  56,  64]], dtype=int32)
>>> matmul(a, b, requant=(1 << 30, 31, 0, False))        # acc / 2, round half up, int8
array([[-5, -6, -6],
       [24, 27, 31]], dtype=int8)
"""

import numpy as np

from hw.config import CoreConfig

from .backends import get_backend
from .compiler import CompileError, compile_matmul

__all__ = ["matmul"]


def matmul(a, b, bias=None, *, backend="model", config=None, requant=None):
    """``a @ b + bias`` on the core (or its model), int32 or requantized to int8.

    Parameters
    ----------
    a : int8 [M, K]
    b : int8 [K, N]
    bias : int32 [N], optional
    backend : ``"model"``, ``"rtl"`` or ``"gate"``
    config : CoreConfig, optional
        The array (default 8x8).
    requant : (mult, shift, zero_point, relu), optional
        Per-column integer multiplier (< 2**31) and right shift (0..63), output zero
        point and ReLU; the result is then int8 (round half up, saturated).

    Returns
    -------
    int32 [M, N], or int8 [M, N] with ``requant``.

    Raises
    ------
    CompileError
        On wrong dtypes or shapes, or matrices that do not fit the buffers.
    """
    config = config or CoreConfig()
    a = np.asarray(a)
    if a.ndim != 2 or a.dtype != np.int8:
        raise CompileError(f"a must be a 2-D int8 array, not {a.dtype} {list(a.shape)}")
    if a.shape[0] == 0:
        raise CompileError("a has no rows")
    program = compile_matmul(a.shape[1], b, bias, config, requant,
                             batch=min(len(a), 256) if len(a) <= 256 else None)
    result = get_backend(backend, config).run(program, a)
    if result.error:
        raise CompileError(f"the core reported error code {result.error}")
    return result.outputs
