"""The host side, by data flow: ``nn`` (data, training, quantization, the quantized model)
-> ``compile`` (plan, compiler, program) -> ``backends`` (model, rtl, gate) -> ``run``
and ``metrics`` -> ``bench`` and ``cli``; ``golden`` is the reference at every level."""
