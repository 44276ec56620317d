"""Compile a quantized network (or one matmul) into a :class:`~host.program.Program`.

Tiling: the reduction axis K by ``rows``, output channels N by ``cols``, images by the
batch. Layer ``l``'s outputs (but the last's) stay on chip: each ``cols``-wide output
tile becomes ``ceil(cols / rows)`` activation words (``groups``), so the next layer's K
axis is laid out in those padded chunks, with zero weight rows for the padding.

Schedule, per batch: for each layer, for each output tile, a MATMUL per K tile
(accumulating), then the POSTPROCs. The next batch's images are loaded into the other
half of a ping-pong input region in chunks between MATMULs, starting after
``queue_depth + 1`` engine instructions of this batch (by then the previous batch has
stopped reading that half). Weights stay resident when they fit; otherwise each
MATMUL's tile is streamed into a ring of ``queue_depth + rows + cols + 2`` slots just
before it (enough distance that a slot is never rewritten while still being read).
"""

import dataclasses

import numpy as np

from hw import isa
from hw.config import MAX_ROWS_PER_OP
from hw.isa import Opcode, Target

from .program import ITEM_BLOCK, ITEM_NEXT_INPUT, ITEM_WORD, Program, ProgramError, _word_beats

__all__ = ["compile", "compile_matmul", "max_batch", "CompileError"]


class CompileError(ValueError):
    """The network or matmul cannot be compiled for this configuration."""


@dataclasses.dataclass(frozen=True)
class _Layer:
    weight: np.ndarray      # int8 [N, K]
    bias: np.ndarray        # int64 [N], zero point already folded
    mult: np.ndarray
    shift: np.ndarray
    zero_point: int
    relu: bool
    raw: bool = False


def _layers_from_model(qmodel):
    layers = []
    for i, q in enumerate(qmodel.layers):
        w = np.asarray(q.weight, np.int64)
        bias = np.asarray(q.bias, np.int64) - int(q.input_zero_point) * w.sum(axis=1)
        if np.any((bias < -2**31) | (bias >= 2**31)):
            raise CompileError(f"layer {i}: bias with the input zero point folded in "
                               f"overflows int32")
        layers.append(_Layer(np.asarray(q.weight, np.int8), bias, np.asarray(q.mult),
                             np.asarray(q.shift), int(q.output_zero_point), bool(q.relu)))
    return layers


