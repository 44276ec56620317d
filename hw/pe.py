"""One processing element of the systolic array."""

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["SPLIT_BITS", "ProcessingElement", "psum_shape", "split_product_shapes"]

#: with ``CoreConfig.split_product``, the weight bits of a PE's low half product
SPLIT_BITS = 4


def psum_shape(cfg):
    """Signed shape wide enough for the sum of ``rows`` products without overflow."""
    return signed(cfg.act_bits + cfg.weight_bits + max(1, (cfg.rows - 1).bit_length()))


def split_product_shapes(cfg):
    """The (activation bits, weight bits, weight unsigned) of the two multiplies of a PE
    with ``cfg.split_product``: the weight's low :data:`SPLIT_BITS` unsigned, the rest
    signed."""
    return [
        (cfg.act_bits, SPLIT_BITS, True),
        (cfg.act_bits, cfg.weight_bits - SPLIT_BITS, False),
    ]


class ProcessingElement(wiring.Component):
    """int8 x int8 multiply, add to the partial sum from above.

    ``cfg.pe_latency`` register stages from ``act_in`` to ``psum_out``. Deep pipeline
    (3): the activation and the weight are registered here first (the activation
    register is also ``act_out``), so that the weight bank's register, which drives a
    whole diagonal of PEs, and the left neighbour reach only a register; then the
    product (a registered DSP block, or a carry-chain multiplier between two
    registers; with ``cfg.split_product`` two half products, the weight's low and high
    bits, both added into the sum); then the sum. Shallow (2): the product of the
    inputs, then the sum.
    The activation is passed right one cycle after it arrives and the partial sum down
    ``pe_latency`` cycles after it, so a PE below, whose activation arrives one cycle
    later, receives this PE's sum in the cycle its own product is ready.

    Members
    -------
    act_in : In(signed(act_bits))
        Activation from the left neighbour (or the skew line).
    weight : In(signed(weight_bits))
        This PE's weight, valid in the cycle ``act_in`` arrives.
    psum_in : In(psum_shape)
        Partial sum from the PE above (0 at the top row), ``pe_latency - 1`` cycles
        after ``act_in``.
    act_out : Out(signed(act_bits))
        ``act_in`` delayed by one cycle.
    psum_out : Out(psum_shape)
        ``psum_in + act_in * weight``, ``pe_latency`` cycles after ``act_in``.
    """

    def __init__(self, cfg):
        self._cfg = cfg
        super().__init__(
            {
                "act_in": In(signed(cfg.act_bits)),
                "weight": In(signed(cfg.weight_bits)),
                "psum_in": In(psum_shape(cfg)),
                "act_out": Out(signed(cfg.act_bits)),
                "psum_out": Out(psum_shape(cfg)),
            }
        )

    def elaborate(self, platform):
        cfg = self._cfg
        m = Module()
        # data registers without a reset: every result depends only on the operands of
        # its own row, so a reset would add nothing but a net to every flip-flop
        act = Signal.like(self.act_out, name="act_reg", reset_less=True)
        psum = Signal.like(self.psum_out, name="psum_reg", reset_less=True)
        m.d.comb += [self.act_out.eq(act), self.psum_out.eq(psum)]
        m.d.sync += act.eq(self.act_in)
        if cfg.pe_latency == 3:
            weight = Signal.like(self.weight, name="weight_reg", reset_less=True)
            m.d.sync += weight.eq(self.weight)
            a, w = act, weight
        else:
            assert cfg.pe_latency == 2, cfg.pe_latency
            a, w = self.act_in, self.weight
        if cfg.split_product:
            # a * w == a * w[:k] (w's low bits, unsigned) + (a * w[k:] (signed)) << k
            k = SPLIT_BITS
            low = Signal(signed(cfg.act_bits + k), name="product_low", reset_less=True)
            high = Signal(
                signed(cfg.act_bits + cfg.weight_bits - k), name="product_high", reset_less=True
            )
            m.d.sync += [low.eq(a * w[:k]), high.eq(a * w[k:].as_signed())]
            # the halves added in a carry chain of their own, then the partial sum in
            # another: kept apart, Yosys would add the three in a carry-save layer of
            # LUTs first (about 36 LUTs a PE more)
            product = Signal(signed(cfg.act_bits + cfg.weight_bits), attrs={"keep": 1})
            m.d.comb += product.eq(low + (high << k))
            m.d.sync += psum.eq(self.psum_in + product)
        else:
            product = Signal(signed(cfg.act_bits + cfg.weight_bits), reset_less=True)
            m.d.sync += product.eq(a * w)
            m.d.sync += psum.eq(self.psum_in + product)
        return m
