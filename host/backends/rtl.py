"""The ``rtl`` and ``gate`` backends: the program through the simulated core.

The program's beats are streamed into the core's AXI4-Stream input by the on-chip
player of the cocotb harness (``sim/hdl/tb_top.sv``), one beat a cycle, and every
result beat is recorded; the status packet carries the core's counters and error
code. ``gate`` does the same on the post-synthesis netlist.
"""

import time

import numpy as np

from sim import runner

from ..cycles import predict

__all__ = ["RtlBackend", "GateBackend"]


class RtlBackend:
    """Run programs on the generated Verilog in Verilator (or ``sim="icarus"``).

    Parameters
    ----------
    config : CoreConfig
    sim : str, optional
        ``verilator`` (default) or ``icarus``.
    gap, stall : float
        Probability of an idle input cycle / a blocked output cycle (0: none, which is
        what the cycle model predicts).
    max_beats : int
        Programs longer than this are streamed in several simulator runs, split
        after a whole batch (see ``Program.split``), each with the resident preamble.
    """

    name = "rtl"
    kind = "rtl"

    def __init__(self, config, sim=None, gap=0.0, stall=0.0, seed=1):
        self.config = config
        self.sim = runner.simulator(sim)
        self.gap, self.stall, self.seed = gap, stall, seed

    def sources(self):
        return None

    def prepare(self):
        """Build the simulator (cached by configuration hash)."""
        runner.build(self.config, self.kind, self.sim, self.sources())

    def stream(self, beats):
        """Run raw program beats; returns ``(result beats, report)``."""
        self.prepare()
        return runner.stream_program(self.config, beats, kind=self.kind, sim=self.sim,
                                     sources=self.sources(), gap=self.gap, stall=self.stall,
                                     seed=self.seed)

    def run(self, program, inputs):
        from .base import Result

        program.check_config(self.config)
        self.prepare()
        start = time.perf_counter()
        beats = program.beats(inputs)
        out, report = self.stream(beats)
        outputs, status = program.parse_output(out, len(inputs))
        return Result(outputs=outputs, status=status, cycles=status["cycles"],
                      predicted_cycles=predict(self.config, beats)["cycles"],
                      wall_seconds=time.perf_counter() - start,
                      sim_cycles=report["sim_cycles"], sim_seconds=report["sim_seconds"],
                      out_beats=np.asarray(out))


class GateBackend(RtlBackend):
    """The same harness on the technology-independent post-synthesis netlist."""

    name = "gate"
    kind = "gate"

    def sources(self):
        from sim.gate import gate_sources

        return gate_sources(self.config)
