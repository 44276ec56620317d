"""The host side, by data flow: ``nn`` (data, training, the PyTorch front end, PT2E
quantization, the quantized model) -> ``compile`` (plan, compiler, program) ->
``backends`` (model, rtl, gate, board) -> ``run`` and ``metrics`` -> ``bench``, ``api`` and
``cli``; ``golden`` is the reference at every level.

``systolic.host.accelerate(model, calibration)`` is the one call for your own network (see
:mod:`systolic.host.api`).
"""

__all__ = ["accelerate", "Accelerator"]


def __getattr__(name):
    # lazily, so that importing a light module (systolic.host.golden, systolic.host.cli) does not
    # load torch
    if name in __all__:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'systolic.host' has no attribute {name!r}")
