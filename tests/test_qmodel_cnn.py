"""The quantized-model IR's convolution layers: geometry, validation, file, helpers."""

import dataclasses
import json

import numpy as np
import pytest

from systolic.host.nn.qmodel import (
    DEFAULT_QUANTIZED,
    QuantError,
    QuantizedModel,
    conv_output_size,
    random_quantized_cnn,
    random_quantized_model,
)

LENET = [dict(out=8, kernel=3, padding=1, pool=2), (16, 3, 1, 1, 2)]


def _cnn(**kw):
    return random_quantized_cnn((1, 28, 28), LENET, [10], seed=kw.pop("seed", 3), **kw)


def test_shapes_and_sizes_of_a_cnn():
    q = _cnn()
    assert q.shapes() == [(1, 28, 28), (8, 14, 14), (16, 7, 7), (10,)]
    assert q.sizes == [784, 8 * 14 * 14, 784, 10]
    assert q.in_features == 784 and q.out_features == 10 and q.is_cnn
    assert [ly.kind for ly in q.layers] == ["conv", "conv", "linear"]
    assert q.layers[0].weight.shape == (8, 1, 3, 3) and q.layers[0].weight.dtype == np.int8
    assert q.layers[1].in_features == 8 and q.layers[1].kernel == 3
    assert q.layers[2].weight.shape == (10, 784)
    assert [ly.relu for ly in q.layers] == [True, True, False]
    assert (q.layers[0].pool, q.layers[0].pool_stride) == (2, 2)


def test_mlp_defaults():
    q = random_quantized_model((20, 9, 4), seed=1)
    assert q.input_shape == (20,) and q.shapes() == [(20,), (9,), (4,)]
    assert not q.is_cnn and q.sizes == [20, 9, 4]
    assert all(
        (ly.kind, ly.stride, ly.padding, ly.pool, ly.pool_stride) == ("linear", 1, 0, 0, 0)
        for ly in q.layers
    )


@pytest.mark.parametrize(
    "size, kernel, stride, padding, want",
    [(28, 3, 1, 1, 28), (28, 3, 2, 1, 14), (7, 2, 2, 0, 3), (9, 3, 2, 0, 4), (5, 5, 1, 0, 1)],
)
def test_conv_output_size_rounds_down(size, kernel, stride, padding, want):
    assert conv_output_size(size, kernel, stride, padding) == want


def test_odd_geometry():
    q = random_quantized_cnn(
        (3, 13, 11), [(5, 5, 2, 1, 0), (9, 1, 1, 0, 3), (17, 2, 1, 0, 0)], [6, 4], seed=2
    )
    # 13x11 -> conv5 s2 p1 -> 6x5 -> conv1 -> 6x5, pool3 s2 -> 2x2 -> conv2 -> 1x1
    assert q.shapes() == [(3, 13, 11), (5, 6, 5), (9, 2, 2), (17, 1, 1), (6,), (4,)]


def test_cnn_file_round_trip(tmp_path):
    q = _cnn()
    q.save(str(tmp_path / "c.qnpz"))
    again = QuantizedModel.load(str(tmp_path / "c.qnpz"))
    assert again.input_shape == (1, 28, 28) and again.shapes() == q.shapes()
    for a, b in zip(q.layers, again.layers):
        for f in dataclasses.fields(a):
            np.testing.assert_array_equal(getattr(a, f.name), getattr(b, f.name))
    with np.load(tmp_path / "c.qnpz") as z:
        header = json.loads(z["header"].tobytes())
    assert header["input_shape"] == [1, 28, 28]
    assert header["layers"][0]["kind"] == "conv" and "stride" not in header["layers"][0]
    assert "kind" not in header["layers"][2]  # a Linear layer's defaults are not written


def test_mlp_file_has_no_cnn_fields(tmp_path):
    q = random_quantized_model((20, 9, 4), seed=1)
    q.save(str(tmp_path / "m.qnpz"))
    with np.load(tmp_path / "m.qnpz") as z:
        header = json.loads(z["header"].tobytes())
    assert "input_shape" not in header
    assert all(set(lm) == set(header["layers"][0]) for lm in header["layers"])
    assert "kind" not in header["layers"][0]


