"""The sequencer (hw/sequencer.py) in amaranth.sim: which row issues in which cycle.

Each scenario is a list of instructions, all waiting in the queue from cycle 0, and the
cycles in which POSTPROC rows are held (``ready`` low) or the post-processing pipeline
stands still (``pp_hold``). An instruction may carry an address pattern ``(inner, outer,
inner_stride, outer_stride)`` as the front end attaches it. The expected rows come from
the timing rules of docs/ARCHITECTURE.md, written out below as a small model of their
own, and the pattern's formula (row ``i`` at ``base + (i mod inner) * inner_stride +
(i div inner) * outer_stride``): a pattern changes addresses, never cycles.
"""

import numpy as np
import pytest
from amaranth.lib import data

from systolic.hw import isa
from systolic.hw.accumulator import read_ahead
from systolic.hw.config import CoreConfig
from systolic.hw.isa import Opcode
from systolic.hw.sequencer import Sequencer

from .streams import run_scenario, stream_put

CFGS = {
    "4x4-deep": CoreConfig(rows=4, cols=4, act_kib=1, hidden_kib=1, weight_kib=1, acc_kib=1),
    "3x5-shallow": CoreConfig(
        rows=3, cols=5, act_kib=1, hidden_kib=1, weight_kib=1, acc_kib=1, deep_pipeline=False
    ),
}


def mm(m, act_addr=0, weight_tile=0, acc_addr=0, accumulate=1, pattern=None, tile_step=0):
    return {
        "op": Opcode.MATMUL,
        "m": m,
        "act_addr": act_addr,
        "weight_tile": weight_tile,
        "acc_addr": acc_addr,
        "accumulate": accumulate,
        "tile_step": tile_step,
        "pattern": pattern,
    }


def pp(m, acc_addr=0, param_addr=0, dst_addr=0, group=0, to_stream=0, raw=0, pool=0, pattern=None):
    return {
        "op": Opcode.POSTPROC,
        "m": m,
        "acc_addr": acc_addr,
        "param_addr": param_addr,
        "dst_addr": dst_addr,
        "group": group,
        "to_stream": to_stream,
        "raw": raw,
        "pool": pool,
        "pattern": pattern,
    }


def _random_patterned(rng, n):
    """``n`` instructions of both kinds under random patterns (rows = inner * outer)."""
    out = []
    for _ in range(n):
        inner, outer = int(rng.integers(1, 5)), int(rng.integers(1, 4))
        pattern = (inner, outer, int(rng.integers(0, 40)), int(rng.integers(0, 90)))
        base = int(rng.integers(0, 200))
        if rng.random() < 0.5:
            out.append(mm(inner * outer, act_addr=base, acc_addr=3, pattern=pattern))
        else:
            out.append(
                pp(inner * outer, dst_addr=base, pool=int(rng.integers(0, 2)), pattern=pattern)
            )
    return out


SCENARIOS = {
    "one matmul": ([mm(3, act_addr=5, acc_addr=7, weight_tile=2)], set(), set()),
    "matmuls back to back": ([mm(2, accumulate=0), mm(3, act_addr=9), mm(1)], set(), set()),
    "matmul then postproc then matmul": (
        [mm(2, acc_addr=1), pp(2, acc_addr=1, dst_addr=300, group=1), mm(1)],
        set(),
        set(),
    ),
    "postproc rows held": ([pp(3, to_stream=1), pp(2, param_addr=1)], {3, 4, 7}, set()),
    "raw rows, held": ([pp(2, to_stream=1, raw=1), pp(1, raw=1, to_stream=1)], {2, 5}, set()),
    "drain waits while the pipeline stands": ([pp(1), mm(2)], set(), {3, 4, 5}),
    "matmul under a pattern": ([mm(6, act_addr=10, pattern=(3, 2, 4, 50))], set(), set()),
    "patterns back to back, one inner run each, strides 0": (
        [mm(2, act_addr=3, pattern=(2, 1, 0, 7)), mm(3, act_addr=9, pattern=(1, 3, 5, 0))],
        set(),
        set(),
    ),
    "tile steps, one word for every row, then a fixed tile": (
        [
            mm(4, act_addr=7, weight_tile=5, pattern=(4, 1, 0, 0), tile_step=1),
            mm(3, act_addr=8, weight_tile=9, pattern=(3, 1, 0, 0), tile_step=1, accumulate=0),
            mm(2, act_addr=9, weight_tile=2),
        ],
        set(),
        set(),
    ),
    "pattern then linear then pattern": (
        [mm(4, act_addr=1, pattern=(2, 2, 1, 8)), mm(3, act_addr=20), mm(2, pattern=(1, 2, 0, 5))],
        set(),
        set(),
    ),
    "postproc writes under a pattern, held": (
        [
            pp(6, dst_addr=300, pattern=(2, 3, 1, 10)),
            pp(4, dst_addr=301, pool=1, pattern=(4, 1, 2, 0)),
        ],
        {3, 5, 6, 9},
        set(),
    ),
    "raw rows with a pattern attached (their dst_addr unused)": (
        [pp(4, to_stream=1, raw=1, dst_addr=7, pattern=(2, 2, 3, 30))],
        {4},
        set(),
    ),
    "random patterns, both kinds": (
        _random_patterned(np.random.default_rng(11), 12),
        {5, 40, 41},
        set(),
    ),
}


