"""8N1 UART receiver and transmitter, one bit every ``divisor`` clock cycles."""

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

__all__ = ["UARTReceiver", "UARTTransmitter", "check_divisor"]

#: The fewest clock cycles a bit: the receiver samples at half a bit and needs two.
MIN_DIVISOR = 4


def check_divisor(divisor):
    """Validate a baud divisor (clock cycles a bit); returns it."""
    if not isinstance(divisor, int) or isinstance(divisor, bool):
        raise TypeError(f"baud divisor must be an integer, not {divisor!r}")
    if not MIN_DIVISOR <= divisor <= 1 << 16:
        raise ValueError(f"baud divisor must be between {MIN_DIVISOR} and {1 << 16}, not {divisor}")
    return divisor


class UARTReceiver(wiring.Component):
    """8N1 receiver: a start bit, 8 data bits LSB first, a stop bit.

    The line is synchronized (two flip-flops), a start bit is taken on a low level and
    checked at its middle, each bit sampled at its middle. A byte whose stop bit is low is
    not delivered (``framing_error`` pulses instead); the line must then go high before
    the next start bit is taken.

    Parameters
    ----------
    divisor : int
        Clock cycles a bit (at least 4).

    Members
    -------
    rx : In(1)
        The serial line (idle high).
    o_byte : Out(stream.Signature(8, always_ready=True))
        One cycle of ``valid`` for each byte received; the consumer must always take it.
    framing_error : Out(1)
        One cycle for each byte dropped for a low stop bit.
    """

    rx: In(1, init=1)
    o_byte: Out(stream.Signature(8, always_ready=True))
    framing_error: Out(1)

    def __init__(self, divisor):
        self._divisor = check_divisor(divisor)
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        line = Signal(init=1)
        m.submodules.sync = FFSynchronizer(self.rx, line, init=1)
        timer = Signal(range(self._divisor))
        bits = Signal(range(9))
        shreg = Signal(8)
        m.d.sync += [self.o_byte.valid.eq(0), self.framing_error.eq(0)]
        m.d.comb += self.o_byte.payload.eq(shreg)
        with m.If(timer != 0):
            m.d.sync += timer.eq(timer - 1)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(~line):
                    m.d.sync += timer.eq(self._divisor // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                with m.If(timer == 0):
                    m.d.sync += [timer.eq(self._divisor - 1), bits.eq(0)]
                    with m.If(line):  # a glitch, not a start bit
                        m.next = "IDLE"
                    with m.Else():
                        m.next = "DATA"
            with m.State("DATA"):
                with m.If(timer == 0):
                    m.d.sync += [
                        timer.eq(self._divisor - 1),
                        shreg.eq(Cat(shreg[1:], line)),
                        bits.eq(bits + 1),
                    ]
                    with m.If(bits == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                with m.If(timer == 0):
                    with m.If(line):
                        m.d.sync += self.o_byte.valid.eq(1)
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += self.framing_error.eq(1)
                        m.next = "BREAK"
            with m.State("BREAK"):  # wait for the line to go idle again
                with m.If(line):
                    m.next = "IDLE"
        return m


class UARTTransmitter(wiring.Component):
    """8N1 transmitter.

    Parameters
    ----------
    divisor : int
        Clock cycles a bit (at least 4).

    Members
    -------
    i_byte : In(stream.Signature(8))
        Bytes to send; taken when the previous one's stop bit has been sent.
    tx : Out(1)
        The serial line (idle high).
    """

    i_byte: In(stream.Signature(8))
    tx: Out(1, init=1)

    def __init__(self, divisor):
        self._divisor = check_divisor(divisor)
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        timer = Signal(range(self._divisor))
        shreg = Signal(10, init=1)  # stop bit, 8 data bits, start bit (sent first)
        left = Signal(range(11))
        m.d.comb += self.tx.eq(shreg[0])
        m.d.comb += self.i_byte.ready.eq(left == 0)
        with m.If(left == 0):
            with m.If(self.i_byte.valid):
                m.d.sync += [
                    shreg.eq(Cat(0, self.i_byte.payload, 1)),
                    timer.eq(self._divisor - 1),
                    left.eq(10),
                ]
        with m.Elif(timer == 0):
            m.d.sync += [
                shreg.eq(Cat(shreg[1:], 1)),
                timer.eq(self._divisor - 1),
                left.eq(left - 1),
            ]
        with m.Else():
            m.d.sync += timer.eq(timer - 1)
        return m
