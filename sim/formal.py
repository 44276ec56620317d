"""Formal proofs of the core's stream contract with SymbiYosys: ``systolic formal`` (or
``python -m systolic.sim.formal``).

Each proof wraps the whole :class:`systolic.hw.core.Core` in a :class:`StreamContract` (the core
plus the properties of one proof) whose inputs are free: any program-stream
tdata/tvalid/tlast and any result-stream tready, a new value every cycle, with no
AXI4-Stream assumption on the input side. :func:`write` puts its RTLIL and a ``.sby``
file into ``build/formal/<name>/``, :func:`run` runs ``yowasp-sby`` with yices on it.

``axis_out``
    once ``m_axis_tvalid`` is high it stays high until ``m_axis_tready``, and
    ``m_axis_tdata`` and ``m_axis_tlast`` do not change meanwhile.
``input_live``
    with ``m_axis_tready`` high at least once in every :data:`READY_EVERY` cycles and
    instructions of at most :data:`MAX_ROWS` rows, ``s_axis_tready`` is never low for
    more than :func:`stall_bound` cycles in a row while ``s_axis_tvalid`` is high.
``input_live_wait``
    the same with ``m_axis_tready`` high at least once in every :data:`WAIT_EVERY`
    cycles and otherwise free, on the configurations without the deep pipeline.
``error_sticky``
    an error code changes only by being cleared after the status packet's last beat;
    while it is set, no buffer is written and nothing is pushed into the engine queue.
``status_frame``
    a status packet is :data:`STATUS_BEATS` beats with tlast on the last only, no
    other beat has tlast, a status packet ends only while a frame (beats up to a
    tlast) waits for one, and at most one more frame than the input buffer holds waits.

Each proof's mode (:data:`PROOFS`) is ``prove``, k-induction (unbounded), or ``bmc``,
every input sequence up to the depth from reset. ``status_frame`` and ``input_live``
together give one status packet per frame: a frame left without a packet would let
the count of waiting frames pass its limit, and ``input_live`` keeps a frame from
waiting for ever. docs/ARCHITECTURE.md (Verification) has the assumptions and bounds.

Each proof must fail on a deliberately broken variant of the design (:data:`FAULTS`),
which shows that it is not vacuous; ``input_live_wait`` must also fail with its bound
lowered by :data:`TOO_SMALL` cycles (``--bound-cut``), which shows that the bound is
close to the longest stall.
"""

import concurrent.futures
import dataclasses
import os
import pathlib
import re
import shutil
import subprocess
import sys
import time

import click
from amaranth.back import rtlil
from amaranth.hdl import Assert, Assume, Mux, ResetSignal, Signal
from amaranth.lib import data, wiring

from systolic.hw import isa
from systolic.hw.cli import CONTEXT_SETTINGS, CliError
from systolic.hw.cli import run as run_command
from systolic.hw.config import CoreConfig
from systolic.hw.core import Core
from systolic.hw.frontend import input_beats
from systolic.hw.isa import ErrorCode, Opcode
from systolic.hw.payloads import QUEUED

__all__ = [
    "CONFIGS",
    "MAX_ROWS",
    "READY_EVERY",
    "STATUS_BEATS",
    "Proof",
    "PROOFS",
    "Fault",
    "FAULTS",
    "WAIT_EVERY",
    "TOO_SMALL",
    "applies",
    "StreamContract",
    "Result",
    "stall_bound",
    "write",
    "run",
    "table",
    "command",
    "main",
]

#: Where the proofs are written and run: under the working directory's build/.
BUILD = pathlib.Path("build", "formal")

#: The smallest legal buffers, two array shapes, both pipelines.
_SMALL = dict(act_kib=1, hidden_kib=1, weight_kib=1, acc_kib=1, param_depth=1, queue_depth=2)
CONFIGS = {
    f"{rows}x{cols}-{'deep' if deep else 'shallow'}": CoreConfig(
        rows=rows, cols=cols, deep_pipeline=deep, **_SMALL
    )
    for rows, cols in ((2, 2), (3, 2))
    for deep in (True, False)
}

