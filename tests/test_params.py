"""The parameter buffer (hw/params.py) in amaranth.sim: words written a lane at a time
and read, each with a different address in every lane, against a plain dictionary.

A lane that followed another lane's address (reading or writing), a write landing in
the wrong lane, or a read that ignored ``en`` (its data must hold) shows as a mismatch.
"""

import numpy as np
import pytest
from amaranth.hdl import signed
from amaranth.lib import data

from systolic.hw.config import CoreConfig
from systolic.hw.params import ParamBuffer

from .streams import run_scenario

CFGS = {
    "3 lanes, depth 4": CoreConfig(
        rows=2, cols=3, act_kib=1, hidden_kib=1, weight_kib=1, acc_kib=1, param_depth=4
    ),
    "4 lanes, depth 5": CoreConfig(
        rows=2, cols=4, act_kib=1, hidden_kib=1, weight_kib=1, acc_kib=1, param_depth=5
    ),
}


@pytest.mark.parametrize("config", list(CFGS))
def test_each_lane_reads_its_own_address(config):
    cfg = CFGS[config]
    C, D = cfg.cols, cfg.param_depth
    dut = ParamBuffer(cfg, data.ArrayLayout(signed(16), C))
    rng = np.random.default_rng(C * D)
    # writes: (lane addresses, lane mask, values); then reads: (lane addresses, en)
    writes = [
        (
            [int(a) for a in rng.integers(0, D, C)],
            [int(b) for b in rng.integers(0, 2, C)],
            rng.integers(-(1 << 15), 1 << 15, C),
        )
        for _ in range(6 * D)
    ]
    reads = [([int(a) for a in rng.integers(0, D, C)], int(rng.random() < 0.8)) for _ in range(40)]
    reads[0] = (reads[0][0], 1)  # before the first enabled read the data is not defined here
    want_mem = {a: [0] * C for a in range(D)}  # amaranth.sim memories start at zero
    for addrs, mask, values in writes:
        for c in range(C):
            if mask[c]:
                want_mem[addrs[c]][c] = int(values[c])
    got, want = [], []

    async def bench(ctx):
        for addrs, mask, values in writes:
            ctx.set(dut.write.addr, addrs)
            ctx.set(dut.write.en, sum(b << c for c, b in enumerate(mask)))
            ctx.set(dut.write.data, [int(v) for v in values])
            await ctx.tick()
        ctx.set(dut.write.en, 0)
        held = None
        for addrs, en in reads:
            ctx.set(dut.read.addr, addrs)
            ctx.set(dut.read.en, en)
            await ctx.tick()
            if en:
                held = [want_mem[a][c] for c, a in enumerate(addrs)]
            got.append([int(v) for v in ctx.get(dut.read.data)])
            want.append(held)

    run_scenario(dut, bench)
    assert got == want
