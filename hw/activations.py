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
        ``pool.data`` is the hidden buffer's word at ``pool.addr`` a cycle earlier;
        without the deep pipeline transparent for :attr:`hidden` (a write in that cycle
        is seen), with it not (the result path forwards that write).
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
        # the deep pipeline forwards the writes its pooling read does not see
        pool_rd = hidden.read_port(transparent_for=() if cfg.deep_pipeline else (hidden_wr,))
        m.d.comb += [pool_rd.addr.eq(self.pool.addr), self.pool.data.eq(pool_rd.data)]
        act_rd, hid_rd = act.read_port(), hidden.read_port()
        m.d.comb += [act_rd.addr.eq(self.read.addr), hid_rd.addr.eq(self.read.addr - cfg.act_depth)]

        # data registers: no reset (the read's row travels with its own valid flag)
        in_hidden, in_hidden_q = Signal(reset_less=True), Signal(reset_less=True)
        act_a, act_h, act_q = (Signal(word, reset_less=True) for _ in range(3))
        m.d.sync += [
            in_hidden.eq(self.read.addr >= cfg.act_depth),
            in_hidden_q.eq(in_hidden),
            act_a.eq(act_rd.data),
            act_h.eq(hid_rd.data),
            act_q.eq(Mux(in_hidden_q, act_h, act_a)),
        ]
        m.d.comb += self.read.data.eq(act_q)
        return m
