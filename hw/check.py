"""The instruction check: which error (if any) an instruction word would raise."""

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .isa import ErrorCode, Opcode, Target
from .payloads import INSTRUCTION

__all__ = ["InstructionCheck"]


class InstructionCheck(wiring.Component):
    """Combinational check of one instruction against the configuration's buffers.

    The first failing rule gives the code, in the order below; ``host/compile/checks.py``
    (``check_instruction``) states the same rules for the model backend.

    Members
    -------
    instr : In(INSTRUCTION)
        The instruction word (the low bits of a program beat).
    last : In(1)
        The beat's tlast: ``END`` must carry it (a frame is exactly one program).
    error : Out(isa.ErrorCode)
        ``NONE`` if the instruction is valid.
    """

    def __init__(self, cfg):
        self._cfg = cfg
        super().__init__({"instr": In(INSTRUCTION), "last": In(1), "error": Out(ErrorCode)})

    def elaborate(self, platform):
        cfg = self._cfg
        m = Module()
        ld, mm, pp = self.instr.load, self.instr.matmul, self.instr.postproc
        rules = {
            Opcode.LOAD: [
                (ld.count == 0, ErrorCode.ZERO_LENGTH),
                (
                    (ld.target == Target.ACT) & (ld.addr + ld.count > cfg.act_depth),
                    ErrorCode.ACT_RANGE,
                ),
                (
                    (ld.target == Target.WEIGHT)
                    & (ld.addr * cfg.rows + ld.count > cfg.weight_depth * cfg.rows),
                    ErrorCode.WEIGHT_RANGE,
                ),
                (
                    ((ld.target == Target.BIAS) | (ld.target == Target.SCALE))
                    & (ld.addr * cfg.cols + ld.count > cfg.param_depth * cfg.cols),
                    ErrorCode.PARAM_RANGE,
                ),
            ],
            Opcode.MATMUL: [
                (mm.m == 0, ErrorCode.ZERO_LENGTH),
                (mm.act_addr + mm.m > cfg.act_space, ErrorCode.ACT_RANGE),
                (mm.weight_tile >= cfg.weight_depth, ErrorCode.WEIGHT_RANGE),
                (mm.acc_addr + mm.m > cfg.acc_depth, ErrorCode.ACC_RANGE),
            ],
            Opcode.POSTPROC: [
                (pp.m == 0, ErrorCode.ZERO_LENGTH),
                (pp.acc_addr + pp.m > cfg.acc_depth, ErrorCode.ACC_RANGE),
                (pp.param_addr >= cfg.param_depth, ErrorCode.PARAM_RANGE),
                ((pp.group >= cfg.groups) | (pp.raw & ~pp.to_stream), ErrorCode.BAD_GROUP),
                (
                    ~pp.to_stream
                    & ~pp.raw
                    & ((pp.dst_addr < cfg.act_depth) | (pp.dst_addr + pp.m > cfg.act_space)),
                    ErrorCode.ACT_RANGE,
                ),
            ],
            Opcode.END: [(~self.last, ErrorCode.END_NOT_LAST)],
            Opcode.SYNC: [],
        }
        with m.Switch(self.instr.bare.op):
            for op, checks in rules.items():
                with m.Case(op):
                    for i, (failed, code) in enumerate(checks):
                        with (m.If if i == 0 else m.Elif)(failed):
                            m.d.comb += self.error.eq(code)
            with m.Default():
                m.d.comb += self.error.eq(ErrorCode.BAD_OPCODE)
        return m
