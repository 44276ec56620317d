"""The player: the cocotb entry that streams programs through the core for the backends.

:meth:`systolic.sim.runner.Simulator.stream` (what the rtl and gate backends run) writes the
programs (``$readmemh`` files) and a job into a fresh directory, names the job in
``PLAYER_JOB`` and runs :func:`play`, the one entry of this module. The job
(``job.json``) lists the programs (each with its length, its results file, the seed
of the harness's pseudo-random pauses and the cycles it may take), the pause levels
of the input (``gap_level``) and the output (``stall_level``), the files the harness
reads and writes, and the report to write. The harness makes its own clock
(``own_clock``, ``sim/hdl/tb_top.sv``) and its on-chip player streams each program
in turn, one status packet after the other: nothing crosses into Python between a
program's start and its last result beat, so the simulator runs at its own speed,
gaps and backpressure included. The report lists, a program, the simulated cycles
and the seconds the simulator took.

Only the standard library and cocotb are imported here, so that the simulator starts
quickly; the host side converts the beats to and from the harness's files.
"""

import json
import os
import time

import cocotb
from cocotb.triggers import ClockCycles, RisingEdge, with_timeout

__all__ = ["play"]

#: The harness's clock period in ns (``own_clk`` in ``sim/hdl/tb_top.sv``).
CLOCK_NS = 10


async def _play_one(dut, base, job, program):
    """One program through the on-chip player; returns (cycles, seconds)."""
    harness = {k: os.path.join(base, name) for k, name in job["harness"].items()}
    # Renames of complete files (the host wrote the program before the simulator started;
    # the harness has closed its results), not writes: no atomic_write needed, and this
    # module imports only the standard library and cocotb so that it starts quickly.
    os.replace(os.path.join(base, program["program"]), harness["program"])
    dut.player_en.value = 1
    dut.player_beats.value = program["beats"]
    dut.gap_level.value = job["gap_level"]
    dut.stall_level.value = job["stall_level"]
    dut.seed.value = program["seed"]
    dut.player_start.value = 1
    await RisingEdge(dut.own_clk)
    dut.player_start.value = 0
    start = time.perf_counter()
    await with_timeout(RisingEdge(dut.player_done), program["limit_cycles"] * CLOCK_NS, "ns")
    seconds = time.perf_counter() - start
    os.replace(harness["results"], os.path.join(base, program["results"]))
    return int(dut.player_cycles.value), seconds


@cocotb.test()
async def play(dut):
    """Stream every program of the job ``PLAYER_JOB`` names."""
    path = os.environ["PLAYER_JOB"]
    base = os.path.dirname(path)
    with open(path) as f:
        job = json.load(f)
    inputs = dict(clk=0, player_en=0, player_start=0, player_beats=0, gap_level=0)
    inputs.update(stall_level=0, seed=1, s_axis_tvalid=0, m_axis_tready=0)
    for name, value in inputs.items():
        getattr(dut, name).value = value
    dut.own_clock.value = 1
    dut.rst.value = 1
    await ClockCycles(dut.own_clk, 3)
    dut.rst.value = 0
    await RisingEdge(dut.own_clk)
    report = []
    for program in job["programs"]:
        cycles, seconds = await _play_one(dut, base, job, program)
        report.append({"sim_cycles": cycles, "sim_seconds": seconds})
    dut.own_clock.value = 0
    with open(os.path.join(base, job["report"]), "w") as f:
        json.dump(report, f)
