"""Compile a quantized network (or one matmul) into a
:class:`~systolic.host.compile.program.Program`.

Tiling: the reduction axis K by ``rows``, output channels N by ``cols``, images by the
batch. Layer ``l``'s outputs (but the last's) stay on chip: each ``cols``-wide output
tile becomes ``ceil(cols / rows)`` activation words (``groups``), so the next layer's K
axis is laid out in those padded chunks, with zero weight rows for the padding.

Schedule, per batch: for each layer, for each output tile, a MATMUL per K tile
(accumulating), then the POSTPROCs; at batch 1 with resident weights, for each K tile
one MATMUL that steps through the layer's output tiles (``tile_step``, see
:func:`~systolic.host.compile.linear.linear_stack`), so that an instruction beat issues
several rows. The first batch's images are loaded in chunks just before the MATMULs that
first read them (when the MATMULs step, or the batch is above 2), so that loading them
overlaps the engine's work. The next batch's images are loaded into the other half of a
ping-pong input region in chunks between MATMULs, starting after ``queue_depth + 1``
engine instructions of this batch (by then the previous batch has stopped reading that
half). Weights stay resident when they fit; otherwise each
MATMUL's tile is streamed into a ring of ``queue_depth + rows + cols + 2`` slots just
before it (enough distance that a slot is never rewritten while still being read).
"""

import itertools

import numpy as np

from systolic.hw.config import CoreConfig

from .conv import compile_cnn
from .emit import Emitter, Tiles
from .linear import input_kmap, linear_stack, param_beats
from .plan import CompileError, Layer, is_int, layers_from_model, max_batch_for, plan
from .program import Program

__all__ = ["compile_model", "compile_matmul", "ROUNDINGS"]

#: Requantization rounding modes of :func:`compile_matmul`: a tie (exactly one half)
#: goes up, or to the even neighbour.
ROUNDINGS = ("half_up", "half_even")


def _compile_layers(layers, cfg, batch, in_features, useful_macs):
    kt, nt, regions, hidden_bases = plan(layers, cfg, batch)
    em = Emitter(cfg, regions)
    tiles = Tiles(cfg, sum(k * n for k, n in zip(kt, nt, strict=True)), em)
    em.tile = tiles.place
    pre = param_beats(cfg, layers, "layer")
    linear_stack(
        em,
        layers,
        input_kmap(in_features, cfg),
        regions[0],
        batch,
        hidden_bases,
        0,
        "act_addr",
        step=tiles.resident,
    )
    pre += tiles.preamble()
    header = {
        "batch": batch,
        "in_features": in_features,
        "out_features": layers[-1].weight.shape[0],
        "in_tiles": kt[0],
        "input_regions": regions,
        "out_tiles": nt[-1],
        "raw": bool(layers[-1].raw),
        "useful_macs_per_row": useful_macs,
        "layer_macs": [int(ly.weight.size) for ly in layers],
        "sizes": [in_features] + [ly.weight.shape[0] for ly in layers],
        "weights_resident": tiles.resident,
        "weight_tiles": tiles.count,
    }
    return Program(cfg, header, np.concatenate(pre), em.schedule(kt[0] * batch), em.blocks)


def compile_model(qmodel, config: CoreConfig, batch: int = 64) -> Program:
    """Compile a :class:`~systolic.host.nn.qmodel.QuantizedModel` for ``config``.

    Parameters
    ----------
    qmodel : QuantizedModel
    config : CoreConfig
    batch : int
        Images per batch (the M of every MATMUL), 1..1023, limited by the buffers.

    Raises
    ------
    CompileError
        When the batch does not fit the buffers or a parameter is out of range.
    """
    if any(layer.kind == "conv" for layer in qmodel.layers):
        return compile_cnn(qmodel, config, batch)
    layers = layers_from_model(qmodel)
    sizes = qmodel.sizes
    macs = sum(a * b for a, b in itertools.pairwise(sizes))
    return _compile_layers(layers, config, batch, sizes[0], macs)


def _describe(value):
    """A short description of an argument for an error message."""
    if isinstance(value, np.ndarray):
        return f"{value.dtype} array {list(value.shape)}"
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


def _int_range(values):
    """``(min, max)`` of an integer array as Python integers (exact for uint64 too)."""
    return int(values.min()), int(values.max())


def _channel_param(name, value, n, lo, hi):
    """A requantization parameter: an integer, or an integer array of shape ``[n]``."""
    if is_int(value):
        vmin = vmax = int(value)
    elif isinstance(value, np.ndarray) and value.dtype.kind in "iu" and value.shape in ((), (n,)):
        vmin, vmax = _int_range(value)
    else:
        raise CompileError(
            f"requant {name} must be an integer or an integer array [{n}], not {_describe(value)}"
        )
    if vmin < lo or vmax > hi:
        raise CompileError(
            f"requant {name} must be in {lo}..{hi}, not {vmin if vmin < lo else vmax}"
        )
    return np.broadcast_to(np.asarray(value).astype(np.int64), (n,)).copy()


