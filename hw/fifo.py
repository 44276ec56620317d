"""A first-word-fall-through FIFO whose head is a register."""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["RegisteredHeadFIFO"]


class RegisteredHeadFIFO(wiring.Component):
    """Cycle for cycle an :class:`amaranth.lib.fifo.SyncFIFO` of the same depth (a word
    written in one cycle is at the head in the next; ``w_stream.ready`` is ``level !=
    depth``, also while a word is read), but the head word is a register, not the
    asynchronous read of the storage (LUT RAM on an FPGA): what reads the head sees a
    flip-flop's output, and the storage's read goes into the head register only.

    A word written while the FIFO is empty, or while its one word is read, goes
    straight into the head register; every other word into the storage (``depth - 1``
    words), from which the head register loads as the head is read.

    Members
    -------
    w_stream : In(stream.Signature(width))
    r_stream : Out(stream.Signature(width))
    level : Out(range(depth + 1))
        Words held, the head included.
    """

    def __init__(self, *, width: int, depth: int):
        if depth < 2:
            self._MustUse__silence = True  # not elaborated: no warning that it was not
            raise ValueError(f"depth must be at least 2, not {depth}")
        self._width, self._depth = width, depth
        super().__init__(
            {
                "w_stream": In(stream.Signature(width)),
                "r_stream": Out(stream.Signature(width)),
                "level": Out(range(depth + 1)),
            }
        )

    def elaborate(self, platform):
        m = Module()
        w, r, level, depth = self.w_stream, self.r_stream, self.level, self._depth
        push, pop = w.valid & w.ready, r.valid & r.ready
        head = Signal(self._width, reset_less=True)
        m.d.comb += [w.ready.eq(level != depth), r.valid.eq(level != 0), r.payload.eq(head)]
        m.d.sync += level.eq(level + push - pop)

        n = depth - 1  # the storage behind the head
        m.submodules.storage = storage = memory.Memory(shape=self._width, depth=n, init=[])
        wr, rd = storage.write_port(), storage.read_port(domain="comb")
        produce, consume = Signal(range(n)), Signal(range(n))
        to_head = (level == 0) | (pop & (level == 1))
        m.d.comb += [
            wr.addr.eq(produce),
            wr.data.eq(w.payload),
            wr.en.eq(push & ~to_head),
            rd.addr.eq(consume),
        ]
        with m.If(push & ~to_head):
            m.d.sync += produce.eq(Mux(produce == n - 1, 0, produce + 1))
        with m.If(pop & (level > 1)):  # the next word, from the storage
            m.d.sync += [head.eq(rd.data), consume.eq(Mux(consume == n - 1, 0, consume + 1))]
        with m.Elif(push & to_head):
            m.d.sync += head.eq(w.payload)
        return m