#: ``input_live`` assumes that every instruction the engine receives has at most this
#: many rows (``m``; the ISA allows ``MAX_ROWS_PER_OP``, far too deep for the proof) ...
MAX_ROWS = 2
#: ... and that ``m_axis_tready`` is high at least once in every this many cycles: 1,
#: always ready.
READY_EVERY = 1
#: ``input_live_wait`` is ``input_live`` with ``m_axis_tready`` high at least once in
#: every this many cycles and otherwise free, on the configurations without the deep
#: pipeline only: with it, finished rows pile up in the output FIFO, each adding to the
#: stall, and filling the FIFO from reset takes more cycles than a bounded check can
#: afford (docs/ARCHITECTURE.md).
WAIT_EVERY = 2
#: ``input_live_wait`` fails on the 2x2 core without the deep pipeline once its bound is
#: lowered by this many cycles (and passes lowered by one cycle less).
TOO_SMALL = 5
#: Status packet length in beats.
STATUS_BEATS = len(isa.STATUS_FIELDS)


# -- bounds and depths ----------------------------------------------------------------
def _in_buffer_beats(cfg):
    """Program beats the front end holds before its decoder (its input stage and
    buffer)."""
    return input_beats(cfg)


def stall_bound(cfg, max_rows=MAX_ROWS, ready_every=READY_EVERY):
    """Most consecutive cycles ``s_axis_tready`` may be low while ``s_axis_tvalid`` is high.

    The front end waits longest after taking a beat that ends a frame with an error:
    it waits for the engine to finish the instruction it runs and the ``queue_depth``
    queued ones, then for the status packet to be taken. Each instruction takes at
    most its rows (``raw_beats`` result beats each, each waiting at most
    ``ready_every`` cycles for ``m_axis_tready``), the drain of the longer pipeline
    (before an instruction of the other kind starts, or before the engine is idle)
    and its pop; each status beat waits at most ``ready_every`` cycles. The input
    buffer (deep pipeline) frees its port one cycle after the front end takes a beat.

    With ``ready_every > 1`` and no deep pipeline, rows of earlier instructions held in
    the post-processing pipeline wait for the output too; for ``ready_every = 2`` the
    slack of the bound absorbs them (the longer drain counted for every instruction, the
    output wait for MATMUL rows too), as ``input_live_wait`` shows by BMC: the longest
    stall is 4 cycles shorter on the 2x2 core. With the deep pipeline a FIFO of finished
    rows can wait as well, which the bound leaves out: it is not claimed there for
    ``ready_every > 1``.
    """
    instruction = (
        max_rows * cfg.raw_beats * ready_every + max(cfg.array_latency, cfg.postproc_latency) + 1
    )
    engine = (cfg.queue_depth + 1) * instruction
    return engine + STATUS_BEATS * ready_every + (2 if cfg.deep_pipeline else 1)


def _setup_cycles(cfg):
    """Cycles from reset in which the inputs can set up the longest stall: fill the
    engine, the queue and the input buffer, take the beat that ends the frame, with
    room for the output to hold the first rows back."""
    return _in_buffer_beats(cfg) + cfg.queue_depth + 8


def _most_frames(cfg):
    """Most frames that can wait for a status packet: one whose packet is due, and one
    a beat in the input buffer."""
    return 1 + _in_buffer_beats(cfg)


@dataclasses.dataclass(frozen=True)
class Proof:
    """One proof: ``plan(cfg)`` gives its mode, ``prove`` (k-induction, unbounded) or
    ``bmc`` (every input sequence of ``depth`` cycles from reset), and its depth, or
    None where the proof does not apply to ``cfg``."""

    statement: str
    plan: object


def _axis_out_plan(cfg):
    if cfg.deep_pipeline:
        # k-induction needs more steps than the post-processing pipeline has (its valid
        # bits may start in any state) and than the status packet has beats
        return "prove", cfg.postproc_latency + 3
    # Without the deep pipeline a row waiting at the output holds post-processing with
    # the rows behind it; k-induction would need the pipeline's stage valids, which
    # hw/postproc.py does not show. Instead: a result row and a status packet, twice.
    return "bmc", 2 * (cfg.postproc_latency + STATUS_BEATS) + 6


