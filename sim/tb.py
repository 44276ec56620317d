"""The testbench around ``tb_top``: clock, reset, bus models, program player."""

import os
import random
import time

import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge, with_timeout
from cocotbext.axi import AxiStreamBus, AxiStreamFrame, AxiStreamSink, AxiStreamSource

from systolic.sim.runner import config_from_env, read_hex, write_hex  # one copy of the hex format

__all__ = ["TB", "write_hex", "read_hex", "pause"]

CLOCK_NS = 10


def pause(rng, level):
    """A pause generator for cocotbext-axi: pause with probability ``level``."""
    while True:
        yield rng.random() < level


class TB:
    """Owns the clock, the reset and the AXI4-Stream bus models of one run."""

    def __init__(self, dut):
        self.dut = dut
        self.cfg = config_from_env()
        self.log = dut._log
        dut.player_en.value = 0
        dut.player_start.value = 0
        dut.gap_level.value = 0
        dut.stall_level.value = 0
        dut.seed.value = 1
        dut.player_beats.value = 0
        Clock(dut.clk, CLOCK_NS, unit="ns", impl="gpi").start()
        self.source = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis"), dut.clk, dut.rst)
        self.sink = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis"), dut.clk, dut.rst)

    async def reset(self, cycles=3):
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, cycles)
        self.dut.rst.value = 0
        await RisingEdge(self.dut.clk)

    def set_pauses(self, seed, gap=0.0, stall=0.0):
        rng = random.Random(seed)
        self.source.set_pause_generator(pause(rng, gap) if gap else None)
        self.sink.set_pause_generator(pause(rng, stall) if stall else None)

    async def run_axis(self, beats, timeout_us=None):
        """Stream ``beats`` through the bus models; returns the result beats (uint8)."""
        sb = self.cfg.stream_bytes
        await self.source.send(AxiStreamFrame(beats.tobytes()))
        timeout_us = int(timeout_us or 50 + len(beats))
        frame = await with_timeout(self.sink.recv(), timeout_us, "us")
        data = bytes(frame.tdata)
        return np.frombuffer(data, np.uint8).reshape(-1, sb)

    async def run_player(self, beats, gap=0, stall=0, seed=1, timeout_cycles=None):
        """Stream ``beats`` with the on-chip player; returns (result beats, cycles, seconds)."""
        # The harness took these file names from plusargs at time 0 (systolic.sim.runner.run).
        prog, res = (
            os.path.join(os.environ["PLAYER_DIR"], name) for name in ("program.hex", "results.hex")
        )
        write_hex(prog, beats)
        dut = self.dut
        dut.player_en.value = 1
        dut.player_beats.value = len(beats)
        dut.gap_level.value = int(gap * 256) if gap else 0
        dut.stall_level.value = int(stall * 256) if stall else 0
        dut.seed.value = seed
        dut.player_start.value = 1
        await RisingEdge(dut.clk)
        dut.player_start.value = 0
        start = time.perf_counter()
        limit = timeout_cycles or 10_000 + 40 * len(beats) * max(1, self.cfg.raw_beats)
        await with_timeout(RisingEdge(dut.player_done), limit * CLOCK_NS, "ns")
        seconds = time.perf_counter() - start
        cycles = int(dut.player_cycles.value)
        dut.player_en.value = 0
        return read_hex(res, self.cfg.stream_bytes), cycles, seconds
