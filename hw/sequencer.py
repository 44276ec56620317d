"""Instruction issue and drain: turns queued MATMUL and POSTPROC into rows."""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from . import isa
from .fanout import kept
from .payloads import PATTERN, QUEUED, MatmulRow, PostprocRow

__all__ = ["Sequencer"]


class Sequencer(wiring.Component):
    """Pops one instruction at a time and issues its rows, one a cycle.

    MATMUL row ``i`` reads activation word ``act_addr + i`` and adds into (or writes
    over) accumulator word ``acc_addr + i``, with weight tile ``weight_tile`` (or, when
    ``tile_step`` is set, ``weight_tile + i``: the tile register counts up a row at a
    time). POSTPROC row ``i`` reads accumulator word
    ``acc_addr + i`` and parameter word ``param_addr`` and writes activation word
    ``dst_addr + i`` or goes to the stream; a raw row takes ``raw_beats`` slots, the
    first of which issues it. Under the instruction's address pattern (``inner != 0``)
    row ``i``'s activation word (``act_addr`` or ``dst_addr``) is instead ``base +
    (i mod inner) * inner_stride + (i div inner) * outer_stride``, counted with running
    registers: the next row's address is the current one plus ``inner_stride``, or,
    after ``inner`` rows, the start of the current run plus ``outer_stride``.

    Instructions of one kind follow each other with no bubble. Switching kind waits
    until the other kind's pipeline has drained (``array_latency`` or
    ``postproc_latency`` cycles after its last row), which is what makes a POSTPROC see
    the accumulators its MATMULs wrote and a MATMUL see the activations its POSTPROCs
    wrote. The exact rules are in docs/ARCHITECTURE.md (timing model).

    Members
    -------
    i_instr : In(stream.Signature(QUEUED))
        The engine's queue: instructions with their address patterns.
    o_mm : Out(stream.Signature(MatmulRow, always_ready=True))
        MATMUL rows; the payload holds the next row's addresses also while not valid.
    o_pp : Out(stream.Signature(PostprocRow))
        POSTPROC rows; low ``ready`` holds the POSTPROC (every slot of a raw row). The
        payload is the current POSTPROC's next row also while not valid.
    pp_hold : In(1)
        The post-processing pipeline stands still this cycle (its drain count waits).
    active : Out(1)
        An instruction is being issued.
    drained : Out(1)
        Both pipelines have drained.
    pp_mode : Out(1)
        The current (or last) instruction is a POSTPROC: no MATMUL row is between its
        issue and its accumulator read (``array_latency`` covers the read), so the
        accumulator's read port may follow POSTPROC's address. A register.

    What decides a row's issue is kept in registers, so that little logic stands
    between them and the buffers' addresses: the accumulator word (``acc_addr + i``
    counted), whether the row is the instruction's last, and whether it ends its run of
    the address pattern.
    """

    def __init__(self, cfg):
        self._cfg = cfg
        super().__init__(
            {
                "i_instr": In(stream.Signature(QUEUED)),
                "o_mm": Out(stream.Signature(MatmulRow(cfg), always_ready=True)),
                "o_pp": Out(stream.Signature(PostprocRow(cfg))),
                "pp_hold": In(1),
                "active": Out(1),
                "drained": Out(1),
                "pp_mode": Out(1),
            }
        )

    def elaborate(self, platform):
        cfg = self._cfg
        m = Module()
        head = self.i_instr.payload.instr
        head_is_pp = head.bare.op == isa.Opcode.POSTPROC
        cur_valid, cur_is_pp = Signal(), Signal()
        mm, pp = Signal(isa.MATMUL), Signal(isa.POSTPROC)
        # the parameter word a copy a lane, each driving only its lane's memory; ``keep``
        # asks synthesis to keep the copies apart (systolic.hw.synth.targets)
        param_addr = [kept(range(cfg.param_depth), f"param_addr_lane{c}") for c in range(cfg.cols)]
        row = Signal(isa.ROWS_BITS)
        acc = Signal.like(self.o_mm.payload.acc_addr)  # acc_addr + row
        last_row = Signal()  # row == m - 1
        # the pattern's running registers: the current row's activation word, the first
        # word of its run of ``inner`` rows, its place in that run
        pattern = Signal(PATTERN)
        addr, run_start = Signal(range(cfg.act_space)), Signal(range(cfg.act_space))
        col = Signal(isa.ROWS_BITS)
        run_end = Signal()  # col + 1 == pattern.inner
        slot = Signal(range(max(2, cfg.raw_beats)))  # a raw row's beat
        mm_drain = Signal(range(cfg.array_latency + 1))
        pp_drain = Signal(range(cfg.postproc_latency + 1))

        mm_slot = cur_valid & ~cur_is_pp
        pp_slot = cur_valid & cur_is_pp & self.o_pp.ready
        last_slot = slot == Mux(pp.raw, cfg.raw_beats, 1) - 1
        done = last_row & (mm_slot | (pp_slot & last_slot))
        mm_busy = mm_slot | (mm_drain != 0)
        pp_busy = (cur_valid & cur_is_pp) | (pp_drain != 0)
        m.d.comb += self.i_instr.ready.eq((~cur_valid | done) & Mux(head_is_pp, ~mm_busy, ~pp_busy))

        base = Mux(head_is_pp, head.postproc.dst_addr, head.matmul.act_addr)
        head_pattern = self.i_instr.payload.pattern
        with m.If(self.i_instr.valid & self.i_instr.ready):
            m.d.sync += [
                cur_valid.eq(1),
                cur_is_pp.eq(head_is_pp),
                row.eq(0),
                acc.eq(Mux(head_is_pp, head.postproc.acc_addr, head.matmul.acc_addr)),
                last_row.eq(Mux(head_is_pp, head.postproc.m, head.matmul.m) == 1),
                slot.eq(0),
                mm.eq(head.matmul),
                pp.eq(head.postproc),
                *(lane.eq(head.postproc.param_addr) for lane in param_addr),
                pattern.eq(head_pattern),
                addr.eq(base),
                run_start.eq(base),
                col.eq(0),
                run_end.eq(head_pattern.inner == 1),
            ]
        with m.Elif(done):
            m.d.sync += cur_valid.eq(0)
        with m.Elif(mm_slot):
            self._next_row(m, row, acc, last_row, mm.m)
            with m.If(mm.tile_step):
                m.d.sync += mm.weight_tile.eq(mm.weight_tile + 1)
            self._next_address(m, pattern, addr, run_start, col, run_end)
        with m.Elif(pp_slot):
            m.d.sync += slot.eq(Mux(last_slot, 0, slot + 1))
            with m.If(last_slot):
                self._next_row(m, row, acc, last_row, pp.m)
                self._next_address(m, pattern, addr, run_start, col, run_end)

        with m.If(mm_slot):
            m.d.sync += mm_drain.eq(cfg.array_latency)
        with m.Elif(mm_drain != 0):
            m.d.sync += mm_drain.eq(mm_drain - 1)
        with m.If(pp_slot):
            m.d.sync += pp_drain.eq(cfg.postproc_latency)
        with m.Elif((pp_drain != 0) & ~self.pp_hold):
            m.d.sync += pp_drain.eq(pp_drain - 1)

        m.d.comb += [
            self.o_mm.valid.eq(mm_slot),
            self.o_mm.payload.act_addr.eq(addr),
            self.o_mm.payload.weight_tile.eq(mm.weight_tile),
            self.o_mm.payload.acc_addr.eq(acc),
            self.o_mm.payload.accumulate.eq(mm.accumulate),
            self.o_pp.valid.eq(cur_valid & cur_is_pp & (slot == 0)),
            self.o_pp.payload.acc_addr.eq(acc),
            *(self.o_pp.payload.param_addr[c].eq(lane) for c, lane in enumerate(param_addr)),
            self.o_pp.payload.dst_addr.eq(addr),
            self.o_pp.payload.group.eq(pp.group),
            self.o_pp.payload.to_stream.eq(pp.to_stream | pp.raw),
            self.o_pp.payload.raw.eq(pp.raw),
            self.o_pp.payload.pool.eq(pp.pool),
            self.active.eq(cur_valid),
            self.drained.eq((mm_drain == 0) & (pp_drain == 0)),
            self.pp_mode.eq(cur_is_pp),
        ]
        return m

    @staticmethod
    def _next_row(m, row, acc, last_row, rows):
        """On to the next of ``rows`` rows: its number, accumulator word, and whether it is
        the last."""
        m.d.sync += [row.eq(row + 1), acc.eq(acc + 1), last_row.eq(row + 2 == rows)]

    @staticmethod
    def _next_address(m, pattern, addr, run_start, col, run_end):
        """The next row's activation word: on in the run, or the next run's start (no
        wrap while linear: ``col`` stays below ``m - 1 < 2**ROWS_BITS - 1``)."""
        with m.If(run_end):
            m.d.sync += [
                col.eq(0),
                run_end.eq(pattern.inner == 1),
                run_start.eq(run_start + pattern.outer_stride),
                addr.eq(run_start + pattern.outer_stride),
            ]
        with m.Else():
            m.d.sync += [
                col.eq(col + 1),
                run_end.eq(col + 2 == pattern.inner),
                addr.eq(addr + pattern.inner_stride),
            ]
