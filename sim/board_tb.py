"""The simulated board: the board top's UART pins driven by the host's own link code.

:func:`build_board` generates the board top (``hw/board/top.py``, no PLL: the bench's
clock is the core's) with a fast baud divisor and builds it in Verilator;
:func:`run_board` runs :func:`board_run`, the cocotb entry of this module, which drives
``rx`` with cocotbext-uart's ``UartSource``, listens on ``tx`` with its ``UartSink``, and
runs each program through the same :class:`systolic.host.backends.link.LinkSession` that drives a
real board over pyserial (:func:`systolic.host.backends.link.run_async` instead of
``run_blocking``). Faults are injected between the protocol and the pins: a byte of a
request flipped or dropped, a byte of a response flipped.
"""

import json
import os
import pathlib
import random
import shutil
import tempfile

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, Timer

import systolic.hw.board.protocol as protocol

__all__ = ["board_run", "build_board", "run_board", "SIM_CLOCK_NS", "SIM_DIVISOR"]

#: The bench's clock period (ns) and the baud divisor the tests use: 25 Mbaud.
SIM_CLOCK_NS = 10
SIM_DIVISOR = 4


def _gate_netlist(cfg, rtl, divisor):
    """The board top's technology-independent netlist (``sim/gate.py``'s Yosys script)."""
    import subprocess

    from systolic.sim.build import SimError, build_root, cached, files_hash
    from systolic.sim.gate import SCRIPT, _simcells, _yosys

    script = SCRIPT.replace("core.v", "board_top.v").replace("-top core", "-top board_top")
    out = build_root() / cfg.tag / f"board-gate-{divisor}"

    def synthesize():
        out.mkdir(parents=True, exist_ok=True)
        shutil.copy(rtl, out / "board_top.v")
        with open(out / "yosys.log", "w") as log:
            res = subprocess.run(
                [_yosys(), "-q", "-p", script], cwd=out, stdout=log, stderr=subprocess.STDOUT
            )
        if res.returncode != 0 or not (out / "gate.v").exists():
            raise SimError(f"gate-level synthesis of the board top failed (see {out}/yosys.log)")

    return [cached(out / "gate.v", files_hash(script, rtl), synthesize), _simcells()]


def build_board(cfg, divisor=SIM_DIVISOR, gate=False):
    """Build the board top for ``cfg`` in Verilator (cached); a ``systolic.sim.runner.Simulator``.
    With ``gate``, its gate-level netlist (as the ``gate`` backend's)."""
    from amaranth.back import verilog

    import systolic.hw.board as board_pkg
    from systolic.hw.board.top import BoardTop
    from systolic.sim import runner
    from systolic.sim.build import build_root, cached, files_hash, hw_hash

    board_src = sorted(pathlib.Path(board_pkg.__file__).resolve().parent.glob("*.py"))
    key = files_hash(hw_hash(), divisor, *board_src)
    out = build_root() / cfg.tag / f"board-rtl-{divisor}" / "board_top.v"

    def write():
        out.parent.mkdir(parents=True, exist_ok=True)
        top = BoardTop(cfg, 1000 / SIM_CLOCK_NS, divisor)
        tmp = out.with_suffix(".tmp")
        tmp.write_text(verilog.convert(top, name="board_top", emit_src=False))
        tmp.replace(out)

    source = cached(out, key, write)
    sources = _gate_netlist(cfg, source, divisor) if gate else [source]
    sim = "verilator"
    kind = f"board-{'gate-' if gate else ''}{divisor}"
    bdir = runner.build_dir(cfg, kind, sim)
    args = [*runner.BUILD_ARGS[sim], "--public-depth", "1"]

    def make():
        runner._cocotb_runner(sim).build(
            sources=[str(src) for src in sources],
            hdl_toplevel="board_top",
            build_dir=str(bdir),
            build_args=args,
            timescale=runner.TIMESCALE,
            always=True,
            log_file=str(bdir.parent / f"{kind}.build.log"),
        )

    cached(bdir, files_hash("board", args, runner.VERILATOR_MAKEFLAGS, *sources), make)
    return runner.Simulator(cfg, kind, sim, bdir, "board_top")


