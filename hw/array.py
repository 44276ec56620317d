"""The rows x cols systolic array with its input skew and output deskew."""

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .pe import ProcessingElement, psum_shape

__all__ = ["SystolicArray", "array_output_delay"]


def array_output_delay(cfg):
    """Cycles from a row on :attr:`SystolicArray.act` to its result on ``result``
    (:attr:`systolic.hw.config.CoreConfig.array_output_delay`).

    Written out: the activation of lane ``r`` reaches PE ``(r, c)`` ``r + c`` cycles
    after it enters, the sum of column ``c`` leaves the bottom PE ``rows - 1 + c +
    pe_latency`` cycles after entry, and the deskew delays column ``c`` by ``cols - 1 -
    c`` more, so every column is aligned at ``rows + cols + pe_latency - 2``.
    """
    return cfg.array_output_delay


class SystolicArray(wiring.Component):
    """Weight-stationary int8 systolic array.

    ::

                 w(0,0)     w(0,1)     w(0,C-1)        weights: diagonal bank r+c
                   |          |          |             read register (hw/weights.py)
        x0 ------>[PE]------>[PE]- ... ->[PE]
                   | psum     |          |
        x1 -[z1]->[PE]------>[PE]- ... ->[PE]
                   |          |          |
        ...       ...        ...        ...
        xR-1 -[z^(R-1)]->[PE]-->[PE]- .. ->[PE]
                   |          |          |
                [z^(C-1)]  [z^(C-2)]    [ ]        deskew
                   |          |          |
               result[0]  result[1]  result[C-1]   aligned, array_output_delay later

    ``x`` is one activation word: ``rows`` int8 values along the reduction axis.
    Lane ``r`` is delayed ``r`` cycles (skew), then moves right one PE a cycle; the
    partial sums move down one PE a cycle; column ``c`` is delayed ``cols - 1 - c``
    cycles at the bottom (deskew), so ``result[c] = sum_r x[r] * w(r, c)`` for the
    word that entered :func:`array_output_delay` cycles earlier. A new word can enter
    every cycle, each with the weights of a different tile.

    Members
    -------
    act : In(ArrayLayout(signed(act_bits), rows))
        The activation word entering this cycle.
    weights : In(ArrayLayout(ArrayLayout(signed(weight_bits), cols), rows))
        Each PE's weight; ``weights[r][c]`` must be valid ``r + c`` cycles after the
        word that uses it entered.
    result : Out(ArrayLayout(psum_shape, cols))
        One aligned row of sums.
    """

    def __init__(self, cfg):
        self._cfg = cfg
        super().__init__(
            {
                "act": In(data.ArrayLayout(signed(cfg.act_bits), cfg.rows)),
                "weights": In(
                    data.ArrayLayout(data.ArrayLayout(signed(cfg.weight_bits), cfg.cols), cfg.rows)
                ),
                "result": Out(data.ArrayLayout(psum_shape(cfg), cfg.cols)),
            }
        )

    def elaborate(self, platform):
        cfg = self._cfg
        m = Module()
        pes = [[ProcessingElement(cfg) for _ in range(cfg.cols)] for _ in range(cfg.rows)]
        for r in range(cfg.rows):
            for c in range(cfg.cols):
                m.submodules[f"pe_{r}_{c}"] = pe = pes[r][c]
                m.d.comb += pe.weight.eq(self.weights[r][c])
                if c == 0:
                    m.d.comb += pe.act_in.eq(_delay(m, self.act[r], r, f"skew_{r}"))
                else:
                    m.d.comb += pe.act_in.eq(pes[r][c - 1].act_out)
                if r > 0:
                    m.d.comb += pe.psum_in.eq(pes[r - 1][c].psum_out)
        for c in range(cfg.cols):
            bottom = pes[cfg.rows - 1][c].psum_out
            m.d.comb += self.result[c].eq(_delay(m, bottom, cfg.cols - 1 - c, f"deskew_{c}"))
        return m


def _delay(m, value, cycles, name):
    """``value`` through a chain of ``cycles`` registers (data only: no reset)."""
    for i in range(cycles):
        reg = Signal.like(value, name=f"{name}_{i}", reset_less=True)
        m.d.sync += reg.eq(value)
        value = reg
    return value
