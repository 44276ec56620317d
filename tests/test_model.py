"""The model backend against the independent numpy reference on hand-built programs."""

import numpy as np
import pytest

from host.backends.model import Machine
from hw.config import CoreConfig
from sim.programs import matmul_program, parse_output, reference_matmul


def _run(cfg, a, w, bias, requant):
    out, status = Machine(cfg).run(matmul_program(cfg, a, w, bias, requant))
    assert status["error"] == 0
    return parse_output(cfg, out, a.shape[0], w.shape[1], raw=requant is None)[0]


@pytest.mark.parametrize("shift", [62, 63, 33, 1])
def test_model_is_exact_over_the_whole_multiplier_field(shift):
    """mult = 2**32 - 1 with the largest accumulators: ``acc * mult + half`` passes 2**63,
    which an int64 computation of it overflowed."""
    cfg = CoreConfig(rows=4, cols=4)
    rng = np.random.default_rng(shift)
    a = rng.integers(-128, 128, (6, 9), dtype=np.int8)
    w = rng.integers(-128, 128, (9, 5), dtype=np.int8)
    bias = np.array([(1 << 31) - 1, -(1 << 31), (1 << 31) - 1 - 9 * 128 * 128, 0, 5])
    n = w.shape[1]
    for even in (0, 1):
        requant = (
            np.full(n, (1 << 32) - 1),
            np.full(n, shift),
            np.zeros(n),
            np.zeros(n),
            np.full(n, even),
        )
        np.testing.assert_array_equal(
            _run(cfg, a, w, bias, requant), reference_matmul(a, w, bias, requant), strict=True
        )


def test_model_rounds_ties_to_even_when_asked():
    cfg = CoreConfig(rows=2, cols=2)
    a = np.arange(-6, 7, dtype=np.int8).reshape(-1, 1)  # acc = a: halves are ties
    w = np.ones((1, 2), np.int8)
    up = (np.ones(2), np.ones(2), np.zeros(2), np.zeros(2), np.zeros(2))
    even = (np.ones(2), np.ones(2), np.zeros(2), np.zeros(2), np.ones(2))
    got_up = _run(cfg, a, w, np.zeros(2), up)[:, 0]
    got_even = _run(cfg, a, w, np.zeros(2), even)[:, 0]
    # a / 2 for a = -6..6, worked by hand
    assert got_up.tolist() == [-3, -2, -2, -1, -1, 0, 0, 1, 1, 2, 2, 3, 3]
    assert got_even.tolist() == [-3, -2, -2, -2, -1, 0, 0, 0, 1, 2, 2, 2, 3]
