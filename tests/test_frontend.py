"""The front end (hw/frontend.py) and its instruction check (hw/check.py) in amaranth.sim.

The check is compared with the host's statement of the same rules
(``systolic.host.cycles.check_instruction``) on instructions at and around every limit. The
front end runs small programs as data: the buffer writes, the queued instructions and
the status packet it must produce, worked out by hand from the ISA. Programs with
address patterns (LOOP) and pooling run back to back against :func:`_reference`, the
specification's checks and pattern registers written out in Python.
"""

import numpy as np
import pytest
from amaranth.hdl import Module

from systolic.host.compile.checks import check_instruction
from systolic.hw import isa
from systolic.hw.check import InstructionCheck, precheck
from systolic.hw.config import MAX_ROWS_PER_OP, CoreConfig
from systolic.hw.frontend import FrontEnd
from systolic.hw.isa import ErrorCode, LoopTarget, Opcode, Target

from .streams import run_scenario, stream_get, stream_put

CFG = CoreConfig(rows=3, cols=5, act_kib=1, hidden_kib=1, weight_kib=1, acc_kib=1, param_depth=4)
SHALLOW = CoreConfig(
    rows=3,
    cols=5,
    act_kib=1,
    hidden_kib=1,
    weight_kib=1,
    acc_kib=1,
    param_depth=4,
    deep_pipeline=False,
)


def _instructions(cfg, rng):
    """``(word, op or None, fields, last)``: limits, one past them, random fields."""
    out = []

    def around(hi):
        return sorted({0, 1, max(0, hi - 1), hi, hi + 1})

    for target in Target:
        depth = {Target.ACT: cfg.act_depth, Target.WEIGHT: cfg.weight_depth}.get(
            target, cfg.param_depth
        )
        for addr in around(depth):
            for count in around(3 * cfg.rows):
                out.append((Opcode.LOAD, {"target": target, "addr": addr, "count": count}))
    for m in (0, 1, 2):
        for act in around(cfg.act_space - m):
            for acc in around(cfg.acc_depth - m):
                tile = int(rng.integers(0, cfg.weight_depth + 2))
                out.append(
                    (
                        Opcode.MATMUL,
                        {
                            "m": m,
                            "act_addr": act,
                            "acc_addr": acc,
                            "weight_tile": tile,
                            "accumulate": 1,
                        },
                    )
                )
        for tile in around(cfg.weight_depth - m):  # a stepping MATMUL's last tile
            out.append(
                (
                    Opcode.MATMUL,
                    {"m": m, "act_addr": 0, "acc_addr": 0, "weight_tile": tile, "tile_step": 1},
                )
            )
        for dst in around(cfg.act_depth) + around(cfg.act_space - m):
            for group in range(cfg.groups + 1):
                for to_stream, raw in ((0, 0), (1, 0), (1, 1), (0, 1)):
                    out.append(
                        (
                            Opcode.POSTPROC,
                            {
                                "m": m,
                                "acc_addr": int(rng.integers(0, cfg.acc_depth + 1)),
                                "param_addr": int(rng.integers(0, cfg.param_depth + 1)),
                                "dst_addr": dst,
                                "group": group,
                                "to_stream": to_stream,
                                "raw": raw,
                            },
                        )
                    )
    words = [(isa.encode(op, **f), op, f, 0) for op, f in out]
    words += [(isa.encode(op), op, {}, last) for op in (Opcode.SYNC, Opcode.END) for last in (0, 1)]
    words += [
        ((int(rng.integers(0, 1 << 59)) << 4) | code, None, {}, 0)
        for code in range(16)
        if code not in {o.value for o in Opcode}
    ]
    return words


