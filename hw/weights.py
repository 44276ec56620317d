"""The weight buffer: whole tiles, read one tile per cycle, skewed for the array."""

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["WeightBuffer", "diagonal"]


def diagonal(cfg, d):
    """The PEs ``(r, c)`` with ``r + c == d``, in lane order within bank ``d``."""
    return [(r, d - r) for r in range(max(0, d - cfg.cols + 1), min(cfg.rows - 1, d) + 1)]


class WeightBuffer(wiring.Component):
    """``weight_depth`` tiles of ``rows x cols`` weights in ``rows + cols - 1`` banks.

    Bank ``d`` holds, for every tile, the weights of the PEs on diagonal ``r + c == d``.
    Its read address is :attr:`read_tile` delayed by ``d`` cycles, so its read register
    changes exactly when the first activation of a new tile reaches that diagonal:
    the read registers *are* the array's stationary weights, and a new tile can be
    selected every cycle without a load phase.

    Members
    -------
    read_tile : In(range(weight_depth))
        Tile used by the activation word whose buffer read is issued this cycle.
    weights : Out(ArrayLayout(ArrayLayout(signed(weight_bits), cols), rows))
        ``weights[r][c]`` of tile ``read_tile`` from ``r + c + 2`` cycles ago (the bank's
        read register, then an output register that keeps the block RAM's slow
        clock-to-output off the multiplier's path).
    write_en, write_tile, write_row, write_data : In
        Write row ``write_row`` of tile ``write_tile`` (``cols`` weights).
    """

    def __init__(self, cfg):
        self._cfg = cfg
        w = data.ArrayLayout(signed(cfg.weight_bits), cfg.cols)
        super().__init__({
            "read_tile": In(range(cfg.weight_depth)),
            "weights": Out(data.ArrayLayout(w, cfg.rows)),
            "write_en": In(1),
            "write_tile": In(range(cfg.weight_depth)),
            "write_row": In(range(cfg.rows)),
            "write_data": In(w),
        })

    def elaborate(self, platform):
        cfg = self._cfg
        m = Module()
        addr = self.read_tile
        for d in range(cfg.rows + cfg.cols - 1):
            lanes = diagonal(cfg, d)
            bank = memory.Memory(shape=data.ArrayLayout(signed(cfg.weight_bits), len(lanes)),
                                 depth=cfg.weight_depth, init=[])
            m.submodules[f"bank_{d}"] = bank
            rd = bank.read_port()
            wr = bank.write_port(granularity=1)
            m.d.comb += rd.addr.eq(addr)
            out = Signal.like(rd.data, name=f"bank_{d}_q")
            m.d.sync += out.eq(rd.data)
            for p, (r, c) in enumerate(lanes):
                m.d.comb += [
                    self.weights[r][c].eq(out[p]),
                    wr.data[p].eq(self.write_data[c]),
                    wr.en[p].eq(self.write_en & (self.write_row == r)),
                ]
            m.d.comb += wr.addr.eq(self.write_tile)
            delayed = Signal.like(addr, name=f"tile_d{d + 1}")
            m.d.sync += delayed.eq(addr)
            addr = delayed
        return m