def _matmul_layer(K, b, bias, requant, rounding):
    """Check every argument of :func:`compile_matmul` (never coercing one); the layer."""
    if not isinstance(b, np.ndarray) or b.ndim != 2 or b.dtype != np.int8:
        raise CompileError(f"b must be a 2-D int8 array [K, N], not {_describe(b)}")
    if b.shape[0] != K:
        raise CompileError(f"a has {K} columns but b has {b.shape[0]} rows")
    N = b.shape[1]
    if N == 0:
        raise CompileError("b has no columns (N = 0)")
    if bias is None:
        bias = np.zeros(N, np.int64)
    elif not (isinstance(bias, np.ndarray) and bias.dtype.kind in "iu" and bias.shape == (N,)):
        raise CompileError(f"bias must be an integer array [{N}], not {_describe(bias)}")
    else:
        vmin, vmax = _int_range(bias)
        if vmin < -(2**31) or vmax >= 2**31:
            raise CompileError(
                f"bias must fit int32 ({-(2**31)}..{2**31 - 1}), not "
                f"{vmin if vmin < -(2**31) else vmax}"
            )
        bias = bias.astype(np.int64)
    if not isinstance(rounding, str) or rounding not in ROUNDINGS:
        found = repr(rounding) if isinstance(rounding, str) else _describe(rounding)
        raise CompileError(f"rounding must be {' or '.join(map(repr, ROUNDINGS))}, not {found}")
    if requant is None:
        return Layer(
            b.T.copy(),
            bias,
            np.zeros(N, np.int64),
            np.zeros(N, np.int64),
            0,
            False,
            raw=True,
            round_even=rounding == "half_even",
        )
    if not isinstance(requant, (tuple, list)) or len(requant) != 4:
        raise CompileError(
            f"requant must be (mult, shift, zero_point, relu) or None, not {_describe(requant)}"
        )
    mult, shift, zero_point, relu = requant
    mult = _channel_param("mult", mult, N, 0, 2**32 - 1)
    shift = _channel_param("shift", shift, N, 0, 63)
    if not is_int(zero_point) or not -128 <= zero_point <= 127:
        raise CompileError(
            f"requant zero_point must be an integer in -128..127, not {_describe(zero_point)}"
        )
    if not isinstance(relu, (bool, np.bool_)):
        raise CompileError(f"requant relu must be a bool, not {_describe(relu)}")
    return Layer(
        b.T.copy(),
        bias,
        mult,
        shift,
        int(zero_point),
        bool(relu),
        round_even=rounding == "half_even",
    )


def _check_fits(K, N, cfg):
    """Refuse, in terms of K and N, a matmul that does not fit even one row at a time."""
    R, C = cfg.rows, cfg.cols
    kt, nt = -(-K // R), -(-N // C)
    core = f"the {R}x{C} core's"
    if 2 * kt > cfg.act_depth:
        raise CompileError(
            f"K = {K} needs {kt} input words per row, twice that ({2 * kt}) with the next "
            f"batch's inputs loading beside them; {core} input buffer holds "
            f"{cfg.act_depth} words (K up to {cfg.act_depth // 2 * R})"
        )
    for what, depth, per in (
        ("accumulator", cfg.acc_depth, " per row"),
        ("parameter", cfg.param_depth, ""),
    ):
        if nt > depth:
            raise CompileError(
                f"N = {N} needs {nt} {what} words{per}; {core} {what} "
                f"buffer holds {depth} words (N up to {depth * C})"
            )
    slots = cfg.weight_ring_slots
    if kt * nt > cfg.weight_depth and slots > cfg.weight_depth:
        raise CompileError(
            f"K x N = {K} x {N} takes {kt * nt} weight tiles; {core} weight "
            f"buffer holds {cfg.weight_depth}, too few to stream them (at "
            f"least {slots})"
        )


def compile_matmul(
    a_shape_or_k: int | tuple,
    b: np.ndarray,
    bias: np.ndarray | None,
    config: CoreConfig,
    requant: tuple | None = None,
    batch: int | None = None,
    *,
    rounding: str = "half_up",
) -> Program:
    """Program for ``A @ b + bias`` with ``A`` int8 ``[M, K]`` streamed as inputs.

    Arguments are checked, never converted: a float bias, a fractional zero point or a
    string for ``relu`` is refused.

    Parameters
    ----------
    a_shape_or_k : int or (int, int)
        K, the inner dimension (the rows of A are the program's inputs), or the shape
        ``(M, K)`` of A, which caps the default batch at M.
    b : int8 ndarray [K, N]
    bias : integer ndarray [N] with int32 values, or None
        Added to the int32 accumulators, which wrap (two's complement) on overflow.
    config : CoreConfig
    requant : (mult, shift, zero_point, relu) or None
        Per-column requantization to int8 (``mult`` 0..2**32-1 and ``shift`` 0..63,
        each an integer or an integer array [N]; ``zero_point`` an integer in
        -128..127; ``relu`` a bool); None returns the int32 accumulators.
    batch : int, optional
        Rows per batch (default: as many as fit the buffers, at most M when the shape
        is given, at most 1023).
    rounding : ``"half_up"`` or ``"half_even"``
        How requantization rounds a tie (exactly one half).

    Raises
    ------
    CompileError
        On an argument of the wrong type, shape or range, or matrices that do not fit
        the buffers even one row at a time.
    """
    if not isinstance(config, CoreConfig):
        raise CompileError(f"config must be a CoreConfig, not {_describe(config)}")
    if is_int(a_shape_or_k):
        M, K = None, int(a_shape_or_k)
    elif (
        isinstance(a_shape_or_k, tuple)
        and len(a_shape_or_k) == 2
        and all(map(is_int, a_shape_or_k))
    ):
        M, K = map(int, a_shape_or_k)
    else:
        raise CompileError(
            f"a_shape_or_k must be K or the shape (M, K) of a, not {_describe(a_shape_or_k)}"
        )
    if M is not None and M < 1:
        raise CompileError(f"a has no rows (M = {M})")
    if K < 1:
        raise CompileError(f"a has no columns (K = {K})")
    layer = _matmul_layer(K, b, bias, requant, rounding)
    N = layer.weight.shape[0]
    _check_fits(K, N, config)
    if batch is None:
        batch = max_batch_for([layer], config)
        if M is not None:
            batch = min(batch, M)
    return _compile_layers([layer], config, batch, K, K * N)
