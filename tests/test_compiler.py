"""The compiler on odd shapes, deep networks and small buffers, through the model backend."""

import doctest

import numpy as np
import pytest

import host.matmul
from hw.config import CoreConfig
from host import golden
from host.backends import get_backend
from host.compiler import CompileError, compile, compile_matmul, max_batch
from host.matmul import matmul
from host.quantize import random_quantized_model

CONFIGS = {
    "8x8": CoreConfig(), "4x4": CoreConfig(rows=4, cols=4), "3x5": CoreConfig(rows=3, cols=5),
    "4x8": CoreConfig(rows=4, cols=8), "8x4": CoreConfig(rows=8, cols=4),
    "2x16": CoreConfig(rows=2, cols=16),
}


def _check(cfg, sizes, n, batch, seed=0):
    q = random_quantized_model(sizes, seed=seed)
    x = np.random.default_rng(seed).integers(-128, 128, (n, sizes[0])).astype(np.int8)
    prog = compile(q, cfg, batch)
    res = get_backend("model", cfg).run(prog, x)
    assert res.error == 0
    want = golden.run(q, x)
    np.testing.assert_array_equal(res.outputs, want, strict=True)
    # the random models are scaled so that outputs are not all saturated
    assert len(np.unique(want)) > 3
    return prog, res


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("sizes", [(37, 19, 5), (30, 17, 23, 9, 11, 4), (8, 8)])
def test_odd_shapes_and_deep_networks(name, sizes):
    _check(CONFIGS[name], sizes, n=11, batch=4)


def test_batch_one_and_partial_batches():
    prog, res = _check(CoreConfig(), (50, 20, 10), n=3, batch=1)
    assert res.status["mac_cycles"] == 3 * (7 * 3 + 3 * 2)
    _check(CoreConfig(), (50, 20, 10), n=70, batch=64)


def test_weights_streamed_when_they_do_not_fit():
    cfg = CoreConfig(rows=4, cols=4, weight_kib=1)          # 64 tiles
    prog, res = _check(cfg, (100, 40, 10), n=9, batch=4)
    assert not prog.header["weights_resident"] and prog.header["weight_tiles"] > 64
    prog2, _ = _check(CoreConfig(rows=4, cols=4), (100, 40, 10), n=9, batch=4)
    assert prog2.header["weights_resident"]


def test_batch_limits():
    q = random_quantized_model((784, 128, 10), seed=0)
    cfg = CoreConfig(rows=4, cols=4, act_kib=16)
    limit = max_batch(q, cfg)
    assert 0 < limit < 64
    compile(q, cfg, limit)
    with pytest.raises(CompileError, match=rf"batch {limit + 1} needs .* input words, the "
                                           rf"buffer has 4096; use a batch of at most {limit}"):
        compile(q, cfg, limit + 1)
    with pytest.raises(CompileError, match="batch must be between 1 and 1023, not 0"):
        compile(q, cfg, 0)


@pytest.mark.parametrize("name", ["8x8", "3x5"])
def test_matmul_api(name):
    cfg = CONFIGS[name]
    rng = np.random.default_rng(5)
    a = rng.integers(-128, 128, (13, 29), dtype=np.int8)
    b = rng.integers(-128, 128, (29, 17), dtype=np.int8)
    bias = rng.integers(-(1 << 20), 1 << 20, 17)
    want = a.astype(np.int64) @ b.astype(np.int64) + bias
    np.testing.assert_array_equal(matmul(a, b, bias, config=cfg), want.astype(np.int32))
    mult, shift = rng.integers(1 << 29, 1 << 31, 17), rng.integers(20, 30, 17)
    got = matmul(a, b, bias, config=cfg, requant=(mult, shift, 3, True))
    np.testing.assert_array_equal(got, golden.requantize(want, mult, shift, 3, True))
    with pytest.raises(CompileError, match="A has 5 columns but B has 29 rows"):
        compile_matmul(5, b, bias, cfg)
    with pytest.raises(CompileError, match="a must be a 2-D int8 array"):
        matmul(a.astype(np.int16), b, config=cfg)


def test_matmul_doctest():
    assert doctest.testmod(host.matmul).failed == 0
