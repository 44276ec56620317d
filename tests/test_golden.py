"""The integer golden model against PyTorch's quantized Linear, conv2d and max-pool, and
hand-worked cases."""

import dataclasses

import numpy as np
import pytest
import torch

from systolic.host import golden
from systolic.host.nn.checkpoint import Mlp
from systolic.host.nn.qmodel import random_quantized_cnn
from systolic.host.nn.quantize import quantize_model, torch_int8_logits


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


# (C, H, W, out channels, kernel, stride, padding): odd sizes, stride 2, padding 1
CONV_CASES = [
    (1, 28, 28, 8, 3, 1, 1),
    (3, 13, 11, 5, 5, 2, 1),
    (5, 9, 9, 9, 1, 1, 0),
    (9, 7, 10, 17, 2, 2, 0),
    (17, 6, 5, 3, 4, 1, 1),
    (2, 5, 5, 4, 5, 1, 0),
]


@pytest.mark.parametrize("case", CONV_CASES, ids=str)
def test_conv2d_i8_equals_torch_conv2d(case):
    """Exact against float64 conv2d on integer values: zero padding after ``x - zx`` is
    padding with the zero point."""
    c, h, w, o, k, s, p = case
    rng = np.random.default_rng(sum(case))
    x = rng.integers(-128, 128, (3, c, h, w)).astype(np.int8)
    wt = rng.integers(-128, 128, (o, c, k, k)).astype(np.int8)
    zx = int(rng.integers(-128, 128))
    got = golden.conv2d_i8(x, wt, zx, s, p)
    want = torch.nn.functional.conv2d(
        torch.from_numpy(x.astype(np.float64) - zx),
        torch.from_numpy(wt.astype(np.float64)),
        stride=s,
        padding=p,
    ).numpy()
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, want.astype(np.int64))


def test_conv2d_i8_wraps_int32():
    x = np.full((1, 2700, 5, 5), 127, np.int8)
    wt = np.full((1, 2700, 5, 5), -128, np.int8)
    exact = 2700 * 25 * 255 * -128  # x - zx = 255
    assert exact < -(2**31)
    got = golden.conv2d_i8(x, wt, -128)
    assert got[0, 0, 0, 0] == golden.wrap_int32(exact) == exact + 2**32


@pytest.mark.parametrize("kernel", [2, 3])
@pytest.mark.parametrize("hw", [(28, 28), (14, 14), (7, 7), (9, 6), (3, 4)])
def test_maxpool2d_i8_equals_torch(kernel, hw):
    x = np.random.default_rng(kernel).integers(-128, 128, (2, 5, *hw)).astype(np.int8)
    got = golden.maxpool2d_i8(x, kernel, 2)
    want = torch.nn.functional.max_pool2d(torch.from_numpy(x.astype(np.float32)), kernel, 2)
    assert got.dtype == np.int8
    np.testing.assert_array_equal(got, want.numpy().astype(np.int8))


def test_conv_layer_is_conv_requantize_then_pool():
    """A conv layer equals, per output pixel, the Linear arithmetic on its window, then
    the pool over int8 values; the CNN's run flattens NCHW between conv and Linear."""
    q = random_quantized_cnn((3, 9, 8), [(5, 3, 1, 1, 3), (4, 2, 2, 0, 0)], [6], seed=5)
    x = np.random.default_rng(5).integers(-128, 128, (4, q.in_features)).astype(np.int8)
    outs = golden.run_layers(q, x)
    assert [o.shape for o in outs] == [(4, 5 * 4 * 3), (4, 4 * 2 * 1), (4, 6)]
    layer = q.layers[0]
    img = x.reshape(4, 3, 9, 8).astype(np.int64)
    padded = np.pad(img, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=layer.input_zero_point)
    rows = np.array(
        [padded[:, :, i : i + 3, j : j + 3].reshape(4, -1) for i in range(9) for j in range(8)]
    )
    unpooled = golden.linear(
        rows.reshape(-1, 27), dataclasses.replace(layer, weight=layer.weight.reshape(5, 27))
    )
    unpooled = unpooled.reshape(9, 8, 4, 5).transpose(2, 3, 0, 1)
    pooled = np.array(
        [
            [
                unpooled[:, :, 2 * a : 2 * a + 3, 2 * b : 2 * b + 3].max(axis=(2, 3))
                for b in range(3)
            ]
            for a in range(4)
        ]
    ).transpose(2, 3, 0, 1)
    np.testing.assert_array_equal(outs[0], pooled.reshape(4, -1), strict=True)
    # the Linear layer takes the NCHW-flattened second conv output
    np.testing.assert_array_equal(outs[2], golden.linear(outs[1], q.layers[2]), strict=True)
    np.testing.assert_array_equal(golden.run(q, x), outs[2], strict=True)
