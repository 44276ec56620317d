"""Backends: one protocol, ``run(program, inputs) -> Result``.

``model`` (numpy, bit-accurate and cycle-predicting), ``rtl`` (the generated Verilog
in Verilator) and ``gate`` (the post-synthesis netlist in Verilator).
"""

from .base import BACKENDS, BackendError, Result, get_backend

__all__ = ["BACKENDS", "BackendError", "Result", "get_backend"]
