"""The weight buffer: whole tiles, read one tile per cycle, skewed for the array."""

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In

from .payloads import ReadPort, WeightWrite, weight_tile

__all__ = ["WeightBuffer", "diagonal"]


def diagonal(cfg, d):
    """The PEs ``(r, c)`` with ``r + c == d``, in lane order within bank ``d``."""
    return [(r, d - r) for r in range(max(0, d - cfg.cols + 1), min(cfg.rows - 1, d) + 1)]


class WeightBuffer(wiring.Component):
    """``weight_depth`` tiles of ``rows x cols`` weights in ``rows + cols - 1`` banks.

    Bank ``d`` holds, for every tile, the weights of the PEs on diagonal ``r + c == d``.
    Its read address is ``read.addr`` delayed by ``d`` cycles, so its read register
    changes exactly when the first activation of a new tile reaches that diagonal:
    the read registers *are* the array's stationary weights, and a new tile can be
    selected every cycle without a load phase.

    Members
    -------
    read : In(ReadPort(weight_depth, weight_tile))
        ``read.addr``: the tile used by the activation word whose buffer read is issued
        this cycle. ``read.data[r][c]``: weight ``(r, c)`` of the tile on ``read.addr``
        ``r + c + 2`` cycles ago (the bank's read register, then an output register that
        keeps the block RAM's slow clock-to-output off the multiplier's path).
    write : In(WeightWrite)
        Row ``write.row`` of tile ``write.tile`` (``cols`` weights) when ``write.en``.
    """

    def __init__(self, cfg):
        self._cfg = cfg
        super().__init__(
            {
                "read": In(ReadPort(cfg.weight_depth, weight_tile(cfg), en=False)),
                "write": In(WeightWrite(cfg)),
            }
        )

    def elaborate(self, platform):
        cfg = self._cfg
        m = Module()
        addr = self.read.addr
        for d in range(cfg.rows + cfg.cols - 1):
            lanes = diagonal(cfg, d)
            bank = memory.Memory(
                shape=data.ArrayLayout(signed(cfg.weight_bits), len(lanes)),
                depth=cfg.weight_depth,
                init=[],
            )
            m.submodules[f"bank_{d}"] = bank
            rd = bank.read_port()
            wr = bank.write_port(granularity=1)
            m.d.comb += rd.addr.eq(addr)
            out = Signal.like(rd.data, name=f"bank_{d}_q", reset_less=True)
            m.d.sync += out.eq(rd.data)
            for p, (r, c) in enumerate(lanes):
                m.d.comb += [
                    self.read.data[r][c].eq(out[p]),
                    wr.data[p].eq(self.write.data[c]),
                    wr.en[p].eq(self.write.en & (self.write.row == r)),
                ]
            m.d.comb += wr.addr.eq(self.write.tile)
            delayed = Signal.like(addr, name=f"tile_d{d + 1}", reset_less=True)
            m.d.sync += delayed.eq(addr)
            addr = delayed
        return m
