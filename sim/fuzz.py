"""Random raw programs for differential testing of the backends (rtl == model == gate).

:func:`random_program` writes one frame of beats straight from :mod:`hw.isa`, not
through the compiler: valid instructions with random fields (biased towards the ends
of every buffer), random LOAD data (every bit of every beat, including the bits an
instruction does not use), and, in a share of the programs, one fault: an unknown
opcode, a field out of range, beats after ``END``, a frame cut in the middle of a LOAD
or before ``END``, a one-beat frame, or random beats. Every backend must turn each
program into the same result beats, status packet and cycle count.

The core does not interlock a LOAD against queued instructions that read the same
words (the compiler keeps them apart, see docs/ARCHITECTURE.md), so the generator
puts a SYNC before a LOAD that would overwrite anything a MATMUL or POSTPROC issued
since the last SYNC reads: what remains is defined behaviour, the same on every
backend.
"""

import numpy as np

from hw import isa
from hw.isa import Opcode, Target

__all__ = ["random_program", "random_programs", "FAULTS"]

#: The kinds of fault a program may carry (at most one each).
FAULTS = ("opcode", "field", "after_end", "cut", "one_beat", "noise")

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


class _Writer:
    """Beats of one frame, and the reads of the engine instructions since the last SYNC."""

    def __init__(self, cfg, rng):
        self.cfg, self.rng = cfg, rng
        self.words = []  # one int per beat (stream_bytes * 8 bits)
        self.pending = []  # (buffer, lo, hi) ranges read by queued instructions

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
        m = int(rng.integers(1, 17))
        act_addr = _near_end(rng, cfg.act_space - m)
        tile = _near_end(rng, cfg.weight_depth - 1)
        self.instr(
            Opcode.MATMUL,
            act_addr=act_addr,
            weight_tile=tile,
            acc_addr=_near_end(rng, cfg.acc_depth - m),
            m=m,
            accumulate=int(rng.integers(0, 2)),
        )
        self.pending += [
            ("act", act_addr, act_addr + m),
            ("weight", tile * cfg.rows, (tile + 1) * cfg.rows),
        ]

    def postproc(self):
        cfg, rng = self.cfg, self.rng
        m = int(rng.integers(1, 13))
        param = _near_end(rng, cfg.param_depth - 1)
        mode = int(rng.integers(0, 3))  # to ACT, to the stream, raw to the stream
        dst = (
            _near_end(rng, cfg.hidden_depth - m) + cfg.act_depth
            if mode == 0
            else int(rng.integers(0, cfg.act_space))
        )  # ignored when streamed
        self.instr(
            Opcode.POSTPROC,
            acc_addr=_near_end(rng, cfg.acc_depth - m),
            m=m,
            param_addr=param,
            dst_addr=dst,
            group=int(rng.integers(0, cfg.groups)),
            to_stream=int(mode > 0),
            raw=int(mode == 2),
        )
        self.pending.append(("param", param * cfg.cols, (param + 1) * cfg.cols))

    def bad_instruction(self):
        """One instruction the front end must refuse (each check of ``host.compile.checks``)."""
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
            (Opcode.MATMUL, {**mm, "m": m, "acc_addr": cfg.acc_depth - m + 1}),
            (Opcode.POSTPROC, {**pp, "m": 0}),
            (Opcode.POSTPROC, {**pp, "m": m, "acc_addr": cfg.acc_depth - m + 1}),
            (Opcode.POSTPROC, {**pp, "param_addr": cfg.param_depth}),
            (Opcode.POSTPROC, {**pp, "group": cfg.groups}),
            (Opcode.POSTPROC, {**pp, "raw": 1}),
            (Opcode.POSTPROC, {**pp, "dst_addr": int(rng.integers(0, cfg.act_depth))}),
            (Opcode.POSTPROC, {**pp, "m": m, "dst_addr": cfg.act_space - m + 1}),
        ]
        while True:  # a case whose value cannot even be encoded: take another
            op, fields = cases[int(rng.integers(0, len(cases)))]
            try:
                self.beat(isa.encode(op, **fields))
                return
            except isa.InstructionError:
                continue


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
        if fault in ("opcode", "field") and i == fault_at:
            if fault == "opcode":
                code = int(rng.choice([0, *range(max(o.value for o in Opcode) + 1, 16)]))
                w.beat((int(rng.integers(0, 1 << 60)) << 4) | code)
            else:
                w.bad_instruction()
            for _ in range(int(rng.integers(0, 4))):  # discarded up to tlast
                w.beat(int.from_bytes(rng.bytes(cfg.stream_bytes), "little"))
            break
        if i == n:
            break
        r = rng.random()
        if r < 0.35:
            w.load()
        elif r < 0.65:
            w.matmul()
        elif r < 0.9:
            w.postproc()
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
