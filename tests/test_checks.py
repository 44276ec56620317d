"""``check_instruction`` at and around every LOOP and pool limit, and the order of its rules."""

import pytest

from systolic.host.compile.checks import LINEAR, check_instruction, loop_pattern, pattern_span
from systolic.hw.config import MAX_ROWS_PER_OP, CoreConfig
from systolic.hw.isa import ErrorCode, LoopTarget, Opcode

CFG = CoreConfig(rows=4, cols=4, act_kib=1, weight_kib=1, acc_kib=1)
E = ErrorCode
MM = dict(act_addr=0, weight_tile=0, acc_addr=0, m=6, accumulate=0)
PP = dict(
    acc_addr=0, m=6, param_addr=0, dst_addr=CFG.act_depth, group=0, to_stream=0, raw=0, pool=0
)


def _loop(inner, outer, inner_stride=0, outer_stride=0):
    return dict(
        target=0, inner=inner, outer=outer, inner_stride=inner_stride, outer_stride=outer_stride
    )


def _under(target, pattern):
    return {**LINEAR, target: loop_pattern(_loop(*pattern))}


@pytest.mark.parametrize(
    "fields, error",
    [
        (_loop(0, 0, 65535, 65535), E.NONE),  # linear again: the rest ignored
        (_loop(1, 0), E.BAD_LOOP),
        (_loop(1, 1, 65535, 65535), E.NONE),
        (_loop(3, MAX_ROWS_PER_OP // 3), E.NONE),  # 3 * 341 = 1023
        (_loop(2, 512), E.BAD_LOOP),
        (_loop(MAX_ROWS_PER_OP, 1), E.NONE),
        (_loop(MAX_ROWS_PER_OP, MAX_ROWS_PER_OP), E.BAD_LOOP),
    ],
)
def test_loop(fields, error):
    assert check_instruction(CFG, Opcode.LOOP, fields) is error


SPACE = CFG.act_space
READ = (3, 2, 2, 1)  # rows 0 2 4 1 3 5: span 5


@pytest.mark.parametrize(
    "pattern, fields, error",
    [
        (None, dict(act_addr=SPACE - 6), E.NONE),
        (None, dict(act_addr=SPACE - 5), E.ACT_RANGE),
        (READ, dict(act_addr=SPACE - 6), E.NONE),  # last row at SPACE - 1
        (READ, dict(act_addr=SPACE - 5), E.ACT_RANGE),
        (READ, dict(m=5), E.BAD_LOOP),
        (READ, dict(m=7, act_addr=SPACE), E.BAD_LOOP),  # m before the range
        (READ, dict(m=0), E.ZERO_LENGTH),
        (READ, dict(act_addr=SPACE, weight_tile=CFG.weight_depth), E.ACT_RANGE),
        (READ, dict(m=1, weight_tile=CFG.weight_depth), E.BAD_LOOP),
        (READ, dict(weight_tile=CFG.weight_depth, acc_addr=CFG.acc_depth), E.WEIGHT_RANGE),
        (READ, dict(acc_addr=CFG.acc_depth - 5), E.ACC_RANGE),  # acc rows stay linear
        (READ, dict(acc_addr=CFG.acc_depth - 6), E.NONE),
        # no wrap: 1 + 65535 is 0 in 16 bits
        ((2, 3, 65535, 0), dict(act_addr=1), E.ACT_RANGE),
        ((1, 6, 65535, 0), dict(act_addr=SPACE - 1), E.NONE),  # inner 1: stride unused
        ((6, 1, 1, 65535), dict(act_addr=SPACE - 6), E.NONE),  # outer 1: stride unused
        ((3, 2, 0, 0), dict(act_addr=SPACE - 1), E.NONE),  # every row the same word
    ],
)
def test_matmul_under_the_read_pattern(pattern, fields, error):
    patterns = None if pattern is None else _under(LoopTarget.READ, pattern)
    assert check_instruction(CFG, Opcode.MATMUL, {**MM, **fields}, patterns) is error
    # the WRITE pattern does not concern a MATMUL
    other = None if pattern is None else _under(LoopTarget.WRITE, pattern)
    linear = check_instruction(CFG, Opcode.MATMUL, {**MM, **fields})
    assert check_instruction(CFG, Opcode.MATMUL, {**MM, **fields}, other) is linear


WRITE = (2, 3, 1, 4)  # span 9
H = CFG.act_depth


@pytest.mark.parametrize(
    "pattern, fields, error",
    [
        (WRITE, dict(dst_addr=SPACE - 10), E.NONE),
        (WRITE, dict(dst_addr=SPACE - 9), E.ACT_RANGE),
        (WRITE, dict(dst_addr=H - 1), E.ACT_RANGE),
        (WRITE, dict(dst_addr=H, m=4), E.BAD_LOOP),
        (WRITE, dict(dst_addr=0, m=4), E.BAD_LOOP),  # m before the range
        (WRITE, dict(m=0), E.ZERO_LENGTH),
        (WRITE, dict(m=4, acc_addr=CFG.acc_depth - 3), E.ACC_RANGE),
        (WRITE, dict(m=4, param_addr=CFG.param_depth), E.PARAM_RANGE),
        (WRITE, dict(m=4, group=CFG.groups), E.BAD_GROUP),
        (WRITE, dict(m=4, dst_addr=0, pool=1), E.BAD_LOOP),
        (WRITE, dict(pool=1), E.NONE),
        # to the stream: the pattern is ignored, pool refused
        (WRITE, dict(m=4, dst_addr=0, to_stream=1), E.NONE),
        (WRITE, dict(m=4, dst_addr=0, to_stream=1, pool=1), E.BAD_POOL),
        (WRITE, dict(m=4, to_stream=1, raw=1, pool=1), E.BAD_POOL),
        (WRITE, dict(m=4, raw=1, pool=1), E.BAD_GROUP),  # raw without to_stream first
        (None, dict(to_stream=1, pool=1), E.BAD_POOL),
        (None, dict(pool=1), E.NONE),
        (None, dict(dst_addr=SPACE - 6), E.NONE),
        (None, dict(dst_addr=SPACE - 5), E.ACT_RANGE),
        ((1, 6, 65535, 1), dict(dst_addr=SPACE - 6), E.NONE),
        ((2, 3, 65535, 1), dict(dst_addr=H + 2), E.ACT_RANGE),  # no wrap
    ],
)
def test_postproc_under_the_write_pattern(pattern, fields, error):
    patterns = None if pattern is None else _under(LoopTarget.WRITE, pattern)
    assert check_instruction(CFG, Opcode.POSTPROC, {**PP, **fields}, patterns) is error


def test_span_and_defaults():
    assert pattern_span((3, 4, 5, 7)) == 2 * 5 + 3 * 7
    assert loop_pattern(_loop(0, 9, 9, 9)) is None
    # callers that know nothing of LOOP or pool: linear, no pool field needed
    fields = {k: v for k, v in PP.items() if k != "pool"}
    assert check_instruction(CFG, Opcode.POSTPROC, fields) is E.NONE


@pytest.mark.parametrize(
    "fields, error",
    [
        (dict(weight_tile=CFG.weight_depth - 6, tile_step=1), E.NONE),  # last tile depth - 1
        (dict(weight_tile=CFG.weight_depth - 5, tile_step=1), E.WEIGHT_RANGE),
        (dict(weight_tile=CFG.weight_depth - 5), E.NONE),  # not stepping: one tile
        (dict(weight_tile=CFG.weight_depth - 1, m=1, tile_step=1), E.NONE),
        (dict(weight_tile=CFG.weight_depth, m=1, tile_step=1), E.WEIGHT_RANGE),
        (dict(weight_tile=CFG.weight_depth, m=0, tile_step=1), E.ZERO_LENGTH),
        (
            dict(weight_tile=CFG.weight_depth - 5, acc_addr=CFG.acc_depth, tile_step=1),
            E.WEIGHT_RANGE,
        ),
    ],
)
def test_stepping_matmul_checks_its_last_tile(fields, error):
    """A MATMUL with ``tile_step`` reads tiles ``weight_tile .. weight_tile + m - 1``."""
    assert check_instruction(CFG, Opcode.MATMUL, {**MM, **fields}) is error
