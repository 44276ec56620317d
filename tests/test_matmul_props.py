"""Property tests of ``systolic.host.matmul.matmul`` on the model backend, against a numpy
reference.

The reference is written here, independently of the compiler, the model and the golden
model: int64 matrix products (exact for these shapes), a two's-complement wrap to int32,
then the requantization in Python integers (object arrays): ``p = acc * mult``; half up
``(p + 2**(s-1)) >> s``; half even by ``divmod``, a tie to the even quotient; zero
point, ReLU floor at the zero point, clamp to int8.

The default run keeps each property to a few dozen examples; ``-m slow`` runs the same
properties with many more.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from systolic.host.compile import CompileError
from systolic.host.matmul import matmul
from systolic.hw.config import CoreConfig

CONFIGS = {
    "8x8": CoreConfig(),
    "4x4": CoreConfig(rows=4, cols=4),
    "3x5 shallow": CoreConfig(rows=3, cols=5, deep_pipeline=False),
    "4x4 small buffers": CoreConfig(
        rows=4, cols=4, act_kib=1, acc_kib=1, hidden_kib=1, weight_kib=1
    ),
    "2x16 small buffers": CoreConfig(
        rows=2, cols=16, act_kib=1, acc_kib=1, hidden_kib=1, weight_kib=1, queue_depth=2
    ),
}
SMALL = CONFIGS["4x4 small buffers"]
INT_DTYPES = (np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64, np.uint64)
MATRIX_STYLES = ("random", "min", "max", "extremes", "zeros", "small")


def _settings(examples):
    return settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# -- the reference ------------------------------------------------------------------------
def wrap32(x):
    """Two's-complement wrap of integers (int64 or Python) to int32 values."""
    return (x + 2**31) % 2**32 - 2**31


def _round_shift(p, s, half_even):
    if s == 0:
        return p
    if not half_even:
        return (p + (1 << (s - 1))) >> s
    q, r = divmod(p, 1 << s)  # floor division: 0 <= r < 2**s
    if 2 * r > 1 << s or (2 * r == 1 << s and q % 2 == 1):
        q += 1
    return q


def reference(a, b, bias, requant=None, rounding="half_up"):
    """``a @ b + bias`` wrapped to int32, then optionally requantized to int8."""
    acc = wrap32(
        a.astype(np.int64) @ b.astype(np.int64) + (0 if bias is None else bias.astype(np.int64))
    )
    if requant is None:
        return acc.astype(np.int32)
    mult, shift, zp, relu = requant
    n = b.shape[1]
    mult = [int(v) for v in np.broadcast_to(mult, n)]
    shift = [int(v) for v in np.broadcast_to(shift, n)]
    out = np.empty(acc.shape, np.int8)
    for (i, j), v in np.ndenumerate(acc.astype(object)):
        y = _round_shift(v * mult[j], shift[j], rounding == "half_even") + int(zp)
        if relu:
            y = max(y, int(zp))
        out[i, j] = min(max(y, -128), 127)
    return out


def test_reference_itself():
    """The reference on hand-worked numbers, so the properties rest on something known."""
    assert [_round_shift(p, 1, False) for p in (-3, -1, 1, 3, 5)] == [-1, 0, 1, 2, 3]
    assert [_round_shift(p, 1, True) for p in (-3, -1, 1, 3, 5)] == [-2, 0, 0, 2, 2]
    assert _round_shift(7, 2, True) == 2 and _round_shift(6, 2, True) == 2  # 1.75, 1.5
    assert _round_shift(10, 2, True) == 2 and _round_shift(10, 2, False) == 3  # 2.5
    assert wrap32(2**31) == -(2**31) and wrap32(-(2**31) - 1) == 2**31 - 1
    a = np.array([[1, -2], [3, 4]], np.int8)
    b = np.array([[5, 6, 7], [8, 9, 10]], np.int8)
    np.testing.assert_array_equal(
        reference(a, b, None, (1 << 30, 31, 0, False), "half_even"),
        np.array([[-6, -6, -6], [24, 27, 30]], np.int8),
        strict=True,
    )
    np.testing.assert_array_equal(
        reference(a, b, np.array([2**31 - 1, 0, 0]))[1],
        np.array([-(2**31) + 46, 54, 61], np.int32),
        strict=True,
    )


