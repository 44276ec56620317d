"""The core's instruction checks in Python, in the hardware's order (hw/frontend.py).

The program checker (:meth:`host.compile.program.Program.validate`) refuses a program
the core would refuse; the cycle model uses the same rules to predict the error code.
"""

from hw.config import CoreConfig
from hw.isa import ErrorCode, Opcode, Target

__all__ = ["check_instruction"]


def check_instruction(cfg: CoreConfig, op: Opcode, f: dict) -> ErrorCode:
    """The hardware's validity checks, in its order: ErrorCode.NONE if the instruction is valid."""
    R, C = cfg.rows, cfg.cols
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
        if f["act_addr"] + f["m"] > cfg.act_space:
            return ErrorCode.ACT_RANGE
        if f["weight_tile"] >= cfg.weight_depth:
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
        if (
            not f["to_stream"]
            and not f["raw"]
            and (f["dst_addr"] < cfg.act_depth or f["dst_addr"] + f["m"] > cfg.act_space)
        ):
            return ErrorCode.ACT_RANGE
    return ErrorCode.NONE
