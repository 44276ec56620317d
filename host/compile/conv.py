"""Lower a convolutional network: implicit im2col through LOOP address patterns.

Feature maps are NHWC: pixel ``(y, x)`` of a map with ``T`` channel words a pixel is
words ``(y * W + x) * T + t``, each ``rows`` channels (:func:`output_kmap` says which).
A conv layer's input map is stored with its padding, the border holding the input
zero point: the network's input by the host, the maps between conv layers by POSTPROCs
that write the zero point (a parameter word with a zero multiplier) once a batch.

One MATMUL covers one kernel offset ``(kh, kw)`` and one input channel word ``t`` for a
band of output rows: its READ pattern steps through the input pixels under that offset
(inner: along a row, ``stride * T`` words; outer: down the rows, ``stride * W' * T``),
and the MATMULs of every offset and channel word accumulate into the same accumulator
rows. A max-pooled layer is computed in ``pool * pool`` phases, phase ``(a, c)`` being
the conv outputs ``(ps * i + a, ps * j + c)`` of every pooled pixel ``(i, j)``; the
POSTPROC of phase 0 writes the pooled map (WRITE pattern: pixel stride and row stride
of the destination) and those of the later phases write the maximum (``pool``), which
is exact since the maximum is taken over the requantized int8 values.

The last conv layer writes the Linear layers' input, the flattened features, laid out
like an MLP's input (feature word ``k`` of image ``b`` at ``k * batch + b``); the Linear
stack then runs as in :mod:`.compiler`, its first layer's K map following PyTorch's
NCHW flattening. Images run one after another through the conv layers (the maps are
reused); weights must be resident.
"""

import dataclasses
import itertools

import numpy as np

from systolic.hw.config import MAX_ROWS_PER_OP, CoreConfig
from systolic.hw.isa import LoopTarget, Opcode, Target

from .emit import Emitter, Tiles, load_beats, scale_words
from .linear import input_kmap, linear_stack, output_kmap, param_beats
from .plan import CompileError, Layer, is_int, layers_from_model
from .program import Program, word_beats

__all__ = ["compile_cnn", "conv_geometry", "max_batch_cnn"]


@dataclasses.dataclass(frozen=True)
class ConvGeometry:
    """Shapes of one conv layer (``p`` padding, ``pool`` 1 when not pooled)."""

    cin: int
    h: int
    w: int
    cout: int
    k: int
    stride: int
    pad: int
    pool: int
    pool_stride: int
    t_in: int  #: activation words of an input pixel
    kmap_in: np.ndarray  #: [t_in, rows] input channel of each lane, -1 for none

    @property
    def oh(self):
        return (self.h + 2 * self.pad - self.k) // self.stride + 1

    @property
    def ow(self):
        return (self.w + 2 * self.pad - self.k) // self.stride + 1

    @property
    def ph(self):
        return (self.oh - self.pool) // self.pool_stride + 1

    @property
    def pw(self):
        return (self.ow - self.pool) // self.pool_stride + 1

    @property
    def hp(self):
        return self.h + 2 * self.pad

    @property
    def wp(self):
        return self.w + 2 * self.pad

    @property
    def in_words(self):
        """Words of the padded input map of one image."""
        return self.hp * self.wp * self.t_in

    @property
    def macs(self):
        """Multiply-accumulates of the conv outputs the pooled map needs."""
        rows = (self.ph - 1) * self.pool_stride + self.pool
        cols = (self.pw - 1) * self.pool_stride + self.pool
        return rows * cols * self.cout * self.cin * self.k * self.k


