"""The backends by name: :func:`get_backend` is the only place that picks one."""

from systolic.hw.config import CoreConfig

from .base import Backend, BackendError

__all__ = ["BACKENDS", "get_backend", "default_config"]

#: Every backend, by the name the CLI and the API take.
BACKENDS = ("model", "rtl", "gate", "board")


def get_backend(name: str, config: CoreConfig, **options) -> Backend:
    """An instance of backend ``name`` for ``config``; never silently another one.

    ``options`` go to the backend's constructor: none for ``model``; ``sim``, ``gap``,
    ``stall`` and ``seed`` for ``rtl`` and ``gate`` (see ``RtlBackend``); ``port``,
    ``baud`` and ``max_beats`` for ``board`` (see ``BoardBackend``).

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
    elif name == "board":
        from .board import BoardBackend as cls
    else:
        from .rtl import GateBackend as cls
    allowed = cls.options
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        takes = f"takes only {', '.join(allowed)}" if allowed else "takes no options"
        raise BackendError(f"the {name} backend {takes}; not {', '.join(unknown)}")
    return cls(config, **options)


def default_config(name: str, rows: int, cols: int) -> CoreConfig:
    """The configuration backend ``name`` runs for a ``rows x cols`` array unless told
    otherwise: small buffers for ``gate`` (a netlist simulates slowly), else the defaults."""
    if name == "gate":
        from systolic.sim.gate import gate_config

        return gate_config(rows, cols)
    return CoreConfig(rows=rows, cols=cols)
