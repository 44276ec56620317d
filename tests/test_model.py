"""The model backend against the independent numpy reference on hand-built programs:
matmuls, rounding, LOOP address patterns and pooling, and the LOOP/pool refusals."""

import numpy as np
import pytest

from systolic.host.backends.model import Machine
from systolic.host.backends.model.cycles import predict
from systolic.host.compile.program import status_packet
from systolic.hw import isa
from systolic.hw.config import CoreConfig
from systolic.hw.isa import STATUS_FIELDS, ErrorCode, LoopTarget, Opcode, Target
from systolic.sim.programs import Builder, matmul_program, parse_output, reference_matmul


def _run(cfg, a, w, bias, requant):
    out, status = Machine(cfg).run(matmul_program(cfg, a, w, bias, requant))
    assert status["error"] == 0
    return parse_output(cfg, out, a.shape[0], w.shape[1], raw=requant is None)[0]


@pytest.mark.parametrize("shift", [62, 63, 33, 1])
def test_model_is_exact_over_the_whole_multiplier_field(shift):
    """mult = 2**32 - 1 with the largest accumulators: ``acc * mult + half`` passes 2**63,
    which an int64 computation of it overflowed."""
    cfg = CoreConfig(rows=4, cols=4)
    rng = np.random.default_rng(shift)
    a = rng.integers(-128, 128, (6, 9), dtype=np.int8)
    w = rng.integers(-128, 128, (9, 5), dtype=np.int8)
    bias = np.array([(1 << 31) - 1, -(1 << 31), (1 << 31) - 1 - 9 * 128 * 128, 0, 5])
    n = w.shape[1]
    for even in (0, 1):
        requant = (
            np.full(n, (1 << 32) - 1),
            np.full(n, shift),
            np.zeros(n),
            np.zeros(n),
            np.full(n, even),
        )
        np.testing.assert_array_equal(
            _run(cfg, a, w, bias, requant), reference_matmul(a, w, bias, requant), strict=True
        )


def test_model_rounds_ties_to_even_when_asked():
    cfg = CoreConfig(rows=2, cols=2)
    a = np.arange(-6, 7, dtype=np.int8).reshape(-1, 1)  # acc = a: halves are ties
    w = np.ones((1, 2), np.int8)
    up = (np.ones(2), np.ones(2), np.zeros(2), np.zeros(2), np.zeros(2))
    even = (np.ones(2), np.ones(2), np.zeros(2), np.zeros(2), np.ones(2))
    got_up = _run(cfg, a, w, np.zeros(2), up)[:, 0]
    got_even = _run(cfg, a, w, np.zeros(2), even)[:, 0]
    # a / 2 for a = -6..6, worked by hand
    assert got_up.tolist() == [-3, -2, -2, -1, -1, 0, 0, 1, 1, 2, 2, 3, 3]
    assert got_even.tolist() == [-3, -2, -2, -2, -1, 0, 0, 0, 1, 2, 2, 2, 3]


# -- LOOP patterns and pool ---------------------------------------------------------------

CFG = CoreConfig(rows=4, cols=4, act_kib=1, weight_kib=1, acc_kib=1)
NS = len(STATUS_FIELDS)
IDENTITY = [bytes([1 if c == r else 0 for c in range(4)]) for r in range(4)]
PASS = isa.encode_scale(1, 0, 0, False)  # y = clamp(acc + bias)


def _pattern_rows(base, inner, outer, inner_stride, outer_stride):
    """Row i of a LOOP pattern, written out as two nested loops (outer slow, inner fast)."""
    return [base + a * inner_stride + b * outer_stride for b in range(outer) for a in range(inner)]


def _setup(b, act, weights=IDENTITY):
    """Weight tile 0, zero bias and pass-through scale words at 0, ``act`` at address 0."""
    b.load(Target.WEIGHT, 0, weights)
    b.load(Target.BIAS, 0, [0] * 4)
    b.load(Target.SCALE, 0, [PASS] * 4)
    b.load(Target.ACT, 0, [row.tobytes() for row in act])


def _run_prog(b, machine=None):
    b.instr(Opcode.END)
    out, status = (machine or Machine(CFG)).run(b.array())
    assert status_packet(out) == status
    return out[:-NS], status


