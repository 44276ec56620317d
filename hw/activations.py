"""The activation buffers: the input buffer (LOAD) and the hidden buffer (POSTPROC)."""

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In

from .fanout import lane_groups
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

    Both buffers are split into banks, a group of lanes each
    (:func:`systolic.hw.fanout.lane_groups`), each bank read at an address of its own:
    one read address into every block RAM of the two buffers was one net across the
    die. The write ports write every bank.

    Members
    -------
    load : In(WritePort(act_depth, act_word))
        The input buffer's write port.
    hidden : In(WritePort(hidden_depth, act_word))
        The hidden buffer's write port.
    read : In(ReadPort(act_space, act_word, lanes=banks))
        ``read.addr[b]``: bank ``b``'s address, all equal. ``read.data`` is the word at
        ``read.addr`` three cycles earlier.
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
                "read": In(
                    ReadPort(cfg.act_space, word, en=False, lanes=len(lane_groups(cfg.rows)))
                ),
                "pool": In(ReadPort(cfg.hidden_depth, word, en=False)),
            }
        )

    def elaborate(self, platform):
        cfg = self._cfg
        m = Module()
        for b, lanes in enumerate(lane_groups(cfg.rows)):
            self._bank(m, b, lanes)
        return m

    def _bank(self, m, b, lanes):
        """Bank ``b``: lanes ``lanes`` of both buffers, read at ``read.addr[b]``."""
        cfg = self._cfg
        word = data.ArrayLayout(signed(cfg.act_bits), len(lanes))

        def part(value):  # this bank's lanes of a whole word
            return Cat(value[c] for c in lanes)

        act = memory.Memory(shape=word, depth=cfg.act_depth, init=[])
        hidden = memory.Memory(shape=word, depth=cfg.hidden_depth, init=[])
        m.submodules[f"act_buffer_bank{b}"], m.submodules[f"hidden_buffer_bank{b}"] = act, hidden
        act_wr, hidden_wr = act.write_port(), hidden.write_port()
        for port, wr in ((self.load, act_wr), (self.hidden, hidden_wr)):
            m.d.comb += [wr.en.eq(port.en), wr.addr.eq(port.addr), wr.data.eq(part(port.data))]
        # the deep pipeline forwards the writes its pooling read does not see
        pool_rd = hidden.read_port(transparent_for=() if cfg.deep_pipeline else (hidden_wr,))
        m.d.comb += [pool_rd.addr.eq(self.pool.addr), part(self.pool.data).eq(pool_rd.data)]
        addr = self.read.addr[b]
        act_rd, hid_rd = act.read_port(), hidden.read_port()
        m.d.comb += [act_rd.addr.eq(addr), hid_rd.addr.eq(addr - cfg.act_depth)]

        # data registers: no reset (the read's row travels with its own valid flag)
        in_hidden, in_hidden_q = Signal(reset_less=True), Signal(reset_less=True)
        act_a, act_h, act_q = (Signal(word, reset_less=True) for _ in range(3))
        m.d.sync += [
            in_hidden.eq(addr >= cfg.act_depth),
            in_hidden_q.eq(in_hidden),
            act_a.eq(act_rd.data),
            act_h.eq(hid_rd.data),
            act_q.eq(Mux(in_hidden_q, act_h, act_a)),
        ]
        m.d.comb += part(self.read.data).eq(act_q)
