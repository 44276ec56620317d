"""The result path (hw/result_path.py) in amaranth.sim: POSTPROC rows in, hidden-buffer
writes and result-stream beats out, with the output ready or blocked at random.

Each scenario is a list of rows (where each goes: a ``group`` slice to the hidden
buffer, pooled into the word there or not, the stream, or the stream as raw int32
lanes). The accumulator and parameter words the path reads are served by a model of
the buffers; the hidden buffer is the real one (:class:`systolic.hw.activations.ActivationBuffer`,
whose second read port serves pooling). The expected outputs come from
``systolic.sim.programs.reference_matmul`` (numpy), the ISA's lane order and a dictionary of
hidden words, and a row for the hidden buffer is written ``postproc_latency - 1``
cycles after its issue when the output never blocks, pooled or not.
"""

import re

import numpy as np
import pytest
from amaranth.hdl import Elaboratable, Module
from amaranth.lib import wiring

from systolic.hw.activations import ActivationBuffer
from systolic.hw.config import CoreConfig
from systolic.hw.result_path import ResultPath
from systolic.sim.programs import reference_matmul

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

#: (rows, chance that the output is not ready in a cycle). A row is ``g<group>`` (to
#: the hidden buffer), ``P<group>`` (pooled into the hidden word), ``s`` (stream) or
#: ``r`` (raw); ``@<word>`` names its hidden word (default: the row's index).
SCENARIOS = {
    "hidden rows, both groups": (["g0", "g1", "g0", "g1"], 0.0),
    "stream rows": (["s", "s", "s"], 0.0),
    "raw rows": (["r", "r"], 0.0),
    "mixed": (["g0", "s", "r", "g1", "s", "r", "g0"], 0.0),
    "mixed, output blocked often": (["s", "r", "g1", "s", "s", "g0", "r", "s"] * 3, 0.6),
    # more rows than the deep pipeline's FIFO holds: issue waits for credits
    "stream rows, output blocked most of the time": (["s"] * 40, 0.9),
    # a pooling row meets the write of the row just before it (m = 1 POSTPROCs)
    "pool back to back into one word": (["g0@2", "P0@2", "P1@2", "P0@2", "P1@2", "P0@2"], 0.0),
    "pool into two words in turn": (["g0@0", "g1@1", "P1@0", "P0@1", "P0@0", "P1@1"], 0.0),
    "pool over a gap of stream rows": (["g1@3", "s", "s", "P0@3", "r", "P1@3", "g0@4"], 0.0),
    # held with a pooling row waiting (shallow: the pipeline, the read repeated)
    "pool with the output blocked often": (
        ["g0@4", "s", "P0@4", "r", "P1@4", "s", "P0@4", "P0@5", "g0@5", "s", "P1@5"] * 3,
        0.6,
    ),
}

_ROW = re.compile(r"([gPsr])(\d?)(?:@(\d+))?$")


class _WithHiddenBuffer(Elaboratable):
    """The result path writing, and pooling from, a real hidden buffer."""

    def __init__(self, cfg):
        self.path = ResultPath(cfg)
        self.acts = ActivationBuffer(cfg)

    def elaborate(self, platform):
        m = Module()
        m.submodules.path, m.submodules.acts = self.path, self.acts
        wiring.connect(m, self.path.hidden_write, self.acts.hidden)
        wiring.connect(m, self.path.pool_read, self.acts.pool)
        return m


def _rows(cfg, kinds, rng):
    rows = []
    for i, kind in enumerate(kinds):
        way, group, word = _ROW.match(kind).groups()
        rows.append(
            {
                "acc_addr": i % cfg.acc_depth,
                # a copy a lane; the copies differ here so that a lane read at another
                # lane's address shows
                "param_addr": [int(a) for a in rng.integers(0, cfg.param_depth, cfg.cols)],
                "dst_addr": cfg.act_depth + (i if word is None else int(word)),
                "group": int(group or 0),
                "to_stream": int(way in "sr"),
                "raw": int(way == "r"),
                "pool": int(way == "P"),
            }
        )
    return rows


def _expected(cfg, rows, acc, bias, scale):
    """Hidden writes ``(addr, [lanes])`` and stream beats (ints), in order."""
    R, C, W = cfg.rows, cfg.cols, cfg.stream_bits
    writes, beats = [], []
    hidden = {}  # the buffer starts as zeros (amaranth.sim)
    for row in rows:
        lanes = list(enumerate(row["param_addr"]))
        a, b = acc[row["acc_addr"]], np.array([bias[p][c] for c, p in lanes])
        s = [scale[p][c] for c, p in lanes]
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
            g, addr = row["group"], row["dst_addr"] - cfg.act_depth
            word = [int(y[g * R + j]) if g * R + j < C else 0 for j in range(R)]
            if row["pool"]:
                word = [max(a, b) for a, b in zip(word, hidden.get(addr, [0] * R))]
            hidden[addr] = word
            writes.append((addr, word))
    return writes, beats


@pytest.mark.parametrize("config", list(CFGS))
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_rows_reach_the_hidden_buffer_and_the_stream(config, scenario):
    cfg = CFGS[config]
    kinds, blocked = SCENARIOS[scenario]
    rng = np.random.default_rng(len(kinds))
    C = cfg.cols
    rows = _rows(cfg, kinds, rng)
    # pooling: results in and near the int8 range, so that the maximum is seldom a tie
    acc_bits, bias_bits = (9, 9) if any(row["pool"] for row in rows) else (31, 20)
    acc = {a: rng.integers(-(1 << acc_bits), 1 << acc_bits, C) for a in range(len(rows))}
    bias = {p: rng.integers(-(1 << bias_bits), 1 << bias_bits, C) for p in range(cfg.param_depth)}
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
    harness = _WithHiddenBuffer(cfg)
    dut = harness.path
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
            if p_en:  # lane c of the word at lane c's address
                lanes = list(enumerate(p_addr))
                ctx.set(dut.bias_read.data, [int(bias[p][c]) for c, p in lanes])
                ctx.set(dut.scale_read.data, [scale[p][c] for c, p in lanes])
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

    run_scenario(harness, feed, background=[buffers, outputs])
    assert [w[1:] for w in writes] == [(a, d) for a, d in want_writes]
    assert beats == want_beats
    if blocked == 0 and "r" not in kinds:  # (raw rows come slower from the sequencer)
        hidden = [c for c, row in zip(issued, rows) if not row["to_stream"]]
        assert [w[0] - c for w, c in zip(writes, hidden)] == [cfg.postproc_latency - 1] * len(
            hidden
        )
