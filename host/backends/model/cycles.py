"""The exact cycle model of the core (no backpressure, no input gaps).

The rules, which the RTL (hw/frontend.py, hw/engine.py) is built to:

* Cycle 0 is the cycle the program's first beat is accepted; the front end takes one
  beat a cycle. LOAD: its header, then ``count`` data beats.
* MATMUL and POSTPROC are pushed into a queue of ``queue_depth`` in the cycle they are
  accepted. The ``j``-th engine instruction can be pushed in cycle ``t`` only if
  instruction ``j - queue_depth`` was popped before ``t``.
* Instruction ``j`` is popped at ``pop_j``: the earliest cycle after its push, not
  before ``end_{j-1}`` (the cycle that issues the last row of ``j - 1``), and, if
  ``j - 1`` was of the other kind, not before ``end_{j-1} + L + 1`` with
  ``L = array_latency`` after a MATMUL and ``postproc_latency`` after a POSTPROC.
  Its rows issue in cycles ``pop_j + 1 .. end_j``; ``end_j = pop_j + slots`` with
  ``slots = m`` (``m * raw_beats`` for a raw POSTPROC).
* LOOP is taken like any beat, one cycle, and never enters the queue: the front end
  attaches the current pattern to each MATMUL and POSTPROC it queues, whose timing
  does not depend on it (nor on ``pool``).
* SYNC and END are accepted at the first cycle the engine is idle:
  ``end_last + L_last + 1``. The status packet's ``cycles`` counts cycle 0 through
  the cycle END is accepted; ``busy_cycles`` counts cycles in some
  ``[pop_j + 1, end_j + L_j]``; ``mac_cycles`` the MATMUL rows.
* A frame (the beats up to and including the one with tlast) is exactly one program:
  ``END`` must be its last beat. After an error (a malformed instruction, a tlast
  before ``END``, or ``END`` without tlast) the front end discards beats up to and
  including the one with tlast; counting stops after that beat.
"""

import dataclasses

import numpy as np

from systolic.hw import isa
from systolic.hw.config import CoreConfig
from systolic.hw.isa import ErrorCode, Opcode

from ...compile.checks import LINEAR, check_instruction, loop_pattern
from ...compile.program import beat_words

__all__ = ["Timeline", "walk", "predict"]


@dataclasses.dataclass
class Timeline:
    """Feeds instructions in program order; tracks the front end and the engine."""

    cfg: object
    front: int = 0  #: the cycle the next beat can be accepted
    pushed: int = 0
    pops: list = dataclasses.field(default_factory=list)
    last_end: int = -1
    last_kind: object = None
    last_drain: int = 0
    busy: list = dataclasses.field(default_factory=list)  #: merged [lo, hi] intervals
    mac_rows: list = dataclasses.field(default_factory=list)  #: MATMUL [first, last] rows
    final: int = None  #: the last counted cycle, once the program has ended

    def _latency(self, kind):
        return self.cfg.array_latency if kind is Opcode.MATMUL else self.cfg.postproc_latency

    def beats(self, n):
        """``n`` beats taken at one a cycle (LOAD header and data, discarded beats)."""
        self.front += n

    def engine(self, kind, m, raw=False):
        """A MATMUL or POSTPROC of ``m`` rows; returns its pop cycle."""
        cfg = self.cfg
        push = self.front
        j = len(self.pops)
        if j >= cfg.queue_depth:
            push = max(push, self.pops[j - cfg.queue_depth] + 1)
        self.front = push + 1
        pop = push + 1
        if j:
            pop = max(pop, self.last_end)
            if kind is not self.last_kind:
                pop = max(pop, self.last_end + self._latency(self.last_kind) + 1)
        slots = m * (cfg.raw_beats if raw else 1)
        end = pop + slots
        lo, hi = pop + 1, end + self._latency(kind)
        if self.busy and lo <= self.busy[-1][1] + 1:
            self.busy[-1][1] = max(self.busy[-1][1], hi)
        else:
            self.busy.append([lo, hi])
        if kind is Opcode.MATMUL:
            self.mac_rows.append((pop + 1, end))
        self.pops.append(pop)
        self.last_end, self.last_kind = end, kind
        return pop

    def idle_at(self):
        if not self.pops:
            return 0
        return self.last_end + self._latency(self.last_kind) + 1

    def sync(self):
        """SYNC or END: accepted when the engine is idle; returns that cycle."""
        t = max(self.front, self.idle_at())
        self.front = t + 1
        return t

    def end(self):
        self.final = self.sync()

    def abort(self, remaining):
        """An error: this beat and ``remaining`` more are discarded, then counting stops."""
        self.final = self.front + remaining
        self.front = self.final + 1

    def status(self, error=ErrorCode.NONE):
        """The status packet's fields (``STATUS_FIELDS``) for a program that has ended."""
        last = self.final
        busy = sum(max(0, min(hi, last) - lo + 1) for lo, hi in self.busy)
        macs = sum(max(0, min(hi, last) - lo + 1) for lo, hi in self.mac_rows)
        return {
            "error": int(error.value if isinstance(error, ErrorCode) else error),
            "cycles": last + 1,
            "busy_cycles": busy,
            "mac_cycles": macs,
            "stall_in_cycles": 0,
            "stall_out_cycles": 0,
        }


def walk(cfg: CoreConfig, beats: np.ndarray, on_instruction=None) -> tuple[Timeline, ErrorCode]:
    """Decode a beat stream as the front end does, driving a :class:`Timeline`.

    ``on_instruction(op, fields, pos)`` is called for every valid instruction before
    it is timed (the model backend executes it there). The LOOP patterns start linear
    and follow the program's valid LOOPs. Returns ``(timeline, error)``.
    """
    words = beat_words(beats)
    n = len(words)
    tl = Timeline(cfg)
    patterns = dict(LINEAR)
    pos = 0
    while pos < n:
        last = pos == n - 1
        word = int(words[pos])
        try:
            op, f = isa.decode(word)
            err = check_instruction(cfg, op, f, patterns)
        except isa.InstructionError:
            op, f, err = None, None, ErrorCode.BAD_OPCODE
        if err is ErrorCode.NONE and last and op is not Opcode.END:
            err = ErrorCode.NO_END
        if err is ErrorCode.NONE and op is Opcode.END and not last:
            err = ErrorCode.END_NOT_LAST
        if err is not ErrorCode.NONE:
            tl.abort(n - 1 - pos)
            return tl, err
        if on_instruction is not None:
            on_instruction(op, f, pos)
        if op is Opcode.LOAD:
            count = f["count"]
            if pos + count >= n - 1:  # the data runs into (or ends with) tlast
                tl.beats(1)
                tl.abort(n - 1 - pos - 1)
                return tl, ErrorCode.NO_END
            tl.beats(1 + count)
            pos += 1 + count
            continue
        if op in (Opcode.MATMUL, Opcode.POSTPROC):
            tl.engine(op, f["m"], raw=op is Opcode.POSTPROC and bool(f["raw"]))
        elif op is Opcode.LOOP:
            patterns[isa.LoopTarget(f["target"])] = loop_pattern(f)
            tl.beats(1)
        elif op is Opcode.SYNC:
            tl.sync()
        elif op is Opcode.END:
            tl.end()
            return tl, ErrorCode.NONE
        pos += 1
    raise ValueError("empty program")


def predict(cfg: CoreConfig, beats: np.ndarray) -> dict:
    """The status packet the core sends for ``beats`` (no gaps, no backpressure)."""
    tl, err = walk(cfg, beats)
    return tl.status(err)