PROOFS = {
    "axis_out": Proof(
        "result stream: tvalid held, tdata/tlast stable until tready", _axis_out_plan
    ),
    # beyond the bound, from every state the inputs can reach in the setup cycles
    "input_live": Proof(
        "s_axis_tready low at most stall_bound cycles",
        lambda cfg: ("bmc", stall_bound(cfg) + _setup_cycles(cfg)),
    ),
    # not for the deep pipeline: see WAIT_EVERY
    "input_live_wait": Proof(
        f"s_axis_tready low at most stall_bound cycles, tready every {WAIT_EVERY} cycles",
        lambda cfg: (
            None
            if cfg.deep_pipeline
            else ("bmc", stall_bound(cfg, ready_every=WAIT_EVERY) + _setup_cycles(cfg))
        ),
    ),
    # deep enough for a beat to pass the input stages, set an error and write a cycle
    # later from reset, so that a write after the error is found by the base case
    "error_sticky": Proof(
        "error sticky until the status packet; no write or push after it",
        lambda cfg: ("prove", max(6, 2 + _in_buffer_beats(cfg))),
    ),
    # a frame left without a status packet, then every frame the core can hold, then
    # a status packet
    "status_frame": Proof(
        "status packet: STATUS_BEATS beats, tlast on the last, one per frame",
        lambda cfg: ("bmc", STATUS_BEATS + 2 * (_most_frames(cfg) + 1) + 8),
    ),
}


def applies(proof, config):
    """Whether ``proof`` is run on the configuration named ``config``."""
    return PROOFS[proof].plan(CONFIGS[config]) is not None


# -- broken variants --------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Fault:
    """A deliberately broken variant of the design: ``inject(m, core)`` rewires one
    connection in the core's top module; ``breaks`` names the proof that must fail, as
    bmc to ``depth(cfg)`` cycles (default: the proof's depth)."""

    breaks: str
    description: str
    inject: object
    depth: object = None


def _valid_hiccup(m, core):
    # a result beat's tvalid drops for one cycle while it waits for tready
    result = m.submodules.engine.o_result
    hiccup = Signal()
    m.d.sync += hiccup.eq(result.valid & ~core.m_axis_tready & ~hiccup)
    with m.If(~m.submodules.frontend.o_status.valid):
        m.d.comb += core.m_axis_tvalid.eq(result.valid & ~hiccup)


def _idle_lost(m, core):
    # "engine idle" as the front end sees it also wants a queued instruction, which the
    # engine's idle excludes: SYNC, END and the status packet wait for ever
    m.d.comb += m.submodules.frontend.engine.idle.eq(
        m.submodules.engine.state.idle & m.submodules.queue.r_stream.valid
    )


def _write_after_error(m, core):
    # the weight buffer written by every beat taken while an error is held
    fe = m.submodules.frontend
    m.d.comb += m.submodules.weights.write.en.eq(
        fe.weight_write.en
        | ((fe.error != ErrorCode.NONE) & core.s_axis_tvalid & core.s_axis_tready)
    )


def _status_no_tlast(m, core):
    # the status packet's last beat without tlast
    with m.If(m.submodules.frontend.o_status.valid):
        m.d.comb += core.m_axis_tlast.eq(0)


def _packet_lost(m, core):
    # the status packet taken from the front end but never shown on the result stream:
    # a frame without a status packet
    status = m.submodules.frontend.o_status
    with m.If(status.valid):
        m.d.comb += core.m_axis_tvalid.eq(0)
    m.d.comb += status.ready.eq(1)


FAULTS = {
    # a k-induction depth is too short for a result row to reach the output from reset
    "valid_hiccup": Fault(
        "axis_out",
        "result tvalid drops for a cycle while waiting",
        _valid_hiccup,
        lambda cfg: 2 * cfg.postproc_latency,
    ),
    "idle_lost": Fault("input_live", "front end never sees the engine idle (deadlock)", _idle_lost),
    "write_after_error": Fault(
        "error_sticky", "weight write enable not gated by the error", _write_after_error
    ),
    "status_no_tlast": Fault(
        "status_frame", "no tlast on the status packet's last beat", _status_no_tlast
    ),
    "packet_lost": Fault(
        "status_frame", "a frame's status packet never leaves the core", _packet_lost
    ),
}


