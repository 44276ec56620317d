"""The cycle model on hand-worked programs (the RTL comparison is in test_backends)."""

import numpy as np

from systolic.host.backends.model.cycles import predict
from systolic.hw.config import CoreConfig
from systolic.hw.isa import ErrorCode, LoopTarget, Opcode, Target
from systolic.sim.programs import Builder


def _prog(cfg, *steps):
    b = Builder(cfg)
    for op, fields, data in steps:
        b.instr(op, **fields)
        for _ in range(data):
            b.word(0)
    return b.array()


MM = dict(act_addr=0, weight_tile=0, acc_addr=0, accumulate=0)
PP = dict(acc_addr=0, param_addr=0, dst_addr=0, group=0, to_stream=1, raw=0)


def test_load_matmul_end():
    cfg = CoreConfig()
    beats = _prog(
        cfg,
        (Opcode.LOAD, dict(target=Target.ACT, addr=0, count=1), 1),
        (Opcode.MATMUL, dict(MM, m=3), 0),
        (Opcode.END, {}, 0),
    )
    # header 0, data 1, MATMUL pushed 2, popped 3, rows 4..6, idle at 6 + L + 1
    assert cfg.array_latency == 21
    st = predict(cfg, beats)
    assert st["cycles"] == 29 and st["mac_cycles"] == 3
    assert st["busy_cycles"] == (6 + 21) - 4 + 1 and st["error"] == 0


def test_kind_switch_and_queue_full():
    cfg = CoreConfig(rows=4, cols=4, queue_depth=2)
    beats = _prog(
        cfg,
        *[(Opcode.MATMUL, dict(MM, m=10), 0)] * 4,
        (Opcode.POSTPROC, dict(PP, m=2), 0),
        (Opcode.END, {}, 0),
    )
    # L = 13 after a MATMUL, 12 after a POSTPROC. Pushes 0, 1, 2 (pop0 = 1), 12 (pop1 = 11);
    # pops 1, 11, 21, 31 (each at the previous one's last row); MATMULs end at 41.
    # POSTPROC pushed at 22 (after pop2), popped at 41 + 13 + 1 = 55, rows 56..57;
    # END at 57 + 12 + 1 = 70 -> 71 cycles
    assert (cfg.array_latency, cfg.postproc_latency) == (13, 12)
    st = predict(cfg, beats)
    assert st["cycles"] == 71 and st["mac_cycles"] == 40


def test_errors_stop_counting_at_tlast():
    cfg = CoreConfig()
    beats = _prog(cfg, (Opcode.MATMUL, dict(MM, m=0), 0), (Opcode.SYNC, {}, 0), (Opcode.END, {}, 0))
    st = predict(cfg, beats)
    assert st["error"] == ErrorCode.ZERO_LENGTH.value and st["cycles"] == 3
    st = predict(cfg, beats[:-1])
    assert st["error"] == ErrorCode.ZERO_LENGTH.value and st["cycles"] == 2
    ok = _prog(cfg, (Opcode.SYNC, {}, 0))
    assert predict(cfg, ok)["error"] == ErrorCode.NO_END.value
    assert predict(cfg, np.concatenate([ok, ok]))["cycles"] == 2


def test_framing_end_must_carry_tlast():
    """A frame is one program: END before the frame's last beat is an error, and the
    beats after it (even a whole valid program) are discarded up to tlast."""
    cfg = CoreConfig()
    good = _prog(
        cfg,
        (Opcode.LOAD, dict(target=Target.ACT, addr=0, count=1), 1),
        (Opcode.MATMUL, dict(MM, m=3), 0),
        (Opcode.END, {}, 0),
    )
    st = predict(cfg, np.concatenate([good, good]))
    # the first END is taken at once (beat 4 of 8 at cycle 3), the 4 beats after it are
    # discarded one a cycle: counting stops at cycle 3 + 4
    assert st["error"] == ErrorCode.END_NOT_LAST.value and st["cycles"] == 8
    assert st["mac_cycles"] == 3


