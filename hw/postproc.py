"""Post-processing of accumulator rows: bias, requantization, zero point, ReLU, clamp."""

from amaranth.hdl import Const, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .isa import BIAS_BITS, SCALE_WORD

__all__ = ["PostProcessor", "POSTPROC_STAGES"]

#: Register stages inside :class:`PostProcessor` (bias add, multiply, round and shift).
POSTPROC_STAGES = 3


class PostProcessor(wiring.Component):
    """Three-stage pipeline from one accumulator row to one int8 row, ``cols`` lanes.

    Per lane: ``a = acc + bias`` (wrapping to 32 bits), ``p = a * mult`` (64 bits),
    ``r = (p + 2**(shift-1)) >> shift`` (round half up; ``r = p`` when ``shift == 0``),
    ``y = clamp(r + zero_point, relu ? zero_point : act_min, act_max)``. The clamp is
    combinational after the last register, so ``y`` is valid :data:`POSTPROC_STAGES`
    cycles after the inputs.

    Members
    -------
    en : In(1)
        Advance the pipeline this cycle (low: every stage holds).
    i_valid, i_meta : In
        Valid flag and an opaque payload that travels with the row.
    acc : In(ArrayLayout(signed(acc_bits), cols))
    bias : In(ArrayLayout(signed(32), cols))
    scale : In(ArrayLayout(SCALE_WORD, cols))
    o_valid, o_meta : Out
    y : Out(ArrayLayout(signed(act_bits), cols))
        Requantized row.
    raw : Out(ArrayLayout(signed(32), cols))
        ``acc + bias`` of the same row.
    """

    def __init__(self, cfg, meta_shape):
        self._cfg = cfg
        lanes = cfg.cols
        super().__init__({
            "en": In(1),
            "i_valid": In(1),
            "i_meta": In(meta_shape),
            "acc": In(data.ArrayLayout(signed(cfg.acc_bits), lanes)),
            "bias": In(data.ArrayLayout(signed(BIAS_BITS), lanes)),
            "scale": In(data.ArrayLayout(SCALE_WORD, lanes)),
            "o_valid": Out(1),
            "o_meta": Out(meta_shape),
            "y": Out(data.ArrayLayout(signed(cfg.act_bits), lanes)),
            "raw": Out(data.ArrayLayout(signed(BIAS_BITS), lanes)),
        })

    def elaborate(self, platform):
        cfg = self._cfg
        m = Module()

        def stage(value, name):
            if isinstance(value, data.View):
                reg = Signal(value.shape(), name=name)
            else:
                reg = Signal.like(value, name=name)
            with m.If(self.en):
                m.d.sync += reg.eq(value)
            return reg

        valid, meta = self.i_valid, self.i_meta
        for s in range(POSTPROC_STAGES):
            valid, meta = stage(valid, f"valid_{s + 1}"), stage(meta, f"meta_{s + 1}")
        m.d.comb += [self.o_valid.eq(valid), self.o_meta.eq(meta)]

        for c in range(cfg.cols):
            sc = self.scale[c]
            # stage 1: bias
            a = stage((self.acc[c] + self.bias[c])[:BIAS_BITS].as_signed(), f"a_{c}")
            sc1 = stage(sc, f"scale1_{c}")
            # stage 2: multiply
            p = stage((a * sc1.mult)[:64].as_signed(), f"p_{c}")
            a2, sc2 = stage(a, f"a2_{c}"), stage(sc1, f"scale2_{c}")
            # stage 3: round half up and shift
            half = (Const(1, 65) << sc2.shift)[1:65]   # 2**(shift-1), 0 when shift == 0
            r = stage(((p + half) >> sc2.shift), f"r_{c}")
            a3, sc3 = stage(a2, f"a3_{c}"), stage(sc2, f"scale3_{c}")
            # clamp (combinational)
            y = Signal(signed(len(r) + 1), name=f"yz_{c}")
            lo = Mux(sc3.relu, sc3.zero_point, cfg.act_min)
            m.d.comb += y.eq(r + sc3.zero_point)
            m.d.comb += [
                self.y[c].eq(Mux(y < lo, lo, Mux(y > cfg.act_max, cfg.act_max, y))),
                self.raw[c].eq(a3),
            ]
        return m