def _plan(layers, cfg, batch, hint=True):
    """Tile counts and buffer bases; raises CompileError when something does not fit."""
    R, C, G = cfg.rows, cfg.cols, cfg.groups
    if not 1 <= batch <= MAX_ROWS_PER_OP:
        raise CompileError(f"batch must be between 1 and {MAX_ROWS_PER_OP}, not {batch}")
    kt = [-(-layers[0].weight.shape[1] // R)]
    nt = []
    for i, layer in enumerate(layers):
        nt.append(-(-layer.weight.shape[0] // C))
        if i + 1 < len(layers):
            kt.append(nt[i] * G)
    in_words = kt[0] * batch
    hidden = [nt[i] * G * batch for i in range(len(layers) - 1)]
    acc_needed = max(nt) * batch
    for what, needed, depth in (("input", 2 * in_words, cfg.act_depth),
                                ("hidden-activation", sum(hidden), cfg.hidden_depth),
                                ("accumulator", acc_needed, cfg.acc_depth)):
        if needed > depth:
            msg = f"batch {batch} needs {needed} {what} words, the buffer has {depth}"
            if hint:
                msg += f"; use a batch of at most {max_batch_for(layers, cfg)}"
            raise CompileError(msg)
    if sum(nt) > cfg.param_depth:
        raise CompileError(f"{sum(nt)} parameter words needed, the buffer has {cfg.param_depth}")
    bases = [cfg.act_depth]
    for h in hidden[:-1]:
        bases.append(bases[-1] + h)
    return kt, nt, [0, in_words], bases


def max_batch_for(layers, cfg):
    lo = 0
    for b in range(1, MAX_ROWS_PER_OP + 1):
        try:
            _plan(layers, cfg, b, hint=False)
        except CompileError:
            break
        lo = b
    return lo


def max_batch(qmodel, cfg):
    """The largest batch whose activations and accumulators fit the buffers."""
    return max_batch_for(_layers_from_model(qmodel), cfg)


def _tile(layer, l, kt_i, nt_i, cfg, prev_out):
    """The ``rows x cols`` weight tile (K tile ``kt_i``, N tile ``nt_i``) of a layer."""
    R, C, G = cfg.rows, cfg.cols, cfg.groups
    N, K = layer.weight.shape
    tile = np.zeros((R, C), np.int8)
    for r in range(R):
        if l == 0:
            k = kt_i * R + r
        else:  # K tile = (previous N tile, group); row r = lane g*R + r of that tile
            prev_nt, g = divmod(kt_i, G)
            c_prev = g * R + r
            k = prev_nt * C + c_prev if c_prev < C else K
            if k >= prev_out:
                k = K
        if k >= K:
            continue
        n0 = nt_i * C
        cols = min(C, N - n0)
        if cols > 0:
            tile[r, :cols] = layer.weight[n0:n0 + cols, k]
    return tile


def _compile_layers(layers, cfg, batch, in_features, useful_macs):
    R, C, G = cfg.rows, cfg.cols, cfg.groups
    D = cfg.queue_depth
    kt, nt, regions, hidden_bases = _plan(layers, cfg, batch)
    sb = cfg.stream_bytes

    # -- weight tiles, in MATMUL order ------------------------------------------------
    tiles = []
    prev_out = in_features
    for l, layer in enumerate(layers):
        for n in range(nt[l]):
            for k in range(kt[l]):
                tiles.append(_tile(layer, l, k, n, cfg, prev_out))
        prev_out = layer.weight.shape[0]
    resident = len(tiles) <= cfg.weight_depth
    slots = D + R + C + 2
    if not resident and slots > cfg.weight_depth:
        raise CompileError(f"the weight buffer holds {cfg.weight_depth} tiles; streaming "
                           f"weights needs at least {slots}")

    def load_beats(target, addr, rows):
        return np.concatenate([_word_beats([isa.encode(Opcode.LOAD, target=target, addr=addr,
                                                       count=len(rows))], sb), rows])

    def tile_rows(tile):
        rows = np.zeros((R, sb), np.uint8)
        rows[:, :C] = tile.view(np.uint8)
        return rows

    # -- preamble: parameters (and weights when resident) ---------------------------
    pre = []
    bias = np.zeros(sum(nt) * C, np.int64)
    for l, ly in enumerate(layers):
        bias[sum(nt[:l]) * C:][:len(ly.bias)] = ly.bias
    scale = []
    for l, ly in enumerate(layers):
        n = ly.weight.shape[0]
        for c in range(nt[l] * C):
            m_, s_ = (int(ly.mult[c]), int(ly.shift[c])) if c < n else (0, 0)
            scale.append(isa.encode_scale(m_, s_, ly.zero_point, ly.relu))
    bias_rows = np.zeros((len(bias), sb), np.uint8)
    bias_rows[:, :4] = (bias & 0xFFFFFFFF).astype("<u4").view(np.uint8).reshape(-1, 4)
    pre.append(load_beats(Target.BIAS, 0, bias_rows))
    pre.append(load_beats(Target.SCALE, 0, _word_beats(scale, sb)))
    if resident:
        pre.append(load_beats(Target.WEIGHT, 0, np.concatenate([tile_rows(t) for t in tiles])))

    # -- one batch ----------------------------------------------------------------------
    items = []            # (kind, even, odd, start, count, block)
    blocks = []

    def word(op, region_dependent=None, **fields):
        even = isa.encode(op, **fields)
        odd = even
        if region_dependent is not None:
            odd = isa.encode(op, **{**fields, region_dependent: fields[region_dependent]
                                    - regions[0] + regions[1]})
        items.append((ITEM_WORD, even, odd, 0, 0, 0))

    engine_count = 0
    matmul_slots = []     # item positions after which a next-input chunk may go
    tile_i = 0
    param = 0
    for l, layer in enumerate(layers):
        last = l == len(layers) - 1
        in_base = regions[0] if l == 0 else hidden_bases[l - 1]
        for n in range(nt[l]):
            for k in range(kt[l]):
                slot = tile_i if resident else tile_i % slots
                if not resident:
                    blocks.append(load_beats(Target.WEIGHT, slot, tile_rows(tiles[tile_i])))
                    items.append((ITEM_BLOCK, 0, 0, 0, 0, len(blocks) - 1))
                word(Opcode.MATMUL, "act_addr" if l == 0 else None,
                     act_addr=in_base + k * batch, weight_tile=slot, acc_addr=n * batch,
                     m=batch, accumulate=int(k > 0))
                engine_count += 1
                tile_i += 1
                if engine_count > D + 1:
                    matmul_slots.append(len(items))
        for n in range(nt[l]):
            for g in range(1 if last else G):
                dst = 0 if last else hidden_bases[l] + (n * G + g) * batch
                word(Opcode.POSTPROC, acc_addr=n * batch, m=batch, param_addr=param + n,
                     dst_addr=dst, group=g, to_stream=int(last), raw=int(layer.raw))
                engine_count += 1
        param += nt[l]

    # spread the next batch's input words over the MATMUL slots
    in_words = kt[0] * batch
    inserts = {}
    if matmul_slots:
        per = max(-(-in_words // len(matmul_slots)), min(in_words, 8))
        for i, pos in enumerate(matmul_slots):
            start = i * per
            if start >= in_words:
                break
            inserts[pos] = (start, min(per, in_words - start))
    else:  # too few engine instructions: load after a SYNC at the end of the batch
        items.append((ITEM_WORD, isa.encode(Opcode.SYNC), isa.encode(Opcode.SYNC), 0, 0, 0))
        inserts[len(items)] = (0, in_words)
    final = []
    for pos, item in enumerate(items):
        if pos in inserts:
            final.append((ITEM_NEXT_INPUT, 0, 0, *inserts[pos], 0))
        final.append(item)
    if len(items) in inserts:
        final.append((ITEM_NEXT_INPUT, 0, 0, *inserts[len(items)], 0))
    arr = np.array(final, dtype=object)
    schedule = {
        "kind": arr[:, 0].astype(np.uint8), "even": arr[:, 1].astype(np.uint64),
        "odd": arr[:, 2].astype(np.uint64), "start": arr[:, 3].astype(np.int64),
        "count": arr[:, 4].astype(np.int64), "block": arr[:, 5].astype(np.int64),
    }
    header = {
        "batch": batch, "in_features": in_features, "out_features": layers[-1].weight.shape[0],
        "in_tiles": kt[0], "input_regions": regions, "out_tiles": nt[-1],
        "raw": bool(layers[-1].raw), "useful_macs_per_row": useful_macs,
        "sizes": [in_features] + [ly.weight.shape[0] for ly in layers],
        "weights_resident": resident, "weight_tiles": len(tiles),
    }
    return Program(cfg, header, np.concatenate(pre), schedule, blocks)


def compile(qmodel, config, batch=64):
    """Compile a :class:`~host.quantize.QuantizedModel` for ``config``.

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
    layers = _layers_from_model(qmodel)
    sizes = qmodel.sizes
    macs = sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    return _compile_layers(layers, config, batch, sizes[0], macs)


def compile_matmul(a_shape_or_k, b, bias, config, requant=None, batch=None):
    """Program for ``A @ b + bias`` with ``A`` int8 ``[M, K]`` streamed as inputs.

    Parameters
    ----------
    a_shape_or_k : int
        K, the inner dimension (the rows of A are the program's inputs).
    b : int8 [K, N]
    bias : int32 [N]
    requant : (mult, shift, zero_point, relu) or None
        Per-column requantization to int8; None returns the int32 accumulators.
    batch : int, optional
        Rows per batch (default: as many as fit, at most 1023).
    """
    b = np.asarray(b)
    K, N = b.shape
    if K != int(a_shape_or_k):
        raise CompileError(f"A has {a_shape_or_k} columns but B has {K} rows")
    if b.dtype != np.int8:
        raise CompileError(f"B must be int8, not {b.dtype}")
    bias = np.zeros(N, np.int64) if bias is None else np.asarray(bias, np.int64)
    if bias.shape != (N,) or np.any((bias < -2**31) | (bias >= 2**31)):
        raise CompileError(f"bias must be int32 [{N}]")
    if requant is None:
        mult, shift, zp, relu = np.zeros(N, np.int64), np.zeros(N, np.int64), 0, False
    else:
        mult, shift, zp, relu = requant
        mult, shift = np.broadcast_to(mult, N), np.broadcast_to(shift, N)
    layer = _Layer(b.T.copy(), bias, np.asarray(mult), np.asarray(shift), int(zp), bool(relu),
                   raw=requant is None)
    if batch is None:
        batch = max_batch_for([layer], config)
        if batch == 0:
            raise CompileError("the matrices do not fit the buffers")
    return _compile_layers([layer], config, batch, K, K * N)