def expected_rows(cfg, instrs, held, frozen):
    """``(cycle, kind, fields)`` of every issued row; held: cycles without a POSTPROC
    slot; frozen: cycles in which the post-processing drain does not count down."""
    rows, t, prev = [], 0, None
    for ins in instrs:
        kind = ins["op"]
        pop = t
        if prev is not None and prev[0] is not kind:
            latency = cfg.array_latency if prev[0] is Opcode.MATMUL else cfg.postproc_latency
            c, left = prev[1] + 1, latency
            while left:
                if not (prev[0] is Opcode.POSTPROC and c in frozen):
                    left -= 1
                c += 1
            pop = max(pop, c)
        c = pop + 1
        slots = cfg.raw_beats if ins.get("raw") else 1
        for i in range(ins["m"]):
            for s in range(slots):
                while kind is Opcode.POSTPROC and c in held:
                    c += 1
                if s == 0:
                    rows.append((c, kind, _row_fields(cfg, ins, i)))
                last = c
                c += 1
        t, prev = last, (kind, last)
    return rows


def _pattern_address(ins, base, i):
    """Row ``i``'s activation word under the instruction's pattern (linear if none)."""
    if ins["pattern"] is None:
        return base + i
    inner, _, inner_stride, outer_stride = ins["pattern"]
    return base + (i % inner) * inner_stride + (i // inner) * outer_stride


def _row_fields(cfg, ins, i):
    if ins["op"] is Opcode.MATMUL:
        return {
            "act_addr": _pattern_address(ins, ins["act_addr"], i),
            "weight_tile": ins["weight_tile"] + (i if ins["tile_step"] else 0),
            "acc_addr": ins["acc_addr"] + i,
            "accumulate": ins["accumulate"],
        }
    return {
        "acc_addr": ins["acc_addr"] + i,
        "param_addr": [ins["param_addr"]] * cfg.cols,  # a copy a lane
        "dst_addr": _pattern_address(ins, ins["dst_addr"], i),
        "group": ins["group"],
        "to_stream": ins["to_stream"] | ins["raw"],
        "raw": ins["raw"],
        "pool": ins["pool"],
    }


def queued(ins):
    """The queue entry of an instruction: its word and its pattern as the front end
    attaches it (linear: ``inner`` 0, ``inner_stride`` 1)."""
    fields = {k: v for k, v in ins.items() if k not in ("op", "pattern")}
    inner, _, inner_stride, outer_stride = ins["pattern"] or (0, 0, 1, 0)
    return {
        "instr": {"word": isa.encode(ins["op"], **fields)},
        "pattern": {"inner": inner, "inner_stride": inner_stride, "outer_stride": outer_stride},
    }


@pytest.mark.parametrize("config", list(CFGS))
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_rows_issue_in_the_cycles_of_the_timing_model(config, scenario):
    cfg = CFGS[config]
    instrs, held, frozen = SCENARIOS[scenario]
    dut = Sequencer(cfg)
    want = expected_rows(cfg, instrs, held, frozen)
    end = want[-1][0] + cfg.array_latency + cfg.postproc_latency + len(frozen) + 4
    log = []

    def value(v):  # a field, or an array field (param_addr) as a list
        return [int(x) for x in v] if isinstance(v, data.Const) else int(v)

    def fields(kind):
        return lambda p: (kind, {name: value(getattr(p, name)) for name, _ in p.shape()})

    async def feed(ctx):
        for ins in instrs:
            await stream_put(ctx, dut.i_instr, queued(ins))

    async def holds(ctx):
        for cycle in range(end):
            ctx.set(dut.o_pp.ready, cycle not in held)
            ctx.set(dut.pp_hold, cycle in frozen)
            await ctx.tick()
        assert not ctx.get(dut.active) and ctx.get(dut.drained)

    modes = []  # pp_mode at each edge

    async def mode(ctx):
        async for _, _, pp_mode in ctx.tick().sample(dut.pp_mode):
            modes.append(pp_mode)

    run_scenario(
        dut,
        feed,
        holds,
        monitors=[(dut.o_mm, log, fields(Opcode.MATMUL)), (dut.o_pp, log, fields(Opcode.POSTPROC))],
        background=[mode],
    )
    assert [(c, k, f) for c, (k, f) in sorted(log, key=lambda e: e[0])] == want
    # the accumulator's read port follows POSTPROC's address only where no MATMUL row
    # reads: set at each POSTPROC row, clear where each MATMUL row's read happens
    read_at = cfg.mm_write_delay - read_ahead(cfg)
    for cycle, kind, _ in want:
        assert modes[cycle + (read_at if kind is Opcode.MATMUL else 0)] == (kind is Opcode.POSTPROC)
