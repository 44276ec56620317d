"""Post-processing of accumulator rows: bias, requantization, zero point, ReLU, clamp."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .dsp import RegisteredMultiply
from .isa import BIAS_BITS, SCALE_WORD

__all__ = ["PostProcessor"]

#: ``q = p >> (shift - 1)`` enters the final round and zero-point add in this many bits; a
#: ``q`` beyond them gives the int8 bound on its side: wide enough that every such ``q``
#: clamps to that bound.
_Q_BITS = 12

#: The stages kept when ``cfg.deep_pipeline`` is false (numbered as below).
_SHALLOW = (2, 3, 5, 8)


class PostProcessor(wiring.Component):
    """Pipeline from one accumulator row to one int8 row, ``cols`` lanes.

    Per lane: ``a = acc + bias`` (wrapping to 32 bits), ``p = a * mult`` (64 bits, exact
    for every unsigned 32-bit ``mult``), ``r = (p + 2**(shift-1)) >> shift`` (round half
    up; ``r = p`` when ``shift == 0``; with ``round_even`` a tie rounds to the even
    neighbour instead),
    ``y = clamp(r + zero_point, relu ? zero_point : act_min, act_max)``.

    With ``cfg.deep_pipeline`` every stage is short enough for 100 MHz on an ECP5: the
    inputs (block-RAM outputs) are registered first; the 32x32 product is four unsigned
    16x16 partial products (one DSP each, of ``a + 2**31``, with the operands and the
    product in the block's registers on the ECP5), summed over two stages;
    the rounding shift is done as ``q = (2 * p) >> shift`` (coarse then fine, so
    ``q = p >> (shift - 1)``) and ``r = (q + 1) >> 1`` (``(q + 0) >> 1 = p`` when
    ``shift == 0``), which equals the round-half-up shift. A tie is ``q`` odd with every
    bit of ``p`` below the half bit zero (computed beside the shift); rounding it to even
    adds 0 instead of 1 when ``q >> 1`` is even. The last stage adds the round bit and
    the zero point in one add, ``y = (q + 2 * zero_point + rnd) >> 1`` (``2 * zero_point
    + rnd`` a concatenation), or takes the int8 bound on ``q``'s side when ``q`` does not
    fit a few bits. Without it, only stages 2, 3, 5 and 8 are registers. The clamp is
    combinational after the last register, so ``y`` is valid ``cfg.postproc_stages``
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
        super().__init__(
            {
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
            }
        )

    def elaborate(self, platform):
        cfg = self._cfg
        m = Module()

        kept = range(1, 9) if cfg.deep_pipeline else _SHALLOW
        assert len(kept) == cfg.postproc_stages
        assert {2, 3} <= set(kept)  # the multiplies' registers (RegisteredMultiply)

        def stage(value, name, s):
            """``value`` through pipeline stage ``s``: a register, or a wire if not kept.
            Only the valid flags are reset; the data registers have no reset, which
            would otherwise reach thousands of flip-flops."""
            if s not in kept:
                return value
            data_reg = not name.startswith("valid_")
            if isinstance(value, data.View):
                reg = Signal(value.shape(), name=name, reset_less=data_reg)
            else:
                reg = Signal.like(value, name=name, reset_less=data_reg)
            with m.If(self.en):
                m.d.sync += reg.eq(value)
            return reg

        valid, meta = self.i_valid, self.i_meta
        for s in range(1, 9):
            valid, meta = stage(valid, f"valid_{s}", s), stage(meta, f"meta_{s}", s)
        m.d.comb += [self.o_valid.eq(valid), self.o_meta.eq(meta)]

        for c in range(cfg.cols):

            def carry(s, c=c, **values):  # the fields later stages still need
                return [stage(v, f"{k}{s}_{c}", s) for k, v in values.items()]

            # stage 1: register the block-RAM outputs
            acc, bias, sc = carry(1, acc=self.acc[c], bias=self.bias[c], scale=self.scale[c])
            mult, shift, zp, relu = sc.mult, sc.shift, sc.zero_point, sc.relu
            even = sc.round_even
            # stage 2: bias; registered as a + 2**31 (the sign bit inverted), the
            # multipliers' operand: the offset's LUT stood between the register and a DSP
            # (an 8x8 worst path, 13.49 ns)
            a_sum = (acc + bias)[:BIAS_BITS]
            au_in, mult_in = Cat(a_sum[:31], ~a_sum[31]), mult
            au = stage(au_in, f"au_{c}", 2)
            a = Cat(au[:31], ~au[31]).as_signed()
            mult, shift, zp, relu, even = carry(
                2, mult=mult, shift=shift, zp=zp, relu=relu, even=even
            )
            # stage 3: four unsigned 16x16 partial products of (a + 2**31) * mult (an
            # unsigned 16x16 multiply fits both the ECP5 and the iCE40 DSP blocks), each
            # a multiply with its operands registered at stage 2 and its product at
            # stage 3, which on the ECP5 are the DSP block's own registers
            halves = {"l": slice(0, 16), "h": slice(16, 32)}
            products = {}
            for x, xs in halves.items():
                for y, ys in halves.items():
                    m.submodules[f"mul_{x}{y}_{c}"] = mul = RegisteredMultiply(16, 16)
                    m.d.comb += [mul.a.eq(au_in[xs]), mul.b.eq(mult_in[ys]), mul.en.eq(self.en)]
                    products[x + y] = mul.p
            ll, lh, hl, hh = (products[k] for k in ("ll", "lh", "hl", "hh"))
            a_keep, mult, shift, zp, relu, even = carry(
                3, a=a, mult=mult, shift=shift, zp=zp, relu=relu, even=even
            )
            # stage 4: ll and hh << 32 do not overlap; take off 2**31 * mult; the
            # middle terms are summed (all modulo 2**64: the product fits 64 bits)
            base, mid = carry(4, base=(Cat(ll, hh) - (mult << 31))[:64], mid=lh + hl)
            a_keep, shift, zp, relu, even = carry(
                4, a_keep=a_keep, shift=shift, zp=zp, relu=relu, even=even
            )
            # stage 5: the 64-bit product a * mult; and which of its bits are below the
            # half bit (bit j: j + 1 < shift), decoded from shift beside it
            p = stage((base + (mid << 16))[:64].as_signed(), f"p_{c}", 5)
            low = stage(Cat(*(shift > j + 1 for j in range(63))), f"low_{c}", 5)
            a_keep, shift, zp, relu, even = carry(
                5, a_keep=a_keep, shift=shift, zp=zp, relu=relu, even=even
            )
            # stages 6 and 7: q = (2 * p) >> shift, by multiples of 8, then the rest; and
            # whether the bits of p below the half bit are all zero (for ties), a byte at
            # a time, then the bytes (p's 63 bits and their decoded shift into one
            # register: the 8x8's slowest nets after the pooling write, 11.28 ns)
            p2 = Cat(Const(0, 1), p).as_signed()
            q8 = stage(p2 >> Cat(Const(0, 3), shift[3:]), f"q8_{c}", 6)
            zero_bytes = stage(
                Cat(*(~(p[k : k + 8] & low[k : k + 8]).any() for k in range(0, 63, 8))),
                f"below_bytes_{c}",
                6,
            )
            a_keep, shift, zp, relu, even = carry(
                6, a_keep=a_keep, shift=shift, zp=zp, relu=relu, even=even
            )
            q = stage(q8 >> shift[:3], f"q_{c}", 7)
            below = stage(zero_bytes.all(), f"below_{c}", 7)
            a_keep, shift, zp, relu, even = carry(
                7, a_keep=a_keep, shift=shift, zp=zp, relu=relu, even=even
            )
            # stage 8: round and zero point in one add, (q + rnd) >> 1 + zp == (q + 2 * zp
            # + rnd) >> 1 with 2 * zp + rnd a concatenation; the round bit is 1 unless a
            # tie (q odd, nothing below) goes down to the even neighbour ((q >> 1) even).
            # Beside the add: whether q fits _Q_BITS bits; if not, y is the int8 bound on
            # q's side, which the clamp keeps (act_min <= lo). The round, the zero point
            # and the clamp after the last register, three carry chains, were the worst
            # path of the 8x8 and the 16x16 (12.5 and 13.8 ns)
            top = q[_Q_BITS - 1 :]  # q fits _Q_BITS bits when these are all equal
            fits = (top == 0) | (top == (1 << len(top)) - 1)
            to_even = even & below & q[0] & ~q[1]
            rnd = (shift != 0) & ~to_even
            y_fit = (q[:_Q_BITS].as_signed() + Cat(rnd, zp).as_signed()) >> 1
            y_out = Mux(q[-1], cfg.act_min, cfg.act_max)
            y, a_keep, zp, relu = carry(
                8, yz=Mux(fits, y_fit, y_out), a_keep=a_keep, zp=zp, relu=relu
            )
            # clamp (combinational)
            lo = Mux(relu, zp, cfg.act_min)
            m.d.comb += [
                self.y[c].eq(Mux(y < lo, lo, Mux(y > cfg.act_max, cfg.act_max, y))),
                self.raw[c].eq(a_keep),
            ]
        return m
