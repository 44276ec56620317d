"""Whole-core cocotb benches: random matmuls, corners, backpressure, errors, reset.

Each test prints its seed; rerun one with ``COCOTB_RANDOM_SEED=<seed>``.
"""

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles, RisingEdge

from systolic.hw.isa import ErrorCode, Opcode, Target
from systolic.sim.programs import Builder, matmul_program, parse_output, reference_matmul
from systolic.sim.tb import TB

SHAPES = [(1, 1, 1), (5, 13, 7), (17, 40, 19), (3, 100, 2), (33, 9, 30)]


def _rng():
    seed = cocotb.RANDOM_SEED
    return np.random.default_rng(seed), seed


def _random_requant(rng, n):
    mult = rng.integers(1 << 29, 1 << 31, n)
    shift = rng.integers(30, 42, n)
    zp = rng.integers(-20, 20, n)
    relu = rng.integers(0, 2, n)
    return mult, shift, zp, relu


async def _check_matmul(tb, rng, M, K, N, requant, gap=0.0, stall=0.0, player=False, chunk=None):
    cfg = tb.cfg
    a = rng.integers(-128, 128, (M, K), dtype=np.int8)
    w = rng.integers(-128, 128, (K, N), dtype=np.int8)
    bias = rng.integers(-(1 << 20), 1 << 20, N)
    beats = matmul_program(cfg, a, w, bias, requant, chunk=chunk)
    if player:
        out, _, _ = await tb.run_player(
            beats, gap=gap, stall=stall, seed=int(rng.integers(1 << 30))
        )
    else:
        tb.set_pauses(int(rng.integers(1 << 30)), gap, stall)
        out = await tb.run_axis(beats)
    got, status = parse_output(cfg, out, M, N, raw=requant is None)
    assert status["error"] == 0, f"core error {ErrorCode(status['error']).name}"
    assert got is not None, f"wrong number of result beats: {len(out)}"
    want = reference_matmul(a, w, bias, requant, cfg.act_min, cfg.act_max)
    np.testing.assert_array_equal(got, want, strict=True)
    assert status["mac_cycles"] == -(-K // cfg.rows) * -(-N // cfg.cols) * M
    return status


@cocotb.test()
@cocotb.parametrize(raw=[False, True], pauses=[(0.0, 0.0), (0.3, 0.4)])
async def matmul_random(dut, raw, pauses):
    """Odd shapes, K beyond the array, through the bus models, with gaps/backpressure."""
    tb = TB(dut)
    rng, seed = _rng()
    tb.log.info("seed %d", seed)
    await tb.reset()
    for M, K, N in SHAPES:
        requant = None if raw else _random_requant(rng, N)
        await _check_matmul(tb, rng, M, K, N, requant, *pauses)


@cocotb.test()
async def matmul_player(dut):
    """The fast path: K much larger than the array, rows chunked, random gaps/backpressure."""
    tb = TB(dut)
    rng, seed = _rng()
    tb.log.info("seed %d", seed)
    await tb.reset()
    await _check_matmul(tb, rng, 40, 300, 23, _random_requant(rng, 23), player=True, chunk=32)
    await _check_matmul(tb, rng, 9, 64, 11, None, gap=0.2, stall=0.5, player=True)
    await _check_matmul(
        tb, rng, 9, 64, 11, _random_requant(rng, 11), gap=0.5, stall=0.2, player=True, chunk=1
    )


@cocotb.test()
async def corners(dut):
    """-128 x -128 sums, saturation both ways, zero points, ReLU, shift 0, the whole
    multiplier field, ties rounded to even."""
    tb = TB(dut)
    cfg = tb.cfg
    await tb.reset()
    K = 3 * cfg.rows + 1
    a = np.full((4, K), -128, np.int8)
    w = np.full((K, cfg.cols + 1), -128, np.int8)
    a[1] = 127
    a[2, ::2] = 127
    bias = np.zeros(cfg.cols + 1, np.int64)
    bias[0] = (1 << 31) - 1  # wraps on the first add
    n = w.shape[1]
    cases = [
        None,
        (np.full(n, 1), np.zeros(n), np.zeros(n), np.zeros(n)),  # saturate
        (np.full(n, (1 << 31) - 1), np.full(n, 40), np.full(n, -5), np.ones(n)),
        (np.full(n, 1 << 30), np.full(n, 62), np.full(n, 127), np.zeros(n)),
        (np.full(n, 3), np.full(n, 1), np.full(n, -128), np.ones(n)),
        # the whole 32-bit multiplier: acc * mult + half passes 2**63
        (np.full(n, (1 << 32) - 1), np.full(n, 62), np.zeros(n), np.zeros(n)),
        (np.full(n, (1 << 32) - 1), np.full(n, 63), np.zeros(n), np.zeros(n), np.ones(n)),
        # ties (acc / 2 and acc / 4) rounded to even
        (np.full(n, 1), np.full(n, 1), np.zeros(n), np.zeros(n), np.ones(n)),
        (np.full(n, 3), np.full(n, 2), np.full(n, 7), np.zeros(n), np.ones(n)),
    ]
    for requant in cases:
        beats = matmul_program(cfg, a, w, bias, requant)
        out = await tb.run_axis(beats)
        got, status = parse_output(cfg, out, a.shape[0], n, raw=requant is None)
        assert status["error"] == 0
        want = reference_matmul(a, w, bias, requant, cfg.act_min, cfg.act_max)
        np.testing.assert_array_equal(got, want, strict=True)
    # the saturating case must really have hit both rails
    sat = reference_matmul(a, w, bias, cases[1])
    assert sat.max() == 127 and sat.min() == -128


def _bad_programs(cfg):
    """(name, beats, expected error) for one malformed instruction each."""

    def prog(*instrs, end=True):
        b = Builder(cfg)
        for op, fields in instrs:
            if op is None:
                b.word(fields)
            else:
                b.instr(op, **fields)
        if end:
            b.instr(Opcode.END)
        return b.array()

    mm = dict(act_addr=0, weight_tile=0, acc_addr=0, m=1, accumulate=0)
    pp = dict(acc_addr=0, m=1, param_addr=0, dst_addr=0, group=0, to_stream=1, raw=0)
    return [
        ("opcode", prog((None, 0xF)), ErrorCode.BAD_OPCODE),
        ("opcode0", prog((None, 0)), ErrorCode.BAD_OPCODE),
        (
            "load0",
            prog((Opcode.LOAD, dict(target=Target.ACT, addr=0, count=0))),
            ErrorCode.ZERO_LENGTH,
        ),
        (
            "load_act",
            prog((Opcode.LOAD, dict(target=Target.ACT, addr=cfg.act_depth - 1, count=2))),
            ErrorCode.ACT_RANGE,
        ),
        (
            "load_wgt",
            prog(
                (
                    Opcode.LOAD,
                    dict(target=Target.WEIGHT, addr=cfg.weight_depth - 1, count=cfg.rows + 1),
                )
            ),
            ErrorCode.WEIGHT_RANGE,
        ),
        (
            "load_par",
            prog((Opcode.LOAD, dict(target=Target.SCALE, addr=cfg.param_depth, count=1))),
            ErrorCode.PARAM_RANGE,
        ),
        (
            "mm_act",
            prog((Opcode.MATMUL, {**mm, "act_addr": cfg.act_space - 3, "m": 4})),
            ErrorCode.ACT_RANGE,
        ),
        (
            "mm_wgt",
            prog((Opcode.MATMUL, {**mm, "weight_tile": cfg.weight_depth})),
            ErrorCode.WEIGHT_RANGE,
        ),
        (
            "mm_acc",
            prog((Opcode.MATMUL, {**mm, "acc_addr": cfg.acc_depth - 1, "m": 2})),
            ErrorCode.ACC_RANGE,
        ),
        ("mm_zero", prog((Opcode.MATMUL, {**mm, "m": 0})), ErrorCode.ZERO_LENGTH),
        (
            "pp_param",
            prog((Opcode.POSTPROC, {**pp, "param_addr": cfg.param_depth})),
            ErrorCode.PARAM_RANGE,
        ),
        (
            "pp_group",
            prog((Opcode.POSTPROC, {**pp, "group": cfg.groups, "to_stream": 0})),
            ErrorCode.BAD_GROUP,
        ),
        (
            "pp_dst",
            prog((Opcode.POSTPROC, {**pp, "to_stream": 0, "dst_addr": cfg.act_space - 1, "m": 2})),
            ErrorCode.ACT_RANGE,
        ),
        (
            "pp_input",
            prog((Opcode.POSTPROC, {**pp, "to_stream": 0, "dst_addr": 0})),
            ErrorCode.ACT_RANGE,
        ),
        ("end_not_last", prog((Opcode.END, {}), (Opcode.SYNC, {})), ErrorCode.END_NOT_LAST),
        ("no_end", prog((Opcode.SYNC, {}), end=False), ErrorCode.NO_END),
        (
            "short_load",
            prog((Opcode.LOAD, dict(target=Target.ACT, addr=0, count=5)), end=False),
            ErrorCode.NO_END,
        ),
    ]


@cocotb.test()
async def malformed_then_good(dut):
    """Every malformed instruction sets its error code; the next good program still works."""
    tb = TB(dut)
    rng, seed = _rng()
    tb.log.info("seed %d", seed)
    await tb.reset()
    for name, beats, code in _bad_programs(tb.cfg):
        # garbage after the bad instruction must be discarded, not executed
        junk = rng.integers(0, 256, (3, tb.cfg.stream_bytes), dtype=np.uint8)
        if name not in ("no_end", "short_load"):
            beats = np.concatenate([beats[:-1], junk, beats[-1:]])
        out = await tb.run_axis(beats)
        status = parse_output(tb.cfg, out, 0, 1, raw=False)[1]
        assert status["error"] == code.value, (
            f"{name}: error {status['error']}, expected {code.name}"
        )
        await RisingEdge(dut.clk)
        assert int(dut.error.value) == 0, "error must clear after the status packet"
        await _check_matmul(tb, rng, 3, 2 * tb.cfg.rows + 1, tb.cfg.cols + 1, None)


@cocotb.test()
async def reset_mid_program(dut):
    """A reset in the middle of a program leaves the core ready for the next one."""
    tb = TB(dut)
    rng, seed = _rng()
    tb.log.info("seed %d", seed)
    await tb.reset()
    a = rng.integers(-128, 128, (40, 50), dtype=np.int8)
    w = rng.integers(-128, 128, (50, 20), dtype=np.int8)
    beats = matmul_program(tb.cfg, a, w, np.zeros(20, np.int64), None)
    tb.source.send_nowait(AxiStreamFrame_from(beats))
    await ClockCycles(dut.clk, int(rng.integers(len(beats) // 3, len(beats))))
    await tb.reset(cycles=5)
    tb.source.clear() if hasattr(tb.source, "clear") else None
    tb.sink.clear() if hasattr(tb.sink, "clear") else None
    await ClockCycles(dut.clk, 5)
    await _check_matmul(tb, rng, 6, 30, 9, _random_requant(rng, 9))


def AxiStreamFrame_from(beats):
    from cocotbext.axi import AxiStreamFrame

    return AxiStreamFrame(beats.tobytes())