@pytest.mark.parametrize("cfg", [CFG, SHALLOW], ids=["3x5", "3x5-shallow"])
def test_check_agrees_with_the_host_rules(cfg):
    cases = _instructions(cfg, np.random.default_rng(3))
    check = InstructionCheck(cfg)
    dut = Module()  # the check with its products and ends computed combinationally
    dut.submodules.check = check
    dut.d.comb += precheck(cfg, check.pre, check.instr)

    def expected(op, f, last):
        if op is None:
            return ErrorCode.BAD_OPCODE
        if op is Opcode.END and not last:
            return ErrorCode.END_NOT_LAST
        return check_instruction(cfg, op, f)

    async def bench(ctx):
        for word, op, f, last in cases:
            ctx.set(check.instr, {"word": word})
            ctx.set(check.last, last)
            assert ctx.get(check.error) == expected(op, f, last), (op, f, last)

    run_scenario(dut, bench)
    assert len(cases) > 500


def _program(*beats):
    """Program beats as stream payloads, tlast on the last."""
    return [{"data": int(b), "last": i == len(beats) - 1} for i, b in enumerate(beats)]


ACT_ROW = 0x030201
BIAS = [-5, 7, 0, 1, -1]
SCENARIOS = {
    # beats; then what must come out: act writes (addr, lanes), bias lane writes
    # (addr, lane, value), queued instruction words, status error
    "load, queue, end": (
        _program(
            isa.encode(Opcode.LOAD, target=Target.ACT, addr=6, count=2),
            ACT_ROW,
            0xFFFEFD,
            isa.encode(Opcode.LOAD, target=Target.BIAS, addr=1, count=5),
            *[b & 0xFFFFFFFF for b in BIAS],
            isa.encode(Opcode.MATMUL, m=2, act_addr=6, acc_addr=3),
            isa.encode(Opcode.SYNC),
            isa.encode(Opcode.END),
        ),
        [(6, [1, 2, 3]), (7, [-3, -2, -1])],
        [(1, c, b) for c, b in enumerate(BIAS)],
        [isa.encode(Opcode.MATMUL, m=2, act_addr=6, acc_addr=3)],
        ErrorCode.NONE,
    ),
    "an error discards the rest of the frame": (
        _program(
            isa.encode(Opcode.MATMUL, m=1, acc_addr=CFG.acc_depth),
            isa.encode(Opcode.LOAD, target=Target.ACT, addr=0, count=1),
            ACT_ROW,
            isa.encode(Opcode.END),
        ),
        [],
        [],
        [],
        ErrorCode.ACC_RANGE,
    ),
    "tlast before END": (
        _program(isa.encode(Opcode.LOAD, target=Target.ACT, addr=0, count=3), ACT_ROW),
        [(0, [1, 2, 3])],
        [],
        [],
        ErrorCode.NO_END,
    ),
}


@pytest.mark.parametrize("cfg", [CFG, SHALLOW], ids=["3x5", "3x5-shallow"])
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_front_end_runs_a_program(cfg, scenario):
    beats, want_act, want_bias, want_queued, want_error = SCENARIOS[scenario]
    dut = FrontEnd(cfg)
    act, bias, queued, status = [], [], [], []

    async def feed(ctx):
        for beat in beats:
            await stream_put(ctx, dut.i_program, beat)

    async def engine(ctx):  # an idle engine whose queue always has room
        ctx.set(dut.engine.idle, 1)
        ctx.set(dut.o_instr.ready, 1)
        while True:
            if ctx.get(dut.act_write.en):
                act.append(
                    (ctx.get(dut.act_write.addr), [int(v) for v in ctx.get(dut.act_write.data)])
                )
            lanes = ctx.get(dut.bias_write.en)
            for c in range(cfg.cols):
                if (lanes >> c) & 1:
                    bias.append(
                        (ctx.get(dut.bias_write.addr[c]), c, int(ctx.get(dut.bias_write.data[c])))
                    )
            if ctx.get(dut.o_instr.valid):
                queued.append(ctx.get(dut.o_instr.payload.instr.word))
            await ctx.tick()

    async def sink(ctx):
        while not status or not status[-1].last:
            status.append(await stream_get(ctx, dut.o_status))

    run_scenario(dut, feed, sink, background=[engine])
    assert act == want_act and bias == want_bias and queued == want_queued
    words = [s.word for s in status]
    assert len(words) == len(isa.STATUS_FIELDS) and words[0] == want_error.value
    fields = dict(zip(isa.STATUS_FIELDS, words))
    # one beat a cycle from the first beat through END (or the frame's end after an error)
    assert fields["cycles"] == len(beats) and fields["stall_in_cycles"] == 0
    assert fields["busy_cycles"] == fields["mac_cycles"] == fields["stall_out_cycles"] == 0


