"""The execute engine: runs queued MATMUL and POSTPROC instructions."""

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .accumulator import Accumulator
from .array import SystolicArray, array_output_delay
from .payloads import (
    QUEUED,
    EngineState,
    ReadPort,
    ResultBeat,
    WritePort,
    act_word,
    bias_row,
    scale_row,
    weight_tile,
)
from .result_path import ResultPath
from .sequencer import Sequencer

__all__ = ["Engine"]


class Engine(wiring.Component):
    """Pops instructions from the queue and issues one row per cycle.

    ::

        i_instr -> Sequencer -- MATMUL rows --> act_read, weight_read -> SystolicArray
                       |                                                    | sum
                       |                              (acc_addr, accumulate)v
                       |  ----------------------------------------> Accumulator
                       |                                                    | read_data
                       +-- POSTPROC rows -> ResultPath <--------------------+
                                           (bias_read, scale_read, pool_read,
                                            PostProcessor)  -> hidden_write, o_result

    MATMUL row ``i`` reads activation word ``act_addr + i`` (or the word its address
    pattern gives, see :class:`systolic.hw.sequencer.Sequencer`), selects ``weight_tile``
    (``weight_tile + i`` with ``tile_step``) and, ``mm_write_delay`` cycles later, adds
    the array's result row into (or writes it over) accumulator word ``acc_addr + i``
    (:class:`systolic.hw.accumulator.Accumulator`).
    POSTPROC row ``i`` reads accumulator word ``acc_addr + i`` and parameter word
    ``param_addr`` and, ``postproc_latency - 1`` cycles later, writes the requantized
    row to the hidden buffer (``pool``: its maximum with the word there, read through
    ``pool_read`` a cycle before) or sends it on the result stream
    (:class:`systolic.hw.result_path.ResultPath`). :class:`systolic.hw.sequencer.Sequencer`
    issues the rows
    and keeps the two kinds apart.

    Members
    -------
    i_instr : In(stream.Signature(QUEUED))
        The queue: instructions with their address patterns.
    act_read, weight_read, bias_read, scale_read : Out(ReadPort)
        Reads of the activation address space, the weight tiles and the parameters.
    hidden_write : Out(WritePort)
        POSTPROC rows for the next layer.
    pool_read : Out(ReadPort)
        The hidden-buffer word a pooling POSTPROC row meets.
    o_result : Out(stream.Signature(ResultBeat))
        Result rows for the stream.
    state : Out(EngineState)
        For the front end: idle, busy, a MATMUL row issued, the output stalled.
    """

    def __init__(self, cfg):
        self._cfg = cfg
        super().__init__(
            {
                "i_instr": In(stream.Signature(QUEUED)),
                "act_read": Out(ReadPort(cfg.act_space, act_word(cfg), en=False)),
                "weight_read": Out(ReadPort(cfg.weight_depth, weight_tile(cfg), en=False)),
                "bias_read": Out(ReadPort(cfg.param_depth, bias_row(cfg), lanes=cfg.cols)),
                "scale_read": Out(ReadPort(cfg.param_depth, scale_row(cfg), lanes=cfg.cols)),
                "hidden_write": Out(WritePort(cfg.hidden_depth, act_word(cfg))),
                "pool_read": Out(ReadPort(cfg.hidden_depth, act_word(cfg), en=False)),
                "o_result": Out(stream.Signature(ResultBeat(cfg))),
                "state": Out(EngineState()),
            }
        )

    def elaborate(self, platform):
        cfg = self._cfg
        m = Module()
        m.submodules.sequencer = seq = Sequencer(cfg)
        m.submodules.array = array = SystolicArray(cfg)
        m.submodules.accumulator = acc = Accumulator(cfg)
        m.submodules.result_path = result = ResultPath(cfg)
        wiring.connect(m, wiring.flipped(self.i_instr), seq.i_instr)

        # MATMUL: the weights are read one cycle after the activations, which take one
        # cycle longer (see hw/activations.py); the accumulator meets the array's sum
        assert cfg.mm_write_delay == 3 + array_output_delay(cfg)
        tile = Signal.like(seq.o_mm.payload.weight_tile, reset_less=True)
        m.d.sync += tile.eq(seq.o_mm.payload.weight_tile)
        m.d.comb += [
            self.act_read.addr.eq(seq.o_mm.payload.act_addr),
            self.weight_read.addr.eq(tile),
            array.act.eq(self.act_read.data),
            array.weights.eq(self.weight_read.data),
            acc.sum.eq(array.result),
        ]
        wiring.connect(m, seq.o_mm, acc.i_mm)

        # POSTPROC: through the accumulator's read port and the parameter buffers
        wiring.connect(m, seq.o_pp, result.i_pp)
        m.d.comb += [
            acc.pp_mode.eq(seq.pp_mode),
            acc.pp_addr.eq(result.acc_read.payload),
            result.acc_data.eq(acc.read_data),
            acc.hold.eq(result.hold),
            seq.pp_hold.eq(result.hold),
        ]
        for port in ("bias_read", "scale_read", "hidden_write", "pool_read", "o_result"):
            wiring.connect(m, getattr(result, port), wiring.flipped(getattr(self, port)))

        busy = ~result.empty | ~seq.drained
        m.d.comb += [
            self.state.idle.eq(~seq.active & ~self.i_instr.valid & ~busy),
            self.state.busy.eq(seq.active | busy),
            self.state.mac_issue.eq(seq.o_mm.valid),
            self.state.out_stall.eq(self.o_result.valid & ~self.o_result.ready),
        ]
        return m
