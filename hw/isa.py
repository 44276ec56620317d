"""The instruction set, defined once.

Every instruction is one 64-bit word in the low bytes of a program-stream beat. The
hardware decodes a beat through the :mod:`amaranth.lib.data` layouts below; the host
encodes and decodes with :func:`encode` and :func:`decode`, which read the same layouts,
so no opcode number or bit position is written anywhere else.

``LOAD`` is followed by ``count`` data beats:

======== ================================ ===========================================
target   one beat carries                 ``addr`` counts
======== ================================ ===========================================
ACT      one activation word (rows bytes) activation words
WEIGHT   one tile row (cols bytes)        whole tiles; beats fill rows 0..rows-1
BIAS     one channel's int32 bias         parameter words; beats fill lanes 0..cols-1
SCALE    one channel's :data:`SCALE_WORD` parameter words; beats fill lanes 0..cols-1
======== ================================ ===========================================
"""

import enum

from amaranth.hdl import signed
from amaranth.lib import data
from amaranth.lib import enum as hdl_enum

from .config import ADDR_BITS, MAX_ROWS_PER_OP

__all__ = [
    "BARE",
    "BIAS_BITS",
    "GROUP_BITS",
    "INSTR_BITS",
    "INSTR_BYTES",
    "LAYOUTS",
    "LOAD",
    "LOOP",
    "MATMUL",
    "POSTPROC",
    "SCALE_WORD",
    "STATUS_FIELDS",
    "STATUS_WORD_BITS",
    "STATUS_WORD_BYTES",
    "ErrorCode",
    "InstructionError",
    "LoopTarget",
    "Opcode",
    "Target",
    "decode",
    "encode",
    "encode_scale",
]

INSTR_BITS = 64
OPCODE_BITS = 4
COUNT_BITS = 20
ROWS_BITS = MAX_ROWS_PER_OP.bit_length()
BIAS_BITS = 32
#: Width of POSTPROC's ``group`` field: up to ``2**GROUP_BITS`` rows-wide slices of a row.
GROUP_BITS = 3
#: Width of each word of the status packet (the low bits of a result beat).
STATUS_WORD_BITS = 32


class Opcode(hdl_enum.Enum, shape=OPCODE_BITS):
    LOAD = 1  #: stream ``count`` beats into a buffer
    MATMUL = 2  #: ``m`` activation rows times one weight tile (or ``m``) into the accumulators
    POSTPROC = 3  #: bias, requantize, clamp ``m`` accumulator rows; to ACT or the stream
    SYNC = 4  #: wait until the execute engine has drained
    END = 5  #: drain, then send the status packet (ends a program)
    LOOP = 6  #: set the two-level address pattern of MATMUL reads or POSTPROC writes


class Target(hdl_enum.Enum, shape=2):
    ACT = 0
    WEIGHT = 1
    BIAS = 2
    SCALE = 3


class LoopTarget(hdl_enum.Enum, shape=1):
    """Which addresses a LOOP patterns."""

    READ = 0  #: the activation words MATMUL rows read
    WRITE = 1  #: the hidden-buffer words POSTPROC rows write


class ErrorCode(hdl_enum.Enum, shape=8):
    """Sticky error codes; the first error wins until reset."""

    NONE = 0
    BAD_OPCODE = 1  #: opcode not in :class:`Opcode`
    ACT_RANGE = 2  #: activation address range outside the buffer
    WEIGHT_RANGE = 3  #: weight tile (a stepping MATMUL's last) outside the buffer
    ACC_RANGE = 4  #: accumulator address range outside the buffer
    PARAM_RANGE = 5  #: parameter address range outside the buffer
    ZERO_LENGTH = 6  #: ``count`` or ``m`` is zero
    BAD_GROUP = 7  #: output group beyond ``ceil(cols / rows)``, or raw without to_stream
    NO_END = 8  #: the stream's last beat (tlast) came before ``END``
    END_NOT_LAST = 9  #: ``END`` without tlast: a frame is one program and ends with ``END``
    BAD_LOOP = 10  #: LOOP counts out of range, or ``m`` is not ``inner * outer`` under a LOOP
    BAD_POOL = 11  #: POSTPROC ``pool`` on a row for the stream


#: Order of the words in the status packet that ``END`` sends (one per beat, low bits).
STATUS_FIELDS = (
    "error",
    "cycles",
    "busy_cycles",
    "mac_cycles",
    "stall_in_cycles",
    "stall_out_cycles",
)

BARE = data.StructLayout({"op": Opcode})

LOAD = data.StructLayout(
    {
        "op": Opcode,
        "target": Target,
        "addr": COUNT_BITS,
        "count": COUNT_BITS,
    }
)

MATMUL = data.StructLayout(
    {
        "op": Opcode,
        "act_addr": ADDR_BITS["act_depth"],
        "weight_tile": ADDR_BITS["weight_depth"],
        "acc_addr": ADDR_BITS["acc_depth"],
        "m": ROWS_BITS,
        "accumulate": 1,  #: add to the accumulators (1) or overwrite them (0)
        #: row ``i`` multiplies by weight tile ``weight_tile + i`` (1) instead of
        #: ``weight_tile`` (0): one instruction for a row of activations against ``m``
        #: output tiles (with a READ pattern of stride 0), batch-1 layers in one beat
        "tile_step": 1,
    }
)

