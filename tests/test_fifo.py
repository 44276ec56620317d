"""The registered-head FIFO (hw/fifo.py) in amaranth.sim against Amaranth's own SyncFIFO:
both driven with the same random writes and reads, cycle for cycle.

Its contract is to be a SyncFIFO of the same depth in every cycle (its users' timing,
and the cycle model, count on that): each cycle both must show the same ``w_stream.ready``,
``r_stream.valid``, ``level`` and, where valid, the same head word. A word lost or
duplicated, a head a cycle late, or a full FIFO taking a word shows as a difference.
"""

import numpy as np
import pytest
from amaranth.hdl import Elaboratable, Module
from amaranth.lib.fifo import SyncFIFO

from systolic.hw.fifo import RegisteredHeadFIFO

from .streams import run_scenario

WIDTH = 8


class _Pair(Elaboratable):
    def __init__(self, depth):
        self.ref = SyncFIFO(width=WIDTH, depth=depth)
        self.dut = RegisteredHeadFIFO(width=WIDTH, depth=depth)

    def elaborate(self, platform):
        m = Module()
        m.submodules.ref, m.submodules.dut = self.ref, self.dut
        return m


#: phases of 60 cycles: (chance of a write, chance of a read) in a cycle; filling,
#: draining, both every cycle, and at random
PHASES = [(0.9, 0.2), (0.2, 0.9), (1.0, 1.0), (0.5, 0.5)] * 3


@pytest.mark.parametrize("depth", [2, 3, 4, 16])
def test_cycle_for_cycle_a_sync_fifo(depth):
    pair = _Pair(depth)
    ref, dut = pair.ref, pair.dut
    rng = np.random.default_rng(depth)
    got, want = [], []

    async def bench(ctx):
        for cycle in range(60 * len(PHASES)):
            p_write, p_read = PHASES[cycle // 60]
            valid, ready = int(rng.random() < p_write), int(rng.random() < p_read)
            word = int(rng.integers(0, 1 << WIDTH))
            ctx.set(ref.w_en, valid)
            ctx.set(ref.w_data, word)
            ctx.set(ref.r_en, ready)
            ctx.set(dut.w_stream.valid, valid)
            ctx.set(dut.w_stream.payload, word)
            ctx.set(dut.r_stream.ready, ready)
            r_valid = ctx.get(ref.r_rdy)
            want.append(
                (cycle, ctx.get(ref.w_rdy), r_valid, ctx.get(ref.level))
                + ((ctx.get(ref.r_data),) if r_valid else ())
            )
            d_valid = ctx.get(dut.r_stream.valid)
            got.append(
                (cycle, ctx.get(dut.w_stream.ready), d_valid, ctx.get(dut.level))
                + ((ctx.get(dut.r_stream.payload),) if d_valid else ())
            )
            await ctx.tick()

    run_scenario(pair, bench)
    assert got == want
    # the scenario reached both ends, more than once: full and empty
    assert sum(w[3] == depth for w in want) > 10 and sum(w[3] == 0 for w in want) > 10


def test_depth_below_two_refused():
    with pytest.raises(ValueError, match="depth must be at least 2, not 1"):
        RegisteredHeadFIFO(width=WIDTH, depth=1)
