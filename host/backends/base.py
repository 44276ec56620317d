"""The backend protocol and its result."""

import dataclasses
from typing import Protocol

import numpy as np

__all__ = ["Backend", "Result", "BackendError"]


class BackendError(RuntimeError):
    """A backend could not run (unknown name, missing simulator, failed simulation)."""


@dataclasses.dataclass
class Result:
    """What a backend returns for one run of a program.

    Members
    -------
    outputs : ndarray
        int8 ``[n, out_features]`` (int32 for raw programs); None after a core error.
    status : dict
        The status packet: ``error`` and the counters of ``isa.STATUS_FIELDS``.
    cycles : int
        Core cycles (the status packet's ``cycles``).
    predicted_cycles : int
        The cycle model's prediction for the same stream.
    wall_seconds : float
    sim_cycles, sim_seconds : int, float
        Simulated clock cycles and the seconds the simulator took (0 for ``model``).
    out_beats : ndarray
        Every result beat, uint8 ``[n, stream_bytes]``, for byte-level comparisons.
    """

    outputs: np.ndarray
    status: dict
    cycles: int
    predicted_cycles: int
    wall_seconds: float
    sim_cycles: int = 0
    sim_seconds: float = 0.0
    out_beats: np.ndarray = None

    @property
    def error(self):
        return self.status["error"]


class Backend(Protocol):
    """What every backend is: built for one :class:`systolic.hw.config.CoreConfig`.

    ``prepare()`` does the one-time work (a simulator build), ``run`` checks that the
    program was compiled for this configuration, streams it with its inputs and parses
    the output; ``stream`` runs raw program beats and returns the result beats.
    """

    name: str
    options: tuple

    def prepare(self) -> None: ...

    def run(self, program, inputs: np.ndarray) -> Result: ...

    def stream(self, beats: np.ndarray) -> tuple: ...
