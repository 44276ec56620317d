"""The instruction front end: decodes the program stream, loads buffers, reports status."""

from amaranth.hdl import Assert, Cat, Module, Mux, Signal, signed
from amaranth.lib import data, enum, fifo, wiring
from amaranth.lib.wiring import In, Out

from . import isa
from .isa import ErrorCode, Opcode, Target

__all__ = ["FrontEnd"]

COUNTER_BITS = 32
#: Program beats the input buffer holds (deep pipeline): the least that passes a beat
#: every cycle.
IN_BUFFER_DEPTH = 3


class _State(enum.Enum, shape=2):
    RUN = 0      #: decode the next instruction
    DATA = 1     #: LOAD data beats
    DRAIN = 2    #: after an error: discard beats up to tlast
    STATUS = 3   #: wait for the engine, then send the status packet


class FrontEnd(wiring.Component):
    """Takes one program beat per cycle.

    Validates every instruction before it has any effect (see :class:`isa.ErrorCode`),
    writes LOAD data into the buffers, queues MATMUL and POSTPROC for the engine,
    holds SYNC and END until the engine is idle, and after END (or an error and the
    stream's tlast) sends the status packet: the error code and the counters, one
    32-bit word a beat in :data:`isa.STATUS_FIELDS` order. The error code is sticky
    until the packet has been sent; counters restart with the next program.
    """

    def __init__(self, cfg):
        self._cfg = cfg
        R, C = cfg.rows, cfg.cols
        super().__init__({
            "s_data": In(cfg.stream_bits), "s_valid": In(1), "s_last": In(1), "s_ready": Out(1),
            "q_data": Out(isa.INSTR_BITS), "q_en": Out(1), "q_rdy": In(1),
            "act_we": Out(1), "act_waddr": Out(range(cfg.act_depth)),
            "act_wdata": Out(data.ArrayLayout(signed(cfg.act_bits), R)),
            "w_we": Out(1), "w_tile": Out(range(cfg.weight_depth)), "w_row": Out(range(R)),
            "w_data": Out(data.ArrayLayout(signed(cfg.weight_bits), C)),
            "param_waddr": Out(range(cfg.param_depth)), "param_lane": Out(range(C)),
            "bias_we": Out(1), "bias_wdata": Out(signed(isa.BIAS_BITS)),
            "scale_we": Out(1), "scale_wdata": Out(isa.SCALE_WORD),
            "st_valid": Out(1), "st_data": Out(COUNTER_BITS), "st_last": Out(1), "st_ready": In(1),
            "engine_idle": In(1), "engine_busy": In(1), "mac_issue": In(1), "out_stall": In(1),
            "error": Out(ErrorCode),
        })

    def _check(self, m, beat, last):
        """The error code of the instruction in ``beat`` (NONE if it is valid); ``last`` is
        the beat's tlast (``END`` must carry it: a frame is exactly one program)."""
        cfg = self._cfg
        ld, mm, pp = (data.View(layout, beat[:layout.size]) for layout in (isa.LOAD, isa.MATMUL, isa.POSTPROC))
        err = Signal(ErrorCode)
        with m.Switch(ld.op):
            with m.Case(Opcode.LOAD):
                with m.If(ld.count == 0):
                    m.d.comb += err.eq(ErrorCode.ZERO_LENGTH)
                with m.Elif((ld.target == Target.ACT) & (ld.addr + ld.count > cfg.act_depth)):
                    m.d.comb += err.eq(ErrorCode.ACT_RANGE)
                with m.Elif((ld.target == Target.WEIGHT) &
                            (ld.addr * cfg.rows + ld.count > cfg.weight_depth * cfg.rows)):
                    m.d.comb += err.eq(ErrorCode.WEIGHT_RANGE)
                with m.Elif(((ld.target == Target.BIAS) | (ld.target == Target.SCALE)) &
                            (ld.addr * cfg.cols + ld.count > cfg.param_depth * cfg.cols)):
                    m.d.comb += err.eq(ErrorCode.PARAM_RANGE)
            with m.Case(Opcode.MATMUL):
                with m.If(mm.m == 0):
                    m.d.comb += err.eq(ErrorCode.ZERO_LENGTH)
                with m.Elif(mm.act_addr + mm.m > cfg.act_space):
                    m.d.comb += err.eq(ErrorCode.ACT_RANGE)
                with m.Elif(mm.weight_tile >= cfg.weight_depth):
                    m.d.comb += err.eq(ErrorCode.WEIGHT_RANGE)
                with m.Elif(mm.acc_addr + mm.m > cfg.acc_depth):
                    m.d.comb += err.eq(ErrorCode.ACC_RANGE)
            with m.Case(Opcode.POSTPROC):
                with m.If(pp.m == 0):
                    m.d.comb += err.eq(ErrorCode.ZERO_LENGTH)
                with m.Elif(pp.acc_addr + pp.m > cfg.acc_depth):
                    m.d.comb += err.eq(ErrorCode.ACC_RANGE)
                with m.Elif(pp.param_addr >= cfg.param_depth):
                    m.d.comb += err.eq(ErrorCode.PARAM_RANGE)
                with m.Elif((pp.group >= cfg.groups) | (pp.raw & ~pp.to_stream)):
                    m.d.comb += err.eq(ErrorCode.BAD_GROUP)
                with m.Elif(~pp.to_stream & ~pp.raw & ((pp.dst_addr < cfg.act_depth) |
                                                       (pp.dst_addr + pp.m > cfg.act_space))):
                    m.d.comb += err.eq(ErrorCode.ACT_RANGE)
            with m.Case(Opcode.END):
                with m.If(~last):
                    m.d.comb += err.eq(ErrorCode.END_NOT_LAST)
            with m.Case(Opcode.SYNC):
                pass
            with m.Default():
                m.d.comb += err.eq(ErrorCode.BAD_OPCODE)
        return err

    def elaborate(self, platform):
        cfg = self._cfg
        m = Module()
        state = Signal(_State)
        started = Signal()
        error = Signal(ErrorCode)
        m.d.comb += self.error.eq(error)

        # With the deep pipeline, the program stream enters through a small buffer
        # (IN_BUFFER_DEPTH beats) that also holds each beat's check result, computed as
        # the beat arrives, so neither the check nor the port's tready sits on a path
        # with the decisions below. Timing is counted from the buffer's output: a
        # program's cycles are the same with it or without it.
        err = Signal(ErrorCode)
        s_ready = Signal()
        if cfg.deep_pipeline:
            m.submodules.in_buffer = inbuf = fifo.SyncFIFOBuffered(
                width=cfg.stream_bits + 1 + ErrorCode.as_shape().width, depth=IN_BUFFER_DEPTH)
            in_err = self._check(m, self.s_data[:isa.INSTR_BITS], self.s_last)
            m.d.comb += [inbuf.w_data.eq(Cat(self.s_data, self.s_last, in_err)),
                         inbuf.w_en.eq(self.s_valid), self.s_ready.eq(inbuf.w_rdy),
                         inbuf.r_en.eq(s_ready)]
            s_data = inbuf.r_data[:cfg.stream_bits]
            s_last = inbuf.r_data[cfg.stream_bits]
            m.d.comb += err.eq(inbuf.r_data[cfg.stream_bits + 1:])
            s_valid = inbuf.r_rdy
        else:
            s_data, s_last, s_valid = self.s_data, self.s_last, self.s_valid
            m.d.comb += [err.eq(self._check(m, s_data[:isa.INSTR_BITS], s_last)),
                         self.s_ready.eq(s_ready)]

        beat = s_data[:isa.INSTR_BITS]
        ld = data.View(isa.LOAD, beat[:isa.LOAD.size])
        op = ld.op
        fire = s_valid & s_ready

        # LOAD state: where the next data beat goes.
        ld_target = Signal(Target)
        ld_addr = Signal(isa.COUNT_BITS)
        ld_sub = Signal(range(max(cfg.rows, cfg.cols)))
        ld_left = Signal(isa.COUNT_BITS)
        sub_wrap = Mux(ld_target == Target.WEIGHT, cfg.rows - 1, cfg.cols - 1)

        def set_error(code):
            with m.If(error == ErrorCode.NONE):
                m.d.sync += error.eq(code)

        with m.Switch(state):
            with m.Case(_State.RUN):
                reject = (err != ErrorCode.NONE) | (s_last & (op != Opcode.END))
                with m.If(reject):
                    m.d.comb += s_ready.eq(1)
                with m.Elif((op == Opcode.MATMUL) | (op == Opcode.POSTPROC)):
                    m.d.comb += [s_ready.eq(self.q_rdy), self.q_en.eq(s_valid & self.q_rdy)]
                with m.Elif((op == Opcode.SYNC) | (op == Opcode.END)):
                    m.d.comb += s_ready.eq(self.engine_idle)
                with m.Else():
                    m.d.comb += s_ready.eq(1)
                with m.If(fire):
                    with m.If(reject):
                        set_error(Mux(err != ErrorCode.NONE, err, ErrorCode.NO_END))
                        m.d.sync += state.eq(Mux(s_last, _State.STATUS, _State.DRAIN))
                    with m.Elif(op == Opcode.LOAD):
                        m.d.sync += [state.eq(_State.DATA), ld_target.eq(ld.target),
                                     ld_addr.eq(ld.addr), ld_sub.eq(0), ld_left.eq(ld.count)]
                    with m.Elif(op == Opcode.END):
                        m.d.sync += state.eq(_State.STATUS)
            with m.Case(_State.DATA):
                m.d.comb += s_ready.eq(1)
                with m.If(fire):
                    m.d.sync += ld_left.eq(ld_left - 1)
                    with m.If(ld_target == Target.ACT):
                        m.d.sync += ld_addr.eq(ld_addr + 1)
                    with m.Elif(ld_sub == sub_wrap):
                        m.d.sync += [ld_sub.eq(0), ld_addr.eq(ld_addr + 1)]
                    with m.Else():
                        m.d.sync += ld_sub.eq(ld_sub + 1)
                    with m.If(s_last):
                        set_error(ErrorCode.NO_END)
                        m.d.sync += state.eq(_State.STATUS)
                    with m.Elif(ld_left == 1):
                        m.d.sync += state.eq(_State.RUN)
            with m.Case(_State.DRAIN):
                m.d.comb += s_ready.eq(1)
                with m.If(fire & s_last):
                    m.d.sync += state.eq(_State.STATUS)

        # Buffer writes from LOAD data beats (the range was checked on the header).
        writing = (state == _State.DATA) & fire
        m.d.comb += [
            self.q_data.eq(beat),
            self.act_we.eq(writing & (ld_target == Target.ACT)),
            self.act_waddr.eq(ld_addr),
            self.act_wdata.eq(s_data[:cfg.rows * 8]),
            self.w_we.eq(writing & (ld_target == Target.WEIGHT)),
            self.w_tile.eq(ld_addr), self.w_row.eq(ld_sub),
            self.w_data.eq(s_data[:cfg.cols * 8]),
            self.param_waddr.eq(ld_addr), self.param_lane.eq(ld_sub),
            self.bias_we.eq(writing & (ld_target == Target.BIAS)),
            self.bias_wdata.eq(s_data[:isa.BIAS_BITS]),
            self.scale_we.eq(writing & (ld_target == Target.SCALE)),
            self.scale_wdata.eq(s_data[:isa.SCALE_WORD.size]),
        ]

        # Counters, from the first beat of a program through the cycle END is taken.
        counters = {name: Signal(COUNTER_BITS, name=name) for name in isa.STATUS_FIELDS[1:]}
        active = (started | fire) & (state != _State.STATUS)
        with m.If(fire):
            m.d.sync += started.eq(1)
        with m.If(active):
            m.d.sync += [
                counters["cycles"].eq(counters["cycles"] + 1),
                counters["busy_cycles"].eq(counters["busy_cycles"] + self.engine_busy),
                counters["mac_cycles"].eq(counters["mac_cycles"] + self.mac_issue),
                counters["stall_in_cycles"].eq(counters["stall_in_cycles"] + ~s_valid),
                counters["stall_out_cycles"].eq(counters["stall_out_cycles"] + self.out_stall),
            ]

        # Status packet.
        st_idx = Signal(range(len(isa.STATUS_FIELDS)))
        words = [error.as_value()] + list(counters.values())
        with m.If(state == _State.STATUS):
            m.d.comb += self.st_valid.eq(self.engine_idle)
        with m.Switch(st_idx):
            for i, word in enumerate(words):
                with m.Case(i):
                    m.d.comb += self.st_data.eq(word)
        m.d.comb += self.st_last.eq(st_idx == len(words) - 1)
        with m.If(self.st_valid & self.st_ready):
            m.d.sync += st_idx.eq(st_idx + 1)
            with m.If(self.st_last):
                m.d.sync += [st_idx.eq(0), state.eq(_State.RUN), started.eq(0),
                             error.eq(ErrorCode.NONE)]
                m.d.sync += [counter.eq(0) for counter in counters.values()]

        if platform == "formal":
            # An invariant the k-induction proofs (sim/formal.py) need and cannot find by
            # themselves: an error is held only while the rest of its frame is discarded
            # or its status packet waits, never while a frame is decoded or loaded.
            m.d.comb += Assert((error == ErrorCode.NONE) | (state == _State.DRAIN) |
                               (state == _State.STATUS), "error only in DRAIN or STATUS")
        return m