# -- the harness ------------------------------------------------------------------------
def _check_name(what, name, choices):
    if name not in choices:
        raise ValueError(f"{what} must be one of {', '.join(choices)}, not {name!r}")


def _counter(m, name, limit, inc, clear):
    """A counter that stops at ``limit``: cleared by ``clear``, else counts ``inc``."""
    count = Signal(range(limit + 1), name=name)
    with m.If(clear):
        m.d.sync += count.eq(0)
    with m.Elif(inc & (count != limit)):
        m.d.sync += count.eq(count + 1)
    return count


class StreamContract(Core):
    """The core with the properties of one proof, and optionally a fault.

    Its ports are the core's: under SymbiYosys its inputs are free, a new value every
    cycle. The reset is held low: a proof starts in the reset state and covers every
    input sequence from there. The properties observe the core's ports, and the front
    end's, the weight buffer's and the queue's for the buffer writes, the queue push
    and which result beats belong to a status packet.

    Parameters
    ----------
    cfg : CoreConfig
    proof : str
        A key of :data:`PROOFS`.
    fault : str, optional
        A key of :data:`FAULTS`: the design is broken in that way.
    max_rows, ready_every : int
        The assumptions of ``input_live`` (:data:`MAX_ROWS`, :data:`READY_EVERY`);
        ``input_live_wait`` takes :data:`WAIT_EVERY` for ``ready_every``.
    bound_cut : int
        ``input_live`` and ``input_live_wait`` check :func:`stall_bound` less this.

    Raises
    ------
    ValueError
        On an unknown proof or fault.
    """

    def __init__(
        self, cfg, proof, *, fault=None, max_rows=MAX_ROWS, ready_every=READY_EVERY, bound_cut=0
    ):
        _check_name("proof", proof, PROOFS)
        if fault is not None:
            _check_name("fault", fault, FAULTS)
        super().__init__(cfg)
        self.proof = proof
        self.fault = fault
        self.max_rows = max_rows
        self.ready_every = ready_every
        self.bound_cut = bound_cut

    def elaborate(self, platform):
        m = super().elaborate(platform)
        m.d.comb += Assume(~ResetSignal())
        if self.fault is not None:
            FAULTS[self.fault].inject(m, self)
        parts = (m.submodules[name] for name in ("frontend", "queue", "weights"))
        getattr(self, f"_{self.proof}")(m, *parts)
        return m

    @staticmethod
    def _check(m, test, name):
        m.d.comb += Assert(test, name, src_loc_at=1)

    @staticmethod
    def _pushed(queue):
        """An instruction goes into the engine queue in this cycle."""
        return queue.w_stream.valid & queue.w_stream.ready

    def _packet_end(self):
        return self.m_axis_tvalid & self.m_axis_tready & self.m_axis_tlast

    def _axis_out(self, m, fe, queue, wbuf):
        waiting = Signal()
        held_data, held_last = Signal.like(self.m_axis_tdata), Signal()
        m.d.sync += [
            waiting.eq(self.m_axis_tvalid & ~self.m_axis_tready),
            held_data.eq(self.m_axis_tdata),
            held_last.eq(self.m_axis_tlast),
        ]
        with m.If(waiting):
            self._check(m, self.m_axis_tvalid, "m_axis_tvalid held until tready")
            self._check(m, self.m_axis_tdata == held_data, "m_axis_tdata stable while waiting")
            self._check(m, self.m_axis_tlast == held_last, "m_axis_tlast stable while waiting")

    def _input_live(self, m, fe, queue, wbuf, ready_every=None):
        # the environment: a result stream that takes a beat at least every ready_every
        # cycles, instructions of at most max_rows rows
        ready_every = ready_every or self.ready_every
        not_ready = _counter(m, "not_ready", ready_every, ~self.m_axis_tready, self.m_axis_tready)
        m.d.comb += Assume(self.m_axis_tready | (not_ready < ready_every - 1))
        instr = data.View(QUEUED, queue.w_stream.payload).instr
        with m.If(self._pushed(queue)):
            m.d.comb += Assume(
                Mux(instr.bare.op == Opcode.MATMUL, instr.matmul.m, instr.postproc.m)
                <= self.max_rows
            )

        limit = stall_bound(self.cfg, self.max_rows, ready_every) - self.bound_cut
        stalled = self.s_axis_tvalid & ~self.s_axis_tready
        stall = _counter(m, "stall", limit, stalled, ~stalled)
        self._check(m, ~stalled | (stall < limit), "s_axis_tready low at most stall_bound cycles")

    def _input_live_wait(self, m, fe, queue, wbuf):
        self._input_live(m, fe, queue, wbuf, WAIT_EVERY)

    def _error_sticky(self, m, fe, queue, wbuf):
        prev_error, prev2_error, after_packet = Signal(ErrorCode), Signal(ErrorCode), Signal()
        m.d.sync += [
            prev_error.eq(self.error),
            prev2_error.eq(prev_error),
            after_packet.eq(self._packet_end()),
        ]
        with m.If(after_packet):
            self._check(m, self.error == ErrorCode.NONE, "error cleared after the status packet")
        with m.Elif(prev_error != ErrorCode.NONE):
            self._check(m, self.error == prev_error, "error held until the status packet")
        # an input or weight buffer write lands the cycle after its beat is taken
        # (registered write ports), a parameter write two cycles after (hw/frontend.py:
        # the parameter lanes' data passes a stage of its own first)
        with m.If(prev_error != ErrorCode.NONE):
            self._check(
                m,
                ~fe.act_write.en & ~wbuf.write.en,
                "no buffer written for a beat taken while an error is held",
            )
        with m.If(prev2_error != ErrorCode.NONE):
            self._check(
                m,
                ~fe.bias_write.en.any() & ~fe.scale_write.en.any(),
                "no parameter written for a beat taken while an error is held",
            )
        with m.If(self.error != ErrorCode.NONE):
            self._check(m, ~self._pushed(queue), "nothing queued while an error is held")

    def _status_frame(self, m, fe, queue, wbuf):
        m_fire = self.m_axis_tvalid & self.m_axis_tready
        packet_end = self._packet_end()
        status = fe.o_status.valid
        beat = _counter(m, "status_beat", STATUS_BEATS, m_fire & status, packet_end)
        with m.If(self.m_axis_tvalid & ~status):
            self._check(m, ~self.m_axis_tlast, "no tlast on a result beat")
        with m.If(m_fire & status):
            self._check(
                m,
                self.m_axis_tlast == (beat == STATUS_BEATS - 1),
                "status packet: tlast on its last beat only",
            )
        # frames whose tlast beat was taken, less the status packets sent
        most = _most_frames(self.cfg)
        frames = Signal(range(most + 2))
        frame_end = self.s_axis_tvalid & self.s_axis_tready & self.s_axis_tlast
        m.d.sync += frames.eq(frames + frame_end - packet_end)
        with m.If(packet_end):
            self._check(m, frames != 0, "no status packet without a frame")
        self._check(m, frames <= most, "frames waiting for a status packet bounded")