def run_board(cfg, programs, *, max_beats=32, faults=None, divisor=SIM_DIVISOR, seed=1, gate=False):
    """Run each program (uint8 beats ``[n, stream_bytes]``) through the simulated board.

    ``faults`` maps ``flip``, ``drop`` (request numbers, counted from 0 over the whole
    run, whose frame loses a byte or has one flipped), ``corrupt`` (response reads with
    a byte flipped) and ``corrupt_data`` (DATA responses with beats, counted from 0, with
    a payload byte flipped: the READ is repeated) to lists. Returns ``(outputs, stats)``:
    the result beats of each program and the link's counters (requests, retries, bytes
    each way, frames dropped, simulated ns). ``gate`` runs the gate-level netlist of the board top.
    """
    import numpy as np

    simulator = build_board(cfg, divisor, gate)
    work = simulator.build_dir / "runs"
    work.mkdir(parents=True, exist_ok=True)
    job_dir = pathlib.Path(tempfile.mkdtemp(prefix="board-", dir=work))
    try:
        names = []
        for i, beats in enumerate(programs):
            np.save(job_dir / f"program_{i}.npy", np.ascontiguousarray(beats, np.uint8))
            names.append(f"program_{i}.npy")
        job = {
            "programs": names,
            "max_beats": max_beats,
            "divisor": divisor,
            "faults": faults or {},
            "seed": seed,
        }
        (job_dir / "job.json").write_text(json.dumps(job))
        simulator.run(
            "board_run",
            module="systolic.sim.board_tb",
            env={
                "BOARD_JOB": str(job_dir / "job.json"),
                "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
            },
            test_dir=job_dir,
            player_dir=job_dir,
        )
        outputs = [np.load(job_dir / f"output_{i}.npy") for i in range(len(programs))]
        stats = json.loads((job_dir / "stats.json").read_text())
    finally:
        shutil.rmtree(job_dir, ignore_errors=True)
    return outputs, stats


class _PinTransport:
    """cocotbext-uart on the board's pins, with faults injected on the way."""

    def __init__(self, source, sink, bit_ns, faults, seed):
        self.source, self.sink, self.bit_ns = source, sink, bit_ns
        self.flip = set(faults.get("flip", ()))
        self.drop = set(faults.get("drop", ()))
        self.corrupt = set(faults.get("corrupt", ()))
        self.corrupt_data = set(faults.get("corrupt_data", ()))
        self.seen, self.data_frames, self.target = bytearray(), 0, None
        self.writes = self.reads = 0
        self.rng = random.Random(seed)

    async def write(self, data):
        data = bytearray(data)
        n = self.writes
        self.writes += 1
        if n in self.flip:
            data[self.rng.randrange(len(data))] ^= 1 << self.rng.randrange(8)
        if n in self.drop:
            del data[self.rng.randrange(len(data))]
        self.source.write_nowait(data)

    async def read(self, timeout_bits):
        if self.sink.empty():
            await self.sink.wait(timeout_bits * self.bit_ns, "ns")
        data = bytearray(self.sink.read_nowait())
        if data:
            n = self.reads
            self.reads += 1
            if n in self.corrupt:
                data[self.rng.randrange(len(data))] ^= 0x10
        for i in range(len(data)):  # a payload byte of the chosen DATA responses
            seen = self.seen
            seen.append(data[i])
            if len(seen) == self.target:
                data[i] ^= 0x01
            if (
                len(seen) >= 4
                and seen[-4] == protocol.LINK_SOF
                and seen[-3] == protocol.LinkFrame.DATA
            ):
                if seen[-1] > 0:  # a DATA frame with beats: its header starts at len - 4
                    if self.data_frames in self.corrupt_data:
                        self.target = len(seen) - 4 + 1 + len(protocol.LINK_HEADER) + 1
                    self.data_frames += 1
        return bytes(data)


@cocotb.test()
async def board_run(dut):
    """Every program of the job ``BOARD_JOB`` names, through the link."""
    import numpy as np
    from cocotbext.uart import UartSink, UartSource

    from systolic.host.backends.link import LinkSession, run_async
    from systolic.sim.runner import config_from_env

    path = pathlib.Path(os.environ["BOARD_JOB"])
    job = json.loads(path.read_text())
    cfg = config_from_env()
    bit_ns = SIM_CLOCK_NS * job["divisor"]
    Clock(dut.clk, SIM_CLOCK_NS, unit="ns", impl="gpi").start()
    dut.rx.value = 1
    dut.rst.value = 1
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    source = UartSource(dut.rx, baud=1e9 / bit_ns)
    sink = UartSink(dut.tx, baud=1e9 / bit_ns)
    transport = _PinTransport(source, sink, bit_ns, job["faults"], job["seed"])
    session = LinkSession(cfg.stream_bytes, max_beats=job["max_beats"], retries=6)
    start = cocotb.utils.get_sim_time("ns")
    for i, name in enumerate(job["programs"]):
        beats = np.load(path.parent / name)
        out = await run_async(session.run(beats), transport)
        np.save(path.parent / f"output_{i}.npy", out)
    await Timer(1, "ns")
    stats = dict(vars(session.stats), sim_ns=cocotb.utils.get_sim_time("ns") - start)
    (path.parent / "stats.json").write_text(json.dumps(stats))
