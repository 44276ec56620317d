"""Helpers that are not hardware, shared by ``hw``, ``sim`` and ``host``.

A subpackage, so that :func:`systolic.hw.generate.source_hash` (which hashes the ``hw/*.py``
files, the hardware description) does not change when a helper does: build caches
(Verilog, simulators, synthesis) stay valid.
"""
