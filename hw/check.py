"""The instruction check: which error (if any) an instruction word would raise."""

from amaranth.hdl import Module, Mux
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .config import ADDR_BITS, MAX_ROWS_PER_OP
from .isa import ROWS_BITS, ErrorCode, LoopTarget, Opcode, Target
from .payloads import INSTRUCTION, LoopCheck

__all__ = ["LOOP_PRODUCTS", "InstructionCheck", "loop_products"]

#: A LOOP's three products: ``rows = inner * outer`` (full width, for the row limit) and
#: the two terms of its address span ``(inner - 1) * inner_stride + (outer - 1) *
#: outer_stride``. They are the check's only multiplications; the deep pipeline
#: registers them on their own (:func:`loop_products` of the beat arriving, beside the
#: beat's register) so that no multiplier sits between two other paths.
LOOP_PRODUCTS = data.StructLayout(
    {
        "rows": 2 * ROWS_BITS,
        "inner_span": ROWS_BITS + ADDR_BITS["act_depth"],
        "outer_span": ROWS_BITS + ADDR_BITS["act_depth"],
    }
)


def loop_products(dst: data.View, lp: data.View) -> list:
    """The assignments of the :data:`LOOP_PRODUCTS` of the LOOP fields ``lp``
    (``isa.LOOP``) to ``dst`` (meaningful when the instruction is a LOOP)."""
    inner_last, outer_last = (lp.inner - 1)[:ROWS_BITS], (lp.outer - 1)[:ROWS_BITS]
    return [
        dst.rows.eq(lp.inner * lp.outer),
        dst.inner_span.eq(inner_last * lp.inner_stride),
        dst.outer_span.eq(outer_last * lp.outer_stride),
    ]


def _first(rules):
    """The code of the first failing rule of ``[(failed, code)]``, else ``NONE``."""
    code = ErrorCode.NONE
    for failed, rule_code in reversed(rules):
        code = Mux(failed, rule_code, code)
    return code


class InstructionCheck(wiring.Component):
    """Combinational check of one instruction against the configuration's buffers.

    The first failing rule gives the code, in the order below; ``host/compile/checks.py``
    (``check_instruction``) states the same rules for the model backend. What depends on
    the address patterns (MATMUL's act range, POSTPROC's hidden-buffer range) is left to
    the front end's decoder, which holds them: :attr:`error` is the code with no pattern
    set, :attr:`loop` what the decoder needs to finish the check under one (the stateless
    rules before and after the pattern's, and for a LOOP its rows and address limit, so
    that the decoder multiplies nothing).

    Members
    -------
    instr : In(INSTRUCTION)
        The instruction word (the low bits of a program beat).
    products : In(LOOP_PRODUCTS)
        :func:`loop_products` of ``instr``'s LOOP fields: computed from the same word,
        combinationally or one register earlier.
    last : In(1)
        The beat's tlast: ``END`` must carry it (a frame is exactly one program).
    error : Out(isa.ErrorCode)
        ``NONE`` if the instruction is valid with both patterns linear.
    loop : Out(LoopCheck)
        The check's pattern-dependent part.
    """

    def __init__(self, cfg):
        self._cfg = cfg
        super().__init__(
            {
                "instr": In(INSTRUCTION),
                "products": In(LOOP_PRODUCTS),
                "last": In(1),
                "error": Out(ErrorCode),
                "loop": Out(LoopCheck(cfg)),
            }
        )

    def elaborate(self, platform):
        cfg = self._cfg
        m = Module()
        ld, mm, pp, lp = self.instr.load, self.instr.matmul, self.instr.postproc, self.instr.loop
        to_hidden = ~pp.to_stream & ~pp.raw
        # MATMUL and POSTPROC: the rules before the pattern-dependent ones, and after
        mm_early = [(mm.m == 0, ErrorCode.ZERO_LENGTH)]
        mm_late = [
            (
                mm.weight_tile + Mux(mm.tile_step, mm.m, 1) > cfg.weight_depth,
                ErrorCode.WEIGHT_RANGE,
            ),
            (mm.acc_addr + mm.m > cfg.acc_depth, ErrorCode.ACC_RANGE),
        ]
        pp_early = [
            (pp.m == 0, ErrorCode.ZERO_LENGTH),
            (pp.acc_addr + pp.m > cfg.acc_depth, ErrorCode.ACC_RANGE),
            (pp.param_addr >= cfg.param_depth, ErrorCode.PARAM_RANGE),
            ((pp.group >= cfg.groups) | (pp.raw & ~pp.to_stream), ErrorCode.BAD_GROUP),
            (pp.pool & (pp.to_stream | pp.raw), ErrorCode.BAD_POOL),
        ]
        pp_below = to_hidden & (pp.dst_addr < cfg.act_depth)
        # LOOP: its rows and the span of its addresses (meaningful when it passes)
        rows = self.products.rows
        span = self.products.inner_span + self.products.outer_span
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
                *mm_early,
                (mm.act_addr + mm.m > cfg.act_space, ErrorCode.ACT_RANGE),
                *mm_late,
            ],
            Opcode.POSTPROC: [
                *pp_early,
                (
                    to_hidden
                    & ((pp.dst_addr < cfg.act_depth) | (pp.dst_addr + pp.m > cfg.act_space)),
                    ErrorCode.ACT_RANGE,
                ),
            ],
            Opcode.LOOP: [
                (
                    (lp.inner != 0) & ((lp.outer == 0) | (rows > MAX_ROWS_PER_OP)),
                    ErrorCode.BAD_LOOP,
                )
            ],
            Opcode.END: [(~self.last, ErrorCode.END_NOT_LAST)],
            Opcode.SYNC: [],
        }
        loop = self.loop
        with m.Switch(self.instr.bare.op):
            for op, checks in rules.items():
                with m.Case(op):
                    for i, (failed, code) in enumerate(checks):
                        with (m.If if i == 0 else m.Elif)(failed):
                            m.d.comb += self.error.eq(code)
            with m.Default():
                m.d.comb += self.error.eq(ErrorCode.BAD_OPCODE)
        with m.Switch(self.instr.bare.op):
            with m.Case(Opcode.MATMUL):
                m.d.comb += [
                    loop.applies.eq(1),
                    loop.target.eq(LoopTarget.READ),
                    loop.early.eq(_first(mm_early)),
                    loop.late.eq(_first(mm_late)),
                    loop.m.eq(mm.m),
                    loop.addr.eq(mm.act_addr),
                ]
            with m.Case(Opcode.POSTPROC):
                m.d.comb += [
                    loop.applies.eq(to_hidden),
                    loop.target.eq(LoopTarget.WRITE),
                    loop.early.eq(_first(pp_early)),
                    loop.late.eq(Mux(pp_below, ErrorCode.ACT_RANGE, ErrorCode.NONE)),
                    loop.m.eq(pp.m),
                    loop.addr.eq(pp.dst_addr),
                ]
        m.d.comb += [
            loop.rows.eq(rows),
            loop.limit.eq(Mux(span >= cfg.act_space, 0, cfg.act_space - span)),
        ]
        return m
