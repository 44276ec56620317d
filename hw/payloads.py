"""Payload layouts and port signatures shared by the core's blocks.

Streams between blocks are :class:`amaranth.lib.stream.Signature`\\ s of the layouts
below; buffer ports are the small :class:`wiring.Signature`\\ s at the end, named from
the side that drives the address (the writer of a write port, the reader of a read
port). Every width comes from :class:`systolic.hw.config.CoreConfig` or :mod:`systolic.hw.isa`.
"""

from amaranth.hdl import signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from . import isa
from .config import ADDR_BITS

__all__ = [
    "INSTRUCTION",
    "PATTERN",
    "QUEUED",
    "SPAN_BITS",
    "CheckedBeat",
    "EngineState",
    "LoopCheck",
    "MatmulRow",
    "PostprocRow",
    "ProgramBeat",
    "ReadPort",
    "ResultBeat",
    "StatusWord",
    "WeightWrite",
    "WritePort",
    "acc_row",
    "act_word",
    "bias_row",
    "scale_row",
    "weight_row",
    "weight_tile",
]


# -- buffer words ---------------------------------------------------------------------
def act_word(cfg):
    """One activation word: ``rows`` int8 values along the reduction axis."""
    return data.ArrayLayout(signed(cfg.act_bits), cfg.rows)


def weight_row(cfg):
    """One row of a weight tile: ``cols`` int8 weights."""
    return data.ArrayLayout(signed(cfg.weight_bits), cfg.cols)


def weight_tile(cfg):
    """One ``rows x cols`` weight tile, ``[r][c]``."""
    return data.ArrayLayout(weight_row(cfg), cfg.rows)


def acc_row(cfg):
    """One accumulator word: ``cols`` int32 lanes."""
    return data.ArrayLayout(signed(cfg.acc_bits), cfg.cols)


def bias_row(cfg):
    """One parameter word of biases: ``cols`` int32 lanes."""
    return data.ArrayLayout(signed(isa.BIAS_BITS), cfg.cols)


def scale_row(cfg):
    """One parameter word of requantization scales: ``cols`` :data:`isa.SCALE_WORD`."""
    return data.ArrayLayout(isa.SCALE_WORD, cfg.cols)


# -- stream payloads --------------------------------------------------------------------
class ProgramBeat(data.StructLayout):
    """One beat of the program stream: ``stream_bits`` of data and the frame's tlast."""

    def __init__(self, cfg):
        super().__init__({"data": cfg.stream_bits, "last": 1})


#: Bits of one term of a LOOP's address span, ``(inner - 1) * inner_stride`` or ``(outer -
#: 1) * outer_stride`` (:data:`systolic.hw.check.LOOP_PRODUCTS`); the span is their sum.
SPAN_BITS = isa.ROWS_BITS + ADDR_BITS["act_depth"]


class LoopCheck(data.StructLayout):
    """The part of an instruction's check that depends on the address patterns, worked
    out from the beat alone so that the decoder only compares.

    ``applies``: the instruction's rows follow the pattern of ``target`` when it is set
    (MATMUL: READ; POSTPROC to the hidden buffer: WRITE). Under a pattern the code is
    ``early`` (the first failing rule before the pattern's), else ``BAD_LOOP`` if ``m``
    is not the pattern's rows, else ``ACT_RANGE`` if ``addr`` (``act_addr`` or
    ``dst_addr``) is at or past the pattern's ``limit``, else ``late`` (the first failing
    rule after them). A LOOP beat carries ``rows = inner * outer`` (its low bits) and
    the ``span`` of its addresses (its last row's offset), from which the decoder works
    out the pattern's ``limit = max(0, act_space - span)``, the least first address whose
    last row lies outside the activation space.
    """

    def __init__(self, cfg):
        super().__init__(
            {
                "applies": 1,
                "target": isa.LoopTarget,
                "early": isa.ErrorCode,
                "late": isa.ErrorCode,
                "m": isa.ROWS_BITS,
                "addr": ADDR_BITS["act_depth"],
                "rows": isa.ROWS_BITS,
                "span": SPAN_BITS + 1,
            }
        )


class CheckedBeat(data.StructLayout):
    """A program beat with the check of the instruction it would be: ``error`` as if no
    pattern were set (``isa.ErrorCode``), ``loop`` the rest (:class:`LoopCheck`)."""

    def __init__(self, cfg):
        super().__init__(
            {"data": cfg.stream_bits, "last": 1, "error": isa.ErrorCode, "loop": LoopCheck(cfg)}
        )


#: One queued instruction, seen through the layout of its opcode.
INSTRUCTION = data.UnionLayout(
    {
        "word": isa.INSTR_BITS,
        "bare": isa.BARE,
        "load": isa.LOAD,
        "matmul": isa.MATMUL,
        "postproc": isa.POSTPROC,
        "loop": isa.LOOP,
    }
)

