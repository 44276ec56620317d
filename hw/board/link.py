"""The board side of the serial link: frames in, the core's beats through two FIFOs, frames out.

Frame format, types and constants: ``hw/board/protocol.py`` (``LinkFrame``, ``LINK_*``). The host
asks and the board answers, one response a request, so the board never sends on its own
and a host can never overrun it:

* **Credit.** Every response carries ``credit``, the free beats of the input FIFO, and
  ``avail``, the result beats waiting in the output FIFO. A WRITE carries at most the
  credit; one that carries more is dropped (a host bug, not line noise).
* **Resynchronization.** The receiver hunts for :data:`~systolic.hw.board.protocol.LINK_SOF`;
  a header with an unknown type or count, a wrong CRC, or
  :data:`~systolic.hw.board.protocol.LINK_IDLE_BYTES` byte times of silence inside a frame
  send it back to hunting, with no response (``link_error`` pulses). The host repeats a
  request it got no good response to.
* **Repeats.** A request with the ``seq`` of the last one taken is a repeat (its response
  was lost): a WRITE is acknowledged again without writing, a READ is answered with the
  same beats again. RESET starts a new session (no last ``seq``).

The core's program and result streams stay on the core's side of two FIFOs; RESET
resets the core and both FIFOs (``core_reset``).
"""

from amaranth.hdl import Array, Cat, Module, Mux, ResetInserter, Signal
from amaranth.lib import data, fifo, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from . import protocol
from .uart import check_divisor

__all__ = ["FIFO_DEPTH", "LinkController", "crc16_step", "stream_beat"]

#: Beats each of the input and output FIFOs holds.
FIFO_DEPTH = 512


def stream_beat(cfg):
    """The layout of a program or result beat: ``data`` (``stream_bits``) and ``last``."""
    return data.StructLayout({"data": cfg.stream_bits, "last": 1})


def _crc16_byte(crc, byte):
    """CRC-16/CCITT-FALSE of ``byte`` after ``crc``, on integers (MSB first)."""
    crc ^= byte << 8
    for _ in range(8):
        crc = ((crc << 1) ^ protocol.LINK_CRC_POLY if crc & 0x8000 else crc << 1) & 0xFFFF
    return crc


#: The CRC step is linear over GF(2): output bit ``i`` is the XOR of the input bits
#: (``crc`` bits 0-15, then ``byte`` bits 16-23) listed here, found from unit vectors.
_CRC_TAPS = [
    [j for j in range(24) if _crc16_byte((1 << j) & 0xFFFF, (1 << j) >> 16) >> i & 1]
    for i in range(16)
]


def crc16_step(crc, byte):
    """CRC-16/CCITT-FALSE of ``byte`` after ``crc``: 16 XORs of the 24 input bits (an
    expression; the bitwise loop, written out, would repeat its input at every step)."""
    bits = Cat(crc, byte)
    return Cat(*(Cat(*(bits[j] for j in taps)).xor() for taps in _CRC_TAPS))


