"""Random raw programs for differential testing of the backends (rtl == model == gate).

:func:`random_program` writes one frame of beats straight from :mod:`systolic.hw.isa`,
not through the compiler: valid instructions with random fields (biased towards the ends
of every buffer; a third of the MATMULs step through weight tiles), random LOAD data
(every bit of every beat, including the bits an instruction does not use), LOOPs that
set random valid address patterns (or set a target back to linear) with the MATMULs and
POSTPROCs after them run through the patterns, pooling POSTPROCs to the hidden buffer
(some in runs over the same words), and, in a share of the programs, one fault: an
unknown opcode, a field out of range, a refused LOOP or a MATMUL/POSTPROC that does not
fit its pattern, beats after ``END``, a frame cut in the middle of a LOAD or before
``END``, a one-beat frame, or random beats. Every backend must turn each program into
the same result beats, status packet and cycle count. Each program assumes linear
patterns at its start, so a program that follows one which left a pattern set (or
stopped on an error) checks their reset.

The core does not interlock a LOAD against queued instructions that read the same
words (the compiler keeps them apart, see docs/ARCHITECTURE.md), so the generator
puts a SYNC before a LOAD that would overwrite anything a MATMUL or POSTPROC issued
since the last SYNC reads: what remains is defined behaviour, the same on every
backend.
"""

import numpy as np

from systolic.hw import isa
from systolic.hw.config import ADDR_BITS, MAX_ROWS_PER_OP
from systolic.hw.isa import LoopTarget, Opcode, Target

__all__ = ["random_program", "random_programs", "FAULTS"]

#: The kinds of fault a program may carry (at most one each).
FAULTS = ("opcode", "field", "after_end", "cut", "one_beat", "noise", "pattern")

_STRIDE_MAX = (1 << ADDR_BITS["act_depth"]) - 1
#: Rows of a random valid pattern (inner * outer) at most.
_PATTERN_ROWS = 24

_ENGINE_OPS = (Opcode.MATMUL, Opcode.POSTPROC)


def _near_end(rng, hi):
    """An integer in ``[0, hi]``, often at or next to either end."""
    r = rng.random()
    if r < 0.2:
        return hi
    if r < 0.3:
        return max(0, hi - 1)
    if r < 0.4:
        return 0
    return int(rng.integers(0, hi + 1))


def _stride(rng, steps, room):
    """A stride for ``steps`` steps (count - 1) that keeps their span within ``room``:
    often 0, 1 or small, sometimes up to the limit; any field value when unused."""
    if steps == 0:
        return int(rng.integers(0, _STRIDE_MAX + 1)) if rng.random() < 0.5 else 0
    cap = room // steps
    r = rng.random()
    if r < 0.1:
        return 0
    if r < 0.4:
        return min(1, cap)
    if r < 0.7:
        return int(rng.integers(0, min(cap, 8) + 1))
    return _near_end(rng, cap)


def _span(pattern):
    inner, outer, inner_stride, outer_stride = pattern
    return (inner - 1) * inner_stride + (outer - 1) * outer_stride


