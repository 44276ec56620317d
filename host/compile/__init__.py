"""From a quantized model to a program for the core.

:mod:`.plan` tiles the layers and fits the buffers, :mod:`.compiler` schedules the
instructions, :mod:`.program` is the program (its beats, its file, its checks) and
:mod:`.checks` the core's instruction checks.
"""

from .compiler import ROUNDINGS, compile_matmul, compile_model
from .plan import CompileError, max_batch
from .program import Program, ProgramError

__all__ = [
    "compile_model",
    "compile_matmul",
    "max_batch",
    "CompileError",
    "Program",
    "ProgramError",
    "ROUNDINGS",
]