def test_matmul_reads_through_the_read_pattern():
    rng = np.random.default_rng(1)
    act = rng.integers(-128, 128, (40, 4), dtype=np.int8)
    w = rng.integers(-128, 128, (4, 4), dtype=np.int8)
    pattern = dict(inner=3, outer=4, inner_stride=5, outer_stride=2)
    b = Builder(CFG)
    _setup(b, act, [row.tobytes() for row in w])
    b.instr(Opcode.LOOP, target=LoopTarget.READ, **pattern)
    b.instr(Opcode.MATMUL, act_addr=7, weight_tile=0, acc_addr=0, m=12)
    b.instr(Opcode.LOOP, target=LoopTarget.READ, inner=0, outer=5, inner_stride=9)  # linear
    b.instr(Opcode.MATMUL, act_addr=3, weight_tile=0, acc_addr=12, m=5)
    b.instr(Opcode.POSTPROC, acc_addr=0, m=17, param_addr=0, to_stream=1, raw=1)
    out, status = _run_prog(b)
    assert status["error"] == 0
    rows = _pattern_rows(7, **pattern) + list(range(3, 8))
    want = act[rows].astype(np.int64) @ w.astype(np.int64)
    got = out.reshape(17, -1)[:, :16].copy().view("<i4")
    np.testing.assert_array_equal(got, want.astype(np.int32), strict=True)


def _hidden_words(b, base, n):
    """Append a read-back of hidden words ``base .. base + n - 1`` to the stream."""
    b.instr(Opcode.LOOP, target=LoopTarget.READ, inner=0)
    b.instr(Opcode.MATMUL, act_addr=base, weight_tile=0, acc_addr=0, m=n)
    b.instr(Opcode.POSTPROC, acc_addr=0, m=n, param_addr=0, to_stream=1)


def test_postproc_writes_through_the_write_pattern_and_pools():
    """Two POSTPROCs through the same pattern, the second pooling: the hidden words hold
    the lane-wise maximum; the words the pattern skips keep what was there."""
    rng = np.random.default_rng(2)
    act = rng.integers(-128, 128, (24, 4), dtype=np.int8)
    h = CFG.act_depth
    pattern = dict(inner=2, outer=3, inner_stride=1, outer_stride=4)
    b = Builder(CFG)
    _setup(b, act)
    b.instr(Opcode.MATMUL, act_addr=0, weight_tile=0, acc_addr=0, m=24)  # acc = act
    b.instr(Opcode.POSTPROC, acc_addr=12, m=12, param_addr=0, dst_addr=h)  # background
    b.instr(Opcode.LOOP, target=LoopTarget.WRITE, **pattern)
    b.instr(Opcode.POSTPROC, acc_addr=0, m=6, param_addr=0, dst_addr=h + 1)
    b.instr(Opcode.POSTPROC, acc_addr=6, m=6, param_addr=0, dst_addr=h + 1, pool=1)
    b.instr(Opcode.POSTPROC, acc_addr=0, m=5, param_addr=0, to_stream=1)  # no pattern
    _hidden_words(b, h, 12)
    out, status = _run_prog(b)
    assert status["error"] == 0
    want = act[12:24].copy()
    rows = np.array(_pattern_rows(1, **pattern))
    want[rows] = np.maximum(act[0:6], act[6:12])
    got = out[:, :4].view(np.int8)
    np.testing.assert_array_equal(got[:5], act[0:5], strict=True)
    np.testing.assert_array_equal(got[5:], want, strict=True)


def test_pattern_rows_that_repeat_a_word_run_in_order():
    """inner_stride 0: every row of one POSTPROC lands on the same word per outer step;
    the last row wins, or with pool the maximum of the word and all of them."""
    rng = np.random.default_rng(3)
    act = rng.integers(-128, 128, (9, 4), dtype=np.int8)
    h = CFG.act_depth
    b = Builder(CFG)
    _setup(b, act)
    b.instr(Opcode.MATMUL, act_addr=0, weight_tile=0, acc_addr=0, m=9)
    b.instr(Opcode.POSTPROC, acc_addr=0, m=6, param_addr=0, dst_addr=h)  # background
    b.instr(Opcode.LOOP, target=LoopTarget.WRITE, inner=3, outer=2, outer_stride=2)
    b.instr(Opcode.POSTPROC, acc_addr=0, m=6, param_addr=0, dst_addr=h)
    b.instr(Opcode.POSTPROC, acc_addr=3, m=6, param_addr=0, dst_addr=h + 1, pool=1)
    _hidden_words(b, h, 6)
    out, status = _run_prog(b)
    assert status["error"] == 0
    want = act[0:6].copy()
    want[0], want[2] = act[2], act[5]  # the last row of each group of 3
    want[1] = np.maximum(want[1], act[3:6].max(axis=0))
    want[3] = np.maximum(want[3], act[6:9].max(axis=0))
    np.testing.assert_array_equal(out[:, :4].view(np.int8), want, strict=True)