class _Writer:
    """Beats of one frame, and the reads of the engine instructions since the last SYNC."""

    def __init__(self, cfg, rng):
        self.cfg, self.rng = cfg, rng
        self.words = []  # one int per beat (stream_bytes * 8 bits)
        self.pending = []  # (buffer, lo, hi) ranges read by queued instructions
        self.patterns = {LoopTarget.READ: None, LoopTarget.WRITE: None}  # None: linear

    def _room(self, target):
        """The largest span a pattern of ``target`` may have."""
        cfg = self.cfg
        return cfg.act_space - 1 if target is LoopTarget.READ else cfg.hidden_depth - 1

    def random_pattern(self, target, rows=_PATTERN_ROWS):
        """A random valid ``(inner, outer, inner_stride, outer_stride)`` for ``target``."""
        rng = self.rng
        inner = int(rng.integers(1, rows + 1))
        outer = int(rng.integers(1, rows // inner + 1))
        room = self._room(target)
        inner_stride = _stride(rng, inner - 1, room)
        outer_stride = _stride(rng, outer - 1, room - (inner - 1) * inner_stride)
        return inner, outer, inner_stride, outer_stride

    def loop(self, target=None, pattern=None):
        """A valid LOOP: ``pattern``, or a random one, or a quarter of the time linear."""
        rng = self.rng
        if target is None:
            target = LoopTarget(int(rng.integers(0, 2)))
        if pattern is None and rng.random() < 0.25:  # linear; the other fields ignored
            self.instr(
                Opcode.LOOP,
                target=target,
                inner=0,
                outer=int(rng.integers(0, MAX_ROWS_PER_OP + 1)),
                inner_stride=int(rng.integers(0, _STRIDE_MAX + 1)),
                outer_stride=int(rng.integers(0, _STRIDE_MAX + 1)),
            )
            self.patterns[target] = None
            return
        pattern = pattern or self.random_pattern(target)
        inner, outer, inner_stride, outer_stride = pattern
        self.instr(
            Opcode.LOOP,
            target=target,
            inner=inner,
            outer=outer,
            inner_stride=inner_stride,
            outer_stride=outer_stride,
        )
        self.patterns[target] = pattern

    def beat(self, value):
        self.words.append(int(value))

    def instr(self, op, **fields):
        word = isa.encode(op, **fields)
        layout = isa.LAYOUTS[op]
        if self.rng.random() < 0.3:  # random bits above the fields: must be ignored
            spare = self.cfg.stream_bits - layout.size
            word |= int(self.rng.integers(0, 1 << min(spare, 62))) << layout.size
        self.beat(word)
        return word

    def sync(self):
        self.instr(Opcode.SYNC)
        self.pending = []

    def _overlaps(self, buffer, lo, hi):
        return any(b == buffer and lo < end and start < hi for b, start, end in self.pending)

    def load(self):
        cfg, rng = self.cfg, self.rng
        R, C = cfg.rows, cfg.cols
        target = Target(int(rng.integers(0, 4)))
        if target is Target.ACT:
            count = int(rng.integers(1, min(12, cfg.act_depth) + 1))
            addr = _near_end(rng, cfg.act_depth - count)
            span = ("act", addr, addr + count)
        elif target is Target.WEIGHT:
            count = int(rng.integers(1, 3 * R + 1))
            addr = _near_end(rng, (cfg.weight_depth * R - count) // R)
            span = ("weight", addr * R, addr * R + count)
        else:
            count = int(rng.integers(1, 2 * C + 1))
            addr = _near_end(rng, (cfg.param_depth * C - count) // C)
            span = ("param", addr * C, addr * C + count)
        if self._overlaps(*span):
            self.sync()
        self.instr(Opcode.LOAD, target=target, addr=addr, count=count)
        # Half the LOADs carry small values (operands -2..2, small biases, multipliers
        # and shifts): their results land inside the int8 range and rounding ties are
        # frequent, where random words nearly always saturate.
        small = rng.random() < 0.5
        for _ in range(count):
            word = int.from_bytes(rng.bytes(cfg.stream_bytes), "little")
            if small and target in (Target.ACT, Target.WEIGHT):
                word = int.from_bytes(
                    rng.integers(-2, 3, cfg.stream_bytes, dtype=np.int8).tobytes(), "little"
                )
            elif small and target is Target.BIAS:
                word = word >> 32 << 32 | (int(rng.integers(-64, 65)) & 0xFFFFFFFF)
            elif small:
                word = word >> isa.SCALE_WORD.size << isa.SCALE_WORD.size | isa.encode_scale(
                    int(rng.integers(0, 5)),
                    int(rng.integers(0, 5)),
                    int(rng.integers(-128, 128)),
                    bool(rng.integers(0, 2)),
                    bool(rng.integers(0, 2)),
                )
            self.beat(word)

    def matmul(self):
        cfg, rng = self.cfg, self.rng
        pattern = self.patterns[LoopTarget.READ]
        if pattern is None:
            m = int(rng.integers(1, 17))
            span = m - 1
        else:
            m, span = pattern[0] * pattern[1], _span(pattern)
        act_addr = _near_end(rng, cfg.act_space - 1 - span)
        # a third step through m weight tiles (row i: tile + i), when m of them fit
        step = int(m <= cfg.weight_depth and rng.random() < 1 / 3)
        tiles = m if step else 1
        tile = _near_end(rng, cfg.weight_depth - tiles)
        self.instr(
            Opcode.MATMUL,
            act_addr=act_addr,
            weight_tile=tile,
            acc_addr=_near_end(rng, cfg.acc_depth - m),
            m=m,
            accumulate=int(rng.integers(0, 2)),
            tile_step=step,
        )
        self.pending += [
            ("act", act_addr, act_addr + span + 1),
            ("weight", tile * cfg.rows, (tile + tiles) * cfg.rows),
        ]

    def postproc(self):
        """A POSTPROC; one to the hidden buffer pools half the time, and then sometimes
        starts a run of pooling POSTPROCs onto the same words (a max-pool)."""
        cfg, rng = self.cfg, self.rng
        mode = int(rng.integers(0, 3))  # to ACT, to the stream, raw to the stream
        pattern = self.patterns[LoopTarget.WRITE]
        if mode == 0 and pattern is not None:
            m, span = pattern[0] * pattern[1], _span(pattern)
        else:
            m = int(rng.integers(1, 13))
            span = m - 1
        dst = (
            _near_end(rng, cfg.hidden_depth - 1 - span) + cfg.act_depth
            if mode == 0
            else int(rng.integers(0, cfg.act_space))
        )  # ignored when streamed
        pool = int(mode == 0 and rng.random() < 0.5)
        runs = int(rng.integers(1, 4)) if pool and rng.random() < 0.4 else 1
        for _ in range(runs):
            param = _near_end(rng, cfg.param_depth - 1)
            self.instr(
                Opcode.POSTPROC,
                acc_addr=_near_end(rng, cfg.acc_depth - m),
                m=m,
                param_addr=param,
                dst_addr=dst,
                group=int(rng.integers(0, cfg.groups)),
                to_stream=int(mode > 0),
                raw=int(mode == 2),
                pool=pool,
            )
            self.pending.append(("param", param * cfg.cols, (param + 1) * cfg.cols))

    def bad_instruction(self):
        """One instruction the front end must refuse (each check of
        ``systolic.host.compile.checks``)."""
        cfg, rng = self.cfg, self.rng
        R, C = cfg.rows, cfg.cols
        mm = dict(act_addr=0, weight_tile=0, acc_addr=0, m=1, accumulate=0)
        pp = dict(
            acc_addr=0, m=1, param_addr=0, dst_addr=cfg.act_depth, group=0, to_stream=0, raw=0
        )
        m = int(rng.integers(1, 9))
        cases = [
            (Opcode.LOAD, dict(target=int(rng.integers(0, 4)), addr=0, count=0)),
            (Opcode.LOAD, dict(target=Target.ACT, addr=cfg.act_depth - m + 1, count=m)),
            (Opcode.LOAD, dict(target=Target.WEIGHT, addr=cfg.weight_depth - 1, count=R + m)),
            (
                Opcode.LOAD,
                dict(target=int(rng.integers(2, 4)), addr=cfg.param_depth - 1, count=C + m),
            ),
            (Opcode.MATMUL, {**mm, "m": 0}),
            (Opcode.MATMUL, {**mm, "m": m, "act_addr": cfg.act_space - m + 1}),
            (Opcode.MATMUL, {**mm, "weight_tile": cfg.weight_depth + int(rng.integers(0, 4))}),
            (  # a stepping MATMUL whose last tile is past the buffer
                Opcode.MATMUL,
                {**mm, "m": m + 1, "tile_step": 1, "weight_tile": cfg.weight_depth - m},
            ),
            (Opcode.MATMUL, {**mm, "m": m, "acc_addr": cfg.acc_depth - m + 1}),
            (Opcode.POSTPROC, {**pp, "m": 0}),
            (Opcode.POSTPROC, {**pp, "m": m, "acc_addr": cfg.acc_depth - m + 1}),
            (Opcode.POSTPROC, {**pp, "param_addr": cfg.param_depth}),
            (Opcode.POSTPROC, {**pp, "group": cfg.groups}),
            (Opcode.POSTPROC, {**pp, "raw": 1}),
            (Opcode.POSTPROC, {**pp, "dst_addr": int(rng.integers(0, cfg.act_depth))}),
            (Opcode.POSTPROC, {**pp, "m": m, "dst_addr": cfg.act_space - m + 1}),
            (Opcode.POSTPROC, {**pp, "to_stream": 1, "pool": 1, "raw": int(rng.integers(0, 2))}),
        ]
        while True:  # a case whose value cannot even be encoded: take another
            op, fields = cases[int(rng.integers(0, len(cases)))]
            try:
                self.beat(isa.encode(op, **fields))
                return
            except isa.InstructionError:
                continue

    def bad_pattern(self):
        """A refused LOOP, or a valid LOOP then a MATMUL or POSTPROC that does not fit
        it: ``m`` not ``inner * outer`` (BAD_LOOP), or addresses past the buffer
        (ACT_RANGE, some that a 16- or 17-bit sum would wrap back into it); or a pooling
        POSTPROC to the stream (BAD_POOL)."""
        cfg, rng = self.cfg, self.rng
        kind = int(rng.integers(0, 6))
        if kind == 5:  # pool on a row for the stream, whatever the WRITE pattern
            if rng.random() < 0.5:
                self.loop(LoopTarget.WRITE)
            self.beat(
                isa.encode(
                    Opcode.POSTPROC,
                    m=int(rng.integers(1, 9)),
                    dst_addr=int(rng.integers(0, cfg.act_space)),
                    to_stream=1,
                    raw=int(rng.integers(0, 2)),
                    pool=1,
                )
            )
            return
        if kind == 0:  # BAD_LOOP on the LOOP itself
            inner = _near_end(rng, MAX_ROWS_PER_OP - 1) + 1
            outer = 0 if rng.random() < 0.5 else MAX_ROWS_PER_OP // inner + 1
            outer = min(outer, MAX_ROWS_PER_OP)
            if inner * outer <= MAX_ROWS_PER_OP:
                outer = 0
            self.beat(
                isa.encode(
                    Opcode.LOOP,
                    target=int(rng.integers(0, 2)),
                    inner=inner,
                    outer=outer,
                    inner_stride=int(rng.integers(0, _STRIDE_MAX + 1)),
                    outer_stride=int(rng.integers(0, _STRIDE_MAX + 1)),
                )
            )
            return
        target = LoopTarget(kind % 2)  # 1, 3: WRITE; 2, 4: READ
        if rng.random() < 0.3 and kind >= 3:  # a span that reaches past 2**16
            pattern = (2, int(rng.integers(1, 3)), _STRIDE_MAX, int(rng.integers(0, 2)))
        else:
            pattern = self.random_pattern(target)
        self.loop(target, pattern)
        rows, span = pattern[0] * pattern[1], _span(pattern)
        lo = cfg.act_depth if target is LoopTarget.WRITE else 0
        if kind <= 2:  # m does not fit (the address may be out of range too)
            m = rows + int(rng.choice([-1, 1, int(rng.integers(2, 9))]))
            m = m if 1 <= m <= MAX_ROWS_PER_OP else rows + 1
            addr = _near_end(rng, cfg.act_space - 1) if rng.random() < 0.3 else lo
        else:  # at or past the end (or below the hidden buffer for a POSTPROC)
            m = rows
            first = min(max(0, cfg.act_space - span), _STRIDE_MAX)
            addr = first if rng.random() < 0.5 else int(rng.integers(first, _STRIDE_MAX + 1))
            if target is LoopTarget.WRITE and rng.random() < 0.25:
                addr = int(rng.integers(0, cfg.act_depth))
        if target is LoopTarget.READ:
            fields = dict(act_addr=addr, weight_tile=0, acc_addr=0, m=m)
            self.beat(isa.encode(Opcode.MATMUL, **fields))
        else:
            fields = dict(
                acc_addr=0, m=m, param_addr=0, dst_addr=addr, pool=int(rng.integers(0, 2))
            )
            self.beat(isa.encode(Opcode.POSTPROC, **fields))


def random_program(cfg, rng, fault=None):
    """One frame of program beats, uint8 ``[n, cfg.stream_bytes]``.

    Parameters
    ----------
    cfg : CoreConfig
    rng : numpy.random.Generator
    fault : str or None
        One of :data:`FAULTS`, or None for a valid program.
    """
    w = _Writer(cfg, rng)
    n = int(rng.integers(1, 40))
    fault_at = int(rng.integers(0, n + 1))
    for i in range(n + 1):
        if fault in ("opcode", "field", "pattern") and i == fault_at:
            if fault == "opcode":
                code = int(rng.choice([0, *range(max(o.value for o in Opcode) + 1, 16)]))
                w.beat((int(rng.integers(0, 1 << 60)) << 4) | code)
            elif fault == "field":
                w.bad_instruction()
            else:
                w.bad_pattern()
            for _ in range(int(rng.integers(0, 4))):  # discarded up to tlast
                w.beat(int.from_bytes(rng.bytes(cfg.stream_bytes), "little"))
            break
        if i == n:
            break
        r = rng.random()
        if r < 0.3:
            w.load()
        elif r < 0.55:
            w.matmul()
        elif r < 0.8:
            w.postproc()
        elif r < 0.92:
            w.loop()
        else:
            w.sync()
    w.instr(Opcode.END)
    if fault == "after_end":  # beats after END: END does not carry tlast
        for _ in range(int(rng.integers(1, 4))):
            w.load() if rng.random() < 0.5 else w.matmul()
        w.instr(Opcode.END)
    elif fault == "cut":  # tlast in the middle of a LOAD or before END
        w.words = w.words[: int(rng.integers(1, len(w.words)))]
    elif fault == "one_beat":
        w.words = [
            isa.encode(Opcode.END)
            if rng.random() < 0.5
            else int.from_bytes(rng.bytes(cfg.stream_bytes), "little")
        ]
    elif fault == "noise":
        w.words = [
            int.from_bytes(rng.bytes(cfg.stream_bytes), "little")
            for _ in range(int(rng.integers(1, 20)))
        ]
    sb = cfg.stream_bytes
    raw = b"".join(v.to_bytes(sb, "little") for v in w.words)
    return np.frombuffer(raw, np.uint8).reshape(-1, sb).copy()


def random_programs(cfg, seed, count, fault_share=0.4):
    """``count`` programs from ``seed``: about ``fault_share`` of them with one fault each,
    the kinds in turn. Returns ``[(fault or None, beats)]``."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        fault = FAULTS[i % len(FAULTS)] if rng.random() < fault_share else None
        out.append((fault, random_program(cfg, rng, fault)))
    return out