# -- strategies -----------------------------------------------------------------------------
def _matrix(rng, shape, style):
    if style == "random":
        return rng.integers(-128, 128, shape, dtype=np.int8)
    if style == "small":
        return rng.integers(-3, 4, shape, dtype=np.int8)
    if style == "extremes":
        return rng.choice(np.array([-128, 127], np.int8), shape)
    return np.full(shape, {"min": -128, "max": 127, "zeros": 0}[style], np.int8)


@st.composite
def _bias(draw, rng, n):
    style = draw(st.sampled_from(("none", "random", "int32 min", "int32 max", "small")))
    if style == "none":
        return None
    dtype = np.dtype(draw(st.sampled_from(INT_DTYPES)))
    info = np.iinfo(dtype)
    lo, hi = max(int(info.min), -(2**31)), min(int(info.max), 2**31 - 1)
    if style == "int32 min":
        return np.full(n, lo, dtype)
    if style == "int32 max":
        return np.full(n, hi, dtype)
    if style == "small":
        lo, hi = max(lo, -1000), min(hi, 1000)
    return rng.integers(lo, hi, n, endpoint=True, dtype=np.int64).astype(dtype)


_MULT = st.one_of(
    st.integers(0, 2**32 - 1),
    st.sampled_from([0, 1, 2**31 - 1, 2**31, 2**32 - 1]),
    st.integers(0, 31).map(lambda k: 1 << k),
)
_SHIFT = st.one_of(st.integers(0, 63), st.sampled_from([0, 1, 2, 31, 32, 62, 63]))


@st.composite
def _channel(draw, rng, n, scalar, lo, hi, dtypes):
    """A per-column parameter: a Python or numpy integer, or an integer array [n]."""
    kind = draw(st.sampled_from(("python", "numpy scalar", "array")))
    if kind == "python":
        return scalar
    dtype = np.dtype(
        draw(
            st.sampled_from([d for d in dtypes if np.iinfo(d).min <= lo and np.iinfo(d).max >= hi])
        )
    )
    if kind == "numpy scalar":
        return dtype.type(scalar)
    values = rng.integers(lo, hi, n, endpoint=True, dtype=np.int64)
    values[rng.random(n) < 0.5] = scalar
    return values.astype(dtype)


@st.composite
def _requant(draw, rng, n, acc_bound):
    """``(mult, shift, zero_point, relu)`` over their whole ranges, or None; sometimes
    scaled to the accumulators so that the outputs are not all saturated."""
    if draw(st.booleans()) and draw(st.booleans()):
        return None
    mult, shift = draw(_MULT), draw(_SHIFT)
    if draw(st.booleans()):  # calibrated: |acc * mult / 2**shift| of the order of 100
        mult = draw(st.integers(2**30, 2**32 - 1))
        shift = min(63, 32 + max(0, int(acc_bound).bit_length() - 7))
    mult = draw(_channel(rng, n, mult, 0, 2**32 - 1, (np.uint32, np.int64, np.uint64)))
    shift = draw(_channel(rng, n, shift, 0, 63, INT_DTYPES))
    zp = draw(st.integers(-128, 127))
    if draw(st.booleans()):
        zp = np.int8(zp) if draw(st.booleans()) else np.int64(zp)
    relu = draw(st.booleans())
    if draw(st.booleans()):
        relu = np.bool_(relu)
    return mult, shift, zp, relu


