"""Quantizer properties, the saved quantized model, and the report against PyTorch."""

import numpy as np
import pytest
import torch

from host import golden
from host.data import load_mnist
from host.quantize import (DEFAULT_QUANTIZED, QuantError, QuantizedModel, multiplier_shift,
                           quantize_checkpoint, random_quantized_model, report)


@pytest.fixture(scope="module")
def quantized():
    data = load_mnist()
    qmodel, tq, fm = quantize_checkpoint("models/mlp.pt", data)
    return data, qmodel, tq, fm


def test_multiplier_shift_precision():
    scales = np.array([1e-4, 3.3e-3, 0.25, 0.9999, 1.5, 7e-12])
    mult, shift = multiplier_shift(scales)
    assert np.all(mult < 1 << 31) and np.all((shift >= 0) & (shift <= 63))
    assert np.all(mult[:5] >= 1 << 30)
    np.testing.assert_allclose(mult[:5] / 2.0 ** shift[:5], scales[:5], rtol=1e-9)
    np.testing.assert_allclose(mult[5] / 2.0 ** shift[5], scales[5], rtol=1e-6)  # shift capped
    with pytest.raises(ValueError, match="too large"):
        multiplier_shift(np.array([2.0 ** 32]))


def test_weights_are_per_channel_symmetric_int8(quantized):
    _, qmodel, tq, _ = quantized
    for layer in qmodel.layers:
        assert layer.weight.dtype == np.int8 and layer.bias.dtype == np.int32
        # each channel uses its full range on one side: max |w| is 127 or 128
        assert np.all(np.abs(layer.weight.astype(int)).max(1) >= 127)
        assert layer.weight_scale.shape == (layer.out_features,)
    assert qmodel.layers[0].relu and not qmodel.layers[-1].relu
    assert qmodel.layers[1].input_zero_point == qmodel.layers[0].output_zero_point


def test_input_quantization_matches_torch(quantized):
    _, qmodel, tq, _ = quantized
    pixels = np.arange(256, dtype=np.uint8).reshape(1, 256).repeat(4, 0)
    pixels = np.tile(pixels, (1, 4))[:, :784]
    ours = qmodel.quantize_input(pixels)
    theirs = tq.quant(torch.from_numpy(pixels.astype(np.float32) / 255)).int_repr().numpy()
    np.testing.assert_array_equal(ours.astype(int), theirs.astype(int) - 128)


def test_report_meets_the_aims(quantized):
    data, qmodel, tq, fm = quantized
    res = report(qmodel, tq, fm, data.test_images, data.test_labels)
    assert abs(res["golden_accuracy"] - res["float_accuracy"]) <= 0.005
    assert res["argmax_agreement"] >= 0.999
    assert res["max_lsb_diff"] <= 1


def test_committed_quantized_model_reproduces_its_accuracy():
    data = load_mnist()
    qmodel = QuantizedModel.load(DEFAULT_QUANTIZED)
    pred = golden.run(qmodel, qmodel.quantize_input(data.test_images)).argmax(1)
    assert np.mean(pred == data.test_labels) == qmodel.meta["report"]["golden_accuracy"]


def test_save_load_and_corrupt_files(tmp_path):
    qm = random_quantized_model((20, 9, 4), seed=1)
    path = tmp_path / "q.qnpz"
    qm.save(str(path))
    again = QuantizedModel.load(str(path))
    x = np.random.default_rng(0).integers(-128, 128, (5, 20)).astype(np.int8)
    np.testing.assert_array_equal(golden.run(qm, x), golden.run(again, x))
    (tmp_path / "c.qnpz").write_bytes(path.read_bytes()[:200])
    with pytest.raises(QuantError, match="c.qnpz: not a readable quantized model"):
        QuantizedModel.load(str(tmp_path / "c.qnpz"))
    with pytest.raises(QuantError, match="no such quantized model"):
        QuantizedModel.load(str(tmp_path / "missing.qnpz"))
    np.savez(tmp_path / "other.npz", header=np.frombuffer(b'{"format": "x"}', np.uint8))
    with pytest.raises(QuantError, match="format 'x'"):
        QuantizedModel.load(str(tmp_path / "other.npz"))
    assert not list(tmp_path.glob("*.tmp"))
