"""The ``model`` backend: the core's behaviour (:mod:`.machine`) and exact timing
(:mod:`.cycles`) in numpy, sharing no code with the hardware description."""

from .cycles import check_instruction, predict, walk
from .machine import Machine, ModelBackend

__all__ = ["Machine", "ModelBackend", "check_instruction", "predict", "walk"]