#: A MATMUL's or POSTPROC's row addresses as the engine receives them: row ``i`` is at
#: ``base + (i mod inner) * inner_stride + (i div inner) * outer_stride``. ``inner == 0``
#: is linear (``inner_stride`` 1): the row count never wraps.
PATTERN = data.StructLayout(
    {
        "inner": isa.ROWS_BITS,
        "inner_stride": ADDR_BITS["act_depth"],
        "outer_stride": ADDR_BITS["act_depth"],
    }
)

#: One entry of the engine's queue: the instruction and the pattern of its addresses
#: (MATMUL: the READ pattern; POSTPROC: the WRITE pattern, unused by rows for the stream).
QUEUED = data.StructLayout({"instr": INSTRUCTION, "pattern": PATTERN})


class MatmulRow(data.StructLayout):
    """One MATMUL row as issued: the activation word to read, the weight tile, and the
    accumulator word it is added into (``accumulate``) or written over."""

    def __init__(self, cfg):
        super().__init__(
            {
                "act_addr": range(cfg.act_space),
                "weight_tile": range(cfg.weight_depth),
                "acc_addr": range(cfg.acc_depth),
                "accumulate": 1,
            }
        )


class PostprocRow(data.StructLayout):
    """One POSTPROC row as issued: the accumulator and parameter words to read, and where
    the result goes: the stream (``to_stream``; ``raw``: as int32 lanes) or the slice
    ``group`` of it to activation address ``dst_addr`` (``pool``: the lane-wise maximum
    of it and the word there).

    ``param_addr`` is the parameter word once for each lane, all equal: each lane's
    parameters are a memory of their own (:class:`systolic.hw.params.ParamBuffer`),
    read at its own copy, so that no one address bit drives every lane's memory."""

    def __init__(self, cfg):
        super().__init__(
            {
                "acc_addr": range(cfg.acc_depth),
                "param_addr": data.ArrayLayout(range(cfg.param_depth), cfg.cols),
                "dst_addr": range(cfg.act_space),
                "group": isa.GROUP_BITS,
                "to_stream": 1,
                "raw": 1,
                "pool": 1,
            }
        )


class StatusWord(data.StructLayout):
    """One word of the status packet, tlast on the packet's last word."""

    def __init__(self):
        super().__init__({"word": isa.STATUS_WORD_BITS, "last": 1})


class ResultBeat(data.StructLayout):
    """One beat of the result stream (the status packet is sent apart from it)."""

    def __init__(self, cfg):
        super().__init__({"data": cfg.stream_bits})


# -- buffer ports -----------------------------------------------------------------------
class WritePort(wiring.Signature):
    """A buffer write port, from the writer's side: ``en``, ``addr``, ``data``.

    Parameters
    ----------
    depth : int
        Words of the buffer; ``addr`` is ``range(depth)``.
    shape : shape-like
        One word.
    lanes : int, optional
        With ``lanes``, ``en`` has a bit a lane and ``addr`` an address a lane (a buffer
        whose lanes are memories of their own, written one lane at a time).
    """

    def __init__(self, depth, shape, lanes=None):
        addr = range(depth) if lanes is None else data.ArrayLayout(range(depth), lanes)
        super().__init__({"en": Out(lanes or 1), "addr": Out(addr), "data": Out(shape)})


class ReadPort(wiring.Signature):
    """A buffer read port, from the reader's side: ``addr`` and ``en`` out, ``data`` in
    (the word at ``addr`` one cycle later, or more for a buffer that registers it).

    With ``lanes``, ``addr`` has an address a lane (a buffer whose lanes are memories of
    their own, each read at its own address)."""

    def __init__(self, depth, shape, en=True, lanes=None):
        addr = range(depth) if lanes is None else data.ArrayLayout(range(depth), lanes)
        members = {"addr": Out(addr), "data": In(shape)}
        if en:
            members["en"] = Out(1, init=1)  # as a memory's read port: enabled if not driven
        super().__init__(members)


class WeightWrite(wiring.Signature):
    """The weight buffer's write port, from the writer's side: row ``row`` of tile
    ``tile`` (``cols`` weights) when ``en``."""

    def __init__(self, cfg):
        super().__init__(
            {
                "en": Out(1),
                "tile": Out(range(cfg.weight_depth)),
                "row": Out(range(cfg.rows)),
                "data": Out(weight_row(cfg)),
            }
        )


class EngineState(wiring.Signature):
    """What the engine tells the front end, from the engine's side.

    Members
    -------
    idle : Out(1)
        Nothing queued, running or in a pipeline: SYNC, END and the status packet may go.
    busy : Out(1)
        An instruction runs or a pipeline holds rows (``busy_cycles``).
    mac_issue : Out(1)
        A MATMUL row is issued this cycle (``mac_cycles``).
    out_stall : Out(1)
        A result beat waits for the output (``stall_out_cycles``).
    """

    def __init__(self):
        super().__init__({"idle": Out(1), "busy": Out(1), "mac_issue": Out(1), "out_stall": Out(1)})
