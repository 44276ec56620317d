"""The accumulator (hw/accumulator.py) in amaranth.sim: MATMUL rows added into (or
written over) accumulator words, read back as POSTPROC reads them.

Each scenario is a list of rows, one issued per cycle (None: no row): ``(acc_addr,
accumulate)``. The array's sum of each row arrives ``mm_write_delay`` cycles after its
issue. Back-to-back updates of one word at distance 1, 2 and 3 exercise both forwarding
registers and the read of the buffer. Every word is first written over with a start
value; the expected words come from a plain dictionary.
"""

import numpy as np
import pytest

from systolic.hw.accumulator import Accumulator
from systolic.hw.config import CoreConfig
from systolic.hw.pe import psum_shape

from .streams import run_scenario

CFGS = {
    "2x3-deep": CoreConfig(rows=2, cols=3, act_kib=1, hidden_kib=1, weight_kib=1, acc_kib=1),
    "3x2-shallow": CoreConfig(
        rows=3, cols=2, act_kib=1, hidden_kib=1, weight_kib=1, acc_kib=1, deep_pipeline=False
    ),
}

_rng = np.random.default_rng(5)
SCENARIOS = {
    "write then add, one word": [(4, 0), (4, 1), (4, 1), (4, 1)],
    "distance two": [(1, 0), (2, 0), (1, 1), (2, 1), (1, 1), (2, 1)],
    "distance three, with gaps": [(7, 0), None, (5, 0), (7, 1), None, None, (7, 1), (5, 1)],
    "overwrite a word being added to": [(3, 1), (3, 0), (3, 1), None, (3, 0), (3, 1)],
    # mostly adds, so that a wrong sum is seldom written over before the end
    "random": [
        None if _rng.random() < 0.2 else (int(_rng.integers(0, 4)), int(_rng.random() < 0.85))
        for _ in range(60)
    ],
}


@pytest.mark.parametrize("config", list(CFGS))
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_accumulates_like_a_dictionary(config, scenario):
    cfg = CFGS[config]
    rows = SCENARIOS[scenario]
    dut = Accumulator(cfg)
    rng = np.random.default_rng(len(rows))
    bits = psum_shape(cfg).width
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1

    def row_sum():  # at the array's limits, or anywhere between
        return [int(rng.choice([lo, hi, int(rng.integers(lo, hi + 1))])) for _ in range(cfg.cols)]

    sums = [row_sum() for _ in rows]
    start = {a: row_sum() for a in range(8)}
    want = {a: list(v) for a, v in start.items()}
    for row, s in zip(rows, sums):
        if row is not None:
            addr, accumulate = row
            want[addr] = [(w if accumulate else 0) + x for w, x in zip(want[addr], s)]
    got = {}

    async def bench(ctx):
        delay = cfg.mm_write_delay
        # first every word written over with its start value, then the scenario
        plan = [((a, 0), v) for a, v in start.items()] + list(zip(rows, sums))
        for t in range(len(plan) + delay):
            if t < len(plan):
                row, _ = plan[t]
                ctx.set(dut.i_mm.valid, row is not None)
                if row is not None:
                    ctx.set(dut.i_mm.payload.acc_addr, row[0])
                    ctx.set(dut.i_mm.payload.accumulate, row[1])
            else:
                ctx.set(dut.i_mm.valid, 0)
            if t >= delay and plan[t - delay][0] is not None:
                ctx.set(dut.sum, plan[t - delay][1])
            await ctx.tick()
        ctx.set(dut.pp_mode, 1)  # the MATMULs have drained
        for addr in want:
            ctx.set(dut.pp_addr, addr)
            await ctx.tick()
            got[addr] = [int(x) for x in ctx.get(dut.read_data)]

    run_scenario(dut, bench)
    assert got == want
