"""The result path (hw/result_path.py) in amaranth.sim: POSTPROC rows in, hidden-buffer
writes and result-stream beats out, with the output ready or blocked at random.

Each scenario is a list of rows (where each goes: a ``group`` slice to the hidden
buffer, the stream, or the stream as raw int32 lanes). The accumulator and parameter
words the path reads are served by a model of the buffers; the expected outputs come
from ``sim.programs.reference_matmul`` (numpy) and the ISA's lane order, and a row for
the hidden buffer is written ``postproc_latency - 1`` cycles after its issue when the
output never blocks.
"""

import numpy as np
import pytest

from hw.config import CoreConfig
from hw.result_path import ResultPath
from sim.programs import reference_matmul

from .streams import run_scenario, stream_put

CFGS = {
    # 2 groups, 2 raw beats a row
    "2x4-deep": CoreConfig(
        rows=2, cols=4, act_kib=1, hidden_kib=1, weight_kib=1, acc_kib=1, param_depth=4
    ),
    # 2 groups (the second one short), 3 raw beats a row
    "3x5-shallow": CoreConfig(
        rows=3,
        cols=5,
        act_kib=1,
        hidden_kib=1,
        weight_kib=1,
        acc_kib=1,
        param_depth=4,
        deep_pipeline=False,
    ),
}

#: (rows, chance that the output is not ready in a cycle)
SCENARIOS = {
    "hidden rows, both groups": (["g0", "g1", "g0", "g1"], 0.0),
    "stream rows": (["s", "s", "s"], 0.0),
    "raw rows": (["r", "r"], 0.0),
    "mixed": (["g0", "s", "r", "g1", "s", "r", "g0"], 0.0),
    "mixed, output blocked often": (["s", "r", "g1", "s", "s", "g0", "r", "s"] * 3, 0.6),
    # more rows than the deep pipeline's FIFO holds: issue waits for credits
    "stream rows, output blocked most of the time": (["s"] * 40, 0.9),
}


def _rows(cfg, kinds, rng):
    rows = []
    for i, kind in enumerate(kinds):
        rows.append(
            {
                "acc_addr": i % cfg.acc_depth,
                "param_addr": int(rng.integers(0, cfg.param_depth)),
                "dst_addr": cfg.act_depth + i,
                "group": int(kind[1:]) if kind[0] == "g" else 0,
                "to_stream": int(kind != "g0" and kind != "g1"),
                "raw": int(kind == "r"),
            }
        )
    return rows


def _expected(cfg, rows, acc, bias, scale):
    """Hidden writes ``(addr, [lanes])`` and stream beats (ints), in order."""
    R, C, W = cfg.rows, cfg.cols, cfg.stream_bits
    writes, beats = [], []
    for row in rows:
        a, b = acc[row["acc_addr"]], bias[row["param_addr"]]
        s = scale[row["param_addr"]]
        raw = reference_matmul(np.zeros((1, 1), np.int8), np.zeros((1, C), np.int8), a + b)[0]
        req = tuple(
            np.array([lane[k] for lane in s])
            for k in ("mult", "shift", "zero_point", "relu", "round_even")
        )
        y = reference_matmul(np.zeros((1, 1), np.int8), np.zeros((1, C), np.int8), a + b, req)[0]
        if row["raw"]:
            bits = sum((int(v) & 0xFFFFFFFF) << (32 * c) for c, v in enumerate(raw))
            beats += [(bits >> (k * W)) & ((1 << W) - 1) for k in range(cfg.raw_beats)]
        elif row["to_stream"]:
            beats.append(sum((int(v) & 0xFF) << (8 * c) for c, v in enumerate(y)))
        else:
            g = row["group"]
            writes.append(
                (
                    row["dst_addr"] - cfg.act_depth,
                    [int(y[g * R + j]) if g * R + j < C else 0 for j in range(R)],
                )
            )
    return writes, beats


@pytest.mark.parametrize("config", list(CFGS))
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_rows_reach_the_hidden_buffer_and_the_stream(config, scenario):
    cfg = CFGS[config]
    kinds, blocked = SCENARIOS[scenario]
    rng = np.random.default_rng(len(kinds))
    C = cfg.cols
    rows = _rows(cfg, kinds, rng)
    acc = {a: rng.integers(-(1 << 31), 1 << 31, C) for a in range(len(rows))}
    bias = {p: rng.integers(-(1 << 20), 1 << 20, C) for p in range(cfg.param_depth)}
    scale = {
        p: [
            {
                "mult": int(rng.integers(1 << 29, 1 << 31)),
                "shift": int(rng.integers(28, 40)),
                "zero_point": int(rng.integers(-128, 128)),
                "relu": int(rng.integers(0, 2)),
                "round_even": int(rng.integers(0, 2)),
            }
            for _ in range(C)
        ]
        for p in range(cfg.param_depth)
    }
    want_writes, want_beats = _expected(cfg, rows, acc, bias, scale)
    dut = ResultPath(cfg)
    issued, writes, beats = [], [], []

    async def feed(ctx):
        for row in rows:
            await stream_put(ctx, dut.i_pp, row)
        for _ in range(5000):
            if len(beats) == len(want_beats) and len(writes) == len(want_writes):
                break
            await ctx.tick()
        assert ctx.get(dut.empty)

    async def buffers(ctx):  # the accumulator's and the parameters' read ports
        cycle = 0
        async for _, _, read, addr, hold, p_en, p_addr, push in ctx.tick().sample(
            dut.acc_read.valid,
            dut.acc_read.payload,
            dut.hold,
            dut.bias_read.en,
            dut.bias_read.addr,
            dut.i_pp.valid & dut.i_pp.ready,
        ):
            if push:
                issued.append(cycle)
            if not hold:
                ctx.set(dut.acc_data, [int(v) for v in acc[addr]] if read else [0] * C)
            if p_en:
                ctx.set(dut.bias_read.data, [int(v) for v in bias[p_addr]])
                ctx.set(dut.scale_read.data, scale[p_addr])
            cycle += 1

    async def outputs(ctx):  # the hidden buffer's write port and the stream's sink
        cycle = 0
        while True:
            ready = rng.random() >= blocked
            ctx.set(dut.o_result.ready, ready)
            if ctx.get(dut.hidden_write.en):
                writes.append(
                    (
                        cycle,
                        ctx.get(dut.hidden_write.addr),
                        [int(v) for v in ctx.get(dut.hidden_write.data)],
                    )
                )
            if ready and ctx.get(dut.o_result.valid):
                beats.append(ctx.get(dut.o_result.payload.data))
            await ctx.tick()
            cycle += 1

    run_scenario(dut, feed, background=[buffers, outputs])
    assert [w[1:] for w in writes] == [(a, d) for a, d in want_writes]
    assert beats == want_beats
    if blocked == 0 and "r" not in kinds:  # (raw rows come slower from the sequencer)
        hidden = [c for c, row in zip(issued, rows) if not row["to_stream"]]
        assert [w[0] - c for w, c in zip(writes, hidden)] == [cfg.postproc_latency - 1] * len(
            hidden
        )
