"""The post-processing parameters (biases, requantization scales): a memory a lane."""

from amaranth.hdl import Module
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In

from .payloads import ReadPort, WritePort

__all__ = ["ParamBuffer"]


class ParamBuffer(wiring.Component):
    """``param_depth`` words of ``cols`` lanes, each lane a memory of its own.

    A word is written a lane at a time (``LOAD`` of biases or scales) and read whole,
    one POSTPROC row a cycle. Each lane's memory has its own read address, so that the
    read address does not fan out to every lane: on the 16x16 a single address drove
    the 192 LUT-RAM cells of the scales and the 128 of the biases across the die, the
    worst path of the whole core (docs/SYNTHESIS.md). The sequencer holds a copy of the
    address for each lane (:class:`systolic.hw.payloads.PostprocRow`), the front end a
    write address for each lane.

    Members
    -------
    write : In(WritePort(param_depth, row, lanes=cols))
        Lane ``c`` of word ``write.addr[c]`` when ``write.en[c]``.
    read : In(ReadPort(param_depth, row, lanes=cols))
        ``read.data[c]``: lane ``c`` of the word at ``read.addr[c]`` a cycle earlier,
        when ``read.en``.
    """

    def __init__(self, cfg, row):
        self._cfg, self._row = cfg, row
        lanes = cfg.cols
        super().__init__(
            {
                "write": In(WritePort(cfg.param_depth, row, lanes=lanes)),
                "read": In(ReadPort(cfg.param_depth, row, lanes=lanes)),
            }
        )

    def elaborate(self, platform):
        cfg = self._cfg
        m = Module()
        for c in range(cfg.cols):
            lane = memory.Memory(shape=self._row.elem_shape, depth=cfg.param_depth, init=[])
            m.submodules[f"lane{c}"] = lane
            wr, rd = lane.write_port(), lane.read_port()
            m.d.comb += [
                wr.en.eq(self.write.en[c]),
                wr.addr.eq(self.write.addr[c]),
                wr.data.eq(self.write.data[c]),
                rd.en.eq(self.read.en),
                rd.addr.eq(self.read.addr[c]),
                self.read.data[c].eq(rd.data),
            ]
        return m
