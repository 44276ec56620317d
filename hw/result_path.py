"""The POSTPROC result path: issue, post-processing, and the way out of the engine."""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from . import isa
from .fanout import kept, lane_groups
from .payloads import (
    PostprocRow,
    ReadPort,
    ResultBeat,
    WritePort,
    acc_row,
    act_word,
    bias_row,
    scale_row,
)
from .postproc import PostProcessor

__all__ = ["ResultPath", "result_fifo_rows"]


def result_fifo_rows(cfg):
    """Rows of the result FIFO (deep pipeline): a power of two above every row that can
    be in flight between issue and the FIFO (``postproc_latency``)."""
    return 1 << (cfg.postproc_latency + 1).bit_length()


class _RowMeta(data.StructLayout):
    """What travels with a row through post-processing."""

    def __init__(self, cfg):
        super().__init__(
            {
                "dst_addr": range(cfg.act_space),
                "group": isa.GROUP_BITS,
                "to_stream": 1,
                "raw": 1,
                "pool": 1,
            }
        )


class _ResultRow(data.StructLayout):
    """A row for the stream: ``cols`` int32 lanes if ``raw``, else ``cols`` int8 lanes in
    the low bits."""

    def __init__(self, cfg):
        super().__init__({"bits": cfg.cols * isa.BIAS_BITS, "raw": 1})


