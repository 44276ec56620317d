"""The top level: buffers, front end, engine, and the AXI4-Stream ports."""

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, fifo, memory, wiring
from amaranth.lib.wiring import In, Out

from . import isa
from .engine import Engine
from .frontend import FrontEnd
from .weights import WeightBuffer

__all__ = ["Core"]


class Core(wiring.Component):
    """The int8 systolic matrix-multiply core.

    Members
    -------
    s_axis_tdata, s_axis_tvalid, s_axis_tready, s_axis_tlast
        Program in (AXI4-Stream, ``stream_bytes`` wide).
    m_axis_tdata, m_axis_tvalid, m_axis_tready, m_axis_tlast
        Results and the status packet out; tlast on the status packet's last beat.
    error : Out(isa.ErrorCode)
        The sticky error code of the program in progress.
    """

    def __init__(self, cfg):
        self.cfg = cfg
        super().__init__({
            "s_axis_tdata": In(cfg.stream_bits), "s_axis_tvalid": In(1),
            "s_axis_tready": Out(1), "s_axis_tlast": In(1),
            "m_axis_tdata": Out(cfg.stream_bits), "m_axis_tvalid": Out(1),
            "m_axis_tready": In(1), "m_axis_tlast": Out(1),
            "error": Out(isa.ErrorCode),
        })

    def elaborate(self, platform):
        cfg = self.cfg
        R, C = cfg.rows, cfg.cols
        m = Module()
        m.submodules.frontend = fe = FrontEnd(cfg)
        m.submodules.engine = eng = Engine(cfg)
        m.submodules.queue = queue = fifo.SyncFIFO(width=isa.INSTR_BITS, depth=cfg.queue_depth)
        m.submodules.weights = wbuf = WeightBuffer(cfg)

        word = data.ArrayLayout(signed(cfg.act_bits), R)
        act = memory.Memory(shape=word, depth=cfg.act_depth, init=[])
        hidden = memory.Memory(shape=word, depth=cfg.hidden_depth, init=[])
        acc = memory.Memory(shape=data.ArrayLayout(signed(cfg.acc_bits), C),
                            depth=cfg.acc_depth, init=[])
        bias = memory.Memory(shape=data.ArrayLayout(signed(isa.BIAS_BITS), C),
                             depth=cfg.param_depth, init=[])
        scale = memory.Memory(shape=data.ArrayLayout(isa.SCALE_WORD, C),
                              depth=cfg.param_depth, init=[])
        m.submodules.act_buffer = act
        m.submodules.hidden_buffer = hidden
        m.submodules.acc_buffer = acc
        m.submodules.bias_buffer = bias
        m.submodules.scale_buffer = scale

        # Activations: the input buffer (written by LOAD) and the hidden buffer (written
        # by POSTPROC) share the engine's read address space; each is a simple dual-port
        # memory (one writer, one reader), so it maps to block RAM.
        act_load = act.write_port()
        act_rd = act.read_port()
        hid_pp = hidden.write_port()
        hid_rd = hidden.read_port()
        # Each buffer's output is registered (the block RAM's clock-to-output is slow
        # and the buffers are many RAMs deep), then the selected word once more, like
        # the weights (see WeightBuffer): cfg.mm_write_delay counts these three cycles.
        in_hidden, in_hidden_q = Signal(), Signal()
        act_a, act_h, act_q = Signal(word), Signal(word), Signal(word)
        m.d.sync += [in_hidden.eq(eng.act_raddr >= cfg.act_depth), in_hidden_q.eq(in_hidden),
                     act_a.eq(act_rd.data), act_h.eq(hid_rd.data),
                     act_q.eq(Mux(in_hidden_q, act_h, act_a))]
        m.d.comb += [
            act_load.en.eq(fe.act_we), act_load.addr.eq(fe.act_waddr),
            act_load.data.eq(fe.act_wdata),
            act_rd.addr.eq(eng.act_raddr),
            hid_rd.addr.eq(eng.act_raddr - cfg.act_depth),
            eng.act_rdata.eq(act_q),
            hid_pp.en.eq(eng.act_we), hid_pp.addr.eq(eng.hidden_waddr),
            hid_pp.data.eq(eng.act_wdata),
        ]
        # Accumulators: read-modify-write by MATMUL, read by POSTPROC. With the deep
        # pipeline the engine forwards the writes a read cannot see; without it the read
        # is transparent, so back-to-back updates of one word see each other.
        acc_wr = acc.write_port()
        acc_rd = acc.read_port(transparent_for=() if cfg.deep_pipeline else (acc_wr,))
        m.d.comb += [
            acc_rd.addr.eq(eng.acc_raddr), acc_rd.en.eq(eng.acc_ren),
            eng.acc_rdata.eq(acc_rd.data),
            acc_wr.en.eq(eng.acc_we), acc_wr.addr.eq(eng.acc_waddr), acc_wr.data.eq(eng.acc_wdata),
        ]
        # Parameters: one lane a LOAD beat.
        for mem, we, wdata, dst in ((bias, fe.bias_we, fe.bias_wdata, eng.bias),
                                    (scale, fe.scale_we, fe.scale_wdata, eng.scale)):
            wr = mem.write_port(granularity=1)
            rd = mem.read_port()
            m.d.comb += [wr.addr.eq(fe.param_waddr), rd.addr.eq(eng.param_addr),
                         rd.en.eq(eng.param_ren), dst.eq(rd.data)]
            for c in range(C):
                m.d.comb += [wr.data[c].eq(wdata), wr.en[c].eq(we & (fe.param_lane == c))]
        # Weights.
        m.d.comb += [
            wbuf.write_en.eq(fe.w_we), wbuf.write_tile.eq(fe.w_tile),
            wbuf.write_row.eq(fe.w_row), wbuf.write_data.eq(fe.w_data),
            wbuf.read_tile.eq(eng.read_tile), eng.weights.eq(wbuf.weights),
        ]
        # Queue between front end and engine.
        m.d.comb += [
            queue.w_data.eq(fe.q_data), queue.w_en.eq(fe.q_en), fe.q_rdy.eq(queue.w_rdy),
            eng.q_data.eq(queue.r_data), eng.q_rdy.eq(queue.r_rdy), queue.r_en.eq(eng.q_en),
        ]
        # Front-end status.
        m.d.comb += [
            fe.engine_idle.eq(eng.idle), fe.engine_busy.eq(eng.busy),
            fe.mac_issue.eq(eng.mac_issue), fe.out_stall.eq(eng.out_stall),
            self.error.eq(fe.error),
        ]
        # AXI4-Stream ports. Results and the status packet never overlap: the status
        # packet waits for the engine to be idle.
        m.d.comb += [
            fe.s_data.eq(self.s_axis_tdata), fe.s_valid.eq(self.s_axis_tvalid),
            fe.s_last.eq(self.s_axis_tlast), self.s_axis_tready.eq(fe.s_ready),
            eng.o_ready.eq(self.m_axis_tready), fe.st_ready.eq(self.m_axis_tready),
        ]
        with m.If(fe.st_valid):
            m.d.comb += [self.m_axis_tvalid.eq(1), self.m_axis_tdata.eq(fe.st_data),
                         self.m_axis_tlast.eq(fe.st_last)]
        with m.Else():
            m.d.comb += [self.m_axis_tvalid.eq(eng.o_valid), self.m_axis_tdata.eq(eng.o_data)]
        return m