POSTPROC = data.StructLayout(
    {
        "op": Opcode,
        "acc_addr": ADDR_BITS["acc_depth"],
        "m": ROWS_BITS,
        "param_addr": ADDR_BITS["param_depth"],
        "dst_addr": ADDR_BITS["act_depth"],
        "group": GROUP_BITS,  #: which rows-wide slice of the cols-wide result goes to ACT
        "to_stream": 1,  #: send each row out on the result stream instead of ACT
        "raw": 1,  #: send ``acc + bias`` as int32 lanes (``raw_beats`` beats a row)
        "pool": 1,  #: write the lane-wise maximum of the row and the word at its destination
    }
)

#: Row ``i`` of a MATMUL (READ) or a POSTPROC to the hidden buffer (WRITE) addresses
#: ``base + (i mod inner) * inner_stride + (i div inner) * outer_stride`` while the
#: target's pattern is set; ``inner == 0`` sets it back to linear (``base + i``). Every
#: program starts linear; under a pattern ``m`` must be ``inner * outer``.
LOOP = data.StructLayout(
    {
        "op": Opcode,
        "target": LoopTarget,
        "inner": ROWS_BITS,
        "outer": ROWS_BITS,
        "inner_stride": ADDR_BITS["act_depth"],
        "outer_stride": ADDR_BITS["act_depth"],
    }
)

#: One output channel's requantization: ``y = clamp(round((acc + bias) * mult / 2**shift)
#: + zero_point)``, floored at ``zero_point`` when ``relu`` is set. ``mult`` is unsigned and
#: every value of its 32 bits is computed exactly; ``round_even`` picks how a tie (a
#: fraction of exactly one half) rounds: up (0) or to the even neighbour (1, as PyTorch's
#: int8 kernels and ONNX do).
SCALE_WORD = data.StructLayout(
    {
        "mult": 32,
        "shift": 6,
        "zero_point": signed(8),
        "relu": 1,
        "round_even": 1,
    }
)

LAYOUTS = {
    Opcode.LOAD: LOAD,
    Opcode.MATMUL: MATMUL,
    Opcode.POSTPROC: POSTPROC,
    Opcode.SYNC: BARE,
    Opcode.END: BARE,
    Opcode.LOOP: LOOP,
}

for _layout in (*LAYOUTS.values(), SCALE_WORD):
    assert _layout.size <= INSTR_BITS


class InstructionError(ValueError):
    """An instruction word that cannot be encoded or decoded."""


def _fields(layout):
    for name, field in layout:
        yield name, field.offset, field.width


def _pack(layout, values, what):
    word = 0
    for name, offset, width in _fields(layout):
        value = values.pop(name, 0)
        if isinstance(value, enum.Enum):
            value = value.value
        value = int(value)
        if name == "zero_point":
            if not -128 <= value <= 127:
                raise InstructionError(f"{what} field zero_point must be in -128..127, not {value}")
            value &= 0xFF
        elif not 0 <= value < (1 << width):
            raise InstructionError(
                f"{what} field {name} must be between 0 and {(1 << width) - 1}, not {value}"
            )
        word |= value << offset
    if values:
        raise InstructionError(f"{what} has no field(s) {', '.join(sorted(values))}")
    return word


def encode(op, **fields):
    """Encode one instruction as an integer of :data:`INSTR_BITS` bits.

    Raises
    ------
    InstructionError
        On an unknown field or a value that does not fit its field.
    """
    op = Opcode(op)
    return _pack(LAYOUTS[op], {"op": op, **fields}, op.name)


def decode(word):
    """Decode an instruction word into ``(Opcode, {field: int})``.

    Raises
    ------
    InstructionError
        On an unknown opcode.
    """
    code = word & ((1 << OPCODE_BITS) - 1)
    try:
        op = Opcode(code)
    except ValueError:
        raise InstructionError(f"unknown opcode {code}") from None
    out = {}
    for name, offset, width in _fields(LAYOUTS[op]):
        if name != "op":
            out[name] = (word >> offset) & ((1 << width) - 1)
    return op, out


def encode_scale(mult, shift, zero_point, relu, round_even=False):
    """Encode one channel's :data:`SCALE_WORD`.

    Raises
    ------
    InstructionError
        When a value does not fit its field (``mult`` 0..2**32-1, ``shift`` 0..63,
        ``zero_point`` -128..127).
    """
    return _pack(
        SCALE_WORD,
        {
            "mult": mult,
            "shift": shift,
            "zero_point": zero_point,
            "relu": int(relu),
            "round_even": int(round_even),
        },
        "SCALE_WORD",
    )


#: Bytes of an instruction word, in the low bytes of its beat (little-endian).
INSTR_BYTES = INSTR_BITS // 8
#: Bytes of a status-packet word, in the low bytes of its beat.
STATUS_WORD_BYTES = STATUS_WORD_BITS // 8
