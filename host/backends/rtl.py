"""The ``rtl`` and ``gate`` backends: the program through the simulated core.

:meth:`RtlBackend.prepare` builds the simulator once (``systolic.sim.runner.build``: the
cocotb harness ``sim/hdl/tb_top.sv`` around the generated Verilog, cached on disk);
every :meth:`RtlBackend.run` then runs that simulator with the player
(``sim/player.py``): the harness streams the program's beats into the core's
AXI4-Stream input, one beat a cycle unless ``gap``, and records every result beat,
on its own clock, so that the simulator runs at its own speed with or without gaps
and backpressure; the status packet carries the core's counters and error code.
:meth:`RtlBackend.ceiling` plays the same program on the same harness driven by a
small C++ loop instead of cocotb, Verilator's ceiling. ``gate`` does the same on the
post-synthesis netlist (``sim/gate.py``).
"""

import math
import numbers
import time

import numpy as np

from systolic.sim import runner

from .base import BackendError
from .model.cycles import predict

__all__ = ["RtlBackend", "GateBackend", "MAX_PAUSE_PROBABILITY"]

#: The largest ``gap``/``stall`` accepted. The harness turns a probability ``p`` into an
#: 8-bit level ``int(p * 256)`` (an input or output cycle is blocked when a pseudo-random
#: byte is below it), so a beat takes ``256 / (256 - level)`` cycles on average, and the
#: bench allows a program 10,000 + 40 cycles a beat before it calls a timeout. At 0.9 a
#: beat takes 10 cycles (gap and stall both at 0.9: about 20 for a beat in and one out),
#: well inside the limit. Above it the margin goes quickly: 0.97 is 32 cycles a beat,
#: 0.977 is 43 (past the limit on a long input-bound program), 0.99 is 85, and 1.0 gives
#: the level 256, which does not fit the 8-bit field.
MAX_PAUSE_PROBABILITY = 0.9


class RtlBackend:
    """Run programs on the generated Verilog in Verilator (or ``sim="icarus"``).

    A whole program runs in one simulator run, however long (up to the player's
    ``2 ** systolic.sim.runner.PLAYER_DEPTH_LOG2`` beats); the simulator is built by
    :meth:`prepare`, once for the instance, which :meth:`run` calls if need be. The
    built simulator is plain data, so an instance pickles into worker processes
    (``systolic.host.parallel``) ready to run.

    Parameters
    ----------
    config : CoreConfig
    sim : str, optional
        ``verilator`` (default) or ``icarus``.
    gap, stall : float
        Probability of an idle input cycle / a blocked output cycle, in
        ``[0, MAX_PAUSE_PROBABILITY]`` (0: none, which is what the cycle model predicts).
    seed : int
        Seed of the harness's pseudo-random pauses, in ``[0, 2**32)``.

    Raises
    ------
    BackendError
        An unknown simulator, or ``gap``/``stall``/``seed`` not a number in range; from
        :meth:`prepare` and :meth:`run`, a failed build or simulation.
    """

    name = "rtl"
    kind = "rtl"
    options = ("sim", "gap", "stall", "seed")

    def __init__(self, config, sim=None, gap=0.0, stall=0.0, seed=1):
        self.config = config
        try:
            self.sim = runner.simulator(sim)
        except runner.SimError as exc:
            raise BackendError(str(exc)) from None
        for name, p in (("gap", gap), ("stall", stall)):
            if (
                isinstance(p, bool)
                or not isinstance(p, numbers.Real)
                or not math.isfinite(p)
                or not 0 <= p <= MAX_PAUSE_PROBABILITY
            ):
                raise BackendError(
                    f"{self.name} backend: {name} must be a probability in "
                    f"[0, {MAX_PAUSE_PROBABILITY}], not {p!r}"
                )
        if (
            isinstance(seed, bool)
            or not isinstance(seed, numbers.Integral)
            or not 0 <= seed < 1 << 32
        ):
            raise BackendError(
                f"{self.name} backend: seed must be an integer in [0, 2**32), not {seed!r}"
            )
        self.gap, self.stall, self.seed = float(gap), float(stall), int(seed)
        self._simulator = None
        #: show a progress bar of the result beats while a run streams (set by
        #: ``host.run.run_images`` for a run of one shard in this process)
        self.progress = False

    def sources(self):
        """The netlist to simulate: None for the generated Verilog."""
        return None

    def prepare(self):
        """Build the simulator (or find it built and up to date on disk), once for this
        instance; returns it (a ``systolic.sim.runner.Simulator``)."""
        if self._simulator is None:
            try:
                self._simulator = runner.build(self.config, self.kind, self.sim, self.sources())
            except runner.SimError as exc:
                raise BackendError(str(exc)) from None
        return self._simulator

    def stream(self, beats):
        """Run raw program beats; returns ``(result beats, report)``."""
        simulator = self.prepare()
        try:
            return simulator.stream(
                [beats],
                gap=self.gap,
                stall=self.stall,
                seed=self.seed,
                progress=f"{self.name} {self.config.rows}x{self.config.cols}"
                if self.progress
                else None,
            )[0]
        except runner.SimError as exc:
            raise BackendError(str(exc)) from None

    def ceiling(self, beats):
        """Run raw program beats on Verilator's ceiling: the same harness around the
        same netlist, driven by a small C++ loop instead of cocotb
        (``systolic.sim.runner.run_ceiling``), without this instance's gaps and backpressure.
        Returns ``(result beats, report)``, as :meth:`stream`.

        Raises
        ------
        BackendError
            The simulator is not Verilator, or the build or the run failed.
        """
        if self.sim != "verilator":
            raise BackendError(f"{self.name} backend: the ceiling needs verilator, not {self.sim}")
        try:
            return runner.run_ceiling(self.config, beats, kind=self.kind, sources=self.sources())
        except runner.SimError as exc:
            raise BackendError(str(exc)) from None

    def run(self, program, inputs):
        from .base import Result

        program.check_config(self.config)
        self.prepare()
        start = time.perf_counter()
        beats = program.beats(inputs)
        out, report = self.stream(beats)
        outputs, status = program.parse_output(out, len(inputs))
        return Result(
            outputs=outputs,
            status=status,
            cycles=status["cycles"],
            predicted_cycles=predict(self.config, beats)["cycles"],
            wall_seconds=time.perf_counter() - start,
            sim_cycles=report["sim_cycles"],
            sim_seconds=report["sim_seconds"],
            out_beats=np.asarray(out),
        )


class GateBackend(RtlBackend):
    """The same harness on the technology-independent post-synthesis netlist."""

    name = "gate"
    kind = "gate"

    def sources(self):
        """The gate-level netlist (synthesized by :meth:`prepare` if need be)."""
        from systolic.sim.gate import gate_sources

        return gate_sources(self.config)
