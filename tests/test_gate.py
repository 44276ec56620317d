"""The gate-level backend: the synthesized netlist runs the same benches and programs."""

import numpy as np
import pytest

from systolic.host import golden
from systolic.host.backends import get_backend
from systolic.host.compile import compile_model, max_batch
from systolic.host.nn.data import load_mnist
from systolic.host.nn.qmodel import DEFAULT_QUANTIZED, QuantizedModel, random_quantized_cnn
from systolic.sim import runner
from systolic.sim.gate import gate_config, gate_sources

pytestmark = pytest.mark.gate


def test_gate_netlist_is_gates():
    text = gate_sources(gate_config(4, 4))[0].read_text()
    # no multiplier or adder survives as an operator: the datapath is single-bit logic
    assert " * " not in text and " + " not in text
    assert text.count("always @(posedge clk)") > 1000 and text.count(" ^ ") > 1000


def test_gate_corner_bench():
    cfg = gate_config(4, 4)
    tests, failed = runner.run(cfg, "corners", kind="gate", sources=gate_sources(cfg), check=False)
    assert tests == 1 and failed == 0


def test_gate_mnist_matches_golden_and_rtl_cycles():
    cfg = gate_config(4, 4)
    q = QuantizedModel.load(DEFAULT_QUANTIZED)
    x = q.quantize_input(load_mnist().test_images[:6])
    prog = compile_model(q, cfg, max_batch(q, cfg))
    assert not prog.header["weights_resident"]  # small buffers: weights streamed
    gate = get_backend("gate", cfg).run(prog, x)
    np.testing.assert_array_equal(gate.outputs, golden.run(q, x), strict=True)
    rtl = get_backend("rtl", cfg).run(prog, x)
    assert gate.cycles == rtl.cycles == gate.predicted_cycles
    np.testing.assert_array_equal(gate.out_beats, rtl.out_beats, strict=True)


def test_gate_cnn_matches_golden_and_rtl():
    """A small CNN (patches, a padded map, pooling into the same words, NCHW flattening)
    on the netlist: outputs, beats and cycles as the RTL's and the model's."""
    cfg = gate_config(4, 4)
    q = random_quantized_cnn(
        (1, 8, 8),
        [dict(out=4, kernel=3, padding=1, pool=2), dict(out=4, kernel=3, padding=1, pool=2)],
        [3],
        seed=1,
    )
    x = np.random.default_rng(1).integers(-128, 128, (3, q.in_features)).astype(np.int8)
    prog = compile_model(q, cfg, 2)
    gate = get_backend("gate", cfg).run(prog, x)
    np.testing.assert_array_equal(gate.outputs, golden.run(q, x), strict=True)
    rtl = get_backend("rtl", cfg).run(prog, x)
    assert gate.cycles == rtl.cycles == gate.predicted_cycles
    np.testing.assert_array_equal(gate.out_beats, rtl.out_beats, strict=True)