def _fits(cfg, K, N):
    """Whether ``a [M, K] @ b [K, N]`` fits ``cfg`` one row at a time (from the buffer
    sizes alone: two input regions, accumulators and parameters per column tile, and
    enough weight tiles to hold them all or to stream them through a ring)."""
    kt, nt = -(-K // cfg.rows), -(-N // cfg.cols)
    ring = cfg.queue_depth + cfg.rows + cfg.cols + 2
    return (
        2 * kt <= cfg.act_depth
        and nt <= cfg.acc_depth
        and nt <= cfg.param_depth
        and (kt * nt <= cfg.weight_depth or ring <= cfg.weight_depth)
    )


# -- properties -----------------------------------------------------------------------------
def _check_matmul(data, max_dim):
    cfg = CONFIGS[data.draw(st.sampled_from(sorted(CONFIGS)), label="config")]
    M = data.draw(st.integers(1, max_dim), label="M")
    K = data.draw(st.integers(1, max_dim), label="K")
    N = data.draw(st.integers(1, max_dim), label="N")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    a = _matrix(rng, (M, K), data.draw(st.sampled_from(MATRIX_STYLES), label="a"))
    b = _matrix(rng, (K, N), data.draw(st.sampled_from(MATRIX_STYLES), label="b"))
    bias = data.draw(_bias(rng, N), label="bias")
    acc_bound = int(np.abs(reference(a, b, bias).astype(np.int64)).max())
    requant = data.draw(_requant(rng, N, acc_bound), label="requant")
    rounding = data.draw(st.sampled_from(("half_up", "half_even")), label="rounding")
    if not _fits(cfg, K, N):
        with pytest.raises(CompileError, match=r"^[KN] (x N )?= "):
            matmul(a, b, bias, backend="model", config=cfg, requant=requant, rounding=rounding)
        return
    want = reference(a, b, bias, requant, rounding)
    got = matmul(a, b, bias, backend="model", config=cfg, requant=requant, rounding=rounding)
    np.testing.assert_array_equal(got, want, strict=True)


@_settings(15)
@given(data=st.data())
def test_matmul_matches_reference(data):
    """Shapes 1..300 on every configuration, int8 extremes, bias over int32, every
    requantization parameter over its range, both roundings."""
    _check_matmul(data, 300)


@pytest.mark.slow
@_settings(300)
@given(data=st.data())
def test_matmul_matches_reference_many(data):
    _check_matmul(data, 300)


def _check_requant(data):
    """Small shapes, so that many examples can cover the requantization corners."""
    cfg = CONFIGS[data.draw(st.sampled_from(sorted(CONFIGS)), label="config")]
    M, K, N = (
        data.draw(st.integers(1, hi), label=name) for name, hi in (("M", 9), ("K", 40), ("N", 17))
    )
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    a = _matrix(rng, (M, K), data.draw(st.sampled_from(MATRIX_STYLES), label="a"))
    b = _matrix(rng, (K, N), data.draw(st.sampled_from(MATRIX_STYLES), label="b"))
    bias = data.draw(_bias(rng, N), label="bias")
    acc_bound = int(np.abs(reference(a, b, bias).astype(np.int64)).max())
    requant = data.draw(
        _requant(rng, N, acc_bound).filter(lambda r: r is not None), label="requant"
    )
    rounding = data.draw(st.sampled_from(("half_up", "half_even")), label="rounding")
    got = matmul(a, b, bias, config=cfg, requant=requant, rounding=rounding)
    np.testing.assert_array_equal(got, reference(a, b, bias, requant, rounding), strict=True)


@_settings(60)
@given(data=st.data())
def test_requantization_over_its_whole_range(data):
    _check_requant(data)


@pytest.mark.slow
@_settings(2000)
@given(data=st.data())
def test_requantization_over_its_whole_range_many(data):
    _check_requant(data)


@_settings(30)
@given(
    K=st.integers(1, 3000),
    N=st.integers(1, 800),
    M=st.integers(1, 3),
    seed=st.integers(0, 2**32 - 1),
)
def test_beyond_the_buffers_only_compile_error(K, N, M, seed):
    """Shapes around the small configuration's limits (K up to 512, N up to 256): a
    CompileError when they do not fit, the right result when they do."""
    assume(K * N <= 512 * 40 or not _fits(SMALL, K, N))  # keep the fitting ones quick
    rng = np.random.default_rng(seed)
    a = _matrix(rng, (M, K), "random")
    b = _matrix(rng, (K, N), "random")
    if not _fits(SMALL, K, N):
        with pytest.raises(CompileError, match=r"^[KN] (x N )?= "):
            matmul(a, b, config=SMALL)
        return
    np.testing.assert_array_equal(matmul(a, b, config=SMALL), reference(a, b, None), strict=True)


def test_beyond_the_default_buffers():
    cfg = CoreConfig()
    a = np.zeros((1, 65537), np.int8)
    with pytest.raises(CompileError, match=r"K = 65537 needs 8193 input words per row"):
        matmul(a, np.zeros((65537, 1), np.int8), config=cfg)
    with pytest.raises(CompileError, match=r"N = 1025 needs 129 parameter words"):
        matmul(a[:, :1], np.zeros((1, 1025), np.int8), config=cfg)


# -- arbitrary arguments --------------------------------------------------------------------
_ANY_SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(),
    st.text(max_size=5),
    st.just(np.int8(3)),
    st.just(np.bool_(True)),
    st.just(np.float32(0.5)),
    st.just(2 + 1j),
)
_ANY_ARRAY = hnp.arrays(
    dtype=st.sampled_from(
        [
            np.int8,
            np.uint8,
            np.int16,
            np.int32,
            np.uint64,
            np.float32,
            np.bool_,
            np.complex64,
            "U2",
            object,
        ]
    ),
    shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5),
    elements=None,
    fill=None,
)
_INT8 = st.builds(
    lambda m, n, seed: _matrix(np.random.default_rng(seed), (m, n), "random"),
    st.integers(0, 6),
    st.integers(0, 6),
    st.integers(0, 99),
)
_ANY = st.one_of(
    _ANY_SCALAR,
    _ANY_ARRAY,
    _INT8,
    st.lists(st.integers(-3, 3), max_size=4),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
)
_REQUANT = st.one_of(
    _ANY,
    st.tuples(_ANY, _ANY, _ANY, _ANY),
    st.tuples(st.integers(0, 2**32), st.integers(-1, 64), _ANY_SCALAR, st.booleans()),
    st.tuples(_ANY_ARRAY, _ANY_ARRAY, st.integers(-129, 128), _ANY),
    st.lists(_ANY_SCALAR, max_size=5),
)
_CONFIG = st.one_of(
    st.none(), st.sampled_from(list(CONFIGS.values())), _ANY_SCALAR, st.just({"rows": 4})
)
#: Never "rtl" or "gate": those start a simulator.
_BACKEND = st.one_of(st.just("model"), _ANY_SCALAR.filter(lambda v: v not in ("rtl", "gate")))
_ROUNDING = st.one_of(st.sampled_from(("half_up", "half_even")), _ANY)