class ResultPath(wiring.Component):
    """Issues POSTPROC rows into post-processing and sends each result to the hidden
    buffer (one ``rows``-wide slice, ``group``) or the result stream (one beat a row, or
    ``raw_beats`` beats of int32 lanes).

    A row is issued by reading its accumulator word (through the accumulator's port)
    and its parameter word; the row enters :class:`systolic.hw.postproc.PostProcessor` a cycle
    later, beside the read data. Result rows meet the stream's backpressure in one of
    two ways. With ``cfg.deep_pipeline``, rows for the stream go into a row FIFO
    (:func:`result_fifo_rows`) and a POSTPROC row for the stream is issued only while
    the FIFO has room for every such row in flight (a credit count), so the
    post-processing pipeline and the accumulator read never stall and the stream's
    ``ready`` drives no more than the FIFO's read side. Without it (no FIFO, for small
    FPGAs) a row waiting at the output holds the whole pipeline (:attr:`hold`). With
    the output ready the two behave the same, cycle for cycle.

    A row for the hidden buffer with ``pool`` writes the lane-wise maximum of its slice
    and the word already there, read (:attr:`pool_read`) as the row leaves
    post-processing. Without the deep pipeline the read is transparent for the hidden
    write port and the write follows in the next cycle, so that it sees the write of
    the row before, even to the same word; while the pipeline is held the read repeats.
    With it, the word read is registered first (the block RAM's clock-to-output is
    slow) and the write is a cycle later (``postproc_latency`` counts it): the two
    writes the read cannot see, those of the two cycles before the write, are
    forwarded from registers, decided a cycle ahead, as in the accumulator.

    Members
    -------
    i_pp : In(stream.Signature(PostprocRow))
        POSTPROC rows; ``ready`` is low while a row for the stream could not be taken.
    acc_read : Out(stream.Signature(range(acc_depth), always_ready=True))
        The accumulator read of the row issued this cycle; ``acc_data`` has the word a
        cycle later.
    bias_read, scale_read : Out(ReadPort)
        The parameter reads of the row issued this cycle.
    hold : Out(1)
        Post-processing and its reads stand still (only without the deep pipeline).
    hidden_write : Out(WritePort(hidden_depth, act_word))
        Rows for the next layer.
    pool_read : Out(ReadPort(hidden_depth, act_word))
        The hidden-buffer word a pooling row meets: ``data`` is the word at ``addr`` a
        cycle later (without the deep pipeline the write in that cycle included).
    o_result : Out(stream.Signature(ResultBeat))
        Rows for the stream.
    empty : Out(1)
        No row is issued, in post-processing, or waiting to leave.
    """

    def __init__(self, cfg):
        self._cfg = cfg
        super().__init__(
            {
                "i_pp": In(stream.Signature(PostprocRow(cfg))),
                "acc_read": Out(stream.Signature(range(cfg.acc_depth), always_ready=True)),
                "acc_data": In(acc_row(cfg)),
                "bias_read": Out(ReadPort(cfg.param_depth, bias_row(cfg), lanes=cfg.cols)),
                "scale_read": Out(ReadPort(cfg.param_depth, scale_row(cfg), lanes=cfg.cols)),
                "hold": Out(1),
                "hidden_write": Out(WritePort(cfg.hidden_depth, act_word(cfg))),
                "pool_read": Out(ReadPort(cfg.hidden_depth, act_word(cfg), en=False)),
                "o_result": Out(stream.Signature(ResultBeat(cfg))),
                "empty": Out(1),
            }
        )

    def elaborate(self, platform):
        cfg = self._cfg
        m = Module()
        m.submodules.post = post = PostProcessor(cfg, _RowMeta(cfg))
        issue = self.i_pp.valid & self.i_pp.ready
        issue_valid = self._issue(m, post)
        # a row for the hidden buffer, one cycle after post-processing
        d_valid, d_meta = Signal(), Signal(_RowMeta(cfg), reset_less=True)
        d_y = Signal(post.y.shape(), reset_less=True)
        rows = stream.Signature(_ResultRow(cfg)).create()  # rows for the stream
        pop = self._serialize(m, rows)
        row_bits = Mux(post.o_meta.raw, post.raw.as_value(), post.y.as_value())
        if cfg.deep_pipeline:
            out_busy = self._row_fifo(m, post, row_bits, rows, issue, pop)
            m.d.sync += [
                d_valid.eq(post.o_valid & ~post.o_meta.to_stream),
                d_meta.eq(post.o_meta),
                d_y.eq(post.y),
            ]
        else:
            out_busy = self._row_register(m, post, row_bits, rows, pop, d_valid, d_meta, d_y)
        m.d.comb += self.pool_read.addr.eq(post.o_meta.dst_addr - cfg.act_depth)
        if cfg.deep_pipeline:
            e_valid = self._pooled_write(m, d_valid, d_meta, d_y)
        else:
            e_valid = 0
            new = self._group(m, d_meta, d_y)
            self._to_hidden(m, d_valid, d_meta, new, self.pool_read.data)
        m.d.comb += self.empty.eq(~issue_valid & ~d_valid & ~e_valid & ~out_busy)
        return m

    def _pooled_write(self, m, d_valid, d_meta, d_y):
        """Deep pipeline: stage E after D, where the pooling read's word (registered in
        D) meets the row's slice (selected in D) and the hidden write happens. The word
        read in D does not include the writes at the end of the two cycles before E;
        those are kept (``prev1``, ``prev2``) and taken instead when their address is
        the row's, which is decided in D, a copy of that choice every
        :data:`~systolic.hw.fanout.LANES_PER_COPY` lanes. Returns E's valid flag.

        Selected in E, the slice stood before the maximum's comparison (from E's group
        field: the 8x8's worst path, 11.81 ns), and one flag register chose the
        forwarded word of every lane (the 16x16's, 14.97 ns, 6.55 of them that flag's
        route)."""
        cfg, w = self._cfg, self.hidden_write
        word = w.data.shape()
        e_valid = Signal()
        e_meta = Signal.like(d_meta, reset_less=True)
        e_new = Signal(word, reset_less=True)
        old_q, prev1, prev2 = (Signal(word, reset_less=True) for _ in range(3))
        prev1_valid, prev1_addr = Signal(), Signal.like(w.addr, reset_less=True)
        groups = lane_groups(cfg.rows)
        fwd1 = [kept(1, f"pool_fwd1_lanes{g}") for g in range(len(groups))]
        fwd2 = [kept(1, f"pool_fwd2_lanes{g}") for g in range(len(groups))]
        d_addr = d_meta.dst_addr - cfg.act_depth
        m.d.sync += [
            e_valid.eq(d_valid),
            e_meta.eq(d_meta),
            e_new.eq(self._group(m, d_meta, d_y)),
            old_q.eq(self.pool_read.data),
            prev1.eq(w.data),
            prev1_valid.eq(w.en),
            prev1_addr.eq(w.addr),
            prev2.eq(prev1),
            # decided in D: the write now (E) is prev1 in the next cycle, prev1 is prev2
            *(f.eq(w.en & (w.addr == d_addr)) for f in fwd1),
            *(f.eq(prev1_valid & (prev1_addr == d_addr)) for f in fwd2),
        ]
        old = Signal(word)
        for g, lanes in enumerate(groups):
            for j in lanes:
                m.d.comb += old[j].eq(Mux(fwd1[g], prev1[j], Mux(fwd2[g], prev2[j], old_q[j])))
        self._to_hidden(m, e_valid, e_meta, e_new, old)
        return e_valid

    def _issue(self, m, post):
        """The reads of the row issued now; the issue register beside their data."""
        pp, hold = self.i_pp.payload, self.hold
        issue_valid, issue_meta = Signal(), Signal(_RowMeta(self._cfg), reset_less=True)
        m.d.comb += [
            self.acc_read.valid.eq(self.i_pp.valid & self.i_pp.ready),
            self.acc_read.payload.eq(pp.acc_addr),
        ]
        for port in (self.bias_read, self.scale_read):
            m.d.comb += [port.addr.eq(pp.param_addr), port.en.eq(~hold)]
        with m.If(~hold):
            m.d.sync += [
                issue_valid.eq(self.acc_read.valid),
                issue_meta.dst_addr.eq(pp.dst_addr),
                issue_meta.group.eq(pp.group),
                issue_meta.to_stream.eq(pp.to_stream),
                issue_meta.raw.eq(pp.raw),
                issue_meta.pool.eq(pp.pool),
            ]
        m.d.comb += [
            post.en.eq(~hold),
            post.i_valid.eq(issue_valid),
            post.i_meta.eq(issue_meta),
            post.acc.eq(self.acc_data),
            post.bias.eq(self.bias_read.data),
            post.scale.eq(self.scale_read.data),
        ]
        return issue_valid

    def _row_fifo(self, m, post, row_bits, rows, issue, pop):
        """Deep pipeline: stream rows through a FIFO, issued against credits."""
        depth = result_fifo_rows(self._cfg)
        m.submodules.out_fifo = fifo = SyncFIFO(width=_ResultRow(self._cfg).size, depth=depth)
        credits_used = Signal(range(depth + 1))  # stream rows issued, not popped
        credits_next = Signal.like(credits_used)
        full = Signal()  # credits_used == depth, kept in a register for the issue logic
        m.d.comb += credits_next.eq(credits_used + (issue & self.i_pp.payload.to_stream) - pop)
        m.d.sync += [credits_used.eq(credits_next), full.eq(credits_next == depth)]
        m.d.comb += [
            self.i_pp.ready.eq(~(self.i_pp.payload.to_stream & full)),
            self.hold.eq(0),
        ]
        row_in = fifo.w_stream
        m.d.comb += [
            row_in.valid.eq(post.o_valid & post.o_meta.to_stream),
            row_in.payload.eq(Cat(row_bits, post.o_meta.raw)),
        ]
        wiring.connect(m, fifo.r_stream, wiring.flipped(rows))
        return fifo.r_rdy

    def _row_register(self, m, post, row_bits, rows, pop, d_valid, d_meta, d_y):
        """Shallow: one row register for both ways out; a stream row in it holds the
        pipeline."""
        bits = Signal.like(rows.payload.bits)
        free = ~d_valid | ~d_meta.to_stream | pop
        m.d.comb += [
            self.hold.eq(post.o_valid & ~free),
            self.i_pp.ready.eq(~self.hold),
            rows.valid.eq(d_valid & d_meta.to_stream),
            rows.payload.raw.eq(d_meta.raw),
            rows.payload.bits.eq(bits),
        ]
        with m.If(free):
            m.d.sync += [
                d_valid.eq(post.o_valid),
                d_meta.eq(post.o_meta),
                d_y.eq(post.y),
                bits.eq(row_bits),
            ]
        return 0

    def _group(self, m, meta, y):
        """Slice ``group`` of row ``y``: lanes ``group * rows ..`` (0 past ``cols``)."""
        R, C = self._cfg.rows, self._cfg.cols
        new = Signal.like(self.hidden_write.data)
        with m.Switch(meta.group):
            for g in range(self._cfg.groups):
                with m.Case(g):
                    m.d.comb += [new[j].eq(y[g * R + j]) for j in range(R) if g * R + j < C]
        return new

    def _to_hidden(self, m, valid, meta, new, old):
        """The hidden write of slice ``new`` (:meth:`_group`) of a row, or with ``pool``
        its lane-wise maximum with ``old``, the word there."""
        w = self.hidden_write
        m.d.comb += [
            w.en.eq(valid & ~meta.to_stream),
            w.addr.eq(meta.dst_addr - self._cfg.act_depth),
        ]
        for j in range(self._cfg.rows):
            m.d.comb += w.data[j].eq(Mux(meta.pool & (old[j] > new[j]), old[j], new[j]))

    def _serialize(self, m, rows):
        """Rows onto the result stream: one beat, or ``raw_beats`` for a raw row. Returns
        whether the row at the head leaves in this cycle."""
        cfg, out = self._cfg, self.o_result
        beat = Signal(range(max(2, cfg.raw_beats)))
        last = beat == Mux(rows.payload.raw, cfg.raw_beats - 1, 0)
        with m.If(rows.valid & out.ready):
            m.d.sync += beat.eq(Mux(last, 0, beat + 1))
        m.d.comb += [rows.ready.eq(out.ready & last), out.valid.eq(rows.valid)]
        bits, width = rows.payload.bits, cfg.stream_bits
        with m.If(rows.payload.raw), m.Switch(beat):
            for k in range(cfg.raw_beats):
                with m.Case(k):
                    m.d.comb += out.payload.data.eq(bits[k * width : (k + 1) * width])
        with m.Else():
            m.d.comb += out.payload.data.eq(bits[: cfg.cols * cfg.act_bits])
        return rows.valid & rows.ready