# -- address patterns and pooling --------------------------------------------------------
def _span(p):
    inner, outer, inner_stride, outer_stride = p
    return (inner - 1) * inner_stride + (outer - 1) * outer_stride


def _spec_check(cfg, op, f, last, patterns):
    """The specification's checks, first failing rule first, under ``patterns``
    (``{LoopTarget: None (linear) or (inner, outer, inner_stride, outer_stride)}``)."""
    E = ErrorCode
    if op is Opcode.LOOP:
        bad = f["inner"] != 0 and (f["outer"] == 0 or f["inner"] * f["outer"] > MAX_ROWS_PER_OP)
        return E.BAD_LOOP if bad else E.NONE
    if op is Opcode.END:
        return E.NONE if last else E.END_NOT_LAST
    if op is Opcode.SYNC:
        return E.NONE
    m = f["m"]
    if op is Opcode.MATMUL:
        p = patterns[LoopTarget.READ]
        rules = [(m == 0, E.ZERO_LENGTH)]
        if p is None:
            rules.append((f["act_addr"] + m > cfg.act_space, E.ACT_RANGE))
        else:
            rules.append((m != p[0] * p[1], E.BAD_LOOP))
            rules.append((f["act_addr"] + _span(p) >= cfg.act_space, E.ACT_RANGE))
        rules.append((f["weight_tile"] >= cfg.weight_depth, E.WEIGHT_RANGE))
        rules.append((f["acc_addr"] + m > cfg.acc_depth, E.ACC_RANGE))
    else:
        dst, stream = f["dst_addr"], f["to_stream"] or f["raw"]
        rules = [
            (m == 0, E.ZERO_LENGTH),
            (f["acc_addr"] + m > cfg.acc_depth, E.ACC_RANGE),
            (f["param_addr"] >= cfg.param_depth, E.PARAM_RANGE),
            (f["group"] >= cfg.groups or (f["raw"] and not f["to_stream"]), E.BAD_GROUP),
            (f["pool"] and stream, E.BAD_POOL),
        ]
        p = patterns[LoopTarget.WRITE]
        if not stream and p is None:
            rules.append((dst < cfg.act_depth or dst + m > cfg.act_space, E.ACT_RANGE))
        elif not stream:
            rules.append((m != p[0] * p[1], E.BAD_LOOP))
            rules.append((dst < cfg.act_depth or dst + _span(p) >= cfg.act_space, E.ACT_RANGE))
    return next((code for failed, code in rules if failed), E.NONE)


def _queued_pattern(p):
    inner, _, inner_stride, outer_stride = p or (0, 0, 1, 0)
    return {"inner": inner, "inner_stride": inner_stride, "outer_stride": outer_stride}


def _reference(cfg, program):
    """``(queued, error)`` of one program (``[(op, fields)]``, tlast on the last):
    the queue entries ``(word, pattern)`` and the status packet's error code. Every
    program starts with both patterns linear."""
    patterns = {t: None for t in LoopTarget}
    queued = []
    for i, (op, f) in enumerate(program):
        last = i == len(program) - 1
        code = _spec_check(cfg, op, f, last, patterns)
        if code is ErrorCode.NONE and last and op is not Opcode.END:
            code = ErrorCode.NO_END
        if code is not ErrorCode.NONE:
            return queued, code
        if op is Opcode.LOOP:
            p = (f["inner"], f["outer"], f["inner_stride"], f["outer_stride"])
            patterns[LoopTarget(f["target"])] = p if f["inner"] else None
        elif op is not Opcode.END:
            target = LoopTarget.READ if op is Opcode.MATMUL else LoopTarget.WRITE
            queued.append((isa.encode(op, **f), _queued_pattern(patterns[target])))
    return queued, ErrorCode.NONE


