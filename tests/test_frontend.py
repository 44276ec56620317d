"""The front end (hw/frontend.py) and its instruction check (hw/check.py) in amaranth.sim.

The check is compared with the host's statement of the same rules
(``host.cycles.check_instruction``) on instructions at and around every limit. The
front end runs small programs as data: the buffer writes, the queued instructions and
the status packet it must produce, worked out by hand from the ISA.
"""

import numpy as np
import pytest

from host.compile.checks import check_instruction
from hw import isa
from hw.check import InstructionCheck
from hw.config import CoreConfig
from hw.frontend import FrontEnd
from hw.isa import ErrorCode, Opcode, Target

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
    dut = InstructionCheck(cfg)

    def expected(op, f, last):
        if op is None:
            return ErrorCode.BAD_OPCODE
        if op is Opcode.END and not last:
            return ErrorCode.END_NOT_LAST
        return check_instruction(cfg, op, f)

    async def bench(ctx):
        for word, op, f, last in cases:
            ctx.set(dut.instr, {"word": word})
            ctx.set(dut.last, last)
            assert ctx.get(dut.error) == expected(op, f, last), (op, f, last)

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
                        (ctx.get(dut.bias_write.addr), c, int(ctx.get(dut.bias_write.data[c])))
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
