"""The Linear layers' lowering, shared by MLPs (:mod:`.compiler`) and the Linear stack
after a convolutional network's feature maps (:mod:`.conv`).

Each layer's K axis is tiled by ``rows`` into activation words whose lanes a *K map*
names (``[words, rows]`` input indices, -1 for padding): the network's inputs in order
(:func:`input_kmap`), or the previous layer's outputs, ``cols``-wide tiles each split
into ``groups`` words (:func:`output_kmap`).
"""

import numpy as np

from systolic.hw import isa
from systolic.hw.config import MAX_ROWS_PER_OP, CoreConfig
from systolic.hw.isa import LoopTarget, Opcode, Target

from .emit import load_beats, scale_words
from .program import word_beats

__all__ = ["input_kmap", "output_kmap", "linear_tile", "linear_stack", "param_beats"]


def input_kmap(K: int, cfg: CoreConfig) -> np.ndarray:
    """K index of every lane of a network input's words, ``[ceil(K / rows), rows]``
    (-1 for padding)."""
    kt = -(-K // cfg.rows)
    k = np.arange(kt * cfg.rows).reshape(kt, cfg.rows)
    return np.where(k < K, k, -1)


def output_kmap(n_out: int, cfg: CoreConfig) -> np.ndarray:
    """Channel of every lane of the activation words a layer with ``n_out`` outputs
    writes, ``[ceil(n_out / cols) * groups, rows]`` (-1 for padding): word ``n * groups +
    g`` holds lanes ``g * rows ..`` of output tile ``n``."""
    R, C, G = cfg.rows, cfg.cols, cfg.groups
    nt = -(-n_out // C)
    n, g, r = np.meshgrid(np.arange(nt), np.arange(G), np.arange(R), indexing="ij")
    lane = g * R + r
    c = n * C + lane
    return np.where((lane < C) & (c < n_out), c, -1).reshape(nt * G, R)


def linear_tile(weight: np.ndarray, kmap_row: np.ndarray, nt_i: int, cfg: CoreConfig):
    """The ``rows x cols`` weight tile of a Linear layer (``weight`` int8 ``[N, K]``) for
    the K tile whose lanes hold inputs ``kmap_row`` and output tile ``nt_i``."""
    C = cfg.cols
    tile = np.zeros((cfg.rows, C), np.int8)
    cols = weight[nt_i * C : (nt_i + 1) * C]
    for r, k in enumerate(kmap_row):
        if k >= 0:
            tile[r, : len(cols)] = cols[:, k]
    return tile


def linear_stack(
    em, layers, kmap0, first_base, batch, hidden_bases, param, region_dependent, step=False
):
    """MATMULs and POSTPROCs of a stack of Linear layers for one batch (rows ``m =
    batch``, linear addressing): layer 0 reads K tile ``k`` at ``first_base + k * batch``,
    layer ``l`` writes its output tiles at ``hidden_bases[l]``, the last to the stream.
    Returns the next free parameter word; ``em.tile(t)`` places each weight tile.

    The order is output tile by output tile, each accumulating over the K tiles. With
    ``step`` (batch 1, resident weights: each MATMUL of one row would otherwise take a
    beat of the front end per row) a layer of several output tiles goes K tile by K
    tile instead: one MATMUL of ``m`` = output tiles rows that all read the same
    activation word (a READ pattern of stride 0) and step through ``m`` consecutive
    weight tiles (``tile_step``), so that the front end has beats to spare for loading
    inputs while the engine works. Layer 0's input words are loaded just before the
    first MATMUL that reads them (``em.first_input``) when that overlaps the load with
    the engine's work: when layer 0 steps, or with a batch above 2.
    """
    cfg = em.cfg
    G = cfg.groups
    kmap = kmap0
    for li, layer in enumerate(layers):
        last = li == len(layers) - 1
        N = layer.weight.shape[0]
        nt = -(-N // cfg.cols)
        in_base = first_base if li == 0 else hidden_bases[li - 1]
        dep = region_dependent if li == 0 else None
        stepping = step and batch == 1 and nt > 1
        # one LOAD header a chunk: worth it when a chunk's MATMULs have more rows than
        # the front end's beats for it (at batch 1 unstepped, 3 beats a row: preload)
        interleave = li == 0 and region_dependent is not None and (stepping or batch > 2)
        if stepping:
            for k in range(len(kmap)):
                if interleave:
                    em.first_input(k, 1)
                for n0 in range(0, nt, MAX_ROWS_PER_OP):
                    m = min(nt - n0, MAX_ROWS_PER_OP)
                    em.pattern(LoopTarget.READ, m, 1, 0, 0)
                    slots = [
                        em.tile(linear_tile(layer.weight, kmap[k], n, cfg))
                        for n in range(n0, n0 + m)
                    ]
                    if slots != list(range(slots[0], slots[0] + m)):
                        raise AssertionError(f"stepped weight tiles not consecutive: {slots}")
                    em.word(
                        Opcode.MATMUL,
                        dep,
                        act_addr=in_base + k,
                        weight_tile=slots[0],
                        acc_addr=n0,
                        m=m,
                        accumulate=int(k > 0),
                        tile_step=1,
                    )
        else:
            em.pattern(LoopTarget.READ)
            for n in range(nt):
                for k in range(len(kmap)):
                    if n == 0 and interleave:
                        em.first_input(k * batch, batch)
                    em.word(
                        Opcode.MATMUL,
                        dep,
                        act_addr=in_base + k * batch,
                        weight_tile=em.tile(linear_tile(layer.weight, kmap[k], n, cfg)),
                        acc_addr=n * batch,
                        m=batch,
                        accumulate=int(k > 0),
                    )
        for n in range(nt):
            for g in range(1 if last else G):
                em.word(
                    Opcode.POSTPROC,
                    acc_addr=n * batch,
                    m=batch,
                    param_addr=param + n,
                    dst_addr=0 if last else hidden_bases[li] + (n * G + g) * batch,
                    group=g,
                    to_stream=int(last),
                    raw=int(layer.raw),
                )
        param += nt
        kmap = output_kmap(N, cfg)
    em.pattern(LoopTarget.READ)  # the next batch's schedule starts linear
    return param


def param_beats(cfg, layers, what):
    """Preamble LOADs of every layer's bias and requantization words, in layer order."""
    C = cfg.cols
    bias, scale = [], []
    for li, ly in enumerate(layers):
        nt = -(-len(ly.bias) // C)
        b = np.zeros(nt * C, np.int64)
        b[: len(ly.bias)] = ly.bias
        bias.append(b)
        scale += scale_words(ly, nt, cfg, f"{what} {li}")
    bias = np.concatenate(bias) & ((1 << isa.BIAS_BITS) - 1)
    sb = cfg.stream_bytes
    return [
        load_beats(cfg, Target.BIAS, 0, word_beats(bias, sb)),
        load_beats(cfg, Target.SCALE, 0, word_beats(scale, sb)),
    ]