def loop(target, inner, outer=1, inner_stride=0, outer_stride=0):
    return (
        Opcode.LOOP,
        {
            "target": target,
            "inner": inner,
            "outer": outer,
            "inner_stride": inner_stride,
            "outer_stride": outer_stride,
        },
    )


def mm(m, act_addr=0, weight_tile=0, acc_addr=0):
    f = {"m": m, "act_addr": act_addr, "weight_tile": weight_tile, "acc_addr": acc_addr}
    return Opcode.MATMUL, {**f, "accumulate": 1}


def pp(m, dst_addr=None, acc_addr=0, param_addr=0, group=0, to_stream=0, raw=0, pool=0):
    return (
        Opcode.POSTPROC,
        {
            "m": m,
            "acc_addr": acc_addr,
            "param_addr": param_addr,
            "dst_addr": CFG.act_depth if dst_addr is None else dst_addr,
            "group": group,
            "to_stream": to_stream,
            "raw": raw,
            "pool": pool,
        },
    )


END = (Opcode.END, {})
READ, WRITE = LoopTarget.READ, LoopTarget.WRITE
SPACE, DEPTH = CFG.act_space, CFG.act_depth  # the same in both configurations
#: (program, its error code): each error path of the patterns and of pooling, and the
#: valid neighbours of each
PATTERN_PROGRAMS = {
    "LOOP inner*outer too many rows": ([loop(READ, 32, 32), mm(1), END], ErrorCode.BAD_LOOP),
    "LOOP at the most rows": ([loop(WRITE, 31, 33), pp(1023), END], ErrorCode.ACC_RANGE),
    "LOOP outer 0": ([loop(WRITE, 2, 0), END], ErrorCode.BAD_LOOP),
    "LOOP inner 0: linear, the rest ignored": (
        [loop(READ, 0, 0, 5, 5), mm(3, act_addr=SPACE - 3), END],
        ErrorCode.NONE,
    ),
    "inner 0 sets a pattern back to linear": (
        [loop(READ, 2, 2, 1, 9), loop(READ, 0), mm(3), END],
        ErrorCode.NONE,
    ),
    "MATMUL m is not inner*outer": ([loop(READ, 2, 3, 1, 9), mm(5), END], ErrorCode.BAD_LOOP),
    "MATMUL m 0 before the pattern": ([loop(READ, 2, 3), mm(0), END], ErrorCode.ZERO_LENGTH),
    "MATMUL pattern before WEIGHT_RANGE": (
        [loop(READ, 2, 3), mm(5, weight_tile=CFG.weight_depth), END],
        ErrorCode.BAD_LOOP,
    ),
    "MATMUL WEIGHT_RANGE after the pattern": (
        [loop(READ, 2, 3), mm(6, weight_tile=CFG.weight_depth), END],
        ErrorCode.WEIGHT_RANGE,
    ),
    "MATMUL last row one past the space": (
        [loop(READ, 3, 2, 4, 100), mm(6, act_addr=SPACE - 108), END],
        ErrorCode.ACT_RANGE,
    ),
    "MATMUL last row the space's last word": (
        [loop(READ, 3, 2, 4, 100), mm(6, act_addr=SPACE - 109), END],
        ErrorCode.NONE,
    ),
    "MATMUL span past the space from 0": (
        [loop(READ, 2, 2, 0xFFFF, 0xFFFF), mm(4), END],
        ErrorCode.ACT_RANGE,
    ),
    "MATMUL under a pattern: no linear range check": (
        [loop(READ, 4, 1), mm(4, act_addr=SPACE - 1), END],
        ErrorCode.NONE,
    ),
    "MATMUL ignores the WRITE pattern": ([loop(WRITE, 2, 2), mm(3), END], ErrorCode.NONE),
    "POSTPROC m is not inner*outer": ([loop(WRITE, 2, 2, 1, 5), pp(3), END], ErrorCode.BAD_LOOP),
    "POSTPROC BAD_GROUP before the pattern": (
        [loop(WRITE, 2, 2), pp(3, group=CFG.groups), END],
        ErrorCode.BAD_GROUP,
    ),
    "POSTPROC m mismatch before a dst in the input buffer": (
        [loop(WRITE, 2, 2), pp(3, dst_addr=DEPTH - 1), END],
        ErrorCode.BAD_LOOP,
    ),
    "POSTPROC dst in the input buffer": (
        [loop(WRITE, 2, 2), pp(4, dst_addr=DEPTH - 1), END],
        ErrorCode.ACT_RANGE,
    ),
    "POSTPROC last row one past the space": (
        [loop(WRITE, 2, 2, 1, 10), pp(4, dst_addr=SPACE - 11, pool=1), END],
        ErrorCode.ACT_RANGE,
    ),
    "POSTPROC last row the space's last word": (
        [loop(WRITE, 2, 2, 1, 10), pp(4, dst_addr=SPACE - 12, pool=1), END],
        ErrorCode.NONE,
    ),
    "POSTPROC ignores the READ pattern": ([loop(READ, 2, 2), pp(3), END], ErrorCode.NONE),
    "POSTPROC to the stream ignores the WRITE pattern": (
        [
            loop(WRITE, 2, 2, 1, 0xFFFF),
            pp(3, to_stream=1, dst_addr=0),
            pp(1, to_stream=1, raw=1),
            END,
        ],
        ErrorCode.NONE,
    ),
    "pool to the stream": ([pp(1, to_stream=1, pool=1), END], ErrorCode.BAD_POOL),
    "pool raw": ([pp(1, to_stream=1, raw=1, pool=1), END], ErrorCode.BAD_POOL),
    "raw without to_stream: BAD_GROUP first": ([pp(1, raw=1, pool=1), END], ErrorCode.BAD_GROUP),
    "pool after BAD_GROUP and before ACT_RANGE": (
        [pp(1, to_stream=1, pool=1, param_addr=CFG.param_depth), END],
        ErrorCode.PARAM_RANGE,
    ),
    "pool to the hidden buffer, linear range": (
        [pp(2, dst_addr=SPACE - 1, pool=1), END],
        ErrorCode.ACT_RANGE,
    ),
    # the next program starts linear: the last one set both patterns
    "both patterns set, then END": (
        [loop(READ, 2, 2, 3, 7), loop(WRITE, 3, 1, 1, 0), END],
        ErrorCode.NONE,
    ),
    "linear again in the next program": ([mm(3), pp(2, dst_addr=DEPTH + 1), END], ErrorCode.NONE),
    "a pattern set, then an error": (
        [loop(READ, 2, 2), mm(1, acc_addr=CFG.acc_depth), END],
        ErrorCode.BAD_LOOP,
    ),
    "linear again after an error": ([mm(3), END], ErrorCode.NONE),
    "LOOP with tlast": ([loop(READ, 2, 2)], ErrorCode.NO_END),
    "LOOP after a queued MATMUL, then tlast": ([mm(2), loop(READ, 1, 2)], ErrorCode.NO_END),
}


