"""The player: the cocotb entry that streams programs through the core for the backends.

:meth:`sim.runner.Simulator.stream` (what the rtl and gate backends run) writes a job
into a fresh directory, names it in ``PLAYER_DIR`` and runs :func:`play`, the one
entry of this module. The job (``job.json``) lists the programs (``.npy`` files of
uint8 beats ``[n, stream_bytes]``, in the same directory) and the pauses: ``gap`` and
``stall``, the probabilities of an idle input and a blocked output cycle, and the
``seed`` of the harness's pseudo-random pauses (``seed + i`` for program ``i``). The
harness's on-chip player streams each program in turn, one status packet after the
other, with nothing driven from Python between the beats; the result beats of program
``i`` go to ``results_<i>.npy`` and the report (``report.json``) lists, a program,
the result file, the simulated cycles and the seconds the simulator took.
"""

import json
import os

import cocotb
import numpy as np

from sim.runner import PLAYER_JOB, PLAYER_REPORT
from sim.tb import TB

__all__ = ["play"]


def _read_job(base):
    with open(os.path.join(base, PLAYER_JOB)) as f:
        return json.load(f)


def _write_report(base, report):
    with open(os.path.join(base, PLAYER_REPORT), "w") as f:
        json.dump(report, f)


@cocotb.test()
async def play(dut):
    """Stream every program of the job in ``PLAYER_DIR``; save each one's result beats."""
    base = os.environ["PLAYER_DIR"]
    job = _read_job(base)
    tb = TB(dut)
    await tb.reset()
    report = []
    for i, name in enumerate(job["programs"]):
        beats = np.load(os.path.join(base, name))
        out, cycles, seconds = await tb.run_player(
            beats, gap=job["gap"], stall=job["stall"], seed=job["seed"] + i
        )
        results = f"results_{i}.npy"
        np.save(os.path.join(base, results), out)
        report.append({"results": results, "sim_cycles": cycles, "sim_seconds": seconds})
    _write_report(base, report)