# -- running SymbiYosys -----------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Result:
    """The outcome of one proof: ``status`` is PASS, FAIL, UNKNOWN (induction failed),
    TIMEOUT or ERROR; ``failed`` names the properties that failed; ``log`` is the path
    of SymbiYosys's output."""

    name: str
    proof: str
    config: str
    fault: str | None
    mode: str
    depth: int
    status: str
    seconds: float
    failed: tuple = ()
    log: str = ""
    bound_cut: int = 0


def _name(proof, config, fault=None, bound_cut=0):
    return "-".join(filter(None, (proof, config, fault, bound_cut and f"cut{bound_cut}")))


def _sby_text(mode, depth, outputs):
    # The properties read nothing through the core's outputs as ports: without them,
    # what lies outside the properties' cone (the datapath, the data buffers) goes, and
    # the small FIFOs become registers whose unread bits go too.
    ports = " ".join(f"top/{name}" for name in outputs)
    return f"""[options]
mode {mode}
depth {depth}

[engines]
smtbmc --nopresat yices

[script]
read_rtlil design.il
prep -top top
flatten
delete -port {ports}
opt_clean
memory_map t:$mem_v2 r:SIZE<=16 %i
opt -fast
splitcells
splitnets
opt_clean

[files]
design.il
"""


def _plan(proof, cfg, fault):
    mode, depth = PROOFS[proof].plan(cfg)
    if fault is None:
        return mode, depth
    # a broken variant runs as bmc: its failure must be a trace from reset
    return "bmc", FAULTS[fault].depth(cfg) if FAULTS[fault].depth else depth


