"""The backend protocol and its result."""

import dataclasses

import numpy as np

__all__ = ["Result", "BackendError", "BACKENDS", "get_backend"]

BACKENDS = ("model", "rtl", "gate")


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


def get_backend(name, config, **options):
    """An instance of backend ``name`` for ``config``; never silently another one.

    ``options`` go to the backend's constructor: none for ``model``; ``sim``, ``gap``,
    ``stall`` and ``seed`` for ``rtl`` and ``gate`` (see ``RtlBackend``).

    Raises
    ------
    BackendError
        An unknown backend, an option the backend does not take (by name), or an
        option value it refuses.
    """
    if name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r}; expected one of {', '.join(BACKENDS)}")
    if name == "model":
        from .model import ModelBackend as cls
    elif name == "rtl":
        from .rtl import RtlBackend as cls
    else:
        from .rtl import GateBackend as cls
    allowed = getattr(cls, "options", ())
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        takes = f"takes only {', '.join(allowed)}" if allowed else "takes no options"
        raise BackendError(f"the {name} backend {takes}; not {', '.join(unknown)}")
    return cls(config, **options)
