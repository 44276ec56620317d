"""Synthesis, place and route with Yosys and nextpnr from pip: ``python -m systolic.hw.synth``.

``shell`` (:class:`SynthTop`, the core with a pin-light shell), ``targets`` (the
devices and the Yosys and nextpnr options for each), ``techmap`` (the ECP5 PE
multiplier as carry chains), ``run`` (runs the tools for one configuration, cached),
``reports`` (figures read back from the tools' reports; the table) and ``cli`` (the
default configurations and the command line).
"""

from .cli import DEFAULT_RUNS, DEFAULT_TIMEOUT_MIN, main
from .reports import _stat_ffs as _stat_ffs
from .reports import critical_path, parse_log_utilization, parse_report, slow_nets, table
from .run import _run as _run
from .run import _tool as _tool
from .run import synthesize
from .shell import SynthTop
from .targets import (
    PE_MULS,
    TARGETS,
    nextpnr_extra,
    pe_products_in_logic,
    yosys_files,
    yosys_script,
)
from .techmap import ecp5_mul_commands, ecp5_mul_techmap

__all__ = [
    "DEFAULT_RUNS",
    "DEFAULT_TIMEOUT_MIN",
    "PE_MULS",
    "TARGETS",
    "SynthTop",
    "critical_path",
    "ecp5_mul_commands",
    "ecp5_mul_techmap",
    "main",
    "nextpnr_extra",
    "parse_log_utilization",
    "parse_report",
    "pe_products_in_logic",
    "slow_nets",
    "synthesize",
    "table",
    "yosys_files",
    "yosys_script",
]
