"""The serial link's host side (framing, CRC, resynchronization, options) and the board's
UART and PLL settings, without a simulator."""

import gc

import numpy as np
import pytest
from amaranth.sim import Simulator

import systolic.hw.board.protocol as protocol
from systolic.host.backends import BackendError, get_backend
from systolic.host.backends.link import (
    Frame,
    FrameParser,
    LinkSession,
    Receive,
    Send,
    crc16,
    encode_frame,
)
from systolic.hw.board.build import baud_divisor
from systolic.hw.board.pll import ecp5_pll
from systolic.hw.board.uart import UARTReceiver, UARTTransmitter
from systolic.hw.config import CoreConfig


def test_crc16_check_value():
    # CRC-16/CCITT-FALSE's published check value, and a bitwise reference
    assert crc16(b"123456789") == 0x29B1
    data = bytes(range(200))
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021 if crc & 0x8000 else crc << 1) & 0xFFFF
    assert crc16(data) == crc


def _frame(seq, beats=2, width=8):
    payload = bytes(range(seq, seq + beats * width))
    return Frame(protocol.LinkFrame.DATA, seq, beats, protocol.LINK_FLAG_LAST, 300, 7, payload)


def test_frame_round_trip_in_pieces():
    frames = [_frame(1), _frame(2, beats=0), _frame(3, beats=5)]
    wire = b"".join(encode_frame(f) for f in frames)
    parser = FrameParser(8)
    got = []
    for i in range(0, len(wire), 3):
        got += parser.feed(wire[i : i + 3])
    assert got == frames and parser.dropped == 0


@pytest.mark.parametrize("fault", ["flip", "drop", "garbage"])
def test_parser_resynchronizes(fault):
    bad, good = bytearray(encode_frame(_frame(1))), encode_frame(_frame(2))
    if fault == "flip":
        bad[5] ^= 0x04
    elif fault == "drop":
        del bad[6]
    else:
        bad = bytearray([protocol.LINK_SOF, 0x77, protocol.LINK_SOF, 0x83, 0, 200])
    parser = FrameParser(8, max_beats=16)  # a count of 200 is no frame of this session
    frames = parser.feed(bytes(bad) + good)
    assert frames == [_frame(2)] and parser.dropped >= 1


def test_session_retries_a_lost_response():
    """The session as data: no answer to the first RESET, a repeat with the same seq."""
    session = LinkSession(8)
    actions = session.reset()
    first = next(actions)
    assert isinstance(first, Send)
    assert isinstance(actions.send(None), Receive)
    quiet = actions.send(b"")  # timed out: wait for a quiet line, then send again
    assert isinstance(quiet, Receive)
    again = actions.send(b"")
    assert again == first
    actions.send(None)
    ack = Frame(protocol.LinkFrame.ACK, first.data[2], credit=512)
    with pytest.raises(StopIteration) as stop:
        actions.send(encode_frame(ack))
    assert stop.value.value == ack and session.stats.retries == 1


def test_session_refuses_bad_beats():
    with pytest.raises(ValueError, match=r"program beats must be \[n >= 1, 8\]"):
        next(LinkSession(8).run(np.zeros((3, 4), np.uint8)))


def test_board_backend_options():
    cfg = CoreConfig(rows=4, cols=4)
    with pytest.raises(BackendError, match="needs a serial port"):
        get_backend("board", cfg)
    with pytest.raises(BackendError, match="max_beats must be between 1 and 255, not 0"):
        get_backend("board", cfg, port="/dev/null", max_beats=0)
    with pytest.raises(BackendError, match="takes only port, baud, max_beats; not gap"):
        get_backend("board", cfg, port="/dev/null", gap=0.1)
    with pytest.raises(BackendError, match="cannot open /nonexistent/tty"):
        get_backend("board", cfg, port="/nonexistent/tty").prepare()


def test_pll_matches_ecppll():
    # what `ecppll -i 25 -o 30` and `-o 40` print
    assert ecp5_pll(25, 30) == dict(
        CLKI_DIV=5, CLKFB_DIV=6, CLKOP_DIV=20, CLKOP_CPHASE=9, vco_mhz=600.0, fout_mhz=30.0
    )
    assert ecp5_pll(25, 40)["CLKFB_DIV"] == 8 and ecp5_pll(25, 40)["CLKOP_DIV"] == 15
    with pytest.raises(ValueError, match="cannot make 1000 MHz"):
        ecp5_pll(25, 1000)


def test_baud_divisor():
    assert baud_divisor(30, 3_000_000) == 10
    with pytest.raises(ValueError, match=r"3200000 baud is 4.2% off at 40 MHz \(divisor 12\)"):
        baud_divisor(40, 3_200_000)  # 12.5 cycles a bit
    with pytest.raises(ValueError, match="2.6% off at 40 MHz"):
        baud_divisor(40, 3_000_000)