def _random_programs(cfg, rng, n):
    """Programs of LOOPs, MATMULs and POSTPROCs at and around every limit of the
    patterns: counts near MAX_ROWS_PER_OP, spans near the space's end, ``m`` that is or
    is not ``inner * outer``."""
    programs = []
    for _ in range(n):
        patterns = {t: None for t in LoopTarget}
        program = []
        for _ in range(int(rng.integers(1, 6))):
            kind = rng.random()
            if kind < 0.35:
                target = LoopTarget(int(rng.integers(0, 2)))
                inner = int(rng.choice([0, 1, 2, 3, int(rng.integers(1, 40)), 31, 33, 1023]))
                outer = int(rng.choice([0, 1, 2, 3, int(rng.integers(1, 40)), 31, 33, 1023]))
                strides = [
                    int(rng.choice([0, 1, int(rng.integers(0, 300)), cfg.act_space, 0xFFFF]))
                    for _ in range(2)
                ]
                program.append(loop(target, inner, outer, *strides))
                p = (inner, outer, *strides)
                if inner and outer and inner * outer <= MAX_ROWS_PER_OP:
                    patterns[target] = p
                elif not inner:
                    patterns[target] = None
                continue
            target = LoopTarget.READ if kind < 0.65 else LoopTarget.WRITE
            p = patterns[target]
            m = p[0] * p[1] if p and rng.random() < 0.7 else int(rng.integers(0, 5))
            span = _span(p) if p else m - 1
            lo = 0 if target is LoopTarget.READ else cfg.act_depth
            addr = int(rng.choice([lo, max(0, cfg.act_space - span - 1), cfg.act_space - span]))
            addr = min(max(addr, 0), 0xFFFF)
            if target is LoopTarget.READ:
                program.append(mm(m, act_addr=addr, weight_tile=int(rng.integers(0, 2))))
            else:
                stream = int(rng.random() < 0.2)
                program.append(
                    pp(
                        m,
                        dst_addr=addr if rng.random() < 0.9 else cfg.act_depth - 1,
                        to_stream=stream,
                        pool=int(rng.random() < 0.5 and (not stream or rng.random() < 0.2)),
                    )
                )
        programs.append(program + [END])
    return programs


