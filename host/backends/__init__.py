"""Backends: one protocol, ``run(program, inputs) -> Result``.

``model`` (numpy, bit-accurate and cycle-predicting), ``rtl`` (the generated Verilog
in Verilator) and ``gate`` (the post-synthesis netlist in Verilator).
"""

from .base import Backend, BackendError, Result
from .registry import BACKENDS, default_config, get_backend

__all__ = ["BACKENDS", "Backend", "BackendError", "Result", "default_config", "get_backend"]