def write(proof, config, fault=None, root=BUILD, bound_cut=0):
    """Write ``design.il`` and ``<proof>.sby`` into ``root/<name>/``; return the folder.

    Raises
    ------
    ValueError
        On an unknown proof, configuration or fault.
    """
    _check_name("proof", proof, PROOFS)
    _check_name("configuration", config, CONFIGS)
    if fault is not None:
        _check_name("fault", fault, FAULTS)
    if not applies(proof, config):
        raise ValueError(f"proof {proof} does not apply to configuration {config}")
    cfg = CONFIGS[config]
    top = StreamContract(cfg, proof, fault=fault, bound_cut=bound_cut)
    mode, depth = _plan(proof, cfg, fault)
    outputs = [name for name, member in top.signature.members.items() if member.flow == wiring.Out]
    folder = pathlib.Path(root) / _name(proof, config, fault, bound_cut)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    (folder / "design.il").write_text(rtlil.convert(top, platform="formal"))
    (folder / f"{proof}.sby").write_text(_sby_text(mode, depth, outputs))
    (folder / "config.json").write_text(cfg.to_json() + "\n")
    return folder


def _tool_dirs():
    """The folders with ``yowasp-sby`` and ``yices-smt2``: the interpreter's, else PATH."""
    here = os.path.dirname(sys.executable)
    dirs = []
    for name in ("yowasp-sby", "yices-smt2"):
        path = os.path.join(here, name)
        if not os.path.exists(path):
            path = shutil.which(name)
            if path is None:
                raise FileNotFoundError(f"{name} not found beside {sys.executable} or on PATH")
        dirs.append(os.path.dirname(path))
    return dirs


def _property_names(il_text):
    """``{source location: message}`` of every assertion in an RTLIL text."""
    names, src, cell = {}, None, None
    for line in map(str.strip, il_text.splitlines()):
        if line.startswith("attribute \\src "):
            src = line.split(" ", 2)[2].strip('"')
        elif line.startswith("cell $check "):
            cell = src
        elif cell is not None and line.startswith("parameter \\FORMAT "):
            names.setdefault(cell, line.split(" ", 2)[2].strip('"') or cell)
        elif line == "end":
            cell = None
    return names


_FAILED = re.compile(r"failed assertion (\S+) at (\S+?)(?: step \d+)?$")


#: seconds one proof may take: ``status_frame`` on the deep cores (bmc 28) takes about
#: 16 minutes of a core since the input buffer's first word falls through
#: (docs/ARCHITECTURE.md)
PROOF_TIMEOUT = 2400


