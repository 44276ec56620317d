"""The instruction check: which error (if any) an instruction word would raise."""

from amaranth.hdl import Const, Module, Mux
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .config import MAX_ROWS_PER_OP
from .isa import ROWS_BITS, ErrorCode, LoopTarget, Opcode, Target
from .payloads import INSTRUCTION, SPAN_BITS, LoopCheck

__all__ = [
    "LOOP_PRODUCTS",
    "InstructionCheck",
    "Precheck",
    "loop_factors",
    "loop_products",
    "precheck",
]

#: A LOOP's three products: ``rows = inner * outer`` (full width, for the row limit) and
#: the two terms of its address span ``(inner - 1) * inner_stride + (outer - 1) *
#: outer_stride``. They are the check's only multiplications; the deep pipeline
#: registers them on their own (:func:`loop_products` of the beat arriving, beside the
#: beat's register) so that no multiplier sits between two other paths.
LOOP_PRODUCTS = data.StructLayout(
    {
        "rows": 2 * ROWS_BITS,
        "inner_span": SPAN_BITS,
        "outer_span": SPAN_BITS,
    }
)


def loop_factors(lp: data.View) -> dict:
    """The two factors of each of the :data:`LOOP_PRODUCTS` of the LOOP fields ``lp``
    (``isa.LOOP``), by name (meaningful when the instruction is a LOOP)."""
    inner_last, outer_last = (lp.inner - 1)[:ROWS_BITS], (lp.outer - 1)[:ROWS_BITS]
    return {
        "rows": (lp.inner, lp.outer),
        "inner_span": (inner_last, lp.inner_stride),
        "outer_span": (outer_last, lp.outer_stride),
    }


def loop_products(dst: data.View, lp: data.View) -> list:
    """The assignments of the :data:`LOOP_PRODUCTS` of the LOOP fields ``lp`` to
    ``dst``."""
    return [getattr(dst, k).eq(a * b) for k, (a, b) in loop_factors(lp).items()]


def _ends(cfg, instr) -> dict:
    """The ends (first + count) that the range rules compare with a bound, one a rule,
    of the instruction word ``instr`` (:data:`INSTRUCTION`) read in every format: each is
    meaningful when the instruction is of its format."""
    ld, mm, pp = instr.load, instr.matmul, instr.postproc
    return {
        "load_act": ld.addr + ld.count,
        "load_weight": ld.addr * cfg.rows + ld.count,
        "load_param": ld.addr * cfg.cols + ld.count,
        "matmul_act": mm.act_addr + mm.m,
        "matmul_weight": mm.weight_tile + Mux(mm.tile_step, mm.m, 1),
        "matmul_acc": mm.acc_addr + mm.m,
        "postproc_acc": pp.acc_addr + pp.m,
        "postproc_dst": pp.dst_addr + pp.m,
    }


class Precheck(data.StructLayout):
    """What the check computes with an adder or a multiplier before it compares: the
    LOOP's :data:`LOOP_PRODUCTS` and the range rules' ends (:func:`_ends`). With the deep
    pipeline they are registered with the beat as it arrives (:func:`precheck`), so that
    the check itself is one comparison deep: an adder in front of a comparison was the
    8x8's worst path (13.73 ns, the staging register into the input buffer)."""

    def __init__(self, cfg):
        ends = _ends(cfg, data.View(INSTRUCTION, Const(0, INSTRUCTION.size)))
        super().__init__(
            {
                "products": LOOP_PRODUCTS,
                "ends": data.StructLayout({k: v.shape() for k, v in ends.items()}),
            }
        )


def precheck(cfg, dst: data.View, instr: data.View, products: bool = True) -> list:
    """The assignments of the :class:`Precheck` of the instruction word ``instr`` to
    ``dst``; with ``products=False`` the LOOP products are left to the caller."""
    ends = _ends(cfg, instr)
    return [getattr(dst.ends, k).eq(v) for k, v in ends.items()] + (
        loop_products(dst.products, instr.loop) if products else []
    )


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
    pre : In(Precheck)
        :func:`precheck` of ``instr``: computed from the same word, combinationally or
        one register earlier.
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
                "pre": In(Precheck(cfg)),
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
        ends = self.pre.ends
        mm_late = [
            (ends.matmul_weight > cfg.weight_depth, ErrorCode.WEIGHT_RANGE),
            (ends.matmul_acc > cfg.acc_depth, ErrorCode.ACC_RANGE),
        ]
        pp_early = [
            (pp.m == 0, ErrorCode.ZERO_LENGTH),
            (ends.postproc_acc > cfg.acc_depth, ErrorCode.ACC_RANGE),
            (pp.param_addr >= cfg.param_depth, ErrorCode.PARAM_RANGE),
            ((pp.group >= cfg.groups) | (pp.raw & ~pp.to_stream), ErrorCode.BAD_GROUP),
            (pp.pool & (pp.to_stream | pp.raw), ErrorCode.BAD_POOL),
        ]
        pp_below = to_hidden & (pp.dst_addr < cfg.act_depth)
        # LOOP: its rows and the span of its addresses (meaningful when it passes)
        rows = self.pre.products.rows
        rules = {
            Opcode.LOAD: [
                (ld.count == 0, ErrorCode.ZERO_LENGTH),
                (
                    (ld.target == Target.ACT) & (ends.load_act > cfg.act_depth),
                    ErrorCode.ACT_RANGE,
                ),
                (
                    (ld.target == Target.WEIGHT) & (ends.load_weight > cfg.weight_depth * cfg.rows),
                    ErrorCode.WEIGHT_RANGE,
                ),
                (
                    ((ld.target == Target.BIAS) | (ld.target == Target.SCALE))
                    & (ends.load_param > cfg.param_depth * cfg.cols),
                    ErrorCode.PARAM_RANGE,
                ),
            ],
            Opcode.MATMUL: [
                *mm_early,
                (ends.matmul_act > cfg.act_space, ErrorCode.ACT_RANGE),
                *mm_late,
            ],
            Opcode.POSTPROC: [
                *pp_early,
                (
                    to_hidden
                    & ((pp.dst_addr < cfg.act_depth) | (ends.postproc_dst > cfg.act_space)),
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
            loop.span.eq(self.pre.products.inner_span + self.pre.products.outer_span),
        ]
        return m
