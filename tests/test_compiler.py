"""The compiler on odd shapes, deep networks and small buffers, through the model backend."""

import dataclasses
import doctest

import numpy as np
import pytest

import systolic.host.matmul
from systolic.host import golden
from systolic.host.backends import get_backend
from systolic.host.compile import CompileError, compile_matmul, compile_model, max_batch
from systolic.host.compile.program import ITEM_FIRST_INPUT, ITEM_WORD
from systolic.host.matmul import matmul
from systolic.host.metrics import cycle_breakdown
from systolic.host.nn.qmodel import random_quantized_model
from systolic.hw import isa
from systolic.hw.config import CoreConfig
from systolic.hw.isa import Opcode

CONFIGS = {
    "8x8": CoreConfig(),
    "4x4": CoreConfig(rows=4, cols=4),
    "3x5": CoreConfig(rows=3, cols=5),
    "4x8": CoreConfig(rows=4, cols=8),
    "8x4": CoreConfig(rows=8, cols=4),
    "2x16": CoreConfig(rows=2, cols=16),
}


def _check(cfg, sizes, n, batch, seed=0):
    q = random_quantized_model(sizes, seed=seed)
    x = np.random.default_rng(seed).integers(-128, 128, (n, sizes[0])).astype(np.int8)
    prog = compile_model(q, cfg, batch)
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


