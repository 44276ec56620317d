"""The execute engine: runs queued MATMUL and POSTPROC instructions."""

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from . import isa
from .array import SystolicArray, array_output_delay
from .postproc import PostProcessor

__all__ = ["Engine"]


class Engine(wiring.Component):
    """Pops instructions from the queue and issues one row per cycle.

    MATMUL row ``i`` reads activation word ``act_addr + i``, selects ``weight_tile``
    and, ``mm_write_delay`` cycles later, adds the array's result row into (or writes
    it over) accumulator word ``acc_addr + i``. POSTPROC row ``i`` reads accumulator
    word ``acc_addr + i`` and parameter word ``param_addr`` and, ``postproc_latency - 1``
    cycles later, writes the requantized row to the activation buffer or sends it on the result
    stream (``raw_beats`` beats, one row every ``raw_beats`` cycles, in raw mode).

    Instructions of one kind follow each other with no bubble. Switching kind waits
    until the other kind's pipeline has drained (``array_latency`` or
    ``postproc_latency`` cycles after its last row), which is what makes a POSTPROC
    see the accumulators its MATMULs wrote and a MATMUL see the activations its
    POSTPROCs wrote. The exact rules are in docs/ARCHITECTURE.md (timing model).

    Result rows meet the stream's backpressure in one of two ways. With
    ``cfg.deep_pipeline``, rows for the stream go into a small row FIFO and a POSTPROC
    row for the stream is issued only while the FIFO has room for every such row in
    flight (a credit count), so the post-processing pipeline and the accumulator read
    never stall and ``o_ready`` drives no more than the FIFO's read side. Without it
    (no FIFO, for small FPGAs) a row waiting at the output holds the whole pipeline.
    With ``o_ready`` high the two behave the same, cycle for cycle.
    """

    def __init__(self, cfg):
        self._cfg = cfg
        R, C = cfg.rows, cfg.cols
        act_word = data.ArrayLayout(signed(cfg.act_bits), R)
        super().__init__({
            # queue
            "q_data": In(isa.INSTR_BITS), "q_rdy": In(1), "q_en": Out(1),
            # activation address space (input buffer, then hidden buffer): read for MATMUL;
            # the hidden buffer is written by POSTPROC (hidden_waddr counts from its start)
            "act_raddr": Out(range(cfg.act_space)), "act_rdata": In(act_word),
            "act_we": Out(1), "hidden_waddr": Out(range(cfg.hidden_depth)),
            "act_wdata": Out(act_word),
            # weights
            "read_tile": Out(range(cfg.weight_depth)),
            "weights": In(data.ArrayLayout(data.ArrayLayout(signed(cfg.weight_bits), C), R)),
            # accumulators
            "acc_raddr": Out(range(cfg.acc_depth)), "acc_ren": Out(1),
            "acc_rdata": In(data.ArrayLayout(signed(cfg.acc_bits), C)),
            "acc_we": Out(1), "acc_waddr": Out(range(cfg.acc_depth)),
            "acc_wdata": Out(data.ArrayLayout(signed(cfg.acc_bits), C)),
            # parameters
            "param_addr": Out(range(cfg.param_depth)), "param_ren": Out(1),
            "bias": In(data.ArrayLayout(signed(isa.BIAS_BITS), C)),
            "scale": In(data.ArrayLayout(isa.SCALE_WORD, C)),
            # result stream
            "o_valid": Out(1), "o_data": Out(cfg.stream_bits), "o_ready": In(1),
            # state for the front end's counters
            "idle": Out(1), "busy": Out(1), "mac_issue": Out(1), "out_stall": Out(1),
        })

    def elaborate(self, platform):
        cfg = self._cfg
        R, C = cfg.rows, cfg.cols
        m = Module()
        m.submodules.array = array = SystolicArray(cfg)
        pp_meta = data.StructLayout({
            "dst_addr": range(cfg.act_space), "group": 3, "to_stream": 1, "raw": 1})
        m.submodules.post = post = PostProcessor(cfg, pp_meta)

        # -- instruction sequencing ------------------------------------------------------
        head_mm = data.View(isa.MATMUL, self.q_data[:isa.MATMUL.size])
        head_pp = data.View(isa.POSTPROC, self.q_data[:isa.POSTPROC.size])
        head_is_pp = head_mm.op == isa.Opcode.POSTPROC
        cur_valid = Signal()
        cur_is_pp = Signal()
        mm = Signal(isa.MATMUL)
        pp = Signal(isa.POSTPROC)
        row = Signal(isa.ROWS_BITS)
        slot = Signal(range(max(2, cfg.raw_beats)))
        mm_drain = Signal(range(cfg.array_latency + 1))
        pp_drain = Signal(range(cfg.postproc_latency + 1))

        deep = cfg.deep_pipeline
        # issue_hold: no POSTPROC slot this cycle; pipe_hold: the post-processing
        # pipeline and its accumulator/parameter reads stand still (shallow only)
        issue_hold, pipe_hold = Signal(), Signal()
        mm_slot = cur_valid & ~cur_is_pp
        pp_slot = cur_valid & cur_is_pp & ~issue_hold
        slots = Mux(pp.raw, cfg.raw_beats, 1)
        last_slot = slot == slots - 1
        m_rows = Mux(cur_is_pp, pp.m, mm.m)
        done = (row == m_rows - 1) & (mm_slot | (pp_slot & last_slot))
        mm_busy = mm_slot | (mm_drain != 0)
        pp_busy = (cur_valid & cur_is_pp) | (pp_drain != 0)
        free = ~cur_valid | done
        pop = self.q_rdy & free & Mux(head_is_pp, ~mm_busy, ~pp_busy)
        m.d.comb += self.q_en.eq(pop)

        with m.If(pop):
            m.d.sync += [cur_valid.eq(1), cur_is_pp.eq(head_is_pp), row.eq(0), slot.eq(0),
                         mm.eq(head_mm), pp.eq(head_pp)]
        with m.Elif(done):
            m.d.sync += cur_valid.eq(0)
        with m.Elif(mm_slot):
            m.d.sync += row.eq(row + 1)
        with m.Elif(pp_slot):
            m.d.sync += slot.eq(Mux(last_slot, 0, slot + 1))
            with m.If(last_slot):
                m.d.sync += row.eq(row + 1)

        with m.If(mm_slot):
            m.d.sync += mm_drain.eq(cfg.array_latency)
        with m.Elif(mm_drain != 0):
            m.d.sync += mm_drain.eq(mm_drain - 1)
        with m.If(pp_slot):
            m.d.sync += pp_drain.eq(cfg.postproc_latency)
        with m.Elif((pp_drain != 0) & ~pipe_hold):
            m.d.sync += pp_drain.eq(pp_drain - 1)

        # -- MATMUL datapath -------------------------------------------------------------
        # The weights are read one cycle after the activations, which take one cycle
        # longer (see Core).
        tile = Signal.like(mm.weight_tile)
        m.d.sync += tile.eq(mm.weight_tile)
        m.d.comb += [
            self.act_raddr.eq(mm.act_addr + row),
            self.read_tile.eq(tile),
            array.act.eq(self.act_rdata),
            array.weights.eq(self.weights),
        ]
        # (valid, acc_addr, accumulate) travel beside the data; the accumulator sum is
        # written in the cycle the array's result row appears.
        #  * deep pipeline: a two-cycle read-modify-write, so that no path runs from the
        #    block RAM's output through the adder back into it. The read is issued two
        #    cycles before, its data registered; the two writes the read cannot see (the
        #    one in its own cycle and the one after) are forwarded from registers.
        #  * shallow: the read is issued one cycle before and is transparent for the
        #    write port (fewer flip-flops, a longer path).
        mm_meta = Cat(mm_slot, mm.acc_addr + row, mm.accumulate)
        # buffer read and registers, then the array, less the read-modify-write
        assert cfg.mm_write_delay == 3 + array_output_delay(cfg)
        for i in range(cfg.mm_write_delay - (2 if deep else 1)):
            nxt = Signal.like(mm_meta, name=f"mm_meta_{i + 1}")
            m.d.sync += nxt.eq(mm_meta)
            mm_meta = nxt
        rd_valid, rd_addr, rd_acc = (mm_meta[0], mm_meta[1:-1], mm_meta[-1])
        acc_row = data.ArrayLayout(signed(cfg.acc_bits), C)
        wr_valid, wr_addr, wr_acc = Signal(), Signal.like(self.acc_waddr), Signal()
        base = Signal(acc_row)
        if deep:
            # stage D: the read data arrives; stage W: the write
            d_valid, d_addr, d_acc = Signal(), Signal.like(self.acc_waddr), Signal()
            m.d.sync += [d_valid.eq(rd_valid), d_addr.eq(rd_addr), d_acc.eq(rd_acc),
                         wr_valid.eq(d_valid), wr_addr.eq(d_addr), wr_acc.eq(d_acc)]
            acc_q = Signal(acc_row)             # registered read data, for the row in W
            prev1 = Signal(acc_row)             # the write of the previous cycle
            prev1_valid, prev1_addr = Signal(), Signal.like(self.acc_waddr)
            prev2 = Signal(acc_row)             # and of the one before
            fwd1, fwd2 = Signal(), Signal()     # the row in W takes prev1 / prev2
            m.d.sync += [
                acc_q.eq(self.acc_rdata),
                prev1.eq(self.acc_wdata), prev1_valid.eq(wr_valid), prev1_addr.eq(wr_addr),
                prev2.eq(prev1),
                # decided in D: the write now (W) is prev1 in the next cycle, prev1 is prev2
                fwd1.eq(wr_valid & (wr_addr == d_addr)),
                fwd2.eq(prev1_valid & (prev1_addr == d_addr)),
            ]
            with m.If(~wr_acc):
                m.d.comb += base.eq(0)
            with m.Elif(fwd1):
                m.d.comb += base.eq(prev1)
            with m.Elif(fwd2):
                m.d.comb += base.eq(prev2)
            with m.Else():
                m.d.comb += base.eq(acc_q)
        else:
            m.d.sync += [wr_valid.eq(rd_valid), wr_addr.eq(rd_addr), wr_acc.eq(rd_acc)]
            m.d.comb += base.eq(Mux(wr_acc, self.acc_rdata, 0))
        m.d.comb += [self.acc_we.eq(wr_valid), self.acc_waddr.eq(wr_addr)]
        for c in range(C):
            m.d.comb += self.acc_wdata[c].eq(base[c] + array.result[c])

        # -- POSTPROC datapath -----------------------------------------------------------
        pp_issue = pp_slot & (slot == 0)
        m.d.comb += [
            self.acc_raddr.eq(Mux(pp_issue, pp.acc_addr + row, rd_addr)),
            self.acc_ren.eq(~pipe_hold),
            self.param_addr.eq(pp.param_addr),
            self.param_ren.eq(~pipe_hold),
        ]
        issue_valid = Signal()
        issue_meta = Signal(pp_meta)
        with m.If(~pipe_hold):
            m.d.sync += [
                issue_valid.eq(pp_issue),
                issue_meta.dst_addr.eq(pp.dst_addr + row),
                issue_meta.group.eq(pp.group),
                issue_meta.to_stream.eq(pp.to_stream | pp.raw),
                issue_meta.raw.eq(pp.raw),
            ]
        m.d.comb += [
            post.en.eq(~pipe_hold),
            post.i_valid.eq(issue_valid),
            post.i_meta.eq(issue_meta),
            post.acc.eq(self.acc_rdata),
            post.bias.eq(self.bias),
            post.scale.eq(self.scale),
        ]

        # Output stage: a row for the activation buffer is written there; a row for the
        # stream goes out as 1 or raw_beats beats.
        raw_bits = Cat(*(post.raw[c] for c in range(C)))
        y_bits = Cat(*(post.y[c] for c in range(C)))
        d_valid = Signal()
        d_meta = Signal(pp_meta)
        d_y = Signal(data.ArrayLayout(signed(cfg.act_bits), C))
        o_raw = Signal()                    # the row at the stream's head is raw
        o_row = Signal(len(raw_bits))       # and its bits (y in the low bits if not raw)
        o_rdy = Signal()                    # a row is at the stream's head
        o_beat = Signal(range(max(2, cfg.raw_beats)))
        o_last = o_beat == Mux(o_raw, cfg.raw_beats - 1, 0)
        o_pop = o_rdy & self.o_ready & o_last
        with m.If(o_rdy & self.o_ready):
            m.d.sync += o_beat.eq(Mux(o_last, 0, o_beat + 1))
        stream_row = pp.to_stream | pp.raw
        if deep:
            out_rows = 1 << (cfg.postproc_latency + 1).bit_length()
            m.submodules.out_fifo = out_fifo = SyncFIFO(width=1 + len(raw_bits), depth=out_rows)
            credits_used = Signal(range(out_rows + 1))     # stream rows issued, not popped
            m.d.sync += credits_used.eq(credits_used + (pp_issue & stream_row) - o_pop)
            m.d.comb += [
                issue_hold.eq(stream_row & (credits_used == out_rows)),
                pipe_hold.eq(0),
                out_fifo.w_en.eq(post.o_valid & post.o_meta.to_stream),
                out_fifo.w_data.eq(Cat(Mux(post.o_meta.raw, raw_bits, y_bits), post.o_meta.raw)),
                Cat(o_row, o_raw).eq(out_fifo.r_data),
                o_rdy.eq(out_fifo.r_rdy),
                out_fifo.r_en.eq(o_pop),
            ]
            m.d.sync += [d_valid.eq(post.o_valid & ~post.o_meta.to_stream),
                         d_meta.eq(post.o_meta), d_y.eq(post.y)]
            out_busy = out_fifo.r_rdy
        else:
            # one row register for both; a stream row in it holds the pipeline
            d_free = ~d_valid | ~d_meta.to_stream | o_pop
            m.d.comb += [issue_hold.eq(pipe_hold), pipe_hold.eq(post.o_valid & ~d_free),
                         o_rdy.eq(d_valid & d_meta.to_stream), o_raw.eq(d_meta.raw)]
            with m.If(d_free):
                m.d.sync += [d_valid.eq(post.o_valid), d_meta.eq(post.o_meta), d_y.eq(post.y),
                             o_row.eq(Mux(post.o_meta.raw, raw_bits, y_bits))]
            out_busy = 0

        m.d.comb += [self.act_we.eq(d_valid & ~d_meta.to_stream),
                     self.hidden_waddr.eq(d_meta.dst_addr - cfg.act_depth)]
        with m.Switch(d_meta.group):
            for g in range(cfg.groups):
                with m.Case(g):
                    for j in range(R):
                        if g * R + j < C:
                            m.d.comb += self.act_wdata[j].eq(d_y[g * R + j])

        m.d.comb += self.o_valid.eq(o_rdy)
        with m.If(o_raw):
            with m.Switch(o_beat):
                for k in range(cfg.raw_beats):
                    with m.Case(k):
                        m.d.comb += self.o_data.eq(o_row[k * cfg.stream_bits:
                                                         (k + 1) * cfg.stream_bits])
        with m.Else():
            m.d.comb += self.o_data.eq(o_row[:len(y_bits)])

        # -- status ----------------------------------------------------------------------
        pipe_empty = (~issue_valid & ~d_valid & ~out_busy & (pp_drain == 0) &
                      (mm_drain == 0))
        m.d.comb += [
            self.idle.eq(~cur_valid & ~self.q_rdy & pipe_empty),
            self.busy.eq(cur_valid | ~pipe_empty),
            self.mac_issue.eq(mm_slot),
            self.out_stall.eq(self.o_valid & ~self.o_ready),
        ]
        return m
