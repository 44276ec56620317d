"""One processing element of the systolic array."""

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["ProcessingElement", "psum_shape"]


def psum_shape(cfg):
    """Signed shape wide enough for the sum of ``rows`` products without overflow."""
    return signed(cfg.act_bits + cfg.weight_bits + max(1, (cfg.rows - 1).bit_length()))


class ProcessingElement(wiring.Component):
    """int8 x int8 multiply, add to the partial sum from above.

    Two register stages: the product is registered (so the multiplier can use a
    registered DSP block), then the sum. The activation is passed right one cycle
    after it arrives, and the partial sum down one cycle after the product, so a
    PE below sees this PE's sum in the same cycle as the product of the activation
    that reached it one cycle later than here.

    Members
    -------
    act_in : In(signed(act_bits))
        Activation from the left neighbour (or the skew line).
    weight : In(signed(weight_bits))
        This PE's weight, valid in the cycle ``act_in`` arrives.
    psum_in : In(psum_shape)
        Partial sum from the PE above (0 at the top row), one cycle after ``act_in``.
    act_out : Out(signed(act_bits))
        ``act_in`` delayed by one cycle.
    psum_out : Out(psum_shape)
        ``psum_in + act_in * weight``, two cycles after ``act_in``.
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
        m = Module()
        product = Signal(signed(self._cfg.act_bits + self._cfg.weight_bits))
        m.d.sync += [
            self.act_out.eq(self.act_in),
            product.eq(self.act_in * self.weight),
            self.psum_out.eq(self.psum_in + product),
        ]
        return m