def _engine_words(prog):
    """``(op, fields)`` of the schedule's MATMULs, POSTPROCs and LOOPs, in order."""
    words = prog.schedule["even"][prog.schedule["kind"] == ITEM_WORD]
    return [isa.decode(int(w)) for w in words]


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_batch_one_steps_through_output_tiles(name):
    """At batch 1 with resident weights a layer of several output tiles is one stepping
    MATMUL a K tile, under a READ pattern of stride 0 (every row the same input word),
    and the first image's words are loaded one before each: outputs equal the golden
    model's, and from the first MATMUL on the engine waits for the front end within
    layer 0 only when a K tile has fewer rows than the front end's beats."""
    cfg = CONFIGS[name]
    sizes = (37, 19, 5)
    prog, res = _check(cfg, sizes, n=3, batch=1)
    kt0, nt0 = -(-sizes[0] // cfg.rows), -(-sizes[1] // cfg.cols)
    mms = [f for op, f in _engine_words(prog) if op is Opcode.MATMUL]
    layer0 = mms[:kt0]
    assert all(f["tile_step"] == 1 and f["m"] == nt0 and f["acc_addr"] == 0 for f in layer0)
    assert [f["weight_tile"] for f in layer0] == [k * nt0 for k in range(kt0)]
    assert [f["accumulate"] for f in layer0] == [0] + [1] * (kt0 - 1)
    loops = [f for op, f in _engine_words(prog) if op is Opcode.LOOP and f["inner"]]
    assert {(f["inner"], f["outer"], f["inner_stride"]) for f in loops} >= {(nt0, 1, 0)}
    assert sum(prog.schedule["kind"] == ITEM_FIRST_INPUT) == kt0
    one = cycle_breakdown(prog, np.zeros((1, sizes[0]), np.int8))
    assert one["layers"][0]["matmul_rows"] == kt0 * nt0
    # layer 0's waits: the drain before its POSTPROCs, and, with fewer than 3 output
    # tiles, the front end's 3 beats a K tile (LOAD header, the word, the MATMUL)
    front = max(0, 3 - nt0) * (kt0 - 1)
    assert one["layers"][0]["wait"] == cfg.array_latency + 1 + front
    assert res.status["mac_cycles"] == 3 * (kt0 * nt0 + -(-sizes[2] // cfg.cols) * nt0 * cfg.groups)


def test_batch_one_preloads_when_layer_zero_does_not_step():
    """A first layer of one output tile does not step: its input is loaded whole before
    it, not a word before each one-row MATMUL (three front-end beats a row). The second
    layer (two output tiles) steps, and the schedule sets the READ pattern back to
    linear before it ends, as the next image's first layer expects (3 images: 3 runs
    of the schedule, equal to the golden model)."""
    prog, _ = _check(CoreConfig(), (37, 5, 10), n=3, batch=1)
    mms = [f for op, f in _engine_words(prog) if op is Opcode.MATMUL]
    assert [f["tile_step"] for f in mms] == [0] * 5 + [1]
    assert not np.any(prog.schedule["kind"] == ITEM_FIRST_INPUT)
    last = _engine_words(prog)[-1]
    assert last[0] is Opcode.LOOP and last[1]["inner"] == 0


def test_weights_streamed_when_they_do_not_fit():
    cfg = CoreConfig(rows=4, cols=4, weight_kib=1)  # 64 tiles
    prog, res = _check(cfg, (100, 40, 10), n=9, batch=4)
    assert not prog.header["weights_resident"] and prog.header["weight_tiles"] > 64
    prog2, _ = _check(CoreConfig(rows=4, cols=4), (100, 40, 10), n=9, batch=4)
    assert prog2.header["weights_resident"]


def test_batch_limits():
    q = random_quantized_model((784, 128, 10), seed=0)
    cfg = CoreConfig(rows=4, cols=4, act_kib=16)
    limit = max_batch(q, cfg)
    assert 0 < limit < 64
    compile_model(q, cfg, limit)
    with pytest.raises(
        CompileError,
        match=rf"batch {limit + 1} needs .* input words, the "
        rf"buffer has 4096; use a batch of at most {limit}",
    ):
        compile_model(q, cfg, limit + 1)
    with pytest.raises(CompileError, match="batch must be between 1 and 1023, not 0"):
        compile_model(q, cfg, 0)


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
    with pytest.raises(CompileError, match="a has 5 columns but b has 29 rows"):
        compile_matmul(5, b, bias, cfg)
    with pytest.raises(CompileError, match="a must be a 2-D int8 array"):
        matmul(a.astype(np.int16), b, config=cfg)


def test_matmul_any_m_picks_a_batch_that_fits():
    """M beyond what one batch can hold: the API picks the largest batch that fits."""
    cfg = CoreConfig(rows=4, cols=4, act_kib=1, acc_kib=1)  # 256 input, 64 acc words
    rng = np.random.default_rng(1)
    b = rng.integers(-128, 128, (100, 20), dtype=np.int8)
    assert compile_matmul((1000, 100), b, None, cfg).batch == 5  # 2 * 25 words a row
    assert compile_matmul((3, 100), b, None, cfg).batch == 3
    for m in (1, 5, 6, 23):
        a = rng.integers(-128, 128, (m, 100), dtype=np.int8)
        want = (a.astype(np.int64) @ b.astype(np.int64)).astype(np.int32)
        np.testing.assert_array_equal(matmul(a, b, config=cfg), want, strict=True)
    # the case that used to force batch = M and advise a batch the API could not take
    a = rng.integers(-128, 128, (100, 1000), dtype=np.int8)
    b = rng.integers(-128, 128, (1000, 257), dtype=np.int8)
    want = (a.astype(np.int64) @ b.astype(np.int64)).astype(np.int32)
    np.testing.assert_array_equal(matmul(a, b), want, strict=True)
    assert compile_matmul(a.shape, b, None, CoreConfig()).batch == 62


_A = np.zeros((2, 3), np.int8)
_B = np.zeros((3, 4), np.int8)
_RQ = (1, 1, 0, False)

#: (keyword arguments of matmul, message): every refusal names the argument.
MATMUL_REFUSALS = [
    (dict(a=[[1, 2, 3]]), r"a must be a 2-D int8 array, not list"),
    (dict(a=np.zeros((2, 3), np.int16)), r"a must be a 2-D int8 array, not int16 \[2, 3\]"),
    (dict(a=np.zeros(3, np.int8)), r"a must be a 2-D int8 array, not int8 \[3\]"),
    (dict(a=np.zeros((0, 3), np.int8)), r"a has no rows \(M = 0\)"),
    (dict(a=np.zeros((2, 0), np.int8), b=np.zeros((0, 4), np.int8)), r"a has no columns \(K = 0\)"),
    (dict(b=np.zeros((3, 0), np.int8)), r"b has no columns \(N = 0\)"),
    (dict(b=np.zeros(3, np.int8)), r"b must be a 2-D int8 array \[K, N\], not int8 array \[3\]"),
    (
        dict(b=np.zeros((3, 4, 1), np.int8)),
        r"b must be a 2-D int8 array \[K, N\], not int8 "
        r"array \[3, 4, 1\]",
    ),
    (dict(b=np.zeros((3, 4), np.uint8)), r"b must be a 2-D int8 array"),
    (dict(b=np.zeros((5, 4), np.int8)), r"a has 3 columns but b has 5 rows"),
    (dict(bias=np.array([1.0, 2, 3, 4])), r"bias must be an integer array \[4\], not float64"),
    (dict(bias=[1, 2, 3, 4]), r"bias must be an integer array \[4\], not list"),
    (dict(bias=np.zeros(3, np.int32)), r"bias must be an integer array \[4\], not int32 array"),
    (dict(bias=np.array([True] * 4)), r"bias must be an integer array \[4\], not bool"),
    (
        dict(bias=np.array([2**31, 0, 0, 0], np.uint64)),
        r"bias must fit int32 \(-2147483648\.\.2147483647\), not 2147483648",
    ),
    (dict(bias=np.array([-(2**31) - 1, 0, 0, 0])), r"bias must fit int32 .*, not -2147483649"),
    (
        dict(requant=(1, 1, 0)),
        r"requant must be \(mult, shift, zero_point, relu\) or None, "
        r"not tuple",
    ),
    (dict(requant="x"), r"requant must be \(mult, shift, zero_point, relu\) or None"),
    (
        dict(requant=(0.5, 1, 0, False)),
        r"requant mult must be an integer or an integer array "
        r"\[4\], not float 0\.5",
    ),
    (
        dict(requant=(np.ones(3, np.int64), 1, 0, False)),
        r"requant mult must be .*not int64 "
        r"array \[3\]",
    ),
    (dict(requant=(True, 1, 0, False)), r"requant mult must be an integer .*not bool True"),
    (
        dict(requant=(2**32, 1, 0, False)),
        r"requant mult must be in 0\.\.4294967295, not "
        r"4294967296",
    ),
    (dict(requant=(-1, 1, 0, False)), r"requant mult must be in 0\.\.4294967295, not -1"),
    (dict(requant=(1, 64, 0, False)), r"requant shift must be in 0\.\.63, not 64"),
    (
        dict(requant=(1, np.array([1, 2, 3, -1]), 0, False)),
        r"requant shift must be in "
        r"0\.\.63, not -1",
    ),
    (dict(requant=(1, 1.0, 0, False)), r"requant shift must be an integer"),
    (
        dict(requant=(1, 1, 2.7, False)),
        r"requant zero_point must be an integer in -128\.\.127, "
        r"not float 2\.7",
    ),
    (
        dict(requant=(1, 1, 128, False)),
        r"requant zero_point must be an integer in -128\.\.127, "
        r"not int 128",
    ),
    (
        dict(requant=(1, 1, np.zeros(4, np.int8), False)),
        r"requant zero_point must be an "
        r"integer",
    ),
    (dict(requant=(1, 1, 0, "no")), r"requant relu must be a bool, not str 'no'"),
    (dict(requant=(1, 1, 0, 1)), r"requant relu must be a bool, not int 1"),
    (
        dict(requant=_RQ, rounding="nearest"),
        r"rounding must be 'half_up' or 'half_even', "
        r"not 'nearest'",
    ),
    (dict(rounding=None), r"rounding must be 'half_up' or 'half_even', not NoneType None"),
    (dict(backend="fpga"), r"backend must be one of model, rtl, gate, board, not 'fpga'"),
    (dict(config={"rows": 4}), r"config must be a CoreConfig, not dict"),
    (
        dict(a=np.zeros((2, 70000), np.int8), b=np.zeros((70000, 3), np.int8)),
        r"K = 70000 needs 8750 input words per row, twice that \(17500\) with the next batch's "
        r"inputs loading beside them; the 8x8 core's input buffer holds 16384 words \(K up to "
        r"65536\)",
    ),
    (
        dict(b=np.zeros((3, 2000), np.int8)),
        r"N = 2000 needs 250 parameter words; the 8x8 "
        r"core's parameter buffer holds 128 words \(N up to "
        r"1024\)",
    ),
    (
        dict(b=np.zeros((3, 20000), np.int8), config=CoreConfig(param_depth=1024)),
        r"N = 20000 needs 2500 accumulator words per row; the 8x8 core's accumulator buffer "
        r"holds 2048 words \(N up to 16384\)",
    ),
    (
        dict(
            a=np.zeros((1, 300), np.int8),
            b=np.zeros((300, 300), np.int8),
            config=CoreConfig(rows=4, cols=4, weight_kib=1, queue_depth=64),
        ),
        r"K x N = 300 x 300 takes 5625 weight tiles; the 4x4 core's weight buffer holds 64, too "
        r"few to stream them \(at least 74\)",
    ),
]


@pytest.mark.parametrize(
    "kwargs, message", MATMUL_REFUSALS, ids=[m[:40] for _, m in MATMUL_REFUSALS]
)
def test_matmul_refusals(kwargs, message):
    args = {"a": _A, "b": _B, **kwargs}
    with pytest.raises(CompileError, match=message):
        matmul(args.pop("a"), args.pop("b"), **args)


def test_compile_matmul_refusals():
    with pytest.raises(
        CompileError,
        match=r"a_shape_or_k must be K or the shape \(M, K\) of "
        r"a, not float 3\.0",
    ):
        compile_matmul(3.0, _B, None, CoreConfig())
    with pytest.raises(CompileError, match=r"config must be a CoreConfig, not NoneType"):
        compile_matmul(3, _B, None, None)
    with pytest.raises(CompileError, match=r"batch must be between 1 and 1023, not 2\.0"):
        compile_matmul(3, _B, None, CoreConfig(), batch=2.0)


def test_round_even_network():
    """A network whose layers round half to even, against the golden model."""
    q = random_quantized_model((37, 19, 5), seed=4)
    q = dataclasses.replace(
        q, layers=tuple(dataclasses.replace(ly, round_even=True) for ly in q.layers)
    )
    x = np.random.default_rng(4).integers(-128, 128, (11, 37)).astype(np.int8)
    res = get_backend("model", CoreConfig()).run(compile_model(q, CoreConfig(), 4), x)
    np.testing.assert_array_equal(res.outputs, golden.run(q, x), strict=True)


def test_matmul_doctest():
    assert doctest.testmod(systolic.host.matmul).failed == 0


def test_matmul_returns_the_cores_cycles():
    rng = np.random.default_rng(3)
    a = rng.integers(-128, 128, (13, 40)).astype(np.int8)
    b = rng.integers(-128, 128, (40, 11)).astype(np.int8)
    cfg = CoreConfig(rows=4, cols=4)
    out, cycles = matmul(a, b, config=cfg, with_cycles=True)
    np.testing.assert_array_equal(out, matmul(a, b, config=cfg), strict=True)
    program = compile_matmul(a.shape, b, None, cfg)
    assert cycles == get_backend("model", cfg).run(program, a).cycles > 0
    with pytest.raises(CompileError, match="with_cycles must be a bool, not 1"):
        matmul(a, b, with_cycles=1)