def run(proof, config, fault=None, root=BUILD, timeout=PROOF_TIMEOUT, bound_cut=0):
    """Write and run one proof; return its :class:`Result`."""
    start = time.monotonic()
    folder = write(proof, config, fault, root, bound_cut)
    mode, depth = _plan(proof, CONFIGS[config], fault)
    sby_dir, yices_dir = _tool_dirs()
    tools = {
        tool: os.path.join(sby_dir, f"yowasp-{tool}")
        for tool in ("yosys", "yosys-smtbmc", "yosys-witness")
    }
    cmd = [
        os.path.join(sby_dir, "yowasp-sby"),
        "-f",
        "--yosys",
        tools["yosys"],
        "--smtbmc",
        tools["yosys-smtbmc"],
        "--witness",
        tools["yosys-witness"],
        f"{proof}.sby",
    ]
    env = dict(os.environ, PATH=os.pathsep.join([sby_dir, yices_dir, os.environ.get("PATH", "")]))
    with open(folder / "sby.log", "w") as log:
        try:
            rc = subprocess.run(
                cmd, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=timeout
            ).returncode
        except subprocess.TimeoutExpired:
            rc = None
    text = (folder / "sby.log").read_text()
    status = "TIMEOUT" if rc is None else "ERROR"
    for word in ("PASS", "FAIL", "UNKNOWN", "TIMEOUT", "ERROR"):
        if f"DONE ({word}" in text:
            status = word
            break
    names = _property_names((folder / "design.il").read_text())
    failed = []
    for line in text.splitlines():
        match = _FAILED.search(line)
        if match and names.get(match[2], match[2]) not in failed:
            failed.append(names.get(match[2], match[2]))
    return Result(
        _name(proof, config, fault, bound_cut),
        proof,
        config,
        fault,
        mode,
        depth,
        status,
        time.monotonic() - start,
        tuple(failed),
        str(folder / "sby.log"),
        bound_cut,
    )


def table(results):
    """A Markdown table of results; a broken variant's line says what failed."""
    lines = [
        "| proof | configuration | mode | depth | result | seconds |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        proof = r.proof if r.fault is None else f"{r.proof} / broken: {r.fault}"
        if r.bound_cut:
            proof += f" / bound -{r.bound_cut}"
        result = r.status if not r.failed else f"{r.status}: {'; '.join(r.failed)}"
        lines.append(
            f"| {proof} | {r.config} | {r.mode} | {r.depth} | {result} | {r.seconds:.1f} |"
        )
    return "\n".join(lines)


def _ok(result):
    """A proof must pass; a broken variant, or a proof with its bound cut, must fail on
    its own proof's property."""
    if result.fault is None and not result.bound_cut:
        return result.status == "PASS"
    return result.status == "FAIL" and bool(result.failed)


@click.command("formal", context_settings=CONTEXT_SETTINGS)
@click.option(
    "--proof",
    "proof",
    multiple=True,
    type=click.Choice(sorted(PROOFS)),
    show_default="all",
    help="run only this proof (repeatable)",
)
@click.option(
    "--core",
    "core",
    multiple=True,
    type=click.Choice(sorted(CONFIGS)),
    show_default="all",
    help="run only this core configuration (repeatable)",
)
@click.option(
    "--faults", is_flag=True, help="also run each proof on its broken variant (must fail)"
)
@click.option(
    "--bound-cut",
    type=int,
    default=0,
    metavar="N",
    help="lower the stall bound of input_live and input_live_wait by N cycles (the runs "
    "must then fail)",
)
@click.option("--jobs", type=int, default=2, help="proofs run at once")
def command(
    proof: tuple[str, ...], core: tuple[str, ...], faults: bool, bound_cut: int, jobs: int
) -> int:
    """Prove the core's stream contract with SymbiYosys on small cores (2x2 and 3x2, both
    pipelines); the work goes to build/formal/<proof>/."""
    if jobs < 1:
        raise CliError(f"--jobs must be at least 1, not {jobs}")
    if bound_cut < 0:
        raise CliError(f"--bound-cut must not be negative, not {bound_cut}")
    proofs = list(proof) or list(PROOFS)
    configs = list(core) or list(CONFIGS)
    if bound_cut:
        proofs = [p for p in proofs if p.startswith("input_live")]
    todo = [(p, c, None) for p in proofs for c in configs if applies(p, c)]
    if faults:
        todo += [(f.breaks, configs[0], name) for name, f in FAULTS.items() if f.breaks in proofs]
    start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        results = list(pool.map(lambda job: run(*job, bound_cut=bound_cut), todo))
    print(table(results))
    print(f"\n{len(results)} runs in {time.monotonic() - start:.0f} s")
    bad = [r.name for r in results if not _ok(r)]
    if bad:
        print(f"failed: {', '.join(bad)}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m systolic.sim.formal``: the same command as ``systolic formal``."""
    return run_command(command, argv, prog_name="python -m systolic.sim.formal")


if __name__ == "__main__":
    sys.exit(main())
