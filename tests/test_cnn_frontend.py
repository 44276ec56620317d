"""CNNs through the PyTorch front end and PT2E: what is captured, what is refused, and
the golden model against PyTorch's quantized graph."""

import copy
import re

import numpy as np
import pytest
import torch
from torch import nn

from systolic.host import golden
from systolic.host.nn.qmodel import QuantError
from systolic.host.nn.quantize import quantize_model, torch_int8_logits
from systolic.host.nn.torch_frontend import capture


class _Functional(nn.Module):
    """F.conv2d without bias, then F.max_pool2d, F.relu and a view."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(6, 2, 3, 3) * 0.3)
        self.fc = nn.Linear(6 * 4 * 4, 5)

    def forward(self, x):
        x = x.view(len(x), 2, 10, 10)
        x = torch.relu(nn.functional.max_pool2d(nn.functional.conv2d(x, self.w), 2))
        return self.fc(x.reshape(len(x), -1))


def _net(*mods, shape=(1, 28, 28)):
    torch.manual_seed(sum(shape))
    return nn.Sequential(nn.Unflatten(1, shape), *mods).eval()


def _with_bn(conv, n):
    bn = nn.BatchNorm2d(n)
    with torch.no_grad():
        bn.running_mean.uniform_(-0.3, 0.3)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.2, 0.2)
    return [conv, bn]


# (model, pixels): kernels 1..5, stride 2, padding 0/1, pools 2/3 before and after the
# ReLU, BatchNorm2d, channels 3, 5, 9, 17, odd sizes, no bias, padding "same"
CASES = {
    "lenet": (
        _net(
            nn.Conv2d(1, 8, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(784, 10),
        ),
        784,
    ),
    "odd-stride-bn": (
        _net(
            *_with_bn(nn.Conv2d(3, 5, 5, stride=2, padding=1), 5),
            nn.MaxPool2d(3, 2),
            nn.ReLU(),
            nn.Conv2d(5, 9, 1, bias=False),
            nn.ReLU(),
            nn.Conv2d(9, 17, 2, stride=2),
            nn.Flatten(),
            nn.Dropout(),
            nn.Linear(17, 7),
            nn.ReLU(),
            nn.Linear(7, 4),
            shape=(3, 13, 11),
        ),
        3 * 13 * 11,
    ),
    "same-k4-no-linear": (
        _net(
            nn.Conv2d(1, 4, 3, padding="same"),
            nn.ReLU(),
            nn.Conv2d(4, 3, 4, stride=2, padding=1),
            nn.Flatten(),
            shape=(1, 9, 9),
        ),
        81,
    ),
    "functional": (_Functional().eval(), 200),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_matches_torch_quantized_cnn(name):
    model, pixels = CASES[name]
    images = np.random.default_rng(len(name)).integers(0, 256, (300, pixels)).astype(np.uint8)
    qmodel, reference = quantize_model(model, images[:200])
    with torch.no_grad():
        want_shape = model(torch.zeros(1, pixels)).reshape(1, -1).shape[1]
    assert qmodel.sizes[0] == pixels and qmodel.sizes[-1] == want_shape
    gold = golden.run(qmodel, qmodel.quantize_input(images))
    torch_q = torch_int8_logits(reference, images)
    diff = np.abs(gold.astype(int) - torch_q.astype(int))
    assert diff.max() <= 1 and np.mean(diff == 0) > 0.99
    assert np.mean(gold.argmax(1) == torch_q.argmax(1)) >= 0.99


def test_captured_layers_of_a_cnn():
    model, _ = CASES["odd-stride-bn"]
    layers = capture(model, torch.rand(2, 3 * 13 * 11))
    assert [ly.kind for ly in layers] == ["conv", "conv", "conv", "linear", "linear"]
    first = layers[0]
    assert (first.stride, first.padding, first.pool, first.pool_stride, first.relu) == (
        2,
        1,
        3,
        2,
        True,
    )
    assert first.input_shape == (3, 13, 11) and layers[1].input_shape == (5, 2, 2)
    assert np.all(layers[1].bias == 0) and not layers[2].relu and layers[3].relu
    # BatchNorm2d folded: the captured convolution gives the Conv2d and BatchNorm2d's output
    conv_bn = copy.deepcopy(model[1:3]).double()
    x = torch.rand(4, 3, 13, 11, dtype=torch.float64)
    got = nn.functional.conv2d(
        x, torch.from_numpy(first.weight), torch.from_numpy(first.bias), 2, 1
    )
    torch.testing.assert_close(got, conv_bn(x))


def test_quantized_cnn_shares_pool_and_flatten_quantization():
    model, pixels = CASES["lenet"]
    images = np.random.default_rng(0).integers(0, 256, (50, pixels)).astype(np.uint8)
    qmodel, _ = quantize_model(model, images)
    assert qmodel.input_shape == (1, 28, 28)
    assert qmodel.shapes() == [(1, 28, 28), (8, 14, 14), (16, 7, 7), (10,)]
    for a, b in zip(qmodel.layers, qmodel.layers[1:]):
        assert (a.output_scale, a.output_zero_point) == (b.input_scale, b.input_zero_point)
    assert qmodel.layers[0].weight.shape == (8, 1, 3, 3)
    assert qmodel.layers[0].weight_scale.shape == (8,)  # per channel


def _c(**kw):
    return nn.Conv2d(kw.pop("cin", 1), 4, kw.pop("k", 3), **kw)


@pytest.mark.parametrize(
    "mods, message",
    [
        (
            [_c(stride=3), nn.Flatten(), nn.Linear(324, 2)],
            "Conv2d at 1: stride 3 is not supported (1 or 2)",
        ),
        ([_c(padding=2), nn.Flatten()], "Conv2d at 1: padding 2 is not supported (0 or 1)"),
        ([_c(dilation=2), nn.Flatten()], "Conv2d at 1: dilation 2 is not supported (1)"),
        ([_c(cin=1, groups=1, k=7), nn.Flatten()], "Conv2d at 1: kernel 7x7 is not supported"),
        ([_c(k=(3, 1)), nn.Flatten()], "Conv2d at 1: kernel 3x1 is not supported"),
        ([_c(stride=(1, 2)), nn.Flatten()], "Conv2d at 1: stride (1, 2) is not supported"),
        (
            [_c(padding=1, padding_mode="reflect"), nn.Flatten()],
            "Conv2d at 1: padding_mode 'reflect' is not supported (zeros)",
        ),
        (
            [_c(padding="same", k=2), nn.Flatten()],
            "Conv2d at 1: padding 'same' with an even kernel is not supported",
        ),
        (
            [_c(), nn.AvgPool2d(2), nn.Flatten()],
            "unsupported layer AvgPool2d at 2 (aten.avg_pool2d, graph node 2)",
        ),
        (
            [_c(), nn.MaxPool2d(4), nn.Flatten()],
            "MaxPool2d at 2: kernel 4 is not supported (2 or 3)",
        ),
        ([_c(), nn.MaxPool2d(3), nn.Flatten()], "MaxPool2d at 2: stride 3 is not supported (2)"),
        (
            [_c(), nn.MaxPool2d(2, 2, padding=1), nn.Flatten()],
            "MaxPool2d at 2: padding 1 is not supported (0)",
        ),
        (
            [_c(), nn.MaxPool2d(2, 2, dilation=2), nn.Flatten()],
            "MaxPool2d at 2: dilation 2 is not supported (1)",
        ),
        (
            [_c(), nn.MaxPool2d(2, 2, ceil_mode=True), nn.Flatten()],
            "MaxPool2d at 2: ceil_mode True is not supported (False)",
        ),
        (
            [nn.MaxPool2d(2), _c(), nn.Flatten()],
            "layer MaxPool2d at 1 (aten.max_pool2d, graph node 1) does not directly follow "
            "a Conv2d",
        ),
        (
            [_c(), nn.MaxPool2d(2), nn.MaxPool2d(2), nn.Flatten()],
            "layer MaxPool2d at 3 (aten.max_pool2d, graph node 3) does not directly follow "
            "a Conv2d",
        ),
        (
            [_c(), nn.Dropout(), nn.MaxPool2d(2), nn.Flatten()],
            "layer MaxPool2d at 3 (aten.max_pool2d, graph node 3) does not directly follow "
            "a Conv2d",
        ),
        (
            [nn.Flatten(), nn.Linear(784, 784), nn.Unflatten(1, (1, 28, 28)), _c()],
            "layer Unflatten at 3 (aten.unflatten.int, graph node 3) comes after a Linear",
        ),
        (
            [_c(), nn.Unflatten(1, (2, 2)), nn.Flatten()],
            "only a flatten to [batch, C*H*W] after a Conv2d is supported",
        ),
        (
            [_c(), nn.Linear(26, 3)],
            "layer Linear at 2 (aten.linear, graph node 2) takes the 4-D output "
            "['batch', 4, 26, 26] of 1: flatten it first (Flatten)",
        ),
        (
            [nn.BatchNorm2d(1), _c(), nn.Flatten()],
            "layer BatchNorm2d at 1 (aten.batch_norm, graph node 1) does not directly follow "
            "a Linear or Conv2d",
        ),
        (
            [_c(), nn.ReLU(), nn.MaxPool2d(2), nn.ReLU(), nn.Flatten()],
            "layer ReLU at 4 (aten.relu, graph node 4) does not directly follow a Linear or Conv2d",
        ),
    ],
    ids=[
        "stride-3",
        "padding-2",
        "dilation",
        "kernel-7",
        "kernel-3x1",
        "stride-1x2",
        "reflect",
        "same-even",
        "avgpool",
        "pool-4",
        "pool-stride-3",
        "pool-padding",
        "pool-dilation",
        "ceil-mode",
        "pool-first",
        "pool-pool",
        "pool-after-dropout",
        "conv-after-linear",
        "unflatten-after-conv",
        "linear-on-4d",
        "batchnorm-first",
        "relu-twice",
    ],
)
@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
def test_unsupported_cnns_are_refused(mods, message):
    model = _net(*mods)
    with pytest.raises(QuantError, match=re.escape(message)):
        quantize_model(model, np.zeros((4, 784), np.uint8))


def test_groups_are_refused():
    model = _net(nn.Conv2d(2, 4, 3, groups=2), nn.Flatten(), shape=(2, 14, 28))
    with pytest.raises(QuantError, match=re.escape("Conv2d at 1: groups 2 is not supported (1)")):
        quantize_model(model, np.zeros((4, 784), np.uint8))
