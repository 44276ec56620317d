"""The accumulator buffer and MATMUL's read-modify-write into it, with forwarding."""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from .fanout import kept, lane_groups
from .payloads import MatmulRow, acc_row
from .pe import psum_shape

__all__ = ["Accumulator", "read_ahead"]


def read_ahead(cfg):
    """Cycles from a row's accumulator read to its write: 2 with the deep pipeline (the
    read data registered, no path from the block RAM through the adder back into it), 1
    without (a read transparent for the write port)."""
    return 2 if cfg.deep_pipeline else 1


class Accumulator(wiring.Component):
    """``acc_depth`` words of ``cols`` int32 lanes; MATMUL rows add into them.

    A MATMUL row issued on :attr:`i_mm` meets its sum from the array on :attr:`sum`
    ``cfg.mm_write_delay`` cycles later; in that cycle ``sum`` is added to accumulator
    word ``acc_addr`` (``accumulate``) or written over it. The word is read
    :func:`read_ahead` cycles before the write. With the deep pipeline, the two writes
    the read cannot see (the one in its own cycle and the one after) are forwarded from
    registers; without it the read is transparent, so back-to-back updates of one word
    see each other. POSTPROC reads share the read port: while :attr:`pp_mode` is set no
    MATMUL row is between its issue and its read, and the port reads ``pp_addr`` (the
    select is a register, not the POSTPROC's issue, so that the issue logic does not
    reach the block RAMs' address); the sum wraps to 32 bits.

    Members
    -------
    i_mm : In(stream.Signature(MatmulRow, always_ready=True))
        The MATMUL row issued this cycle (only ``acc_addr`` and ``accumulate`` are used).
    sum : In(ArrayLayout(psum_shape, cols))
        The array's result row.
    pp_mode : In(1)
        The read port reads ``pp_addr`` (POSTPROC instructions; a register).
    pp_addr : In(range(acc_depth))
        The word a POSTPROC row reads.
    hold : In(1)
        The read port keeps its data this cycle.
    read_data : Out(ArrayLayout(signed(acc_bits), cols))
        The word read in the cycle before.
    """

    def __init__(self, cfg):
        self._cfg = cfg
        super().__init__(
            {
                "i_mm": In(stream.Signature(MatmulRow(cfg), always_ready=True)),
                "sum": In(data.ArrayLayout(psum_shape(cfg), cfg.cols)),
                "pp_mode": In(1),
                "pp_addr": In(range(cfg.acc_depth)),
                "hold": In(1),
                "read_data": Out(acc_row(cfg)),
            }
        )

    def elaborate(self, platform):
        cfg = self._cfg
        m = Module()
        m.submodules.acc_buffer = buf = memory.Memory(
            shape=acc_row(cfg), depth=cfg.acc_depth, init=[]
        )
        wr = buf.write_port()
        rd = buf.read_port(transparent_for=() if cfg.deep_pipeline else (wr,))
        # (valid, acc_addr, accumulate) travel beside the data, through the activation
        # read and the array, to the row's read stage
        meta = Signal(_Meta(cfg), name="mm_meta_0")
        m.d.comb += [
            meta.valid.eq(self.i_mm.valid),
            meta.addr.eq(self.i_mm.payload.acc_addr),
            meta.accumulate.eq(self.i_mm.payload.accumulate),
        ]
        for i in range(cfg.mm_write_delay - read_ahead(cfg)):
            nxt = Signal(_Meta(cfg), name=f"mm_meta_{i + 1}")
            m.d.sync += nxt.eq(meta)
            meta = nxt
        m.d.comb += [
            rd.addr.eq(Mux(self.pp_mode, self.pp_addr, meta.addr)),
            rd.en.eq(~self.hold),
            self.read_data.eq(rd.data),
        ]

        write = Signal(_Meta(cfg))
        base = Signal(acc_row(cfg))
        if cfg.deep_pipeline:
            self._forward(m, meta, write, base, rd.data, wr.data)
        else:
            m.d.sync += write.eq(meta)
            m.d.comb += base.eq(Mux(write.accumulate, rd.data, 0))
        m.d.comb += [wr.en.eq(write.valid), wr.addr.eq(write.addr)]
        for c in range(cfg.cols):
            m.d.comb += wr.data[c].eq(base[c] + self.sum[c])
        return m

    def _forward(self, m, meta, write, base, read_data, write_data):
        """Deep pipeline: stage D, where the read data arrives, then stage W, the write,
        whose ``base`` is the registered read data or a forwarded earlier write."""
        cfg = self._cfg
        d = Signal(_Meta(cfg))
        m.d.sync += [d.eq(meta), write.eq(d)]
        # the data registers have no reset (only the valid flags do)
        acc_q = Signal(acc_row(cfg), reset_less=True)  # registered read data, for the row in W
        prev1 = Signal(acc_row(cfg), reset_less=True)  # the write of the previous cycle
        prev1_valid, prev1_addr = Signal(), Signal(range(cfg.acc_depth))
        prev2 = Signal(acc_row(cfg), reset_less=True)  # and of the one before
        m.d.sync += [
            acc_q.eq(read_data),
            prev1.eq(write_data),
            prev1_valid.eq(write.valid),
            prev1_addr.eq(write.addr),
            prev2.eq(prev1),
        ]
        # what the row in W adds to, decided in D (the write now, in W, is prev1 in the
        # next cycle, prev1 is prev2): accumulate or not, and whether it takes prev1 /
        # prev2. A copy of these a group of lanes: one flag drove the multiplexers of
        # every lane's 32 bits (a 16x16 worst path, 15.07 ns, 12.79 of it routing)
        for g, lanes in enumerate(lane_groups(cfg.cols)):
            accumulate, fwd1, fwd2 = (
                kept(1, f"{n}_lanes{g}") for n in ("accumulate", "fwd1", "fwd2")
            )
            m.d.sync += [
                accumulate.eq(d.accumulate),
                fwd1.eq(write.valid & (write.addr == d.addr)),
                fwd2.eq(prev1_valid & (prev1_addr == d.addr)),
            ]
            for c in lanes:
                with m.If(~accumulate):
                    m.d.comb += base[c].eq(0)
                with m.Elif(fwd1):
                    m.d.comb += base[c].eq(prev1[c])
                with m.Elif(fwd2):
                    m.d.comb += base[c].eq(prev2[c])
                with m.Else():
                    m.d.comb += base[c].eq(acc_q[c])


class _Meta(data.StructLayout):
    def __init__(self, cfg):
        super().__init__({"valid": 1, "addr": range(cfg.acc_depth), "accumulate": 1})