def _check_only_compile_error(a, b, bias, requant, rounding, config, backend):
    try:
        matmul(a, b, bias, backend=backend, config=config, requant=requant, rounding=rounding)
    except CompileError:
        pass


@_settings(200)
@given(
    a=st.one_of(_INT8, _ANY),
    b=st.one_of(_INT8, _ANY),
    bias=_ANY,
    requant=_REQUANT,
    rounding=_ROUNDING,
    config=_CONFIG,
    backend=_BACKEND,
)
def test_any_arguments_only_compile_error(a, b, bias, requant, rounding, config, backend):
    """Whatever the arguments, the API returns or raises CompileError, nothing else."""
    _check_only_compile_error(a, b, bias, requant, rounding, config, backend)


@_settings(100)
@given(data=st.data())
def test_nearly_right_arguments_only_compile_error(data):
    """Valid matrices with one argument replaced by anything: CompileError or a result."""
    rng = np.random.default_rng(data.draw(st.integers(0, 99)))
    K, N = data.draw(st.integers(1, 9)), data.draw(st.integers(1, 9))
    args = {
        "a": _matrix(rng, (3, K), "random"),
        "b": _matrix(rng, (K, N), "random"),
        "bias": rng.integers(-100, 100, N),
        "requant": (1 << 30, 31, 0, False),
        "rounding": "half_up",
        "config": CONFIGS["4x4"],
        "backend": "model",
    }
    name = data.draw(st.sampled_from(sorted(args)))
    strategy = {"requant": _REQUANT, "config": _CONFIG, "backend": _BACKEND}.get(name, _ANY)
    args[name] = data.draw(strategy)
    _check_only_compile_error(**args)


@pytest.mark.slow
@_settings(3000)
@given(
    a=st.one_of(_INT8, _ANY),
    b=st.one_of(_INT8, _ANY),
    bias=_ANY,
    requant=_REQUANT,
    rounding=_ROUNDING,
    config=_CONFIG,
    backend=_BACKEND,
)
def test_any_arguments_only_compile_error_many(a, b, bias, requant, rounding, config, backend):
    _check_only_compile_error(a, b, bias, requant, rounding, config, backend)