def conv_geometry(qmodel, cfg: CoreConfig) -> list:
    """The :class:`ConvGeometry` of each conv layer of ``qmodel``."""
    shape = tuple(qmodel.input_shape)
    if len(shape) != 3:
        raise CompileError(f"a convolutional network needs a (C, H, W) input, not {shape}")
    c, h, w = shape
    kmap = input_kmap(c, cfg)
    out = []
    for q in qmodel.layers:
        if q.kind != "conv":
            break
        pool = q.pool or 1
        g = ConvGeometry(
            cin=c,
            h=h,
            w=w,
            cout=q.weight.shape[0],
            k=q.weight.shape[2],
            stride=q.stride,
            pad=q.padding,
            pool=pool,
            pool_stride=q.pool_stride if q.pool else 1,
            t_in=len(kmap),
            kmap_in=kmap,
        )
        out.append(g)
        c, h, w = g.cout, g.ph, g.pw
        kmap = _words(c, cfg)
    return out


def _patches(geoms, convs, cfg):
    """The first conv layer on patches: when the host lays the network's input out as
    the first layer's im2col rows (each output pixel's ``C * k * k`` window in a pixel's
    words, PyTorch's ``(c, kh, kw)`` order) and that takes fewer MATMULs than the
    implicit im2col (few input channels, as an image's), the first layer becomes a 1x1
    conv over those patches. Returns ``(geoms, convs, (k, stride, pad) or None)``."""
    g, ly = geoms[0], convs[0]
    cin = g.cin * g.k * g.k
    t_in = -(-cin // cfg.rows)
    if g.k == 1 or t_in >= g.k * g.k * g.t_in:
        return geoms, convs, None
    patched = dataclasses.replace(
        g, cin=cin, h=g.oh, w=g.ow, k=1, stride=1, pad=0, t_in=t_in, kmap_in=input_kmap(cin, cfg)
    )
    weight = ly.weight.reshape(len(ly.weight), cin, 1, 1)
    return (
        [patched, *geoms[1:]],
        [dataclasses.replace(ly, weight=weight), *convs[1:]],
        (
            g.k,
            g.stride,
            g.pad,
        ),
    )


def _conv_tile(weight, kmap_row, n, kh, kw, cfg):
    """The weight tile of kernel offset ``(kh, kw)``, input word lanes ``kmap_row`` and
    output tile ``n`` (``weight`` int8 ``[out, in, k, k]``)."""
    C = cfg.cols
    tile = np.zeros((cfg.rows, C), np.int8)
    cols = weight[n * C : (n + 1) * C, :, kh, kw]
    for r, c in enumerate(kmap_row):
        if c >= 0:
            tile[r, : len(cols)] = cols[:, c]
    return tile


def _flatten_kmap(g: ConvGeometry, cfg: CoreConfig) -> np.ndarray:
    """K map of the first Linear layer: feature word ``q * T + t`` (pixel ``q`` of the last
    pooled map, channel word ``t``) lane ``r`` holds PyTorch's flattened index
    ``channel * ph * pw + q``."""
    kmap = _words(g.cout, cfg)
    pixels = g.ph * g.pw
    flat = np.where(kmap >= 0, kmap * pixels, -1)  # [T, R]
    q = np.arange(pixels)[:, None, None]
    return np.where(flat[None] >= 0, flat[None] + q, -1).reshape(-1, cfg.rows)


def _bands(g: ConvGeometry, cfg: CoreConfig) -> int:
    """Pooled rows per band: a band's rows fit one instruction and its phases the
    accumulators."""
    phases = g.pool * g.pool
    rb = min(g.ph, MAX_ROWS_PER_OP // g.pw, cfg.acc_depth // (phases * g.pw))
    if rb < 1:
        raise CompileError(
            f"a conv output row of {g.pw} pixels in {phases} phases does not fit the "
            f"{cfg.acc_depth} accumulator words"
        )
    return rb


def _plan(geoms, linears, cfg, batch):
    """Buffer bases: ``(regions, map_bases, feat_base, hidden_bases, feat_words,
    footprint)``; CompileError when something does not fit."""
    G = cfg.groups
    last = geoms[-1]
    t_feat = len(_words(last.cout, cfg))
    feat_words = last.ph * last.pw * t_feat
    in_words = geoms[0].in_words * batch
    if 2 * in_words > cfg.act_depth:
        raise CompileError(
            f"batch {batch} needs {2 * in_words} input words (two regions of "
            f"{geoms[0].in_words} a padded image), the buffer has {cfg.act_depth}"
        )
    base = cfg.act_depth
    map_bases = []
    for g in geoms[1:]:
        map_bases.append(base)
        base += g.in_words
    feat_base = base
    base += feat_words * batch
    hidden_bases = []
    for ly in linears[:-1]:
        hidden_bases.append(base)
        base += -(-ly.weight.shape[0] // cfg.cols) * G * batch
    if base > cfg.act_space:
        raise CompileError(
            f"batch {batch} needs {base - cfg.act_depth} hidden-activation words, the "
            f"buffer has {cfg.hidden_depth}"
        )
    acc = max(-(-ly.weight.shape[0] // cfg.cols) for ly in linears) * batch
    if acc > cfg.acc_depth:
        raise CompileError(
            f"batch {batch} needs {acc} accumulator words, the buffer has {cfg.acc_depth}"
        )
    for g in geoms:
        if g.ph < 1 or g.pw < 1:
            raise CompileError("a conv layer's output is empty")
        acc = max(acc, g.pool * g.pool * _bands(g, cfg) * g.pw)
    footprint = {"input": 2 * in_words, "hidden": base - cfg.act_depth, "accumulators": acc}
    return [0, in_words], map_bases, feat_base, hidden_bases, feat_words, footprint


def max_batch_cnn(qmodel, cfg: CoreConfig) -> int:
    """The largest batch whose inputs, maps, features and accumulators fit (0 if none)."""
    layers = layers_from_model(qmodel)
    geoms = conv_geometry(qmodel, cfg)
    geoms, _, _ = _patches(geoms, layers[: len(geoms)], cfg)
    linears = layers[len(geoms) :]
    best = 0
    lo, hi = 1, MAX_ROWS_PER_OP
    while lo <= hi:  # every buffer's need grows with the batch
        mid = (lo + hi) // 2
        try:
            _plan(geoms, linears, cfg, mid)
        except CompileError:
            hi = mid - 1
        else:
            best, lo = mid, mid + 1
    return best


def _border(em, base, g: ConvGeometry, t, param):
    """POSTPROCs that write the zero point (parameter word ``param``) over the padding
    border of channel word ``t`` of a padded map at ``base``."""
    p, hp, wp, T = g.pad, g.hp, g.wp, g.t_in
    row = wp * T
    for inner, outer, start in (
        (wp, p, 0),  # top rows
        (wp, p, (hp - p) * row),  # bottom rows
        (p, hp - 2 * p, p * row),  # left columns
        (p, hp - 2 * p, p * row + (wp - p) * T),  # right columns
    ):
        if inner * outer == 0:
            continue
        em.pattern(LoopTarget.WRITE, inner, outer, T, row)
        em.word(
            Opcode.POSTPROC,
            acc_addr=0,
            m=inner * outer,
            param_addr=param,
            dst_addr=base + start + t,
            group=0,
        )


def _words(channels: int, cfg: CoreConfig) -> np.ndarray:
    """The channel of each lane of a map's words (:func:`output_kmap`), without the words
    past the last channel (a ``cols``-wide tile's slices that hold none)."""
    kmap = output_kmap(channels, cfg)
    used = np.flatnonzero((kmap >= 0).any(axis=1))
    return kmap[: used[-1] + 1]


def _conv_image(em, g, slots, in_base, dst, param, region_dependent):
    """One image through one conv layer. ``dst(n, g_word, y0, rows)`` gives the
    destination word and WRITE pattern of pooled rows ``y0 ..`` of channel word
    ``n * groups + g_word``."""
    cfg = em.cfg
    nt = -(-g.cout // cfg.cols)
    words_out = len(_words(g.cout, cfg))
    rb = _bands(g, cfg)
    s, ps, T = g.stride, g.pool_stride, g.t_in
    phases = list(itertools.product(range(g.pool), repeat=2))
    for n in range(nt):
        for y0 in range(0, g.ph, rb):
            rows = min(rb, g.ph - y0)
            m = rows * g.pw
            em.pattern(LoopTarget.READ, g.pw, rows, ps * s * T, ps * s * g.wp * T)
            for ph_i, (a, c) in enumerate(phases):
                first = True
                for kh, kw, t in itertools.product(range(g.k), range(g.k), range(T)):
                    y = s * (ps * y0 + a) + kh
                    x = s * c + kw
                    em.word(
                        Opcode.MATMUL,
                        region_dependent,
                        act_addr=in_base + (y * g.wp + x) * T + t,
                        weight_tile=slots[n, kh, kw, t],
                        acc_addr=ph_i * m,
                        m=m,
                        accumulate=int(not first),
                    )
                    first = False
            for ph_i in range(len(phases)):
                for gw in range(cfg.groups):
                    if n * cfg.groups + gw >= words_out:
                        continue  # a slice past the last channel: no word of the map
                    addr, pattern = dst(n, gw, y0, rows)
                    em.pattern(LoopTarget.WRITE, *pattern)
                    em.word(
                        Opcode.POSTPROC,
                        acc_addr=ph_i * m,
                        m=m,
                        param_addr=param + n,
                        dst_addr=addr,
                        group=gw,
                        pool=int(ph_i > 0),
                    )


def compile_cnn(qmodel, config: CoreConfig, batch: int) -> Program:
    """Compile a network of conv layers (each with ReLU and max-pooling or not) followed
    by Linear layers. See the module's docstring for the schedule.

    Raises
    ------
    CompileError
        When the batch or the weights do not fit, or a parameter is out of range.
    """
    cfg = config
    if not is_int(batch) or not 1 <= batch <= MAX_ROWS_PER_OP:
        raise CompileError(f"batch must be between 1 and {MAX_ROWS_PER_OP}, not {batch!r}")
    batch = int(batch)
    G = cfg.groups
    layers = layers_from_model(qmodel)
    geoms = conv_geometry(qmodel, cfg)
    convs, linears = layers[: len(geoms)], layers[len(geoms) :]
    shape = [geoms[0].cin, geoms[0].h, geoms[0].w]
    geoms, convs, patch = _patches(geoms, convs, cfg)
    if not linears:
        raise CompileError("a convolutional network must end with a Linear layer")
    if any(q.kind == "conv" for q in qmodel.layers[len(geoms) :]):
        raise CompileError("conv layers must come before every Linear layer")
    regions, map_bases, feat_base, hidden_bases, feat_words, footprint = _plan(
        geoms, linears, cfg, batch
    )
    em = Emitter(cfg, regions)

    # -- weights (resident), parameters --------------------------------------------
    kmap_feat = _flatten_kmap(geoms[-1], cfg)
    n_tiles = sum(g.k * g.k * g.t_in * -(-g.cout // cfg.cols) for g in geoms) + len(kmap_feat) * -(
        -linears[0].weight.shape[0] // cfg.cols
    )
    n_tiles += sum(
        -(-a.weight.shape[0] // cfg.cols) * G * -(-b.weight.shape[0] // cfg.cols)
        for a, b in itertools.pairwise(linears)
    )
    tiles = Tiles(cfg, n_tiles, em, stream=False)
    em.tile = tiles.place
    slots = []
    for g, ly in zip(geoms, convs, strict=True):
        nt = -(-g.cout // cfg.cols)
        table = np.zeros((nt, g.k, g.k, g.t_in), np.int64)
        for n, kh, kw, t in np.ndindex(table.shape):
            table[n, kh, kw, t] = tiles.place(_conv_tile(ly.weight, g.kmap_in[t], n, kh, kw, cfg))
        slots.append(table)
    pre = param_beats(cfg, convs + linears, "layer")
    n_params = sum(-(-len(ly.bias) // cfg.cols) for ly in convs + linears)
    # one parameter word a padded map: a zero multiplier and the map's zero point
    fill_zps = [convs[i].zero_point for i, g in enumerate(geoms[1:]) if g.pad]
    if fill_zps:
        fills = [Layer(None, np.zeros(0), [], [], zp, False) for zp in fill_zps]
        bias = np.zeros((len(fills), cfg.cols), np.int64).reshape(-1)
        scale = [w for f in fills for w in scale_words(f, 1, cfg, "padding")]
        sb = cfg.stream_bytes
        pre += [
            load_beats(cfg, Target.BIAS, n_params, word_beats(bias, sb)),
            load_beats(cfg, Target.SCALE, n_params, word_beats(scale, sb)),
        ]
    if n_params + len(fill_zps) > cfg.param_depth:
        raise CompileError(
            f"{n_params + len(fill_zps)} parameter words needed, the buffer has {cfg.param_depth}"
        )

    # -- one batch ----------------------------------------------------------------------
    for b in range(batch):
        param = 0
        for li, g in enumerate(geoms):
            if li == 0:
                in_base, dep = regions[0] + b * g.in_words, "act_addr"
            else:
                in_base, dep = map_bases[li - 1], None
            if li + 1 < len(geoms):
                nxt = geoms[li + 1]
                base, T2 = map_bases[li], nxt.t_in

                def dst(n, gw, y0, rows, base=base, nxt=nxt, T2=T2):
                    t = n * G + gw
                    addr = base + ((y0 + nxt.pad) * nxt.wp + nxt.pad) * T2 + t
                    return addr, (nxt.w, rows, T2, nxt.wp * T2)
            else:
                T2 = feat_words // (g.ph * g.pw)

                def dst(n, gw, y0, rows, b=b, g=g, T2=T2):
                    t = n * G + gw
                    addr = feat_base + (y0 * g.pw * T2 + t) * batch + b
                    return addr, (g.pw, rows, T2 * batch, g.pw * T2 * batch)

            _conv_image(em, g, slots[li], in_base, dst, param, dep)
            param += -(-g.cout // cfg.cols)
            if b == 0 and li == 0:  # the padding of every map, once the accumulators hold values
                fill = n_params
                for nxt, base in zip(geoms[1:], map_bases, strict=True):
                    if nxt.pad:
                        for t in range(nxt.t_in):
                            _border(em, base, nxt, t, fill)
                        fill += 1
    em.linear()
    param = sum(-(-g.cout // cfg.cols) for g in geoms)
    linear_stack(em, linears, kmap_feat, feat_base, batch, hidden_bases, param, None, step=True)
    pre += tiles.preamble()

    g0 = geoms[0]
    macs = sum(g.macs for g in geoms) + sum(ly.weight.size for ly in linears)
    in_features = shape[0] * shape[1] * shape[2]
    header = {
        "batch": batch,
        "in_features": in_features,
        "out_features": linears[-1].weight.shape[0],
        "in_tiles": g0.in_words,
        "input_regions": regions,
        "out_tiles": -(-linears[-1].weight.shape[0] // cfg.cols),
        "raw": False,
        "useful_macs_per_row": macs,
        "layer_macs": [g.macs for g in geoms] + [int(ly.weight.size) for ly in linears],
        "sizes": [in_features] + [g.cout for g in geoms] + [ly.weight.shape[0] for ly in linears],
        "weights_resident": True,
        "weight_tiles": n_tiles,
        "image": {
            "shape": shape,
            "pad": patch[2] if patch else g0.pad,
            "zero_point": int(qmodel.layers[0].input_zero_point),
            "fill_params": len(fill_zps),
            "patch": list(patch[:2]) if patch else [1, 1],
            "footprint": footprint,
        },
    }
    return Program(
        cfg, header, np.concatenate(pre), em.schedule(regions[1], by_rows=True), em.blocks
    )
