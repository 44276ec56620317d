"""The player: the cocotb entry that streams programs through the core for the backends.

:meth:`sim.runner.Simulator.stream` (what the rtl and gate backends run) writes a job
into a fresh directory, names it in ``PLAYER_DIR`` and runs :func:`play`, the one
entry of this module. The job (``job.json``) lists the programs (``.npy`` files of
uint8 beats ``[n, stream_bytes]``, in the same directory) and the pauses: ``gap`` and
``stall``, the probabilities of an idle input and a blocked output cycle, and the
``seed`` of the harness's pseudo-random pauses (``seed + i`` for program ``i``). The
harness's on-chip player streams each program in turn, one status packet after the
other, and the harness makes its own clock (``own_clock``, ``sim/hdl/tb_top.sv``):
nothing crosses into Python between the reset, each program's start and its last
result beat, so the simulator runs at its own speed, gaps and backpressure included.
The result beats of program ``i`` go to ``results_<i>.npy`` and the report
(``report.json``) lists, a program, the result file, the simulated cycles and the
seconds the simulator took.
"""

import json
import os
import time

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles, RisingEdge, with_timeout

from sim.runner import PLAYER_JOB, PLAYER_REPORT, config_from_env

__all__ = ["play"]

#: The harness's clock period in ns (``own_clk`` in ``sim/hdl/tb_top.sv``).
CLOCK_NS = 10


def _read_job(base):
    with open(os.path.join(base, PLAYER_JOB)) as f:
        return json.load(f)


def _write_report(base, report):
    with open(os.path.join(base, PLAYER_REPORT), "w") as f:
        json.dump(report, f)


def write_hex(path, beats):
    """Write beats (uint8 [n, bytes], little-endian) as $readmemh lines, MSB first."""
    width = beats.shape[1]
    hexed = beats[:, ::-1].tobytes().hex().encode()
    lines = np.frombuffer(hexed, f"S{2 * width}")
    with open(path, "wb") as f:
        f.write(b"\n".join(lines.tolist()) + b"\n")


def read_hex(path, width):
    """Read the recorder's ``<hex> <tlast>`` lines back into uint8 [n, width]."""
    with open(path) as f:
        words = [line.split()[0] for line in f if line.strip()]
    if not words:
        return np.zeros((0, width), np.uint8)
    raw = bytes.fromhex("".join(w.rjust(2 * width, "0") for w in words))
    return np.frombuffer(raw, np.uint8).reshape(-1, width)[:, ::-1].copy()


async def _play_one(dut, clk, cfg, beats, gap, stall, seed):
    """One program through the on-chip player; returns (result beats, cycles, seconds)."""
    # the harness took these file names from plusargs at time 0 (sim.runner.Simulator.run)
    base = os.environ["PLAYER_DIR"]
    prog, res = (os.path.join(base, name) for name in ("program.hex", "results.hex"))
    write_hex(prog, beats)
    dut.player_en.value = 1
    dut.player_beats.value = len(beats)
    dut.gap_level.value = int(gap * 256) if gap else 0
    dut.stall_level.value = int(stall * 256) if stall else 0
    dut.seed.value = seed
    dut.player_start.value = 1
    await RisingEdge(clk)
    dut.player_start.value = 0
    start = time.perf_counter()
    limit = 10_000 + 40 * len(beats) * max(1, cfg.raw_beats)
    await with_timeout(RisingEdge(dut.player_done), limit * CLOCK_NS, "ns")
    seconds = time.perf_counter() - start
    cycles = int(dut.player_cycles.value)
    return read_hex(res, cfg.stream_bytes), cycles, seconds


@cocotb.test()
async def play(dut):
    """Stream every program of the job in ``PLAYER_DIR``; save each one's result beats."""
    base = os.environ["PLAYER_DIR"]
    job = _read_job(base)
    cfg = config_from_env()
    for name, value in [("clk", 0), ("player_en", 0), ("player_start", 0), ("player_beats", 0)]:
        getattr(dut, name).value = value
    for name, value in [("gap_level", 0), ("stall_level", 0), ("seed", 1)]:
        getattr(dut, name).value = value
    for name, value in [("s_axis_tvalid", 0), ("m_axis_tready", 0)]:
        getattr(dut, name).value = value
    dut.own_clock.value = 1
    clk = dut.own_clk
    dut.rst.value = 1
    await ClockCycles(clk, 3)
    dut.rst.value = 0
    await RisingEdge(clk)
    report = []
    for i, name in enumerate(job["programs"]):
        beats = np.load(os.path.join(base, name))
        out, cycles, seconds = await _play_one(
            dut, clk, cfg, beats, job["gap"], job["stall"], job["seed"] + i
        )
        results = f"results_{i}.npy"
        np.save(os.path.join(base, results), out)
        report.append({"results": results, "sim_cycles": cycles, "sim_seconds": seconds})
    dut.own_clock.value = 0
    _write_report(base, report)
