"""The host side of the board's serial link: framing, CRC, retries, flow control.

The protocol is written once, free of input and output (sans-IO): :class:`LinkSession`
methods are generators that yield :class:`Send` and :class:`Receive` actions and get the
received bytes back, so that the same framing, CRC and retry logic drives a real board
over pyserial (:func:`run_blocking` with :class:`SerialTransport`) and the simulated
board top in cocotb (:func:`run_async`, ``sim/board_tb.py``). Frame layout and codes:
``hw/board/protocol.py`` (``LinkFrame``, ``LINK_*``); the board's side: ``hw/board/link.py``.

Each request gets one response carrying its ``seq``. A response that does not come in
time, or comes with a bad CRC, makes the host wait until the line is quiet (the board's
receiver has then dropped any partial frame) and send the same request again, with the
same ``seq``: the board answers a repeat without acting on it twice. WRITEs carry at most
the board's credit, the free beats of its input FIFO, so the board is never overrun; the
host READs results whenever the board holds some, so the core never waits long on its
output.
"""

import binascii
import dataclasses
import time

import numpy as np

import systolic.hw.board.protocol as protocol

__all__ = [
    "Frame",
    "FrameParser",
    "LinkError",
    "LinkSession",
    "LinkStats",
    "Receive",
    "Send",
    "SerialTransport",
    "crc16",
    "encode_frame",
    "run_async",
    "run_blocking",
]

#: Bit times on the line for one byte (8N1).
BYTE_BITS = 10
_PAYLOAD_KINDS = (protocol.LinkFrame.WRITE, protocol.LinkFrame.DATA)


