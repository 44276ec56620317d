"""The whole board top in Verilator, driven over its UART pins by the host's own link code
(``sim/board_tb.py``): results byte-equal to the rtl backend's, through injected byte
errors both ways."""

import numpy as np
import pytest

from systolic.host import golden
from systolic.host.compile import compile_model
from systolic.host.nn.qmodel import random_quantized_model
from systolic.hw.board.build import board_config
from systolic.hw.isa import STATUS_FIELDS
from systolic.sim import runner
from systolic.sim.board_tb import run_board

from .conftest import SIM_CONFIGS


def assert_same_run(board, rtl):
    """Result beats byte-equal; of the status packet, the error and the MAC cycles (the
    cycle counters include the input's gaps, which a serial link makes long)."""
    n = len(STATUS_FIELDS)
    np.testing.assert_array_equal(board[:-n], rtl[:-n], strict=True)
    for field in ("error", "mac_cycles"):
        i = STATUS_FIELDS.index(field)
        np.testing.assert_array_equal(board[-n + i], rtl[-n + i], strict=True)
    cycles = STATUS_FIELDS.index("cycles")
    word = lambda beats: int.from_bytes(beats[-n + cycles][:4].tobytes(), "little")  # noqa: E731
    assert word(board) >= word(rtl)


def _net(cfg, sizes, n, batch, seed):
    q = random_quantized_model(sizes, seed=seed)
    x = np.random.default_rng(seed).integers(-128, 128, (n, sizes[0])).astype(np.int8)
    return q, x, compile_model(q, cfg, batch)


@pytest.mark.rtl
def test_board_equals_rtl_through_byte_errors():
    cfg = SIM_CONFIGS["4x4"]
    nets = [_net(cfg, (37, 19, 5), 6, 4, 11), _net(cfg, (20, 9, 13, 7), 3, 1, 5)]
    programs = [prog.beats(x) for _, x, prog in nets]
    # requests 3 and 9 lose a byte, 6 has one flipped; the 5th response read and the
    # first and third DATA responses with beats are corrupted (the READs are repeated)
    faults = {"drop": [3, 9], "flip": [6], "corrupt": [5], "corrupt_data": [0, 2]}
    outputs, stats = run_board(cfg, programs, max_beats=16, faults=faults)
    reference = runner.stream_programs(cfg, programs)
    for (q, x, prog), out, (ref, _) in zip(nets, outputs, reference, strict=True):
        assert_same_run(out, ref)
        got, status = prog.parse_output(out, len(x))
        assert status["error"] == 0
        np.testing.assert_array_equal(got, golden.run(q, x), strict=True)
    assert stats["retries"] >= 6, stats  # every fault cost a retry, and nothing else broke


@pytest.mark.slow
def test_board_mnist():
    """MNIST images through the ULX3S build's 8x8 core over the link: equal to the rtl
    backend."""
    from systolic.host.backends import get_backend
    from systolic.host.nn.data import load_mnist
    from systolic.host.nn.qmodel import DEFAULT_QUANTIZED, QuantizedModel

    cfg = board_config(8, 8)
    q = QuantizedModel.load(DEFAULT_QUANTIZED)
    x = q.quantize_input(load_mnist().test_images[:8])
    prog = compile_model(q, cfg, 8)
    (out,), stats = run_board(cfg, [prog.beats(x)], max_beats=255, faults={"flip": [20]})
    ref = get_backend("rtl", cfg).run(prog, x)
    assert_same_run(out, ref.out_beats)
    outputs, status = prog.parse_output(out, len(x))
    np.testing.assert_array_equal(outputs, golden.run(q, x), strict=True)
    print(f"MNIST over the simulated link: {stats}")


@pytest.mark.slow
def test_board_gate_level():
    """A short run on the board top's gate-level netlist (2x2 core, small buffers)."""
    from systolic.sim.gate import gate_config

    cfg = gate_config(2, 2)
    q, x, prog = _net(cfg, (6, 5, 3), 2, 2, 3)
    (out,), stats = run_board(cfg, [prog.beats(x)], max_beats=8, faults={"drop": [2]}, gate=True)
    ((ref, _),) = runner.stream_programs(cfg, [prog.beats(x)])
    assert_same_run(out, ref)
    np.testing.assert_array_equal(prog.parse_output(out, len(x))[0], golden.run(q, x), strict=True)
    assert stats["retries"] >= 1