def test_uart_loopback():
    """Transmitter into receiver: every byte value, back to back."""
    divisor = 5
    tx, rx = UARTTransmitter(divisor), UARTReceiver(divisor)
    from amaranth.hdl import Module

    m = Module()
    m.submodules.tx, m.submodules.rx = tx, rx
    m.d.comb += rx.rx.eq(tx.tx)
    sent = list(range(256))
    got = []

    async def send(ctx):
        for byte in sent:
            ctx.set(tx.i_byte.payload, byte)
            ctx.set(tx.i_byte.valid, 1)
            await ctx.tick().until(tx.i_byte.ready)
        ctx.set(tx.i_byte.valid, 0)

    async def receive(ctx):
        async for _, _, valid, data in ctx.tick().sample(rx.o_byte.valid, rx.o_byte.payload):
            if valid:
                got.append(data)
                if len(got) == len(sent):
                    return

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(send)
    sim.add_testbench(receive)
    sim.run_until(1e-6 * divisor * 10 * 300)
    assert got == sent


def _link_scenario(requests, gap=3):
    """LinkController in amaranth.sim, its program stream looped back into its result
    stream; each request's bytes in (a byte every ``gap`` cycles), every response out."""
    from amaranth.hdl import Module

    from systolic.hw.board.link import LinkController

    cfg = CoreConfig(rows=4, cols=4)
    link = LinkController(cfg, divisor=4)
    m = Module()
    m.submodules.link = link
    m.d.comb += [
        link.i_result.payload.eq(link.o_program.payload),
        link.i_result.valid.eq(link.o_program.valid),
        link.o_program.ready.eq(link.i_result.ready),
    ]
    out = bytearray()

    async def drive(ctx):
        for request in requests:
            for byte in request:
                ctx.set(link.i_byte.payload, byte)
                ctx.set(link.i_byte.valid, 1)
                await ctx.tick()
                ctx.set(link.i_byte.valid, 0)
                await ctx.tick().repeat(gap)
            await ctx.tick().repeat(2000)  # the response, or a dropped frame's idle timeout

    async def collect(ctx):
        ctx.set(link.o_byte.ready, 1)
        async for _, _, valid, byte in ctx.tick().sample(link.o_byte.valid, link.o_byte.payload):
            if valid:
                out.append(byte)

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(drive)
    sim.add_testbench(collect, background=True)
    sim.run()
    parser = FrameParser(cfg.stream_bytes)
    return parser.feed(bytes(out)), parser.dropped


def test_link_controller_frames():
    reset = encode_frame(Frame(protocol.LinkFrame.RESET, 1))
    beats = bytes(range(24))  # three 8-byte beats
    write = encode_frame(
        Frame(protocol.LinkFrame.WRITE, 2, 3, protocol.LINK_FLAG_LAST, payload=beats)
    )
    bad = bytearray(encode_frame(Frame(protocol.LinkFrame.WRITE, 3, 1, payload=bytes(8))))
    bad[12] ^= 1
    read = encode_frame(Frame(protocol.LinkFrame.READ, 4, 16))
    frames, dropped = _link_scenario([reset, write, bytes(bad), write, read, read])
    assert dropped == 0
    kinds = [(f.kind, f.seq) for f in frames]
    ack, data = protocol.LinkFrame.ACK, protocol.LinkFrame.DATA
    # no answer to the corrupted frame; the repeated WRITE is acknowledged, not written
    assert kinds == [(ack, 1), (ack, 2), (ack, 2), (data, 4), (data, 4)]
    assert frames[0].credit == 512 and frames[0].avail == 0
    for frame in frames[3:]:  # the repeated READ gets the same beats again
        assert frame.count == 3 and frame.payload == beats
        assert frame.flags == protocol.LINK_FLAG_LAST and frame.avail == 0


# a component whose constructor raises is never elaborated, which Amaranth warns about
@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_board_top_wrong_arguments():
    from systolic.hw.board.top import BoardTop

    cfg = CoreConfig(rows=4, cols=4)
    with pytest.raises(TypeError, match="clock must be a number of MHz, not '30'"):
        BoardTop(cfg, "30", 10)
    with pytest.raises(ValueError, match="clock must be between 1 and 400 MHz, not 0"):
        BoardTop(cfg, 0, 10)
    with pytest.raises(ValueError, match="baud divisor must be between 4 and 65536, not 3"):
        BoardTop(cfg, 30, 3)
    with pytest.raises(TypeError, match="baud divisor must be an integer, not 10.0"):
        BoardTop(cfg, 30, 10.0)
    assert BoardTop(cfg, 30, 10).baud == 3_000_000
    gc.collect()  # the warnings, while they are filtered
