"""The activation buffers: the input buffer (LOAD) and the hidden buffer (POSTPROC)."""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In

from .payloads import ReadPort, WritePort, act_word

__all__ = ["ActivationBuffer"]


class ActivationBuffer(wiring.Component):
    """Two buffers of activation words behind one read address space.

    Addresses ``0 .. act_depth - 1`` are the input buffer (written by LOAD), addresses
    ``act_depth .. act_space - 1`` the hidden buffer (written by POSTPROC, addressed
    from its own start). The input buffer is a simple dual-port memory (one writer, one
    reader), so it maps to block RAM; the hidden buffer has a second reader, for
    POSTPROC's pooling (:attr:`pool`), so it maps to two copies. Each buffer's output
    is registered (the block RAM's clock-to-output is slow and the buffers are many
    RAMs deep), then the selected word once more, like the weights (see
    :class:`systolic.hw.weights.WeightBuffer`): ``cfg.mm_write_delay`` counts these three cycles.

    Members
    -------
    load : In(WritePort(act_depth, act_word))
        The input buffer's write port.
    hidden : In(WritePort(hidden_depth, act_word))
        The hidden buffer's write port.
    read : In(ReadPort(act_space, act_word))
        ``read.data`` is the word at ``read.addr`` three cycles earlier.
    pool : In(ReadPort(hidden_depth, act_word))
        ``pool.data`` is the hidden buffer's word at ``pool.addr`` :attr:`pool_latency`
        cycles earlier, with every write of :attr:`hidden` in those cycles seen (the
        last one to the word wins). Without ``cfg.deep_pipeline`` one cycle: the block
        RAM's read, transparent for the write port. With it two: the block RAM's output
        is registered, and the writes of the two cycles are forwarded past the memory
        (their address compared in the cycle of the write), so that nothing between the
        block RAMs and the pooling maximum is combinational but two multiplexers.
    """

    def __init__(self, cfg):
        self._cfg = cfg
        word = act_word(cfg)
        super().__init__(
            {
                "load": In(WritePort(cfg.act_depth, word)),
                "hidden": In(WritePort(cfg.hidden_depth, word)),
                "read": In(ReadPort(cfg.act_space, word, en=False)),
                "pool": In(ReadPort(cfg.hidden_depth, word, en=False)),
            }
        )

    def elaborate(self, platform):
        cfg = self._cfg
        m = Module()
        word = act_word(cfg)
        m.submodules.act_buffer = act = memory.Memory(shape=word, depth=cfg.act_depth, init=[])
        m.submodules.hidden_buffer = hidden = memory.Memory(
            shape=word, depth=cfg.hidden_depth, init=[]
        )
        wiring.connect(m, wiring.flipped(self.load), act.write_port())
        hidden_wr = hidden.write_port()
        wiring.connect(m, wiring.flipped(self.hidden), hidden_wr)
        if cfg.deep_pipeline:
            self._pool_forwarded(m, hidden)
        else:
            pool_rd = hidden.read_port(transparent_for=(hidden_wr,))
            m.d.comb += [pool_rd.addr.eq(self.pool.addr), self.pool.data.eq(pool_rd.data)]
        act_rd, hid_rd = act.read_port(), hidden.read_port()
        m.d.comb += [act_rd.addr.eq(self.read.addr), hid_rd.addr.eq(self.read.addr - cfg.act_depth)]

        in_hidden, in_hidden_q = Signal(), Signal()
        act_a, act_h, act_q = Signal(word), Signal(word), Signal(word)
        m.d.sync += [
            in_hidden.eq(self.read.addr >= cfg.act_depth),
            in_hidden_q.eq(in_hidden),
            act_a.eq(act_rd.data),
            act_h.eq(hid_rd.data),
            act_q.eq(Mux(in_hidden_q, act_h, act_a)),
        ]
        m.d.comb += self.read.data.eq(act_q)
        return m

    @staticmethod
    def pool_latency(cfg):
        """Cycles from ``pool.addr`` to ``pool.data``: 2 with the deep pipeline, else 1."""
        return 2 if cfg.deep_pipeline else 1

    def _pool_forwarded(self, m, hidden):
        """The deep pipeline's pooling read: address in cycle ``t``, the block RAM's word
        registered in ``t + 1``, the word in ``t + 2``; a write in ``t`` or ``t + 1`` to
        the same word replaces it (the later one first)."""
        word, wr = act_word(self._cfg), self.hidden
        rd = hidden.read_port()  # not transparent: the writes are forwarded below
        addr_1 = Signal.like(self.pool.addr)  # the address, a cycle later
        mem_2 = Signal(word)
        hit_t, data_t = Signal(), Signal(word)  # the write of cycle t, if to the word
        hit_t2, data_t2 = Signal(), Signal(word)  # ... a cycle later
        hit_t1, data_t1 = Signal(), Signal(word)  # the write of cycle t + 1, if to the word
        m.d.comb += rd.addr.eq(self.pool.addr)
        m.d.sync += [
            addr_1.eq(self.pool.addr),
            hit_t.eq(wr.en & (wr.addr == self.pool.addr)),
            data_t.eq(wr.data),
            mem_2.eq(rd.data),
            hit_t2.eq(hit_t),
            data_t2.eq(data_t),
            hit_t1.eq(wr.en & (wr.addr == addr_1)),
            data_t1.eq(wr.data),
        ]
        m.d.comb += self.pool.data.eq(Mux(hit_t1, data_t1, Mux(hit_t2, data_t2, mem_2)))