class LinkController(wiring.Component):
    """Frames from the UART receiver in, responses to the UART transmitter out.

    Parameters
    ----------
    cfg : CoreConfig
        For the beat width (``stream_bytes`` bytes a beat on the wire).
    divisor : int
        Clock cycles a bit, for the receiver's idle timeout.

    Members
    -------
    i_byte : In(stream.Signature(8, always_ready=True))
        Received bytes.
    o_byte : Out(stream.Signature(8))
        Bytes to send.
    o_program : Out(stream.Signature(stream_beat(cfg)))
        Program beats for the core (from the input FIFO).
    i_result : In(stream.Signature(stream_beat(cfg)))
        Result and status beats from the core (into the output FIFO).
    core_error : In(1)
        The core's error output is not NONE (``LINK_FLAG_ERROR`` in responses).
    core_reset : Out(1)
        One cycle on RESET: reset the core.
    link_error : Out(1)
        One cycle for each frame dropped (bad header, CRC, timeout, over the credit).
    """

    def __init__(self, cfg, divisor):
        self._cfg = cfg
        self._divisor = check_divisor(divisor)
        beat = stream_beat(cfg)
        super().__init__(
            {
                "i_byte": In(stream.Signature(8, always_ready=True)),
                "o_byte": Out(stream.Signature(8)),
                "o_program": Out(stream.Signature(beat)),
                "i_result": In(stream.Signature(beat)),
                "core_error": In(1),
                "core_reset": Out(1),
                "link_error": Out(1),
            }
        )

    def elaborate(self, platform):
        cfg = self._cfg
        nbytes, width = cfg.stream_bytes, cfg.stream_bits
        m = Module()
        reset_fifos = ResetInserter(self.core_reset)
        beat_width = width + 1
        in_fifo = fifo.SyncFIFOBuffered(width=beat_width, depth=FIFO_DEPTH)
        out_fifo = fifo.SyncFIFOBuffered(width=beat_width, depth=FIFO_DEPTH)
        # RESET empties both FIFOs with the core
        m.submodules.in_fifo = reset_fifos(in_fifo)
        m.submodules.out_fifo = reset_fifos(out_fifo)
        m.d.comb += [
            self.o_program.valid.eq(in_fifo.r_stream.valid),
            self.o_program.payload.eq(in_fifo.r_stream.payload),
            in_fifo.r_stream.ready.eq(self.o_program.ready),
            out_fifo.w_stream.valid.eq(self.i_result.valid),
            out_fifo.w_stream.payload.eq(self.i_result.payload),
            self.i_result.ready.eq(out_fifo.w_stream.ready),
        ]
        free = Signal(range(FIFO_DEPTH + 1))
        m.d.comb += free.eq(FIFO_DEPTH - in_fifo.level)

        max_beats = protocol.LINK_MAX_BEATS
        m.submodules.rx_buffer = rx_mem = memory.Memory(shape=width, depth=max_beats, init=[])
        m.submodules.tx_buffer = tx_mem = memory.Memory(shape=width, depth=max_beats, init=[])
        rx_write, rx_read = rx_mem.write_port(), rx_mem.read_port()
        tx_write, tx_read = tx_mem.write_port(), tx_mem.read_port()

        byte = self.i_byte.payload
        got = self.i_byte.valid
        crc = Signal(16, init=protocol.LINK_CRC_INIT)
        header = Signal(range(len(protocol.LINK_HEADER)))
        kind, seq, count, flags = (Signal(8, name=n) for n in ("kind", "seq", "count", "flags"))
        last_seq, have_seq = Signal(8), Signal()
        beat = Signal(width)
        byte_index = Signal(range(nbytes))
        beat_index = Signal(range(max_beats + 1))
        crc_hi_ok = Signal()
        idle_limit = protocol.LINK_IDLE_BYTES * 10 * self._divisor
        idle = Signal(range(idle_limit + 1))
        # the response
        response, resp_count, resp_flags = Signal(8), Signal(8), Signal(8)
        credit, avail = Signal(16), Signal(16)
        tx_count, tx_last = Signal(range(max_beats + 1)), Signal()
        pending, pending_last = Signal(), Signal()

        m.d.sync += self.link_error.eq(0)
        m.d.comb += self.core_reset.eq(0)
        is_repeat = have_seq & (seq == last_seq)
        kinds = (protocol.LinkFrame.RESET, protocol.LinkFrame.WRITE, protocol.LinkFrame.READ)
        known = Cat(*(kind == k for k in kinds)).any()

        def drop():
            m.d.sync += self.link_error.eq(1)
            m.next = "HUNT"

        def take_byte():  # a byte of the frame after the SOF, into the CRC
            m.d.sync += [crc.eq(crc16_step(crc, byte)), idle.eq(0)]

        with m.FSM():
            with m.State("HUNT"):
                m.d.sync += [crc.eq(protocol.LINK_CRC_INIT), header.eq(0), idle.eq(0)]
                with m.If(got & (byte == protocol.LINK_SOF)):
                    m.next = "HEADER"
            with m.State("HEADER"):
                m.d.sync += idle.eq(idle + 1)
                with m.If(got):
                    take_byte()
                    m.d.sync += header.eq(header + 1)
                    fields = Array([kind, seq, count, flags])
                    with m.If(header < 4):
                        m.d.sync += fields[header[:2]].eq(byte)
                    m.d.sync += [byte_index.eq(0), beat_index.eq(0)]
                    with m.If(header == len(protocol.LINK_HEADER) - 1):
                        with m.If(~known):
                            drop()
                        with m.Elif(kind == protocol.LinkFrame.WRITE):
                            with m.If(count == 0):
                                drop()
                            with m.Else():
                                m.next = "PAYLOAD"
                        with m.Elif((kind == protocol.LinkFrame.RESET) & (count != 0)):
                            drop()
                        with m.Else():
                            m.next = "CRC_HI"
                with m.Elif(idle == idle_limit):
                    drop()
            with m.State("PAYLOAD"):
                m.d.sync += idle.eq(idle + 1)
                word = Cat(beat[8:], byte)
                m.d.comb += [rx_write.addr.eq(beat_index), rx_write.data.eq(word)]
                with m.If(got):
                    take_byte()
                    m.d.sync += [beat.eq(word), byte_index.eq(byte_index + 1)]
                    with m.If(byte_index == nbytes - 1):
                        m.d.comb += rx_write.en.eq(1)
                        m.d.sync += [byte_index.eq(0), beat_index.eq(beat_index + 1)]
                        with m.If(beat_index + 1 == count):
                            m.next = "CRC_HI"
                with m.Elif(idle == idle_limit):
                    drop()
            with m.State("CRC_HI"):
                m.d.sync += idle.eq(idle + 1)
                with m.If(got):
                    m.d.sync += [crc_hi_ok.eq(byte == crc[8:]), idle.eq(0)]
                    m.next = "CRC_LO"
                with m.Elif(idle == idle_limit):
                    drop()
            with m.State("CRC_LO"):
                m.d.sync += idle.eq(idle + 1)
                with m.If(got):
                    with m.If(crc_hi_ok & (byte == crc[:8])):
                        m.next = "TAKE"
                    with m.Else():
                        drop()
                with m.Elif(idle == idle_limit):
                    drop()
            with m.State("TAKE"):
                m.d.sync += [beat_index.eq(0), pending.eq(0)]
                with m.Switch(kind):
                    with m.Case(protocol.LinkFrame.RESET):
                        m.d.comb += self.core_reset.eq(1)
                        m.d.sync += [have_seq.eq(0), response.eq(protocol.LinkFrame.ACK)]
                        m.next = "RESPOND"
                    with m.Case(protocol.LinkFrame.WRITE):
                        m.d.sync += response.eq(protocol.LinkFrame.ACK)
                        with m.If(is_repeat):
                            m.next = "RESPOND"
                        with m.Elif(count > free):
                            drop()
                        with m.Else():
                            m.d.sync += [have_seq.eq(1), last_seq.eq(seq)]
                            m.next = "COPY"
                    with m.Default():  # READ
                        m.d.sync += response.eq(protocol.LinkFrame.DATA)
                        with m.If(is_repeat):
                            m.next = "RESPOND"
                        with m.Else():  # a repeat keeps the beats it sent
                            m.d.sync += [have_seq.eq(1), last_seq.eq(seq)]
                            m.d.sync += [tx_count.eq(0), tx_last.eq(0)]
                            m.next = "FILL"
            with m.State("COPY"):  # the buffered beats into the input FIFO (room checked)
                m.d.comb += rx_read.addr.eq(beat_index)
                with m.If(beat_index != count):
                    m.d.sync += [
                        beat_index.eq(beat_index + 1),
                        pending.eq(1),
                        pending_last.eq(
                            (beat_index + 1 == count) & (flags & protocol.LINK_FLAG_LAST).any()
                        ),
                    ]
                with m.Else():
                    m.d.sync += pending.eq(0)
                    with m.If(~pending):
                        m.next = "RESPOND"
                m.d.comb += [
                    in_fifo.w_stream.valid.eq(pending),
                    in_fifo.w_stream.payload.eq(Cat(rx_read.data, pending_last)),
                ]
            with m.State("FILL"):  # up to count result beats, ending after a tlast
                r = out_fifo.r_stream
                m.d.comb += [tx_write.addr.eq(tx_count), tx_write.data.eq(r.payload[:width])]
                with m.If((tx_count != count) & ~tx_last & r.valid):
                    m.d.comb += [r.ready.eq(1), tx_write.en.eq(1)]
                    m.d.sync += [tx_count.eq(tx_count + 1), tx_last.eq(r.payload[width])]
                with m.Else():
                    m.next = "RESPOND"
            with m.State("RESPOND"):  # a cycle for the FIFO levels to settle after a write
                m.d.sync += [
                    credit.eq(free),
                    avail.eq(out_fifo.level),
                    crc.eq(protocol.LINK_CRC_INIT),
                    header.eq(0),
                    resp_count.eq(Mux(response == protocol.LinkFrame.DATA, tx_count, 0)),
                    resp_flags.eq(
                        Cat(
                            (response == protocol.LinkFrame.DATA) & tx_last,
                            self.core_error,
                        )
                    ),
                ]
                m.next = "SEND_SOF"
            with m.State("SEND_SOF"):
                m.d.comb += [self.o_byte.valid.eq(1), self.o_byte.payload.eq(protocol.LINK_SOF)]
                with m.If(self.o_byte.ready):
                    m.next = "SEND_HEADER"
            with m.State("SEND_HEADER"):
                values = Array(
                    [response, seq, resp_count, resp_flags, credit[:8], credit[8:], avail[:8]]
                    + [avail[8:]]
                )
                out = values[header]
                m.d.comb += [self.o_byte.valid.eq(1), self.o_byte.payload.eq(out)]
                with m.If(self.o_byte.ready):
                    m.d.sync += [crc.eq(crc16_step(crc, out)), header.eq(header + 1)]
                    m.d.sync += [byte_index.eq(0), beat_index.eq(0)]
                    with m.If(header == len(protocol.LINK_HEADER) - 1):
                        with m.If(resp_count == 0):
                            m.next = "SEND_CRC_HI"
                        with m.Else():
                            m.next = "FETCH"
            with m.State("FETCH"):  # the tx buffer's read port: one cycle
                m.d.comb += tx_read.addr.eq(beat_index)
                m.next = "SEND_PAYLOAD"
            with m.State("SEND_PAYLOAD"):
                m.d.comb += tx_read.addr.eq(beat_index)
                out = tx_read.data.word_select(byte_index, 8)
                m.d.comb += [self.o_byte.valid.eq(1), self.o_byte.payload.eq(out)]
                with m.If(self.o_byte.ready):
                    m.d.sync += [crc.eq(crc16_step(crc, out)), byte_index.eq(byte_index + 1)]
                    with m.If(byte_index == nbytes - 1):
                        m.d.sync += [byte_index.eq(0), beat_index.eq(beat_index + 1)]
                        with m.If(beat_index + 1 == resp_count):
                            m.next = "SEND_CRC_HI"
                        with m.Else():
                            m.next = "FETCH"
            with m.State("SEND_CRC_HI"):
                m.d.comb += [self.o_byte.valid.eq(1), self.o_byte.payload.eq(crc[8:])]
                with m.If(self.o_byte.ready):
                    m.next = "SEND_CRC_LO"
            with m.State("SEND_CRC_LO"):
                m.d.comb += [self.o_byte.valid.eq(1), self.o_byte.payload.eq(crc[:8])]
                with m.If(self.o_byte.ready):
                    m.next = "HUNT"
        return m