def test_patterns_start_linear_in_every_program():
    """A program that ends with both patterns set: the next one runs linear (m free)."""
    rng = np.random.default_rng(4)
    act = rng.integers(-128, 128, (8, 4), dtype=np.int8)
    machine = Machine(CFG)
    b = Builder(CFG)
    _setup(b, act)
    for target in LoopTarget:
        b.instr(Opcode.LOOP, target=target, inner=2, outer=2, inner_stride=3, outer_stride=1)
    assert _run_prog(b, machine)[1]["error"] == 0
    b = Builder(CFG)
    b.instr(Opcode.MATMUL, act_addr=0, weight_tile=0, acc_addr=0, m=5)
    b.instr(Opcode.POSTPROC, acc_addr=0, m=5, param_addr=0, dst_addr=CFG.act_depth + 2)
    _hidden_words(b, CFG.act_depth + 2, 5)
    out, status = _run_prog(b, machine)
    assert status["error"] == 0
    np.testing.assert_array_equal(out[:, :4].view(np.int8), act[:5], strict=True)


def _errors():
    """(name, instructions, error): each new refusal, with the instructions before it."""
    space, h = CFG.act_space, CFG.act_depth
    mm = dict(act_addr=0, weight_tile=0, acc_addr=0)
    pp = dict(acc_addr=0, param_addr=0, dst_addr=h)
    read = (Opcode.LOOP, dict(target=LoopTarget.READ, inner=3, outer=2, inner_stride=2))
    write = (Opcode.LOOP, dict(target=LoopTarget.WRITE, inner=2, outer=3, outer_stride=5))
    span_r, span_w = 4, 10
    return [
        ("loop outer 0", [(Opcode.LOOP, dict(inner=1, outer=0))], ErrorCode.BAD_LOOP),
        ("loop too long", [(Opcode.LOOP, dict(target=1, inner=32, outer=32))], ErrorCode.BAD_LOOP),
        ("matmul m", [read, (Opcode.MATMUL, dict(mm, m=5))], ErrorCode.BAD_LOOP),
        (
            "matmul range",
            [read, (Opcode.MATMUL, dict(mm, m=6, act_addr=space - span_r))],
            ErrorCode.ACT_RANGE,
        ),
        (
            "matmul m first",
            [read, (Opcode.MATMUL, dict(mm, m=7, act_addr=space))],
            ErrorCode.BAD_LOOP,
        ),
        ("postproc m", [write, (Opcode.POSTPROC, dict(pp, m=7))], ErrorCode.BAD_LOOP),
        (
            "postproc range",
            [write, (Opcode.POSTPROC, dict(pp, m=6, dst_addr=space - span_w))],
            ErrorCode.ACT_RANGE,
        ),
        (
            "postproc below",
            [write, (Opcode.POSTPROC, dict(pp, m=6, dst_addr=h - 1))],
            ErrorCode.ACT_RANGE,
        ),
        (
            "pool stream",
            [(Opcode.POSTPROC, dict(pp, m=1, to_stream=1, pool=1))],
            ErrorCode.BAD_POOL,
        ),
        (
            "pool raw",
            [write, (Opcode.POSTPROC, dict(pp, m=1, to_stream=1, raw=1, pool=1))],
            ErrorCode.BAD_POOL,
        ),
        (
            "pool group first",
            [(Opcode.POSTPROC, dict(pp, m=1, group=1, raw=1, pool=1))],
            ErrorCode.BAD_GROUP,
        ),
        (
            "pool stream, no pattern check",
            [write, (Opcode.POSTPROC, dict(pp, m=7, dst_addr=0, to_stream=1, pool=1))],
            ErrorCode.BAD_POOL,
        ),
    ]


@pytest.mark.parametrize("name, instrs, error", _errors(), ids=[e[0] for e in _errors()])
def test_new_refusals_stop_the_program(name, instrs, error):
    """The first failing check's code in the status word; the refused instruction and
    every beat after it are discarded (the POSTPROC to the stream sends nothing)."""
    b = Builder(CFG)
    b.instr(Opcode.MATMUL, act_addr=0, weight_tile=0, acc_addr=0, m=1)
    for op, fields in instrs:
        b.instr(op, **fields)
    b.instr(Opcode.POSTPROC, acc_addr=0, m=1, param_addr=0, to_stream=1)
    out, status = _run_prog(b)
    assert ErrorCode(status["error"]) is error
    assert len(out) == 0
    assert status == predict(CFG, b.array())
