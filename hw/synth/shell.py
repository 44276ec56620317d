"""The pin-light shell the core is synthesized in."""

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..core import Core

__all__ = ["SynthTop"]


class SynthTop(wiring.Component):
    """The core with a pin-light shell: 3 inputs and 8 outputs besides the clock. The
    inputs and the core's outputs are registered at the boundary."""

    serial_in: In(1)
    valid_in: In(1)
    last_in: In(1)
    folded: Out(8)

    def __init__(self, cfg):
        self._cfg = cfg
        super().__init__()

    def elaborate(self, platform):
        cfg = self._cfg
        m = Module()
        m.submodules.core = core = Core(cfg)
        shift = Signal(cfg.stream_bits)
        m.d.sync += shift.eq(Cat(self.serial_in, shift[:-1]))
        m.d.sync += [
            core.s_axis_tdata.eq(shift),
            core.s_axis_tvalid.eq(self.valid_in),
            core.s_axis_tlast.eq(self.last_in),
            core.m_axis_tready.eq(shift[0]),
        ]
        out = Cat(
            core.m_axis_tdata, core.m_axis_tvalid, core.m_axis_tlast, core.s_axis_tready, core.error
        )
        # the outputs are registered before they are folded, as a stream consumer would
        # take them: the fold's XOR levels are the shell's, not on the core's paths
        out_q = Signal.like(out)
        fold = Signal(8)
        acc = 0
        for i in range(0, len(out), 8):
            acc ^= out_q[i : i + 8]
        m.d.sync += [out_q.eq(out), fold.eq(acc)]
        m.d.comb += self.folded.eq(fold)
        return m