def _run_programs(cfg, programs):
    """Run ``programs`` back to back through one front end; return the queue entries
    ``(word, pattern)`` and each program's status packet (a dict of its words)."""
    dut = FrontEnd(cfg)
    queued, packets = [], []

    async def feed(ctx):
        for program in programs:
            beats = _program(*(isa.encode(op, **f) for op, f in program))
            for beat in beats:
                await stream_put(ctx, dut.i_program, beat)

    async def engine(ctx):  # an idle engine whose queue always has room
        ctx.set(dut.engine.idle, 1)
        ctx.set(dut.o_instr.ready, 1)
        async for _, _, valid, entry in ctx.tick().sample(dut.o_instr.valid, dut.o_instr.payload):
            if valid:
                pattern = {
                    name: int(getattr(entry.pattern, name)) for name, _ in entry.pattern.shape()
                }
                queued.append((int(entry.instr.word), pattern))

    async def sink(ctx):
        while len(packets) < len(programs):
            words = []
            while not words or not words[-1].last:
                words.append(await stream_get(ctx, dut.o_status))
            packets.append(dict(zip(isa.STATUS_FIELDS, (w.word for w in words))))

    run_scenario(dut, feed, sink, background=[engine])
    return queued, packets


def _check_programs(cfg, programs):
    queued, packets = _run_programs(cfg, programs)
    want_queued = []
    for program, packet in zip(programs, packets):
        entries, code = _reference(cfg, program)
        want_queued += entries
        assert ErrorCode(packet["error"]) is code, (program, ErrorCode(packet["error"]), code)
        # every beat in one cycle, LOOP included: the engine is idle, the queue has room
        assert packet["cycles"] == len(program) and packet["stall_in_cycles"] == 0, program
    assert queued == want_queued


@pytest.mark.parametrize("cfg", [CFG, SHALLOW], ids=["3x5", "3x5-shallow"])
def test_pattern_and_pool_checks_in_the_order_of_the_specification(cfg):
    programs = list(PATTERN_PROGRAMS.values())
    for program, code in programs:  # the table agrees with the reference
        assert _reference(cfg, program)[1] is code, program
    _check_programs(cfg, [program for program, _ in programs])


@pytest.mark.parametrize("cfg", [CFG, SHALLOW], ids=["3x5", "3x5-shallow"])
def test_random_programs_with_patterns_agree_with_the_reference(cfg):
    programs = _random_programs(cfg, np.random.default_rng(7), 150)
    codes = {_reference(cfg, p)[1] for p in programs}
    assert {ErrorCode.NONE, ErrorCode.BAD_LOOP, ErrorCode.ACT_RANGE, ErrorCode.BAD_POOL} <= codes
    _check_programs(cfg, programs)
