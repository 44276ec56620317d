"""The board's serial link protocol: frame types and constants, the one source of the
encoding for the board's link hardware (:mod:`systolic.hw.board.link`) and the host's protocol
code (:mod:`systolic.host.backends.link`).
"""

import enum

__all__ = [
    "DEFAULT_BAUD",
    "LINK_CRC_INIT",
    "LINK_CRC_POLY",
    "LINK_FLAG_ERROR",
    "LINK_FLAG_LAST",
    "LINK_HEADER",
    "LINK_IDLE_BYTES",
    "LINK_MAX_BEATS",
    "LINK_OVERHEAD",
    "LINK_SOF",
    "LinkFrame",
]


# Every frame, both ways: LINK_SOF, then the header bytes of LINK_HEADER (after the SOF),
# then ``count * stream_bytes`` payload bytes (beats, little-endian) for WRITE requests and
# DATA responses only, then the CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF) of every
# byte after the SOF, high byte first. The host asks, the board answers: one response a
# request, carrying the request's ``seq``.


class LinkFrame(enum.IntEnum):
    """Frame types: requests from the host, and responses (the request's code | 0x80)."""

    RESET = 0x01  #: reset the core, both FIFOs and the link's sequence state; ACK
    WRITE = 0x02  #: ``count`` program beats into the input FIFO (at most the credit); ACK
    READ = 0x03  #: up to ``count`` result beats from the output FIFO; DATA
    ACK = 0x81  #: answers RESET and WRITE: no payload
    DATA = 0x83  #: answers READ: ``count`` result beats


#: The link's default rate (baud): the ULX3S's FT231X's fastest.
DEFAULT_BAUD = 3_000_000

#: Start-of-frame byte; a receiver that lost its place hunts for it.
LINK_SOF = 0xA5
#: Header bytes after the SOF, in order; 16-bit fields little-endian.
LINK_HEADER = ("type", "seq", "count", "flags", "credit_lo", "credit_hi", "avail_lo", "avail_hi")
#: ``flags`` bit: the frame's last payload beat carries tlast (the end of a program, or
#: of a status packet).
LINK_FLAG_LAST = 0x01
#: ``flags`` bit (responses): the core's error output is not NONE.
LINK_FLAG_ERROR = 0x02
#: Most beats one frame carries (``count`` is one byte).
LINK_MAX_BEATS = 255
#: The receiver drops a partial frame after this many byte times without a byte.
LINK_IDLE_BYTES = 8
LINK_CRC_POLY, LINK_CRC_INIT = 0x1021, 0xFFFF
#: Bytes a frame adds to its payload: SOF, header, CRC.
LINK_OVERHEAD = 1 + len(LINK_HEADER) + 2
