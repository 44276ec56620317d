"""The top level: buffers, front end, engine, and the AXI4-Stream ports."""

from amaranth.hdl import Module
from amaranth.lib import fifo, wiring
from amaranth.lib.wiring import In, Out

from . import isa
from .activations import ActivationBuffer
from .engine import Engine
from .frontend import FrontEnd
from .params import ParamBuffer
from .payloads import QUEUED, bias_row, scale_row
from .weights import WeightBuffer

__all__ = ["Core"]


class Core(wiring.Component):
    """The int8 systolic matrix-multiply core.

    ::

        s_axis -> FrontEnd -- o_instr --> queue --> Engine -- o_result --+--> m_axis
                  |  |  |  `-- o_status ------------------------------- '
                  |  |  `- bias/scale_write -> bias, scale <- bias/scale_read -'
                  |  `---- weight_write ----> WeightBuffer <- weight_read -----'
                  `------- act_write -----> ActivationBuffer <- act_read, hidden_write,
                                                                pool_read

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
        super().__init__(
            {
                "s_axis_tdata": In(cfg.stream_bits),
                "s_axis_tvalid": In(1),
                "s_axis_tready": Out(1),
                "s_axis_tlast": In(1),
                "m_axis_tdata": Out(cfg.stream_bits),
                "m_axis_tvalid": Out(1),
                "m_axis_tready": In(1),
                "m_axis_tlast": Out(1),
                "error": Out(isa.ErrorCode),
            }
        )

    def elaborate(self, platform):
        cfg = self.cfg
        m = Module()
        m.submodules.frontend = fe = FrontEnd(cfg)
        m.submodules.queue = queue = fifo.SyncFIFO(width=QUEUED.size, depth=cfg.queue_depth)
        m.submodules.engine = eng = Engine(cfg)
        m.submodules.activations = acts = ActivationBuffer(cfg)
        m.submodules.weights = wbuf = WeightBuffer(cfg)
        m.submodules.bias_buffer = bias = ParamBuffer(cfg, bias_row(cfg))
        m.submodules.scale_buffer = scale = ParamBuffer(cfg, scale_row(cfg))

        # front end -> queue -> engine; the engine's state back to the front end
        wiring.connect(m, fe.o_instr, queue.w_stream)
        wiring.connect(m, queue.r_stream, eng.i_instr)
        wiring.connect(m, eng.state, fe.engine)
        # buffers: LOAD writes them, the engine reads them (and writes the hidden buffer)
        wiring.connect(m, fe.act_write, acts.load)
        wiring.connect(m, eng.hidden_write, acts.hidden)
        wiring.connect(m, eng.pool_read, acts.pool)
        wiring.connect(m, eng.act_read, acts.read)
        wiring.connect(m, fe.weight_write, wbuf.write)
        wiring.connect(m, eng.weight_read, wbuf.read)
        for mem, write, read in (
            (bias, fe.bias_write, eng.bias_read),
            (scale, fe.scale_write, eng.scale_read),
        ):
            wiring.connect(m, write, mem.write)
            wiring.connect(m, read, mem.read)

        # AXI4-Stream ports. Results and the status packet never overlap: the status
        # packet waits for the engine to be idle.
        program, result, status = fe.i_program, eng.o_result, fe.o_status
        m.d.comb += [
            program.payload.data.eq(self.s_axis_tdata),
            program.payload.last.eq(self.s_axis_tlast),
            program.valid.eq(self.s_axis_tvalid),
            self.s_axis_tready.eq(program.ready),
            result.ready.eq(self.m_axis_tready),
            status.ready.eq(self.m_axis_tready),
            self.error.eq(fe.error),
        ]
        with m.If(status.valid):
            m.d.comb += [
                self.m_axis_tvalid.eq(1),
                self.m_axis_tdata.eq(status.payload.word),
                self.m_axis_tlast.eq(status.payload.last),
            ]
        with m.Else():
            m.d.comb += [
                self.m_axis_tvalid.eq(result.valid),
                self.m_axis_tdata.eq(result.payload.data),
            ]
        return m
