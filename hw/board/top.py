"""The board top: the core behind the serial link, a PLL on a real board, and LEDs."""

from amaranth.hdl import (
    Cat,
    ClockDomain,
    Instance,
    Module,
    ResetInserter,
    Signal,
)
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .. import isa
from ..core import Core
from .link import LinkController
from .pll import ecp5_pll
from .uart import UARTReceiver, UARTTransmitter, check_divisor

__all__ = ["BoardTop", "LEDS"]

#: What each LED shows, in order (``led[0]`` first).
LEDS = ("idle", "busy", "core_error", "link_error")


class BoardTop(wiring.Component):
    """The core, the link's FIFOs and controller, and a UART, on one clock.

    ::

        rx -> UARTReceiver -> LinkController -> o_program -> Core.s_axis
        tx <- UARTTransmitter <-'     ^-- i_result <-------- Core.m_axis

    In simulation (``platform`` None) the ports are the pins and the clock domain is the
    caller's. On a board with an ECP5 (the ULX3S), an EHXPLLL makes ``clk_mhz`` from the
    board's oscillator, the design is held in reset until it locks, and the ports go to the
    board's UART and first four LEDs.

    Parameters
    ----------
    cfg : CoreConfig
    clk_mhz : float
        The core's clock (what the PLL makes; the timing constraint).
    baud_divisor : int
        Clock cycles a bit on the serial line (``clk_mhz * 1e6 / baud``, at least 4).

    Members
    -------
    rx : In(1)
        Serial data from the host.
    tx : Out(1)
        Serial data to the host.
    leds : Out(4)
        :data:`LEDS`: idle, busy (a program in the core or beats in a FIFO), a core error
        (held until the next program's first beat or RESET), a dropped frame (held about
        a tenth of a second).
    """

    rx: In(1, init=1)
    tx: Out(1, init=1)
    leds: Out(len(LEDS))

    def __init__(self, cfg, clk_mhz, baud_divisor):
        if isinstance(clk_mhz, bool) or not isinstance(clk_mhz, int | float):
            raise TypeError(f"clock must be a number of MHz, not {clk_mhz!r}")
        if not 1 <= clk_mhz <= 400:
            raise ValueError(f"clock must be between 1 and 400 MHz, not {clk_mhz}")
        self.cfg = cfg
        self.clk_mhz = clk_mhz
        self.baud_divisor = check_divisor(baud_divisor)
        super().__init__()

    @property
    def baud(self):
        """Bits a second on the serial line."""
        return self.clk_mhz * 1e6 / self.baud_divisor

    def elaborate(self, platform):
        cfg = self.cfg
        m = Module()
        m.submodules.link = link = LinkController(cfg, self.baud_divisor)
        core = Core(cfg)
        m.submodules.core = ResetInserter(link.core_reset)(core)
        m.submodules.uart_rx = rx = UARTReceiver(self.baud_divisor)
        m.submodules.uart_tx = tx = UARTTransmitter(self.baud_divisor)
        wiring.connect(m, rx.o_byte, link.i_byte)
        wiring.connect(m, link.o_byte, tx.i_byte)
        program, result = link.o_program, link.i_result
        m.d.comb += [
            rx.rx.eq(self.rx),
            self.tx.eq(tx.tx),
            core.s_axis_tdata.eq(program.payload.data),
            core.s_axis_tlast.eq(program.payload.last),
            core.s_axis_tvalid.eq(program.valid),
            program.ready.eq(core.s_axis_tready),
            result.payload.data.eq(core.m_axis_tdata),
            result.payload.last.eq(core.m_axis_tlast),
            result.valid.eq(core.m_axis_tvalid),
            core.m_axis_tready.eq(result.ready),
            link.core_error.eq(core.error != isa.ErrorCode.NONE),
        ]

        # LEDs: a program is in the core from its first beat to its status packet's last
        in_program, core_error, stretch = Signal(), Signal(), Signal(range(1 << 22))
        took = program.valid & program.ready
        with m.If(took):
            m.d.sync += in_program.eq(1)
        with m.If(result.valid & result.ready & result.payload.last):
            m.d.sync += in_program.eq(0)
        with m.If(core.error != isa.ErrorCode.NONE):
            m.d.sync += core_error.eq(1)
        with m.Elif(link.core_reset | (took & ~in_program)):
            m.d.sync += core_error.eq(0)
        with m.If(link.link_error):
            m.d.sync += stretch.eq((1 << 22) - 1)
        with m.Elif(stretch != 0):
            m.d.sync += stretch.eq(stretch - 1)
        busy = in_program | program.valid | result.valid
        m.d.comb += self.leds.eq(Cat(~busy, busy, core_error, stretch != 0))

        if platform is not None:
            self._board(m, platform)
        return m

    def _board(self, m, platform):
        """The PLL, the reset until it locks, and the pins (ECP5 boards: the ULX3S)."""
        clk_in = platform.request(platform.default_clk).i
        fin_mhz = platform.default_clk_frequency / 1e6
        params = ecp5_pll(fin_mhz, self.clk_mhz)
        cd_sync = ClockDomain("sync")
        m.domains += cd_sync
        clk, locked = cd_sync.clk, Signal()
        m.submodules.pll = Instance(
            "EHXPLLL",
            a_FREQUENCY_PIN_CLKI=f"{fin_mhz:g}",
            a_FREQUENCY_PIN_CLKOP=f"{self.clk_mhz:g}",
            a_ICP_CURRENT="12",
            a_LPF_RESISTOR="8",
            a_MFG_ENABLE_FILTEROPAMP="1",
            a_MFG_GMCREF_SEL="2",
            p_PLLRST_ENA="DISABLED",
            p_INTFB_WAKE="DISABLED",
            p_STDBY_ENABLE="DISABLED",
            p_DPHASE_SOURCE="DISABLED",
            p_OUTDIVIDER_MUXA="DIVA",
            p_OUTDIVIDER_MUXB="DIVB",
            p_OUTDIVIDER_MUXC="DIVC",
            p_OUTDIVIDER_MUXD="DIVD",
            p_CLKI_DIV=params["CLKI_DIV"],
            p_CLKOP_ENABLE="ENABLED",
            p_CLKOP_DIV=params["CLKOP_DIV"],
            p_CLKOP_CPHASE=params["CLKOP_CPHASE"],
            p_CLKOP_FPHASE=0,
            p_FEEDBK_PATH="CLKOP",
            p_CLKFB_DIV=params["CLKFB_DIV"],
            i_RST=0,
            i_STDBY=0,
            i_CLKI=clk_in,
            o_CLKOP=clk,
            i_CLKFB=clk,
            i_PHASESEL0=0,
            i_PHASESEL1=0,
            i_PHASEDIR=1,
            i_PHASESTEP=1,
            i_PHASELOADREG=1,
            i_PLLWAKESYNC=0,
            i_ENCLKOP=0,
            o_LOCK=locked,
        )
        # held in reset until the PLL locks (and for 2**16 cycles after, for the pins)
        settle = Signal(17)
        m.domains.por = por = ClockDomain("por", reset_less=True)
        m.d.comb += por.clk.eq(clk)
        with m.If(~locked):
            m.d.por += settle.eq(0)
        with m.Elif(~settle[-1]):
            m.d.por += settle.eq(settle + 1)
        m.d.comb += cd_sync.rst.eq(~settle[-1])
        # no constraint of our own: nextpnr derives the PLL output's (clk_mhz) from the
        # oscillator's and the PLL's dividers, and a net named here may not survive Yosys
        uart = platform.request("uart", 0)
        m.d.comb += [self.rx.eq(uart.rx.i), uart.tx.o.eq(self.tx)]
        for i in range(len(LEDS)):
            m.d.comb += platform.request("led", i).o.eq(self.leds[i])
