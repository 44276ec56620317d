"""The core's instruction checks in Python, in the hardware's order (hw/frontend.py).

The program checker (:meth:`systolic.host.compile.program.Program.validate`) refuses a program
the core would refuse; the cycle model uses the same rules to predict the error code.

MATMUL and POSTPROC are checked against the address patterns that the LOOPs before
them set (``patterns``, one per :class:`~systolic.hw.isa.LoopTarget`): ``None`` is linear, the
state of both targets at the start of every program.
"""

from systolic.hw.config import MAX_ROWS_PER_OP, CoreConfig
from systolic.hw.isa import ErrorCode, LoopTarget, Opcode, Target

__all__ = ["LINEAR", "check_instruction", "loop_pattern", "pattern_span"]

#: Both targets linear: the pattern registers at the start of every program.
LINEAR = {LoopTarget.READ: None, LoopTarget.WRITE: None}


def loop_pattern(f: dict):
    """The pattern a valid LOOP with fields ``f`` sets: ``None`` (linear, ``inner == 0``)
    or ``(inner, outer, inner_stride, outer_stride)``."""
    if f["inner"] == 0:
        return None
    return (f["inner"], f["outer"], f["inner_stride"], f["outer_stride"])


def pattern_span(pattern) -> int:
    """The largest address offset of a pattern's rows:
    ``(inner - 1) * inner_stride + (outer - 1) * outer_stride`` (no wrap)."""
    inner, outer, inner_stride, outer_stride = pattern
    return (inner - 1) * inner_stride + (outer - 1) * outer_stride


def _pattern_range(cfg, pattern, base, m, lo):
    """BAD_LOOP or ACT_RANGE for ``m`` rows from ``base`` under ``pattern`` (None: linear),
    addresses allowed in ``lo .. act_space - 1``."""
    if pattern is None:
        if base < lo or base + m > cfg.act_space:
            return ErrorCode.ACT_RANGE
        return ErrorCode.NONE
    if m != pattern[0] * pattern[1]:
        return ErrorCode.BAD_LOOP
    if base < lo or base + pattern_span(pattern) >= cfg.act_space:
        return ErrorCode.ACT_RANGE
    return ErrorCode.NONE


def check_instruction(cfg: CoreConfig, op: Opcode, f: dict, patterns=None) -> ErrorCode:
    """The hardware's validity checks, in its order: ErrorCode.NONE if the instruction is valid.

    Parameters
    ----------
    cfg : CoreConfig
    op : Opcode
    f : dict
        The instruction's fields, as :func:`systolic.hw.isa.decode` returns them.
    patterns : mapping or None
        The current pattern of each :class:`~systolic.hw.isa.LoopTarget` (``None`` or the tuple of
        :func:`loop_pattern`); ``None`` for the whole mapping means both linear.
    """
    R, C = cfg.rows, cfg.cols
    patterns = LINEAR if patterns is None else patterns
    if op is Opcode.LOAD:
        if f["count"] == 0:
            return ErrorCode.ZERO_LENGTH
        t = Target(f["target"])
        if t is Target.ACT and f["addr"] + f["count"] > cfg.act_depth:
            return ErrorCode.ACT_RANGE
        if t is Target.WEIGHT and f["addr"] * R + f["count"] > cfg.weight_depth * R:
            return ErrorCode.WEIGHT_RANGE
        if t in (Target.BIAS, Target.SCALE) and f["addr"] * C + f["count"] > cfg.param_depth * C:
            return ErrorCode.PARAM_RANGE
    elif op is Opcode.MATMUL:
        if f["m"] == 0:
            return ErrorCode.ZERO_LENGTH
        err = _pattern_range(cfg, patterns[LoopTarget.READ], f["act_addr"], f["m"], 0)
        if err is not ErrorCode.NONE:
            return err
        if f["weight_tile"] + (f["m"] if f.get("tile_step", 0) else 1) > cfg.weight_depth:
            return ErrorCode.WEIGHT_RANGE
        if f["acc_addr"] + f["m"] > cfg.acc_depth:
            return ErrorCode.ACC_RANGE
    elif op is Opcode.POSTPROC:
        if f["m"] == 0:
            return ErrorCode.ZERO_LENGTH
        if f["acc_addr"] + f["m"] > cfg.acc_depth:
            return ErrorCode.ACC_RANGE
        if f["param_addr"] >= cfg.param_depth:
            return ErrorCode.PARAM_RANGE
        if f["group"] >= cfg.groups or (f["raw"] and not f["to_stream"]):
            return ErrorCode.BAD_GROUP
        if f.get("pool", 0) and (f["to_stream"] or f["raw"]):
            return ErrorCode.BAD_POOL
        if not f["to_stream"] and not f["raw"]:
            return _pattern_range(
                cfg, patterns[LoopTarget.WRITE], f["dst_addr"], f["m"], cfg.act_depth
            )
    elif op is Opcode.LOOP:
        if f["inner"] != 0 and (f["outer"] == 0 or f["inner"] * f["outer"] > MAX_ROWS_PER_OP):
            return ErrorCode.BAD_LOOP
    return ErrorCode.NONE
