"""The integer golden model against PyTorch's quantized Linear and hand-worked cases."""

import numpy as np
import pytest
import torch

from host import golden
from host.nn.checkpoint import Mlp
from host.nn.quantize import quantize_model, torch_int8_logits


def test_requantize_rounds_half_up():
    # acc * mult / 2**shift with mult=1, shift=1: x / 2
    acc = np.array([[5, -5, 3, -3, 1, -1, 0]])
    got = golden.requantize(acc, np.ones(7), np.ones(7), 0, False)
    np.testing.assert_array_equal(got, [[3, -2, 2, -1, 1, 0, 0]])  # 2.5->3, -2.5->-2


def test_requantize_rounds_half_to_even():
    acc = np.array([[5, -5, 3, -3, 1, -1, 0, 7, 6]])
    got = golden.requantize(acc, np.ones(9), np.ones(9), 0, False, round_even=True)
    np.testing.assert_array_equal(got, [[2, -2, 2, -2, 0, 0, 0, 4, 3]])  # ties to even
    # shift 2: quarters are not ties and round to nearest; 6/4 = 1.5 is a tie
    got = golden.requantize(
        np.array([[5, 6, 7, -6, -7]]), np.ones(5), np.full(5, 2), 0, False, round_even=True
    )
    np.testing.assert_array_equal(got, [[1, 2, 2, -2, -2]])


def test_requantize_is_exact_over_the_whole_multiplier_field():
    """mult uses all 32 bits: acc * mult + half passes 2**63, and still rounds exactly."""
    acc = np.array([[(1 << 31) - 1, -(1 << 31), 1 << 30]])
    mult = np.full(3, (1 << 32) - 1)
    # (2**31 - 1) * (2**32 - 1) / 2**63 = 0.99999999930..., -2**31 * (2**32 - 1) / 2**63 =
    # -0.99999999976..., 2**30 * (2**32 - 1) / 2**63 = 0.49999999988...
    for shift, want in ((63, [1, -1, 0]), (62, [2, -2, 1]), (57, [64, -64, 32])):
        got = golden.requantize(acc, mult, np.full(3, shift), 0, False)
        np.testing.assert_array_equal(got, [want])


def test_requantize_saturates_zero_point_and_relu():
    acc = np.array([[10**6, -(10**6), 4, -4]])
    got = golden.requantize(acc, np.ones(4), np.zeros(4), 5, False)
    np.testing.assert_array_equal(got, [[127, -128, 9, 1]])
    got = golden.requantize(acc, np.ones(4), np.zeros(4), 5, True)
    np.testing.assert_array_equal(got, [[127, 5, 9, 5]])
    with pytest.raises(ValueError, match="mult must be"):
        golden.requantize(acc, np.full(4, 1 << 32), np.zeros(4), 0, False)
    with pytest.raises(ValueError, match="shift in"):
        golden.requantize(acc, np.ones(4), np.full(4, 64), 0, False)


def test_matmul_wraps_int32_and_uses_zero_point():
    x = np.full((1, 3), -128, np.int8)
    w = np.full((2, 3), -128, np.int8)
    np.testing.assert_array_equal(golden.matmul_i8(x, w), [[3 * 16384, 3 * 16384]])
    np.testing.assert_array_equal(golden.matmul_i8(x, w, x_zero_point=-128), [[0, 0]])
    assert golden.wrap_int32(np.int64(2**31)) == -(2**31)


@pytest.mark.parametrize("seed", range(4))
def test_golden_matches_torch_quantized_linear(seed):
    """Random layers: golden within 1 LSB of PyTorch's converted PT2E graph for one layer,
    2 after two (a difference in the hidden layer can carry)."""
    torch.manual_seed(seed)
    k, n = [(37, 11), (64, 16), (100, 3), (8, 40)][seed]
    images = np.random.default_rng(seed).integers(0, 256, (200, k)).astype(np.uint8)
    for sizes, bound in (((k, n), 1), ((k, n, 7), 2)):
        model = Mlp(sizes)
        for lin in model.linears():
            torch.nn.init.uniform_(lin.bias, -0.3, 0.3)
        qmodel, reference = quantize_model(model, images)
        x = qmodel.quantize_input(images)
        diff = np.abs(
            golden.run(qmodel, x).astype(int) - torch_int8_logits(reference, images).astype(int)
        )
        assert diff.max() <= bound and np.mean(diff == 0) > 0.98