class LinkError(RuntimeError):
    """The link failed: no good response after every retry, or a protocol violation."""


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection) of ``data``."""
    return binascii.crc_hqx(bytes(data), protocol.LINK_CRC_INIT)


@dataclasses.dataclass(frozen=True)
class Frame:
    """One frame. ``payload`` is ``count`` beats for WRITE and DATA, else empty."""

    kind: protocol.LinkFrame
    seq: int
    count: int = 0
    flags: int = 0
    credit: int = 0
    avail: int = 0
    payload: bytes = b""


def encode_frame(frame: Frame) -> bytes:
    """The bytes of ``frame`` on the wire: SOF, header, payload, CRC (high byte first)."""
    body = bytes(
        [
            int(frame.kind),
            frame.seq & 0xFF,
            frame.count,
            frame.flags,
            frame.credit & 0xFF,
            frame.credit >> 8,
            frame.avail & 0xFF,
            frame.avail >> 8,
        ]
    )
    body += frame.payload
    crc = crc16(body)
    return bytes([protocol.LINK_SOF]) + body + bytes([crc >> 8, crc & 0xFF])


class FrameParser:
    """Bytes in, good frames out; hunts for the SOF again after anything bad.

    Parameters
    ----------
    beat_bytes : int
        Bytes of a payload beat (``CoreConfig.stream_bytes``).
    max_beats : int
        Frames that claim more beats are not frames (a SOF byte in noise or a payload):
        the parser hunts on from the next byte instead of waiting for them.

    Members
    -------
    dropped : int
        Frames (or stray bytes' false starts) dropped for a bad header or CRC.
    """

    def __init__(self, beat_bytes: int, max_beats: int = protocol.LINK_MAX_BEATS):
        self.beat_bytes = beat_bytes
        self.max_beats = max_beats
        self.buffer = bytearray()
        self.dropped = 0

    def _length(self, header):
        kind, count = header[0], header[2]
        if kind not in set(protocol.LinkFrame) or count > self.max_beats:
            return None
        payload = count * self.beat_bytes if kind in _PAYLOAD_KINDS else 0
        return 1 + len(protocol.LINK_HEADER) + payload + 2

    def feed(self, data: bytes) -> list[Frame]:
        """Take ``data``; return every complete good frame it finishes, in order."""
        self.buffer += data
        frames = []
        buf = self.buffer
        while True:
            start = buf.find(protocol.LINK_SOF)
            if start < 0:
                buf.clear()
                break
            del buf[:start]
            if len(buf) < 1 + len(protocol.LINK_HEADER):
                break
            length = self._length(buf[1 : 1 + len(protocol.LINK_HEADER)])
            if length is None:
                self.dropped += 1
                del buf[:1]  # not a frame: hunt from the next byte
                continue
            if len(buf) < length:
                break
            body, crc = bytes(buf[1 : length - 2]), buf[length - 2 : length]
            if crc16(body) != (crc[0] << 8 | crc[1]):
                self.dropped += 1
                del buf[:1]
                continue
            frames.append(
                Frame(
                    kind=protocol.LinkFrame(body[0]),
                    seq=body[1],
                    count=body[2],
                    flags=body[3],
                    credit=body[4] | body[5] << 8,
                    avail=body[6] | body[7] << 8,
                    payload=body[len(protocol.LINK_HEADER) :],
                )
            )
            del buf[:length]
        return frames

    def clear(self):
        self.buffer.clear()


@dataclasses.dataclass(frozen=True)
class Send:
    """Action: write ``data`` to the line."""

    data: bytes


@dataclasses.dataclass(frozen=True)
class Receive:
    """Action: return the bytes received until at least one arrives or ``timeout_bits``
    bit times pass (then ``b""``)."""

    timeout_bits: int


@dataclasses.dataclass
class LinkStats:
    """What a session did: frames each way, bytes each way, retries, frames dropped."""

    requests: int = 0
    retries: int = 0
    bytes_out: int = 0
    bytes_in: int = 0
    dropped: int = 0


class LinkSession:
    """The protocol, as generators of :class:`Send`/:class:`Receive` actions.

    Parameters
    ----------
    beat_bytes : int
        Bytes of a beat (``CoreConfig.stream_bytes``).
    max_beats : int
        Beats a frame carries at most (1 .. ``LINK_MAX_BEATS``).
    retries : int
        Times a request is sent again before :class:`LinkError`.
    """

    def __init__(self, beat_bytes: int, max_beats: int = protocol.LINK_MAX_BEATS, retries: int = 8):
        if not 1 <= max_beats <= protocol.LINK_MAX_BEATS:
            raise ValueError(
                f"max_beats must be between 1 and {protocol.LINK_MAX_BEATS}, not {max_beats}"
            )
        self.beat_bytes = beat_bytes
        self.max_beats = max_beats
        self.retries = retries
        self.parser = FrameParser(beat_bytes, max_beats)
        self.seq = 0
        self.stats = LinkStats()

    def _quiet(self):
        """Wait until the line has been quiet for the board's idle timeout (twice)."""
        self.parser.clear()
        while (yield Receive(2 * protocol.LINK_IDLE_BYTES * BYTE_BITS)):
            pass
        self.parser.clear()

    def exchange(self, kind, count=0, flags=0, payload=b""):
        """Send one request until its response comes back good; returns the response."""
        self.seq = (self.seq + 1) & 0xFF
        request = encode_frame(Frame(kind, self.seq, count, flags, payload=bytes(payload)))
        expect = (
            protocol.LinkFrame.DATA if kind == protocol.LinkFrame.READ else protocol.LinkFrame.ACK
        )
        answer = 1 + len(protocol.LINK_HEADER) + 2
        if kind == protocol.LinkFrame.READ:
            answer += count * self.beat_bytes
        # the request on the wire, the board's work (a frame's beats, well under a byte
        # time each), the response's first byte, and margin
        first = BYTE_BITS * (len(request) + 2 * protocol.LINK_IDLE_BYTES + 1) + 64
        gap = BYTE_BITS * protocol.LINK_IDLE_BYTES
        self.stats.requests += 1
        for attempt in range(self.retries + 1):
            if attempt:
                self.stats.retries += 1
                yield from self._quiet()
            yield Send(request)
            self.stats.bytes_out += len(request)
            timeout = first
            while True:
                data = yield Receive(timeout)
                if not data:
                    break  # timed out: send again
                self.stats.bytes_in += len(data)
                timeout = gap + BYTE_BITS * answer  # the rest of the response
                before = self.parser.dropped
                frames = self.parser.feed(data)
                self.stats.dropped += self.parser.dropped - before
                for frame in frames:
                    if frame.seq == self.seq and frame.kind == expect:
                        self.parser.clear()
                        return frame
                if self.parser.dropped != before:
                    break  # a bad response: send again once the line is quiet
        raise LinkError(
            f"no good response to {kind.name} (seq {self.seq}) after {self.retries} retries"
        )

    def reset(self):
        """RESET the board (core, FIFOs, sequence state); returns the ACK."""
        return (yield from self.exchange(protocol.LinkFrame.RESET))

    def run(self, beats: np.ndarray, max_polls: int = 1_000_000):
        """Stream a program (uint8 ``[n, beat_bytes]``, tlast on its last beat) and collect
        every result beat up to the status packet's last; returns uint8 ``[m, beat_bytes]``.

        Raises
        ------
        LinkError
            The link failed, or ``max_polls`` READs in a row brought nothing.
        """
        beats = np.ascontiguousarray(beats, dtype=np.uint8)
        if beats.ndim != 2 or beats.shape[1] != self.beat_bytes or not len(beats):
            raise ValueError(
                f"program beats must be [n >= 1, {self.beat_bytes}] bytes, not {list(beats.shape)}"
            )
        ack = yield from self.reset()
        credit, avail = ack.credit, ack.avail
        out, sent, idle = [], 0, 0
        while True:
            if sent < len(beats) and credit > 0 and avail < self.max_beats:
                k = min(credit, self.max_beats, len(beats) - sent)
                last = sent + k == len(beats)
                chunk = beats[sent : sent + k].tobytes()
                flags = protocol.LINK_FLAG_LAST if last else 0
                resp = yield from self.exchange(protocol.LinkFrame.WRITE, k, flags, chunk)
                sent += k
            else:
                resp = yield from self.exchange(protocol.LinkFrame.READ, self.max_beats)
                if resp.count:
                    out.append(np.frombuffer(resp.payload, np.uint8).reshape(-1, self.beat_bytes))
                    idle = 0
                else:
                    idle += 1
                    if idle > max_polls:
                        raise LinkError(f"no result beat after {max_polls} READs")
                if resp.flags & protocol.LINK_FLAG_LAST:
                    if sent < len(beats):
                        raise LinkError(
                            f"the status packet came after {sent} of {len(beats)} beats"
                        )
                    break
            credit, avail = resp.credit, resp.avail
        if not out:
            return np.zeros((0, self.beat_bytes), np.uint8)
        return np.concatenate(out)


def run_blocking(actions, transport):
    """Drive a :class:`LinkSession` generator over a blocking transport (``write(bytes)``,
    ``read(timeout_bits) -> bytes``); returns the generator's result."""
    reply = None
    while True:
        try:
            action = actions.send(reply)
        except StopIteration as stop:
            return stop.value
        if isinstance(action, Send):
            transport.write(action.data)
            reply = None
        else:
            reply = transport.read(action.timeout_bits)


async def run_async(actions, transport):
    """As :func:`run_blocking`, over a transport whose ``write`` and ``read`` are
    coroutines (the cocotb bench's)."""
    reply = None
    while True:
        try:
            action = actions.send(reply)
        except StopIteration as stop:
            return stop.value
        if isinstance(action, Send):
            await transport.write(action.data)
            reply = None
        else:
            reply = await transport.read(action.timeout_bits)


class SerialTransport:
    """A serial port (pyserial) as a link transport.

    Parameters
    ----------
    port : str
        The device, such as ``/dev/ttyUSB0``.
    baud : int
        Bits a second (the board's: 3,000,000 for the ULX3S build).
    latency_s : float
        Added to every receive timeout: USB serial adapters deliver bytes in packets
        (an FTDI chip's latency timer is 1 to 16 ms).

    Raises
    ------
    LinkError
        The port cannot be opened.
    """

    def __init__(self, port: str, baud: int = protocol.DEFAULT_BAUD, latency_s: float = 0.05):
        import serial

        try:
            self.serial = serial.Serial(port, baud, timeout=0)
        except (serial.SerialException, ValueError) as exc:
            raise LinkError(f"cannot open {port}: {exc}") from None
        self.bit_s = 1.0 / baud
        self.latency_s = latency_s

    def write(self, data: bytes) -> None:
        self.serial.write(data)

    def read(self, timeout_bits: int) -> bytes:
        deadline = time.monotonic() + timeout_bits * self.bit_s + self.latency_s
        while True:
            data = self.serial.read(self.serial.in_waiting or 1)
            if data:
                time.sleep(0.0005)  # let the rest of a USB packet arrive
                return data + self.serial.read(self.serial.in_waiting)
            if time.monotonic() >= deadline:
                return b""
            time.sleep(0.0002)

    def close(self) -> None:
        self.serial.close()