def test_committed_mlp_still_loads():
    q = QuantizedModel.load(DEFAULT_QUANTIZED)
    assert q.input_shape == (784,) and not q.is_cnn


def test_quantize_input_of_a_cnn_matches_the_mlp_arithmetic():
    q = _cnn()
    linear = dataclasses.replace(q.layers[2], input_zero_point=q.layers[0].input_zero_point)
    mlp = QuantizedModel((linear,), {})
    images = np.random.default_rng(0).integers(0, 256, (5, 784)).astype(np.uint8)
    x = q.quantize_input(images)
    assert x.dtype == np.int8 and x.shape == (5, 784)
    np.testing.assert_array_equal(x, mlp.quantize_input(images))
    with pytest.raises(ValueError, match=r"images must be \[N, 784\]"):
        q.quantize_input(images[:, :100])


def _replace(q, i, **kw):
    layers = list(q.layers)
    layers[i] = dataclasses.replace(layers[i], **kw)
    return QuantizedModel(tuple(layers), q.meta, q.input_shape)


@pytest.mark.parametrize(
    "i, change, message",
    [
        (0, dict(stride=3), r"layer 0 \(conv\) stride must be one of 1, 2, not 3"),
        (0, dict(padding=2), r"layer 0 \(conv\) padding must be one of 0, 1, not 2"),
        (0, dict(pool=4), r"layer 0 \(conv\) pool must be one of 0, 2, 3, not 4"),
        (0, dict(pool_stride=1), r"layer 0 \(conv\) pool_stride must be one of 2, not 1"),
        (0, dict(pool=0), r"layer 0 \(conv\) pool_stride must be one of 0, not 2"),
        (0, dict(kind="pool"), r"layer 0 kind must be 'linear' or 'conv', not 'pool'"),
        (
            0,
            dict(weight=np.zeros((8, 1, 3, 2), np.int8)),
            r"layer 0 \(conv\) weights must be int8 \[out, in, k, k\], not \[8, 1, 3, 2\]",
        ),
        (
            0,
            dict(weight=np.zeros((8, 1, 7, 7), np.int8)),
            r"layer 0 \(conv\) kernel must be one of 1, 2, 3, 4, 5, not 7",
        ),
        (
            1,
            dict(weight=np.zeros((16, 7, 3, 3), np.int8)),
            r"layer 1 takes 7 channels but layer 0 gives 8",
        ),
        (2, dict(pool=2), r"layer 2 is Linear, its pool must be 0, not 2"),
        (
            2,
            dict(weight=np.zeros((10, 783), np.int8)),
            r"layer 2 takes 783 inputs but layer 1 gives 784 \(16x7x7 flattened\)",
        ),
    ],
)
def test_invalid_conv_layers_are_refused(i, change, message):
    with pytest.raises(QuantError, match=message):
        _replace(_cnn(), i, **change).validate()


def test_conv_after_linear_and_input_channels_are_refused():
    q = _cnn()
    with pytest.raises(QuantError, match=r"layer 0 takes 1 channels but the input gives 3"):
        QuantizedModel(q.layers, {}, (3, 28, 28)).validate()
    with pytest.raises(QuantError, match=r"layer 0 is a conv layer but its input is the network"):
        QuantizedModel(q.layers, {}).validate()
    mlp = random_quantized_model((784, 1), seed=0)
    with pytest.raises(QuantError, match=r"layer 1 is a conv layer but its input is a Linear"):
        QuantizedModel((mlp.layers[0], q.layers[0]), {}).validate()


def test_too_small_input_is_refused():
    with pytest.raises(QuantError, match=r"layer 1 \(conv\) output would be 0x0"):
        random_quantized_cnn((1, 6, 6), [(4, 3, 1, 0, 2), (4, 3, 1, 0, 0)], [2])


def test_random_cnn_is_deterministic_and_varied():
    a, b, c = _cnn(seed=1), _cnn(seed=1), _cnn(seed=2)
    np.testing.assert_array_equal(a.layers[1].weight, b.layers[1].weight)
    assert not np.array_equal(a.layers[1].weight, c.layers[1].weight)
    with pytest.raises(QuantError, match="needs out and kernel"):
        random_quantized_cnn((1, 8, 8), [dict(out=2)], [2])
