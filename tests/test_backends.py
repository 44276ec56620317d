"""rtl == model, byte for byte and cycle for cycle; both == the golden model."""

import numpy as np
import pytest

from systolic.host import golden
from systolic.host.backends import BackendError, get_backend
from systolic.host.backends.model import Machine
from systolic.host.backends.model.cycles import predict
from systolic.host.compile import compile_model
from systolic.host.compile.program import status_packet
from systolic.host.nn.data import load_mnist
from systolic.host.nn.qmodel import DEFAULT_QUANTIZED, QuantizedModel, random_quantized_model
from systolic.hw.config import CoreConfig
from systolic.hw.isa import Opcode, Target
from systolic.sim import runner

from .conftest import SIM_CONFIGS
from .test_cycles import MM, PP, _prog


def _programs(cfg):
    """Small networks, hand-timed programs and malformed ones, as beat streams."""
    progs = []
    for sizes, n, batch in [((37, 19, 5), 11, 4), ((20, 9, 13, 7), 5, 1)]:
        q = random_quantized_model(sizes, seed=n)
        x = np.random.default_rng(n).integers(-128, 128, (n, sizes[0])).astype(np.int8)
        progs.append(compile_model(q, cfg, batch).beats(x))
    progs.append(
        _prog(
            cfg,
            *[(Opcode.MATMUL, dict(MM, m=10), 0)] * 6,
            (Opcode.POSTPROC, dict(PP, m=2), 0),
            (Opcode.POSTPROC, dict(PP, m=3, raw=1), 0),
            (Opcode.SYNC, {}, 0),
            (Opcode.LOAD, dict(target=Target.BIAS, addr=0, count=2), 2),
            (Opcode.MATMUL, dict(MM, m=1), 0),
            (Opcode.END, {}, 0),
        )
    )
    progs.append(
        _prog(
            cfg,
            (Opcode.MATMUL, dict(MM, m=30), 0),
            (Opcode.MATMUL, dict(MM, m=0), 0),
            (Opcode.END, {}, 0),
        )
    )
    progs.append(_prog(cfg, (Opcode.LOAD, dict(target=Target.ACT, addr=0, count=9), 4)))
    return progs


@pytest.mark.rtl
@pytest.mark.parametrize("name", ["4x4", "3x5"])
def test_rtl_equals_model(name):
    cfg = SIM_CONFIGS[name]
    progs = _programs(cfg)
    machine = Machine(cfg)  # buffers persist from program to program, as in the core
    results = runner.stream_programs(cfg, progs)
    for i, (beats, (out, _)) in enumerate(zip(progs, results)):
        want, _ = machine.run(beats)
        np.testing.assert_array_equal(out, want, err_msg=f"program {i}", strict=True)
        status = status_packet(out)
        assert (status["error"], status["cycles"]) == (
            predict(cfg, beats)["error"],
            predict(cfg, beats)["cycles"],
        )
    assert int(results[3][0][-6, 0]) == 6 and int(results[4][0][-6, 0]) == 8  # errors


@pytest.mark.rtl
def test_rtl_mnist_default_config():
    """A handful of MNIST images through the default 8x8 core: outputs and cycles."""
    cfg = CoreConfig()
    q = QuantizedModel.load(DEFAULT_QUANTIZED)
    x = q.quantize_input(load_mnist().test_images[:20])
    prog = compile_model(q, cfg, 8)
    rtl = get_backend("rtl", cfg).run(prog, x)
    model = get_backend("model", cfg).run(prog, x)
    np.testing.assert_array_equal(rtl.outputs, golden.run(q, x), strict=True)
    np.testing.assert_array_equal(rtl.out_beats, model.out_beats, strict=True)
    assert rtl.cycles == rtl.predicted_cycles == model.cycles


@pytest.mark.rtl
def test_rtl_gaps_and_backpressure_keep_results():
    cfg = SIM_CONFIGS["4x4"]
    q = random_quantized_model((30, 11, 6), seed=3)
    x = np.random.default_rng(3).integers(-128, 128, (10, 30)).astype(np.int8)
    prog = compile_model(q, cfg, 4)
    res = get_backend("rtl", cfg, gap=0.3, stall=0.5, seed=7).run(prog, x)
    np.testing.assert_array_equal(res.outputs, golden.run(q, x), strict=True)
    assert res.status["stall_in_cycles"] > 0 and res.status["stall_out_cycles"] > 0
    assert res.cycles > res.predicted_cycles


@pytest.mark.rtl
def test_rtl_ceiling_equals_rtl():
    """Verilator's ceiling (the harness driven from C++) plays a program as the backend
    does: the same result beats, status packet included, and the same cycles."""
    cfg = SIM_CONFIGS["4x4"]
    q = random_quantized_model((30, 11, 6), seed=3)
    x = np.random.default_rng(3).integers(-128, 128, (10, 30)).astype(np.int8)
    beats = compile_model(q, cfg, 4).beats(x)
    backend = get_backend("rtl", cfg)
    out, report = backend.stream(beats)
    ceiling_out, ceiling = backend.ceiling(beats)
    np.testing.assert_array_equal(ceiling_out, out, strict=True)
    assert ceiling["sim_cycles"] == report["sim_cycles"]


def test_ceiling_needs_verilator():
    backend = get_backend("rtl", CoreConfig())
    backend.sim = "icarus"  # as if asked for; no build is attempted
    with pytest.raises(BackendError, match="rtl backend: the ceiling needs verilator, not icarus"):
        backend.ceiling(np.zeros((1, CoreConfig().stream_bytes), np.uint8))


def test_unknown_backend():
    with pytest.raises(BackendError, match="unknown backend 'fpga'"):
        get_backend("fpga", CoreConfig())