def test_load_data_ending_with_tlast_is_no_end():
    """A LOAD whose last data beat carries tlast: NO_END (the frame has no END)."""
    cfg = CoreConfig()
    beats = _prog(cfg, (Opcode.LOAD, dict(target=Target.ACT, addr=0, count=2), 2))
    st = predict(cfg, beats)
    assert st["error"] == ErrorCode.NO_END.value and st["cycles"] == 3


def _loop(target, inner, outer=1, inner_stride=1, outer_stride=0):
    return (
        Opcode.LOOP,
        dict(
            target=target,
            inner=inner,
            outer=outer,
            inner_stride=inner_stride,
            outer_stride=outer_stride,
        ),
        0,
    )


def test_loop_is_one_front_end_beat():
    cfg = CoreConfig()
    beats = _prog(
        cfg,
        (Opcode.LOAD, dict(target=Target.ACT, addr=0, count=1), 1),
        _loop(LoopTarget.READ, 3, 1, 0),
        _loop(LoopTarget.WRITE, 0),
        (Opcode.MATMUL, dict(MM, m=3), 0),
        (Opcode.END, {}, 0),
    )
    # header 0, data 1, LOOPs 2 and 3, MATMUL pushed 4, popped 5, rows 6..8, END at
    # 8 + 21 + 1: two cycles more than test_load_matmul_end, and nothing else changes
    st = predict(cfg, beats)
    assert st["cycles"] == 31 and st["mac_cycles"] == 3
    assert st["busy_cycles"] == (8 + 21) - 6 + 1 and st["error"] == 0


def test_loop_never_waits_for_the_queue():
    """With the queue full a LOOP is taken while the next MATMUL waits for a slot: it
    costs nothing; patterns and pool leave the engine's timing as it was."""
    cfg = CoreConfig(rows=4, cols=4, queue_depth=2)
    mm = (Opcode.MATMUL, dict(MM, m=10), 0)
    pp = (Opcode.POSTPROC, dict(PP, m=2, to_stream=0, dst_addr=cfg.act_depth), 0)
    plain = _prog(cfg, mm, mm, mm, mm, pp, (Opcode.END, {}, 0))
    looped = _prog(
        cfg,
        mm,
        mm,
        mm,
        _loop(LoopTarget.READ, 5, 2, 1, 7),  # taken at 3; the next push waits until 12
        (Opcode.MATMUL, dict(MM, m=10, act_addr=9), 0),
        _loop(LoopTarget.WRITE, 2, 1, 3),  # taken at 13; the POSTPROC waits until 22
        (Opcode.POSTPROC, dict(PP, m=2, to_stream=0, dst_addr=cfg.act_depth, pool=1), 0),
        (Opcode.END, {}, 0),
    )
    assert predict(cfg, looped) == predict(cfg, plain)
    assert predict(cfg, plain)["cycles"] == 71  # as in test_kind_switch_and_queue_full


def test_refused_loop_stops_counting_at_tlast():
    cfg = CoreConfig()
    beats = _prog(
        cfg,
        _loop(LoopTarget.READ, 2, 1),
        _loop(LoopTarget.WRITE, 1, 0),  # BAD_LOOP at cycle 1
        (Opcode.SYNC, {}, 0),
        (Opcode.END, {}, 0),
    )
    st = predict(cfg, beats)
    assert st["error"] == ErrorCode.BAD_LOOP.value and st["cycles"] == 4
    beats = _prog(
        cfg,
        _loop(LoopTarget.READ, 2, 2),
        (Opcode.MATMUL, dict(MM, m=3), 0),  # m is not 2 * 2: refused at cycle 1
        (Opcode.END, {}, 0),
    )
    st = predict(cfg, beats)
    assert st["error"] == ErrorCode.BAD_LOOP.value and st["cycles"] == 3
    assert st["mac_cycles"] == 0
