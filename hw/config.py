"""The hardware configuration: the single source of truth for every width and depth.

The hardware elaborates from a :class:`CoreConfig`, the compiler tiles for it, the
testbenches read it (as JSON from the environment) and its :attr:`CoreConfig.tag`
names cached builds under ``build/<tag>/``.
"""

import dataclasses
import hashlib
import json
import math

__all__ = ["CoreConfig"]

# Width of the instruction fields that address each buffer (see hw/isa.py); a buffer
# may not be deeper than its address field can reach.  Kept here, not in isa.py, so
# that this module stays standard-library only and isa.py derives its layouts from it.
ADDR_BITS = {"act_depth": 16, "weight_depth": 14, "acc_depth": 14, "param_depth": 10}
MAX_ROWS_PER_OP = 1023
ACT_BITS, WEIGHT_BITS, ACC_BITS = 8, 8, 32


def _check_int(name, value, lo, hi):
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be between {lo} and {hi}, not {value}")


@dataclasses.dataclass(frozen=True)
class CoreConfig:
    """Configuration of the systolic core.

    Parameters
    ----------
    rows : int
        Array rows, the reduction (K) dimension of one weight tile; 2..16.
    cols : int
        Array columns, the output-channel (N) dimension of one weight tile; 2..16.
    act_kib : int
        Input buffer size in KiB (words of ``rows`` bytes): what LOAD writes and
        MATMUL reads. Each derived depth is capped at what its instruction address
        field can reach.
    hidden_kib : int
        Hidden-activation buffer size in KiB: what POSTPROC writes and MATMUL reads.
        Both buffers share one activation address space, inputs first.
    weight_kib : int
        Weight buffer size in KiB (whole ``rows`` x ``cols`` tiles).
    acc_kib : int
        Accumulator buffer size in KiB (words of ``cols`` x 32-bit lanes).
    param_depth : int
        Post-processing parameter words (``cols`` output channels each).
    queue_depth : int
        Depth of the queue between the instruction front end and the execute engine.
    deep_pipeline : bool
        Pipeline for the clock (100 MHz and more on an ECP5): every step of
        post-processing registered (8 stages), a two-cycle accumulator read-modify-write,
        a buffered program input. False: 4 post-processing stages, a one-cycle
        read-modify-write, no input buffer: far fewer flip-flops, for small FPGAs such as
        the iCE40 UP5K, at a lower clock. Of the timing, only ``postproc_latency``
        differs.
    split_product : bool
        Each PE forms its product in two registered halves, the activation times the
        weight's low and high 4 bits, and adds both into the partial sum: for PEs built
        in logic (the 16x16 on the ECP5, as carry chains), where a whole 8x8 product
        between two registers bounds the clock. The same latency and results; two DSP
        multiplies a PE where the products go to DSPs, so off by default.

    Raises
    ------
    TypeError, ValueError
        On a field of the wrong type or outside its range.
    """

    rows: int = 8
    cols: int = 8
    act_kib: int = 128
    hidden_kib: int = 32
    weight_kib: int = 128
    acc_kib: int = 64
    param_depth: int = 128
    queue_depth: int = 4
    deep_pipeline: bool = True
    split_product: bool = False

    def __post_init__(self):
        _check_int("rows", self.rows, 2, 16)
        _check_int("cols", self.cols, 2, 16)
        _check_int("act_kib", self.act_kib, 1, 4096)
        _check_int("hidden_kib", self.hidden_kib, 1, 4096)
        _check_int("weight_kib", self.weight_kib, 1, 4096)
        _check_int("acc_kib", self.acc_kib, 1, 4096)
        _check_int("param_depth", self.param_depth, 1, 1 << ADDR_BITS["param_depth"])
        _check_int("queue_depth", self.queue_depth, 2, 64)
        for name in ("deep_pipeline", "split_product"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be true or false, not {getattr(self, name)!r}")
        for name in ("act_depth", "hidden_depth", "weight_depth", "acc_depth"):
            if getattr(self, name) < 1:
                raise ValueError(
                    f"{name} must be at least 1 word; the buffer is too small "
                    f"for a {self.rows}x{self.cols} array"
                )

    # -- fixed widths -----------------------------------------------------------------
    # The operands are int8 and the accumulators int32, not configurable: every lane of a
    # stream beat, a buffer word and the host's data layout is one byte an operand.
    @property
    def act_bits(self):
        """Activation width in bits: signed int8."""
        return ACT_BITS

    @property
    def weight_bits(self):
        """Weight width in bits: signed int8."""
        return WEIGHT_BITS

    @property
    def acc_bits(self):
        """Accumulator width in bits (two's complement, wraps on overflow): int32."""
        return ACC_BITS

    # -- derived values -------------------------------------------------------------
    @property
    def act_depth(self):
        """Input buffer words (each ``rows`` elements): activation addresses 0 .. act_depth-1."""
        return min(self.act_kib * 1024 // self.rows, 1 << (ADDR_BITS["act_depth"] - 1))

    @property
    def hidden_depth(self):
        """Hidden buffer words: activation addresses act_depth .. act_space-1."""
        return min(self.hidden_kib * 1024 // self.rows, 1 << (ADDR_BITS["act_depth"] - 1))

    @property
    def act_space(self):
        """Activation addresses: the input buffer, then the hidden buffer."""
        return self.act_depth + self.hidden_depth

    @property
    def weight_depth(self):
        """Weight buffer depth in whole tiles (each ``rows`` x ``cols`` elements)."""
        return min(
            self.weight_kib * 1024 // (self.rows * self.cols), 1 << ADDR_BITS["weight_depth"]
        )

    @property
    def acc_depth(self):
        """Accumulator buffer words (each ``cols`` lanes of 4 bytes)."""
        return min(
            self.acc_kib * 1024 // (self.cols * self.acc_bits // 8), 1 << ADDR_BITS["acc_depth"]
        )

    @property
    def stream_bytes(self):
        """Bytes per beat of both AXI4-Stream ports: a power of two >= 8, rows, cols."""
        return 1 << max(3, math.ceil(math.log2(max(self.rows, self.cols))))

    @property
    def stream_bits(self):
        return 8 * self.stream_bytes

    @property
    def raw_beats(self):
        """Result-stream beats that carry one raw row of ``cols`` int32 lanes."""
        return -(-self.cols * self.acc_bits // 8 // self.stream_bytes)

    @property
    def groups(self):
        """Activation words one ``cols``-wide output row is split into for the next layer."""
        return -(-self.cols // self.rows)

    @property
    def act_min(self):
        return -(1 << (self.act_bits - 1))

    @property
    def act_max(self):
        return (1 << (self.act_bits - 1)) - 1

    @property
    def macs_per_cycle(self):
        return self.rows * self.cols

    # -- pipeline latencies (the hardware is built to these; the cycle model uses them)
    @property
    def pe_latency(self):
        """Cycles from a processing element's activation input to its partial sum.

        Deep pipeline 3: the activation and the weight are registered in the PE, so that
        the (diagonal, high-fan-out) weight bank registers and the left neighbour reach
        only a register, then the product, then the sum. Shallow 2: product and sum
        (``systolic.hw.pe.ProcessingElement``).
        """
        return 3 if self.deep_pipeline else 2

    @property
    def array_output_delay(self):
        """Cycles from a word entering the array to its aligned result row:
        ``rows - 1`` skew + ``cols - 1`` across + :attr:`pe_latency` in the last PE +
        ``cols - 1 - c`` deskew of column ``c`` (``systolic.hw.array.SystolicArray``)."""
        return self.rows + self.cols + self.pe_latency - 2

    @property
    def mm_write_delay(self):
        """Cycles from issuing a MATMUL row to writing its accumulator word.

        3 to read the activation (block RAM, a register at each buffer's output, a
        register after the input/hidden select; the weights are read as late) +
        :attr:`array_output_delay` through the array.
        """
        return 3 + self.array_output_delay

    @property
    def array_latency(self):
        """Drain time after the last MATMUL row, before a POSTPROC may read: the
        accumulator write (:attr:`mm_write_delay`) and one cycle of margin."""
        return self.mm_write_delay + 1

    @property
    def postproc_stages(self):
        """Register stages of ``systolic.hw.postproc.PostProcessor``."""
        return 8 if self.deep_pipeline else 4

    @property
    def postproc_latency(self):
        """Cycles from issuing a post-processing row to its result (no backpressure).

        Buffer read, issue register, :attr:`postproc_stages`, output register; with the
        deep pipeline one more for a row to the hidden buffer, whose pooling read is
        registered before the maximum is taken (``systolic.hw.result_path``).
        """
        return self.postproc_stages + (4 if self.deep_pipeline else 3)

    # -- identity ----------------------------------------------------------------------
    # -- scheduling rules that programs follow (the compiler and the program checker)
    @property
    def weight_ring_slots(self):
        """Weight-tile slots that streamed weights go through: enough that a slot is
        rewritten only after every MATMUL that reads it has left the queue
        (``queue_depth``), the engine and the array (``rows + cols``), with 2 of margin."""
        return self.queue_depth + self.rows + self.cols + 2

    @property
    def input_reload_distance(self):
        """Engine instructions of a batch after which the next batch's inputs may be
        loaded over the region the previous batch read: once this many are pushed, every
        MATMUL of the previous batch has left the queue (``queue_depth``) and the engine."""
        return self.queue_depth + 2

    def to_dict(self):
        return dataclasses.asdict(self)

    def to_json(self):
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, fields):
        if not isinstance(fields, dict):
            raise TypeError(f"configuration must be a JSON object, not {type(fields).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(fields) - known)
        if unknown:
            raise ValueError(f"unknown configuration field(s): {', '.join(unknown)}")
        return cls(**fields)

    @classmethod
    def from_json(cls, text):
        try:
            fields = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"configuration is not valid JSON: {exc}") from None
        return cls.from_dict(fields)

    @property
    def hash(self):
        """Stable 12-hex-digit hash of the configuration."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:12]

    @property
    def tag(self):
        """Name of this configuration's build directory, e.g. ``r8c8-1a2b3c4d5e6f``."""
        return f"r{self.rows}c{self.cols}-{self.hash}"
